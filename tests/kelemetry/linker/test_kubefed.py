"""KubeFed's linker (kelemetry.linker.systems.kubefed) on objects shaped as KubeFed v0.10 writes them:
a member Deployment (same name and namespace, ``kubefed.io/managed: "true"``, template annotations
dropped) hangs under the host's FederatedDeployment; a member Namespace under the FederatedNamespace
that lives in it; a host that is also a member (a parent in the object's own cluster); a custom
federated group; unmanaged, malformed and unrelated objects.
"""

from __future__ import annotations

from typing import Any

import pytest

from kelemetry.linker.links import Clusters, Refusal
from kelemetry.linker.systems.kubefed import KubeFedLinker
from kelemetry.model.objects import ObjectKey, ObjectRef
from tests.kelemetry.linker.bodies import DEPLOYMENT_SPEC, body, ref

FLEET = Clusters(frozenset({"cluster1", "cluster2"}))
MEMBER_DEPLOY = ref("cluster2", "apps", "deployments", "test-namespace", "test-deployment", kind="Deployment")


def member_body(obj: ObjectRef = MEMBER_DEPLOY, managed: str = "true") -> dict[str, Any]:
    return body(obj, labels={"app": "nginx", "kubefed.io/managed": managed}, spec=DEPLOYMENT_SPEC)


def test_member_deployment_hangs_under_the_federated_deployment() -> None:
    found = KubeFedLinker("cluster1").parent(MEMBER_DEPLOY, member_body(), FLEET)
    assert found == ObjectRef(
        ObjectKey(
            "cluster1", "types.kubefed.io", "federateddeployments", "test-namespace", "test-deployment"
        ),
        "",
        "FederatedDeployment",
        "v1beta1",
    )


def test_the_hosts_own_member_copy_hangs_under_the_federated_object_beside_it() -> None:
    own = ref("cluster1", "apps", "deployments", "test-namespace", "test-deployment", kind="Deployment")
    found = KubeFedLinker("cluster1").parent(own, member_body(own), FLEET)
    assert isinstance(found, ObjectRef)
    assert found.key == ObjectKey(
        "cluster1", "types.kubefed.io", "federateddeployments", "test-namespace", "test-deployment"
    )


def test_member_namespace_hangs_under_the_federated_namespace_inside_it() -> None:
    ns = ref("cluster2", "", "namespaces", "", "test-namespace", kind="Namespace")
    found = KubeFedLinker("cluster1").parent(ns, member_body(ns), FLEET)
    assert isinstance(found, ObjectRef)
    assert found.key == ObjectKey(
        "cluster1", "types.kubefed.io", "federatednamespaces", "test-namespace", "test-namespace"
    )
    assert found.kind == "FederatedNamespace"


def test_cluster_scoped_member_hangs_under_a_cluster_scoped_federated_object() -> None:
    role = ref("cluster2", "rbac.authorization.k8s.io", "clusterroles", "", "reader", kind="ClusterRole")
    found = KubeFedLinker("cluster1").parent(role, member_body(role), FLEET)
    assert isinstance(found, ObjectRef)
    assert found.key == ObjectKey("cluster1", "types.kubefed.io", "federatedclusterroles", "", "reader")


def test_custom_federated_group() -> None:
    found = KubeFedLinker("cluster1", federated_group="types.example.com").parent(
        MEMBER_DEPLOY, member_body(), FLEET
    )
    assert isinstance(found, ObjectRef)
    assert found.key.group == "types.example.com"


def test_host_by_alias_and_by_conventional_name() -> None:
    aliased = Clusters(frozenset({"cluster1", "cluster2"}), {"kubefed-host": "cluster1"})
    found = KubeFedLinker().parent(MEMBER_DEPLOY, member_body(), aliased)
    assert isinstance(found, ObjectRef) and found.key.cluster == "cluster1"
    named = Clusters(frozenset({"kubefed-host", "cluster2"}))
    found = KubeFedLinker().parent(MEMBER_DEPLOY, member_body(), named)
    assert isinstance(found, ObjectRef) and found.key.cluster == "kubefed-host"


def test_unknown_host_is_refused() -> None:
    assert isinstance(KubeFedLinker().parent(MEMBER_DEPLOY, member_body(), FLEET), Refusal)
    assert isinstance(KubeFedLinker("cluster9").parent(MEMBER_DEPLOY, member_body(), FLEET), Refusal)


@pytest.mark.parametrize("managed", ["1", "TRUE", ""])
def test_malformed_managed_label_is_refused(managed: str) -> None:
    assert isinstance(
        KubeFedLinker("cluster1").parent(MEMBER_DEPLOY, member_body(managed=managed), FLEET), Refusal
    )


def test_federated_object_carrying_the_managed_label_is_refused() -> None:
    fed = ref("cluster1", "types.kubefed.io", "federateddeployments", "test-namespace", "test-deployment")
    assert isinstance(KubeFedLinker("cluster1").parent(fed, member_body(fed), FLEET), Refusal)


def test_unmanaged_and_unrelated_objects_are_not_linked() -> None:
    linker = KubeFedLinker("cluster1")
    assert linker.parent(MEMBER_DEPLOY, member_body(managed="false"), FLEET) is None
    assert linker.parent(MEMBER_DEPLOY, body(MEMBER_DEPLOY, labels={"app": "nginx"}), FLEET) is None
    # KubeAdmiral's label is not KubeFed's.
    assert (
        linker.parent(MEMBER_DEPLOY, body(MEMBER_DEPLOY, labels={"kubeadmiral.io/managed": "true"}), FLEET)
        is None
    )
