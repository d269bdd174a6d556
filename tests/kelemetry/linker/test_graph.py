"""The owner graph (kelemetry.linker.graph): chains to the root, children, descendants and
subtrees, set_owner's return values, re-owning, refusing self-ownership and cycles, and add()
keeping the most detailed ref of an object.
"""

from __future__ import annotations

import itertools

import pytest

from kelemetry.linker.graph import MAX_DEPTH, OwnerGraph
from kelemetry.model.objects import ObjectKey, ObjectRef


def ref(resource: str, name: str, uid: str = "", kind: str = "", version: str = "") -> ObjectRef:
    group = "" if resource in ("pods", "nodes") else "apps"
    return ObjectRef(ObjectKey.make("c", group, resource, "ns", name), uid, kind, version)


DEPLOY = ref("deployments", "web", "d1", "Deployment", "v1")
RS_1 = ref("replicasets", "web-1", "r1", "ReplicaSet", "v1")
RS_2 = ref("replicasets", "web-2", "r2", "ReplicaSet", "v1")
POD_A = ref("pods", "web-1-a", "pa", "Pod", "v1")
POD_B = ref("pods", "web-1-b", "pb", "Pod", "v1")
POD_C = ref("pods", "web-2-c", "pc", "Pod", "v1")


@pytest.fixture
def tree() -> OwnerGraph:
    """web ← {web-1 ← {a, b}, web-2 ← {c}}."""
    graph = OwnerGraph()
    for child, owner in ((RS_1, DEPLOY), (RS_2, DEPLOY), (POD_A, RS_1), (POD_B, RS_1), (POD_C, RS_2)):
        assert graph.set_owner(child, owner) is True
    return graph


def test_chain_runs_from_the_key_to_the_root(tree: OwnerGraph) -> None:
    assert tree.chain(POD_A.key) == [POD_A.key, RS_1.key, DEPLOY.key]
    assert tree.chain(RS_2.key) == [RS_2.key, DEPLOY.key]
    assert tree.chain(DEPLOY.key) == [DEPLOY.key]


def test_root(tree: OwnerGraph) -> None:
    assert {tree.root(k.key) for k in (POD_A, POD_B, POD_C, RS_1, RS_2, DEPLOY)} == {DEPLOY.key}


def test_owner_of(tree: OwnerGraph) -> None:
    assert tree.owner_of(POD_C.key) == RS_2.key
    assert tree.owner_of(DEPLOY.key) is None


def test_children_are_direct_dependents_only(tree: OwnerGraph) -> None:
    assert set(tree.children(DEPLOY.key)) == {RS_1.key, RS_2.key}
    assert set(tree.children(RS_1.key)) == {POD_A.key, POD_B.key}
    assert tree.children(POD_A.key) == []


def test_descendants_are_every_dependent_below(tree: OwnerGraph) -> None:
    assert tree.descendants(DEPLOY.key) == {RS_1.key, RS_2.key, POD_A.key, POD_B.key, POD_C.key}
    assert tree.descendants(RS_2.key) == {POD_C.key}
    assert tree.descendants(POD_B.key) == set()


def test_subtree_is_the_key_and_its_descendants(tree: OwnerGraph) -> None:
    assert tree.subtree(RS_1.key) == {RS_1.key, POD_A.key, POD_B.key}
    assert tree.subtree(POD_C.key) == {POD_C.key}
    assert tree.subtree(DEPLOY.key) == set(tree.keys())


def test_size_membership_and_keys(tree: OwnerGraph) -> None:
    assert len(tree) == 6
    assert POD_A.key in tree and ref("pods", "other").key not in tree
    assert set(tree.keys()) == {r.key for r in (DEPLOY, RS_1, RS_2, POD_A, POD_B, POD_C)}


def test_unknown_key_is_its_own_root() -> None:
    graph = OwnerGraph()
    key = ref("pods", "lonely").key
    assert graph.chain(key) == [key]
    assert graph.root(key) == key
    assert graph.owner_of(key) is None
    assert graph.children(key) == []
    assert graph.descendants(key) == set()
    assert graph.subtree(key) == {key}
    assert len(graph) == 0 and key not in graph


def test_set_owner_records_both_refs() -> None:
    graph = OwnerGraph()
    graph.set_owner(POD_A, RS_1)
    assert graph.ref(POD_A.key) == POD_A
    assert graph.ref(RS_1.key) == RS_1


# ---------------------------------------------------------------------------------------------
# set_owner return values and re-owning


def test_new_edge_is_a_change() -> None:
    assert OwnerGraph().set_owner(POD_A, RS_1) is True


def test_same_edge_again_is_no_change() -> None:
    graph = OwnerGraph()
    graph.set_owner(POD_A, RS_1)
    assert graph.set_owner(POD_A, RS_1) is False
    # A vaguer ref of the same owner is the same edge.
    assert graph.set_owner(POD_A, ref("replicasets", "web-1")) is False
    assert graph.chain(POD_A.key) == [POD_A.key, RS_1.key]


def test_changed_owner_is_a_change_and_replaces_the_edge(tree: OwnerGraph) -> None:
    assert tree.set_owner(POD_A, RS_2) is True
    assert tree.owner_of(POD_A.key) == RS_2.key
    assert set(tree.children(RS_1.key)) == {POD_B.key}
    assert set(tree.children(RS_2.key)) == {POD_A.key, POD_C.key}
    assert RS_1.key in tree  # the old owner stays known


