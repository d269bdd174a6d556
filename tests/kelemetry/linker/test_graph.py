"""The owner graph (kelemetry.linker.graph): chains to the root, children, descendants and
subtrees, set_owner's return values, re-owning, refusing self-ownership and cycles, add() keeping
the most detailed ref of an incarnation, and incarnations of one name kept apart (resolve() giving
uid-less refs the current one).
"""

from __future__ import annotations

import itertools

import pytest

from kelemetry.linker.graph import MAX_DEPTH, OwnerGraph
from kelemetry.model.objects import Incarnation, ObjectKey, ObjectRef


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


def test_chain_runs_from_the_object_to_the_root(tree: OwnerGraph) -> None:
    assert tree.chain(POD_A.incarnation) == [POD_A.incarnation, RS_1.incarnation, DEPLOY.incarnation]
    assert tree.chain(RS_2.incarnation) == [RS_2.incarnation, DEPLOY.incarnation]
    assert tree.chain(DEPLOY.incarnation) == [DEPLOY.incarnation]


def test_root(tree: OwnerGraph) -> None:
    assert {tree.root(k.incarnation) for k in (POD_A, POD_B, POD_C, RS_1, RS_2, DEPLOY)} == {
        DEPLOY.incarnation
    }


def test_owner_of(tree: OwnerGraph) -> None:
    assert tree.owner_of(POD_C.incarnation) == RS_2.incarnation
    assert tree.owner_of(DEPLOY.incarnation) is None


def test_children_are_direct_dependents_only(tree: OwnerGraph) -> None:
    assert set(tree.children(DEPLOY.incarnation)) == {RS_1.incarnation, RS_2.incarnation}
    assert set(tree.children(RS_1.incarnation)) == {POD_A.incarnation, POD_B.incarnation}
    assert tree.children(POD_A.incarnation) == []


def test_descendants_are_every_dependent_below(tree: OwnerGraph) -> None:
    assert tree.descendants(DEPLOY.incarnation) == {
        RS_1.incarnation,
        RS_2.incarnation,
        POD_A.incarnation,
        POD_B.incarnation,
        POD_C.incarnation,
    }
    assert tree.descendants(RS_2.incarnation) == {POD_C.incarnation}
    assert tree.descendants(POD_B.incarnation) == set()


def test_subtree_is_the_object_and_its_descendants(tree: OwnerGraph) -> None:
    assert tree.subtree(RS_1.incarnation) == {RS_1.incarnation, POD_A.incarnation, POD_B.incarnation}
    assert tree.subtree(POD_C.incarnation) == {POD_C.incarnation}
    assert tree.subtree(DEPLOY.incarnation) == set(tree.nodes())


def test_size_membership_and_nodes(tree: OwnerGraph) -> None:
    assert len(tree) == 6
    assert POD_A.incarnation in tree and ref("pods", "other").incarnation not in tree
    assert set(tree.nodes()) == {r.incarnation for r in (DEPLOY, RS_1, RS_2, POD_A, POD_B, POD_C)}


def test_unknown_object_is_its_own_root() -> None:
    graph = OwnerGraph()
    obj = ref("pods", "lonely", "u1").incarnation
    assert graph.chain(obj) == [obj]
    assert graph.root(obj) == obj
    assert graph.owner_of(obj) is None
    assert graph.children(obj) == []
    assert graph.descendants(obj) == set()
    assert graph.subtree(obj) == {obj}
    assert len(graph) == 0 and obj not in graph


def test_set_owner_records_both_refs() -> None:
    graph = OwnerGraph()
    graph.set_owner(POD_A, RS_1)
    assert graph.ref(POD_A.incarnation) == POD_A
    assert graph.ref(RS_1.incarnation) == RS_1


# ---------------------------------------------------------------------------------------------
# set_owner return values and re-owning


def test_new_edge_is_a_change() -> None:
    assert OwnerGraph().set_owner(POD_A, RS_1) is True


def test_same_edge_again_is_no_change() -> None:
    graph = OwnerGraph()
    graph.set_owner(POD_A, RS_1)
    assert graph.set_owner(POD_A, RS_1) is False
    # A vaguer ref of the same owner, resolved to its current incarnation, is the same edge.
    assert graph.set_owner(POD_A, graph.resolve(ref("replicasets", "web-1"))) is False
    assert graph.chain(POD_A.incarnation) == [POD_A.incarnation, RS_1.incarnation]


