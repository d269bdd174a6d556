"""Scopes: which objects of an assembled hierarchy a view shows.

Pure functions from one assembled trace to another. The assembled tree holds the whole hierarchy
the looked-up object belongs to; a scope cuts it down:

- ``object``: the object alone, with its requests and Events;
- ``ancestors``: its owners up to ``depth`` levels, each with only the path down to the object
  (the sibling objects are left out), rooted at the highest one;
- ``children``: the object and what it owns, down to ``depth`` levels;
- ``full``: from the highest owner within ``depth`` levels, everything down to ``depth`` levels
  below the object, siblings and cousins included (an SRE looking at one Pod wants its peers).
"""

from __future__ import annotations

from dataclasses import replace

from frontend.modes import Scope
from frontend.types import AssembledTrace, SpanNode
from kelemetry.model.events import TraceSource


def _is_object(node: SpanNode) -> bool:
    return node.span.source is TraceSource.OBJECT


def _path_to(root: SpanNode, object_id: int) -> list[SpanNode]:
    """Object nodes from the root down to the object (empty when it is not in the tree)."""
    stack: list[tuple[SpanNode, list[SpanNode]]] = [(root, [root])]
    while stack:
        node, path = stack.pop()
        if _is_object(node) and node.span.object_id == object_id:
            return path
        for child in node.children:
            if _is_object(child):
                stack.append((child, [*path, child]))
    return []


def _prune(node: SpanNode, levels: int) -> SpanNode:
    """A copy keeping owned objects down to ``levels`` levels, and every request and Event."""
    children = [
        _prune(child, levels - 1) if _is_object(child) else child
        for child in node.children
        if not _is_object(child) or levels > 0
    ]
    return SpanNode(node.span, children)


def _reroot(node: SpanNode) -> SpanNode:
    return SpanNode(replace(node.span, parent_id=None), node.children)


def select(trace: AssembledTrace, scope: Scope, depth: int) -> AssembledTrace:
    path = _path_to(trace.root, trace.target.object_id)
    if not path:
        return trace
    target = path[-1]
    if scope is Scope.OBJECT:
        root = _reroot(_prune(target, 0))
    elif scope is Scope.CHILDREN:
        root = _reroot(_prune(target, depth))
    elif scope is Scope.ANCESTORS:
        chain = path[-(depth + 1) :]
        below: SpanNode = _prune(chain[-1], 0)
        for owner in reversed(chain[:-1]):
            own = [child for child in owner.children if not _is_object(child)]
            below = SpanNode(owner.span, [*own, below])
        root = _reroot(below)
    else:
        top_index = max(0, len(path) - 1 - depth)
        root = _reroot(_prune(path[top_index], (len(path) - 1 - top_index) + depth))
    return replace(trace, root=root, trace_id=root.span.trace_id)
