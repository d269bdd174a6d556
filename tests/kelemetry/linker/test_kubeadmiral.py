"""KubeAdmiral's linker (kelemetry.linker.systems.kubeadmiral) on objects shaped as KubeAdmiral v1.0
writes them: a member Deployment (the source's template plus ``kubeadmiral.io/managed: "true"`` and
the sync controller's bookkeeping annotations) hangs under the host's source Deployment; how the host
is found (conventional name, alias, configuration, refusal); unmanaged and malformed labels; the host's
own objects, including the FederatedObject (owned by the source, so never linked by us).
"""

from __future__ import annotations

import pytest

from kelemetry.linker.links import Clusters, Refusal
from kelemetry.linker.systems.kubeadmiral import KubeAdmiralLinker
from kelemetry.model.objects import ObjectKey, ObjectRef
from tests.kelemetry.linker.bodies import DEPLOYMENT_SPEC, body, ref

FLEET = Clusters(frozenset({"kubeadmiral-host", "kubeadmiral-member-1", "kubeadmiral-member-2"}))
MEMBER_DEPLOY = ref("kubeadmiral-member-1", "apps", "deployments", "default", "web", kind="Deployment")


def member_body(obj: ObjectRef = MEMBER_DEPLOY, managed: str = "true") -> dict[str, object]:
    # What the sync controller writes: the source's labels and annotations, the managed label
    # (ApplyOverrides), the source generation (ObjectForCluster) and the propagated keys (retain.go).
    return body(
        obj,
        labels={"app": "web", "kubeadmiral.io/managed": managed},
        annotations={
            "kubeadmiral.io/source-generation": "3",
            "kubeadmiral.io/propagated-label-keys": "app,kubeadmiral.io/managed",
            "kubeadmiral.io/propagated-annotation-keys": "kubeadmiral.io/source-generation",
            "deployment.kubernetes.io/revision": "1",
        },
        spec=DEPLOYMENT_SPEC,
    )


def test_member_deployment_hangs_under_the_host_source_deployment() -> None:
    found = KubeAdmiralLinker().parent(MEMBER_DEPLOY, member_body(), FLEET)
    assert found == ObjectRef(
        ObjectKey("kubeadmiral-host", "apps", "deployments", "default", "web"), "", "Deployment", "v1"
    )


def test_cluster_scoped_member_namespace_hangs_under_the_host_namespace() -> None:
    ns = ref("kubeadmiral-member-2", "", "namespaces", "", "team-a", kind="Namespace")
    found = KubeAdmiralLinker().parent(ns, member_body(ns), FLEET)
    assert isinstance(found, ObjectRef)
    assert found.key == ObjectKey("kubeadmiral-host", "", "namespaces", "", "team-a")


@pytest.mark.parametrize(
    ("clusters", "configured", "host"),
    [
        pytest.param(Clusters(frozenset({"host", "m1"})), None, "host", id="generic-name"),
        pytest.param(Clusters(), None, "host", id="clusters-unknown"),
        pytest.param(
            Clusters(frozenset({"fed-prod", "m1"}), {"kubeadmiral-host": "fed-prod"}),
            None,
            "fed-prod",
            id="alias",
        ),
        pytest.param(
            Clusters(frozenset({"fed-prod", "m1"}), {"host": "fed-prod"}), None, "fed-prod", id="alias-host"
        ),
        pytest.param(
            Clusters(frozenset({"fed-prod", "host", "m1"})), "fed-prod", "fed-prod", id="configured"
        ),
        pytest.param(
            Clusters(frozenset({"kubeadmiral-host", "host", "m1"})), None, "kubeadmiral-host", id="own-first"
        ),
    ],
)
def test_host_cluster(clusters: Clusters, configured: str | None, host: str) -> None:
    obj = ref("m1", "apps", "deployments", "default", "web", kind="Deployment")
    found = KubeAdmiralLinker(configured).parent(obj, member_body(obj), clusters)
    assert isinstance(found, ObjectRef)
    assert found.key.cluster == host


def test_no_known_host_is_refused_with_the_names_tried() -> None:
    found = KubeAdmiralLinker().parent(MEMBER_DEPLOY, member_body(), Clusters(frozenset({"a", "b"})))
    assert isinstance(found, Refusal)
    assert found.linker == "kubeadmiral"
    assert "kubeadmiral-host" in found.reason and "host" in found.reason


def test_configured_host_that_is_not_ours_is_refused() -> None:
    found = KubeAdmiralLinker("elsewhere").parent(MEMBER_DEPLOY, member_body(), FLEET)
    assert isinstance(found, Refusal)
    assert "elsewhere" in found.reason


def test_alias_to_a_cluster_that_is_not_ours_is_refused() -> None:
    clusters = Clusters(frozenset({"m1"}), {"kubeadmiral-host": "gone"})
    obj = ref("m1", "apps", "deployments", "default", "web")
    assert isinstance(KubeAdmiralLinker().parent(obj, member_body(obj), clusters), Refusal)


@pytest.mark.parametrize("managed", ["yes", "True", ""])
def test_malformed_managed_label_is_refused(managed: str) -> None:
    found = KubeAdmiralLinker().parent(MEMBER_DEPLOY, member_body(managed=managed), FLEET)
    assert isinstance(found, Refusal)


def test_explicitly_unmanaged_object_is_not_linked() -> None:
    assert KubeAdmiralLinker().parent(MEMBER_DEPLOY, member_body(managed="false"), FLEET) is None


def test_unrelated_objects_are_not_linked() -> None:
    linker = KubeAdmiralLinker()
    plain = body(MEMBER_DEPLOY, labels={"app": "web"}, spec=DEPLOYMENT_SPEC)
    assert linker.parent(MEMBER_DEPLOY, plain, FLEET) is None
    assert linker.parent(MEMBER_DEPLOY, {}, FLEET) is None
    assert linker.parent(MEMBER_DEPLOY, {"metadata": {"labels": "not-a-map"}}, FLEET) is None


def test_objects_of_the_host_itself_are_not_linked() -> None:
    source = ref("kubeadmiral-host", "apps", "deployments", "default", "web", kind="Deployment")
    # A source that somehow carries the label is still the top of its chain, not its own parent.
    assert KubeAdmiralLinker().parent(source, member_body(source), FLEET) is None
    fed = ref(
        "kubeadmiral-host", "core.kubeadmiral.io", "federatedobjects", "default", "web-deployments.apps"
    )
    fed_body = body(
        fed,
        labels={"apps/v1": "Deployment"},
        annotations={"federate.controller.kubeadmiral.io/observed-labels": "|app"},
        owners=[
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d1", "controller": True}
        ],
    )
    assert KubeAdmiralLinker().parent(fed, fed_body, FLEET) is None
