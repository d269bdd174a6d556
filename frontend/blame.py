"""Field blame: the values one field of an object had, and who set each, per incarnation.

Pure: it reads the diff lines of an incarnation's requests and watched changes (paths as the diff
renders them, ``spec.template.spec.containers[name=nginx].image``), so it answers from any backend's
spans. A field matches a line whose path is the field, lies below it (a prefix such as
``spec.template`` collects every change under it) or lies above it (the whole container list
replaced): the entry then names the path that changed. Writes through subresources (``scale``,
``status``) carry diff lines like any other request and are blamed the same way.

The value at creation is not in any diff line; it comes from the stored body of the version the
create made, when the backend keeps versions (the embedded store). The caller reads it and hands it
in as ``Creation``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import orjson

from frontend import actors
from frontend.actors import Request
from frontend.spanfacts import ObjectJson, RequestJson, format_time
from kelemetry import errors
from kelemetry.diff.compute import render_path, render_value
from kelemetry.model.diffs import Segment
from kelemetry.model.events import TraceSource
from kelemetry.model.spans import SpanRecord

Source = Literal["audit", "change"]

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ITEM = re.compile(
    r'\[(?:(?P<index>\d+)|"(?P<key>(?:[^"\\]|\\.)*)"|(?P<field>\w+)=(?P<value>"(?:[^"\\]|\\.)*"|[^\]]*))\]'
)
_ARROW = " -> "


def parse_field(text: str) -> tuple[Segment, ...]:
    """The steps of a field path as the diff writes it; InputError with the reason when it is not one."""
    field = text.strip()
    if not field:
        raise errors.InputError("missing field: name one, e.g. spec.replicas")
    segments: list[Segment] = []
    position = 0
    while position < len(field):
        if field[position] == "[":
            match = _ITEM.match(field, position)
            if match is None:
                raise errors.InputError(
                    f'invalid field {text!r} at character {position + 1}: use [0], ["key"] or [name=value]'
                )
            if match["index"] is not None:
                segments.append(int(match["index"]))
            elif match["key"] is not None:
                segments.append(_unquote(match["key"]))
            else:
                value = match["value"]
                segments.append((match["field"], _unquote(value[1:-1]) if value.startswith('"') else value))
            position = match.end()
            continue
        if field[position] == "." and segments:
            position += 1
        match = _NAME.match(field, position)
        if match is None:
            raise errors.InputError(
                f"invalid field {text!r} at character {position + 1}: a path is names joined by dots, "
                "e.g. spec.template.spec.containers[name=nginx].image"
            )
        segments.append(match.group())
        position = match.end()
    return tuple(segments)


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _path_of(line: str) -> tuple[str, str] | None:
    """The path of a diff line and the rest (``old -> new``): the path ends at the first space outside
    a quoted item."""
    quoted = False
    escaped = False
    for position, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == " " and not quoted:
            return line[:position], line[position + 1 :]
    return None


def _values(rest: str) -> tuple[str, str]:
    """``old`` and ``new`` of ``old -> new``: the split where the old side is whole JSON (a value
    may hold the arrow itself), else the first arrow."""
    splits = [match.start() for match in re.finditer(re.escape(_ARROW), rest)]
    for split in splits:
        old = rest[:split]
        try:
            orjson.loads(old)
        except orjson.JSONDecodeError:
            continue
        return old, rest[split + len(_ARROW) :]
    if splits:
        return rest[: splits[0]], rest[splits[0] + len(_ARROW) :]
    return rest, ""


def relation(path: tuple[Segment, ...], field: tuple[Segment, ...]) -> bool:
    """Whether a changed path touches the field: the field itself, below it or above it."""
    shorter = min(len(path), len(field))
    return path[:shorter] == field[:shorter]


class EntryJson(TypedDict):
    time: str
    time_us: int
    path: str
    old: str | None
    new: str | None
    request: RequestJson | None
    source: Source
    proven: bool
    note: str | None


@dataclass(frozen=True, slots=True)
class Entry:
    time_us: int
    path: str
    old: str | None
    new: str | None
    request: Request | None
    source: Source
    proven: bool
    note: str | None = None

    def to_json(self) -> EntryJson:
        return {
            "time": format_time(self.time_us),
            "time_us": self.time_us,
            "path": self.path,
            "old": self.old,
            "new": self.new,
            "request": None if self.request is None else self.request.to_json(),
            "source": self.source,
            "proven": self.proven,
            "note": self.note,
        }

    def text(self) -> str:
        old = "(unknown)" if self.old is None else self.old
        new = "(unknown)" if self.new is None else self.new
        who = (
            self.request.text() if self.request is not None else "a watched change (who made it is not known)"
        )
        line = f"{format_time(self.time_us)}  {self.path} {old} -> {new}\n    by {who}"
        if self.note:
            line += f"\n    note: {self.note}"
        return line


@dataclass(frozen=True, slots=True)
class Creation:
    """What is known of the field when the incarnation was created."""

    span: SpanRecord | None
    """The create request's span, when one is recorded."""
    value: str | None
    """The field's value in the created object, rendered as diff lines render values; None: not known."""
    note: str | None = None


class IncarnationJson(TypedDict):
    uid: str
    first: str | None
    first_us: int | None
    last: str | None
    last_us: int | None
    deleted: bool
    history: list[EntryJson]


