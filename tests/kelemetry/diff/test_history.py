"""The diff history is bounded by bytes: a stream of large objects stays under its cap, the least
recently used objects go first, and the objects still held diff as before."""

from __future__ import annotations

from typing import Any

from kelemetry.diff.attribution import ChangeTracker
from kelemetry.diff.history import ENTRY_OVERHEAD_BYTES, BodyHistory, body_size
from kelemetry.kube.kinds import KindResolver
from kelemetry.model.objects import ObjectKey, ObjectRef
from tests.kelemetry.diff.test_attribution import body, logs, write

KIB = 1024


def config_map(i: int) -> ObjectRef:
    return ObjectRef(
        ObjectKey.make("c", "", "configmaps", "default", f"cm-{i}"), f"uid-{i}", "ConfigMap", "v1"
    )


def large(obj: ObjectRef, rv: str, value: str) -> dict[str, Any]:
    return body(obj, rv, data={"blob": "x" * 20 * KIB, "value": value})


def test_a_stream_of_large_objects_stays_under_the_cap() -> None:
    history = BodyHistory(max_bytes=500 * KIB)
    peak = 0
    for i in range(200):
        obj = config_map(i)
        for rv in range(3):
            history.put(obj.incarnation, str(100 * i + rv), large(obj, str(rv), f"v{rv}"))
            peak = max(peak, history.bytes)
    assert peak <= 500 * KIB
    # Each ~20 KiB version is counted as its JSON plus the entry's overhead; 3 per object kept.
    one = body_size(large(config_map(0), "0", "v0")) + ENTRY_OVERHEAD_BYTES
    assert len(history) == (500 * KIB) // (3 * one)
    assert history.evicted == 200 - len(history)
    # The newest objects are held, the oldest went.
    assert history.latest(config_map(199).incarnation) is not None
    assert history.latest(config_map(0).incarnation) is None
    # The count of bytes is exact for what is held.
    assert history.bytes == sum(v.size for versions in history._versions.values() for v in versions)


def test_eviction_is_least_recently_used_not_least_recently_written() -> None:
    history = BodyHistory(max_bytes=100 * KIB)
    objs = [config_map(i) for i in range(4)]
    for i, obj in enumerate(objs):
        history.put(obj.incarnation, "1", large(obj, "1", str(i)))
    assert len(history) == 4
    history.previous(objs[0].incarnation, "2")  # a diff read the oldest written object
    history.put(config_map(9).incarnation, "1", large(config_map(9), "1", "9"))
    assert history.latest(objs[0].incarnation) is not None
    assert history.latest(objs[1].incarnation) is None


def test_one_object_larger_than_the_cap_keeps_only_its_newest_version() -> None:
    history = BodyHistory(max_bytes=30 * KIB)
    obj = config_map(1)
    for rv in ("1", "2", "3"):
        history.put(obj.incarnation, rv, large(obj, rv, rv))
    versions = history._versions[obj.incarnation]
    assert [v.rv for v in versions] == ["3"] and history.bytes == versions[0].size
    history.forget(obj.incarnation)
    assert history.bytes == 0 and len(history) == 0


def test_diffs_still_work_for_recent_objects_after_evictions() -> None:
    resolver = KindResolver()
    tracker = ChangeTracker(resolver.has_status, resolver.note_status, cache_bytes=1024 * KIB)
    for i in range(300):
        obj = config_map(i)
        tracker.audit(write(obj, f"create-{i}", "create", rv=f"{i}0", new=large(obj, f"{i}0", "old")))
    assert tracker.history.evicted > 0 and tracker.history.bytes <= 512 * KIB
    recent = config_map(299)
    updated = tracker.audit(write(recent, "update", "update", rv="2991", new=large(recent, "2991", "new")))
    assert logs(updated.event) == ['data.value "old" -> "new"']
    # An evicted object's next change only shows no diff; nothing fails.
    gone = config_map(0)
    later = tracker.audit(write(gone, "update-0", "update", rv="1", new=large(gone, "1", "new")))
    assert logs(later.event) == []
