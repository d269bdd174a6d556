"""Recorded input files: kube-apiserver audit logs (its log backend: one audit Event per line) and
Kubernetes Events files (``events.jsonl``: one Event object or watch event per line).

Files are streamed line by line, plain or gzip (recognised by content, not name), so a file of any
size replays in constant memory. A line that is not a valid audit Event is counted and reported
with its line number; it does not stop the replay.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, cast

import orjson

from kelemetry import errors
from kelemetry.receivers.auditwire import AuditEvent, decode_line
from kelemetry.receivers.events import is_kube_event, unwrap

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
"""Called with (bytes read so far, total bytes) as a file is consumed."""


@dataclass
class FileStats:
    lines: int = 0
    events: int = 0
    bad_lines: int = 0


def open_audit_file(path: str) -> tuple[IO[bytes], IO[bytes]]:
    """Open ``path`` for reading; returns (line source, underlying raw file for progress)."""
    try:
        raw: IO[bytes] = open(path, "rb")
    except OSError as exc:
        raise errors.InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        unzipped = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
        return unzipped, raw
    raw.seek(0)
    return raw, raw


def read_audit_file(
    path: str,
    stats: FileStats | None = None,
    progress: ProgressFn | None = None,
    batch_lines: int = 2000,
) -> Iterator[list[AuditEvent]]:
    """Yield batches of audit events from a JSON-lines file (every line decoded: with bodies left
    undecoded that is cheaper than a byte scan to skip reads, and the converter counts what it drops)."""
    stats = stats if stats is not None else FileStats()
    source, raw = open_audit_file(path)
    try:
        total = os.fstat(raw.fileno()).st_size
        batch: list[AuditEvent] = []
        try:
            for line in source:
                stats.lines += 1
                if not line.strip():
                    continue
                try:
                    batch.extend(decode_line(line, f"{path}:{stats.lines}"))
                except errors.InputError as exc:
                    stats.bad_lines += 1
                    logger.warning("%s, skipped", exc)
                    continue
                if len(batch) >= batch_lines:
                    stats.events += len(batch)
                    yield batch
                    batch = []
                    if progress is not None:
                        progress(raw.tell(), total)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise errors.InputError(f"cannot read {path} past line {stats.lines}: {exc}") from exc
        if batch:
            stats.events += len(batch)
            yield batch
        if progress is not None:
            progress(total, total)
    finally:
        source.close()
        raw.close()


def sniff(path: str) -> str:
    """``"events"`` if the file's first record is a Kubernetes Event, else ``"audit"``."""
    source, raw = open_audit_file(path)
    try:
        for line in source:
            if line.strip():
                try:
                    return "events" if is_kube_event(orjson.loads(line)) else "audit"
                except orjson.JSONDecodeError:
                    return "audit"
        return "audit"
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise errors.InputError(f"cannot read {path}: {exc}") from exc
    finally:
        source.close()
        raw.close()


def read_kube_events_file(
    path: str, stats: FileStats | None = None, progress: ProgressFn | None = None, batch_lines: int = 2000
) -> Iterator[list[Mapping[str, Any]]]:
    """Yield batches of Kubernetes Event objects (deleted ones skipped) from a JSON-lines file."""
    stats = stats if stats is not None else FileStats()
    source, raw = open_audit_file(path)
    try:
        total = os.fstat(raw.fileno()).st_size
        batch: list[Mapping[str, Any]] = []
        for line in source:
            stats.lines += 1
            if not line.strip():
                continue
            try:
                found = unwrap(orjson.loads(line))
            except orjson.JSONDecodeError:
                found = None
            if found is None or not is_kube_event(found[1]):
                stats.bad_lines += 1
                logger.warning("%s:%d: not a Kubernetes Event, skipped", path, stats.lines)
                continue
            stats.events += 1
            if found[0] in ("ADDED", "MODIFIED"):
                batch.append(found[1])
            if len(batch) >= batch_lines:
                yield batch
                batch = []
                if progress is not None:
                    progress(raw.tell(), total)
        if batch:
            yield batch
        if progress is not None:
            progress(total, total)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise errors.InputError(f"cannot read {path} past line {stats.lines}: {exc}") from exc
    finally:
        source.close()
        raw.close()
