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


def mark(root: ViewSpan, found: list[SpanRecord], start_us: int, end_us: int) -> ViewSpan:
    """The view with its gaps under the root and their sentences among the root's warnings; gaps the
    tree already shows (a view of the pseudo object itself) are only warned about."""
    if not found:
        return root
    shown = {span.span_id for span in root.walk()}
    for record in found:
        sentence = sentence_of(record)
        if sentence not in root.warnings:
            root.warnings.append(sentence)
        if record.span_id in shown:
            continue
        shown.add(record.span_id)
        start = max(record.start_us, start_us)
        end = max(min(record.end_us, end_us), start)
        root.children.append(
            ViewSpan(
                span_id=record.span_id,
                source=GAP_SERVICE,
                operation=record.name,
                start_us=start,
                end_us=end,
                tags=span_tags(record),
                logs=[ViewLog(start, (("event", "message"), ("message", sentence)))],
                record=record,
                service=GAP_SERVICE,
            )
        )
        root.start_us = min(root.start_us, start)
        root.end_us = max(root.end_us, end)
    return root
