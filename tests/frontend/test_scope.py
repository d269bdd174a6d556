"""Scopes (frontend.scope): which objects of an assembled hierarchy a view shows.

The store is filled through the real pipeline from audit events of a four-level hierarchy
(Stack → Deployment → two ReplicaSets → Pods), then assembled, then cut:

- ``object``: only the target and its own requests;
- ``ancestors``: rooted at the top owner within the depth, exactly one object per level down to
  the target, siblings excluded; the depth limit cuts the top;
- ``children``: the target as root with what it owns, down to the depth;
- ``full``: from the highest owner within the depth, everything down to ``depth`` levels below the
  target, siblings and cousins included.

Every result is a proper tree (one root without a parent, children pointing at their parent) and
the assembled trace it was cut from is left untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from frontend.modes import Scope
from frontend.scope import select
from frontend.types import AssembledTrace, ObjectQuery, SpanNode
from kelemetry.model.events import TraceSource
from kelemetry.store.sqlite import SpanStore
from tests.factories import audit_event, new_pipeline, owner_ref
from tests.lookups import assemble

CLUSTER = "c1"


def at(second: int) -> dict[str, str]:
    return {
        "received": f"2024-05-01T10:00:{second:02d}.000000Z",
        "completed": f"2024-05-01T10:00:{second:02d}.010000Z",
    }


def rs_owner(name: str) -> dict[str, object]:
    return owner_ref("ReplicaSet", name, uid=f"r-{name}")


HISTORY = [
    audit_event(resource="stacks", group="example.com", kind="Stack", name="s", uid="s-1", **at(0)),
    audit_event(
        resource="deployments",
        group="apps",
        name="web",
        uid="d-1",
        owner=owner_ref("Stack", "s", api_version="example.com/v1", uid="s-1"),
        **at(1),
    ),
    audit_event(
        resource="replicasets",
        group="apps",
        name="web-1",
        uid="r-web-1",
        owner=owner_ref("Deployment", "web", uid="d-1"),
        **at(2),
    ),
    audit_event(
        resource="replicasets",
        group="apps",
        name="web-2",
        uid="r-web-2",
        owner=owner_ref("Deployment", "web", uid="d-1"),
        **at(3),
    ),
    audit_event(name="web-1-a", uid="p-1a", owner=rs_owner("web-1"), **at(4)),
    audit_event(name="web-1-b", uid="p-1b", owner=rs_owner("web-1"), **at(5)),
    audit_event(name="web-2-a", uid="p-2a", owner=rs_owner("web-2"), **at(6)),
    audit_event(verb="patch", name="web-1-a", uid="p-1a", subresource="status", code=200, **at(7)),
    audit_event(
        verb="update", resource="deployments", group="apps", name="web", uid="d-1", code=200, **at(8)
    ),
]

STACK = "stacks.example.com/s"
DEPLOY = "deployments.apps/web"
RS1 = "replicasets.apps/web-1"
RS2 = "replicasets.apps/web-2"
POD_1A = "pods/web-1-a"
POD_1B = "pods/web-1-b"
POD_2A = "pods/web-2-a"

# The whole assembled hierarchy, as `outline` draws it.
WHOLE = [
    STACK,
    "  create",
    f"  {DEPLOY}",
    "    create",
    "    update",
    f"    {RS1}",
    "      create",
    f"      {POD_1A}",
    "        create",
    "        patch",
    f"      {POD_1B}",
    "        create",
    f"    {RS2}",
    "      create",
    f"      {POD_2A}",
    "        create",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpanStore]:
    opened = SpanStore(Path(tmp_path_factory.mktemp("scope")) / "k.db")
    pipeline = new_pipeline(opened)
    assert pipeline.process_audit(HISTORY, CLUSTER).failed == 0
    yield opened
    opened.close()


def trace_of(store: SpanStore, resource: str, name: str) -> AssembledTrace:
    return assemble(store, ObjectQuery(cluster=CLUSTER, resource=resource, name=name))


def outline(node: SpanNode, depth: int = 0) -> list[str]:
    """Objects by key, requests by verb, indented by level."""
    span = node.span
    label = span.key.display if span.source is TraceSource.OBJECT else str(span.tags["audit.verb"])
    lines = ["  " * depth + label]
    for child in node.children:
        lines.extend(outline(child, depth + 1))
    return lines


def check_tree(trace: AssembledTrace) -> None:
    """One root without a parent; every child points at its parent; the trace id is the root's."""
    assert trace.root.span.parent_id is None
    assert trace.trace_id == trace.root.span.trace_id
    for node in trace.walk():
        for child in node.children:
            assert child.span.parent_id == node.span.span_id
            if child.span.source is not TraceSource.OBJECT:
                assert child.span.key == node.span.key and not child.children


def scoped(trace: AssembledTrace, scope: Scope, depth: int) -> list[str]:
    before = outline(trace.root)
    cut = select(trace, scope, depth)
    check_tree(cut)
    assert cut.target == trace.target
    assert outline(trace.root) == before, "select changed the assembled trace"
    return outline(cut.root)


def test_the_assembled_hierarchy_is_the_whole_tree(store: SpanStore) -> None:
    trace = trace_of(store, "pods", "web-1-a")
    check_tree(trace)
    assert outline(trace.root) == WHOLE


# -- object


