"""A least-recently-used map of raw bodies, bounded by entries and by bytes.

The store keeps the decompressed bases of recently written objects so a batch need not read them
back; bases are as large as the objects, so a count alone does not bound the memory they take.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

# Per-entry cost beyond the body: the key, the map's slot and the bytes object's header.
ENTRY_OVERHEAD_BYTES = 120


class BytesLRU:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def __setitem__(self, key: Hashable, value: bytes) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= len(old) + ENTRY_OVERHEAD_BYTES
        self._items[key] = value
        self.bytes += len(value) + ENTRY_OVERHEAD_BYTES
        while self._items and (len(self._items) > self.max_entries or self.bytes > self.max_bytes):
            _key, dropped = self._items.popitem(last=False)
            self.bytes -= len(dropped) + ENTRY_OVERHEAD_BYTES

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0
