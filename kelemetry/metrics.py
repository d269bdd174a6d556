"""Prometheus metrics: one explicit registry per process, rendered at ``/metrics``.

A process makes one ``Registry`` where it is assembled (``kelemetry.app``; the CLI when `serve`
replays files first) and hands it to the parts that record; nothing registers itself on import and
the client library's global default registry is never used, so tests build as many processes as
they like.

How to add a metric:

- something counted as it happens: ``hits = registry.counter("kelemetry_x_total", "what it counts",
  ("cluster",))`` once, then ``hits.inc(("member-1",))`` where it happens;
- a duration or a size: ``latency = registry.histogram("kelemetry_x_seconds", "...", ("route",),
  buckets=(0.01, 0.1, 1.0))``, then ``latency.observe(("/api/traces",), 0.042)``;
- a value that already lives elsewhere (a queue length, a file size): ``registry.add_source(fn)``
  where ``fn()`` returns the metric families of the moment, built with ``gauge(...)`` and
  ``counter_family(...)`` below; it runs on every scrape, so it must be cheap.

Names follow Prometheus' conventions: base units (``_seconds``, ``_bytes``), ``_total`` on counters.
Every label must have a bounded set of values: ``max_series`` caps a counter or histogram, and what
would pass it is counted in one series whose labels are all ``other``, so a burst of new values can
cost memory only up to the cap.

Counters and histograms here are plain dictionaries behind a lock: recording costs a dictionary
update (no per-series objects, no ``_created`` samples), and a scrape copies them.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

# The classic text format, which every Prometheus reads; our names need none of the newer one's
# escaping, so the text is the same either way.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
__all__ = ["CONTENT_TYPE", "OTHER", "Counter", "Histogram", "Metric", "Registry", "counter_family", "gauge"]
OTHER = "other"
DEFAULT_MAX_SERIES = 10_000
# Request-like durations, 5 ms to a minute; what takes longer (a watch) lands in +Inf.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[str, ...]
Source = Callable[[], Iterable[Metric]]


class Counter:
    """A counter per label values. ``inc`` takes the label values as a tuple, in ``labelnames`` order."""

    def __init__(self, name: str, documentation: str, labelnames: Labels, max_series: int) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.max_series = max_series
        self._overflow: Labels = (OTHER,) * len(labelnames)
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        with self._lock:
            values = self._values
            if labels not in values and len(values) >= self.max_series:
                labels = self._overflow
            values[labels] = values.get(labels, 0.0) + amount

    def add(self, amounts: Iterable[tuple[Labels, float]]) -> None:
        """Several increments under one lock (a batch's worth)."""
        with self._lock:
            values = self._values
            for labels, amount in amounts:
                if labels not in values and len(values) >= self.max_series:
                    labels = self._overflow
                values[labels] = values.get(labels, 0.0) + amount

    def value(self, labels: Labels = ()) -> float:
        return self._values.get(labels, 0.0)

    def series(self) -> dict[Labels, float]:
        """Every series' value by label values (a copy)."""
        with self._lock:
            return dict(self._values)

    def collect(self) -> Metric:
        with self._lock:
            values = list(self._values.items())
        return counter_family(self.name, self.documentation, self.labelnames, values)


class Histogram:
    """Observations per label values, counted into fixed buckets (upper bounds, inclusive)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Labels, buckets: Sequence[float], max_series: int
    ) -> None:
        bounds = tuple(sorted(float(b) for b in buckets))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"{name}: buckets must be distinct, and at least one")
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = bounds
        self.max_series = max_series
        self._overflow: Labels = (OTHER,) * len(labelnames)
        # Per series: one count per bucket (not cumulative), +Inf last, then the sum.
        self._series: dict[Labels, list[float]] = {}
        self._lock = threading.Lock()

    def observe(self, labels: Labels, value: float) -> None:
        slot = bisect_left(self.bounds, value)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                if len(self._series) >= self.max_series:
                    labels = self._overflow
                series = self._series.setdefault(labels, [0.0] * (len(self.bounds) + 2))
            series[slot] += 1
            series[-1] += value

    def observe_all(self, observations: Iterable[tuple[Labels, float]]) -> None:
        """Several observations under one lock (a batch's worth)."""
        bounds, size = self.bounds, len(self.bounds) + 2
        with self._lock:
            every = self._series
            for labels, value in observations:
                series = every.get(labels)
                if series is None:
                    if len(every) >= self.max_series:
                        labels = self._overflow
                    series = every.setdefault(labels, [0.0] * size)
                series[bisect_left(bounds, value)] += 1
                series[-1] += value

    def count(self, labels: Labels) -> int:
        series = self._series.get(labels)
        return 0 if series is None else int(sum(series[:-1]))

    def sum(self, labels: Labels) -> float:
        series = self._series.get(labels)
        return 0.0 if series is None else series[-1]

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            snapshot = [(labels, list(series)) for labels, series in self._series.items()]
        for labels, series in snapshot:
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip((*self.bounds, float("inf")), series[:-1], strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else _number(bound), cumulative))
            family.add_metric(list(labels), buckets, series[-1])
        return family


class Registry:
    """The metrics of one process and the sources read at scrape time."""

    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Histogram] = {}
        self._sources: list[Source] = []
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Adapter(self))

    def _add(self, metric: Counter | Histogram) -> None:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is registered twice")
        self._metrics[metric.name] = metric

    def counter(
        self, name: str, documentation: str, labelnames: Labels = (), *, max_series: int = DEFAULT_MAX_SERIES
    ) -> Counter:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        counter = Counter(name, documentation, labelnames, max_series)
        self._add(counter)
        return counter

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Labels = (),
        *,
        buckets: Sequence[float] = LATENCY_BUCKETS,
        max_series: int = DEFAULT_MAX_SERIES,
    ) -> Histogram:
        histogram = Histogram(name, documentation, labelnames, buckets, max_series)
        self._add(histogram)
        return histogram

    def add_source(self, source: Source) -> None:
        """``source()`` is called on every scrape and returns the families of the moment."""
        self._sources.append(source)

    def collect(self) -> Iterable[Metric]:
        for metric in list(self._metrics.values()):
            yield metric.collect()
        for source in list(self._sources):
            yield from source()

    def render(self) -> bytes:
        """The exposition text (Prometheus' format 0.0.4) of everything registered."""
        return generate_latest(self._registry)

    def values(self) -> dict[str, float]:
        """Every sample as ``name{label="value",...}`` (labels sorted by name) → value (tests, tools)."""
        flat: dict[str, float] = {}
        for family in self.collect():
            for sample in family.samples:
                labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
                flat[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return flat


class _Adapter:
    """What the client library's registry asks of a collector: ``collect()``."""

    def __init__(self, registry: Registry) -> None:
        self._owner = registry

    def collect(self) -> Iterable[Metric]:
        return self._owner.collect()


def gauge(
    name: str, documentation: str, value: float | Mapping[Labels, float], labelnames: Labels = ()
) -> Metric:
    """A gauge family: one value, or values by label values."""
    family = GaugeMetricFamily(name, documentation, labels=labelnames)
    if isinstance(value, Mapping):
        for labels, each in value.items():
            family.add_metric(list(labels), each)
    else:
        family.add_metric([], value)
    return family


def counter_family(
    name: str,
    documentation: str,
    labelnames: Labels,
    values: Iterable[tuple[Labels, float]] | float,
) -> Metric:
    """A counter family from totals kept elsewhere; ``name`` ends in ``_total``."""
    family = CounterMetricFamily(name, documentation, labels=labelnames)
    if isinstance(values, int | float):
        family.add_metric([], values)
    else:
        for labels, value in values:
            family.add_metric(list(labels), value)
    return family


def _number(bound: float) -> str:
    return repr(bound) if bound != int(bound) else f"{bound:.1f}"
