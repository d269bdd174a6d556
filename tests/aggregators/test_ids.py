"""Deterministic trace and span ids (aggregators.ids): stable values, sensitivity to every input
(object ids and object span ids to the incarnation's uid too), never zero, and the 64/128-bit ranges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aggregators import ids
from kelemetry.model.objects import Incarnation, ObjectKey

KEY = ObjectKey.make("prod", "apps", "deployments", "default", "web")
UID = "5f0e2a4c-7d1b-4b8e-9c3a-1e2d3f4a5b6c"
OBJ = Incarnation(KEY, UID)
WINDOW = 952_532  # 2024-05-01T10:00:00Z in 30-minute windows
AUDIT_ID = "0b7e0c9a-1d2f-4c43-9a55-2f1f4c1e8d11"


def test_ids_do_not_change_between_releases() -> None:
    # Stored spans are upserted by id; a different derivation would duplicate every re-ingested trace.
    assert ids.object_id(OBJ) == 0x2C13D2894D4BFB8E
    assert ids.trace_id(OBJ, WINDOW) == 0x209E738C069F3C8B7F09F1B107E41943
    assert ids.object_span_id(OBJ, WINDOW) == 0xD794FC2FA535437B
    assert ids.event_span_id(KEY, "audit", AUDIT_ID) == 0xCA38713A197DFDB6
    # An incarnation whose uid no input said has ids of its own, stable too.
    unknown = Incarnation(KEY, "")
    assert ids.object_id(unknown) == 0x822A05394D602CBE
    assert ids.trace_id(unknown, WINDOW) == 0xA654572AF0FB6D44C3A8B7FBED88F41A
    assert ids.object_span_id(unknown, WINDOW) == 0x145FBC36756068DD


def test_equal_keys_give_equal_ids() -> None:
    twin_key = ObjectKey("prod", "apps", "deployments", "default", "".join(["w", "eb"]))
    twin = Incarnation(twin_key, "".join([UID[:8], UID[8:]]))
    assert twin == OBJ and twin is not OBJ and twin_key is not KEY
    assert ids.object_id(twin) == ids.object_id(OBJ)
    assert ids.trace_id(twin, WINDOW) == ids.trace_id(OBJ, WINDOW)
    assert ids.object_span_id(twin, WINDOW) == ids.object_span_id(OBJ, WINDOW)
    assert ids.event_span_id(twin_key, "audit", AUDIT_ID) == ids.event_span_id(KEY, "audit", AUDIT_ID)


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
    obj = Incarnation(other, UID)
    assert ids.object_id(obj) != ids.object_id(OBJ)
    assert ids.trace_id(obj, WINDOW) != ids.trace_id(OBJ, WINDOW)
    assert ids.object_span_id(obj, WINDOW) != ids.object_span_id(OBJ, WINDOW)
    assert ids.event_span_id(other, "audit", AUDIT_ID) != ids.event_span_id(KEY, "audit", AUDIT_ID)


@pytest.mark.parametrize("uid", [pytest.param("", id="unknown"), pytest.param("6a1b", id="other")])
def test_a_recreated_object_is_another_object(uid: str) -> None:
    # Deleted and created again under the same name: its own object, spans and (as a root) traces.
    again = Incarnation(KEY, uid)
    assert ids.object_id(again) != ids.object_id(OBJ)
    assert ids.trace_id(again, WINDOW) != ids.trace_id(OBJ, WINDOW)
    assert ids.object_span_id(again, WINDOW) != ids.object_span_id(OBJ, WINDOW)


def test_the_window_matters() -> None:
    assert ids.trace_id(OBJ, WINDOW) != ids.trace_id(OBJ, WINDOW + 1)
    assert ids.object_span_id(OBJ, WINDOW) != ids.object_span_id(OBJ, WINDOW + 1)


def test_event_source_and_id_matter() -> None:
    base = ids.event_span_id(KEY, "audit", AUDIT_ID)
    assert ids.event_span_id(KEY, "event", AUDIT_ID) != base
    assert ids.event_span_id(KEY, "audit", AUDIT_ID + "x") != base


def test_kinds_of_id_do_not_collide_for_the_same_input() -> None:
    # Object id and object span id are both 64-bit and derived from the same key.
    assert ids.object_id(OBJ) != ids.object_span_id(OBJ, WINDOW)
    spans = {ids.object_span_id(OBJ, w) for w in range(100)}
    events = {ids.event_span_id(KEY, "audit", str(w)) for w in range(100)}
    assert len(spans) == len(events) == 100 and not spans & events


def _objects() -> Iterator[Incarnation]:
    for i in range(300):
        yield Incarnation(ObjectKey.make("c", "", "pods", f"ns{i % 7}", f"pod-{i}"), f"uid-{i}")


def test_ids_fill_their_ranges() -> None:
    traces = [ids.trace_id(o, w) for o in _objects() for w in (0, 1)]
    spans = [ids.object_span_id(o, w) for o in _objects() for w in (0, 1)]
    objects = [ids.object_id(o) for o in _objects()]
    events = [ids.event_span_id(o.key, "audit", "a") for o in _objects()]
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
        pytest.param(lambda o: ids.event_span_id(o.key, "audit", "x"), id="event-span"),
        pytest.param(lambda o: ids.object_id(o), id="object"),
        pytest.param(lambda o: ids.trace_id(o, 1), id="trace"),
        pytest.param(lambda o: ids.object_span_id(o, 1), id="object-span"),
    ],
)
def test_a_zero_digest_becomes_one(
    monkeypatch: pytest.MonkeyPatch, make: Callable[[Incarnation], Any]
) -> None:
    # Zero ids are invalid in OTLP and Jaeger; an all-zero hash cannot be produced on demand, so the
    # hash function is replaced.
    monkeypatch.setattr(ids, "blake2b", _ZeroDigest)
    # Never used elsewhere, so never cached.
    obj = Incarnation(ObjectKey.make("zero", "", "pods", "ns", "p"), "zero-uid")
    try:
        assert make(obj) == 1
    finally:
        for cached in (ids.object_id, ids.trace_id, ids.object_span_id):
            cached.cache_clear()
