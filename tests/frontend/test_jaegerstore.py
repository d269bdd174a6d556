"""The Jaeger backend (frontend.jaegerstore): the query side reading our spans back from Jaeger.

A stand-in Jaeger on loopback (tests/jaeger/fakejaeger.py) serves every span of the replayed
Deployment sample the way Jaeger returns them after our OTLP export: services ``object`` /
``audit`` / ``event``, our tags plus the SDK's (``otel.scope.name``, ``span.kind``, status), logs
with ``event`` = kind and ``message``. Spans of other services (kube-apiserver's own traces) are
mixed in.

Covers: find_objects (the search Jaeger gets, the key checked locally, empty namespaces),
trace (the same merged tree the embedded store gives), a whole view through QueryService equal to
the store's, one Jaeger search for a lookup and the view opened from it, the window length read
from the object spans (a collector with 2-hour windows), clusters / resources / suggest from recent
object spans (and their short cache), foreign spans ignored, and an unreachable or failing Jaeger
raising BackendError with the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from frontend import jaegerjson
from frontend.backend import StoreBackend
from frontend.jaegerstore import JaegerBackend, record_of
from frontend.query import QueryService
from frontend.types import AssembledTrace, ObjectQuery, Suggestion
from frontend.views import ViewStore
from jaeger.client import JaegerClient
from kelemetry import cli, errors
from kelemetry.model.objects import KnownObject
from kelemetry.model.spans import SpanRecord
from kelemetry.store.sqlite import StoreReader
from tests.frontend.conftest import SAMPLE
from tests.jaeger.fakejaeger import FakeJaeger, Reply, closed_port_url, jaeger_traces, serving

CLUSTER = "tracetest"
WINDOW_US = 1800 * 1_000_000
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

    # First (once per backend) one trace to read the window length from, then the search.
    (probe_path, probe), (path, params) = jaeger.requests
    assert (probe_path, probe["service"], probe["limit"]) == ("/api/traces", ["object"], ["1"])
    assert "tags" not in probe
    assert path == "/api/traces"
    assert params["service"] == ["object"]
    assert params["limit"] == ["1000"]
    assert params["tags"] == ['{"resource":"deployments","name":"demo","cluster":"tracetest"}']
    end = int(params["end"][0])
    assert before <= end <= after
    # The search starts at the start of the window the lookback begins in (object spans start there).
    lookback_start = end - LOOKBACK_US
    assert int(params["start"][0]) == lookback_start - lookback_start % WINDOW_US
    assert backend.window_us() == WINDOW_US


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
            from_jaeger = jaegerjson.trace(over_jaeger.view(view_id))
            assert normalized(from_jaeger) == normalized(jaegerjson.trace(over_store.view(view_id)))
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
    assert record_of(foreign, 1, WINDOW_US) is None
    ours = jaeger.traces[0]["spans"][0]
    no_key = {**ours, "tags": [t for t in ours["tags"] if t["key"] != "resource"]}
    assert record_of(no_key, 1, WINDOW_US) is None
    record = record_of(ours, int(jaeger.traces[0]["traceID"], 16), WINDOW_US)
    assert record is not None
    assert not any(k.startswith(("otel.", "span.kind", "internal.")) for k in record.tags)


# -- one search per view; the window read from the spans


def test_a_lookup_and_the_views_opened_from_it_make_one_jaeger_search(
    backend: JaegerBackend, jaeger: FakeJaeger
) -> None:
    service = QueryService(backend, ViewStore(None))
    try:
        backend.window_us()  # read once in the backend's life
        probed = len(jaeger.requests)
        (found,) = service.lookup(query("replicasets", "demo-85dd8d7bd8"))
        assert len(jaeger.requests) == probed + 1
        for mode in ("21000000", "01000000"):
            assert service.view(f"ff{mode}{found.view_id[10:]}").target == found.target
        # Besides, one search of the cluster's gaps (service "gap"), shared by both views.
        services = [params["service"][0] for _path, params in jaeger.requests[probed:]]
        assert services == ["object", "gap"]
    finally:
        service.close()


def test_a_saved_view_opens_with_one_jaeger_search(jaeger: FakeJaeger) -> None:
    # Saved by another frontend process (or long enough ago that nothing is cached): the view's exact
    # key finds the object and its trace with one search.
    views = ViewStore(None)
    saving = QueryService(JaegerBackend(JaegerClient(jaeger.url), lookback_us=LOOKBACK_US), views)
    (found,) = saving.lookup(query("pods", "demo-5544f8b48c-b25t4"))
    opening = JaegerBackend(JaegerClient(jaeger.url), lookback_us=LOOKBACK_US)
    opening.window_us()
    before = len(jaeger.requests)
    view = QueryService(opening, views).view(found.view_id)
    assert view.target == found.target and view.root.logs, "the Pod's requests are not in its view"
    # The object's search, then its cluster's gaps (service "gap").
    ((_path, params), (_gap_path, gap_params)) = jaeger.requests[before:]
    assert json.loads(params["tags"][0]) == {
        "cluster": CLUSTER,
        "resource": "pods",
        "namespace": "default",
        "name": "demo-5544f8b48c-b25t4",
    }
    assert gap_params["service"] == ["gap"] and json.loads(gap_params["tags"][0]) == {"cluster": CLUSTER}
    views.close()


@pytest.fixture(scope="module")
def two_hour_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample replayed by a collector run with ``--window 2h``."""
    path = tmp_path_factory.mktemp("two-hours") / "k.db"
    argv = ["replay", "--quiet", "--cluster", CLUSTER, "--window", "2h", "--store", str(path)]
    assert cli.main([*argv, str(SAMPLE / "audit.log"), str(SAMPLE / "events.jsonl")]) == 0
    return path


def test_the_window_length_is_read_from_the_object_spans(two_hour_store: Path) -> None:
    """The sample's requests (07:23 UTC) lie in the 2-hour window that starts at 06:00, where their
    object spans start: a range that begins at the first request must be searched from 06:00 (from
    07:00, as 30-minute windows would have it, Jaeger returns none of the object spans)."""
    reader = StoreReader(two_hour_store)
    try:
        records = [record for _seq, record in reader.spans_after(0, 1_000_000)]
    finally:
        reader.close()
    two_hours = 7200 * 1_000_000
    assert {r.end_us - r.start_us for r in records if r.source.value == "object"} == {two_hours}
    requests = sorted(r.start_us for r in records if r.source.value != "object")
    start, end = requests[0], requests[-1]
    with serving(FakeJaeger(traces=jaeger_traces(records))) as fake:
        backend = JaegerBackend(JaegerClient(fake.url), lookback_us=LOOKBACK_US)
        (row,) = backend.find_objects(query(start_us=start, end_us=end))
        assert backend.window_us() == two_hours
        assert int(fake.requests[-1][1]["start"][0]) == start - start % two_hours
        from_jaeger = backend.trace(row, start, end)
    stored = StoreBackend.open(two_hour_store)
    try:
        (stored_row,) = stored.find_objects(query())
        assert summary(from_jaeger) == summary(stored.trace(stored_row, start, end))
    finally:
        stored.close()


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
