"""The Helm chart in kelemetry/deploy/helm/kelemetry, rendered by a real helm.

helm is built from the Go module proxy by tests/e2e/build-servers.sh into the same cache as the
e2e servers (`make test` builds it first); a test run that finds it missing builds it then.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.servers import BUILD_SCRIPT, CACHE, REPO

CHART = REPO / "kelemetry" / "deploy" / "helm" / "kelemetry"
CONTAINERFILE = REPO / "kelemetry" / "deploy" / "Containerfile"
HELM_VERSION = os.environ.get("HELM_VERSION", "v3.18.4")
RELEASE = "kel"
NAMESPACE = "tracing"
FULLNAME = "kel-kelemetry"
# The least a scaled-mode release needs: the operator's NATS and Jaeger.
SCALED_VALUES: dict[str, Any] = {
    "scaled": {
        "enabled": True,
        "queue": {"url": "nats://nats.messaging:4222"},
        "otlpEndpoint": "grpc://jaeger-collector.tracing:4317",
        "jaegerUrl": "http://jaeger-query.tracing:16686",
    }
}


class HelmFailed(RuntimeError):
    """helm refused the chart or the values; the message is helm's own."""


def helm() -> Path:
    binary = CACHE / "bin" / f"helm-{HELM_VERSION}" / "helm"
    if not binary.exists():
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "helm"], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"building helm failed:\n{result.stderr[-4000:]}")
    return binary


def run_helm(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    # helm keeps a cache and config under HOME; a throwaway one keeps test runs apart.
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HELM_CACHE_HOME": home, "HELM_CONFIG_HOME": home, "HELM_DATA_HOME": home}
        result = subprocess.run(
            [str(helm()), *map(str, args)], capture_output=True, text=True, check=False, env=env, timeout=120
        )
    if check and result.returncode != 0:
        raise HelmFailed(result.stderr.strip())
    return result


def render(
    values: Mapping[str, Any] | None = None, *, namespace: str = NAMESPACE, folder: Path | None = None
) -> str:
    """`helm template` of the chart with these values (merged over values.yaml), as YAML text."""
    with tempfile.TemporaryDirectory() as scratch:
        values_file = Path(folder or scratch) / "values.yaml"
        values_file.write_text(yaml.safe_dump(dict(values or {})))
        return run_helm("template", RELEASE, CHART, "--namespace", namespace, "--values", values_file).stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def template(values: Mapping[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    return documents(render(values, **kwargs))


def find(docs: Sequence[Mapping[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        raise LookupError(f"{len(found)} {kind} {name or ''} in the rendered chart")
    return dict(found[0])


def kinds(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)


def container(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    (only,) = pod["containers"]
    return dict(only)


def command_line(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The container's command line as the Pod runs it: its command, then its args."""
    spec = container(docs)
    return [str(a) for a in [*spec["command"], *spec["args"]]]
