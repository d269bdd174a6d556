"""The embedded span store: one SQLite file in WAL mode.

Spans are upserted by span id (ids are deterministic, so the same input never makes a second
copy), in one transaction per batch, so a crash leaves every batch either whole or absent. Rows
that would not change are not rewritten, which keeps replays cheap and the export cursor still.
Objects (key, last uid, kind, controller owner) are kept beside the spans: they rebuild the
owner graph on restart and answer "which objects do you know?".

Retention counts from arrival: every write stamps the traces it touches (``traces.arrived_us``) and
the objects it notes (``objects.seen_us``) with the store's clock, and a retention pass removes
whole traces by that stamp, never by the timestamps inside the data (see ``store/retention.py``).

One writer per file: the ingest thread of a `serve` process, or `replay`. Readers (the dump
command, the OTLP follower, the query side) open their own connections; WAL lets them read
while the writer writes.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from kelemetry import errors
from kelemetry.model import gaps, tags
from kelemetry.model.events import Log, TagValue, TraceSource
from kelemetry.model.objects import KnownObject, ObjectKey
from kelemetry.model.spans import SpanRecord
from kelemetry.model.versions import ObjectVersion
from kelemetry.store.bytecache import BytesLRU
from kelemetry.store.retention import Removed, RetentionReport, wall_clock_us

logger = logging.getLogger(__name__)

# 2: traces (arrival per trace) and objects.seen_us for retention by arrival; no spans_by_end.
# 3: spans_by_time (request, Event and change spans by start, for browsing what changed);
#    versions (each object's bodies by resourceVersion, for "the object at a moment").
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    object_id INTEGER PRIMARY KEY,
    cluster TEXT NOT NULL, grp TEXT NOT NULL, resource TEXT NOT NULL,
    namespace TEXT NOT NULL, name TEXT NOT NULL,
    uid TEXT NOT NULL, kind TEXT NOT NULL, version TEXT NOT NULL,
    owner_id INTEGER,
    first_us INTEGER, last_us INTEGER,
    seen_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_by_name ON objects (name, resource, namespace, cluster, grp);
-- Rows are kept in write order (seq is the rowid): a batch appends to the end of the table instead of
-- dirtying pages all over it, as random span ids would, and the OTLP follower reads them in that order.
CREATE TABLE IF NOT EXISTS spans (
    seq INTEGER PRIMARY KEY,
    span_id INTEGER NOT NULL,
    trace_id TEXT NOT NULL,
    parent_id INTEGER,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    object_id INTEGER NOT NULL,
    window INTEGER NOT NULL,
    uid TEXT NOT NULL, kind TEXT NOT NULL, version TEXT NOT NULL,
    error INTEGER NOT NULL,
    tags BLOB NOT NULL,
    logs BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS spans_by_id ON spans (span_id);
CREATE INDEX IF NOT EXISTS spans_by_object ON spans (object_id, window);
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id);
-- A trace (one root object's hierarchy in one window) is the unit of retention: it goes whole, so no
-- request span outlives its object span. arrived_us is the store clock when a span of it was last
-- written or moved into it.
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    cluster TEXT NOT NULL,
    window INTEGER NOT NULL,
    arrived_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_arrival ON traces (arrived_us);
"""

# What a writer runs, in a file of schema N, to bring it to N + 1. Only additive steps belong here
# (new tables, new indexes): a store of an older schema that needs its data rewritten is refused.
_UPGRADES: dict[int, str] = {
    2: """
-- Object spans are upserted on every event of their object and are never browsed by time, so
-- they stay out of the index and cost it nothing.
CREATE INDEX IF NOT EXISTS spans_by_time ON spans (start_us) WHERE source <> 'object';
-- What each object looked like after each write we saw (cleaned, compressed), for "the object at a
-- moment". One row per (object, resourceVersion); rv_order sorts numeric versions as numbers.
CREATE TABLE IF NOT EXISTS versions (
    object_id INTEGER NOT NULL,
    rv TEXT NOT NULL,
    rv_order INTEGER NOT NULL,
    time_us INTEGER NOT NULL,
    uid TEXT NOT NULL,
    source TEXT NOT NULL,
    verb TEXT NOT NULL,
    username TEXT NOT NULL,
    span_id INTEGER,
    complete INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    arrived_us INTEGER NOT NULL,
    body BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS versions_by_object ON versions (object_id, rv);
CREATE INDEX IF NOT EXISTS versions_by_arrival ON versions (arrived_us);
-- The first body stored of each object: its other versions are compressed with it as the preset
-- dictionary, which makes them about a third of their size alone; a version whose body is the base
-- stores an empty body. Kept while a version is. Rows are appended in write order (seq) and found by
-- the small index: bases keyed by the random object ids would be inserted all over the table,
-- leaving its pages part empty.
CREATE TABLE IF NOT EXISTS version_bases (
    seq INTEGER PRIMARY KEY,
    object_id INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS version_bases_by_object ON version_bases (object_id);
""",
}

_SCHEMA += _UPGRADES[2]

# Object spans keep the first uid/kind/version they were written with, so the span of a window
# does not flip between incarnations on every event; event spans take what their input says.
_KEEP = "CASE WHEN spans.source = 'object' AND spans.{col} <> '' THEN spans.{col} ELSE excluded.{col} END"
_UPSERT_SPAN = f"""
INSERT INTO spans (span_id, trace_id, parent_id, source, name, start_us, end_us, object_id, window,
                   uid, kind, version, error, tags, logs, seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (span_id) DO UPDATE SET
    trace_id = excluded.trace_id, parent_id = excluded.parent_id, source = excluded.source,
    name = excluded.name, start_us = excluded.start_us, end_us = excluded.end_us,
    object_id = excluded.object_id, window = excluded.window,
    uid = {_KEEP.format(col="uid")}, kind = {_KEEP.format(col="kind")},
    version = {_KEEP.format(col="version")},
    error = excluded.error, tags = excluded.tags, logs = excluded.logs, seq = excluded.seq
WHERE spans.trace_id IS NOT excluded.trace_id OR spans.parent_id IS NOT excluded.parent_id
   OR spans.name IS NOT excluded.name OR spans.start_us IS NOT excluded.start_us
   OR spans.end_us IS NOT excluded.end_us OR spans.error IS NOT excluded.error
   OR spans.tags IS NOT excluded.tags OR spans.logs IS NOT excluded.logs
   OR spans.uid IS NOT ({_KEEP.format(col="uid")}) OR spans.kind IS NOT ({_KEEP.format(col="kind")})
   OR spans.version IS NOT ({_KEEP.format(col="version")})
"""

