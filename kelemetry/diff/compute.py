"""Structural diff of two JSON values, and its rendering as ``path old -> new`` lines.

Maps are compared key by key (sorted), lists position by position (no merge keys, as in
Go Kelemetry: a reordered list shows up at every index). Paths use dots for identifier-like keys,
``["key"]`` for others and ``[i]`` for list positions: ``metadata.labels["app.kubernetes.io/name"]``,
``spec.template.spec.containers[0].image``. Long values are abbreviated when rendered.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from kelemetry.diff.redact import REDACTED_TEXT, Redacted
from kelemetry.model.diffs import Diff

MAX_VALUE_CHARS = 200
# orjson would serialise a Redacted marker (a dataclass) field by field; route it through _default.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS
_IDENTIFIER = re.compile(r"^\w*$")


def _join(prefix: str, key: str) -> str:
    if _IDENTIFIER.match(key):
        return f"{prefix}.{key}" if prefix else key
    quoted = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'{prefix}["{quoted}"]'


def compute(old: Any, new: Any, prefix: str = "") -> list[Diff]:
    diffs: list[Diff] = []
    _walk(old, new, prefix, diffs)
    return diffs


def _walk(old: Any, new: Any, path: str, out: list[Diff]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        # Most of an object is unchanged between versions; the C-level comparison skips it whole.
        # (Python equality treats a nested true and 1 alike; Kubernetes' typed fields never flip so.)
        if old == new:
            return
        for key in sorted(old.keys() | new.keys()):
            _walk(old.get(key), new.get(key), _join(path, key), out)
        return
    if isinstance(old, list) and isinstance(new, list):
        if old == new:
            return
        for i in range(max(len(old), len(new))):
            _walk(old[i] if i < len(old) else None, new[i] if i < len(new) else None, f"{path}[{i}]", out)
        return
    # bool is an int in Python; a flip between True and 1 is still a change of type.
    if old == new and type(old) is type(new):
        return
    out.append(Diff(path, old, new))


def _default(value: Any) -> str:
    if isinstance(value, Redacted):
        return REDACTED_TEXT
    raise TypeError(f"cannot render {type(value).__name__}")


def render_value(value: Any) -> str:
    if isinstance(value, Redacted):
        return REDACTED_TEXT
    text = orjson.dumps(value, default=_default, option=_OPTIONS).decode()
    if len(text) > MAX_VALUE_CHARS:
        return f"{text[: MAX_VALUE_CHARS - 20]}...({len(text)} chars)"
    return text


def render(diffs: list[Diff]) -> str:
    """One ``path old -> new`` line per diff (absent sides are ``null``)."""
    return "\n".join(f"{d.path} {render_value(d.old)} -> {render_value(d.new)}" for d in diffs)


def snapshot(body: Any) -> str:
    """The JSON of an object as a snapshot log carries it (redacted values as ``<redacted>``)."""
    return orjson.dumps(body, default=_default, option=_OPTIONS | orjson.OPT_SORT_KEYS).decode()
