"""Kubernetes Events (core/v1 and events.k8s.io/v1) → model Events, and events.jsonl files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kelemetry.kube.kinds import KindResolver
from kelemetry.model.events import TraceSource
from kelemetry.receivers.auditfiles import FileStats, read_kube_events_file, sniff
from kelemetry.receivers.events import EventConverter, is_kube_event, unwrap
from kelemetry.store.sqlite import SpanStore
from tests.conftest import REALDATA
from tests.factories import new_pipeline


def core_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "demo.1", "namespace": "default", "uid": "ev-1", "resourceVersion": "50"},
        "involvedObject": {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "demo-1",
            "namespace": "default",
            "uid": "rs-uid",
        },
        "reason": "SuccessfulCreate",
        "message": "Created pod: demo-1-abc",
        "type": "Normal",
        "count": 1,
        "firstTimestamp": "2024-05-01T10:00:00Z",
        "lastTimestamp": "2024-05-01T10:00:00Z",
        "source": {"component": "replicaset-controller"},
    }
    event.update(overrides)
    return event


def test_core_event_becomes_a_span_under_its_object() -> None:
    event = EventConverter(KindResolver()).convert(core_event(), "c")
    assert event is not None
    assert event.source is TraceSource.EVENT and event.title == "SuccessfulCreate"
    key = event.object.key
    assert (key.group, key.resource, key.namespace, key.name) == ("apps", "replicasets", "default", "demo-1")
    assert event.object.uid == "rs-uid" and event.event_id == "ev-1"
    assert event.tags == {
        "event.reason": "SuccessfulCreate",
        "event.type": "Normal",
        "event.count": 1,
        "event.source": "replicaset-controller",
    }
    assert [log.message for log in event.logs] == ["Created pod: demo-1-abc"]
    # A one-off Event is a point in time, known to the second, ordered by its resourceVersion.
    assert event.end_us == event.start_us and not event.error
    assert (event.precision_us, event.order) == (1_000_000, 50)


def test_a_precise_event_time_wins_over_the_whole_second_first_timestamp() -> None:
    whole = EventConverter(KindResolver()).convert(core_event(), "c")
    precise = EventConverter(KindResolver()).convert(core_event(eventTime="2024-05-01T10:00:00.250000Z"), "c")
    assert whole is not None and precise is not None
    assert precise.start_us == whole.start_us + 250_000


def test_an_event_seen_57_times_is_one_event_with_the_latest_count() -> None:
    converter = EventConverter(KindResolver())
    first = converter.convert(core_event(), "c")
    later = converter.convert(
        core_event(
            count=57,
            lastTimestamp="2024-05-01T10:20:00Z",
            type="Warning",
            reason="BackOff",
            message="Back-off restarting failed container",
        ),
        "c",
    )
    assert first is not None and later is not None
    assert first.event_id == later.event_id and first.start_us == later.start_us
    assert later.tags["event.count"] == 57 and later.end_us - later.start_us == 20 * 60 * 1_000_000
    assert later.error


def test_events_k8s_io_v1_shape() -> None:
    event = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "p.1", "namespace": "ns", "uid": "ev-2"},
        "regarding": {"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "ns", "uid": "pod-uid"},
        "reason": "Scheduled",
        "note": "Successfully assigned ns/p to node-0",
        "type": "Normal",
        "eventTime": "2024-05-01T10:00:00.123456Z",
        "reportingController": "default-scheduler",
        "series": {"count": 3, "lastObservedTime": "2024-05-01T10:05:00.000000Z"},
    }
    converted = EventConverter(KindResolver()).convert(event, "c")
    assert converted is not None
    assert converted.object.key.resource == "pods" and converted.tags["event.count"] == 3
    assert converted.tags["event.source"] == "default-scheduler"
    assert converted.logs[0].message.startswith("Successfully assigned")
    assert converted.end_us - converted.start_us == 5 * 60 * 1_000_000 - 123456
    assert (converted.precision_us, converted.order) == (1, None)


def test_cluster_scoped_involved_object_and_drops() -> None:
    converter = EventConverter(KindResolver())
    node = converter.convert(
        core_event(involvedObject={"kind": "Node", "name": "n0", "namespace": "default", "apiVersion": "v1"}),
        "c",
    )
    assert node is not None and node.object.key.namespace == "" and node.object.key.resource == "nodes"
    assert converter.convert(core_event(involvedObject={}), "c") is None
    assert (
        converter.convert(core_event(firstTimestamp=None, lastTimestamp=None, metadata={"uid": "x"}), "c")
        is None
    )
    assert converter.counts == {"event_kept": 1, "event_dropped_no_object": 1, "event_dropped_no_time": 1}


def test_unwrap_and_recognise() -> None:
    assert unwrap({"type": "MODIFIED", "object": core_event()}) == ("MODIFIED", core_event())
    assert unwrap(core_event()) == ("ADDED", core_event())
    assert is_kube_event(core_event()) and is_kube_event({"type": "ADDED", "object": core_event()})
    assert not is_kube_event({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "x"})
    assert unwrap([1]) is None


@pytest.mark.parametrize("api_version", [["v1"], {"v": 1}, None, 1])
def test_a_record_of_kind_event_with_an_odd_api_version_is_not_a_kube_event(
    tmp_path: Path, api_version: Any
) -> None:
    # Found by tests/fuzz: a list here was looked up in a set and `kelemetry replay` died with a
    # traceback; the line is unreadable, the valid line after it is still read.
    odd = {"kind": "Event", "apiVersion": api_version, "auditID": "x", "stage": "ResponseComplete"}
    assert not is_kube_event(odd)
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(odd) + "\n" + json.dumps(core_event()) + "\n")
    stats = FileStats()
    assert [len(batch) for batch in read_kube_events_file(str(path), stats)] == [1]
    assert stats.bad_lines == 1


def test_events_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [
        json.dumps(core_event()),
        json.dumps({"type": "DELETED", "object": core_event()}),
        "not json",
        json.dumps({"type": "MODIFIED", "object": core_event(count=2)}),
    ]
    path.write_text("\n".join(lines) + "\n")
    assert sniff(str(path)) == "events"
    stats = FileStats()
    batches = list(read_kube_events_file(str(path), stats))
    assert [e["count"] for batch in batches for e in batch] == [1, 2]
    assert (stats.events, stats.bad_lines) == (3, 1)


def test_real_recorded_events(realdata: Path) -> None:
    docs = [
        d
        for d in yaml.safe_load_all((REALDATA / "kspan_deployment_2_pods_recording.yaml").read_text())
        if d and d.get("kind") == "Event"
    ]
    converter = EventConverter(KindResolver())
    events = [converter.convert(d, "c") for d in docs]
    assert len(events) == 19 and all(e is not None for e in events)
    reasons = {(e.object.key.resource, e.title) for e in events if e is not None}
    assert {
        ("deployments", "ScalingReplicaSet"),
        ("replicasets", "SuccessfulCreate"),
        ("pods", "Scheduled"),
    } <= reasons


@pytest.mark.parametrize("name", ["events.jsonl"])
def test_recorded_sample_events_replay(name: str) -> None:
    sample = Path(__file__).resolve().parents[3] / "samples" / "deployment" / name
    assert sniff(str(sample)) == "events"
    converter = EventConverter(KindResolver())
    converted = [
        converter.convert(e, "tracetest") for batch in read_kube_events_file(str(sample)) for e in batch
    ]
    assert converted and all(e is not None for e in converted)


def test_one_span_per_event_object_through_the_store(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "k.db")
    pipeline = new_pipeline(store)
    for count in range(1, 58):
        pipeline.process_kube_events(
            [core_event(count=count, lastTimestamp=f"2024-05-01T10:{count % 30:02d}:00Z")], "c"
        )
    spans = [s for s in store.all_spans() if s.source is TraceSource.EVENT]
    assert len(spans) == 1 and spans[0].tags["event.count"] == 57
    before = store.digest_rows()
    pipeline.process_kube_events([core_event(count=57, lastTimestamp="2024-05-01T10:27:00Z")], "c")
    assert store.digest_rows() == before  # seen again after a restart or relist: nothing changes
    store.close()
