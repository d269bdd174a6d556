"""The owner graph: which object each object's controller owner is. The only user of networkx.

Nodes are incarnations (key + uid), not names: a Deployment deleted and created again under the
same name is two nodes, and an ownerReference names its owner's uid, so a new ReplicaSet that
happens to reuse an old name hangs under the new Deployment, never under the old one.

Edges point from a dependent to its owner (Pod → ReplicaSet → Deployment). Each object has at most
one owner here: the controller owner, which is what places its span in the hierarchy. A reference
that would close a cycle (a broken or hostile ownerReference) is refused, so walking to the root
always ends.

Some inputs do not say which incarnation they mean (a failed create, audit at Metadata level, an
Event without the involved object's uid). ``resolve`` gives them the incarnation of that name seen
most recently, which is the one alive when they happened as long as input arrives in order.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from kelemetry.model.objects import Incarnation, ObjectKey, ObjectRef

MAX_DEPTH = 32
_NO_ATTRIBUTES: dict[str, object] = {}


class _Graph(nx.DiGraph):  # type: ignore[misc]
    """No attribute is ever set on a node or an edge (kinds live in `OwnerGraph._refs`), so one shared
    empty dict stands in for the two networkx would allocate per object (~130 bytes of the 1 KB
    budget per tracked object)."""

    node_attr_dict_factory = staticmethod(lambda: _NO_ATTRIBUTES)
    edge_attr_dict_factory = staticmethod(lambda: _NO_ATTRIBUTES)


class OwnerGraph:
    def __init__(self) -> None:
        self._graph = _Graph()
        # What each incarnation is (kind, version), beside the graph: a networkx attribute dict per
        # node would cost ~150 bytes an object.
        self._refs: dict[Incarnation, ObjectRef] = {}
        # The uid each name was last seen with for the first time: the current incarnation.
        self._current: dict[ObjectKey, str] = {}

    def __len__(self) -> int:
        return int(self._graph.number_of_nodes())

    def __contains__(self, obj: object) -> bool:
        return bool(self._graph.has_node(obj))

    def resolve(self, ref: ObjectRef) -> ObjectRef:
        """``ref`` with the uid of its name's current incarnation when it does not say one."""
        if ref.uid:
            return ref
        uid = self._current.get(ref.key)
        if not uid:
            return ref
        return ObjectRef(ref.key, uid, ref.kind, ref.version)

    def add(self, ref: ObjectRef) -> None:
        """Record an incarnation, merging what this ref knows into what was known."""
        node = ref.incarnation
        known = self._refs.get(node)
        if known is not None:
            if (ref.kind and ref.kind != known.kind) or (ref.version and ref.version != known.version):
                self._refs[node] = ObjectRef(
                    ref.key, ref.uid, ref.kind or known.kind, ref.version or known.version
                )
            return
        self._refs[node] = ref
        self._graph.add_node(node)
        if ref.uid:
            self._current[ref.key] = ref.uid

    def ref(self, obj: Incarnation) -> ObjectRef:
        found = self._refs.get(obj)
        return found if found is not None else ObjectRef(obj.key, obj.uid)

    def set_owner(self, child: ObjectRef, owner: ObjectRef) -> bool:
        """Make ``owner`` the owner of ``child``; True if that changed the graph's shape."""
        self.add(child)
        self.add(owner)
        graph = self._graph
        child_node, owner_node = child.incarnation, owner.incarnation
        current = self.owner_of(child_node)
        if current == owner_node:
            return False
        if child_node == owner_node or nx.has_path(graph, owner_node, child_node):
            return False
        if current is not None:
            graph.remove_edge(child_node, current)
        graph.add_edge(child_node, owner_node)
        return True

    def would_cycle(self, child: Incarnation, owner: Incarnation) -> bool:
        graph = self._graph
        return child == owner or (
            owner in graph and child in graph and bool(nx.has_path(graph, owner, child))
        )

    def adopt(self, ref: ObjectRef) -> list[Incarnation]:
        """``ref`` is a name's real incarnation: objects that were placed under the name before its
        uid was known (a parent a linker named without a uid) move under it. Returns them."""
        placeholder = Incarnation(ref.key, "")
        graph = self._graph
        if not ref.uid or placeholder not in graph:
            return []
        self.add(ref)
        node = ref.incarnation
        # A child whose move would close a cycle (it is also this object's parent) stays where it was.
        moved = [
            child for child in list(graph.predecessors(placeholder)) if not self.would_cycle(child, node)
        ]
        for child in moved:
            graph.remove_edge(child, placeholder)
            graph.add_edge(child, node)
        if not list(graph.predecessors(placeholder)) and not list(graph.successors(placeholder)):
            graph.remove_node(placeholder)
            self._refs.pop(placeholder, None)
        return moved

    def owner_of(self, obj: Incarnation) -> Incarnation | None:
        graph = self._graph
        if obj not in graph:
            return None
        for owner in graph.successors(obj):
            return owner  # type: ignore[no-any-return]
        return None

    def chain(self, obj: Incarnation) -> list[Incarnation]:
        """``obj`` then its owners up to the root."""
        chain = [obj]
        current = obj
        for _ in range(MAX_DEPTH):
            owner = self.owner_of(current)
            if owner is None:
                break
            chain.append(owner)
            current = owner
        return chain

    def root(self, obj: Incarnation) -> Incarnation:
        return self.chain(obj)[-1]

    def children(self, obj: Incarnation) -> list[Incarnation]:
        graph = self._graph
        return list(graph.predecessors(obj)) if obj in graph else []

    def descendants(self, obj: Incarnation) -> set[Incarnation]:
        graph = self._graph
        return set(nx.ancestors(graph, obj)) if obj in graph else set()

    def subtree(self, obj: Incarnation) -> set[Incarnation]:
        return {obj} | self.descendants(obj)

    def nodes(self) -> Iterable[Incarnation]:
        found: Iterable[Incarnation] = iter(self._graph.nodes)
        return found