@pytest.mark.parametrize("depth", [1, 3, 255])
def test_object_is_the_target_alone_with_its_own_requests(store: SpanStore, depth: int) -> None:
    trace = trace_of(store, "pods", "web-1-a")
    assert scoped(trace, Scope.OBJECT, depth) == [POD_1A, "  create", "  patch"]
    top = trace_of(store, "deployments", "web")
    assert scoped(top, Scope.OBJECT, depth) == [DEPLOY, "  create", "  update"]
    cut = select(trace, Scope.OBJECT, depth)
    assert cut.trace_id == trace.trace_id  # the hierarchy's trace, whatever the scope
    assert cut.root.span.span_id == next(n.span.span_id for n in trace.walk() if n.span.key.name == "web-1-a")


# -- ancestors


def test_ancestors_are_rooted_at_the_top_owner_with_one_object_per_level(store: SpanStore) -> None:
    trace = trace_of(store, "pods", "web-1-a")
    assert scoped(trace, Scope.ANCESTORS, 3) == [
        STACK,
        "  create",
        f"  {DEPLOY}",
        "    create",
        "    update",
        f"    {RS1}",
        "      create",
        f"      {POD_1A}",
        "        create",
        "        patch",
    ]
    # Deeper than the hierarchy: the same, rooted at the real top.
    assert scoped(trace, Scope.ANCESTORS, 255) == scoped(trace, Scope.ANCESTORS, 3)


def test_the_ancestors_depth_limit_cuts_the_top(store: SpanStore) -> None:
    trace = trace_of(store, "pods", "web-1-a")
    assert scoped(trace, Scope.ANCESTORS, 1) == [RS1, "  create", f"  {POD_1A}", "    create", "    patch"]
    two = scoped(trace, Scope.ANCESTORS, 2)
    assert two[0] == DEPLOY
    assert [line.strip() for line in two if "/" in line] == [DEPLOY, RS1, POD_1A]


def test_ancestors_of_a_replicaset_leave_its_sibling_and_its_pods_out(store: SpanStore) -> None:
    # Go Kelemetry's e2e "ancestors": the searched ReplicaSet under its Deployment, nothing else.
    trace = trace_of(store, "replicasets", "web-2")
    cut = select(trace, Scope.ANCESTORS, 1)
    assert cut.root.span.key.display == DEPLOY
    objects = [c for c in cut.root.children if c.span.source is TraceSource.OBJECT]
    assert [c.span.key.display for c in objects] == [RS2]
    assert objects[0].children and all(c.span.source is TraceSource.AUDIT for c in objects[0].children)


def test_ancestors_of_the_top_owner_is_the_owner_alone(store: SpanStore) -> None:
    trace = trace_of(store, "stacks", "s")
    assert scoped(trace, Scope.ANCESTORS, 3) == [STACK, "  create"]


# -- children


def test_children_are_rooted_at_the_target_down_to_the_depth(store: SpanStore) -> None:
    trace = trace_of(store, "deployments", "web")
    assert scoped(trace, Scope.CHILDREN, 1) == [
        DEPLOY,
        "  create",
        "  update",
        f"  {RS1}",
        "    create",
        f"  {RS2}",
        "    create",
    ]
    assert scoped(trace, Scope.CHILDREN, 2) == [line[2:] for line in WHOLE[2:]]
    assert scoped(trace, Scope.CHILDREN, 255) == scoped(trace, Scope.CHILDREN, 2)


def test_children_of_a_leaf_is_the_leaf(store: SpanStore) -> None:
    trace = trace_of(store, "pods", "web-2-a")
    assert scoped(trace, Scope.CHILDREN, 3) == [POD_2A, "  create"]


def test_children_of_the_top_owner_with_the_default_depth_is_everything(store: SpanStore) -> None:
    trace = trace_of(store, "stacks", "s")
    assert scoped(trace, Scope.CHILDREN, 3) == WHOLE
    assert [line.strip() for line in scoped(trace, Scope.CHILDREN, 1) if "/" in line] == [STACK, DEPLOY]


# -- full


def test_full_starts_at_the_highest_owner_within_the_depth_with_siblings(store: SpanStore) -> None:
    trace = trace_of(store, "pods", "web-1-a")
    # One level up: the ReplicaSet with both of its pods (the sibling included).
    assert scoped(trace, Scope.FULL, 1) == [
        RS1,
        "  create",
        f"  {POD_1A}",
        "    create",
        "    patch",
        f"  {POD_1B}",
        "    create",
    ]
    # Two levels up: the Deployment, both ReplicaSets, and the cousin pod too.
    assert scoped(trace, Scope.FULL, 2) == [line[2:] for line in WHOLE[2:]]
    assert scoped(trace, Scope.FULL, 3) == WHOLE
    assert scoped(trace, Scope.FULL, 255) == WHOLE


def test_full_goes_depth_levels_below_the_target(store: SpanStore) -> None:
    trace = trace_of(store, "deployments", "web")
    # Up one level to the Stack, down one level to the ReplicaSets: no pods.
    assert [line.strip() for line in scoped(trace, Scope.FULL, 1) if "/" in line] == [
        STACK,
        DEPLOY,
        RS1,
        RS2,
    ]
    from_rs = trace_of(store, "replicasets", "web-1")
    assert [line.strip() for line in scoped(from_rs, Scope.FULL, 1) if "/" in line] == [
        DEPLOY,
        RS1,
        POD_1A,
        POD_1B,
        RS2,
        POD_2A,
    ]


def test_any_object_with_full_scope_and_enough_depth_gives_the_same_tree(store: SpanStore) -> None:
    shapes = {
        name: [
            (n.span.span_id, n.span.parent_id)
            for n in select(trace_of(store, resource, name), Scope.FULL, 3).walk()
        ]
        for resource, name in (("pods", "web-1-a"), ("replicasets", "web-2"), ("stacks", "s"))
    }
    assert shapes["web-1-a"] == shapes["web-2"] == shapes["s"]
