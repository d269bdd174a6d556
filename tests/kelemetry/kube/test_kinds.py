"""Kind → resource resolution (kelemetry.kube.kinds) and folding discovery documents into a kind
table (kelemetry.kube.discovery.parse_resource_lists).

Covers the pluraliser, legacy group folding, apiVersion splitting, KindResolver precedence
(discovered, then built-in, then fallback), later discovery updates and the reverse kind lookup.
"""

from __future__ import annotations

from typing import Any

import pytest

from kelemetry.kube.discovery import parse_resource_lists
from kelemetry.kube.kinds import (
    BUILTIN,
    KindResolver,
    ResourceInfo,
    canonical_group,
    pluralize,
    split_api_version,
)

# ---------------------------------------------------------------------------------------------
# pluralize


@pytest.mark.parametrize(
    ("kind", "resource"),
    [
        pytest.param("Pod", "pods", id="Pod"),
        pytest.param("Deployment", "deployments", id="Deployment"),
        pytest.param("Ingress", "ingresses", id="Ingress"),
        pytest.param("NetworkPolicy", "networkpolicies", id="NetworkPolicy"),
        pytest.param("Policy", "policies", id="Policy"),
        pytest.param("ComponentStatus", "componentstatuses", id="ComponentStatus"),
        pytest.param("IPAddress", "ipaddresses", id="IPAddress"),
        pytest.param("CSIStorageCapacity", "csistoragecapacities", id="CSIStorageCapacity"),
        pytest.param("Gateway", "gateways", id="vowel-then-y"),
        pytest.param("HTTPRoute", "httproutes", id="HTTPRoute"),
        pytest.param("Mailbox", "mailboxes", id="x"),
        pytest.param("Patch", "patches", id="ch"),
        pytest.param("Mesh", "meshes", id="sh"),
        pytest.param("Endpoints", "endpoints", id="Endpoints"),
        pytest.param("", "", id="empty"),
    ],
)
def test_pluralize(kind: str, resource: str) -> None:
    assert pluralize(kind) == resource


@pytest.mark.parametrize(
    ("group", "kind", "info"),
    [
        pytest.param(group, kind, info, id=f"{group or 'core'}/{kind}")
        for (group, kind), info in BUILTIN.items()
    ],
)
def test_fallback_agrees_with_every_builtin_kind(group: str, kind: str, info: ResourceInfo) -> None:
    # A kind missing from the table (an older or newer API) is guessed; the guess must follow the same
    # rules the standard kinds were named by.
    assert pluralize(kind) == info.resource


# ---------------------------------------------------------------------------------------------
# canonical_group and split_api_version


@pytest.mark.parametrize(
    ("group", "resource", "canonical"),
    [
        pytest.param("extensions", "deployments", "apps", id="deployments"),
        pytest.param("extensions", "replicasets", "apps", id="replicasets"),
        pytest.param("extensions", "daemonsets", "apps", id="daemonsets"),
        pytest.param("extensions", "ingresses", "networking.k8s.io", id="ingresses"),
        pytest.param("extensions", "networkpolicies", "networking.k8s.io", id="networkpolicies"),
        pytest.param("extensions", "podsecuritypolicies", "policy", id="podsecuritypolicies"),
        pytest.param("extensions", "thirdpartyresources", "extensions", id="extensions-other"),
        pytest.param("apps", "deployments", "apps", id="apps"),
        pytest.param("", "pods", "", id="core"),
        pytest.param("example.com", "deployments", "example.com", id="custom-group-same-resource"),
    ],
)
def test_canonical_group(group: str, resource: str, canonical: str) -> None:
    assert canonical_group(group, resource) == canonical


@pytest.mark.parametrize(
    ("api_version", "parts"),
    [
        pytest.param("apps/v1", ("apps", "v1"), id="apps"),
        pytest.param("v1", ("", "v1"), id="core"),
        pytest.param(
            "rbac.authorization.k8s.io/v1beta1", ("rbac.authorization.k8s.io", "v1beta1"), id="rbac"
        ),
        pytest.param("example.com/v1alpha1", ("example.com", "v1alpha1"), id="custom"),
        pytest.param("", ("", ""), id="empty"),
    ],
)
def test_split_api_version(api_version: str, parts: tuple[str, str]) -> None:
    assert split_api_version(api_version) == parts


# ---------------------------------------------------------------------------------------------
# KindResolver