_UPSERT_OBJECT = """
INSERT INTO objects (object_id, cluster, grp, resource, namespace, name, uid, kind, version, owner_id,
                     first_us, last_us, seen_us)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (object_id) DO UPDATE SET
    seen_us = excluded.seen_us,
    uid = CASE WHEN excluded.uid <> '' THEN excluded.uid ELSE objects.uid END,
    kind = CASE WHEN excluded.kind <> '' THEN excluded.kind ELSE objects.kind END,
    version = CASE WHEN excluded.version <> '' THEN excluded.version ELSE objects.version END,
    owner_id = COALESCE(excluded.owner_id, objects.owner_id),
    first_us = CASE WHEN objects.first_us IS NULL OR excluded.first_us < objects.first_us
                    THEN COALESCE(excluded.first_us, objects.first_us) ELSE objects.first_us END,
    last_us = CASE WHEN objects.last_us IS NULL OR excluded.last_us > objects.last_us
                   THEN COALESCE(excluded.last_us, objects.last_us) ELSE objects.last_us END
"""

# The latest write decides (not the largest stamp), so one write under a clock set far ahead does
# not pin a trace until that future comes.
_UPSERT_TRACE = """
INSERT INTO traces (trace_id, cluster, window, arrived_us) VALUES (?, ?, ?, ?)
ON CONFLICT (trace_id) DO UPDATE SET
    cluster = excluded.cluster, window = excluded.window, arrived_us = excluded.arrived_us
"""

# The objects retention may remove: those without spans that no write noted since the cutoff, except
# owners (at any depth) of an object that stays, so the owner graph rebuilt on restart still reaches
# the roots of kept traces. Spans are probed per object through spans_by_object, not scanned.
_EXPIRED_OBJECTS = """
WITH RECURSIVE kept_owners(object_id) AS (
    SELECT o.owner_id FROM objects AS o
    WHERE o.owner_id IS NOT NULL
      AND (o.seen_us >= :cutoff OR EXISTS (SELECT 1 FROM spans AS s WHERE s.object_id = o.object_id))
    UNION
    SELECT o.owner_id FROM objects AS o JOIN kept_owners AS k ON o.object_id = k.object_id
    WHERE o.owner_id IS NOT NULL
)
SELECT o.object_id, o.cluster FROM objects AS o
WHERE o.seen_us < :cutoff
  AND NOT EXISTS (SELECT 1 FROM spans AS s WHERE s.object_id = o.object_id)
  AND o.object_id NOT IN (SELECT object_id FROM kept_owners)
"""

# A version seen again changes nothing, except that a complete body replaces a reconstructed one and
# the request that made it (span, verb, user, its start) replaces what the watch alone could say.
_BETTER_BODY = (
    "(excluded.complete > versions.complete OR (versions.body IS NULL AND excluded.body IS NOT NULL))"
)
_BETTER_WRITER = "(versions.span_id IS NULL AND excluded.span_id IS NOT NULL)"
_UPSERT_VERSION = f"""
INSERT INTO versions (object_id, rv, rv_order, time_us, uid, source, verb, username, span_id, complete,
                      deleted, arrived_us, body)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (object_id, rv) DO UPDATE SET
    body = CASE WHEN {_BETTER_BODY} THEN excluded.body ELSE versions.body END,
    complete = MAX(versions.complete, excluded.complete),
    time_us = CASE WHEN {_BETTER_WRITER} THEN excluded.time_us ELSE versions.time_us END,
    source = CASE WHEN {_BETTER_WRITER} THEN excluded.source ELSE versions.source END,
    verb = CASE WHEN {_BETTER_WRITER} THEN excluded.verb ELSE versions.verb END,
    username = CASE WHEN {_BETTER_WRITER} THEN excluded.username ELSE versions.username END,
    span_id = COALESCE(versions.span_id, excluded.span_id),
    arrived_us = excluded.arrived_us
WHERE {_BETTER_BODY} OR {_BETTER_WRITER}
"""
# The stored state of given (object, resourceVersion) keys, passed as one JSON array: a lookup by the
# versions' index per key, whatever the batch's size.
_HELD_VERSIONS = """
SELECT v.object_id, v.rv, v.complete, v.body IS NOT NULL, v.span_id IS NOT NULL
FROM json_each(?) AS k
JOIN versions AS v ON v.object_id = json_extract(k.value, '$[0]') AND v.rv = json_extract(k.value, '$[1]')
"""
_VERSION_COLUMNS = "object_id, uid, rv, time_us, source, verb, username, span_id, complete, deleted"
# Bodies are small (a few KB): an 8 KB window compresses them as well as the default one does, at a
# fraction of the cost of setting up the default's larger state for every body.
_DEFLATE_WBITS = -13
_DEFLATE_LEVEL = 1
_DEFLATE_MEMLEVEL = 5
# The body of a version that is its object's base (the first one stored, or one equal to it): not
# compressed a second time.
_SAME_AS_BASE = b""
# Bases the writer keeps at hand (raw JSON), so a busy object's versions need no read of its base.
_CACHED_BASES = 10_000
# Bases are whole objects: the count alone would let 10,000 large ones take gigabytes.
_CACHED_BASES_BYTES = 32 * 1024 * 1024

_SPAN_COLUMNS = (
    "s.span_id, s.trace_id, s.parent_id, s.source, s.name, s.start_us, s.end_us, s.object_id, s.window, "
    "s.uid, s.kind, s.version, s.error, s.tags, s.logs, o.cluster, o.grp, o.resource, o.namespace, o.name"
)
_SPAN_FROM = "spans AS s JOIN objects AS o ON o.object_id = s.object_id"
# What may be (the start of) a uid: hex digits and dashes, long enough not to be a name's prefix.
_UID_TEXT = re.compile(r"^[0-9a-f]{8}[0-9a-f-]*$")

_OBJECT_COLUMNS = (
    "object_id, cluster, grp, resource, namespace, name, uid, kind, version, owner_id, first_us, last_us"
)


_SOURCES = {source.value: source for source in TraceSource}


def to_signed(value: int) -> int:
    """SQLite integers are signed 64-bit; ids are unsigned."""
    return value - (1 << 64) if value >= (1 << 63) else value


def to_unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def _encode_logs(logs: Sequence[Log]) -> bytes:
    return orjson.dumps([[log.kind, log.message] for log in logs]) if logs else b"[]"


def _decode_logs(blob: bytes) -> tuple[Log, ...]:
    logs = orjson.loads(blob)
    if isinstance(logs, list) and all(
        isinstance(log, list) and len(log) == 2 and type(log[0]) is str and type(log[1]) is str
        for log in logs
    ):
        return tuple(Log(kind, message) for kind, message in logs)
    # A row an older or faulty writer left: read as text rather than break every view holding it.
    entries = logs if isinstance(logs, list) else [logs]
    return tuple(
        Log(_as_text(log[0]), _as_text(log[1]))
        if isinstance(log, list) and len(log) == 2
        else Log("message", _as_text(log))
        for log in entries
    )


_PLAIN_TAG = (str, int, bool)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


