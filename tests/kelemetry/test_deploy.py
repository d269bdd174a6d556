"""The Helm chart and the Containerfile in kelemetry/deploy, checked against the collector itself.

The chart is rendered by a real helm (tests/chart.py); the container's command line is parsed by
the real `kelemetry` argument parser and put through the checks `serve` makes before it starts,
so a value cannot render a flag, or a flag's value, that the collector would refuse. What the
chart grants (RBAC) is compared with what the collector does (its watch targets and defaults).
Running the rendered command line against a real apiserver is tests/e2e/test_helm.py.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from kelemetry import cli
from kelemetry.connection import parse_watch_target
from kelemetry.model import times
from kelemetry.settings import CLUSTER_NAME, DEFAULT_WATCHED
from tests.chart import (
    CHART,
    CONTAINERFILE,
    FULLNAME,
    NAMESPACE,
    SCALED_VALUES,
    HelmFailed,
    command_line,
    container,
    find,
    kinds,
    template,
)
from tests.e2e.servers import REPO

# Values that change every flag the chart can pass, and every optional object.
NON_DEFAULT: dict[str, Any] = {
    "cluster": {"name": "prod-eu.1", "apiServer": "https://10.0.0.1:6443"},
    "watch": {
        "resources": ["deployments.apps", "pods", "widgets.example.com/v1beta1"],
        "customResources": {"enabled": True, "apiGroups": ["example.com", "kubeadmiral.io"]},
        "changeGrace": "10s",
    },
    "store": {
        "retention": "30d",
        "maxSize": "8GB",
        "minFreeSpace": "1GB",
        "durability": "power",
        "persistence": {"existingClaim": "traces", "size": "50Gi"},
    },
    "trace": {
        "window": "1h",
        "cacheSize": "512MiB",
        "redact": ["configmaps:data", "widgets.example.com:spec"],
        "excludeResources": ["none"],
    },
    "webhook": {"maxBody": "32MB", "maxBacklog": "1GB"},
    "otlp": {"endpoint": "grpc://jaeger-collector.tracing:4317"},
    "token": {"existingSecret": "kelemetry-token", "secretKey": "bearer", "publicQuery": True},
    "tls": {"enabled": True, "secretName": "kelemetry-tls"},
    "logLevel": "debug",
    "logFormat": "json",
    "extraArgs": ["--cluster-alias", "member-a=prod-eu.2"],
    "listenHost": "[::]",
    "containerPort": 9443,
    "service": {"type": "NodePort", "port": 443, "nodePort": 30443},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
    "apiserver": {"webhookServer": "https://10.0.0.40:443"},
}


def serve_args(command: list[str]) -> argparse.Namespace:
    """The rendered command line through the collector's parser and the checks `serve` makes
    before starting (the same functions, in the same order), as the Pod would run it."""
    assert command[0] == "kelemetry"
    args = cli.build_parser().parse_args(command[1:])
    assert args.command == "serve"
    cli.parse_listen(args.listen)
    times.parse_retention_us(args.retention)
    for size in (args.max_body, args.max_backlog, args.min_free_space, args.max_store_size):
        if size is not None:
            times.parse_size(size)
    cli.seconds(args.change_grace)
    for spec in args.watch or ():
        if spec != "none":
            parse_watch_target(spec)
    cli.parse_clusters(args.kubeconfig, args.cluster)
    cli._trace_settings(args)
    return args


def mounts(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """mountPath → (the volume mount, with its volume under 'volume')."""
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {m["mountPath"]: {**m, "volume": volumes[m["name"]]} for m in container(docs)["volumeMounts"]}


def mount_of(docs: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """The mount a file path of the command line lies under (the deepest one)."""
    found = [m for root, m in mounts(docs).items() if path.startswith(root.rstrip("/") + "/")]
    assert found, f"{path} lies under no volume of the Pod"
    return max(found, key=lambda m: len(m["mountPath"]))


@pytest.fixture(scope="module")
def defaults() -> list[dict[str, Any]]:
    return template()


@pytest.fixture(scope="module")
def others() -> list[dict[str, Any]]:
    return template(NON_DEFAULT)


# -- the command line


def test_default_command_line_is_one_serve_accepts(defaults: list[dict[str, Any]]) -> None:
    args = serve_args(command_line(defaults))
    assert args.log_level == "info"
    assert args.log_format == "text"
    assert args.listen == "0.0.0.0:8080"
    assert args.cluster == "default"
    assert args.store == "/data/kelemetry.db"
    assert args.kubeconfig == ["/etc/kelemetry/kubeconfig/kubeconfig"]
    # The chart names the collector's own default watch list, so its RBAC covers what is watched.
    assert tuple(args.watch) == DEFAULT_WATCHED
    assert args.no_watch_custom_resources
    assert (args.retention, args.durability, args.window, args.cache_size) == (
        "7d",
        "process",
        "30m",
        "128MiB",
    )
    assert args.max_store_size is None and args.otlp_endpoint is None
    assert not args.public_query and args.tls_cert is None and args.exclude_resource is None


def test_non_default_command_line_is_one_serve_accepts(others: list[dict[str, Any]]) -> None:
    args = serve_args(command_line(others))
    assert args.log_level == "debug"
    assert args.log_format == "json"
    assert args.listen == "[::]:9443"
    assert cli.parse_listen(args.listen) == ("::", 9443)
    assert args.cluster == "prod-eu.1"
    assert args.watch == ["deployments.apps", "pods", "widgets.example.com/v1beta1"]
    assert not args.no_watch_custom_resources
    assert (args.change_grace, args.retention, args.max_store_size) == ("10s", "30d", "8GB")
    assert (args.min_free_space, args.durability, args.window, args.cache_size) == (
        "1GB",
        "power",
        "1h",
        "512MiB",
    )
    assert args.redact == ["configmaps:data", "widgets.example.com:spec"]
    assert args.exclude_resource == ["none"]
    assert (args.max_body, args.max_backlog) == ("32MB", "1GB")
    assert args.otlp_endpoint == "grpc://jaeger-collector.tracing:4317"
    assert args.public_query
    assert (args.tls_cert, args.tls_key) == ("/etc/kelemetry/tls/tls.crt", "/etc/kelemetry/tls/tls.key")
    assert args.cluster_alias == ["member-a=prod-eu.2"]


def test_a_flag_serve_does_not_know_is_caught() -> None:
    """The check above can fail: an unknown flag (here through extraArgs) is refused by the parser."""
    docs = template({"extraArgs": ["--no-such-flag"]})
    with pytest.raises(SystemExit) as refused:
        serve_args(command_line(docs))
    assert refused.value.code == 2


def test_an_audit_only_collector_gets_no_cluster_access() -> None:
    docs = template({"cluster": {"connect": False}})
    args = serve_args(command_line(docs))
    assert args.kubeconfig == [] and args.watch is None
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert "/var/run/secrets/kubernetes.io/serviceaccount" not in mounts(docs)
    assert find(docs, "Deployment")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_an_empty_watch_list_watches_nothing() -> None:
    args = serve_args(command_line(template({"watch": {"resources": []}})))
    assert args.watch == ["none"]


# -- every file the command line names is in the Pod


def test_files_of_the_command_line_are_mounted(others: list[dict[str, Any]]) -> None:
    args = serve_args(command_line(others))
    data = mount_of(others, args.store)
    assert data["volume"]["persistentVolumeClaim"] == {"claimName": "traces"}
    assert not data.get("readOnly")
    tls = mount_of(others, args.tls_cert)
    assert tls["volume"]["secret"]["secretName"] == "kelemetry-tls" and tls["readOnly"]


def test_the_collector_kubeconfig_uses_the_projected_service_account_token(
    defaults: list[dict[str, Any]],
) -> None:
    (path,) = serve_args(command_line(defaults)).kubeconfig
    name = path.rsplit("/", 1)[1]
    volume = mount_of(defaults, path)["volume"]
    config_map = find(defaults, "ConfigMap", volume["configMap"]["name"])
    kubeconfig = yaml.safe_load(config_map["data"][name])
    cluster = kubeconfig["clusters"][0]["cluster"]
    user = kubeconfig["users"][0]["user"]
    assert cluster["server"] == "https://kubernetes.default.svc"
    token = mount_of(defaults, user["tokenFile"])
    ca = mount_of(defaults, cluster["certificate-authority"])
    assert token == ca and token["readOnly"]
    sources = token["volume"]["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == user["tokenFile"].rsplit("/", 1)[1]
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    pod = find(defaults, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME and pod["automountServiceAccountToken"] is False
    assert find(defaults, "ServiceAccount", FULLNAME)


# -- the Pod


def test_probes_use_healthz_and_readyz_with_the_right_scheme(
    defaults: list[dict[str, Any]], others: list[dict[str, Any]]
) -> None:
    for docs, scheme in ((defaults, "HTTP"), (others, "HTTPS")):
        spec = container(docs)
        probes = {kind: spec[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert probes["livenessProbe"]["path"] == "/healthz"
        assert probes["startupProbe"]["path"] == "/healthz"
        assert probes["readinessProbe"]["path"] == "/readyz"
        assert {p["scheme"] for p in probes.values()} == {scheme}
        assert {p["port"] for p in probes.values()} == {"http"}
        (port,) = spec["ports"]
        assert port["name"] == "http"
        assert port["containerPort"] == cli.parse_listen(serve_args(command_line(docs)).listen)[1]


def test_the_pod_runs_as_non_root_on_a_read_only_root(defaults: list[dict[str, Any]]) -> None:
    deployment = find(defaults, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1
    # A second writer of the embedded store never starts beside the first.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    spec = container(defaults)
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    writable = {root for root, m in mounts(defaults).items() if not m.get("readOnly")}
    assert writable == {"/data", "/tmp"}
    assert mounts(defaults)["/tmp"]["volume"] == {"name": "tmp", "emptyDir": {}}
    assert {"name": "TMPDIR", "value": "/tmp"} in spec["env"]
    assert spec["resources"]["requests"]["cpu"] and spec["resources"]["requests"]["memory"]
    assert spec["resources"]["limits"]["memory"]


def test_the_store_is_on_a_persistent_volume_claim_by_default(defaults: list[dict[str, Any]]) -> None:
    claim = find(defaults, "PersistentVolumeClaim", f"{FULLNAME}-data")
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert mounts(defaults)["/data"]["volume"]["persistentVolumeClaim"] == {
        "claimName": claim["metadata"]["name"]
    }
    ephemeral = template({"store": {"persistence": {"enabled": False}}})
    assert not [d for d in ephemeral if d["kind"] == "PersistentVolumeClaim"]
    assert mounts(ephemeral)["/data"]["volume"] == {"name": "data", "emptyDir": {}}


def test_the_token_comes_from_a_generated_or_existing_secret(
    defaults: list[dict[str, Any]], others: list[dict[str, Any]]
) -> None:
    args = serve_args(command_line(defaults))
    secret = find(defaults, "Secret", f"{FULLNAME}-token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{40}", token)
    env = {e["name"]: e for e in container(defaults)["env"]}
    assert env[args.token_env]["valueFrom"]["secretKeyRef"] == {"name": f"{FULLNAME}-token", "key": "token"}
    # An existing Secret is referenced, never rendered.
    assert not [d for d in others if d["kind"] == "Secret"]
    env = {e["name"]: e for e in container(others)["env"]}
    assert env["KELEMETRY_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "kelemetry-token", "key": "bearer"}
    # No token: nothing to require it.
    open_docs = template({"token": {"enabled": False}})
    assert "KELEMETRY_TOKEN" not in {e["name"] for e in container(open_docs)["env"]}
    assert not [d for d in open_docs if d["kind"] == "Secret"]


# -- RBAC: exactly what the collector does


def rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    role = find(docs, "ClusterRole", FULLNAME)
    binding = find(docs, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"]["name"] == FULLNAME
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    return list(role["rules"])


def test_rbac_grants_discovery_events_and_the_watched_resources_only(defaults: list[dict[str, Any]]) -> None:
    args = serve_args(command_line(defaults))
    granted = rules(defaults)
    assert granted[0] == {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*"], "verbs": ["get"]}
    resource_rules = granted[1:]
    expected = [("", "events")] + [parse_watch_target(spec)[0::2] for spec in args.watch]
    assert [(r["apiGroups"], r["resources"]) for r in resource_rules] == [([g], [r]) for g, r in expected]
    assert {verb for r in resource_rules for verb in r["verbs"]} == {"list", "watch"}
    every = {name for r in resource_rules for name in r["resources"]}
    assert "secrets" not in every and "*" not in every


def test_rbac_for_custom_resources_is_limited_to_their_groups(others: list[dict[str, Any]]) -> None:
    granted = rules(others)
    assert {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["list"],
    } in granted
    assert {
        "apiGroups": ["example.com", "kubeadmiral.io"],
        "resources": ["*"],
        "verbs": ["list", "watch"],
    } in granted
    assert {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["list", "watch"]} in granted
    assert not [r for r in granted if "*" in r.get("apiGroups", ())]


# -- the apiserver side


def apiserver_files(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    data = find(docs, "ConfigMap", f"{FULLNAME}-apiserver")["data"]
    return yaml.safe_load(data["audit-policy.yaml"]), yaml.safe_load(data["audit-webhook.kubeconfig"])


def test_the_rendered_audit_policy_is_the_documented_one(defaults: list[dict[str, Any]]) -> None:
    policy, _ = apiserver_files(defaults)
    assert policy == yaml.safe_load((REPO / "samples" / "apiserver" / "audit-policy.yaml").read_text())


def test_the_webhook_kubeconfig_points_at_the_service(
    defaults: list[dict[str, Any]], others: list[dict[str, Any]]
) -> None:
    _, webhook = apiserver_files(defaults)
    cluster = webhook["clusters"][0]["cluster"]
    service = find(defaults, "Service", FULLNAME)
    port = service["spec"]["ports"][0]["port"]
    assert cluster == {"server": f"http://{FULLNAME}.{NAMESPACE}.svc:{port}/audit/default"}
    assert webhook["users"][0]["user"] == {"tokenFile": "/etc/kubernetes/kelemetry/token"}
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == find(defaults, "Deployment")["spec"]["selector"]["matchLabels"]
    _, webhook = apiserver_files(others)
    assert webhook["clusters"][0]["cluster"] == {
        "server": "https://10.0.0.40:443/audit/prod-eu.1",
        "certificate-authority": "/etc/kubernetes/kelemetry/ca.crt",
    }
    assert find(others, "Service", FULLNAME)["spec"]["ports"][0]["nodePort"] == 30443


def test_no_config_map_holds_the_token(defaults: list[dict[str, Any]]) -> None:
    token = base64.b64decode(find(defaults, "Secret", f"{FULLNAME}-token")["data"]["token"]).decode()
    for doc in defaults:
        if doc["kind"] == "ConfigMap":
            assert token not in yaml.safe_dump(doc)


# -- optional objects and refused values


def test_the_service_monitor_is_off_by_default_and_authenticates(
    defaults: list[dict[str, Any]], others: list[dict[str, Any]]
) -> None:
    assert "ServiceMonitor" not in {d["kind"] for d in defaults}
    monitor = find(others, "ServiceMonitor", FULLNAME)
    assert monitor["metadata"]["labels"]["release"] == "prom"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["scheme"]) == ("http", "/metrics", "https")
    assert endpoint["authorization"]["credentials"] == {"name": "kelemetry-token", "key": "bearer"}


def test_the_default_release_renders_these_objects(defaults: list[dict[str, Any]]) -> None:
    assert kinds(defaults) == sorted(
        f"{kind}/{FULLNAME}{suffix}"
        for kind, suffix in [
            ("ClusterRole", ""),
            ("ClusterRoleBinding", ""),
            ("ConfigMap", "-apiserver"),
            ("ConfigMap", "-kubeconfig"),
            ("Deployment", ""),
            ("PersistentVolumeClaim", "-data"),
            ("Secret", "-token"),
            ("Service", ""),
            ("ServiceAccount", ""),
        ]
    )


def test_the_chart_checks_cluster_names_with_the_collectors_rule() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    (rule,) = re.findall(r'regexMatch "([^"]+)" \(toString \.Values\.cluster\.name\)', helpers)
    assert rule == CLUSTER_NAME.pattern


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"tls": {"enabled": True}}, "tls.enabled needs tls.secretName"),
        (
            {"watch": {"customResources": {"enabled": True}}},
            "watch.customResources.enabled needs watch.customResources.apiGroups",
        ),
        # The collector's own rule for cluster names, with its reason (the schema only wants a string).
        ({"cluster": {"name": "a/b"}}, 'cluster.name "a/b": use letters, digits'),
        ({"cluster": {"name": "-a"}}, 'cluster.name "-a": use letters, digits'),
        (
            {"watch": {"resources": [], "customResources": {"enabled": True, "apiGroups": ["x.io"]}}},
            "watch.resources is empty",
        ),
    ],
)
def test_values_the_collector_cannot_use_are_refused(values: dict[str, Any], reason: str) -> None:
    with pytest.raises(HelmFailed, match=re.escape(reason)):
        template(values)


# -- values are documented


def leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            keys += leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def test_every_value_is_in_the_chart_readme() -> None:
    documented = set(re.findall(r"^\| `([^`]+)` \|", (CHART / "README.md").read_text(), re.MULTILINE))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # Maps users fill in (resources, securityContext, ...) are documented as a whole, wherever they are.
    wanted = {whole_of(key) for key in leaf_keys(values)}
    assert sorted(wanted - documented) == []
    assert sorted(documented - wanted - set(leaf_keys(values))) == []


WHOLE = {"resources", "podSecurityContext", "securityContext", "probes"}


def whole_of(key: str) -> str:
    """``key``, or the map documented as a whole that holds it (scaled.worker.resources)."""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if part in WHOLE:
            return ".".join(parts[: i + 1])
    return key


# -- the Containerfile


def containerfile() -> list[tuple[str, str]]:
    lines = CONTAINERFILE.read_text().replace("\\\n", " ").splitlines()
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_containerfile_installs_this_repository_and_serves(defaults: list[dict[str, Any]]) -> None:
    steps = containerfile()
    copied = [arg.split()[:-1] for op, arg in steps if op == "COPY"]
    for sources in copied:
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    # Everything the wheel is built from (pyproject's packages and its readme) is copied.
    assert {s for sources in copied for s in sources} >= {
        "pyproject.toml",
        "README.md",
        "kelemetry",
        "aggregators",
        "frontend",
        "jaeger",
    }
    assert ("RUN", "pip install . && rm -rf /src") in steps
    entry = yaml.safe_load(dict(steps)["ENTRYPOINT"])
    cmd = yaml.safe_load(dict(steps)["CMD"])
    args = serve_args([*entry, *cmd])
    assert entry == ["kelemetry"] and args.listen == "0.0.0.0:8080"
    # The image's user, volume and port are the ones the chart runs it with.
    pod = find(defaults, "Deployment")["spec"]["template"]["spec"]
    user, group = dict(steps)["USER"].split(":")
    assert int(user) == pod["securityContext"]["runAsUser"] != 0
    assert int(group) == pod["securityContext"]["runAsGroup"]
    assert yaml.safe_load(dict(steps)["VOLUME"]) == ["/data"] == [str(Path(args.store).parent)]
    assert int(dict(steps)["EXPOSE"]) == container(defaults)["ports"][0]["containerPort"]
    assert command_line(defaults)[0] == entry[0]
    assert shlex.split(dict(steps)["FROM"])[0].startswith("docker.io/library/python:3.")


def test_the_deploy_folder_is_data_not_code() -> None:
    deploy = REPO / "kelemetry" / "deploy"
    assert not list(deploy.rglob("*.py"))
    for source in (REPO / "kelemetry").rglob("*.py"):
        assert "kelemetry.deploy" not in source.read_text()


# -- the values schema


def choices(parser: argparse.ArgumentParser, flag: str) -> list[str]:
    (action,) = [a for a in parser._actions if flag in a.option_strings]
    return list(action.choices or ())


def test_the_schema_offers_the_choices_the_collector_takes() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]
    parser = cli.build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    assert schema["logLevel"]["enum"] == choices(parser, "--log-level")
    assert schema["logFormat"]["enum"] == choices(parser, "--log-format")
    assert schema["store"]["properties"]["durability"]["enum"] == choices(serve, "--durability")


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (
            {"store": {"durability": "fast"}},
            'store.durability must be one of the following: "process", "power"',
        ),
        ({"store": {"retension": "1d"}}, "Additional property retension is not allowed"),
        ({"logLevel": "verbose"}, "logLevel must be one of the following"),
        ({"containerPort": 0}, "containerPort: Must be greater than or equal to 1"),
        ({"watch": {"resources": "pods"}}, "watch.resources: Invalid type. Expected: array, given: string"),
    ],
)
def test_values_outside_the_schema_are_refused_before_anything_renders(
    values: dict[str, Any], reason: str
) -> None:
    with pytest.raises(HelmFailed, match=re.escape(reason)):
        template(values)


# -- scaled mode: webhook, worker and frontend Deployments over the operator's NATS and Jaeger

SCALED = SCALED_VALUES
SCALED_OTHERS: dict[str, Any] = {
    "scaled": {
        **SCALED["scaled"],
        "queue": {"url": "nats://nats-0.nats:4222,nats://nats-1.nats:4222", "replicas": 3},
        "partitions": 64,
        "lease": "20s",
        "snapshotEvery": "1m",
        "settle": "20s",
        "webhook": {"replicas": 4},
        "worker": {"replicas": 6},
        "frontend": {"replicas": 2},
    },
    "trace": {"window": "1h", "cacheSize": "256MiB", "redact": ["configmaps:data"]},
    "token": {"existingSecret": "kelemetry-token", "secretKey": "bearer", "publicQuery": True},
    "tls": {"enabled": True, "secretName": "kelemetry-tls"},
}


@pytest.fixture(scope="module")
def scaled() -> list[dict[str, Any]]:
    return template(SCALED)


@pytest.fixture(scope="module")
def scaled_others() -> list[dict[str, Any]]:
    return template(SCALED_OTHERS)


def role_pod(docs: list[dict[str, Any]], role: str) -> dict[str, Any]:
    return dict(find(docs, "Deployment", f"{FULLNAME}-{role}")["spec"]["template"]["spec"])


def role_command_line(docs: list[dict[str, Any]], role: str) -> list[str]:
    (spec,) = role_pod(docs, role)["containers"]
    return [str(a) for a in [*spec["command"], *spec["args"]]]


def role_mounts(docs: list[dict[str, Any]], role: str) -> dict[str, dict[str, Any]]:
    pod = role_pod(docs, role)
    volumes = {v["name"]: v for v in pod["volumes"]}
    (spec,) = pod["containers"]
    return {m["mountPath"]: {**m, "volume": volumes[m["name"]]} for m in spec["volumeMounts"]}


POD_NAME = "kel-kelemetry-worker-7d9c5b8f4-x2x9q"


def started_role(command: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, tuple[Any, ...]]:
    """The rendered `serve --queue ... --role ...` through the parser and every check `serve` makes
    before it starts a role; what the role would have been started with (nothing is served)."""
    from kelemetry.queue import webhook, worker

    started: list[tuple[str, tuple[Any, ...]]] = []
    replicas: list[webhook.WebhookReplica] = []
    made = webhook.WebhookReplica

    def replica(*args: Any, **kwargs: Any) -> webhook.WebhookReplica:
        replicas.append(made(*args, **kwargs))
        return replicas[-1]

    def run_webhook(app: Any, host: str, port: int, listen: str, tls: Any = None) -> None:
        (one,) = replicas
        started.append(("webhook", (one.queue, one.settings, host, port, tls)))

    def run_worker(*settings: Any) -> int:
        started.append(("worker", settings))
        return 0

    monkeypatch.setattr(webhook, "WebhookReplica", replica)
    monkeypatch.setattr(cli, "_run_server", run_webhook)
    monkeypatch.setattr(cli, "_announce", lambda *_: None)
    monkeypatch.setattr(worker, "serve", run_worker)
    # The kubelet expands $(POD_NAME) before the process starts (the downward API fills it).
    command = [part.replace("$(POD_NAME)", POD_NAME) for part in command]
    args = cli.build_parser().parse_args(command[1:])
    assert command[0] == "kelemetry" and args.command == "serve"
    assert cli.cmd_serve(args) == 0
    (role,) = started
    return role


def test_the_scaled_mode_is_off_by_default(defaults: list[dict[str, Any]]) -> None:
    assert yaml.safe_load((CHART / "values.yaml").read_text())["scaled"]["enabled"] is False
    assert not [d for d in defaults if d["metadata"]["name"].endswith(("-webhook", "-worker", "-frontend"))]


def test_the_scaled_release_renders_three_roles_and_no_embedded_collector(
    scaled: list[dict[str, Any]],
) -> None:
    assert kinds(scaled) == sorted(
        f"{kind}/{FULLNAME}{suffix}"
        for kind, suffix in [
            ("ConfigMap", "-apiserver"),
            ("Deployment", "-frontend"),
            ("Deployment", "-webhook"),
            ("Deployment", "-worker"),
            ("Secret", "-token"),
            ("Service", ""),
            ("Service", "-webhook"),
            ("ServiceAccount", ""),
        ]
    )
    replicas = {
        role: find(scaled, "Deployment", f"{FULLNAME}-{role}")["spec"]["replicas"]
        for role in ("webhook", "worker", "frontend")
    }
    assert replicas == {"webhook": 2, "worker": 3, "frontend": 1}
    for role in ("webhook", "worker", "frontend"):
        pod = role_pod(scaled, role)
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        (spec,) = pod["containers"]
        assert spec["securityContext"]["readOnlyRootFilesystem"] is True
        assert spec["resources"]["requests"]["cpu"] and spec["resources"]["limits"]["memory"]
        writable = {root for root, m in role_mounts(scaled, role).items() if not m.get("readOnly")}
        assert all(
            m["volume"].get("emptyDir") == {}
            for root, m in role_mounts(scaled, role).items()
            if root in writable
        )


def test_the_webhook_role_starts_with_the_rendered_flags(
    scaled: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    role, (queue, webhook, host, port, tls) = started_role(role_command_line(scaled, "webhook"), monkeypatch)
    assert role == "webhook"
    assert (queue.url, queue.partitions, queue.replicas, queue.lease_seconds) == (
        "nats://nats.messaging:4222",
        16,
        1,
        10,
    )
    assert webhook.default_cluster == "default" and (host, port) == ("0.0.0.0", 8080) and tls is None
    assert webhook.max_body_bytes == times.parse_size("64MB")


def test_each_worker_is_named_after_its_pod_and_keeps_its_state_in_an_empty_dir(
    scaled: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    role, (queue, worker, trace, host, port) = started_role(role_command_line(scaled, "worker"), monkeypatch)
    assert role == "worker" and queue.partitions == 16 and (host, port) == ("0.0.0.0", 8080)
    assert worker.otlp_endpoint == "grpc://jaeger-collector.tracing:4317"
    assert worker.snapshot_seconds == 30
    assert worker.settle_seconds == 15
    # The kubelet replaces $(POD_NAME) with the variable the downward API fills with the Pod's name.
    assert "$(POD_NAME)" in role_command_line(scaled, "worker")
    assert worker.worker_id == POD_NAME
    (spec,) = role_pod(scaled, "worker")["containers"]
    env = {e["name"]: e for e in spec["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert role_mounts(scaled, "worker")[worker.state_dir]["volume"]["emptyDir"] == {}
    assert trace == cli._trace_settings(
        cli.build_parser().parse_args(role_command_line(scaled, "worker")[1:])
    )


def test_other_scaled_values_reach_every_role(
    scaled_others: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = cli.build_parser()
    hook = parser.parse_args(role_command_line(scaled_others, "webhook")[1:])
    assert hook.queue == "nats://nats-0.nats:4222,nats://nats-1.nats:4222"
    assert (hook.partitions, hook.queue_replicas, hook.lease) == (64, 3, "20s")
    assert (hook.tls_cert, hook.tls_key) == ("/etc/kelemetry/tls/tls.crt", "/etc/kelemetry/tls/tls.key")
    # The webhook scrubs what it publishes with the same rules the workers get.
    assert hook.redact == ["configmaps:data"]
    assert role_mounts(scaled_others, "webhook")["/etc/kelemetry/tls"]["volume"]["secret"] == {
        "secretName": "kelemetry-tls"
    }
    # The worker serves plain http (probes and metrics inside the cluster only): no TLS flags.
    role, (queue, worker, trace, _, _) = started_role(role_command_line(scaled_others, "worker"), monkeypatch)
    assert (queue.partitions, queue.replicas, queue.lease_seconds, worker.snapshot_seconds) == (64, 3, 20, 60)
    assert worker.settle_seconds == 20
    assert trace.redact and (trace.window_seconds, trace.cache_bytes) == (3600, 256 * 1024 * 1024)
    front = parser.parse_args(role_command_line(scaled_others, "frontend")[1:])
    assert front.public_query and front.tls_cert == "/etc/kelemetry/tls/tls.crt"
    for role, count in (("webhook", 4), ("worker", 6), ("frontend", 2)):
        assert find(scaled_others, "Deployment", f"{FULLNAME}-{role}")["spec"]["replicas"] == count
        (spec,) = role_pod(scaled_others, role)["containers"]
        env = {e["name"]: e for e in spec["env"]}
        assert env["KELEMETRY_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "kelemetry-token",
            "key": "bearer",
        }
        scheme = "HTTP" if role == "worker" else "HTTPS"
        assert {
            spec[p]["httpGet"]["scheme"] for p in ("startupProbe", "livenessProbe", "readinessProbe")
        } == {scheme}


def test_the_frontend_reads_jaeger(scaled: list[dict[str, Any]]) -> None:
    command = role_command_line(scaled, "frontend")
    args = cli.build_parser().parse_args(command[1:])
    assert command[0] == "kelemetry" and args.command == "frontend"
    assert args.jaeger_url == "http://jaeger-query.tracing:16686"
    assert cli.parse_listen(args.listen) == ("0.0.0.0", 8080)
    assert role_mounts(scaled, "frontend")[str(Path(args.views).parent)]["volume"]["emptyDir"] == {}
    # The chart's Service is the web UI and the query API, as in the embedded mode.
    service = find(scaled, "Service", FULLNAME)
    assert (
        service["spec"]["selector"]
        == find(scaled, "Deployment", f"{FULLNAME}-frontend")["spec"]["selector"]["matchLabels"]
    )


def test_the_apiserver_posts_to_the_webhook_replicas(scaled: list[dict[str, Any]]) -> None:
    _, webhook = apiserver_files(scaled)
    service = find(scaled, "Service", f"{FULLNAME}-webhook")
    port = service["spec"]["ports"][0]["port"]
    assert webhook["clusters"][0]["cluster"] == {
        "server": f"http://{FULLNAME}-webhook.{NAMESPACE}.svc:{port}/audit/default"
    }
    selector = service["spec"]["selector"]
    assert selector == find(scaled, "Deployment", f"{FULLNAME}-webhook")["spec"]["selector"]["matchLabels"]
    for role in ("worker", "frontend"):
        labels = find(scaled, "Deployment", f"{FULLNAME}-{role}")["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= labels.items()


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"scaled": {"enabled": True}}, "scaled.enabled needs scaled.queue.url"),
        (
            {"scaled": {**SCALED["scaled"], "queue": {"url": "http://nats:4222"}}},
            'scaled.queue.url: "http://nats:4222" is not a NATS address',
        ),
        ({"scaled": {**SCALED["scaled"], "otlpEndpoint": ""}}, "scaled.enabled needs scaled.otlpEndpoint"),
        ({"scaled": {**SCALED["scaled"], "jaegerUrl": ""}}, "scaled.enabled needs scaled.jaegerUrl"),
        (
            {"scaled": {**SCALED["scaled"], "partitions": 0}},
            "scaled.partitions: Must be greater than or equal to 1",
        ),
        (
            {"scaled": {**SCALED["scaled"], "queue": {"url": "nats://n:4222", "replicas": 2}}},
            "scaled.queue.replicas",
        ),
        ({"scaled": {**SCALED["scaled"], "workers": 3}}, "Additional property workers is not allowed"),
    ],
)
def test_scaled_values_the_roles_cannot_use_are_refused(values: dict[str, Any], reason: str) -> None:
    with pytest.raises(HelmFailed, match=re.escape(reason)):
        template(values)
