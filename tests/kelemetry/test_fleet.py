"""Many clusters, one tree: the collector's cluster flags, and objects linked across clusters by the
pipeline (Kelemetry's parent-link annotation here; the federation systems' linkers have their own
tests). The real fleet — a KubeAdmiral host and two members — is in tests/e2e/test_fleet.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from frontend.types import ObjectQuery
from kelemetry import cli
from kelemetry.kube.kinds import KindResolver
from kelemetry.linker.links import Clusters
from kelemetry.linker.systems.annotation import ANNOTATION
from kelemetry.model.events import TraceSource
from kelemetry.pipeline import Pipeline, build
from kelemetry.settings import ClusterSettings, TraceSettings
from kelemetry.store.sqlite import SpanStore
from tests.factories import at, audit_event, owner_ref
from tests.lookups import assemble

NOTHING_EXCLUDED = TraceSettings(excluded_resources=(), excluded_user_agents=())


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        pytest.param(["/k/one"], [ClusterSettings("prod", "/k/one")], id="unnamed-is-the-cluster"),
        pytest.param(
            ["host=/k/h", "member-1=/k/all#ctx-1"],
            [ClusterSettings("host", "/k/h"), ClusterSettings("member-1", "/k/all", "ctx-1")],
            id="named-and-a-context",
        ),
        pytest.param(
            ["./dir=with/equals"], [ClusterSettings("prod", "./dir=with/equals")], id="path-with-eq"
        ),
    ],
)
def test_kubeconfig_flags_name_the_clusters(specs: list[str], expected: list[ClusterSettings]) -> None:
    assert list(cli.parse_clusters(specs, "prod")) == expected


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        pytest.param(["a=/x", "a=/y"], "cluster a given twice", id="twice"),
        pytest.param(["/x", "prod=/y"], "cluster prod given twice", id="unnamed-and-named-alike"),
        pytest.param(["bad name=/x"], "invalid cluster name 'bad name'", id="invalid-name"),
        pytest.param(["a="], "names no file", id="no-file"),
    ],
)
def test_bad_kubeconfig_flags_are_one_line_errors(specs: list[str], message: str) -> None:
    with pytest.raises(cli.CliError, match=message):
        cli.parse_clusters(specs, "prod")


def test_serve_replays_each_file_as_its_clusters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a.log", "odd=name.log"):
        (tmp_path / name).write_text("")
    specs = ["a.log", "member-1=a.log", "odd=name.log", "./a.log"]
    assert cli.parse_replays(specs, "host") == [
        ("host", "a.log"),
        ("member-1", "a.log"),
        ("host", "odd=name.log"),  # a file that exists is a file, whatever its name
        ("host", "./a.log"),
    ]
    with pytest.raises(cli.CliError, match=r"cannot read missing\.log: no such file"):
        cli.parse_replays(["member-1=missing.log"], "host")
    with pytest.raises(cli.CliError, match="invalid cluster name 'bad name'"):
        cli.parse_replays(["bad name=a.log"], "host")


def link(cluster: str, name: str, namespace: str = "default", uid: str = "") -> str:
    target = {"cluster": cluster, "group": "apps", "version": "v1", "resource": "deployments"}
    return json.dumps({**target, "namespace": namespace, "name": name, **({"uid": uid} if uid else {})})


def deployment(
    name: str, uid: str, second: int, annotations: dict[str, str] | None = None, audit_id: str = ""
) -> dict[str, Any]:
    event = audit_event(
        resource="deployments",
        group="apps",
        name=name,
        uid=uid,
        audit_id=audit_id or f"d-{uid}",
        **at(second),
    )
    if annotations:
        for side in ("requestObject", "responseObject"):
            event[side]["metadata"]["annotations"] = annotations
    return event


def member_hierarchy(cluster: str, parent: str, second: int) -> list[dict[str, Any]]:
    """A member Deployment linked to the host's ``fleet`` by annotation, with its ReplicaSet and Pod."""
    return [
        deployment("fleet", f"{cluster}-d", second, {ANNOTATION: parent}),
        audit_event(
            resource="replicasets",
            group="apps",
            name="fleet-5d4",
            uid=f"{cluster}-r",
            owner=owner_ref("Deployment", "fleet", uid=f"{cluster}-d"),
            audit_id=f"rs-{cluster}",
            **at(second + 1),
        ),
        audit_event(
            name=f"fleet-5d4-{cluster}",
            uid=f"{cluster}-p",
            owner=owner_ref("ReplicaSet", "fleet-5d4", uid=f"{cluster}-r"),
            audit_id=f"pod-{cluster}",
            **at(second + 2),
        ),
    ]


def fleet_pipeline(store: SpanStore, names: frozenset[str] = frozenset()) -> Pipeline:
    return build(store, NOTHING_EXCLUDED, KindResolver(), clusters=Clusters(names))


def trace_of(path: Path, cluster: str, resource: str, name: str) -> Any:
    return assemble(path, ObjectQuery(cluster=cluster, resource=resource, name=name, namespace="default"))


def objects(trace: Any) -> list[tuple[str, str, str]]:
    return sorted(
        (n.span.key.cluster, n.span.key.resource, n.span.key.name)
        for n in trace.walk()
        if n.span.source is TraceSource.OBJECT
    )