def _decode_tags(blob: bytes) -> dict[str, TagValue]:
    """A span row's tags; a value that is not a string, integer or boolean (a list where a user agent
    belongs, from an older or faulty writer) is read as its JSON text, so no view breaks on it."""
    tags = orjson.loads(blob)
    if not isinstance(tags, dict):
        return {}
    for value in tags.values():
        if not isinstance(value, _PLAIN_TAG):
            return {
                key: value if isinstance(value, _PLAIN_TAG) else _as_text(value)
                for key, value in tags.items()
            }
    return tags


_KEPT_VERBS = ("create", "delete", "deleted", "deletecollection")


def _routine_writes(thin: Collection[tuple[str, str]], unless: Sequence[bytes]) -> tuple[str, list[Any]]:
    """A condition on a span row: an update or patch (request or watched change; no create or
    delete verb in its tags) of a ``thin`` object whose logs hold none of ``unless``. Byte tests
    only, as tags and logs are stored (orjson, no spaces): nothing is parsed."""
    objects = " OR ".join("(o.grp = ? AND o.resource = ?)" for _ in thin)
    params: list[Any] = [part for pair in thin for part in pair]
    kept = [_tag_bytes(key, verb) for key in (tags.AUDIT_VERB, tags.CHANGE_VERB) for verb in _KEPT_VERBS]
    clause = (
        f"s.source IN ('audit', 'change') AND ({objects})"
        + "".join(" AND instr(s.logs, ?) = 0" for _ in unless)
        + "".join(" AND instr(s.tags, ?) = 0" for _ in kept)
    )
    return clause, [*params, *unless, *kept]


def _span_from_row(row: Sequence[Any]) -> SpanRecord:
    tags = _decode_tags(row[13])
    parent = row[2]
    return SpanRecord(
        trace_id=int(row[1], 16),
        span_id=to_unsigned(row[0]),
        parent_id=None if parent is None else to_unsigned(parent),
        source=_SOURCES[row[3]],
        name=row[4],
        start_us=row[5],
        end_us=row[6],
        key=ObjectKey(row[15], row[16], row[17], row[18], row[19]),
        object_id=to_unsigned(row[7]),
        window=row[8],
        uid=row[9],
        kind=row[10],
        version=row[11],
        error=bool(row[12]),
        tags=tags,
        logs=_decode_logs(row[14]),
    )


def compress(raw: bytes, base: bytes | None = None) -> bytes:
    if base is None:
        packer = zlib.compressobj(_DEFLATE_LEVEL, zlib.DEFLATED, _DEFLATE_WBITS, _DEFLATE_MEMLEVEL)
    else:
        packer = zlib.compressobj(
            _DEFLATE_LEVEL, zlib.DEFLATED, _DEFLATE_WBITS, _DEFLATE_MEMLEVEL, zdict=base
        )
    return packer.compress(raw) + packer.flush()


def decompress(blob: bytes, base: bytes | None = None) -> bytes:
    unpacker = (
        zlib.decompressobj(_DEFLATE_WBITS) if base is None else zlib.decompressobj(_DEFLATE_WBITS, zdict=base)
    )
    return unpacker.decompress(blob) + unpacker.flush()


def _version_row(version: ObjectVersion, arrived_us: int, body: bytes | None) -> tuple[Any, ...]:
    rv = version.resource_version
    return (
        to_signed(version.object_id),
        rv,
        int(rv) if rv.isdigit() and len(rv) < 19 else -1,
        version.time_us,
        version.uid,
        version.source,
        version.verb,
        version.user,
        None if version.span_id is None else to_signed(version.span_id),
        int(version.complete),
        int(version.deleted),
        arrived_us,
        body,
    )


def _version_from_row(row: Sequence[Any]) -> ObjectVersion:
    return ObjectVersion(
        object_id=to_unsigned(row[0]),
        uid=row[1],
        resource_version=row[2],
        time_us=row[3],
        source=row[4],
        verb=row[5],
        user=row[6],
        span_id=None if row[7] is None else to_unsigned(row[7]),
        complete=bool(row[8]),
        deleted=bool(row[9]),
    )


def _object_from_row(row: Sequence[Any]) -> KnownObject:
    return KnownObject(
        object_id=to_unsigned(row[0]),
        key=ObjectKey.make(row[1], row[2], row[3], row[4], row[5]),
        uid=row[6],
        kind=row[7],
        version=row[8],
        owner_id=None if row[9] is None else to_unsigned(row[9]),
        first_us=row[10],
        last_us=row[11],
    )