def test_an_owner_can_gain_an_owner_later() -> None:
    graph = OwnerGraph()
    graph.set_owner(POD_A, RS_1)
    assert graph.root(POD_A.key) == RS_1.key
    assert graph.set_owner(RS_1, DEPLOY) is True
    assert graph.chain(POD_A.key) == [POD_A.key, RS_1.key, DEPLOY.key]


# ---------------------------------------------------------------------------------------------
# Refusals


def test_self_ownership_is_refused() -> None:
    graph = OwnerGraph()
    assert graph.set_owner(RS_1, RS_1) is False
    assert graph.owner_of(RS_1.key) is None
    assert graph.chain(RS_1.key) == [RS_1.key]


def test_self_ownership_keeps_an_existing_owner(tree: OwnerGraph) -> None:
    assert tree.set_owner(RS_1, RS_1) is False
    assert tree.owner_of(RS_1.key) == DEPLOY.key


def test_direct_cycle_is_refused() -> None:
    graph = OwnerGraph()
    graph.set_owner(RS_1, DEPLOY)
    assert graph.set_owner(DEPLOY, RS_1) is False
    assert graph.owner_of(DEPLOY.key) is None
    assert graph.chain(RS_1.key) == [RS_1.key, DEPLOY.key]


def test_indirect_cycle_is_refused(tree: OwnerGraph) -> None:
    assert tree.set_owner(DEPLOY, POD_A) is False
    assert tree.owner_of(DEPLOY.key) is None
    assert tree.chain(POD_A.key) == [POD_A.key, RS_1.key, DEPLOY.key]
    assert tree.descendants(POD_A.key) == set()


def test_refused_re_owning_keeps_the_old_owner(tree: OwnerGraph) -> None:
    # RS_1 re-owned by its own Pod would close a cycle; it stays under the Deployment.
    assert tree.set_owner(RS_1, POD_A) is False
    assert tree.owner_of(RS_1.key) == DEPLOY.key


def test_cycle_through_a_chain_longer_than_max_depth_is_refused() -> None:
    graph = OwnerGraph()
    refs = [ref("replicasets", f"r{i}") for i in range(MAX_DEPTH + 8)]
    for child, owner in itertools.pairwise(refs):
        assert graph.set_owner(child, owner) is True
    top, bottom = refs[-1], refs[0]
    assert graph.set_owner(top, bottom) is False
    assert graph.owner_of(top.key) is None


def test_walks_end_even_on_very_long_chains() -> None:
    graph = OwnerGraph()
    refs = [ref("replicasets", f"r{i}") for i in range(MAX_DEPTH * 2)]
    for child, owner in itertools.pairwise(refs):
        graph.set_owner(child, owner)
    assert len(graph.chain(refs[0].key)) == MAX_DEPTH + 1
    assert graph.chain(refs[-MAX_DEPTH].key) == [r.key for r in refs[-MAX_DEPTH:]]


# ---------------------------------------------------------------------------------------------
# add() and ref()


def test_ref_of_an_unknown_key_is_bare() -> None:
    key = ref("pods", "unknown").key
    assert OwnerGraph().ref(key) == ObjectRef(key)


def test_more_detailed_ref_replaces_a_vaguer_one() -> None:
    graph = OwnerGraph()
    graph.add(ref("pods", "p"))
    graph.add(ref("pods", "p", uid="u1", kind="Pod", version="v1"))
    assert graph.ref(ref("pods", "p").key) == ref("pods", "p", uid="u1", kind="Pod", version="v1")
    assert len(graph) == 1


def test_vaguer_ref_does_not_replace_a_detailed_one() -> None:
    graph = OwnerGraph()
    graph.add(ref("pods", "p", uid="u1", kind="Pod", version="v1"))
    graph.add(ref("pods", "p"))
    graph.add(ref("pods", "p", kind="Pod"))
    graph.add(ref("pods", "p", uid="u1"))
    assert graph.ref(ref("pods", "p").key) == ref("pods", "p", uid="u1", kind="Pod", version="v1")


def test_kind_is_learned_later() -> None:
    graph = OwnerGraph()
    graph.add(ref("pods", "p", uid="u1"))
    graph.add(ref("pods", "p", uid="u1", kind="Pod"))
    assert graph.ref(ref("pods", "p").key) == ref("pods", "p", uid="u1", kind="Pod")


def test_new_uid_replaces_the_old_incarnation() -> None:
    # A deleted-and-recreated object keeps its key and gets a new uid.
    graph = OwnerGraph()
    graph.add(ref("pods", "p", uid="u1", kind="Pod"))
    graph.add(ref("pods", "p", uid="u2", kind="Pod"))
    assert graph.ref(ref("pods", "p").key).uid == "u2"


def test_ref_with_kind_only_does_not_lose_a_known_uid() -> None:
    # Neither ref is more detailed than the other; what each knows must survive.
    graph = OwnerGraph()
    graph.add(ref("pods", "p", uid="u1"))
    graph.add(ref("pods", "p", kind="Pod"))
    known = graph.ref(ref("pods", "p").key)
    assert known.uid == "u1"
    assert known.kind == "Pod"


def test_owner_ref_detail_is_kept_when_set_again() -> None:
    graph = OwnerGraph()
    graph.set_owner(POD_A, ref("replicasets", "web-1"))
    graph.set_owner(POD_B, RS_1)
    assert graph.ref(RS_1.key) == RS_1
