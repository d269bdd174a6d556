"""Structural diff of two JSON values, and its rendering as ``path old -> new`` lines.

Maps are compared key by key (sorted). Lists whose items are maps named by a merge key (see
`mergekeys`: ``type`` for conditions, ``name`` for containers, ...) are compared item by item under
that key, so a reordered list is no change and a line says which item changed:
``status.conditions[type=Available].status "False" -> "True"``. The order is the new list's, then
items only the old list had, in their old order; an added or removed item is one line carrying the
whole item, also when the whole list appears or disappears. Other lists (scalars, items without a
unique key) are compared position by position, and one that appears or disappears is one line.

Paths use dots for identifier-like keys, ``["key"]`` for others, ``[i]`` for positions and
``[field=value]`` for keyed items, the value quoted as ``[name="a]b"]`` when it holds characters that
would make the path ambiguous. Each `Diff` carries the same path as `Segment` steps. Long values are
abbreviated when rendered.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from kelemetry.diff import mergekeys
from kelemetry.diff.redact import OPAQUE_PREFIX, REDACTED_TEXT, shown
from kelemetry.model.diffs import Diff, Segment

MAX_VALUE_CHARS = 200
_IDENTIFIER = re.compile(r"\w+")
_PLAIN_ITEM_VALUE = re.compile(r'[^\[\]="\\\s]+')


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _join(prefix: str, key: str) -> str:
    if _IDENTIFIER.fullmatch(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{_quote(key)}]"


def _join_item(prefix: str, field: str, value: str) -> str:
    return f"{prefix}[{field}={value if _PLAIN_ITEM_VALUE.fullmatch(value) else _quote(value)}]"


def render_path(segments: tuple[Segment, ...]) -> str:
    """The path text of a sequence of steps, as `compute` renders it."""
    path = ""
    for segment in segments:
        if isinstance(segment, str):
            path = _join(path, segment)
        elif isinstance(segment, int):
            path = f"{path}[{segment}]"
        else:
            path = _join_item(path, *segment)
    return path


def compute(old: Any, new: Any) -> list[Diff]:
    diffs: list[Diff] = []
    _walk(old, new, "", (), diffs)
    return diffs


def _walk(old: Any, new: Any, path: str, segments: tuple[Segment, ...], out: list[Diff]) -> None:
    # Each child is compared before its path is built: most children of a changed map or list are
    # unchanged, and building their paths would cost more than the comparison.
    if isinstance(old, dict) and isinstance(new, dict):
        # Most of an object is unchanged between versions; the C-level comparison skips it whole.
        # (Python equality treats a nested true and 1 alike; Kubernetes' typed fields never flip so.)
        if old == new:
            return
        for key in sorted(old.keys() | new.keys()):
            o, n = old.get(key), new.get(key)
            if o == n and type(o) is type(n):
                continue
            _walk(o, n, _join(path, key), (*segments, key), out)
        return
    if isinstance(old, list) and isinstance(new, list):
        if old == new:
            return
        if not _walk_keyed(old, new, path, segments, out):
            for i in range(max(len(old), len(new))):
                o = old[i] if i < len(old) else None
                n = new[i] if i < len(new) else None
                if o == n and type(o) is type(n):
                    continue
                _walk(o, n, f"{path}[{i}]", (*segments, i), out)
        return
    # A keyed list that appears or disappears whole reads as its items added or removed, so each line
    # names its item: attribution matches steps like ("status", "conditions", ("type", "PodScheduled")),
    # which the scheduler's binding writes into a Pod that had no conditions yet.
    if old is None and isinstance(new, list) and new:
        if _walk_keyed([], new, path, segments, out):
            return
    elif new is None and isinstance(old, list) and old:
        if _walk_keyed(old, [], path, segments, out):
            return
    # bool is an int in Python; a flip between True and 1 is still a change of type.
    if old == new and type(old) is type(new):
        return
    out.append(Diff(path, old, new, segments))


def _walk_keyed(
    old: list[Any], new: list[Any], path: str, segments: tuple[Segment, ...], out: list[Diff]
) -> bool:
    """Diff two lists item by item under their merge key; False (and nothing written) when no
    candidate key names every item of both lists uniquely."""
    field = segments[-1] if segments else None
    parent = segments[-2] if len(segments) > 1 else None
    for key_field in mergekeys.key_fields(parent, field):
        old_items = _index(old, key_field)
        if old_items is None:
            continue
        new_items = _index(new, key_field)
        if new_items is None:
            continue
        for value, n in new_items.items():
            o = old_items.get(value)
            if o != n:
                _walk(o, n, _join_item(path, key_field, value), (*segments, (key_field, value)), out)
        for value, o in old_items.items():
            if value not in new_items:
                _walk(o, None, _join_item(path, key_field, value), (*segments, (key_field, value)), out)
        return True
    return False


def _index(items: list[Any], key_field: str) -> dict[str, Any] | None:
    """The items by their key's text (dicts keep the list's order), or None if an item is not a map,
    lacks the key, has a non-scalar key or repeats another item's key."""
    index: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict):
            return None
        value = item.get(key_field)
        # Keys compare as text, as they render: 80 and "80" are one item, which is what a path shows.
        if type(value) is str:
            text = value
        elif type(value) is int:
            text = str(value)
        else:
            return None
        if text in index:
            return None
        index[text] = item
    return index


_MARKER = OPAQUE_PREFIX.encode()


def _json(value: Any, option: int = 0) -> str:
    text = orjson.dumps(value, option=option)
    if _MARKER in text:
        # Rare (Secrets and redacted fields): show every redacted value as "<redacted>".
        text = orjson.dumps(shown(value), option=option)
    return text.decode()


def render_value(value: Any) -> str:
    if isinstance(value, str) and value.startswith(OPAQUE_PREFIX):
        return REDACTED_TEXT
    text = _json(value)
    if len(text) > MAX_VALUE_CHARS:
        return f"{text[: MAX_VALUE_CHARS - 20]}...({len(text)} chars)"
    return text


def render(diffs: list[Diff]) -> str:
    """One ``path old -> new`` line per diff (absent sides are ``null``)."""
    return "\n".join(f"{d.path} {render_value(d.old)} -> {render_value(d.new)}" for d in diffs)


def snapshot(body: Any) -> str:
    """The JSON of an object as a snapshot log carries it (redacted values as ``<redacted>``)."""
    return _json(body, orjson.OPT_SORT_KEYS)
