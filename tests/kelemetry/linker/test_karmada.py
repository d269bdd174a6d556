"""Karmada's linker (kelemetry.linker.systems.karmada) on objects shaped as Karmada v1.12 writes them:
a member Deployment (the Work's manifest: ``karmada.io/managed``, ``work.karmada.io/{namespace,name}``,
``resourcebinding.karmada.io/{namespace,name}``...) hangs under its Work in Karmada's API server, and
that Work under its ResourceBinding (or ClusterResourceBinding); pre-1.10 label keys; half-named and
malformed links; unrelated objects and Works of other controllers; host resolution and aliases.
"""

from __future__ import annotations

from typing import Any

import pytest

from kelemetry.linker.links import Clusters, Refusal
from kelemetry.linker.systems.karmada import KarmadaLinker
from kelemetry.model.objects import ObjectKey, ObjectRef
from tests.kelemetry.linker.bodies import DEPLOYMENT_SPEC, body, ref

FLEET = Clusters(frozenset({"karmada-apiserver", "member1", "member2"}))
MEMBER_DEPLOY = ref("member1", "apps", "deployments", "default", "nginx", kind="Deployment")
WORK_KEY = ObjectKey(
    "karmada-apiserver", "work.karmada.io", "works", "karmada-es-member1", "nginx-687f7fb96f"
)


def member_body(
    obj: ObjectRef = MEMBER_DEPLOY,
    *,
    work_namespace: str | None = "karmada-es-member1",
    work_name: str | None = "nginx-687f7fb96f",
    as_labels: bool = False,
) -> dict[str, Any]:
    # CreateOrUpdateWork (managed label, template uid, work name/namespace) on top of ensureWork's
    # mergeLabel/mergeAnnotations and the policy claim (AddPPClaimMetadata).
    labels = {
        "app": "nginx",
        "karmada.io/managed": "true",
        "propagationpolicy.karmada.io/permanent-id": "8bb3a0d4-0d2e-4fd6-a0b1-3c9b11ad5a71",
        "resourcebinding.karmada.io/permanent-id": "4a1f8d6e-6c86-4f3a-9b0c-2f1d5e0b7c11",
        "work.karmada.io/permanent-id": "c2b9f3e4-77d5-4b8e-9f0e-5b0f1a2c3d44",
    }
    annotations = {
        "propagationpolicy.karmada.io/name": "nginx-propagation",
        "propagationpolicy.karmada.io/namespace": "default",
        "resourcebinding.karmada.io/name": "nginx-deployment",
        "resourcebinding.karmada.io/namespace": "default",
        "resourcetemplate.karmada.io/generation": "1",
        "resourcetemplate.karmada.io/managed-annotations": "propagationpolicy.karmada.io/name,...",
        "resourcetemplate.karmada.io/managed-labels": "app,karmada.io/managed,...",
        "resourcetemplate.karmada.io/uid": "2f0a7a39-5f87-4c8e-8f36-1b8b8f4f0a9e",
    }
    work = {"work.karmada.io/namespace": work_namespace, "work.karmada.io/name": work_name}
    target = labels if as_labels else annotations
    target.update({k: v for k, v in work.items() if v is not None})
    return body(obj, labels=labels, annotations=annotations, spec=DEPLOYMENT_SPEC)


def work_ref(key: ObjectKey = WORK_KEY) -> ObjectRef:
    return ObjectRef(key, "w1", "Work", "v1alpha1")


def work_body(annotations: dict[str, str]) -> dict[str, Any]:
    return body(
        work_ref(),
        labels={"resourcebinding.karmada.io/permanent-id": "4a1f8d6e-6c86-4f3a-9b0c-2f1d5e0b7c11"},
        annotations=annotations,
        spec={"workload": {"manifests": [{"apiVersion": "apps/v1", "kind": "Deployment"}]}},
    )


def test_member_deployment_hangs_under_its_work_in_karmada() -> None:
    found = KarmadaLinker().parent(MEMBER_DEPLOY, member_body(), FLEET)
    assert found == ObjectRef(WORK_KEY, "", "Work", "v1alpha1")


def test_the_work_hangs_under_its_resource_binding_in_its_own_cluster() -> None:
    annotations = {
        "resourcebinding.karmada.io/name": "nginx-deployment",
        "resourcebinding.karmada.io/namespace": "default",
    }
    found = KarmadaLinker().parent(work_ref(), work_body(annotations), FLEET)
    assert found == ObjectRef(
        ObjectKey("karmada-apiserver", "work.karmada.io", "resourcebindings", "default", "nginx-deployment"),
        "",
        "ResourceBinding",
        "v1alpha2",
    )


