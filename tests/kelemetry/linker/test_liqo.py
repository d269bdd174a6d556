"""Liqo's linker (kelemetry.linker.systems.liqo) on objects shaped as Liqo v1.0 writes them: the remote
ShadowPod (the origin Pod's labels and annotations plus ``offloading.liqo.io/{origin,destination,
nodename}``) hangs under the origin Pod, across clusters; remote namespaces under each mapping
strategy; the other reflected kinds (ShadowEndpointSlice, Service, the renamed root CA ConfigMap,
service-account token Secrets); aliases and unknown origin clusters; unrelated objects.
"""

from __future__ import annotations

from typing import Any

import pytest

from kelemetry.linker.links import Clusters, Refusal
from kelemetry.linker.systems.liqo import LiqoLinker
from kelemetry.model.objects import ObjectKey, ObjectRef
from tests.kelemetry.linker.bodies import body, ref

FLEET = Clusters(frozenset({"milan", "rome"}))
POD = "web-6d4cf56db6-x7k2p"
SHADOW = ref(
    "rome", "offloading.liqo.io", "shadowpods", "default-milan", POD, kind="ShadowPod", version="v1beta1"
)

REFLECTION = {
    "offloading.liqo.io/origin": "milan",
    "offloading.liqo.io/destination": "rome",
}


def reflected(obj: ObjectRef, **extra: str) -> dict[str, Any]:
    # RemoteShadowPod: local labels minus liqo.io/shadowPod, plus the node name and ReflectionLabels;
    # the ShadowPod controller adds liqo.io/managed-by.
    labels = {
        "app": "web",
        "pod-template-hash": "6d4cf56db6",
        **REFLECTION,
        "offloading.liqo.io/nodename": "liqo-rome",
        "liqo.io/managed-by": "shadowpod",
        **extra,
    }
    return body(
        obj,
        labels=labels,
        annotations={"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"},
        spec={"pod": {"containers": [{"name": "web", "image": "nginx:1.27"}], "nodeName": ""}},
    )


def test_shadow_pod_hangs_under_the_origin_pod() -> None:
    found = LiqoLinker().parent(SHADOW, reflected(SHADOW), FLEET)
    assert found == ObjectRef(ObjectKey("milan", "", "pods", "default", POD), "", "Pod", "v1")


@pytest.mark.parametrize(
    ("remote_namespace", "origin_namespace"),
    [
        pytest.param("default-milan", "default", id="DefaultName"),
        pytest.param("default", "default", id="EnforceSameName"),
        pytest.param("team-a-milan-milan", "team-a-milan", id="suffix-removed-once"),
        pytest.param("-milan", "-milan", id="nothing-before-the-suffix"),
    ],
)
def test_origin_namespace(remote_namespace: str, origin_namespace: str) -> None:
    shadow = ref("rome", "offloading.liqo.io", "shadowpods", remote_namespace, POD)
    found = LiqoLinker().parent(shadow, reflected(shadow), FLEET)
    assert isinstance(found, ObjectRef)
    assert found.key.namespace == origin_namespace


def test_remote_pod_without_its_shadow_owner_still_names_the_origin_pod() -> None:
    pod = ref("rome", "", "pods", "default-milan", POD, kind="Pod")
    found = LiqoLinker().parent(pod, reflected(pod), FLEET)
    assert isinstance(found, ObjectRef)
    assert found.key == ObjectKey("milan", "", "pods", "default", POD)


@pytest.mark.parametrize(
    ("group", "resource", "name", "extra", "parent"),
    [
        pytest.param(
            "offloading.liqo.io",
            "shadowendpointslices",
            "web-abcde",
            {},
            ("discovery.k8s.io", "endpointslices", "web-abcde"),
            id="endpointslice",
        ),
        pytest.param("", "services", "web", {}, ("", "services", "web"), id="service"),
        pytest.param(
            "networking.k8s.io",
            "ingresses",
            "web",
            {},
            ("networking.k8s.io", "ingresses", "web"),
            id="ingress",
        ),
        pytest.param("", "configmaps", "settings", {}, ("", "configmaps", "settings"), id="configmap"),
        pytest.param(
            "",
            "configmaps",
            "kube-root-ca.crt.milan",
            {},
            ("", "configmaps", "kube-root-ca.crt"),
            id="root-ca",
        ),
        pytest.param("", "secrets", "db-password", {}, ("", "secrets", "db-password"), id="secret"),
        pytest.param(
            "",
            "secrets",
            "default-token-web",
            {
                "offloading.liqo.io/service-account-for-pod-name": POD,
                "offloading.liqo.io/service-account-name": "default",
            },
            ("", "pods", POD),
            id="service-account-tokens",
        ),
    ],
)
def test_other_reflected_kinds(
    group: str, resource: str, name: str, extra: dict[str, str], parent: tuple[str, str, str]
) -> None:
    obj = ref("rome", group, resource, "default-milan", name)
    found = LiqoLinker().parent(obj, reflected(obj, **extra), FLEET)
    assert isinstance(found, ObjectRef)
    assert found.key == ObjectKey("milan", parent[0], parent[1], "default", parent[2])


def test_origin_cluster_alias() -> None:
    clusters = Clusters(frozenset({"eu-milan", "eu-rome"}), {"milan": "eu-milan"})
    found = LiqoLinker().parent(SHADOW, reflected(SHADOW), clusters)
    assert isinstance(found, ObjectRef)
    assert found.key.cluster == "eu-milan"
    assert found.key.namespace == "default", "the suffix is Liqo's id of the origin, not our name for it"


def test_unknown_origin_cluster_is_refused() -> None:
    found = LiqoLinker().parent(SHADOW, reflected(SHADOW, **{"offloading.liqo.io/origin": "paris"}), FLEET)
    assert isinstance(found, Refusal)
    assert "paris" in found.reason


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"offloading.liqo.io/origin": ""}, id="empty-origin"),
        pytest.param({"offloading.liqo.io/service-account-for-pod-name": ""}, id="empty-pod-name"),
    ],
)
def test_malformed_labels_are_refused(extra: dict[str, str]) -> None:
    obj = SHADOW
    if "offloading.liqo.io/service-account-for-pod-name" in extra:
        obj = ref("rome", "", "secrets", "default-milan", "default-token-web")
    assert isinstance(LiqoLinker().parent(obj, reflected(obj, **extra), FLEET), Refusal)


def test_unrelated_objects_are_not_linked() -> None:
    linker = LiqoLinker()
    # The offloaded Pod in the origin cluster: it has its ReplicaSet; Liqo marks it liqo.io/shadowPod.
    local = ref("milan", "", "pods", "default", POD, kind="Pod")
    assert (
        linker.parent(local, body(local, labels={"app": "web", "liqo.io/shadowPod": "true"}), FLEET) is None
    )
    # A reflected kind this linker does not know the naming of.
    pvc = ref("rome", "", "persistentvolumeclaims", "default-milan", "data")
    assert linker.parent(pvc, reflected(pvc), FLEET) is None
    plain = ref("rome", "apps", "deployments", "default", "web")
    assert linker.parent(plain, body(plain, labels={"app": "web"}), FLEET) is None