@dataclass(frozen=True, slots=True)
class IncarnationBlame:
    uid: str
    first_us: int | None
    last_us: int | None
    deleted: bool
    history: tuple[Entry, ...]

    def to_json(self) -> IncarnationJson:
        return {
            "uid": self.uid,
            "first": None if self.first_us is None else format_time(self.first_us),
            "first_us": self.first_us,
            "last": None if self.last_us is None else format_time(self.last_us),
            "last_us": self.last_us,
            "deleted": self.deleted,
            "history": [entry.to_json() for entry in self.history],
        }


class BlameJson(TypedDict):
    object: ObjectJson
    field: str
    current: EntryJson | None
    incarnations: list[IncarnationJson]


@dataclass(frozen=True, slots=True)
class Blame:
    object: ObjectJson
    field: str
    incarnations: tuple[IncarnationBlame, ...]
    """Newest first."""

    @property
    def current(self) -> Entry | None:
        """Who set the value the newest incarnation has now (its latest entry)."""
        if not self.incarnations or not self.incarnations[0].history:
            return None
        return self.incarnations[0].history[-1]

    def to_json(self) -> BlameJson:
        current = self.current
        return {
            "object": self.object,
            "field": self.field,
            "current": None if current is None else current.to_json(),
            "incarnations": [incarnation.to_json() for incarnation in self.incarnations],
        }

    def text(self) -> str:
        obj = self.object
        where = f"{obj['namespace']}/" if obj["namespace"] else ""
        lines = [
            f"{obj['kind'] or obj['resource']} {where}{obj['name']} (cluster {obj['cluster']}): {self.field}"
        ]
        current = self.current
        if current is not None:
            who = current.request.user if current.request else "(not known)"
            # Asked about a prefix, the latest entry is the value of one path below it (or of a
            # whole list above it): without the path, the value reads as the field's.
            value = current.new if current.path == self.field else f"{current.path} = {current.new}"
            lines.append(f"now: {value} — set by {who} at {format_time(current.time_us)}")
        else:
            lines.append("now: no change of this field is recorded")
        for index, incarnation in enumerate(self.incarnations):
            state = "deleted" if incarnation.deleted else "exists"
            label = "newest" if index == 0 else "earlier"
            lines.append("")
            lines.append(f"incarnation uid {incarnation.uid or '?'} ({label}, {state}):")
            if not incarnation.history:
                lines.append("  no change of this field is recorded")
            for entry in incarnation.history:
                lines.extend("  " + line for line in entry.text().splitlines())
        return "\n".join(lines)


def history(
    activity: Iterable[SpanRecord], field: tuple[Segment, ...], creation: Creation | None = None
) -> list[Entry]:
    """The entries of one incarnation's activity for a field, oldest first: its value at creation
    (when given), then every diff line that touched it."""
    entries: list[Entry] = []
    if creation is not None:
        entries.append(_creation_entry(creation, field))
    for span in sorted(activity, key=lambda s: (s.start_us, s.span_id)):
        if span.source not in (TraceSource.AUDIT, TraceSource.CHANGE):
            continue
        request = actors.request_of(span)
        if request is not None and not request.succeeded:
            continue
        for line in actors.diff_lines(span):
            split = _path_of(line)
            if split is None:
                continue
            path_text, rest = split
            try:
                path = parse_field(path_text)
            except errors.InputError:
                continue
            if not relation(path, field):
                continue
            old, new = _values(rest)
            entries.append(
                Entry(
                    span.start_us,
                    path_text,
                    old,
                    new,
                    request,
                    "audit" if span.source is TraceSource.AUDIT else "change",
                    request is not None,
                    None
                    if request is not None
                    else "a watched change no audit event claimed: who made it is not known",
                )
            )
    return entries


def _creation_entry(creation: Creation, field: tuple[Segment, ...]) -> Entry:
    span = creation.span
    request = actors.request_of(span) if span is not None else None
    return Entry(
        span.start_us if span is not None else 0,
        render_path(field),
        "null",
        creation.value,
        request,
        "audit",
        request is not None and creation.value is not None,
        creation.note,
    )


def value_at(body: Any, field: Sequence[Segment]) -> tuple[bool, Any]:
    """(found, value) of a field in an object body; keyed items are matched as the diff keys them."""
    current = body
    for segment in field:
        if isinstance(segment, int):
            if not isinstance(current, list) or segment >= len(current):
                return False, None
            current = current[segment]
        elif isinstance(segment, str):
            if not isinstance(current, Mapping) or segment not in current:
                return False, None
            current = current[segment]
        else:
            key, value = segment
            if not isinstance(current, list):
                return False, None
            item = next(
                (item for item in current if isinstance(item, Mapping) and str(item.get(key)) == value), None
            )
            if item is None:
                return False, None
            current = item
    return True, current


def shown_value(body: Any, field: Sequence[Segment]) -> str:
    """A field's value in a body as a diff line shows it (``null`` when the field is absent)."""
    found, value = value_at(body, field)
    return render_value(value) if found else "null"


def field_text(field: Sequence[Segment]) -> str:
    """A parsed field written back as the diff writes paths."""
    return render_path(tuple(field))