def test_builtin_kinds_resolve_with_their_scope() -> None:
    resolver = KindResolver()
    assert resolver.resolve("apps", "ReplicaSet") == ResourceInfo("replicasets", True)
    assert resolver.resolve("", "Node") == ResourceInfo("nodes", False)
    assert resolver.resolve("", "Endpoints") == ResourceInfo("endpoints", True)
    assert resolver.resolve("rbac.authorization.k8s.io", "ClusterRole") == ResourceInfo("clusterroles", False)


def test_builtin_wins_over_the_fallback() -> None:
    # The fallback's plural would be right, but it assumes every kind is namespaced.
    resolver = KindResolver()
    assert resolver.resolve("", "Namespace") == ResourceInfo("namespaces", False)
    assert resolver.resolve("storage.k8s.io", "StorageClass") == ResourceInfo("storageclasses", False)


def test_discovered_wins_over_builtin() -> None:
    discovered = {
        ("", "Node"): ResourceInfo("nodes", True),
        ("apps", "Deployment"): ResourceInfo("deploys", True),
    }
    resolver = KindResolver(discovered)
    assert resolver.resolve("", "Node") == ResourceInfo("nodes", True)
    assert resolver.resolve("apps", "Deployment") == ResourceInfo("deploys", True)
    assert resolver.resolve("apps", "ReplicaSet") == ResourceInfo("replicasets", True)


def test_discovered_wins_over_the_fallback() -> None:
    resolver = KindResolver({("example.com", "Gadget"): ResourceInfo("gadgetries", False)})
    assert resolver.resolve("example.com", "Gadget") == ResourceInfo("gadgetries", False)
    assert KindResolver().resolve("example.com", "Gadget") == ResourceInfo("gadgets", True)


def test_unknown_kind_falls_back_to_a_namespaced_plural() -> None:
    resolver = KindResolver()
    assert resolver.resolve("example.com", "WidgetPolicy") == ResourceInfo("widgetpolicies", True)
    assert resolver.resolve("example.com", "Pod") == ResourceInfo("pods", True)


@pytest.mark.parametrize(
    ("kind", "info"),
    [
        pytest.param("Deployment", ResourceInfo("deployments", True), id="Deployment"),
        pytest.param("ReplicaSet", ResourceInfo("replicasets", True), id="ReplicaSet"),
        pytest.param("DaemonSet", ResourceInfo("daemonsets", True), id="DaemonSet"),
        pytest.param("Ingress", ResourceInfo("ingresses", True), id="Ingress"),
        pytest.param("NetworkPolicy", ResourceInfo("networkpolicies", True), id="NetworkPolicy"),
    ],
)
def test_extensions_kinds_resolve_through_their_successor_groups(kind: str, info: ResourceInfo) -> None:
    assert KindResolver().resolve("extensions", kind) == info


def test_update_takes_in_later_discovery() -> None:
    resolver = KindResolver()
    assert resolver.kind_of("example.com", "gadgetries") == ""
    resolver.update({("example.com", "Gadget"): ResourceInfo("gadgetries", False)})
    assert resolver.resolve("example.com", "Gadget") == ResourceInfo("gadgetries", False)
    assert resolver.kind_of("example.com", "gadgetries") == "Gadget"
    resolver.update({("example.com", "Gadget"): ResourceInfo("gadgets2", True)})
    assert resolver.resolve("example.com", "Gadget") == ResourceInfo("gadgets2", True)


def test_discovered_table_is_copied() -> None:
    discovered = {("example.com", "Gadget"): ResourceInfo("gadgetries", False)}
    resolver = KindResolver(discovered)
    discovered[("example.com", "Gadget")] = ResourceInfo("other", True)
    assert resolver.resolve("example.com", "Gadget") == ResourceInfo("gadgetries", False)


@pytest.mark.parametrize(
    ("group", "resource", "kind"),
    [
        pytest.param("", "pods", "Pod", id="pods"),
        pytest.param("apps", "deployments", "Deployment", id="deployments"),
        pytest.param("", "events", "Event", id="core-events"),
        pytest.param("events.k8s.io", "events", "Event", id="events-k8s-io"),
        pytest.param("", "endpoints", "Endpoints", id="endpoints"),
        pytest.param("rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding", id="crb"),
        pytest.param("apps", "pods", "", id="wrong-group"),
        pytest.param("example.com", "widgets", "", id="unknown"),
    ],
)
def test_kind_of_builtin(group: str, resource: str, kind: str) -> None:
    assert KindResolver().kind_of(group, resource) == kind


