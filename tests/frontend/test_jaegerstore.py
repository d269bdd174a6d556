"""The Jaeger backend (frontend.jaegerstore): the query side reading our spans back from Jaeger.

A stand-in Jaeger on loopback (tests/jaeger/fakejaeger.py) serves every span of the replayed
Deployment sample the way Jaeger returns them after our OTLP export: services ``object`` /
``audit`` / ``event``, our tags plus the SDK's (``otel.scope.name``, ``span.kind``, status), logs
with ``event`` = kind and ``message``. Spans of other services (kube-apiserver's own traces) are
mixed in.

Covers: find_objects (the search Jaeger gets, the key checked locally, empty namespaces),
trace (the same merged tree the embedded store gives), a whole view through QueryService equal to
the store's, clusters / resources / suggest from recent object spans (and their short cache),
foreign spans ignored, and an unreachable or failing Jaeger raising BackendError with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from frontend.assemble import AssembledTrace, ObjectQuery
from frontend.backend import StoreBackend, Suggestion
from frontend.jaegerstore import JaegerBackend, record_of
from frontend.query import QueryService
from frontend.views import ViewStore
from jaeger.client import JaegerClient
from kelemetry import errors
from kelemetry.model.objects import KnownObject
from kelemetry.model.spans import SpanRecord
from kelemetry.store.sqlite import StoreReader
from tests.jaeger.fakejaeger import FakeJaeger, Reply, closed_port_url, jaeger_traces, serving

CLUSTER = "tracetest"
# The sample was recorded at a fixed date: search far enough back whatever today is.
LOOKBACK_US = 50 * 365 * 86_400 * 1_000_000
FOREIGN_TRACE = {
    "traceID": "0123456789abcdef0123456789abcdef",
    "spans": [
        {
            "traceID": "0123456789abcdef0123456789abcdef",
            "spanID": "00000000000000aa",
            "operationName": "HTTP GET",
            "references": [],
            "startTime": 1_795_418_610_000_000,
            "duration": 100,
            "tags": [
                {"key": "resource", "type": "string", "value": "deployments"},
                {"key": "name", "type": "string", "value": "demo"},
                {"key": "otel.scope.name", "type": "string", "value": "k8s.io/apiserver"},
            ],
            "logs": [],
            "processID": "p1",
            "warnings": None,
            "flags": 1,
        }
    ],
    "processes": {"p1": {"serviceName": "object", "tags": []}},
    "warnings": None,
}


@pytest.fixture(scope="module")
def records(sample_store: Path) -> list[SpanRecord]:
    reader = StoreReader(sample_store)
    try:
        return [record for _seq, record in reader.spans_after(0, 1_000_000)]
    finally:
        reader.close()


@pytest.fixture
def jaeger(records: list[SpanRecord]) -> Iterator[FakeJaeger]:
    with serving(FakeJaeger(traces=[*jaeger_traces(records), FOREIGN_TRACE])) as fake:
        yield fake


@pytest.fixture
def backend(jaeger: FakeJaeger) -> JaegerBackend:
    return JaegerBackend(JaegerClient(jaeger.url), lookback_us=LOOKBACK_US)


@pytest.fixture
def store_backend(sample_store: Path) -> Iterator[StoreBackend]:
    opened = StoreBackend(StoreReader(sample_store))
    yield opened
    opened.close()


def query(resource: str = "deployments", name: str = "demo", **fields: Any) -> ObjectQuery:
    return ObjectQuery(cluster=fields.pop("cluster", CLUSTER), resource=resource, name=name, **fields)


def summary(trace: AssembledTrace) -> list[tuple[Any, ...]]:
    """Every span with its parent and content, in span id order (spans that start at the same time
    under the same name may come in either order from either backend)."""
    return sorted(
        (
            node.span.span_id,
            node.span.parent_id,
            node.span.source,
            node.span.name,
            node.span.start_us,
            node.span.end_us,
            node.span.key,
            node.span.uid,
            node.span.kind,
            node.span.version,
            node.span.tags,
            node.span.logs,
            node.span.error,
        )
        for node in trace.walk()
    )


def normalized(document: Any) -> Any:
    """A Jaeger trace with its spans in span id order and each span's logs in (time, fields) order."""
    spans = sorted(document["spans"], key=lambda span: span["spanID"])
    for span in spans:
        span["logs"] = sorted(span["logs"], key=lambda log: (log["timestamp"], repr(log["fields"])))
    return {**document, "spans": spans}


def test_the_canned_jaeger_data_holds_the_whole_sample(records: list[SpanRecord], jaeger: FakeJaeger) -> None:
    assert len(records) > 150
    assert sum(len(t["spans"]) for t in jaeger.traces) == len(records) + 1


# -- finding objects


