"""Gap markers on views: where the collector could not see, every view of an affected cluster says so.

Gaps are stored as spans of source ``gap`` on a pseudo object per cluster (``kelemetry.model.gaps``),
not in the traces of the objects they affect (no input says which objects a lost batch touched). A
view of any object asks its backend for the gaps of the clusters in its tree that overlap what it
shows (``view_range``), and shows each as a span of source ``gap`` directly under the root (in every
display mode, cut to that range) and as a warning on the root with the whole interval: "data may be
missing between 10:02:11 and 10:04:40 UTC: collector restarted". A view with no gap is left exactly
as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from frontend.types import AssembledTrace, ViewLog, ViewSpan
from kelemetry.model import gaps, tags
from kelemetry.model.events import TraceSource
from kelemetry.model.spans import SpanRecord, span_tags

GAP_SERVICE = TraceSource.GAP.value
ACTIVITY_MARGIN_US = 60 * 1_000_000
"""A gap this close before an object's first shown activity (or after its last) still concerns it:
what was lost in a gap is what would have come just before the first thing seen after it."""


def view_range(trace: AssembledTrace, start_us: int | None, end_us: int | None) -> tuple[int, int]:
    """The stretch of time a view shows: its requests, Events and changes (``ACTIVITY_MARGIN_US``
    either side), within the range asked for. Not the whole windows its object spans cover: a gap
    half an hour from anything shown says nothing about this object."""
    nodes = trace.walk()
    times = [
        (node.span.start_us, node.span.end_us) for node in nodes if node.span.source is not TraceSource.OBJECT
    ]
    if not times:
        times = [(node.span.start_us, node.span.end_us) for node in nodes]
    low = min(start for start, _ in times) - ACTIVITY_MARGIN_US
    high = max(end for _, end in times) + ACTIVITY_MARGIN_US
    if start_us is not None:
        low = max(low, start_us)
    if end_us is not None:
        high = min(high, end_us)
    return low, max(low, high)


def clusters_of(trace: AssembledTrace) -> set[str]:
    return {node.span.key.cluster for node in trace.walk()}


def sentence_of(record: SpanRecord) -> str:
    """The gap's sentence as stored (its message log), rebuilt from its tags if a backend lost it."""
    for log in record.logs:
        if log.kind == "message" and log.message:
            return log.message
    start = record.tags.get(tags.GAP_START, record.start_us)
    end = record.tags.get(tags.GAP_END, record.end_us)
    return gaps.sentence(
        str(record.tags.get(tags.GAP_REASON, "unknown")),
        start if isinstance(start, int) else record.start_us,
        end if isinstance(end, int) else record.end_us,
        str(record.tags.get(tags.GAP_DETAIL, "")),
    )


@dataclass(slots=True)
class _Group:
    """Gaps of one cluster and cause that overlap, shown as one: an apiserver restart makes every
    watch relist at once, and a row per watched resource would bury the view."""

    records: list[SpanRecord]
    start_us: int
    end_us: int

    @property
    def first(self) -> SpanRecord:
        return self.records[0]

    def detail(self) -> str:
        details = sorted({str(r.tags.get(tags.GAP_DETAIL, "")) for r in self.records} - {""})
        shown = ", ".join(details[:MERGED_DETAILS])
        more = len(details) - MERGED_DETAILS
        return f"{shown}, and {more} more" if more > 0 else shown

    def sentence(self) -> str:
        if len(self.records) == 1:
            return sentence_of(self.first)
        reason = str(self.first.tags.get(tags.GAP_REASON, "unknown"))
        return gaps.sentence(reason, self.start_us, self.end_us, self.detail())


MERGED_DETAILS = 4
"""How many of a merged gap's details (``watch of pods``) its sentence names before "and N more"."""


def _grouped(found: list[SpanRecord]) -> list[_Group]:
    groups: list[_Group] = []
    open_by_cause: dict[tuple[str, object], _Group] = {}
    for record in sorted(found, key=lambda r: (r.start_us, r.span_id)):
        cause = (record.key.name, record.tags.get(tags.GAP_REASON))
        group = open_by_cause.get(cause)
        if group is not None and record.start_us <= group.end_us:
            group.records.append(record)
            group.end_us = max(group.end_us, record.end_us)
            continue
        group = _Group([record], record.start_us, record.end_us)
        open_by_cause[cause] = group
        groups.append(group)
    return groups


def mark(root: ViewSpan, found: list[SpanRecord], start_us: int, end_us: int) -> ViewSpan:
    """The view with its gaps under the root and their sentences among the root's warnings; gaps of
    one cluster and cause that overlap are one span and one sentence; gaps the tree already shows (a
    view of the pseudo object itself) are only warned about."""
    if not found:
        return root
    shown = {span.span_id for span in root.walk()}
    for group in _grouped(found):
        sentence = group.sentence()
        if sentence not in root.warnings:
            root.warnings.append(sentence)
        if any(record.span_id in shown for record in group.records):
            continue
        record = group.first
        shown.add(record.span_id)
        start = max(group.start_us, start_us)
        end = max(min(group.end_us, end_us), start)
        span_tags_ = span_tags(record)
        if len(group.records) > 1:
            span_tags_[tags.GAP_START] = group.start_us
            span_tags_[tags.GAP_END] = group.end_us
            span_tags_[tags.GAP_DETAIL] = group.detail()
        root.children.append(
            ViewSpan(
                span_id=record.span_id,
                source=GAP_SERVICE,
                operation=record.name,
                start_us=start,
                end_us=end,
                tags=span_tags_,
                logs=[ViewLog(start, (("event", "message"), ("message", sentence)))],
                record=record,
                service=GAP_SERVICE,
            )
        )
        root.start_us = min(root.start_us, start)
        root.end_us = max(root.end_us, end)
    return root