def test_kind_of_covers_every_builtin_entry() -> None:
    resolver = KindResolver()
    for (group, kind), info in BUILTIN.items():
        assert resolver.kind_of(group, info.resource) == kind


def test_kind_of_discovered_resource() -> None:
    resolver = KindResolver({("example.com", "Gadget"): ResourceInfo("gadgetries", False)})
    assert resolver.kind_of("example.com", "gadgetries") == "Gadget"


# ---------------------------------------------------------------------------------------------
# parse_resource_lists (APIResourceList documents as kube-apiserver serves them)


def _resource(name: str, kind: str, namespaced: bool, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": name,
        "singularName": "",
        "namespaced": namespaced,
        "kind": kind,
        "verbs": ["get"] if "/" in name else ["create", "delete", "get", "list", "patch", "update", "watch"],
    }
    if "/" not in name:
        item["storageVersionHash"] = "abcdEFGH123="
    item.update(extra)
    return item


CORE_V1: dict[str, Any] = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        _resource("bindings", "Binding", True),
        _resource("componentstatuses", "ComponentStatus", False, shortNames=["cs"]),
        _resource("endpoints", "Endpoints", True, shortNames=["ep"]),
        _resource("events", "Event", True, shortNames=["ev"]),
        _resource("namespaces", "Namespace", False, shortNames=["ns"]),
        _resource("namespaces/finalize", "Namespace", False),
        _resource("namespaces/status", "Namespace", False),
        _resource("nodes", "Node", False, shortNames=["no"]),
        _resource("nodes/proxy", "NodeProxyOptions", False),
        _resource("pods", "Pod", True, shortNames=["po"], categories=["all"]),
        _resource("pods/attach", "PodAttachOptions", True),
        _resource("pods/binding", "Binding", True),
        _resource("pods/eviction", "Eviction", True, group="policy", version="v1"),
        _resource("pods/exec", "PodExecOptions", True),
        _resource("pods/log", "Pod", True),
        _resource("pods/status", "Pod", True),
        _resource("serviceaccounts", "ServiceAccount", True, shortNames=["sa"]),
        _resource("serviceaccounts/token", "TokenRequest", True, group="authentication.k8s.io", version="v1"),
    ],
}

APPS_V1: dict[str, Any] = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "apps/v1",
    "resources": [
        _resource("controllerrevisions", "ControllerRevision", True),
        _resource("deployments", "Deployment", True, shortNames=["deploy"], categories=["all"]),
        _resource("deployments/scale", "Scale", True, group="autoscaling", version="v1"),
        _resource("deployments/status", "Deployment", True),
        _resource("replicasets", "ReplicaSet", True, shortNames=["rs"]),
        _resource("replicasets/scale", "Scale", True, group="autoscaling", version="v1"),
    ],
}

# Discovery lists a group's preferred version first.
AUTOSCALING_V2: dict[str, Any] = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "autoscaling/v2",
    "resources": [
        _resource("horizontalpodautoscalers", "HorizontalPodAutoscaler", True, shortNames=["hpa"]),
        _resource("horizontalpodautoscalers/status", "HorizontalPodAutoscaler", True),
    ],
}
AUTOSCALING_V1: dict[str, Any] = {**AUTOSCALING_V2, "groupVersion": "autoscaling/v1"}

CRD_GROUP: dict[str, Any] = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "example.com/v1",
    "resources": [
        _resource("gadgetries", "Gadget", False),
        _resource("widgetsets", "WidgetSet", True),
        _resource("widgetsets/status", "WidgetSet", True),
        _resource("widgetsets/scale", "Scale", True, group="autoscaling", version="v1"),
    ],
}


