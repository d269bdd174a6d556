from __future__ import annotations

from kelemetry.store.bytecache import ENTRY_OVERHEAD_BYTES, BytesLRU


def test_bounded_by_bytes_and_entries_least_recently_used_first() -> None:
    cache = BytesLRU(max_entries=10, max_bytes=3 * (1000 + ENTRY_OVERHEAD_BYTES))
    for key in range(3):
        cache[key] = b"x" * 1000
    assert cache.get(0) is not None  # 0 is now the most recently used
    cache[3] = b"y" * 1000
    assert cache.get(1) is None and cache.get(0) is not None and len(cache) == 3
    assert cache.bytes == 3 * (1000 + ENTRY_OVERHEAD_BYTES)
    cache[3] = b"z" * 10  # replacing counts the new size only
    assert cache.bytes == 2 * (1000 + ENTRY_OVERHEAD_BYTES) + 10 + ENTRY_OVERHEAD_BYTES
    small = BytesLRU(max_entries=2, max_bytes=1 << 20)
    for key in range(5):
        small[key] = b"."
    assert len(small) == 2 and small.get(4) == b"."
    small.clear()
    assert (len(small), small.bytes) == (0, 0)
