"""The owner graph: chains to the root, re-owning, and refusing cycles."""

from __future__ import annotations

from kelemetry.linker.graph import OwnerGraph
from kelemetry.model.objects import ObjectKey, ObjectRef


def ref(resource: str, name: str, uid: str = "", kind: str = "") -> ObjectRef:
    return ObjectRef(
        ObjectKey.make("c", "apps" if resource != "pods" else "", resource, "ns", name), uid, kind
    )


def test_chain_root_children_and_subtree() -> None:
    graph = OwnerGraph()
    deploy, rs, pod_a, pod_b = (
        ref("deployments", "d"),
        ref("replicasets", "d-1"),
        ref("pods", "a"),
        ref("pods", "b"),
    )
    assert graph.set_owner(rs, deploy) and graph.set_owner(pod_a, rs) and graph.set_owner(pod_b, rs)
    assert graph.chain(pod_a.key) == [pod_a.key, rs.key, deploy.key]
    assert graph.root(pod_b.key) == deploy.key
    assert sorted(k.name for k in graph.children(rs.key)) == ["a", "b"]
    assert graph.subtree(rs.key) == {rs.key, pod_a.key, pod_b.key}
    assert graph.descendants(deploy.key) == {rs.key, pod_a.key, pod_b.key}
    assert len(graph) == 4 and pod_a.key in graph


def test_set_owner_reports_changes_and_refuses_cycles() -> None:
    graph = OwnerGraph()
    a, b, c = ref("replicasets", "a"), ref("replicasets", "b"), ref("replicasets", "c")
    assert graph.set_owner(a, b) is True
    assert graph.set_owner(a, b) is False  # same edge again
    assert graph.set_owner(a, c) is True  # re-owned
    assert graph.owner_of(a.key) == c.key
    assert graph.set_owner(c, a) is False  # would close a cycle
    assert graph.set_owner(a, a) is False
    assert graph.root(a.key) == c.key


def test_add_keeps_the_more_detailed_ref() -> None:
    graph = OwnerGraph()
    graph.add(ref("pods", "p"))
    graph.add(ref("pods", "p", uid="u1", kind="Pod"))
    graph.add(ref("pods", "p"))
    assert graph.ref(ref("pods", "p").key) == ref("pods", "p", uid="u1", kind="Pod")
    assert graph.ref(ref("pods", "unknown").key) == ref("pods", "unknown")
