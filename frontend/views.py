"""Saved views: what a view trace id stands for (an object and a time range).

The 16 hex digits at the end of a view trace id name a view. The number is derived from the view
itself, so the same lookup always yields the same URL, and it is kept in a small SQLite file
beside the store so a shared URL still opens after a restart. Unlike Go Kelemetry's trace cache,
the file is bounded: past ``max_views`` the least recently used views are dropped.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from hashlib import blake2b
from pathlib import Path

import orjson

from kelemetry import errors
from kelemetry.model.objects import ObjectKey
from kelemetry.model.times import now_us

_SCHEMA = """
CREATE TABLE IF NOT EXISTS views (view INTEGER PRIMARY KEY, spec BLOB NOT NULL, used_us INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS views_by_use ON views (used_us);
"""


@dataclass(frozen=True, slots=True)
class ViewSpec:
    cluster: str
    group: str
    resource: str
    namespace: str
    name: str
    start_us: int | None = None
    end_us: int | None = None
    uid: str = ""
    """The incarnation the view shows; "" (views saved before incarnations were told apart): the newest."""

    @property
    def key(self) -> ObjectKey:
        return ObjectKey.make(self.cluster, self.group, self.resource, self.namespace, self.name)

    @classmethod
    def of(cls, key: ObjectKey, start_us: int | None, end_us: int | None, uid: str = "") -> ViewSpec:
        return cls(key.cluster, key.group, key.resource, key.namespace, key.name, start_us, end_us, uid)

    def number(self) -> int:
        fields = asdict(self)
        if not self.uid:
            del fields["uid"]  # the same number as before the field existed
        digest = blake2b(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()
        # Positive and non-zero, so it fits SQLite's signed integers and reads as a real id.
        return (int.from_bytes(digest, "big") >> 1) or 1


class ViewStore:
    """Thread-safe; one per process. ``path=None`` keeps views in memory only (tests, one-shot).
    ``clock`` (µs since the epoch) stamps each use, which decides what is dropped first."""

    def __init__(
        self, path: str | Path | None, *, max_views: int = 100_000, clock: Callable[[], int] = now_us
    ) -> None:
        self.max_views = max_views
        self._clock = clock
        target = ":memory:" if path is None else str(path)
        try:
            if path is not None:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise errors.StoreError(f"cannot open the view file {target}: {exc}") from exc
        self._lock = threading.Lock()
        self._count = int(self._db.execute("SELECT COUNT(*) FROM views").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def save(self, spec: ViewSpec) -> int:
        number = spec.number()
        now = self._clock()
        with self._lock:
            known = self._db.execute("SELECT 1 FROM views WHERE view = ?", (number,)).fetchone()
            if known is not None:
                self._db.execute("UPDATE views SET used_us = ? WHERE view = ?", (now, number))
                return number
            self._db.execute(
                "INSERT INTO views (view, spec, used_us) VALUES (?, ?, ?)",
                (number, orjson.dumps(asdict(spec)), now),
            )
            self._count += 1
            if self._count > self.max_views:
                # Another process may share the file: count again before dropping anything.
                self._count = int(self._db.execute("SELECT COUNT(*) FROM views").fetchone()[0])
                excess = self._count - self.max_views
                if excess > 0:
                    self._db.execute(
                        "DELETE FROM views WHERE view IN "
                        "(SELECT view FROM views WHERE view <> ? ORDER BY used_us LIMIT ?)",
                        (number, excess),
                    )
                    self._count -= excess
        return number

    def load(self, number: int) -> ViewSpec:
        row = None
        if 0 < number < 1 << 63:  # view numbers are positive 63-bit; anything else is unknown
            with self._lock:
                row = self._db.execute("SELECT spec FROM views WHERE view = ?", (number,)).fetchone()
                if row is not None:
                    # Opening a shared URL keeps its view from being the next one dropped.
                    now = self._clock()
                    self._db.execute("UPDATE views SET used_us = ? WHERE view = ?", (now, number))
        if row is None:
            raise errors.NotFound(
                f"view {number:016x} is not known here "
                "(views are kept per frontend; look the object up again)"
            )
        return ViewSpec(**orjson.loads(row[0]))