class StoreReader:
    """Read access to a store file; safe to use from one thread per instance."""

    def __init__(self, path: str | Path, *, create: bool = False, synchronous: str = "OFF") -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise errors.StoreError(
                f"no store at {self.path} (run `kelemetry replay` or `kelemetry serve` first)"
            )
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        except sqlite3.DatabaseError as exc:
            raise errors.StoreError(f"cannot open store {self.path}: {exc}") from exc
        try:
            version = self._schema_version()
            if version is None and create:
                # WAL is a property of the file: set by the writer, readers inherit it. Nothing is
                # changed in a file that is not empty, which may be another app's or an older store.
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(_SCHEMA)
                self._db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                version = SCHEMA_VERSION
            if version is not None and 0 < version < SCHEMA_VERSION and version in _UPGRADES:
                version = self._upgrade(version)
            self._check_version(version)
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            # A larger page cache keeps the indexes' hot pages in memory across batches, and fewer,
            # larger WAL checkpoints cost less than many small ones.
            self._db.execute("PRAGMA cache_size=-65536")
            self._db.execute("PRAGMA wal_autocheckpoint=4000")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise errors.StoreError(f"cannot open store {self.path}: {exc}") from exc
        except errors.StoreError:
            self._db.close()
            raise
        self._lock = threading.Lock()

    def _schema_version(self) -> int | None:
        """The file's schema version; None for an empty file, -1 for one that is not a store."""
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return None
        if "meta" not in tables:
            return -1
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row is not None and str(row[0]).isdigit() else -1

    def _upgrade(self, version: int) -> int:
        """Bring a store of an older schema up to date in place, when every step is additive; each
        step and its new version number are one transaction."""
        while version < SCHEMA_VERSION and version in _UPGRADES:
            script = (
                f"BEGIN IMMEDIATE;\n{_UPGRADES[version]}\n"
                f"UPDATE meta SET value = '{version + 1}' WHERE key = 'schema_version';\nCOMMIT;"
            )
            try:
                self._db.executescript(script)
            except sqlite3.DatabaseError:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            version += 1
            logger.info("store %s upgraded to schema %d", self.path, version)
        return version

    def _check_version(self, version: int | None) -> None:
        if version == SCHEMA_VERSION:
            return
        if version is None or version < 1:
            raise errors.StoreError(f"{self.path} is not a kelemetry store")
        if version < SCHEMA_VERSION:
            raise errors.StoreError(
                f"{self.path} was written by an older kelemetry (store schema {version}, this one reads "
                f"{SCHEMA_VERSION}); replay the audit logs into a new store (another --store path)"
            )
        raise errors.StoreError(
            f"{self.path} was written by a newer kelemetry (store schema {version}, this one reads "
            f"{SCHEMA_VERSION}); use that version or a new store"
        )

    def close(self) -> None:
        self._db.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- objects

    def find_objects(
        self,
        *,
        cluster: str | None,
        resource: str,
        name: str,
        namespace: str | None = None,
        group: str | None = None,
    ) -> list[KnownObject]:
        sql = f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE name = ? AND resource = ?"
        params: list[Any] = [name, resource]
        if cluster is not None:
            sql += " AND cluster = ?"
            params.append(cluster)
        if namespace is not None:
            sql += " AND namespace = ?"
            params.append(namespace)
        if group is not None:
            sql += " AND grp = ?"
            params.append(group)
        return [_object_from_row(row) for row in self._query(sql, params)]

    def objects(self) -> Iterator[KnownObject]:
        rows = self._query(f"SELECT {_OBJECT_COLUMNS} FROM objects ORDER BY object_id")
        return (_object_from_row(row) for row in rows)

    def object_by_id(self, object_id: int) -> KnownObject | None:
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE object_id = ?", (to_signed(object_id),)
        )
        return _object_from_row(rows[0]) if rows else None

    def clusters(self) -> list[str]:
        return [row[0] for row in self._query("SELECT DISTINCT cluster FROM objects ORDER BY cluster")]

    def resources(self, cluster: str | None = None) -> list[tuple[str, str, str, int]]:
        """(group, resource, a kind, object count) of the known objects."""
        sql = "SELECT grp, resource, MAX(kind), COUNT(*) FROM objects"
        params: list[Any] = []
        if cluster is not None:
            sql += " WHERE cluster = ?"
            params.append(cluster)
        sql += " GROUP BY grp, resource ORDER BY resource, grp"
        return [(row[0], row[1], row[2], row[3]) for row in self._query(sql, params)]

    def suggest(
        self,
        *,
        cluster: str | None = None,
        resource: str | None = None,
        group: str | None = None,
        namespace: str | None = None,
        text: str = "",
        limit: int = 20,
        prefix_only: bool = False,
    ) -> list[KnownObject]:
        """Known objects (deleted ones too) named by ``text``: the exact name first, then uids that
        start with it, then names that start with it (shortest first: "demo" before
        "demo-5544f8b48c-x"); when nothing does, names that contain it (a Pod's distinguishing
        suffix). Most recently active first among equals; without text, the most recently active
        objects. ``prefix_only``: only the exact name and names that start with it, by index."""
        where = ""
        filters: list[Any] = []
        for column, value in (
            ("cluster", cluster),
            ("resource", resource),
            ("grp", group),
            ("namespace", namespace),
        ):
            if value is not None:
                where += f" AND {column} = ?"
                filters.append(value)
        if not text:
            sql = f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE 1 = 1{where}"
            sql += " ORDER BY COALESCE(last_us, 0) DESC, name LIMIT ?"
            return [_object_from_row(row) for row in self._query(sql, [*filters, limit])]
        found: dict[int, KnownObject] = {}
        lower = text.lower()

        def take(condition: str, params: list[Any], count: int) -> list[KnownObject]:
            sql = f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE {condition}{where} LIMIT ?"
            return [_object_from_row(row) for row in self._query(sql, [*params, *filters, count])]

        def most_recent(rows: list[KnownObject]) -> list[KnownObject]:
            return sorted(rows, key=lambda row: -(row.last_us or 0))

        # Kubernetes names are lower-case, so the text is too; then the exact name is an index
        # lookup and the prefix an index range (LIKE could not use objects_by_name).
        for row in most_recent(take("name IN (?, ?)", [text, lower], limit)):
            found.setdefault(row.object_id, row)
        if _UID_TEXT.match(lower) and not prefix_only:
            # No index on uids: one pass over the objects, only for text that can be one.
            for row in most_recent(take("uid >= ? AND uid < ?", [lower, lower + "~"], limit)):
                found.setdefault(row.object_id, row)
        # A prefix reads a bounded slice of the range in name order, then shows the shortest names
        # first ("demo" before "demo-5544f8b48c-x"), the most recently active first among equals.
        prefixed = take("name > ? AND name < ?", [lower, lower + "\U0010ffff"], max(limit * 10, 200))
        for row in sorted(prefixed, key=lambda row: (len(row.key.name), -(row.last_us or 0))):
            found.setdefault(row.object_id, row)
        if not found and not prefix_only:
            # Nothing starts with it: a part of the name (a Pod's distinguishing suffix), or a uid
            # of any form. Neither can use an index, so this is one pass over the objects.
            for row in most_recent(take("(instr(name, ?) > 0 OR uid = ?)", [lower, text], limit)):
                found.setdefault(row.object_id, row)
        # Every incarnation of a name has its own row, so an earlier one's uid is found like any other.
        return list(found.values())[:limit]

    def children_of(self, object_ids: Iterable[int]) -> list[int]:
        ids = [to_signed(i) for i in object_ids]
        found: list[int] = []
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self._query(f"SELECT object_id FROM objects WHERE owner_id IN ({marks})", chunk)
            found.extend(to_unsigned(row[0]) for row in rows)
        return found

    # -- spans

    def windows_of(self, object_ids: Iterable[int]) -> set[int]:
        windows: set[int] = set()
        for chunk in _chunks([to_signed(i) for i in object_ids], 500):
            marks = ",".join("?" * len(chunk))
            rows = self._query(f"SELECT DISTINCT window FROM spans WHERE object_id IN ({marks})", chunk)
            windows.update(row[0] for row in rows)
        return windows

    def spans_of_objects(
        self, object_ids: Iterable[int], start_us: int | None = None, end_us: int | None = None
    ) -> list[SpanRecord]:
        found: list[SpanRecord] = []
        for chunk in _chunks([to_signed(i) for i in object_ids], 500):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {_SPAN_COLUMNS} FROM {_SPAN_FROM} WHERE s.object_id IN ({marks})"
            params: list[Any] = list(chunk)
            if start_us is not None:
                sql += " AND s.end_us >= ?"
                params.append(start_us)
            if end_us is not None:
                sql += " AND s.start_us <= ?"
                params.append(end_us)
            found.extend(_span_from_row(row) for row in self._query(sql, params))
        return found

    def gap_spans(
        self, clusters: Iterable[str], start_us: int | None, end_us: int | None
    ) -> list[SpanRecord]:
        """The gap spans of these clusters overlapping the range, oldest first: found by their pseudo
        objects (one per cluster, by the name index), so no scan of the spans by time is needed."""
        object_ids: list[int] = []
        for cluster in sorted(set(clusters)):
            key = gaps.gap_key(cluster)
            rows = self._query(
                "SELECT object_id FROM objects WHERE name = ? AND resource = ? AND namespace = '' "
                "AND cluster = ? AND grp = ?",
                (key.name, key.resource, key.cluster, key.group),
            )
            object_ids.extend(to_unsigned(row[0]) for row in rows)
        found = [
            span
            for span in self.spans_of_objects(object_ids, start_us, end_us)
            if span.source is TraceSource.GAP
        ]
        return sorted(found, key=lambda span: (span.start_us, span.span_id))

    def heartbeats(self) -> dict[str, int]:
        """The last moment a `serve` process was known to be receiving for each cluster (µs)."""
        rows = self._query("SELECT key, value FROM meta WHERE key LIKE 'heartbeat/%'")
        return {key.removeprefix("heartbeat/"): int(value) for key, value in rows if str(value).isdigit()}

    def first_activity(self, object_id: int) -> int | None:
        """When the object's first request or watched change started; without any, its first Event
        (None: it had none). An Event's time is whole seconds, so it may read up to a second before
        the create it reports on: a ReplicaSet made again 7 ms after its delete has a SuccessfulCreate
        Event dated before that delete. Window by window from the oldest, by index, so a busy object
        costs the reads of its first windows."""
        signed = to_signed(object_id)
        windows = self._query(
            "SELECT DISTINCT window FROM spans WHERE object_id = ? ORDER BY window", (signed,)
        )
        first_event: int | None = None
        for (window,) in windows:
            rows = self._query(
                "SELECT source, MIN(start_us) FROM spans WHERE object_id = ? AND window = ? "
                "AND source <> 'object' GROUP BY source",
                (signed, window),
            )
            starts = {str(source): int(start) for source, start in rows if start is not None}
            requests = [start for source, start in starts.items() if source != TraceSource.EVENT.value]
            if requests:
                return min(requests)
            if first_event is None and TraceSource.EVENT.value in starts:
                first_event = starts[TraceSource.EVENT.value]
        return first_event

    def spans_of_traces(
        self,
        trace_ids: Iterable[int],
        *,
        thin: Collection[tuple[str, str]] = (),
        unless: Sequence[bytes] = (),
    ) -> list[SpanRecord]:
        """Every span of the traces; with ``thin`` (group, resource pairs), the updates and patches of
        those objects (requests and watched changes) whose logs hold none of the ``unless`` texts are
        left out before they are decoded: a reader that only looks for those texts then skips the
        thousands of routine status writes of a big hierarchy."""
        found: list[SpanRecord] = []
        for chunk in _chunks([f"{t:032x}" for t in trace_ids], 500):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {_SPAN_COLUMNS} FROM {_SPAN_FROM} WHERE s.trace_id IN ({marks})"
            params: list[Any] = list(chunk)
            if thin:
                routine, more = _routine_writes(thin, unless)
                sql += f" AND NOT ({routine})"
                params.extend(more)
            found.extend(_span_from_row(row) for row in self._query(sql, params))
        return found

    def spans_after(self, seq: int, limit: int, up_to: int | None = None) -> list[tuple[int, SpanRecord]]:
        """Spans written or changed after export cursor ``seq`` (and, given ``up_to``, at or before
        that write sequence), in write order."""
        params: tuple[int, ...]
        if up_to is None:
            where, params = "s.seq > ?", (seq, limit)
        else:
            where, params = "s.seq > ? AND s.seq <= ?", (seq, up_to, limit)
        rows = self._query(
            f"SELECT s.seq, {_SPAN_COLUMNS} FROM {_SPAN_FROM} WHERE {where} ORDER BY s.seq LIMIT ?", params
        )
        return [(row[0], _span_from_row(row[1:])) for row in rows]

    def all_spans(self) -> list[SpanRecord]:
        return [_span_from_row(row) for row in self._query(f"SELECT {_SPAN_COLUMNS} FROM {_SPAN_FROM}")]

    def digest_rows(self) -> list[tuple[Any, ...]]:
        """Every span row minus the write sequence: what "the store did not change" compares."""
        return [
            tuple(row) for row in self._query(f"SELECT {_SPAN_COLUMNS} FROM {_SPAN_FROM} ORDER BY s.span_id")
        ]

    # -- browsing what happened: requests, Events and watched changes by time, through spans_by_time

    def activity(
        self,
        *,
        cluster: str | None = None,
        group: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        user: str | None = None,
        verb: str | None = None,
        errors_only: bool = False,
        start_us: int | None = None,
        end_us: int | None = None,
        before: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[SpanRecord]:
        """Request, Event and change spans that started in ``[start_us, end_us]``, newest first (ties
        by span id as stored, descending), at most ``limit``. ``before`` is the (start, span id) of
        the last row of the previous page: the page goes on after it, whatever was written since."""
        where, params = _activity_where(
            cluster=cluster,
            group=group,
            resource=resource,
            namespace=namespace,
            user=user,
            verb=verb,
            errors_only=errors_only,
            start_us=start_us,
            end_us=end_us,
        )
        if before is not None:
            # Spelled so that the start bound stays a range on the index, the id only breaking ties.
            where += " AND s.start_us <= ? AND (s.start_us < ? OR s.span_id < ?)"
            params.extend([before[0], before[0], to_signed(before[1])])
        sql = (
            f"SELECT {_SPAN_COLUMNS} FROM {_SPAN_FROM} WHERE {where} "
            "ORDER BY s.start_us DESC, s.span_id DESC LIMIT ?"
        )
        params.append(limit)
        return [_span_from_row(row) for row in self._query(sql, params)]

    def activity_histogram(
        self,
        *,
        bucket_us: int,
        cluster: str | None = None,
        group: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        user: str | None = None,
        verb: str | None = None,
        errors_only: bool = False,
        start_us: int | None = None,
        end_us: int | None = None,
    ) -> list[tuple[int, int, int, int, int, int]]:
        """(bucket start, requests, Events, changes, Warning Events, errors) per ``bucket_us`` with any
        activity matching the same filters as ``activity``, oldest first; buckets are aligned to the
        epoch, empty ones are left out."""
        if bucket_us <= 0:
            raise errors.InputError("the histogram bucket must be longer than zero")
        where, params = _activity_where(
            cluster=cluster,
            group=group,
            resource=resource,
            namespace=namespace,
            user=user,
            verb=verb,
            errors_only=errors_only,
            start_us=start_us,
            end_us=end_us,
        )
        needs_objects = any(value is not None for value in (cluster, group, resource, namespace))
        # Every count comes from columns, none from the tags: an Event span is an error exactly when
        # the Event is a Warning (receivers/events.py), so Warnings need no JSON parsed.
        sql = (
            "SELECT s.start_us / ? * ? AS bucket, SUM(s.source = 'audit'), SUM(s.source = 'event'), "
            "SUM(s.source = 'change'), SUM(s.source = 'event' AND s.error = 1), SUM(s.error) "
            f"FROM {_SPAN_FROM if needs_objects else 'spans AS s'} "
            f"WHERE {where} GROUP BY bucket ORDER BY bucket"
        )
        rows = self._query(sql, [bucket_us, bucket_us, *params])
        return [(row[0], row[1], row[2], row[3], row[4] or 0, row[5]) for row in rows]

    def activity_bounds(self) -> tuple[int, int] | None:
        """The start of the first and of the last request, Event or change in the store."""
        where = "WHERE source <> 'object'"
        low = self._query(f"SELECT start_us FROM spans {where} ORDER BY start_us LIMIT 1")
        high = self._query(f"SELECT start_us FROM spans {where} ORDER BY start_us DESC LIMIT 1")
        return (low[0][0], high[0][0]) if low and high else None

    def recent_objects(
        self,
        *,
        cluster: str | None = None,
        group: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        start_us: int | None = None,
        end_us: int | None = None,
        limit: int = 20,
    ) -> list[tuple[KnownObject, int]]:
        """The objects with a request, Event or change in the range and their last one, most recent
        first: what a search that names no object lists."""
        where, params = _activity_where(
            cluster=cluster,
            group=group,
            resource=resource,
            namespace=namespace,
            start_us=start_us,
            end_us=end_us,
        )
        sql = (
            f"WITH latest AS (SELECT s.object_id AS object_id, MAX(s.start_us) AS last FROM {_SPAN_FROM} "
            f"WHERE {where} GROUP BY s.object_id ORDER BY last DESC LIMIT ?) "
            f"SELECT {', '.join('o.' + c.strip() for c in _OBJECT_COLUMNS.split(','))}, latest.last "
            "FROM latest JOIN objects AS o ON o.object_id = latest.object_id ORDER BY latest.last DESC"
        )
        params.append(limit)
        return [(_object_from_row(row), row[12]) for row in self._query(sql, params)]

    def counts(self) -> dict[str, int]:
        spans = self._query("SELECT source, COUNT(*) FROM spans GROUP BY source")
        objects = self._query("SELECT COUNT(*) FROM objects")[0][0]
        result = {f"spans_{source}": count for source, count in spans}
        result["objects"] = objects
        return result

    def max_seq(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(seq), 0) FROM spans")[0][0])

    # -- object versions (the object at a moment)

    def versions_of(self, object_id: int) -> list[ObjectVersion]:
        """The versions known of one incarnation, without bodies, oldest first (a deletion last)."""
        rows = self._query(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE object_id = ? "
            "ORDER BY deleted, time_us, rv_order, rv",
            (to_signed(object_id),),
        )
        return [_version_from_row(row) for row in rows]

    def version_body(self, object_id: int, resource_version: str) -> Any | None:
        """The cleaned body of one version; None when the store has none (a deletion seen only as a
        request that answered with a Status)."""
        rows = self._query(
            "SELECT v.body, b.body FROM versions AS v LEFT JOIN version_bases AS b USING (object_id) "
            "WHERE v.object_id = ? AND v.rv = ?",
            (to_signed(object_id), resource_version),
        )
        if not rows or rows[0][0] is None:
            return None
        blob, base = rows[0]
        if base is not None:
            base = decompress(base)
            if not blob:
                return orjson.loads(base)
        return orjson.loads(decompress(blob, base))


class SpanStore(StoreReader):
    """The writer of a store file."""

    def __init__(
        self, path: str | Path, *, synchronous: str = "OFF", clock: Callable[[], int] = wall_clock_us
    ) -> None:
        super().__init__(path, create=True, synchronous=synchronous)
        self._clock = clock
        # The high-water mark is kept apart from the spans: retention may delete the spans that
        # held the highest numbers, and an exporter's cursor must never see a number twice.
        try:
            saved = self._query("SELECT value FROM meta WHERE key = 'seq'")
            self._seq = max(self.max_seq(), int(saved[0][0]) if saved else 0)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise errors.StoreError(f"cannot open store {self.path}: {exc}") from exc
        self._bases = BytesLRU(_CACHED_BASES, _CACHED_BASES_BYTES)

    @property
    def last_seq(self) -> int:
        """The write sequence number given last (an exporter's cursor trails it)."""
        return self._seq

    @property
    def base_cache(self) -> BytesLRU:
        """The bases of recently written objects kept in memory (for /metrics)."""
        return self._bases

    def write(
        self,
        spans: Sequence[SpanRecord],
        objects: Iterable[KnownObject] = (),
        versions: Iterable[ObjectVersion] = (),
    ) -> None:
        """Upsert objects, spans and object versions in one transaction; stamp their traces and
        objects as arrived now."""
        now = self._clock()
        trace_rows: dict[str, tuple[str, str, int, int]] = {}
        span_rows = []
        for span in spans:
            self._seq += 1
            trace_hex = f"{span.trace_id:032x}"
            if trace_hex not in trace_rows:
                trace_rows[trace_hex] = (trace_hex, span.key.cluster, span.window, now)
            span_rows.append(
                (
                    to_signed(span.span_id),
                    trace_hex,
                    None if span.parent_id is None else to_signed(span.parent_id),
                    span.source.value,
                    span.name,
                    span.start_us,
                    span.end_us,
                    to_signed(span.object_id),
                    span.window,
                    span.uid,
                    span.kind,
                    span.version,
                    int(span.error),
                    orjson.dumps(span.tags, option=orjson.OPT_SORT_KEYS),
                    _encode_logs(span.logs),
                    self._seq,
                )
            )
        object_rows = [
            (
                to_signed(o.object_id),
                o.key.cluster,
                o.key.group,
                o.key.resource,
                o.key.namespace,
                o.key.name,
                o.uid,
                o.kind,
                o.version,
                None if o.owner_id is None else to_signed(o.owner_id),
                o.first_us,
                o.last_us,
                now,
            )
            for o in objects
        ]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                # What is held and the bases are read in the write's own transaction: a retention pass
                # (another thread) cannot drop a version taken as held, or a base a body is compressed
                # against, between the reading and the writing.
                version_rows, base_rows = self._encode_versions(versions, now)
                if object_rows:
                    self._db.executemany(_UPSERT_OBJECT, object_rows)
                if span_rows:
                    self._db.executemany(_UPSERT_SPAN, span_rows)
                    self._db.executemany(_UPSERT_TRACE, trace_rows.values())
                    self._save_seq()
                if base_rows:
                    self._db.executemany(
                        "INSERT OR IGNORE INTO version_bases (object_id, body) VALUES (?, ?)", base_rows
                    )
                if version_rows:
                    self._db.executemany(_UPSERT_VERSION, version_rows)
                self._db.execute("COMMIT")
            except _REFUSED as exc:
                # What was written is at fault (a constraint, a body that cannot be serialised): the
                # same write would fail again, so the caller must not retry it as it is.
                self._abandon()
                raise errors.StoreRefused(f"write to {self.path} refused: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                self._abandon()
                raise errors.StoreError(f"write to {self.path} failed: {exc}") from exc
            except BaseException:
                self._abandon()
                raise

    def _abandon(self) -> None:
        """Roll a failed write back whole, so the connection is never left inside a transaction."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            # SQLite has rolled the transaction back itself (an I/O error while rolling back ends it);
            # the write's own failure is the one to report.
            logger.warning("rolling back a failed write to %s failed", self.path.name)
        finally:
            # Bases of this write are not stored: nothing may be compressed against them.
            self._bases.clear()

    def _encode_versions(
        self, versions: Iterable[ObjectVersion], now: int
    ) -> tuple[list[tuple[Any, ...]], list[tuple[int, bytes]]]:
        """Version rows with their bodies compressed against their object's base, and the bases
        that are new (an object's first body is its base).

        A version the store already holds as well (a replay, a request seen twice) is dropped before
        anything is serialised or compressed; one that only names its request better goes without
        its body, which the store would not take. Compressing is most of what a version costs.
        Runs in the write's transaction, under the lock.
        """
        batch = versions if isinstance(versions, Sequence) else list(versions)
        bases = self._bases_of({to_signed(v.object_id) for v in batch if v.body is not None})
        held = self._held_versions(batch, bases)
        rows: list[tuple[Any, ...]] = []
        new_bases: list[tuple[int, bytes]] = []
        for version in batch:
            object_id = to_signed(version.object_id)
            key = (object_id, version.resource_version)
            has_body = version.body is not None
            has_span = version.span_id is not None
            state = held.get(key)
            if state is None:
                takes_body = has_body
                held[key] = (version.complete, has_body, has_span)
            else:
                # The upsert's own rules (_BETTER_BODY, _BETTER_WRITER), applied before the work.
                complete, had_body, had_span = state
                takes_body = has_body and (version.complete > complete or not had_body)
                names_request = has_span and not had_span
                if not takes_body and not names_request:
                    continue
                # A later copy in the batch is measured against what the upsert will have made.
                held[key] = (complete or version.complete, had_body or takes_body, had_span or has_span)
            if not takes_body:
                rows.append(_version_row(version, now, None))
                continue
            try:
                raw = orjson.dumps(version.body)
            except orjson.JSONEncodeError:
                # Read but not writable again (nested past orjson's 254 levels): the version is kept
                # without its body rather than failing the write of its whole batch.
                rows.append(_version_row(version, now, None))
                continue
            base = bases.get(object_id)
            if base is None:
                bases[object_id] = raw
                new_bases.append((object_id, compress(raw)))
                self._remember_base(object_id, raw)
                rows.append(_version_row(version, now, _SAME_AS_BASE))
            else:
                rows.append(_version_row(version, now, _SAME_AS_BASE if raw == base else compress(raw, base)))
        return rows, new_bases

    def _bases_of(self, object_ids: set[int]) -> dict[int, bytes]:
        """The stored bases (raw JSON) of those of ``object_ids`` that have one: from the cache, the
        rest in one read."""
        found: dict[int, bytes] = {}
        missing = []
        for object_id in object_ids:
            base = self._bases.get(object_id)
            if base is None:
                missing.append(object_id)
            else:
                found[object_id] = base
        for chunk in _chunks(missing, 500):
            marks = ",".join("?" * len(chunk))
            for object_id, blob in self._db.execute(
                f"SELECT object_id, body FROM version_bases WHERE object_id IN ({marks})", chunk
            ):
                found[object_id] = decompress(blob)
                self._remember_base(object_id, found[object_id])
        return found

    def _held_versions(
        self, batch: Sequence[ObjectVersion], bases: dict[int, bytes]
    ) -> dict[tuple[int, str], tuple[bool, bool, bool]]:
        """What the store holds of the batch's versions, by (object, resourceVersion): complete, has a
        body, names its request. Only an object with a base can have a version with a body, so
        versions of objects new to the store ask nothing."""
        keys = [
            (object_id, v.resource_version) for v in batch if (object_id := to_signed(v.object_id)) in bases
        ]
        if not keys:
            return {}
        rows = self._db.execute(_HELD_VERSIONS, (orjson.dumps(keys),)).fetchall()
        return {(row[0], row[1]): (bool(row[2]), bool(row[3]), bool(row[4])) for row in rows}

    def _remember_base(self, object_id: int, raw: bytes) -> None:
        self._bases[object_id] = raw

    def retrace(self, object_ids: Iterable[int], window: int, trace_id: int) -> int:
        """Move the spans of ``object_ids`` in ``window`` to ``trace_id`` (their root changed).

        Every moved span gets its own write sequence number, so an exporter paging by sequence
        sees each of them. The target trace counts as arrived now (its spans changed), and a trace
        left without spans is forgotten rather than left for retention to count.
        """
        trace_hex = f"{trace_id:032x}"
        now = self._clock()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                moved: list[int] = []
                sources: set[str] = set()
                cluster: str | None = None
                for chunk in _chunks([to_signed(i) for i in object_ids], 500):
                    marks = ",".join("?" * len(chunk))
                    rows = self._db.execute(
                        "SELECT s.span_id, s.trace_id, o.cluster FROM spans AS s "
                        "LEFT JOIN objects AS o ON o.object_id = s.object_id "
                        f"WHERE s.window = ? AND s.object_id IN ({marks}) AND s.trace_id <> ?",
                        (window, *chunk, trace_hex),
                    ).fetchall()
                    for span_id, source, span_cluster in rows:
                        moved.append(span_id)
                        sources.add(source)
                        cluster = cluster or span_cluster
                updates = []
                for span_id in moved:
                    self._seq += 1
                    updates.append((trace_hex, self._seq, span_id))
                self._db.executemany("UPDATE spans SET trace_id = ?, seq = ? WHERE span_id = ?", updates)
                if moved:
                    self._db.execute(_UPSERT_TRACE, (trace_hex, cluster or "", window, now))
                    self._db.executemany(
                        "DELETE FROM traces WHERE trace_id = ? "
                        "AND NOT EXISTS (SELECT 1 FROM spans WHERE trace_id = ?)",
                        [(source, source) for source in sources],
                    )
                self._save_seq()
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise errors.StoreError(f"retrace in {self.path} failed: {exc}") from exc
        return len(moved)

    def beat(self, clusters: Iterable[str], now_us: int) -> None:
        """Note that the collector is receiving for these clusters now: after a stop or a crash, the
        next start reads how far it got (``heartbeats``) and records the time between as a gap."""
        rows = [(f"heartbeat/{cluster}", str(now_us)) for cluster in clusters]
        if not rows:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._abandon()
                raise errors.StoreError(f"write to {self.path} failed: {exc}") from exc

    def checkpoint(self) -> bool:
        """Fold the write-ahead log into the file and truncate it to zero bytes; False when a reader
        kept part of it (the next checkpoint finishes the job). Without this the WAL only ever grows
        to its largest size, and space freed by retention or by the operator never comes back."""
        with self._lock:
            try:
                busy, _log, _done = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.DatabaseError as exc:
                raise errors.StoreError(f"cannot checkpoint {self.path}: {exc}") from exc
        return not busy

    def image(self) -> bytes:
        """The whole store as the bytes of one database file (SQLite's online backup, so writes
        before this call are in it and none is half in it): what a scaled-mode snapshot carries."""
        with self._lock:
            copy = sqlite3.connect(":memory:")
            try:
                self._db.backup(copy)
                return bytes(copy.serialize())
            except sqlite3.DatabaseError as exc:
                raise errors.StoreError(f"cannot copy {self.path}: {exc}") from exc
            finally:
                copy.close()

    def _save_seq(self) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('seq', ?)", (str(self._seq),))

    def apply_retention(
        self, *, max_age_us: int | None, max_bytes: int | None, dry_run: bool = False
    ) -> RetentionReport:
        """Remove whole traces that arrived more than ``max_age_us`` ago, then the least recently
        arrived ones while the file's used bytes exceed ``max_bytes``, then the objects nothing
        refers to any more that were not seen within ``max_age_us``. None disables a limit.

        Ages count from arrival by the store's clock, never from timestamps in the data. One
        transaction: a pass is whole or absent, and a dry run is the same pass rolled back, so its
        counts (the size limit included, measured on the pages the deletes really free) are the
        ones a real pass right after would report.
        """
        now = self._clock()
        counts: dict[str, list[int]] = {}
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if max_age_us is not None:
                    # Versions age like traces, by arrival; those of dropped traces and objects go with them.
                    self._db.execute("DELETE FROM versions WHERE arrived_us < ?", (now - max_age_us,))
                    self._drop_traces(counts, "arrived_us < ?", (now - max_age_us,), lambda: True)
                if max_bytes is not None:
                    self._drop_traces(counts, "1 = 1", (), lambda: self._used_bytes() > max_bytes)
                if max_age_us is not None:
                    self._drop_objects(counts, now - max_age_us)
                self._db.execute(
                    "DELETE FROM version_bases WHERE NOT EXISTS "
                    "(SELECT 1 FROM versions AS v WHERE v.object_id = version_bases.object_id)"
                )
                self._db.execute("ROLLBACK" if dry_run else "COMMIT")
            except sqlite3.DatabaseError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise errors.StoreError(f"retention in {self.path} failed: {exc}") from exc
            finally:
                # A base may have gone with its object's last version; the next body becomes a new
                # one. Cleared before the lock is let go, so no write compresses against it.
                self._bases.clear()
        return RetentionReport(
            {cluster: Removed(*numbers) for cluster, numbers in counts.items()}, dry_run=dry_run
        )

    def _drop_traces(
        self, counts: dict[str, list[int]], where: str, params: Sequence[Any], more: Callable[[], bool]
    ) -> None:
        """Delete traces matching ``where``, least recently arrived first, while ``more()`` holds."""
        while True:
            batch = self._db.execute(
                f"SELECT trace_id, cluster FROM traces WHERE {where} ORDER BY arrived_us, trace_id LIMIT 256",
                params,
            ).fetchall()
            if not batch:
                return
            for trace_hex, cluster in batch:
                if not more():
                    return
                # The versions the trace's requests made go with them (found by object, the versions'
                # index, then by span).
                self._db.execute(
                    "DELETE FROM versions "
                    "WHERE object_id IN (SELECT object_id FROM spans WHERE trace_id = ?) "
                    "AND span_id IN (SELECT span_id FROM spans WHERE trace_id = ?)",
                    (trace_hex, trace_hex),
                )
                spans = self._db.execute("DELETE FROM spans WHERE trace_id = ?", (trace_hex,)).rowcount
                self._db.execute("DELETE FROM traces WHERE trace_id = ?", (trace_hex,))
                # A trace whose spans all moved to another root by an upsert is bookkeeping, not data.
                if spans:
                    tally = counts.setdefault(cluster, [0, 0, 0])
                    tally[0] += 1
                    tally[1] += spans

    def _drop_objects(self, counts: dict[str, list[int]], seen_before_us: int) -> None:
        doomed = self._db.execute(_EXPIRED_OBJECTS, {"cutoff": seen_before_us}).fetchall()
        for chunk in _chunks([object_id for object_id, _cluster in doomed], 500):
            marks = ",".join("?" * len(chunk))
            self._db.execute(f"DELETE FROM objects WHERE object_id IN ({marks})", chunk)
            self._db.execute(f"DELETE FROM versions WHERE object_id IN ({marks})", chunk)
        for _object_id, cluster in doomed:
            counts.setdefault(cluster, [0, 0, 0])[2] += 1

    def _used_bytes(self) -> int:
        page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)


# Write failures caused by the data written rather than by the store or its disk.
_REFUSED = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    TypeError,
    ValueError,
    OverflowError,
)

# A tag of a span row: stored as JSON bytes, read as text (a BLOB is not JSON to SQLite).
_TAG = "json_extract(CAST(s.tags AS TEXT), '$.\"{}\"')"


def _tag_bytes(key: str, value: str) -> bytes:
    """``"key":"value"`` as a stored tags blob holds it."""
    return orjson.dumps({key: value})[1:-1]


def _activity_where(
    *,
    cluster: str | None = None,
    group: str | None = None,
    resource: str | None = None,
    namespace: str | None = None,
    user: str | None = None,
    verb: str | None = None,
    errors_only: bool = False,
    start_us: int | None = None,
    end_us: int | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause shared by the browsing queries. It repeats the partial index's own condition
    (``source <> 'object'``), which is what lets SQLite walk spans_by_time; the object columns are
    checked on the joined row, the tags only on rows that pass every cheaper test."""
    clauses = ["s.source <> 'object'"]
    params: list[Any] = []
    if start_us is not None:
        clauses.append("s.start_us >= ?")
        params.append(start_us)
    if end_us is not None:
        clauses.append("s.start_us <= ?")
        params.append(end_us)
    if errors_only:
        clauses.append("s.error = 1")
    for column, value in (
        ("o.cluster", cluster),
        ("o.grp", group),
        ("o.resource", resource),
        ("o.namespace", namespace),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    # A tag test first looks for the bytes its match must contain (tags are written by orjson, sorted
    # and without spaces), which is several times cheaper than parsing the JSON of every row; only
    # the rows that have them are parsed to confirm.
    if user is not None:
        clauses.append(f"instr(s.tags, ?) > 0 AND {_TAG.format(tags.AUDIT_USER)} = ?")
        params.extend([_tag_bytes(tags.AUDIT_USER, user), user])
    if verb is not None:
        # A watched change has a verb of its own (create, update, delete) but no user.
        clauses.append(
            "(instr(s.tags, ?) > 0 OR instr(s.tags, ?) > 0) AND "
            f"COALESCE({_TAG.format(tags.AUDIT_VERB)}, {_TAG.format(tags.CHANGE_VERB)}) = ?"
        )
        params.extend([_tag_bytes(tags.AUDIT_VERB, verb), _tag_bytes(tags.CHANGE_VERB, verb), verb])
    return " AND ".join(clauses), params


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
