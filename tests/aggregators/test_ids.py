"""Deterministic trace and span ids (aggregators.ids): stable values, sensitivity to every input,
never zero, and the 64/128-bit ranges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aggregators import ids
from kelemetry.model.objects import ObjectKey

KEY = ObjectKey.make("prod", "apps", "deployments", "default", "web")
WINDOW = 952_532  # 2024-05-01T10:00:00Z in 30-minute windows
AUDIT_ID = "0b7e0c9a-1d2f-4c43-9a55-2f1f4c1e8d11"


def test_ids_do_not_change_between_releases() -> None:
    # Stored spans are upserted by id; a different derivation would duplicate every re-ingested trace.
    assert ids.object_id(KEY) == 0x62C3465EEAB3A524
    assert ids.trace_id(KEY, WINDOW) == 0x45D08C322BB66079374BB1157AEBBCC6
    assert ids.object_span_id(KEY, WINDOW) == 0xFCF6B50303604D63
    assert ids.event_span_id(KEY, "audit", AUDIT_ID) == 0xCA38713A197DFDB6


def test_equal_keys_give_equal_ids() -> None:
    twin = ObjectKey("prod", "apps", "deployments", "default", "".join(["w", "eb"]))
    assert twin == KEY and twin is not KEY
    assert ids.object_id(twin) == ids.object_id(KEY)
    assert ids.trace_id(twin, WINDOW) == ids.trace_id(KEY, WINDOW)
    assert ids.object_span_id(twin, WINDOW) == ids.object_span_id(KEY, WINDOW)
    assert ids.event_span_id(twin, "audit", AUDIT_ID) == ids.event_span_id(KEY, "audit", AUDIT_ID)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(KEY._replace(cluster="staging"), id="cluster"),
        pytest.param(KEY._replace(group="extensions"), id="group"),
        pytest.param(KEY._replace(resource="replicasets"), id="resource"),
        pytest.param(KEY._replace(namespace="kube-system"), id="namespace"),
        pytest.param(KEY._replace(name="web2"), id="name"),
    ],
)
def test_every_part_of_the_key_matters(other: ObjectKey) -> None:
    assert ids.object_id(other) != ids.object_id(KEY)
    assert ids.trace_id(other, WINDOW) != ids.trace_id(KEY, WINDOW)
    assert ids.object_span_id(other, WINDOW) != ids.object_span_id(KEY, WINDOW)
    assert ids.event_span_id(other, "audit", AUDIT_ID) != ids.event_span_id(KEY, "audit", AUDIT_ID)


def test_the_window_matters() -> None:
    assert ids.trace_id(KEY, WINDOW) != ids.trace_id(KEY, WINDOW + 1)
    assert ids.object_span_id(KEY, WINDOW) != ids.object_span_id(KEY, WINDOW + 1)


def test_event_source_and_id_matter() -> None:
    base = ids.event_span_id(KEY, "audit", AUDIT_ID)
    assert ids.event_span_id(KEY, "event", AUDIT_ID) != base
    assert ids.event_span_id(KEY, "audit", AUDIT_ID + "x") != base


def test_kinds_of_id_do_not_collide_for_the_same_input() -> None:
    # Object id and object span id are both 64-bit and derived from the same key.
    assert ids.object_id(KEY) != ids.object_span_id(KEY, WINDOW)
    spans = {ids.object_span_id(KEY, w) for w in range(100)}
    events = {ids.event_span_id(KEY, "audit", str(w)) for w in range(100)}
    assert len(spans) == len(events) == 100 and not spans & events


def _keys() -> Iterator[ObjectKey]:
    for i in range(300):
        yield ObjectKey.make("c", "", "pods", f"ns{i % 7}", f"pod-{i}")


def test_ids_fill_their_ranges() -> None:
    traces = [ids.trace_id(k, w) for k in _keys() for w in (0, 1)]
    spans = [ids.object_span_id(k, w) for k in _keys() for w in (0, 1)]
    objects = [ids.object_id(k) for k in _keys()]
    events = [ids.event_span_id(k, "audit", "a") for k in _keys()]
    assert all(0 < t < 1 << 128 for t in traces)
    assert all(0 < s < 1 << 64 for s in (*spans, *objects, *events))
    # A 128-bit trace id really uses its upper half, and 64-bit ids their upper 32 bits.
    assert any(t >= 1 << 64 for t in traces)
    assert any(s >= 1 << 32 for s in spans) and any(e >= 1 << 32 for e in events)
    assert len(set(traces)) == len(traces) and len(set(spans)) == len(spans)


class _ZeroDigest:
    def __init__(self, data: bytes, *, digest_size: int) -> None:
        self._size = digest_size

    def digest(self) -> bytes:
        return bytes(self._size)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda k: ids.event_span_id(k, "audit", "x"), id="event-span"),
        pytest.param(lambda k: ids.object_id(k), id="object"),
        pytest.param(lambda k: ids.trace_id(k, 1), id="trace"),
        pytest.param(lambda k: ids.object_span_id(k, 1), id="object-span"),
    ],
)
def test_a_zero_digest_becomes_one(monkeypatch: pytest.MonkeyPatch, make: Callable[[ObjectKey], Any]) -> None:
    # Zero ids are invalid in OTLP and Jaeger; an all-zero hash cannot be produced on demand, so the
    # hash function is replaced.
    monkeypatch.setattr(ids, "blake2b", _ZeroDigest)
    key = ObjectKey.make("zero", "", "pods", "ns", "p")  # never used elsewhere, so never cached
    try:
        assert make(key) == 1
    finally:
        for cached in (ids.object_id, ids.trace_id, ids.object_span_id):
            cached.cache_clear()
