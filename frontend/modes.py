"""Display modes and the view trace IDs that carry them.

A display mode is a base mode (how events are shown) plus a scope (which related objects are
shown). Its 8-hex-digit id follows Go Kelemetry's numbering, so ids and names users know keep
working: digit 1 is the base mode, digit 2 the scope. Digits 3–4 are ours: a depth limit for the
scope (``00`` = the default of 3 levels).

A view trace id is ``ff`` + mode id + ``e1e3e7`` + 16 hex digits naming the view (the object and
time range, kept by ``frontend.views``). Editing hex digits 3–10 of a trace URL therefore switches
the mode of the same view, as it does in the original.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from kelemetry import errors


class Base(StrEnum):
    TREE = "tree"
    TIMELINE = "timeline"
    TRACING = "tracing"
    GROUPED = "grouped"


class Scope(StrEnum):
    OBJECT = "object"
    FULL = "full"
    ANCESTORS = "ancestors"
    CHILDREN = "children"


DEFAULT_DEPTH = 3
MAX_DEPTH = 255

_BASE_DIGIT = {Base.TREE: 0, Base.TIMELINE: 1, Base.TRACING: 2, Base.GROUPED: 3}
_SCOPE_DIGIT = {Scope.OBJECT: 0, Scope.FULL: 1, Scope.ANCESTORS: 2, Scope.CHILDREN: 4}
# The names Go Kelemetry shows in Jaeger's "Service" field.
_SCOPE_NAME = {Scope.FULL: "full tree", Scope.ANCESTORS: "ancestors", Scope.CHILDREN: "owned objects"}
_SCOPE_ALIASES = {
    "object": Scope.OBJECT,
    "full": Scope.FULL,
    "full tree": Scope.FULL,
    "ancestors": Scope.ANCESTORS,
    "children": Scope.CHILDREN,
    "owned objects": Scope.CHILDREN,
}


@dataclass(frozen=True, slots=True)
class DisplayMode:
    base: Base = Base.TRACING
    scope: Scope = Scope.OBJECT
    depth: int = DEFAULT_DEPTH

    @property
    def id(self) -> str:
        depth = 0 if self.depth == DEFAULT_DEPTH else self.depth
        return f"{_BASE_DIGIT[self.base]:x}{_SCOPE_DIGIT[self.scope]:x}{depth:02x}0000"

    @property
    def name(self) -> str:
        name = self.base.value
        if self.scope is not Scope.OBJECT:
            name += f" [{_SCOPE_NAME[self.scope]}]"
        if self.depth != DEFAULT_DEPTH:
            name += f" (depth {self.depth})"
        return name

    def describe(self) -> dict[str, str | int]:
        return {
            "id": self.id,
            "name": self.name,
            "mode": self.base.value,
            "scope": self.scope.value,
            "depth": self.depth,
        }


DEFAULT = DisplayMode(Base.TRACING, Scope.FULL)
"""What opening an object shows (UI search, ``/redirect``, Jaeger searches without a service): the
object with its owners and what it owns, since "what happened" is rarely about one object alone.
Only the choice of default is ours; the ids stay Go Kelemetry's (this is its ``21000000``)."""
DUMP = DisplayMode(Base.TREE, Scope.FULL, MAX_DEPTH)
"""``kelemetry dump`` without ``--mode``: the whole hierarchy, every request a span of its own."""

ALL: tuple[DisplayMode, ...] = (
    DEFAULT,
    *(
        DisplayMode(base, scope)
        for base in (Base.TRACING, Base.GROUPED, Base.TREE, Base.TIMELINE)
        for scope in Scope
        if (base, scope) != (DEFAULT.base, DEFAULT.scope)
    ),
)

_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_NAME = re.compile(r"^(?P<base>[a-z]+)(?: \[(?P<scope>[a-z ]+)\])?(?: \(depth (?P<depth>\d+)\))?$")


def _depth(value: int) -> int:
    if not 1 <= value <= MAX_DEPTH:
        raise errors.InputError(f"depth must be between 1 and {MAX_DEPTH}, not {value}")
    return value


def from_id(mode_id: str) -> DisplayMode:
    """``21000000`` → tracing with the full tree."""
    if not _HEX8.fullmatch(mode_id):
        raise errors.InputError(f"invalid display mode id {mode_id!r}: expected 8 hex digits")
    value = mode_id.lower()
    bases = {f"{digit:x}": base for base, digit in _BASE_DIGIT.items()}
    scopes = {f"{digit:x}": scope for scope, digit in _SCOPE_DIGIT.items()}
    if value[0] not in bases or value[1] not in scopes or value[4:] != "0000":
        raise errors.InputError(f"unknown display mode id {mode_id!r}")
    depth = int(value[2:4], 16)
    return DisplayMode(bases[value[0]], scopes[value[1]], _depth(depth) if depth else DEFAULT_DEPTH)


def from_name(name: str) -> DisplayMode:
    """``tracing [full tree]`` → the mode; a leading ``* `` (Jaeger UI's marker) is ignored."""
    text = name.strip().removeprefix("* ").strip().lower()
    match = _NAME.match(text)
    if match is None or match["base"] not in Base.__members__.values():
        raise errors.InputError(f"invalid display mode {name!r}; see /api/services for the list")
    scope_text = match["scope"]
    if scope_text is not None and scope_text not in _SCOPE_ALIASES:
        raise errors.InputError(f"invalid display mode {name!r}; see /api/services for the list")
    scope = Scope.OBJECT if scope_text is None else _SCOPE_ALIASES[scope_text]
    depth = _depth(int(match["depth"])) if match["depth"] else DEFAULT_DEPTH
    return DisplayMode(Base(match["base"]), scope, depth)


def build(mode: str | None, scope: str | None, depth: int | None) -> DisplayMode:
    """Mode from separate words (CLI flags, UI parameters): ``tracing``, ``full``, ``2``."""
    base = DEFAULT.base
    if mode is not None:
        try:
            base = Base(mode.lower())
        except ValueError:
            choices = ", ".join(b.value for b in Base)
            raise errors.InputError(f"invalid mode {mode!r}: use one of {choices}") from None
    chosen = DEFAULT.scope
    if scope is not None:
        if scope.lower() not in _SCOPE_ALIASES:
            choices = ", ".join(s.value for s in Scope)
            raise errors.InputError(f"invalid scope {scope!r}: use one of {choices}")
        chosen = _SCOPE_ALIASES[scope.lower()]
    return DisplayMode(base, chosen, DEFAULT_DEPTH if depth is None else _depth(depth))


# -- view trace ids

_VIEW = re.compile(r"ff(?P<mode>[0-9a-f]{8})e1e3e7(?P<view>[0-9a-f]{16})")


def view_trace_id(mode: DisplayMode, view: int) -> str:
    return f"ff{mode.id}e1e3e7{view:016x}"


def parse_view_trace_id(trace_id: str) -> tuple[DisplayMode, int]:
    """The mode and view number of a view trace id (32 hex digits, any case)."""
    match = _VIEW.fullmatch(trace_id.strip().lower())
    if match is None:
        raise errors.InputError(
            f"invalid trace id {trace_id!r}: expected 32 hex digits of the form ff<mode>e1e3e7<view>"
        )
    return from_id(match["mode"]), int(match["view"], 16)
