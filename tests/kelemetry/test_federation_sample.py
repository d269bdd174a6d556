"""The KubeAdmiral fleet recording (samples/federation) replayed cluster by cluster into one store:
the cross-cluster tree is checked without any cluster running (the live fleet is tests/e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frontend.types import ObjectQuery, SpanNode
from kelemetry import cli
from kelemetry.model.events import TraceSource
from tests.conftest import REPO_ROOT
from tests.lookups import assemble

FEDERATION = REPO_ROOT / "samples" / "federation"
MEMBER_WRITER = "system:serviceaccount:kube-admiral-system:kubeadmiral-member"


def _replay(store: Path, clusters: list[str]) -> None:
    for cluster in clusters:
        folder = FEDERATION / cluster
        argv = ["replay", "--quiet", "--cluster", cluster, "--store", str(store)]
        assert cli.main([*argv, str(folder / "audit.log"), str(folder / "events.jsonl")]) == 0


def _objects(node: SpanNode) -> list[SpanNode]:
    return [c for c in node.children if c.span.source is TraceSource.OBJECT]


def _label(node: SpanNode) -> str:
    return f"{node.span.key.cluster}:{node.span.key.display}"


def _shape(node: SpanNode) -> dict[str, object]:
    """The object tree as nested labels, children sorted: what two replay orders must agree on."""
    return {_label(c): _shape(c) for c in sorted(_objects(node), key=lambda n: (_label(n), n.span.uid))}


def _host_tree(store: Path) -> SpanNode:
    query = ObjectQuery(cluster="host", resource="deployments", namespace="default", name="fleet-demo")
    return assemble(store, query).root


@pytest.fixture(scope="module")
def fleet_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("fleet") / "k.db"
    _replay(store, ["host", "member-1", "member-2"])
    return store


def test_host_deployment_holds_both_members_copies_and_their_pods(fleet_store: Path) -> None:
    root = _host_tree(fleet_store)
    assert _label(root) == "host:deployments.apps/fleet-demo"
    children = {_label(c): c for c in _objects(root)}
    assert set(children) == {
        "host:federatedobjects.core.kubeadmiral.io/fleet-demo-deployments.apps",
        "member-1:deployments.apps/fleet-demo",
        "member-2:deployments.apps/fleet-demo",
        "member-2:configmaps/hand-linked",
    }
    federated = children["host:federatedobjects.core.kubeadmiral.io/fleet-demo-deployments.apps"]
    assert {_label(c) for c in _objects(federated)} == {
        "host:collectedstatuses.core.kubeadmiral.io/fleet-demo-deployments.apps",
        "host:propagatedversions.core.kubeadmiral.io/fleet-demo-deployments.apps",
    }
    for member in ("member-1", "member-2"):
        copy = children[f"{member}:deployments.apps/fleet-demo"]
        # Who made the copy: KubeAdmiral's ServiceAccount in that member, not the host's user.
        writes = {
            (c.span.tags["audit.user"], c.span.tags["audit.verb"])
            for c in copy.children
            if c.span.source is TraceSource.AUDIT
        }
        assert (MEMBER_WRITER, "create") in writes and (MEMBER_WRITER, "delete") in writes
        replicasets = _objects(copy)
        assert [rs.span.key.cluster for rs in replicasets] == [member]
        pods = _objects(replicasets[0])
        # Two at first, a third after the scale in the host; all of this member.
        assert len(pods) == 3 and {p.span.key.cluster for p in pods} == {member}
    # The host user's scale reached each member's ReplicaSet through KubeAdmiral's update.
    scales = [
        c
        for c in root.children
        if c.span.source is TraceSource.AUDIT and c.span.tags.get("audit.subresource") == "scale"
    ]
    assert scales and scales[0].span.tags["audit.user"] == "admin"


def test_member_only_object_is_a_tree_of_its_own(fleet_store: Path) -> None:
    query = ObjectQuery(cluster="member-1", resource="deployments", namespace="default", name="local-only")
    root = assemble(fleet_store, query).root
    assert _label(root) == "member-1:deployments.apps/local-only"
    stack = [root]
    while stack:
        node = stack.pop()
        assert node.span.key.cluster == "member-1"
        stack.extend(node.children)
    assert "member-1:deployments.apps/local-only" not in json.dumps(_shape(_host_tree(fleet_store)))


def test_replay_order_does_not_change_the_tree(fleet_store: Path, tmp_path: Path) -> None:
    # Members first: their copies wait for the host Deployment and are adopted when it arrives.
    late_host = tmp_path / "late.db"
    _replay(late_host, ["member-2", "member-1", "host"])
    assert _shape(_host_tree(late_host)) == _shape(_host_tree(fleet_store))


def test_member_copy_ancestors_lead_to_the_host_and_the_dump_names_clusters(
    fleet_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["dump", "--store", str(fleet_store), "--cluster", "member-1", "--resource", "deployments"]
    argv += ["--namespace", "default", "--name", "fleet-demo", "--scope", "ancestors"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("deployments.apps/fleet-demo  [Deployment, v1, namespace default, uid ")
    assert lines[0].endswith(", cluster host]")
    looked_up = [line for line in lines if line.endswith("<- looked up")]
    assert len(looked_up) == 1 and "cluster member-1]" in looked_up[0]