def test_find_objects_searches_the_object_service_by_key_tags(
    backend: JaegerBackend, jaeger: FakeJaeger
) -> None:
    before = time.time_ns() // 1000
    (row,) = backend.find_objects(query())
    after = time.time_ns() // 1000

    assert row.key.display == "deployments.apps/demo"
    assert (row.key.cluster, row.key.namespace) == (CLUSTER, "default")
    assert (row.uid, row.kind, row.version) == ("3eddc752-c366-47dd-853f-8173422d7ebd", "Deployment", "v1")
    assert row.first_us is not None and row.last_us is not None and row.first_us < row.last_us

    ((path, params),) = jaeger.requests
    assert path == "/api/traces"
    assert params["service"] == ["object"]
    assert params["limit"] == ["1000"]
    assert params["tags"] == ['{"resource":"deployments","name":"demo","cluster":"tracetest"}']
    end = int(params["end"][0])
    assert before <= end <= after
    # The search starts at the start of the window the lookback begins in (object spans start there).
    lookback_start = end - LOOKBACK_US
    assert int(params["start"][0]) == lookback_start - lookback_start % (1800 * 1_000_000)


def test_find_objects_agrees_with_the_store(backend: JaegerBackend, store_backend: StoreBackend) -> None:
    for resource, name in (
        ("deployments", "demo"),
        ("replicasets", "demo-85dd8d7bd8"),
        ("nodes", "kwok-node-0"),
    ):
        (mine,) = backend.find_objects(query(resource, name))
        (stored,) = store_backend.find_objects(query(resource, name))
        assert (mine.object_id, mine.key, mine.uid, mine.kind) == (
            stored.object_id,
            stored.key,
            stored.uid,
            stored.kind,
        )


def test_find_objects_passes_a_given_range_and_checks_empty_fields_itself(
    backend: JaegerBackend, jaeger: FakeJaeger
) -> None:
    # A cluster-scoped object: the empty namespace is not sent (Jaeger cannot match ""), but checked.
    (node,) = backend.find_objects(query("nodes", "kwok-node-0", namespace="", group=""))
    assert node.key.namespace == "" and node.key.group == ""
    sent = jaeger.requests[-1][1]
    assert sent["tags"] == ['{"resource":"nodes","name":"kwok-node-0","cluster":"tracetest"}']
    assert backend.find_objects(query(namespace="")) == []
    assert backend.find_objects(query(group="")) == []
    assert backend.find_objects(query(namespace="kube-system")) == []
    assert backend.find_objects(query(cluster="elsewhere")) == []
    assert backend.find_objects(query(start_us=1, end_us=2)) == []
    assert jaeger.requests[-1][1]["start"] == ["0"] and jaeger.requests[-1][1]["end"] == ["2"]
    assert backend.find_objects(query("pods", "nothing-like-it")) == []
    # No cluster: any.
    assert len(backend.find_objects(query(cluster=""))) == 1


# -- traces


def test_a_trace_read_back_from_jaeger_is_the_stores_trace(
    backend: JaegerBackend, store_backend: StoreBackend
) -> None:
    for resource, name in (("deployments", "demo"), ("pods", "demo-5544f8b48c-b25t4")):
        (row,) = backend.find_objects(query(resource, name))
        (stored_row,) = store_backend.find_objects(query(resource, name))
        from_jaeger = backend.trace(row, None, None)
        from_store = store_backend.trace(stored_row, None, None)
        assert from_jaeger.trace_id == from_store.trace_id
        assert from_jaeger.warnings == from_store.warnings
        assert summary(from_jaeger) == summary(from_store)


def test_a_view_over_jaeger_renders_as_the_view_over_the_store(
    backend: JaegerBackend, sample_store: Path
) -> None:
    over_jaeger = QueryService(backend, ViewStore(None))
    over_store = QueryService(StoreBackend(StoreReader(sample_store)), ViewStore(None))
    try:
        for mode in ("21000000", "01000000", "32000000"):
            (mine,) = over_jaeger.lookup(query("replicasets", "demo-85dd8d7bd8"))
            (stored,) = over_store.lookup(query("replicasets", "demo-85dd8d7bd8"))
            assert mine.view_id == stored.view_id
            view_id = f"ff{mode}{mine.view_id[10:]}"
            assert normalized(over_jaeger.view(view_id)) == normalized(over_store.view(view_id))
    finally:
        over_jaeger.close()
        over_store.close()


