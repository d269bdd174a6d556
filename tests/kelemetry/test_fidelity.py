"""Right answers to incident questions, on replays (no cluster needed).

The recorded real Deployment lifecycle (samples/deployment) answers "who scaled it?", "what did the
controller change?" and "what came first?"; synthetic audit streams shaped like the real ones cover
a name used twice and a Namespace delete. The same questions against the live control plane are in
tests/e2e/test_fidelity.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from frontend.types import AssembledTrace, ObjectQuery
from kelemetry import cli
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import KnownObject
from kelemetry.model.spans import SpanRecord
from kelemetry.store.sqlite import StoreReader
from tests.conftest import REPO_ROOT
from tests.factories import at, audit_event, reuse_stream
from tests.lookups import assemble, found

SAMPLE = REPO_ROOT / "samples" / "deployment"
DEPLOYMENT_CONTROLLER = "system:serviceaccount:kube-system:deployment-controller"


def replay(store: Path, *files: Path, cluster: str = "tracetest") -> None:
    assert cli.main(["replay", "--quiet", "--cluster", cluster, "--store", str(store), *map(str, files)]) == 0


def lookup(store: Path, resource: str, name: str, **extra: Any) -> AssembledTrace:
    reader = StoreReader(store)
    try:
        return assemble(
            reader,
            ObjectQuery(cluster=extra.pop("cluster", "tracetest"), resource=resource, name=name, **extra),
        )
    finally:
        reader.close()


def other_names(store: Path, resource: str, name: str, **extra: Any) -> tuple[KnownObject, ...]:
    """The other incarnations of the name that a lookup lists beside the one it opens."""
    query = ObjectQuery(cluster=extra.pop("cluster", "tracetest"), resource=resource, name=name, **extra)
    return found(store, query).incarnations


def spans_of(trace: AssembledTrace, resource: str, name: str) -> list[SpanRecord]:
    return [
        child.span
        for node in trace.walk()
        if node.span.source is TraceSource.OBJECT
        and node.span.key.resource == resource
        and node.span.key.name == name
        for child in node.children
        if child.span.source is not TraceSource.OBJECT
    ]


def object_uids(trace: AssembledTrace, resource: str) -> list[str]:
    return [
        n.span.uid
        for n in trace.walk()
        if n.span.source is TraceSource.OBJECT and n.span.key.resource == resource
    ]


def diff_lines(span: SpanRecord) -> list[str]:
    return [line for log in span.logs if log.kind == "diff" for line in log.message.split("\n")]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> AssembledTrace:
    store = tmp_path_factory.mktemp("sample") / "k.db"
    replay(store, SAMPLE / "audit.log", SAMPLE / "events.jsonl")
    return lookup(store, "deployments", "demo", namespace="default")


def test_who_scaled_it_the_scale_request_carries_the_replica_change(sample: AssembledTrace) -> None:
    spans = spans_of(sample, "deployments", "demo")
    scales = [s for s in spans if s.tags.get("audit.subresource") == "scale"]
    assert [s.tags["audit.user"] for s in scales] == ["admin", "admin"]
    assert "spec.replicas 2 -> 4" in diff_lines(scales[0])
    assert "spec.replicas 4 -> 2" in diff_lines(scales[1])
    # ...and no status update (the controller) is credited with it, or with any other spec change.
    status_writes = [s for s in spans if s.tags.get("audit.subresource") == "status"]
    assert status_writes and all(s.tags["audit.user"] == DEPLOYMENT_CONTROLLER for s in status_writes)
    for span in status_writes:
        assert not [line for line in diff_lines(span) if line.startswith("spec.")], span.name


def test_the_scheduler_binding_carries_the_node_and_kwok_only_its_status(sample: AssembledTrace) -> None:
    pods = {n.span.key.name for n in sample.walk() if n.span.key.resource == "pods"}
    assert len(pods) >= 4
    for pod in pods:
        spans = spans_of(sample, "pods", pod)
        [binding] = [s for s in spans if s.tags.get("audit.subresource") == "binding"]
        assert binding.tags["audit.user"] == "system:kube-scheduler"
        assert 'spec.nodeName null -> "kwok-node-0"' in diff_lines(binding)
        for other in spans:
            if other is not binding:
                assert not [
                    line for line in diff_lines(other) if "nodeName" in line or "PodScheduled" in line
                ]


def test_no_event_is_drawn_before_the_first_request_on_its_object(sample: AssembledTrace) -> None:
    for node in sample.walk():
        if node.span.source is not TraceSource.OBJECT:
            continue
        requests = [c.span for c in node.children if c.span.source is TraceSource.AUDIT]
        events = [c.span for c in node.children if c.span.source is TraceSource.EVENT]
        if requests and events:
            first = min(r.start_us for r in requests)
            early = [e.name for e in events if e.start_us < first]
            assert not early, f"{node.span.key.display}: {early}"


def test_the_scale_up_event_comes_after_the_scale_request(sample: AssembledTrace) -> None:
    spans = spans_of(sample, "deployments", "demo")
    scale = next(s for s in spans if s.tags.get("audit.subresource") == "scale")
    [event] = [
        s
        for s in spans
        if s.source is TraceSource.EVENT
        and any("demo-85dd8d7bd8 from 2 to 4" in log.message for log in s.logs)
    ]
    assert event.start_us >= scale.end_us
    assert event.end_us == event.start_us  # a one-off Event is a point


def test_conditions_are_diffed_by_type_never_by_position(sample: AssembledTrace) -> None:
    lines = [line for node in sample.walk() for line in diff_lines(node.span)]
    assert any(line.startswith("status.conditions[type=Available].status") for line in lines)
    assert not [line for line in lines if "conditions[" in line and '].type "' in line]
    assert not [line for line in lines if "conditions[0]" in line or "conditions[1]" in line]


# -- a name used twice, a Namespace delete (synthetic streams shaped like the real ones)


def write_log(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def test_a_name_used_twice_is_two_objects_and_the_lookup_opens_the_newest(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    replay(store, write_log(tmp_path / "audit.log", reuse_stream()))
    trace = lookup(store, "deployments", "reuse", namespace="default")
    assert trace.root.span.uid == "d-2"
    assert object_uids(trace, "replicasets") == ["r-2"]
    assert object_uids(trace, "pods") == ["p-2"]
    assert [row.uid for row in other_names(store, "deployments", "reuse", namespace="default")] == ["d-1"]
    ids = {c.span.tags.get("audit.id") for c in trace.root.children}
    assert "dep-delete" not in ids and "dep-0" not in ids

    old = lookup(store, "deployments", "reuse", namespace="default", uid="d-1")
    assert old.root.span.uid == "d-1"
    assert {c.span.tags.get("audit.id") for c in old.root.children} >= {"dep-0", "dep-delete"}
    assert object_uids(old, "replicasets") == ["r-1"]
    assert [
        row.uid for row in other_names(store, "deployments", "reuse", namespace="default", uid="d-1")
    ] == ["d-2"]

    reader = StoreReader(store)
    rows = reader.find_objects(
        cluster="tracetest", resource="replicasets", name="reuse-5d4", namespace="default"
    )
    reader.close()
    assert sorted(row.uid for row in rows) == ["r-1", "r-2"]


def test_dump_names_the_other_incarnations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "k.db"
    replay(store, write_log(tmp_path / "audit.log", reuse_stream()))
    capsys.readouterr()
    base = [
        "dump",
        "--store",
        str(store),
        "--cluster",
        "tracetest",
        "--resource",
        "deployments",
        "--name",
        "reuse",
    ]
    assert cli.main(base) == 0
    out = capsys.readouterr().out
    assert "uid d-2" in out.split("\n")[0]
    assert "also the name of uid d-1" in out and "--uid d-1" in out
    assert cli.main([*base, "--uid", "d-1"]) == 0
    assert "uid d-1" in capsys.readouterr().out.split("\n")[0]


def test_a_namespace_is_one_cluster_scoped_object_whatever_objectref_says(tmp_path: Path) -> None:
    store = tmp_path / "k.db"
    created = audit_event(
        resource="namespaces", namespace="", name="gone", uid="ns-1", kind="Namespace", **at(0)
    )
    # DELETE /api/v1/namespaces/gone: the apiserver puts the name into objectRef.namespace.
    deleted = audit_event(
        verb="delete",
        code=200,
        resource="namespaces",
        namespace="gone",
        name="gone",
        uid="ns-1",
        kind="Namespace",
        **at(5),
    )
    replay(store, write_log(tmp_path / "audit.log", [created, deleted]))
    reader = StoreReader(store)
    rows = reader.find_objects(cluster="tracetest", resource="namespaces", name="gone")
    reader.close()
    assert [(row.key.namespace, row.uid) for row in rows] == [("", "ns-1")]
    trace = lookup(store, "namespaces", "gone", namespace="")
    verbs = sorted(str(c.span.tags.get("audit.verb")) for c in trace.root.children)
    assert verbs == ["create", "delete"]


def test_an_older_replayed_incident_survives_retention_next_to_live_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Live data of another cluster, stamped now; then the recorded sample (days older) replayed.
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    live = [audit_event(name="live-0", uid="l-0", received=f"{now}.000000Z", completed=f"{now}.005000Z")]
    store = tmp_path / "k.db"
    replay(store, write_log(tmp_path / "live.log", live), cluster="live")
    replay(store, SAMPLE / "audit.log", SAMPLE / "events.jsonl")
    capsys.readouterr()
    assert cli.main(["retain", "--store", str(store), "--retention", "1h"]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    assert lookup(store, "deployments", "demo", namespace="default").root.span.uid
    assert lookup(store, "pods", "live-0", cluster="live").root.span.uid == "l-0"
