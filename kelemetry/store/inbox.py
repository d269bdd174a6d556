"""The webhook's inbox: accepted audit batches, durable before the webhook answers 200.

A batch stays here until the pipeline has written its spans; then it is deleted. After a crash
the batches still here are processed again on start. Because span ids are deterministic, a batch
processed twice (crash after the store commit, before the delete) changes nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from kelemetry import errors


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

    def quarantine(self, cluster: str, body: bytes, reason: str, at_us: int) -> None:
        """Keep ``body`` with ``reason`` for a person to inspect (``SELECT * FROM quarantine``)."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO quarantine (cluster, quarantined_us, reason, body) VALUES (?, ?, ?, ?)",
                    (cluster, at_us, reason, body),
                )
            except sqlite3.DatabaseError as exc:
                raise errors.StoreError(f"cannot write inbox {self.path}: {exc}") from exc

    def quarantined(self) -> list[tuple[str, str, bytes]]:
        """(cluster, reason, body) of everything quarantined, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT cluster, reason, body FROM quarantine ORDER BY id").fetchall()
        return [(str(cluster), str(reason), bytes(body)) for cluster, reason, body in rows]

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
