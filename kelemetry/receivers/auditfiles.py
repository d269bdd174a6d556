"""Recorded input files: audit logs and Kubernetes Events in the forms people have them.

Read by content, never by name: gzip or plain; JSON lines (the apiserver's log backend, recorded
``events.jsonl``, Cloud Logging exports), one JSON document or several pretty-printed ones (an
object, an array, an ``EventList``, ``kubectl get events -o json``), or YAML (one or many
documents, ``kubectl get events -o yaml``, Cloud Logging entries). ``-`` is standard input; a
directory is its files, rotated ones first (``audit.log.2.gz``, ``audit.log.1``, ``audit.log``).

JSON lines are streamed in constant memory: they are the big files, and every line is decoded
straight into an audit Event; a line that is not one is looked at again to see what it is. Whole
documents (JSON that is not one object per line, YAML) are read at once. What cannot be read is
counted with the place of the first such record and a hint of what it looked like, for one line
of summary per file (`FileStats.summary`), never a warning per line.
"""

from __future__ import annotations

import functools
import gzip
import importlib
import io
import itertools
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import msgspec
import orjson

from kelemetry import errors
from kelemetry.receivers import documents
from kelemetry.receivers.auditwire import AuditEvent, decode_line
from kelemetry.receivers.documents import KubeEvent, Unreadable

ProgressFn = Callable[[int, int], None]
"""Called with (bytes read so far, total bytes) as a file is consumed."""

STDIN = "-"
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
_YAML_START = re.compile(rb"^(---|%YAML|- |[\"']?[\w.@/-]+[\"']?\s*:(\s|$))")
_BLANK = re.compile(r"\s*")
_ROTATED = re.compile(r"^(?P<base>.*?)[.-](?P<n>\d+)$")


@dataclass
class FileStats:
    lines: int = 0
    events: int = 0
    """Records read: audit events and Kubernetes Events."""
    bad_lines: int = 0
    """Records that could not be read (a line, a document or an item of a list)."""
    first_bad: str = ""
    """Where the first of them is: ``line 12`` or ``line 3, item 4``."""
    hint: str = ""
    """What the first of them looked like."""

    def bad(self, where: str, hint: str) -> None:
        self.bad_lines += 1
        if not self.first_bad:
            self.first_bad, self.hint = where, hint

    def summary(self, path: str) -> str:
        """One line about the unreadable records of ``path`` ('' when there were none)."""
        if not self.bad_lines:
            return ""
        records = "record" if self.bad_lines == 1 else "records"
        return (
            f"{path}: {self.bad_lines} unreadable {records} skipped, "
            f"the first at {self.first_bad}: {self.hint}"
        )