def test_changed_owner_is_a_change_and_replaces_the_edge(tree: OwnerGraph) -> None:
    assert tree.set_owner(POD_A, RS_2) is True
    assert tree.owner_of(POD_A.incarnation) == RS_2.incarnation
    assert set(tree.children(RS_1.incarnation)) == {POD_B.incarnation}
    assert set(tree.children(RS_2.incarnation)) == {POD_A.incarnation, POD_C.incarnation}
    assert RS_1.incarnation in tree  # the old owner stays known


def test_an_owner_can_gain_an_owner_later() -> None:
    graph = OwnerGraph()
    graph.set_owner(POD_A, RS_1)
    assert graph.root(POD_A.incarnation) == RS_1.incarnation
    assert graph.set_owner(RS_1, DEPLOY) is True
    assert graph.chain(POD_A.incarnation) == [POD_A.incarnation, RS_1.incarnation, DEPLOY.incarnation]


# ---------------------------------------------------------------------------------------------
# Refusals


def test_self_ownership_is_refused() -> None:
    graph = OwnerGraph()
    assert graph.set_owner(RS_1, RS_1) is False
    assert graph.owner_of(RS_1.incarnation) is None
    assert graph.chain(RS_1.incarnation) == [RS_1.incarnation]


def test_self_ownership_keeps_an_existing_owner(tree: OwnerGraph) -> None:
    assert tree.set_owner(RS_1, RS_1) is False
    assert tree.owner_of(RS_1.incarnation) == DEPLOY.incarnation


def test_direct_cycle_is_refused() -> None:
    graph = OwnerGraph()
    graph.set_owner(RS_1, DEPLOY)
    assert graph.set_owner(DEPLOY, RS_1) is False
    assert graph.owner_of(DEPLOY.incarnation) is None
    assert graph.chain(RS_1.incarnation) == [RS_1.incarnation, DEPLOY.incarnation]


def test_indirect_cycle_is_refused(tree: OwnerGraph) -> None:
    assert tree.set_owner(DEPLOY, POD_A) is False
    assert tree.owner_of(DEPLOY.incarnation) is None
    assert tree.chain(POD_A.incarnation) == [POD_A.incarnation, RS_1.incarnation, DEPLOY.incarnation]
    assert tree.descendants(POD_A.incarnation) == set()


def test_refused_re_owning_keeps_the_old_owner(tree: OwnerGraph) -> None:
    # RS_1 re-owned by its own Pod would close a cycle; it stays under the Deployment.
    assert tree.set_owner(RS_1, POD_A) is False
    assert tree.owner_of(RS_1.incarnation) == DEPLOY.incarnation


def test_cycle_through_a_chain_longer_than_max_depth_is_refused() -> None:
    graph = OwnerGraph()
    refs = [ref("replicasets", f"r{i}") for i in range(MAX_DEPTH + 8)]
    for child, owner in itertools.pairwise(refs):
        assert graph.set_owner(child, owner) is True
    top, bottom = refs[-1], refs[0]
    assert graph.set_owner(top, bottom) is False
    assert graph.owner_of(top.incarnation) is None


def test_walks_end_even_on_very_long_chains() -> None:
    graph = OwnerGraph()
    refs = [ref("replicasets", f"r{i}") for i in range(MAX_DEPTH * 2)]
    for child, owner in itertools.pairwise(refs):
        graph.set_owner(child, owner)
    assert len(graph.chain(refs[0].incarnation)) == MAX_DEPTH + 1
    assert graph.chain(refs[-MAX_DEPTH].incarnation) == [r.incarnation for r in refs[-MAX_DEPTH:]]


# ---------------------------------------------------------------------------------------------
# add() and ref()


def test_ref_of_an_unknown_object_is_bare() -> None:
    key = ref("pods", "unknown").key
    assert OwnerGraph().ref(Incarnation(key, "u9")) == ObjectRef(key, "u9")


def test_more_detailed_ref_replaces_a_vaguer_one() -> None:
    graph = OwnerGraph()
    graph.add(ref("pods", "p", uid="u1"))
    graph.add(ref("pods", "p", uid="u1", kind="Pod", version="v1"))
    assert graph.ref(ref("pods", "p", uid="u1").incarnation) == ref(
        "pods", "p", uid="u1", kind="Pod", version="v1"
    )
    assert len(graph) == 1


