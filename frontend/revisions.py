"""The object at a moment: which stored version was in effect, what it looked like, and how two
versions differ, line by line. Pure functions over the versions a backend lists; no I/O.

A version is in effect from its time (the start of the request that made it, or when the watch saw
it) until the next one. After a deletion the object's last state is shown, marked deleted. A partial
version (a Scale's replicas over the version before) is shown as such: what the response said, the
rest as it last was. Manifests are rendered as YAML in the order the apiserver wrote the fields, so
two renderings line up for a diff.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import yaml

from kelemetry import errors
from kelemetry.model.versions import ObjectVersion

RowKind = Literal["same", "changed", "removed", "added"]


@dataclass(frozen=True, slots=True)
class Manifest:
    version: ObjectVersion
    """The version in effect (a deletion when the object was gone by then)."""
    body: Any
    """The object as it was; for a deletion, its last known state (None when none is known)."""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DiffRow:
    kind: RowKind
    left_no: int | None
    left: str | None
    right_no: int | None
    right: str | None


def format_time(time_us: int) -> str:
    return (
        datetime.fromtimestamp(time_us / 1e6, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def describe(version: ObjectVersion) -> str:
    """One line naming a version: ``rv 276 at ... by admin (patch scale)``."""
    what = "deleted" if version.deleted else f"rv {version.resource_version}"
    who = f" by {version.user}" if version.user else ""
    how = f" ({version.verb})" if version.verb else ""
    return f"{what} at {format_time(version.time_us)}{who}{how}"


def in_effect(versions: Sequence[ObjectVersion], at_us: int, what: str) -> ObjectVersion:
    """The version in effect at ``at_us`` (``versions`` oldest first, as backends list them)."""
    found: ObjectVersion | None = None
    for version in versions:
        if version.time_us <= at_us:
            found = version
        else:
            break
    if found is not None:
        return found
    if not versions:
        raise errors.NotFound(f"no version of {what} is stored (it was not written while we watched)")
    first = versions[0]
    raise errors.NotFound(
        f"no version of {what} is known at {format_time(at_us)}; the first known is "
        f"{describe(first)} (ask for {format_time(first.time_us)} or later)"
    )


def by_resource_version(versions: Sequence[ObjectVersion], resource_version: str, what: str) -> ObjectVersion:
    for version in versions:
        if version.resource_version == resource_version:
            return version
    known = ", ".join(v.resource_version for v in versions[-10:]) or "none"
    raise errors.NotFound(f"no version {resource_version} of {what} is stored (latest known: {known})")


def manifest(
    versions: Sequence[ObjectVersion], chosen: ObjectVersion, body_of: Callable[[str], Any | None]
) -> Manifest:
    """The object as ``chosen`` shows it; ``body_of(rv)`` reads a version's stored body."""
    body = body_of(chosen.resource_version)
    notes: list[str] = []
    if chosen.deleted:
        notes.append(
            f"deleted at {format_time(chosen.time_us)}" + (f" by {chosen.user}" if chosen.user else "")
        )
        if body is None:
            last = _last_body(versions, chosen, body_of)
            if last is None:
                notes.append("no earlier state of it is stored")
            else:
                body = last[1]
                notes.append(f"its last known state: {describe(last[0])}")
        else:
            seen = (
                "the watch saw it"
                if chosen.source == "watch"
                else f"the {chosen.verb or 'delete'} answered with it"
            )
            notes.append(f"its last state, as {seen}")
    elif not chosen.complete:
        if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
            # The write made this version; only the fields its answer did not show are older.
            body = {**body, "metadata": {**body["metadata"], "resourceVersion": chosen.resource_version}}
        notes.append(
            f"reconstructed: the {chosen.verb or 'write'} answered with part of the object only; "
            "the rest is as the version before showed it"
        )
    return Manifest(chosen, body, tuple(notes))


def _last_body(
    versions: Sequence[ObjectVersion], before: ObjectVersion, body_of: Callable[[str], Any | None]
) -> tuple[ObjectVersion, Any] | None:
    for version in reversed(versions):
        if version is before or version.deleted:
            continue
        body = body_of(version.resource_version)
        if body is not None:
            return version, body
    return None


def neighbours(versions: Sequence[ObjectVersion], chosen: ObjectVersion) -> tuple[str | None, str | None]:
    """The resourceVersions right before and after ``chosen`` (for stepping through revisions)."""
    for i, version in enumerate(versions):
        if version.resource_version == chosen.resource_version:
            before = versions[i - 1].resource_version if i > 0 else None
            after = versions[i + 1].resource_version if i + 1 < len(versions) else None
            return before, after
    return None, None


def to_yaml(body: Any) -> str:
    if body is None:
        return ""
    text: str = yaml.safe_dump(
        body, sort_keys=False, default_flow_style=False, allow_unicode=True, width=10_000
    )
    return text


def side_by_side(left: str, right: str) -> list[DiffRow]:
    """Both texts in two aligned columns: unchanged lines side by side, changed lines paired, lines
    only one side has opposite a gap."""
    a = left.splitlines()
    b = right.splitlines()
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows.extend(DiffRow("same", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k]) for k in range(i2 - i1))
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        rows.extend(DiffRow("changed", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k]) for k in range(paired))
        rows.extend(DiffRow("removed", i + 1, a[i], None, None) for i in range(i1 + paired, i2))
        rows.extend(DiffRow("added", None, None, j + 1, b[j]) for j in range(j1 + paired, j2))
    return rows


def changed_only(rows: Sequence[DiffRow], context: int = 3) -> list[DiffRow | None]:
    """The rows within ``context`` of a change; None where unchanged rows were left out."""
    near = [False] * len(rows)
    for i, row in enumerate(rows):
        if row.kind != "same":
            for j in range(max(0, i - context), min(len(rows), i + context + 1)):
                near[j] = True
    kept: list[DiffRow | None] = []
    for i, row in enumerate(rows):
        if near[i]:
            kept.append(row)
        elif not kept or kept[-1] is not None:
            kept.append(None)
    return kept


def unified(left: str, right: str, left_label: str, right_label: str, context: int = 3) -> str:
    lines = difflib.unified_diff(
        left.splitlines(), right.splitlines(), left_label, right_label, n=context, lineterm=""
    )
    return "\n".join(lines)


_MARKS: dict[str, str] = {"same": " ", "changed": "|", "removed": "<", "added": ">"}


def render_columns(rows: Sequence[DiffRow | None], width: int) -> str:
    """Side-by-side text for a terminal ``width`` columns wide (``sdiff``'s marks: | < >)."""
    column = max(20, (width - 3) // 2)

    def cell(text: str | None) -> str:
        text = text or ""
        return text[: column - 1] + "…" if len(text) > column else text.ljust(column)

    out: list[str] = []
    for row in rows:
        if row is None:
            out.append("…".ljust(column) + " ⋮ ")
            continue
        out.append(f"{cell(row.left)} {_MARKS[row.kind]} {cell(row.right)}".rstrip())
    return "\n".join(out)