def test_a_cluster_scoped_work_hangs_under_its_cluster_resource_binding() -> None:
    found = KarmadaLinker().parent(
        work_ref(), work_body({"clusterresourcebinding.karmada.io/name": "pod-reader-clusterrole"}), FLEET
    )
    assert isinstance(found, ObjectRef)
    assert found.key == ObjectKey(
        "karmada-apiserver", "work.karmada.io", "clusterresourcebindings", "", "pod-reader-clusterrole"
    )
    assert found.kind == "ClusterResourceBinding"


def test_the_chain_from_member_to_binding_meets_at_the_work() -> None:
    linker = KarmadaLinker()
    work = linker.parent(MEMBER_DEPLOY, member_body(), FLEET)
    assert isinstance(work, ObjectRef)
    binding = linker.parent(
        work,
        work_body(
            {
                "resourcebinding.karmada.io/name": "nginx-deployment",
                "resourcebinding.karmada.io/namespace": "default",
            }
        ),
        FLEET,
    )
    assert isinstance(binding, ObjectRef)
    assert binding.key.cluster == work.key.cluster == "karmada-apiserver"


def test_pre_1_10_work_labels_are_read() -> None:
    found = KarmadaLinker().parent(MEMBER_DEPLOY, member_body(as_labels=True), FLEET)
    assert isinstance(found, ObjectRef)
    assert found.key == WORK_KEY


def test_host_alias_maps_karmadas_control_plane_to_ours() -> None:
    clusters = Clusters(frozenset({"fed", "member1"}), {"karmada-apiserver": "fed"})
    found = KarmadaLinker().parent(MEMBER_DEPLOY, member_body(), clusters)
    assert isinstance(found, ObjectRef)
    assert found.key == WORK_KEY._replace(cluster="fed")


def test_configured_host() -> None:
    clusters = Clusters(frozenset({"fed", "karmada-apiserver", "member1"}))
    found = KarmadaLinker("fed").parent(MEMBER_DEPLOY, member_body(), clusters)
    assert isinstance(found, ObjectRef)
    assert found.key.cluster == "fed"


def test_unknown_host_is_refused() -> None:
    found = KarmadaLinker().parent(MEMBER_DEPLOY, member_body(), Clusters(frozenset({"member1", "member2"})))
    assert isinstance(found, Refusal)
    assert "karmada-apiserver" in found.reason


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        pytest.param("karmada-es-member1", None, id="no-name"),
        pytest.param(None, "nginx-687f7fb96f", id="no-namespace"),
        pytest.param("", "nginx-687f7fb96f", id="empty-namespace"),
        pytest.param("default", "nginx-687f7fb96f", id="not-an-execution-space"),
        pytest.param("karmada-es-", "nginx-687f7fb96f", id="execution-space-of-no-cluster"),
    ],
)
def test_malformed_work_reference_is_refused(namespace: str | None, name: str | None) -> None:
    found = KarmadaLinker().parent(
        MEMBER_DEPLOY, member_body(work_namespace=namespace, work_name=name), FLEET
    )
    assert isinstance(found, Refusal)
    assert found.linker == "karmada"


@pytest.mark.parametrize(
    "annotations",
    [
        pytest.param({"resourcebinding.karmada.io/name": "nginx-deployment"}, id="binding-without-namespace"),
        pytest.param({"resourcebinding.karmada.io/namespace": "default"}, id="binding-without-name"),
        pytest.param({"clusterresourcebinding.karmada.io/name": ""}, id="empty-cluster-binding"),
    ],
)
def test_malformed_binding_reference_is_refused(annotations: dict[str, str]) -> None:
    assert isinstance(KarmadaLinker().parent(work_ref(), work_body(annotations), FLEET), Refusal)


def test_unrelated_objects_and_other_controllers_works_are_not_linked() -> None:
    linker = KarmadaLinker()
    plain = body(MEMBER_DEPLOY, labels={"app": "nginx"}, spec=DEPLOYMENT_SPEC)
    assert linker.parent(MEMBER_DEPLOY, plain, FLEET) is None
    # The namespace-sync controller's Works name no binding.
    assert linker.parent(work_ref(), work_body({}), FLEET) is None
    # The template in Karmada's API server carries the policy claim, not a Work.
    template = ref("karmada-apiserver", "apps", "deployments", "default", "nginx", kind="Deployment")
    claimed = body(
        template,
        labels={"propagationpolicy.karmada.io/permanent-id": "8bb3a0d4-0d2e-4fd6-a0b1-3c9b11ad5a71"},
        annotations={"propagationpolicy.karmada.io/name": "nginx-propagation"},
    )
    assert linker.parent(template, claimed, FLEET) is None
