"""The owner graph: which object each object's controller owner is. The only user of networkx.

Edges point from a dependent to its owner (Pod → ReplicaSet → Deployment). Each object has at most
one owner here: the controller owner, which is what places its span in the hierarchy. A reference
that would close a cycle (a broken or hostile ownerReference) is refused, so walking to the root
always ends.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from kelemetry.model.objects import ObjectKey, ObjectRef

MAX_DEPTH = 32


class OwnerGraph:
    def __init__(self) -> None:
        self._graph = nx.DiGraph()

    def __len__(self) -> int:
        return int(self._graph.number_of_nodes())

    def __contains__(self, key: object) -> bool:
        return bool(self._graph.has_node(key))

    def add(self, ref: ObjectRef) -> None:
        """Record an object, merging what this ref knows into what was known (a new uid wins)."""
        nodes = self._graph.nodes
        if ref.key in nodes:
            known = self.ref(ref.key)
            merged = ObjectRef(
                ref.key, ref.uid or known.uid, ref.kind or known.kind, ref.version or known.version
            )
            if merged != known:
                nodes[ref.key]["ref"] = merged
        else:
            self._graph.add_node(ref.key, ref=ref)

    def ref(self, key: ObjectKey) -> ObjectRef:
        nodes = self._graph.nodes
        found: ObjectRef = nodes[key]["ref"] if key in nodes else ObjectRef(key)
        return found

    def set_owner(self, child: ObjectRef, owner: ObjectRef) -> bool:
        """Make ``owner`` the owner of ``child``; True if that changed the graph's shape."""
        self.add(child)
        self.add(owner)
        graph = self._graph
        current = self.owner_of(child.key)
        if current == owner.key:
            return False
        if child.key == owner.key or (owner.key in graph and nx.has_path(graph, owner.key, child.key)):
            return False
        if current is not None:
            graph.remove_edge(child.key, current)
        graph.add_edge(child.key, owner.key)
        return True

    def owner_of(self, key: ObjectKey) -> ObjectKey | None:
        graph = self._graph
        if key not in graph:
            return None
        for owner in graph.successors(key):
            return owner  # type: ignore[no-any-return]
        return None

    def chain(self, key: ObjectKey) -> list[ObjectKey]:
        """``key`` then its owners up to the root."""
        chain = [key]
        current = key
        for _ in range(MAX_DEPTH):
            owner = self.owner_of(current)
            if owner is None:
                break
            chain.append(owner)
            current = owner
        return chain

    def root(self, key: ObjectKey) -> ObjectKey:
        return self.chain(key)[-1]

    def children(self, key: ObjectKey) -> list[ObjectKey]:
        graph = self._graph
        return list(graph.predecessors(key)) if key in graph else []

    def descendants(self, key: ObjectKey) -> set[ObjectKey]:
        graph = self._graph
        return set(nx.ancestors(graph, key)) if key in graph else set()

    def subtree(self, key: ObjectKey) -> set[ObjectKey]:
        return {key} | self.descendants(key)

    def keys(self) -> Iterable[ObjectKey]:
        keys: Iterable[ObjectKey] = iter(self._graph.nodes)
        return keys
