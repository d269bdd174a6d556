"""Gap markers on views (frontend.gapmarks) over the replayed Deployment sample: a view whose shown
activity a gap overlaps carries it as a span of source ``gap`` under the root, in every display
mode, with the sentence among the root's warnings; the text dump prints the sentence, the JSON dump
carries the span; ``changes`` lists the gap; the Jaeger backend finds the same gaps in Jaeger as the
store gives. A gap away from what a view shows (more than a minute from its activity, even in the
same window) leaves every output byte for byte as it was.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from frontend import jaegerjson, modes, text
from frontend.backend import StoreBackend
from frontend.jaegerstore import JaegerBackend
from frontend.modes import Base, DisplayMode, Scope
from frontend.query import QueryService
from frontend.types import ObjectQuery, View
from frontend.views import ViewStore
from jaeger.client import JaegerClient
from kelemetry import cli
from kelemetry.kube.kinds import KindResolver
from kelemetry.model.gaps import Gap, GapReason
from kelemetry.pipeline import build
from kelemetry.settings import TraceSettings
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.jaeger.fakejaeger import FakeJaeger, jaeger_traces, serving

CLUSTER = "tracetest"
# The sample's requests and Events: 2026-11-23 07:23:30 to 07:24:03 UTC.
INSIDE = Gap(CLUSTER, GapReason.RESTART, 1_795_418_611_000_000, 1_795_418_612_500_000)
SENTENCE = "data may be missing between 07:23:31 and 07:23:33 UTC: collector restarted"
# The same 30-minute window, minutes from any activity.
AWAY = Gap(CLUSTER, GapReason.RELIST, 1_795_418_880_000_000, 1_795_418_890_000_000, "watch of events")
DEMO = ObjectQuery(cluster=CLUSTER, resource="deployments", namespace="default", name="demo")
ALL_MODES = [DisplayMode(base, scope) for base in Base for scope in Scope]


def record(path: Path, *gaps: Gap) -> None:
    store = SpanStore(path)
    try:
        build(store, TraceSettings(), KindResolver()).process_gaps(gaps)
    finally:
        store.close()


@pytest.fixture
def store(sample_store: Path, tmp_path: Path) -> Path:
    path = tmp_path / "k.db"
    shutil.copyfile(sample_store, path)
    return path


@pytest.fixture
def service(store: Path) -> Iterator[QueryService]:
    opened = QueryService(StoreBackend(StoreReader(store)), ViewStore(None))
    yield opened
    opened.close()


def views(service: QueryService) -> list[View]:
    return [service.view(service.lookup_one(DEMO, mode).view_id) for mode in ALL_MODES]


def outputs(service: QueryService) -> list[bytes]:
    return [jaegerjson.response([jaegerjson.trace(view)]) for view in views(service)]


def test_a_gap_away_from_the_activity_changes_no_output(store: Path, sample_store: Path) -> None:
    before = QueryService(StoreBackend(StoreReader(sample_store)), ViewStore(None))
    try:
        expected = outputs(before)
    finally:
        before.close()
    record(store, AWAY)
    after = QueryService(StoreBackend(StoreReader(store)), ViewStore(None))
    try:
        assert outputs(after) == expected
    finally:
        after.close()


def test_every_mode_shows_an_overlapping_gap_under_the_root_with_the_sentence(
    store: Path, service: QueryService
) -> None:
    record(store, INSIDE, AWAY)
    for view in views(service):
        gaps = [span for span in view.root.children if span.source == "gap"]
        assert len(gaps) == 1, view.view_id
        (gap,) = gaps
        assert gap.service == "gap" and gap.operation == "collector restarted"
        assert (gap.start_us, gap.end_us) == (INSIDE.start_us, INSIDE.end_us)
        assert gap.tags["gap.reason"] == "restart" and gap.tags["cluster"] == CLUSTER
        assert dict(gap.logs[0].fields)["message"] == SENTENCE
        assert view.root.warnings == [SENTENCE]
        assert view.root.start_us <= gap.start_us and gap.end_us <= view.root.end_us
        # Nothing else moved: the gap is the only span of its source.
        assert [s for s in view.root.walk() if s.source == "gap"] == [gap]


def test_dumps_print_the_sentence_and_carry_the_span(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record(store, INSIDE)
    where = ["--store", str(store), "--cluster", CLUSTER, "--resource", "deployments", "--name", "demo"]
    assert cli.main(["dump", *where]) == 0
    tree = capsys.readouterr().out
    assert f"GAP  {SENTENCE}" in tree
    assert tree.rstrip().endswith(f"warning: {SENTENCE}")
    assert cli.main(["dump", *where, "--format", "json"]) == 0
    (trace,) = json.loads(capsys.readouterr().out)["data"]
    (gap,) = [s for s in trace["spans"] if trace["processes"][s["processID"]]["serviceName"] == "gap"]
    tags = {t["key"]: t["value"] for t in gap["tags"]}
    assert tags["kelemetry.trace_source"] == "gap" and tags["gap.start"] == INSIDE.start_us
    assert (gap["startTime"], gap["duration"]) == (INSIDE.start_us, INSIDE.end_us - INSIDE.start_us)
    root = next(s for s in trace["spans"] if not s["references"])
    assert gap["references"][0]["spanID"] == root["spanID"]
    assert root["warnings"] == [SENTENCE]


def test_the_text_outline_of_a_tracing_view_warns_on_the_root(store: Path, service: QueryService) -> None:
    record(store, INSIDE)
    view = service.view(service.lookup_one(DEMO, modes.DEFAULT).view_id)
    lines = text.render_outline(view).splitlines()
    assert lines[1] == f"  warning: {SENTENCE}"
    assert any(line.strip().endswith("gap: collector restarted") for line in lines)


def test_changes_lists_the_gap(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record(store, INSIDE)
    argv = ["changes", "--store", str(store), "--cluster", CLUSTER, "--limit", "1000", "--format", "json"]
    assert cli.main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["data"]
    (row,) = [row for row in rows if row["source"] == "gap"]
    assert row["result"] == "gap restart" and row["message"] == SENTENCE
    assert row["object"]["resource"] == "gaps" and row["object"]["name"] == CLUSTER
    assert cli.main(argv[:-2]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "gaps.kelemetry.kubewharf.io" in line]
    assert "gap restart" in line and SENTENCE in line


def test_the_jaeger_backend_finds_the_gaps_the_store_has(store: Path, service: QueryService) -> None:
    record(store, INSIDE, AWAY)
    reader = StoreReader(store)
    try:
        records = reader.all_spans()
    finally:
        reader.close()
    expected = views(service)
    with serving(FakeJaeger(traces=jaeger_traces(records))) as fake:
        lookback = 50 * 365 * 86_400 * 1_000_000
        from_jaeger = QueryService(
            JaegerBackend(JaegerClient(fake.url), lookback_us=lookback), ViewStore(None)
        )
        got = views(from_jaeger)
    for mine, theirs in zip(expected, got, strict=True):
        assert theirs.root.warnings == mine.root.warnings == [SENTENCE]
        assert [(s.span_id, s.start_us, s.end_us) for s in theirs.root.children if s.source == "gap"] == [
            (s.span_id, s.start_us, s.end_us) for s in mine.root.children if s.source == "gap"
        ]


def test_overlapping_relists_of_one_restart_are_one_gap(store: Path, service: QueryService) -> None:
    """An apiserver restart makes every watch relist at once: one row and one sentence for all of them,
    not a row per watched resource; a gap of another cause in the same stretch stays its own."""
    start = INSIDE.start_us
    relists = [
        Gap(CLUSTER, GapReason.RELIST, start + n * 10_000, start + 900_000 + n * 10_000, f"watch of {what}")
        for n, what in enumerate(("events", "pods", "replicasets", "deployments", "services", "nodes"))
    ]
    record(store, *relists, INSIDE)
    for view in views(service):
        shown = [span for span in view.root.children if span.source == "gap"]
        assert sorted(span.operation for span in shown) == [
            "collector restarted",
            "watch relisted after 410 Gone",
        ]
        (relist,) = [span for span in shown if span.tags["gap.reason"] == "relist"]
        assert (relist.tags["gap.start"], relist.tags["gap.end"]) == (start, start + 950_000)
        assert (
            relist.tags["gap.detail"]
            == "watch of deployments, watch of events, watch of nodes, watch of pods, and 2 more"
        )
        assert len(view.root.warnings) == 2
        assert any(
            "(watch of deployments, " in warning and "and 2 more)" in warning
            for warning in view.root.warnings
        )
