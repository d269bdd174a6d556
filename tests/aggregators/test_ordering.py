"""Whole-second Events placed after the requests they follow, whichever arrives first.

The real case (samples/deployment): `kubectl scale` committed at resourceVersion 276 and ended at
07:23:31.282; the deployment-controller's "Scaled up replica set ... to 4" Event got revision 279
but says only "07:23:31". It must not be drawn at 31.000, before the request that caused it.
"""

from __future__ import annotations

from aggregators.ordering import EventPlacer
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import ObjectKey
from kelemetry.model.spans import SpanRecord

SECOND = 1_000_000
T = 1_700_000_000 * SECOND  # a whole second
KEY = ObjectKey.make("c", "apps", "deployments", "default", "demo")


def span(span_id: int, source: TraceSource, start: int, end: int, rv: str = "", trace: int = 7) -> SpanRecord:
    return SpanRecord(
        trace_id=trace,
        span_id=span_id,
        parent_id=1,
        source=source,
        name="x",
        start_us=start,
        end_us=end,
        key=KEY,
        object_id=1,
        window=0,
        uid="u",
        kind="Deployment",
        version="v1",
        tags={tags.RESOURCE_VERSION: rv} if rv else {},
    )


def request(span_id: int, start_ms: int, end_ms: int, rv: int, trace: int = 7) -> SpanRecord:
    return span(span_id, TraceSource.AUDIT, T + start_ms * 1000, T + end_ms * 1000, str(rv), trace)


def event(span_id: int = 100, first: int = T, last: int = T) -> SpanRecord:
    return span(span_id, TraceSource.EVENT, first, last)


def test_an_event_is_drawn_after_the_latest_request_with_a_lower_revision_in_its_second() -> None:
    placer = EventPlacer()
    placer.note_request(request(1, 100, 104, rv=270))
    placer.note_request(request(2, 278, 282, rv=276))  # kubectl scale
    placer.note_request(request(3, 300, 310, rv=285))  # after the Event: not a cause
    placed = placer.place(event(), SECOND, order=279)
    assert (placed.start_us, placed.end_us) == (T + 282_000, T + 282_000)


def test_the_same_placement_when_the_event_arrives_before_its_cause() -> None:
    placer = EventPlacer()
    early = placer.place(event(), SECOND, order=279)
    assert early.start_us == T  # nothing known yet: the start of its second
    assert placer.note_request(request(1, 100, 104, rv=270)) == [
        span(100, TraceSource.EVENT, T + 104_000, T + 104_000)
    ]
    [moved] = placer.note_request(request(2, 278, 282, rv=276))
    assert (moved.start_us, moved.end_us) == (T + 282_000, T + 282_000)
    assert placer.note_request(request(3, 300, 310, rv=285)) == []


def test_requests_of_other_traces_and_seconds_do_not_move_an_event() -> None:
    placer = EventPlacer()
    placer.note_request(request(1, 500, 510, rv=276, trace=8))
    placer.note_request(request(2, -200, -100, rv=276))
    placer.note_request(request(3, 1_200, 1_210, rv=276))
    assert placer.place(event(), SECOND, order=279).start_us == T


def test_a_request_ending_in_the_next_second_pins_the_event_to_its_own_second() -> None:
    placer = EventPlacer()
    placer.note_request(request(1, 999, 999, rv=276))
    assert placer.place(event(), SECOND, order=279).end_us == T + 999_000


def test_precise_events_and_events_without_a_revision_stay_where_they_said() -> None:
    placer = EventPlacer()
    placer.note_request(request(1, 278, 282, rv=276))
    precise = event(first=T + 5, last=T + 5)
    assert placer.place(precise, 1, order=279) is precise
    assert placer.place(event(), SECOND, order=None).start_us == T


def test_a_repeated_event_keeps_its_first_occurrence_and_places_its_last() -> None:
    placer = EventPlacer()
    placer.note_request(request(1, 278, 282, rv=276))
    placed = placer.place(event(first=T - 10 * SECOND, last=T), SECOND, order=279)
    assert (placed.start_us, placed.end_us) == (T - 10 * SECOND, T + 282_000)
