"""Display modes and view trace ids (frontend.modes).

Covers: the 16 Kelemetry-compatible modes (ids and names as in Go Kelemetry's tfconfig, the
default first, all unique); from_id / from_name / build and their round trips, including the depth
digits 3–4 and the "(depth N)" suffix; Jaeger UI's "* " marker; every refused input raising
InputError with a message that names the input; view trace ids (``ff<mode>e1e3e7<view>``) round
trips and malformed ids.
"""

from __future__ import annotations

import re

import pytest

from frontend import modes
from frontend.modes import Base, DisplayMode, Scope
from kelemetry import errors

# Go Kelemetry's table (reference/kelemetry-spec.md §5.2).
EXPECTED = {
    "00000000": "tree",
    "01000000": "tree [full tree]",
    "02000000": "tree [ancestors]",
    "04000000": "tree [owned objects]",
    "10000000": "timeline",
    "11000000": "timeline [full tree]",
    "12000000": "timeline [ancestors]",
    "14000000": "timeline [owned objects]",
    "20000000": "tracing",
    "21000000": "tracing [full tree]",
    "22000000": "tracing [ancestors]",
    "24000000": "tracing [owned objects]",
    "30000000": "grouped",
    "31000000": "grouped [full tree]",
    "32000000": "grouped [ancestors]",
    "34000000": "grouped [owned objects]",
}
VIEW_ID = re.compile(r"ff[0-9a-f]{8}e1e3e7[0-9a-f]{16}")


# -- the list


def test_there_are_the_sixteen_modes_of_the_original_with_the_default_first() -> None:
    assert len(modes.ALL) == 16
    assert {mode.id: mode.name for mode in modes.ALL} == EXPECTED
    assert len({mode.id for mode in modes.ALL}) == 16
    assert len({mode.name for mode in modes.ALL}) == 16
    assert modes.ALL[0] is modes.DEFAULT
    # Opening an object shows its owners and what it owns: Go Kelemetry's "tracing [full tree]".
    assert (modes.DEFAULT.id, modes.DEFAULT.name) == ("21000000", "tracing [full tree]")
    assert (modes.DEFAULT.base, modes.DEFAULT.scope, modes.DEFAULT.depth) == (
        Base.TRACING,
        Scope.FULL,
        modes.DEFAULT_DEPTH,
    )
    assert all(mode.depth == modes.DEFAULT_DEPTH for mode in modes.ALL)


def test_describe_lists_every_attribute() -> None:
    mode = DisplayMode(Base.GROUPED, Scope.CHILDREN, 5)
    assert mode.describe() == {
        "id": "34050000",
        "name": "grouped [owned objects] (depth 5)",
        "mode": "grouped",
        "scope": "children",
        "depth": 5,
    }


# -- round trips


@pytest.mark.parametrize("mode", modes.ALL, ids=lambda m: m.id)
def test_every_mode_round_trips_through_its_id_and_its_name(mode: DisplayMode) -> None:
    assert modes.from_id(mode.id) == mode
    assert modes.from_id(mode.id.upper()) == mode
    assert modes.from_name(mode.name) == mode
    assert modes.from_name(f"* {mode.name}") == mode
    assert modes.from_name(f"  {mode.name.upper()}  ") == mode
    assert modes.build(mode.base.value, mode.scope.value, None) == mode
    assert modes.build(mode.base.value.upper(), mode.scope.value.upper(), mode.depth) == mode