def test_a_range_inside_a_window_finds_the_activity_in_it(
    backend: JaegerBackend, store_backend: StoreBackend
) -> None:
    """Jaeger matches a search by span start time, and an object span starts at its window's start:
    a range that begins later in the window must still find the object and the requests in range
    (as the embedded store does; Go Kelemetry retries with the range widened to window bounds)."""
    (row,) = backend.find_objects(query())
    whole = backend.trace(row, None, None)
    requests = sorted(n.span.start_us for n in whole.walk() if n.span.source.value != "object")
    start, end = requests[5], requests[20]
    (stored_row,) = store_backend.find_objects(query())
    expected = store_backend.trace(stored_row, start, end)
    assert 0 < sum(1 for n in expected.walk() if n.span.source.value != "object") < len(requests)

    assert [r.key for r in backend.find_objects(query(start_us=start, end_us=end))] == [row.key]
    assert summary(backend.trace(row, start, end)) == summary(expected)


def test_an_object_without_spans_has_no_activity(backend: JaegerBackend) -> None:
    (row,) = backend.find_objects(query())
    ghost = KnownObject(row.object_id + 1, row.key._replace(name="ghost"))
    with pytest.raises(errors.NotFound, match=r"^deployments\.apps/ghost has no activity in the requested"):
        backend.trace(ghost, None, None)


def test_spans_that_are_not_ours_are_ignored(jaeger: FakeJaeger) -> None:
    foreign = FOREIGN_TRACE["spans"][0]  # type: ignore[index]
    assert record_of(foreign, 1) is None
    ours = jaeger.traces[0]["spans"][0]
    no_key = {**ours, "tags": [t for t in ours["tags"] if t["key"] != "resource"]}
    assert record_of(no_key, 1) is None
    record = record_of(ours, int(jaeger.traces[0]["traceID"], 16))
    assert record is not None
    assert not any(k.startswith(("otel.", "span.kind", "internal.")) for k in record.tags)


# -- listing


def test_clusters_resources_and_suggestions_come_from_recent_object_spans(
    backend: JaegerBackend, store_backend: StoreBackend, jaeger: FakeJaeger
) -> None:
    assert backend.clusters() == [CLUSTER]
    resources = {(r.group, r.resource): (r.kind, r.objects) for r in backend.resources(None)}
    assert resources[("apps", "deployments")] == ("Deployment", 1)
    assert resources[("apps", "replicasets")] == ("ReplicaSet", 2)
    assert resources[("", "pods")] == ("Pod", 8)
    assert backend.resources(None) == store_backend.resources(None)
    assert backend.resources(CLUSTER) == store_backend.resources(CLUSTER)
    assert backend.resources("elsewhere") == []

    names = [row.key.name for row in backend.suggest(Suggestion(text="demo-85"))]
    assert "demo-85dd8d7bd8" in names
    assert len(names) == 5 and all(name.startswith("demo-85") for name in names)
    pods = backend.suggest(Suggestion(resource="pods", text="DEMO-5544", limit=2))
    assert len(pods) == 2 and all(r.key.resource == "pods" for r in pods)
    last = [row.last_us or 0 for row in backend.suggest(Suggestion(resource="pods"))]
    assert last == sorted(last, reverse=True)
    by_uid = backend.suggest(Suggestion(text="3eddc752-c366-47dd-853f-8173422d7ebd"))
    assert [row.key.name for row in by_uid] == ["demo"]
    assert backend.suggest(Suggestion(cluster="elsewhere")) == []
    assert backend.suggest(Suggestion(namespace="kube-system")) == []
    assert backend.suggest(Suggestion(group="apps", resource="deployments"))[0].key.name == "demo"

    # All of that came from one search of the object service, cached briefly.
    assert len(jaeger.requests) == 1
    assert "tags" not in jaeger.requests[0][1] and jaeger.requests[0][1]["service"] == ["object"]


# -- failures


def test_an_unreachable_jaeger_is_a_backend_error_naming_it() -> None:
    url = closed_port_url()
    backend = JaegerBackend(JaegerClient(url), lookback_us=LOOKBACK_US)
    for call in (lambda: backend.find_objects(query()), backend.clusters, lambda: backend.resources(None)):
        with pytest.raises(errors.BackendError) as caught:
            call()
        assert str(caught.value).startswith(f"cannot reach Jaeger at {url}: ")


def test_a_failing_jaeger_is_a_backend_error_with_its_answer(
    backend: JaegerBackend, jaeger: FakeJaeger
) -> None:
    jaeger.reply = Reply(status=503, body=b"storage unavailable")
    with pytest.raises(errors.BackendError) as caught:
        backend.find_objects(query())
    assert str(caught.value).startswith("Jaeger answered 503 for ")
    assert str(caught.value).endswith(": storage unavailable")


def test_a_lookup_over_an_unreachable_jaeger_is_not_a_not_found() -> None:
    service = QueryService(JaegerBackend(JaegerClient(closed_port_url())), ViewStore(None))
    try:
        with pytest.raises(errors.BackendError):
            service.lookup(query())
    finally:
        service.close()
