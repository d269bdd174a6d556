"""Gaps as a model (kelemetry.model.gaps): the sentence people read, the event that stores a gap."""

from __future__ import annotations

from datetime import UTC, datetime

from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.gaps import GAP_GROUP, GAP_RESOURCE, Gap, GapReason, gap_key, sentence


def us(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000)


def test_the_sentence_names_the_interval_rounded_outwards_and_the_cause() -> None:
    gap = Gap("c1", GapReason.RESTART, us("2026-05-01T10:02:11.700"), us("2026-05-01T10:04:39.200"))
    assert gap.sentence() == "data may be missing between 10:02:11 and 10:04:40 UTC: collector restarted"


def test_a_gap_over_midnight_names_both_days_and_a_detail_is_added() -> None:
    text = sentence("relist", us("2026-05-01T23:59:50"), us("2026-05-02T00:00:10"), "watch of pods")
    assert text == (
        "data may be missing between 2026-05-01 23:59:50 and 2026-05-02 00:00:10 UTC: "
        "watch relisted after 410 Gone (watch of pods)"
    )


def test_a_gap_is_an_event_of_source_gap_on_its_clusters_pseudo_object_with_a_stable_id() -> None:
    gap = Gap("c1", GapReason.REFUSED, 10, 20, "3 batches refused (429)")
    event = gap.event()
    assert event.source is TraceSource.GAP
    assert event.object.key == gap_key("c1")
    assert (event.object.key.group, event.object.key.resource, event.object.key.name) == (
        GAP_GROUP,
        GAP_RESOURCE,
        "c1",
    )
    assert (
        event.tags[tags.GAP_REASON] == "refused" and event.tags[tags.GAP_DETAIL] == "3 batches refused (429)"
    )
    assert (event.start_us, event.end_us) == (10, 20)
    assert event.event_id == Gap("c1", GapReason.REFUSED, 10, 99, "3 batches refused (429)").event().event_id
    assert event.event_id != Gap("c1", GapReason.REFUSED, 11, 20, "3 batches refused (429)").event().event_id
    assert event.title == "possible loss: the webhook refused audit batches"