def test_vaguer_ref_does_not_replace_a_detailed_one() -> None:
    graph = OwnerGraph()
    graph.add(ref("pods", "p", uid="u1", kind="Pod", version="v1"))
    graph.add(graph.resolve(ref("pods", "p")))
    graph.add(graph.resolve(ref("pods", "p", kind="Pod")))
    graph.add(ref("pods", "p", uid="u1"))
    assert graph.ref(ref("pods", "p", uid="u1").incarnation) == ref(
        "pods", "p", uid="u1", kind="Pod", version="v1"
    )
    assert len(graph) == 1


def test_kind_is_learned_later() -> None:
    graph = OwnerGraph()
    graph.add(ref("pods", "p", uid="u1"))
    graph.add(ref("pods", "p", uid="u1", kind="Pod"))
    assert graph.ref(ref("pods", "p", uid="u1").incarnation) == ref("pods", "p", uid="u1", kind="Pod")


def test_new_uid_is_a_new_incarnation_next_to_the_old_one() -> None:
    # A deleted-and-recreated object keeps its key and gets a new uid: a second node, and the
    # first keeps what was known about it.
    graph = OwnerGraph()
    graph.add(ref("pods", "p", uid="u1", kind="Pod", version="v1"))
    graph.add(ref("pods", "p", uid="u2", kind="Pod"))
    assert len(graph) == 2
    assert graph.ref(ref("pods", "p", uid="u1").incarnation) == ref("pods", "p", "u1", "Pod", "v1")
    assert graph.ref(ref("pods", "p", uid="u2").incarnation) == ref("pods", "p", "u2", "Pod")


def test_ref_with_kind_only_does_not_lose_a_known_uid() -> None:
    # Neither ref is more detailed than the other; what each knows must survive.
    graph = OwnerGraph()
    graph.add(ref("pods", "p", uid="u1"))
    graph.add(graph.resolve(ref("pods", "p", kind="Pod")))
    known = graph.ref(ref("pods", "p", uid="u1").incarnation)
    assert known.uid == "u1"
    assert known.kind == "Pod"
    assert len(graph) == 1


def test_owner_ref_detail_is_kept_when_set_again() -> None:
    graph = OwnerGraph()
    graph.set_owner(POD_A, RS_1)
    graph.set_owner(POD_B, ref("replicasets", "web-1", uid="r1"))
    assert graph.ref(RS_1.incarnation) == RS_1


# ---------------------------------------------------------------------------------------------
# Incarnations and resolve()


def test_resolve_gives_a_uid_less_ref_the_newest_incarnation_of_its_name() -> None:
    graph = OwnerGraph()
    graph.add(ref("pods", "p", uid="u1"))
    graph.add(ref("pods", "p", uid="u2"))
    # A late input about the first incarnation does not make it current again.
    graph.add(ref("pods", "p", uid="u1", kind="Pod"))
    assert graph.resolve(ref("pods", "p", kind="Pod", version="v1")) == ref("pods", "p", "u2", "Pod", "v1")


def test_resolve_keeps_a_ref_that_says_its_uid_or_names_an_unknown_object() -> None:
    graph = OwnerGraph()
    graph.add(ref("pods", "p", uid="u1"))
    graph.add(ref("pods", "p", uid="u2"))
    assert graph.resolve(ref("pods", "p", uid="u1")) == ref("pods", "p", uid="u1")
    assert graph.resolve(ref("pods", "other")) == ref("pods", "other")
    # Only uids make an incarnation current: a uid-less node of a name resolves to nothing.
    graph.add(ref("pods", "q"))
    assert graph.resolve(ref("pods", "q", kind="Pod")) == ref("pods", "q", kind="Pod")


def test_a_recreated_owner_gets_its_own_dependents() -> None:
    # web deleted and created again; the new web-1 (same name, new uid) hangs under the new web only.
    old_rs, new_rs = RS_1, ref("replicasets", "web-1", "r9", "ReplicaSet", "v1")
    new_deploy = ref("deployments", "web", "d2", "Deployment", "v1")
    graph = OwnerGraph()
    assert graph.set_owner(old_rs, DEPLOY) is True
    assert graph.set_owner(new_rs, new_deploy) is True
    assert graph.chain(new_rs.incarnation) == [new_rs.incarnation, new_deploy.incarnation]
    assert graph.chain(old_rs.incarnation) == [old_rs.incarnation, DEPLOY.incarnation]
    assert graph.children(DEPLOY.incarnation) == [old_rs.incarnation]
    assert graph.subtree(new_deploy.incarnation) == {new_deploy.incarnation, new_rs.incarnation}
