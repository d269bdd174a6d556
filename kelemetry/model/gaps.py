"""Gaps: stretches of time in which the collector could not see a cluster, so its traces may be
incomplete there.

A gap is recorded by whatever noticed it (the ingest worker at a restart, a watch after a relist or
a long reconnect, the webhook after refusing batches) and becomes an event of source ``gap`` on a
pseudo object per cluster (``gaps.kelemetry.kubewharf.io/<cluster>``): it is stored, exported and
found like any other span, and the query side shows it on every view of that cluster whose range
it overlaps. Gaps are per cluster: none of our inputs says which objects a lost batch touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from kelemetry.model import tags
from kelemetry.model.events import Event, Log, TraceSource
from kelemetry.model.objects import ObjectKey, ObjectRef

GAP_GROUP = "kelemetry.kubewharf.io"
GAP_RESOURCE = "gaps"
GAP_KIND = "Gap"


class GapReason(StrEnum):
    RESTART = "restart"
    """The collector was not running: nothing was received between its last heartbeat and its start."""
    RELIST = "relist"
    """A watch's resourceVersion was gone (410): versions between its last event and the relist are lost."""
    RECONNECT = "reconnect"
    """A watch was disconnected longer than the threshold."""
    REFUSED = "refused"
    """The webhook refused batches (429/503/507) or the store failed writes: the apiserver retries a
    while, then drops a batch, so requests of that interval may be lost."""


_CAUSES = {
    GapReason.RESTART: "collector restarted",
    GapReason.RELIST: "watch relisted after 410 Gone",
    GapReason.RECONNECT: "watch disconnected",
    GapReason.REFUSED: "possible loss: the webhook refused audit batches",
}


def _clock(time_us: int) -> str:
    return datetime.fromtimestamp(time_us // 1_000_000, tz=UTC).strftime("%H:%M:%S")


def _ceil_s(time_us: int) -> int:
    """The whole second at or after a moment: a gap's sentence rounds outwards, so it covers the gap."""
    return -(-time_us // 1_000_000) * 1_000_000


def _day(time_us: int) -> str:
    return datetime.fromtimestamp(time_us // 1_000_000, tz=UTC).strftime("%Y-%m-%d")


def gap_key(cluster: str) -> ObjectKey:
    """The pseudo object a cluster's gaps belong to."""
    return ObjectKey.make(cluster, GAP_GROUP, GAP_RESOURCE, "", cluster)


def is_gap_key(key: ObjectKey) -> bool:
    return key.group == GAP_GROUP and key.resource == GAP_RESOURCE


@dataclass(frozen=True, slots=True)
class Gap:
    cluster: str
    reason: GapReason
    start_us: int
    end_us: int
    detail: str = ""
    """What exactly could not see (``watch of pods``, ``3 batches refused (429)``); may be empty."""

    @property
    def seconds(self) -> float:
        return max(self.end_us - self.start_us, 0) / 1e6

    def sentence(self) -> str:
        return sentence(self.reason, self.start_us, self.end_us, self.detail)

    def event(self) -> Event:
        """The gap as an event on its cluster's pseudo object. The id is the reason, the detail and the
        start, so the same gap recorded twice (a restart before its write was acknowledged) is one span."""
        return Event(
            object=ObjectRef(gap_key(self.cluster), "", GAP_KIND, "v1"),
            source=TraceSource.GAP,
            event_id=f"{self.reason}/{self.detail}/{self.start_us}",
            title=_CAUSES[self.reason],
            start_us=self.start_us,
            end_us=max(self.end_us, self.start_us),
            tags={
                tags.GAP_REASON: self.reason.value,
                tags.GAP_START: self.start_us,
                tags.GAP_END: self.end_us,
                **({tags.GAP_DETAIL: self.detail} if self.detail else {}),
            },
            logs=(Log("message", self.sentence()),),
        )


def sentence(reason: str, start_us: int, end_us: int, detail: str = "") -> str:
    """``data may be missing between 10:02:11 and 10:04:40: collector restarted`` (UTC; the date is
    named when the gap spans midnight)."""
    try:
        cause = _CAUSES[GapReason(reason)]
    except ValueError:
        cause = reason
    end_us = _ceil_s(end_us)
    start, end = _clock(start_us), _clock(end_us)
    if _day(start_us) != _day(end_us):
        start, end = f"{_day(start_us)} {start}", f"{_day(end_us)} {end}"
    text = f"data may be missing between {start} and {end} UTC: {cause}"
    return f"{text} ({detail})" if detail else text