@dataclass
class Batch:
    """Records of one input, in input order per kind."""

    audit: list[AuditEvent] = field(default_factory=list)
    kube_events: list[Mapping[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.audit) + len(self.kube_events)


# ---------------------------------------------------------------------------------------------
# Finding and opening inputs


def _rotation_key(path: Path) -> tuple[str, int, int, str]:
    """Oldest first: ``audit.log.2.gz`` before ``audit.log.1`` before ``audit.log``; names that carry
    a timestamp (kube-apiserver's own ``audit-2024-05-01T10-00-00.000.log``) sort as they are."""
    name = path.name.removesuffix(".gz")
    rotated = _ROTATED.match(name)
    if rotated and len(rotated["n"]) <= 3:
        return rotated["base"], 0, -int(rotated["n"]), path.name
    return name, 1, 0, path.name


def expand(path: str) -> list[str]:
    """The files an input names: itself, or a directory's files (not hidden ones, not sub-directories)."""
    if path == STDIN or not os.path.isdir(path):
        return [path]
    found = [p for p in Path(path).iterdir() if p.is_file() and not p.name.startswith(".")]
    return [str(p) for p in sorted(found, key=_rotation_key)]


def open_audit_file(path: str) -> tuple[IO[bytes], IO[bytes]]:
    """Open ``path`` (``-``: standard input) for reading; returns (byte source, the underlying raw
    stream for progress). Gzip is recognised by its magic bytes."""
    try:
        raw = cast(io.BufferedReader, sys.stdin.buffer if path == STDIN else open(path, "rb"))
    except OSError as exc:
        raise errors.InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        head = raw.peek(2)[:2]
    except OSError as exc:
        raise errors.InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if head == GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")), raw
    return raw, raw


def _size(raw: IO[bytes]) -> int:
    try:
        info = os.fstat(raw.fileno())
    except (OSError, ValueError):
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


# ---------------------------------------------------------------------------------------------
# Reading


def _line_hint(line: bytes) -> str:
    try:
        text = line.decode()
    except UnicodeDecodeError:
        return "not valid UTF-8 text"
    if _YAML_START.match(line.lstrip()):
        return "looks like YAML inside a JSON lines file"
    stripped = text.strip()
    if stripped in ("{", "[") or stripped.startswith(('"', "}", "]")):
        return "looks like pretty-printed JSON mixed into a JSON lines file"
    return "not valid JSON"


class _Reader:
    """The records of one input, gathered into batches."""

    def __init__(self, stats: FileStats, batch_lines: int) -> None:
        self.stats = stats
        self.batch_lines = batch_lines
        self.batch = Batch()

    def add(self, record: documents.Record, where: Callable[[], str]) -> None:
        if isinstance(record, AuditEvent):
            self.stats.events += 1
            self.batch.audit.append(record)
        elif isinstance(record, KubeEvent):
            self.stats.events += 1
            if not record.deleted:
                self.batch.kube_events.append(record.obj)
        else:
            self.stats.bad(where(), record.hint)

    def add_document(self, document: Any, line: int, item_lines: list[int] | None = None) -> None:
        if document is None:  # an empty YAML document ("---" with nothing after it)
            return
        for record in documents.records(document):

            def where(record: documents.Record = record) -> str:
                item = record.item if isinstance(record, Unreadable) else None
                if item is None:
                    return f"line {line}"
                if item_lines and item < len(item_lines):
                    return f"line {item_lines[item]}"
                return f"line {line}, item {item + 1}"

            self.add(record, where)

    def take(self) -> Batch:
        batch, self.batch = self.batch, Batch()
        return batch


def _json_lines(lines: Iterable[bytes], reader: _Reader, progress: Callable[[], None]) -> Iterator[Batch]:
    """The hot path: each line decoded straight into an audit Event; a line that is not one is
    decoded again as plain JSON to see what it holds (an Event, a Cloud Logging entry, a List)."""
    stats = reader.stats
    batch_lines = reader.batch_lines
    audit = reader.batch.audit
    for line in lines:
        stats.lines += 1
        if not line.strip():
            continue
        try:
            events = decode_line(line, "line")
            stats.events += len(events)
            audit.extend(events)
        except errors.InputError:
            _other_line(line, reader)
        if len(audit) + len(reader.batch.kube_events) >= batch_lines:
            yield reader.take()
            audit = reader.batch.audit
            progress()
    if len(reader.batch):
        yield reader.take()


def _generic_lines(lines: Iterable[bytes], reader: _Reader, progress: Callable[[], None]) -> Iterator[Batch]:
    """JSON lines whose first record is not an audit Event (Kubernetes Events, Cloud Logging)."""
    stats = reader.stats
    for line in lines:
        stats.lines += 1
        if not line.strip():
            continue
        _other_line(line, reader)
        if len(reader.batch) >= reader.batch_lines:
            yield reader.take()
            progress()
    if len(reader.batch):
        yield reader.take()


def _other_line(line: bytes, reader: _Reader) -> None:
    number = reader.stats.lines
    if line.lstrip().startswith(b"#"):
        return
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            # orjson reads numbers as doubles; one beyond a double (valid JSON) must not cost the
            # line's other, readable events.
            document = msgspec.json.decode(line)
        except msgspec.DecodeError:
            reader.stats.bad(f"line {number}", _line_hint(line))
            return
    reader.add_document(document, number)


def _line_of(data: bytes | str, position: int) -> int:
    if isinstance(data, bytes):
        return data.count(b"\n", 0, position) + 1
    return data.count("\n", 0, position) + 1


def _json_documents(data: bytes, reader: _Reader) -> bool:
    """Read ``data`` as one JSON document or several concatenated ones (``jq .`` output); False if
    not even the first is JSON."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        reader.add_document(document, _line_of(data, len(data) - len(data.lstrip())))
        return True
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return False
    decoder = json.JSONDecoder()
    position = 0
    read = False
    while True:
        blank = _BLANK.match(text, position)
        position = blank.end() if blank else position
        if position >= len(text):
            return True
        try:
            document, end = decoder.raw_decode(text, position)
        except ValueError as exc:
            # Not JSON, or a number of more digits than Python converts (4,300), which is no
            # JSONDecodeError.
            if not read:
                return False
            where = _line_of(text, exc.pos if isinstance(exc, json.JSONDecodeError) else position)
            problem = exc.msg if isinstance(exc, json.JSONDecodeError) else "a number too long to read"
            reader.stats.bad(f"line {where}", f"not valid JSON: {problem}; the rest was not read")
            return True
        reader.add_document(document, _line_of(text, position))
        read = True
        position = end


@functools.cache
def _yaml() -> tuple[Any, Any]:
    """(the yaml module, a safe loader that keeps timestamps as the strings they were). PyYAML comes
    with the kubernetes client; it is imported when a YAML input is read, and without its stubs.
    Audit and Event times are parsed (with their precision) where they are read, as in JSON input."""
    yaml = importlib.import_module("yaml")
    resolvers = {
        first: [(tag, pattern) for tag, pattern in found if tag != "tag:yaml.org,2002:timestamp"]
        for first, found in yaml.CSafeLoader.yaml_implicit_resolvers.items()
    }
    loader = type("TimestampsAsText", (yaml.CSafeLoader,), {"yaml_implicit_resolvers": resolvers})
    return yaml, loader


def _item_lines(yaml: Any, node: Any) -> list[int] | None:
    """Line of each item of a list document (a sequence, or a mapping's ``items``)."""
    if isinstance(node, yaml.MappingNode):
        node = next(
            (value for key, value in node.value if isinstance(key, yaml.ScalarNode) and key.value == "items"),
            node,
        )
    if isinstance(node, yaml.SequenceNode):
        return [item.start_mark.line + 1 for item in node.value]
    return None


def _yaml_documents(data: bytes, reader: _Reader) -> None:
    yaml, loader_class = _yaml()
    loader = loader_class(data)
    try:
        while loader.check_node():
            node = loader.get_node()
            document = loader.construct_document(node)
            reader.add_document(document, node.start_mark.line + 1, _item_lines(yaml, node))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else f"line {reader.stats.lines}"
        problem = getattr(exc, "problem", None) or str(exc).split("\n")[0]
        reader.stats.bad(where, f"not valid YAML ({problem}); the rest was not read")
    finally:
        loader.dispose()


def _first_content(source: IO[bytes], stats: FileStats) -> tuple[list[bytes], bytes]:
    """Lines up to and with the first one that is not blank or a comment; b"" at the end of input."""
    skipped: list[bytes] = []
    for line in source:
        if not skipped and line.startswith(UTF8_BOM):
            line = line[len(UTF8_BOM) :]  # editors on Windows (and PowerShell's redirection) write one
        stripped = line.strip()
        if stripped and not stripped.startswith(b"#"):
            return skipped, line
        skipped.append(line)
    return skipped, b""


def _starts_audit_stream(line: bytes) -> bool | None:
    """True if ``line`` is an audit Event (the hot path), False if another JSON object, None if it is
    not one JSON object (pretty-printed JSON or YAML)."""
    try:
        decode_line(line, "line")
        return True
    except errors.InputError:
        pass
    try:
        return False if isinstance(orjson.loads(line), dict) else None
    except orjson.JSONDecodeError:
        # A broken first line of a JSON lines file must not make a big log be read whole.
        stripped = line.strip()
        return True if stripped.startswith(b"{") and stripped.endswith(b"}") and len(stripped) > 2 else None


def read_input(
    path: str,
    stats: FileStats | None = None,
    progress: ProgressFn | None = None,
    batch_lines: int = 2000,
) -> Iterator[Batch]:
    """Yield batches of the audit events and Kubernetes Events of one input, whatever its form."""
    stats = stats if stats is not None else FileStats()
    source, raw = open_audit_file(path)
    total = _size(raw)

    def report() -> None:
        if progress is not None and total:
            progress(raw.tell(), total)

    reader = _Reader(stats, batch_lines)
    try:
        try:
            skipped, first = _first_content(source, stats)
            lines = itertools.chain(skipped, [first] if first else [], source)
            start = first.lstrip()
            audit_stream = _starts_audit_stream(first) if start[:1] in (b"{", b"[") else None
            if not first:
                stats.lines += len(skipped)
            elif audit_stream is True:
                yield from _json_lines(lines, reader, report)
            elif audit_stream is False:
                yield from _generic_lines(lines, reader, report)
            else:
                # One document or a few: read whole. Only JSON lines need to stream.
                data = b"".join(lines)
                stats.lines += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
                if start[:1] in (b"{", b"["):
                    if not _json_documents(data, reader):
                        stats.lines = 0
                        yield from _json_lines(data.splitlines(), reader, report)
                elif _YAML_START.match(start):
                    _yaml_documents(data, reader)
                else:
                    stats.lines = 0
                    yield from _json_lines(data.splitlines(), reader, report)
                if len(reader.batch):
                    yield reader.take()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise errors.InputError(f"cannot read {path} past line {stats.lines}: {exc}") from exc
        if progress is not None:
            progress(total, total)
    finally:
        if path != STDIN:
            source.close()
            raw.close()
        elif source is not raw:
            source.close()  # the gzip reader only; standard input stays open


def read_audit_file(
    path: str,
    stats: FileStats | None = None,
    progress: ProgressFn | None = None,
    batch_lines: int = 2000,
) -> Iterator[list[AuditEvent]]:
    """Yield batches of the audit events of one input (its Kubernetes Events are counted, not kept)."""
    for batch in read_input(path, stats, progress, batch_lines):
        if batch.audit:
            yield batch.audit


def read_kube_events_file(
    path: str, stats: FileStats | None = None, progress: ProgressFn | None = None, batch_lines: int = 2000
) -> Iterator[list[Mapping[str, Any]]]:
    """Yield batches of the Kubernetes Event objects of one input (deleted ones skipped)."""
    for batch in read_input(path, stats, progress, batch_lines):
        if batch.kube_events:
            yield batch.kube_events


def sniff(path: str) -> str:
    """``"events"`` if the input's first record is a Kubernetes Event, else ``"audit"``."""
    for batch in read_input(path, batch_lines=1):
        return "events" if batch.kube_events else "audit"
    return "audit"
