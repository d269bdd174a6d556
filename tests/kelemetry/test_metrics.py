"""The metrics registry (``kelemetry.metrics``): what it renders is Prometheus' text format as the
client library's own parser reads it; counters and histograms hold their values per label values;
the series cap sends new label values to one ``other`` series; sources are read at each scrape.
What the collector and the audit stream put into it is tested in test_metrics_endpoint.py and
receivers/test_requests.py."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kelemetry import metrics
from tests import promtext


def test_counters_render_as_prometheus_counters_with_their_labels() -> None:
    registry = metrics.Registry()
    hits = registry.counter("kelemetry_test_hits_total", "Hits.", ("cluster", "verb"))
    hits.inc(("a", "get"))
    hits.inc(("a", "get"), 2)
    hits.inc(("b", "list"))

    families = {f.name: f for f in text_string_to_metric_families(registry.render().decode())}

    assert families["kelemetry_test_hits"].type == "counter"
    assert promtext.samples(registry.render().decode()) == {
        'kelemetry_test_hits_total{cluster="a",verb="get"}': 3.0,
        'kelemetry_test_hits_total{cluster="b",verb="list"}': 1.0,
    }
    assert registry.values() == promtext.samples(registry.render().decode())


def test_a_histogram_counts_into_inclusive_cumulative_buckets_with_sum_and_count() -> None:
    registry = metrics.Registry()
    latency = registry.histogram("kelemetry_test_seconds", "Latency.", ("route",), buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        latency.observe(("/x",), value)

    values = promtext.samples(registry.render().decode())

    assert values['kelemetry_test_seconds_bucket{le="0.1",route="/x"}'] == 2  # 0.1 is inside le=0.1
    assert values['kelemetry_test_seconds_bucket{le="1.0",route="/x"}'] == 3
    assert values['kelemetry_test_seconds_bucket{le="+Inf",route="/x"}'] == 4
    assert values['kelemetry_test_seconds_count{route="/x"}'] == 4
    assert values['kelemetry_test_seconds_sum{route="/x"}'] == pytest.approx(3.65)
    assert latency.count(("/x",)) == 4


def test_past_the_series_cap_new_label_values_are_counted_in_one_other_series() -> None:
    registry = metrics.Registry()
    hits = registry.counter("kelemetry_test_hits_total", "Hits.", ("user",), max_series=2)
    latency = registry.histogram("kelemetry_test_seconds", "Latency.", ("user",), max_series=1)
    for user in ("alice", "bob", "carol", "dave", "alice"):
        hits.inc((user,))
        latency.observe((user,), 0.01)

    assert hits.value(("alice",)) == 2
    assert hits.value(("bob",)) == 1
    # The cap counts the overflow series too: carol and dave share it, and nothing more is created.
    assert hits.value(("other",)) == 2
    assert hits.value(("carol",)) == 0
    assert latency.count(("alice",)) == 2
    assert latency.count(("other",)) == 3


def test_sources_are_read_at_every_scrape() -> None:
    registry = metrics.Registry()
    queue = [1, 2]
    registry.add_source(lambda: [metrics.gauge("kelemetry_test_queue", "Queued.", len(queue))])
    registry.add_source(
        lambda: [
            metrics.gauge(
                "kelemetry_test_size_bytes", "Size.", {("spans",): 10.0, ("inbox",): 2.0}, ("file",)
            ),
            metrics.counter_family("kelemetry_test_done_total", "Done.", (), 7),
        ]
    )

    first = promtext.samples(registry.render().decode())
    queue.append(3)
    second = promtext.samples(registry.render().decode())

    assert first["kelemetry_test_queue"] == 2
    assert second["kelemetry_test_queue"] == 3
    assert second['kelemetry_test_size_bytes{file="inbox"}'] == 2
    assert second["kelemetry_test_done_total"] == 7


def test_names_are_checked_when_registered() -> None:
    registry = metrics.Registry()
    registry.counter("kelemetry_test_total", "One.")
    with pytest.raises(ValueError, match="registered twice"):
        registry.counter("kelemetry_test_total", "Two.")
    with pytest.raises(ValueError, match="must end in _total"):
        registry.counter("kelemetry_test_count", "A counter without _total.")
    with pytest.raises(ValueError, match="buckets"):
        registry.histogram("kelemetry_test_seconds", "No buckets.", buckets=())


def test_two_registries_share_nothing() -> None:
    first, second = metrics.Registry(), metrics.Registry()
    first.counter("kelemetry_test_total", "One.").inc()
    second.counter("kelemetry_test_total", "One.")  # the same name in another process's registry

    assert first.values() == {"kelemetry_test_total": 1.0}
    assert second.values() == {}  # registered, never counted: no sample yet