def test_resource_lists_fold_into_a_kind_table() -> None:
    table = parse_resource_lists([CORE_V1, APPS_V1, AUTOSCALING_V2, AUTOSCALING_V1, CRD_GROUP])
    assert table == {
        ("", "Binding"): ResourceInfo("bindings", True),
        ("", "ComponentStatus"): ResourceInfo("componentstatuses", False),
        ("", "Endpoints"): ResourceInfo("endpoints", True),
        ("", "Event"): ResourceInfo("events", True),
        ("", "Namespace"): ResourceInfo("namespaces", False, status=True),
        ("", "Node"): ResourceInfo("nodes", False),
        ("", "Pod"): ResourceInfo("pods", True, status=True),
        ("", "ServiceAccount"): ResourceInfo("serviceaccounts", True),
        ("apps", "ControllerRevision"): ResourceInfo("controllerrevisions", True),
        ("apps", "Deployment"): ResourceInfo("deployments", True, status=True),
        # This list names no replicasets/status.
        ("apps", "ReplicaSet"): ResourceInfo("replicasets", True),
        ("autoscaling", "HorizontalPodAutoscaler"): ResourceInfo(
            "horizontalpodautoscalers", True, status=True
        ),
        ("example.com", "Gadget"): ResourceInfo("gadgetries", False),
        ("example.com", "WidgetSet"): ResourceInfo("widgetsets", True, status=True),
    }


def test_subresource_kinds_never_enter_the_table() -> None:
    table = parse_resource_lists([CORE_V1, APPS_V1, CRD_GROUP])
    kinds = {kind for _, kind in table}
    assert not kinds & {"Scale", "Eviction", "TokenRequest", "PodExecOptions", "PodAttachOptions"}
    assert not kinds & {"NodeProxyOptions"}
    assert all("/" not in info.resource for info in table.values())


def test_first_listed_version_wins() -> None:
    renamed = {
        **AUTOSCALING_V1,
        "resources": [_resource("hpas", "HorizontalPodAutoscaler", False)],
    }
    table = parse_resource_lists([AUTOSCALING_V2, renamed])
    assert table[("autoscaling", "HorizontalPodAutoscaler")] == ResourceInfo(
        "horizontalpodautoscalers", True, status=True
    )


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(
            {"kind": "APIResourceList", "groupVersion": "example.com/v1", "resources": []}, id="empty"
        ),
        pytest.param({"kind": "APIResourceList", "groupVersion": "example.com/v1"}, id="no-resources"),
        pytest.param(
            {"kind": "APIResourceList", "groupVersion": "example.com/v1", "resources": None},
            id="null-resources",
        ),
        pytest.param(
            {
                "kind": "APIResourceList",
                "groupVersion": "example.com/v1",
                "resources": [{"name": "things", "namespaced": True}, {"kind": "Thing", "namespaced": True}],
            },
            id="items-without-name-or-kind",
        ),
    ],
)
def test_lists_without_usable_resources_add_nothing(document: dict[str, Any]) -> None:
    assert parse_resource_lists([document]) == {}


def test_missing_namespaced_means_cluster_scoped() -> None:
    document = {"groupVersion": "example.com/v1", "resources": [{"name": "things", "kind": "Thing"}]}
    assert parse_resource_lists([document]) == {("example.com", "Thing"): ResourceInfo("things", False)}


def test_parsed_table_feeds_the_resolver() -> None:
    resolver = KindResolver(parse_resource_lists([CORE_V1, APPS_V1, CRD_GROUP]))
    assert resolver.resolve("example.com", "Gadget") == ResourceInfo("gadgetries", False)
    assert resolver.resolve("example.com", "WidgetSet") == ResourceInfo("widgetsets", True, status=True)
    assert resolver.kind_of("example.com", "widgetsets") == "WidgetSet"
    assert resolver.resolve("apps", "Deployment") == ResourceInfo("deployments", True, status=True)
    assert resolver.resolve("batch", "Job") == ResourceInfo("jobs", True)


def test_the_resolver_knows_scope_and_status_of_discovered_and_built_in_resources() -> None:
    resolver = KindResolver(parse_resource_lists([CORE_V1, CRD_GROUP]))
    assert resolver.namespaced("", "namespaces") is False
    assert resolver.namespaced("example.com", "widgetsets") is True
    assert resolver.namespaced("example.com", "gadgetries") is False
    assert resolver.namespaced("apps", "deployments") is True  # built in, not in these lists
    assert resolver.namespaced("example.com", "unlisted") is None
    assert resolver.has_status("example.com", "widgetsets") and resolver.has_status("apps", "deployments")
    assert not resolver.has_status("example.com", "gadgetries")
    # A custom resource discovery did not cover learns it from a write to its status.
    assert not resolver.has_status("example.com", "unlisted")
    resolver.note_status("example.com", "unlisted")
    assert resolver.has_status("example.com", "unlisted")