def test_scope_aliases_name_the_same_modes() -> None:
    full = DisplayMode(Base.TRACING, Scope.FULL)
    children = DisplayMode(Base.TRACING, Scope.CHILDREN)
    assert modes.from_name("tracing [full]") == full
    assert modes.from_name("tracing [full tree]") == full
    assert modes.from_name("tracing [children]") == children
    assert modes.from_name("tracing [owned objects]") == children
    assert modes.from_name("tracing [object]") == DisplayMode(Base.TRACING, Scope.OBJECT)
    assert modes.from_name("tracing") == DisplayMode(Base.TRACING, Scope.OBJECT)
    assert modes.build("tracing", "full tree", None) == full
    assert modes.build("tracing", "Owned Objects", None) == children
    assert modes.build(None, None, None) == modes.DEFAULT
    assert modes.build(None, "ancestors", None) == DisplayMode(Base.TRACING, Scope.ANCESTORS)
    # Without a scope, the default one: the full tree.
    assert modes.build("tree", None, None) == DisplayMode(Base.TREE, Scope.FULL)


@pytest.mark.parametrize(
    ("mode", "mode_id", "name"),
    [
        (DisplayMode(Base.TRACING, Scope.FULL, 1), "21010000", "tracing [full tree] (depth 1)"),
        (DisplayMode(Base.TRACING, Scope.FULL, 5), "21050000", "tracing [full tree] (depth 5)"),
        (DisplayMode(Base.TREE, Scope.ANCESTORS, 16), "02100000", "tree [ancestors] (depth 16)"),
        (DisplayMode(Base.TIMELINE, Scope.OBJECT, 2), "10020000", "timeline (depth 2)"),
        (DisplayMode(Base.GROUPED, Scope.CHILDREN, 255), "34ff0000", "grouped [owned objects] (depth 255)"),
    ],
)
def test_depth_goes_into_digits_three_and_four_and_the_name(
    mode: DisplayMode, mode_id: str, name: str
) -> None:
    assert (mode.id, mode.name) == (mode_id, name)
    assert modes.from_id(mode_id) == mode
    assert modes.from_name(name) == mode
    assert modes.from_name(f"* {name}") == mode
    assert modes.build(mode.base.value, mode.scope.value, mode.depth) == mode


def test_the_default_depth_is_written_as_zero_and_not_named() -> None:
    explicit = DisplayMode(Base.TRACING, Scope.FULL, modes.DEFAULT_DEPTH)
    assert explicit.id == "21000000" and explicit.name == "tracing [full tree]"
    assert modes.from_id("21000000").depth == modes.DEFAULT_DEPTH
    # Digits "03" say the default depth explicitly: the same mode.
    assert modes.from_id("21030000") == modes.from_id("21000000")
    assert modes.from_name("tracing [full tree] (depth 3)") == explicit


# -- refusals


def refused(call: object, *args: object) -> str:
    assert callable(call)
    with pytest.raises(errors.InputError) as caught:
        call(*args)
    assert caught.value.status == 400
    return str(caught.value)


@pytest.mark.parametrize(
    ("mode_id", "reason"),
    [
        ("", "expected 8 hex digits"),
        ("2100000", "expected 8 hex digits"),
        ("210000000", "expected 8 hex digits"),
        ("2100000g", "expected 8 hex digits"),
        (" 21000000", "expected 8 hex digits"),
        ("21-00000", "expected 8 hex digits"),
        ("40000000", "unknown display mode id"),
        ("f0000000", "unknown display mode id"),
        ("23000000", "unknown display mode id"),
        ("28000000", "unknown display mode id"),
        ("21000001", "unknown display mode id"),
        ("21000100", "unknown display mode id"),
    ],
)
def test_bad_mode_ids_are_refused_naming_the_id(mode_id: str, reason: str) -> None:
    message = refused(modes.from_id, mode_id)
    assert repr(mode_id) in message
    assert reason in message


@pytest.mark.parametrize(
    "name",
    [
        "",
        "*",
        "* ",
        "bogus",
        "tracing [bogus]",
        "tracing [full tree",
        "tracing[full tree]",
        "tracing [full tree] extra",
        "tracing (depth)",
        "tracing (depth x)",
        "tracing [full tree] [ancestors]",
        "trace",
        "tracing2",
    ],
)
def test_bad_mode_names_are_refused_naming_the_name(name: str) -> None:
    message = refused(modes.from_name, name)
    assert message == f"invalid display mode {name!r}; see /api/services for the list"


