"""The webhook's inbox: accepted audit batches, durable before the webhook answers 200.

A batch stays here until the pipeline has written its spans; then it is deleted. After a crash
the batches still here are processed again on start. Because span ids are deterministic, a batch
processed twice (crash after the store commit, before the delete) changes nothing.

Input the pipeline or the store could not take after it was acknowledged (an audit event, a
Kubernetes Event, a watched object version) is kept in ``quarantine`` with its reason and its
``source``, until a person lists, retries or purges it (``kelemetry quarantine``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kelemetry import errors

# What a quarantined body holds: an audit EventList, a Kubernetes Event, or a watched object version
# (`kelemetry.receivers.quarantined` reads and writes each).
SOURCES = ("audit", "event", "watch")


def inbox_path(store_path: str | Path) -> Path:
    """The inbox of a store: beside it, named after it."""
    store = Path(store_path)
    return store.with_name(store.name + ".inbox")


@dataclass(frozen=True, slots=True)
class Quarantined:
    """One input kept aside: when, from which cluster, why, and what it was."""

    row_id: int
    cluster: str
    source: str
    at_us: int
    reason: str
    body: bytes


class Inbox:
    def __init__(self, path: str | Path, *, synchronous: str = "OFF") -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "cluster TEXT NOT NULL, received_us INTEGER NOT NULL, body BLOB NOT NULL)"
            )
            # Accepted input the pipeline could not process, kept with why rather than dropped.
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS quarantine (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "cluster TEXT NOT NULL, quarantined_us INTEGER NOT NULL, reason TEXT NOT NULL, "
                "body BLOB NOT NULL)"
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(quarantine)")}
            if "source" not in columns:
                # Inboxes written before Events and watched objects were quarantined hold audit only.
                self._db.execute("ALTER TABLE quarantine ADD COLUMN source TEXT NOT NULL DEFAULT 'audit'")
        except sqlite3.DatabaseError as exc:
            raise errors.StoreError(f"cannot open inbox {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def put(self, cluster: str, body: bytes, received_us: int) -> int:
        with self._lock:
            try:
                cursor = self._db.execute(
                    "INSERT INTO batches (cluster, received_us, body) VALUES (?, ?, ?)",
                    (cluster, received_us, body),
                )
            except sqlite3.DatabaseError as exc:
                raise errors.StoreError(f"cannot write inbox {self.path}: {exc}") from exc
            return int(cursor.lastrowid or 0)

    def delete(self, batch_id: int) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
            except sqlite3.DatabaseError as exc:
                raise errors.StoreError(f"cannot write inbox {self.path}: {exc}") from exc

    def quarantine(self, cluster: str, body: bytes, reason: str, at_us: int, source: str = "audit") -> int:
        """Keep ``body`` with ``reason`` for a person to inspect, retry or purge; returns its row id."""
        with self._lock:
            try:
                cursor = self._db.execute(
                    "INSERT INTO quarantine (cluster, quarantined_us, reason, body, source) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (cluster, at_us, reason, body, source),
                )
            except sqlite3.DatabaseError as exc:
                raise errors.StoreError(f"cannot write inbox {self.path}: {exc}") from exc
            return int(cursor.lastrowid or 0)

    def quarantined(self, limit: int | None = None) -> list[Quarantined]:
        """What is quarantined, oldest first (the first ``limit`` rows)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, cluster, source, quarantined_us, reason, body FROM quarantine "
                "ORDER BY id LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [
            Quarantined(int(row_id), str(cluster), str(source), int(at_us), str(reason), bytes(body))
            for row_id, cluster, source, at_us, reason, body in rows
        ]

    def quarantine_summary(self) -> tuple[int, int]:
        """(rows, bytes) quarantined now."""
        with self._lock:
            try:
                count, size = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM quarantine"
                ).fetchone()
            except sqlite3.DatabaseError as exc:
                raise errors.StoreError(f"cannot read inbox {self.path}: {exc}") from exc
        return int(count), int(size)

    def quarantine_reasons(self) -> list[str]:
        """The reason of every quarantined row (for counts by reason; bodies are not read)."""
        with self._lock:
            return [str(row[0]) for row in self._db.execute("SELECT reason FROM quarantine")]

    def release(self, row_ids: list[int]) -> int:
        """Delete these quarantined rows (retried successfully); returns how many there were."""
        with self._lock:
            try:
                cursor = self._db.executemany("DELETE FROM quarantine WHERE id = ?", [(i,) for i in row_ids])
            except sqlite3.DatabaseError as exc:
                raise errors.StoreError(f"cannot write inbox {self.path}: {exc}") from exc
            return int(cursor.rowcount)

    def requarantine(self, row_id: int, reason: str, at_us: int) -> None:
        """A retried row failed again: keep it, with the new reason and time."""
        with self._lock:
            try:
                self._db.execute(
                    "UPDATE quarantine SET reason = ?, quarantined_us = ? WHERE id = ?",
                    (reason, at_us, row_id),
                )
            except sqlite3.DatabaseError as exc:
                raise errors.StoreError(f"cannot write inbox {self.path}: {exc}") from exc

    def purge(self, before_us: int | None = None) -> int:
        """Delete what was quarantined (before ``before_us``, or all); returns how many rows."""
        with self._lock:
            try:
                if before_us is None:
                    cursor = self._db.execute("DELETE FROM quarantine")
                else:
                    cursor = self._db.execute("DELETE FROM quarantine WHERE quarantined_us < ?", (before_us,))
            except sqlite3.DatabaseError as exc:
                raise errors.StoreError(f"cannot write inbox {self.path}: {exc}") from exc
            return int(cursor.rowcount)

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the file and truncate it, so space freed is given back."""
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.DatabaseError as exc:
                raise errors.StoreError(f"cannot checkpoint inbox {self.path}: {exc}") from exc

    def pending(self) -> Iterator[tuple[int, str, bytes]]:
        with self._lock:
            ids = [row[0] for row in self._db.execute("SELECT id FROM batches ORDER BY id")]
        for batch_id in ids:
            with self._lock:
                row = self._db.execute(
                    "SELECT cluster, body FROM batches WHERE id = ?", (batch_id,)
                ).fetchone()
            if row is not None:
                yield batch_id, row[0], bytes(row[1])

    def oldest_received_us(self) -> int | None:
        """When the oldest batch still here was received (None: none is)."""
        with self._lock:
            row = self._db.execute("SELECT received_us FROM batches ORDER BY id LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def quarantine_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM batches").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