def test_members_hang_under_the_host_object_in_one_tree(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = SpanStore(path)
    pipeline = fleet_pipeline(store)
    pipeline.process_audit([deployment("fleet", "host-d", 0)], "host")
    pipeline.process_audit(member_hierarchy("member-1", link("host", "fleet"), 10), "member-1")
    pipeline.process_audit(member_hierarchy("member-2", link("host", "fleet"), 20), "member-2")
    store.close()
    expected = [("host", "deployments", "fleet")] + [
        (member, resource, name)
        for member in ("member-1", "member-2")
        for resource, name in (
            ("deployments", "fleet"),
            ("pods", f"fleet-5d4-{member}"),
            ("replicasets", "fleet-5d4"),
        )
    ]
    assert objects(trace_of(path, "host", "deployments", "fleet")) == sorted(expected)
    # From a member's Pod, the trace is the same fleet tree, rooted at the host Deployment.
    from_pod = trace_of(path, "member-2", "pods", "fleet-5d4-member-2")
    assert (from_pod.root.span.key.cluster, from_pod.root.span.uid) == ("host", "host-d")
    assert pipeline.links.counts == {"linked_annotation": 2}


def test_a_member_seen_before_its_host_object_moves_under_it_when_the_host_object_comes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "k.db"
    store = SpanStore(path)
    pipeline = fleet_pipeline(store)
    pipeline.process_audit(member_hierarchy("member-1", link("host", "fleet"), 10), "member-1")
    pipeline.process_audit([deployment("fleet", "host-d", 20)], "host")
    store.close()
    trace = trace_of(path, "member-1", "pods", "fleet-5d4-member-1")
    assert (trace.root.span.key.cluster, trace.root.span.uid) == ("host", "host-d")
    assert ("member-1", "deployments", "fleet") in objects(trace)


@pytest.mark.parametrize(
    ("annotation", "reason"),
    [
        pytest.param("{not json", "is not JSON", id="bad-json"),
        pytest.param(json.dumps(["host"]), "is not a JSON object", id="not-object"),
        pytest.param(
            json.dumps({"cluster": "host", "resource": "deployments"}),
            "names no resource or name",
            id="no-name",
        ),
        pytest.param(link("nowhere", "fleet"), "not one of ours", id="unknown-cluster"),
        pytest.param(json.dumps({"name": 5, "resource": "deployments"}), "not a string", id="wrong-type"),
    ],
)
def test_bad_links_are_refused_counted_and_logged_once(
    tmp_path: Path, annotation: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SpanStore(tmp_path / "k.db")
    pipeline = fleet_pipeline(store, frozenset({"host", "member-1"}))
    bad = deployment("stray", "s-1", 0, {ANNOTATION: annotation})
    again = deployment("stray", "s-1", 1, {ANNOTATION: annotation}, audit_id="again")
    result = pipeline.process_audit([bad, again], "member-1")
    store.close()
    assert result.failed == 0 and result.kept == 2
    assert pipeline.links.counts == {"refused_annotation": 2}
    assert (
        pipeline.graph.chain(pipeline.graph.resolve(_ref("member-1", "stray")).incarnation)[-1].key.name
        == "stray"
    )
    warnings = [r.getMessage() for r in caplog.records if "not followed" in r.getMessage()]
    assert len(warnings) == 1 and reason in warnings[0]


def _ref(cluster: str, name: str) -> Any:
    from kelemetry.model.objects import ObjectKey, ObjectRef

    return ObjectRef(ObjectKey.make(cluster, "apps", "deployments", "default", name))


def test_a_link_that_would_close_a_cycle_is_refused(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "k.db")
    pipeline = fleet_pipeline(store)
    pipeline.process_audit([deployment("a", "u-a", 0, {ANNOTATION: link("member-2", "b")})], "member-1")
    pipeline.process_audit([deployment("b", "u-b", 1, {ANNOTATION: link("member-1", "a")})], "member-2")
    store.close()
    assert pipeline.links.counts == {"linked_annotation": 1, "refused_annotation": 1}
    root = pipeline.graph.root(pipeline.graph.resolve(_ref("member-1", "a")).incarnation)
    assert (root.key.cluster, root.key.name) == ("member-2", "b")


def test_user_link_rules_from_a_file_link_in_house_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - name: app-owner\n"
        "    match: {resource: deployments, labels: {app.example.com/owner: null}}\n"
        "    parent:\n"
        "      {cluster: host, group: apps, resource: deployments, name: '{labels[app.example.com/owner]}'}\n"
    )
    owned = deployment("worker", "w-1", 10)
    for side in ("requestObject", "responseObject"):
        owned[side]["metadata"]["labels"] = {"app.example.com/owner": "fleet"}
    host_log, member_log = tmp_path / "host.log", tmp_path / "member.log"
    host_log.write_text(json.dumps(deployment("fleet", "host-d", 0)) + "\n")
    member_log.write_text(json.dumps(owned) + "\n")
    store = tmp_path / "k.db"
    for path, cluster in ((host_log, "host"), (member_log, "member-1")):
        argv = ["replay", "--quiet", "--cluster", cluster, "--store", str(store), str(path)]
        assert cli.main([*argv, "--link-rules", str(rules)]) == 0
    trace = trace_of(store, "member-1", "deployments", "worker")
    assert (trace.root.span.key.cluster, trace.root.span.key.name) == ("host", "fleet")

    rules.write_text("rules: [1")
    capsys.readouterr()
    assert cli.main(["replay", "--store", str(store), str(host_log), "--link-rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kelemetry: error: cannot use the link rules") and err.count("\n") == 1