@pytest.mark.parametrize("depth", [0, 256, 1000])
def test_depth_out_of_range_is_refused_everywhere(depth: int) -> None:
    expected = f"depth must be between 1 and 255, not {depth}"
    assert refused(modes.from_name, f"tracing [full tree] (depth {depth})") == expected
    assert refused(modes.build, "tracing", "full", depth) == expected


def test_a_negative_depth_is_refused_by_build() -> None:
    assert refused(modes.build, "tracing", "full", -1) == "depth must be between 1 and 255, not -1"


def test_bad_mode_and_scope_words_list_the_choices() -> None:
    assert refused(modes.build, "fancy", None, None) == (
        "invalid mode 'fancy': use one of tree, timeline, tracing, grouped"
    )
    assert refused(modes.build, "", None, None).startswith("invalid mode ''")
    assert refused(modes.build, "tracing", "siblings", None) == (
        "invalid scope 'siblings': use one of object, full, ancestors, children"
    )


# -- view trace ids


@pytest.mark.parametrize("view", [1, 0x123, 2**63 - 1, 2**64 - 1])
@pytest.mark.parametrize("mode", [modes.DEFAULT, DisplayMode(Base.TREE, Scope.FULL, 7)], ids=lambda m: m.id)
def test_view_trace_ids_round_trip(mode: DisplayMode, view: int) -> None:
    trace_id = modes.view_trace_id(mode, view)
    assert VIEW_ID.fullmatch(trace_id), trace_id
    assert trace_id[2:10] == mode.id
    assert trace_id[-16:] == f"{view:016x}"
    assert modes.parse_view_trace_id(trace_id) == (mode, view)
    assert modes.parse_view_trace_id(trace_id.upper()) == (mode, view)
    assert modes.parse_view_trace_id(f" {trace_id}\n") == (mode, view)


def test_the_layout_matches_the_original() -> None:
    alone = modes.from_id("20000000")
    assert modes.view_trace_id(alone, 0x9A0C1B2D3E4F5A6B) == "ff20000000e1e3e79a0c1b2d3e4f5a6b"
    full = modes.from_id("21000000")
    assert modes.view_trace_id(full, 1) == "ff21000000e1e3e70000000000000001"


def test_editing_digits_three_to_ten_switches_the_mode_of_the_same_view() -> None:
    trace_id = modes.view_trace_id(modes.DEFAULT, 0xABCDEF)
    edited = trace_id[:2] + "22000000" + trace_id[10:]
    mode, view = modes.parse_view_trace_id(edited)
    assert view == 0xABCDEF
    assert (mode.base, mode.scope) == (Base.TRACING, Scope.ANCESTORS)


@pytest.mark.parametrize(
    "trace_id",
    [
        "",
        "ff20000000e1e3e7",
        "ff20000000e1e3e70000000000000001ff",
        "ff20000000e1e3e7000000000000001",
        "ee20000000e1e3e70000000000000001",
        "ff20000000e1e3e80000000000000001",
        "ff20000000e1e3e7000000000000000g",
        "ff20000000-e1e3e7-000000000000001",
        "0123456789abcdef0123456789abcdef",
    ],
)
def test_malformed_trace_ids_are_refused(trace_id: str) -> None:
    message = refused(modes.parse_view_trace_id, trace_id)
    assert message == (
        f"invalid trace id {trace_id!r}: expected 32 hex digits of the form ff<mode>e1e3e7<view>"
    )


@pytest.mark.parametrize("mode_id", ["40000000", "23000000", "21000001"])
def test_a_well_formed_trace_id_with_an_unknown_mode_is_refused(mode_id: str) -> None:
    message = refused(modes.parse_view_trace_id, f"ff{mode_id}e1e3e70000000000000001")
    assert message == f"unknown display mode id {mode_id!r}"
