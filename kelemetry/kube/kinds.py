"""Kind → resource resolution for owner references.

ownerReferences name their owner by apiVersion + kind, but we key objects by resource. Resolution
order: what API discovery reported for the connected cluster (if any), then the built-in table of
standard kinds below, then a fallback that lower-cases the kind and pluralises it the way
Kubernetes' own default REST mapper does ("Ingress" → "ingresses", "Policy" → "policies"). A
fallback-resolved owner is assumed to live in its dependent's namespace, which is what the
garbage collector assumes too for namespaced dependents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kelemetry.kube.names import ResourceName


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    resource: str
    namespaced: bool
    status: bool = False
    """Whether the resource has a ``status`` subresource: then writes to the object itself cannot
    change its status, and writes to ``/status`` cannot change anything else."""
    short_names: tuple[str, ...] = field(default=(), compare=False)
    """What kubectl also accepts for the resource (``deploy``), as discovery reports them."""


def _table(group: str, namespaced: bool, *pairs: tuple[str, str]) -> dict[tuple[str, str], ResourceInfo]:
    return {(group, kind): ResourceInfo(resource, namespaced) for kind, resource in pairs}


BUILTIN: dict[tuple[str, str], ResourceInfo] = {
    **_table(
        "",
        True,
        ("Pod", "pods"),
        ("Service", "services"),
        ("ConfigMap", "configmaps"),
        ("Secret", "secrets"),
        ("ServiceAccount", "serviceaccounts"),
        ("Endpoints", "endpoints"),
        ("PersistentVolumeClaim", "persistentvolumeclaims"),
        ("ReplicationController", "replicationcontrollers"),
        ("LimitRange", "limitranges"),
        ("ResourceQuota", "resourcequotas"),
        ("PodTemplate", "podtemplates"),
        ("Event", "events"),
        ("Binding", "bindings"),
    ),
    **_table(
        "",
        False,
        ("Node", "nodes"),
        ("Namespace", "namespaces"),
        ("PersistentVolume", "persistentvolumes"),
        ("ComponentStatus", "componentstatuses"),
    ),
    **_table(
        "apps",
        True,
        ("Deployment", "deployments"),
        ("ReplicaSet", "replicasets"),
        ("StatefulSet", "statefulsets"),
        ("DaemonSet", "daemonsets"),
        ("ControllerRevision", "controllerrevisions"),
    ),
    **_table("batch", True, ("Job", "jobs"), ("CronJob", "cronjobs")),
    **_table("autoscaling", True, ("HorizontalPodAutoscaler", "horizontalpodautoscalers")),
    **_table("policy", True, ("PodDisruptionBudget", "poddisruptionbudgets")),
    **_table("networking.k8s.io", True, ("Ingress", "ingresses"), ("NetworkPolicy", "networkpolicies")),
    **_table("networking.k8s.io", False, ("IngressClass", "ingressclasses"), ("IPAddress", "ipaddresses")),
    **_table("discovery.k8s.io", True, ("EndpointSlice", "endpointslices")),
    **_table("coordination.k8s.io", True, ("Lease", "leases")),
    **_table("events.k8s.io", True, ("Event", "events")),
    **_table("rbac.authorization.k8s.io", True, ("Role", "roles"), ("RoleBinding", "rolebindings")),
    **_table(
        "rbac.authorization.k8s.io",
        False,
        ("ClusterRole", "clusterroles"),
        ("ClusterRoleBinding", "clusterrolebindings"),
    ),
    **_table("storage.k8s.io", True, ("CSIStorageCapacity", "csistoragecapacities")),
    **_table(
        "storage.k8s.io",
        False,
        ("StorageClass", "storageclasses"),
        ("VolumeAttachment", "volumeattachments"),
        ("CSIDriver", "csidrivers"),
        ("CSINode", "csinodes"),
    ),
    **_table("apiextensions.k8s.io", False, ("CustomResourceDefinition", "customresourcedefinitions")),
    **_table(
        "admissionregistration.k8s.io",
        False,
        ("ValidatingWebhookConfiguration", "validatingwebhookconfigurations"),
        ("MutatingWebhookConfiguration", "mutatingwebhookconfigurations"),
        ("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
        ("ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings"),
    ),
    **_table("apiregistration.k8s.io", False, ("APIService", "apiservices")),
    **_table("scheduling.k8s.io", False, ("PriorityClass", "priorityclasses")),
    **_table("node.k8s.io", False, ("RuntimeClass", "runtimeclasses")),
    **_table("certificates.k8s.io", False, ("CertificateSigningRequest", "certificatesigningrequests")),
    **_table(
        "flowcontrol.apiserver.k8s.io",
        False,
        ("FlowSchema", "flowschemas"),
        ("PriorityLevelConfiguration", "prioritylevelconfigurations"),
    ),
    **_table("resource.k8s.io", True, ("ResourceClaim", "resourceclaims")),
    **_table("resource.k8s.io", True, ("ResourceClaimTemplate", "resourceclaimtemplates")),
    **_table("resource.k8s.io", False, ("DeviceClass", "deviceclasses"), ("ResourceSlice", "resourceslices")),
}

# Built-in resources with a status subresource (discovery says so for a connected cluster's own).
STATUS_SUBRESOURCES: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "pods"),
        ("", "services"),
        ("", "nodes"),
        ("", "namespaces"),
        ("", "persistentvolumes"),
        ("", "persistentvolumeclaims"),
        ("", "replicationcontrollers"),
        ("", "resourcequotas"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("policy", "poddisruptionbudgets"),
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "servicecidrs"),
        ("certificates.k8s.io", "certificatesigningrequests"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("apiregistration.k8s.io", "apiservices"),
        ("flowcontrol.apiserver.k8s.io", "flowschemas"),
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations"),
        ("storage.k8s.io", "volumeattachments"),
        ("admissionregistration.k8s.io", "validatingadmissionpolicies"),
        ("resource.k8s.io", "resourceclaims"),
    }
)

# kubectl's short names of the built-in resources (discovery reports them for a connected cluster).
SHORT_NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("po",),
    ("", "services"): ("svc",),
    ("", "configmaps"): ("cm",),
    ("", "serviceaccounts"): ("sa",),
    ("", "endpoints"): ("ep",),
    ("", "persistentvolumeclaims"): ("pvc",),
    ("", "replicationcontrollers"): ("rc",),
    ("", "limitranges"): ("limits",),
    ("", "resourcequotas"): ("quota",),
    ("", "events"): ("ev",),
    ("", "nodes"): ("no",),
    ("", "namespaces"): ("ns",),
    ("", "persistentvolumes"): ("pv",),
    ("", "componentstatuses"): ("cs",),
    ("apps", "deployments"): ("deploy",),
    ("apps", "replicasets"): ("rs",),
    ("apps", "statefulsets"): ("sts",),
    ("apps", "daemonsets"): ("ds",),
    ("batch", "cronjobs"): ("cj",),
    ("autoscaling", "horizontalpodautoscalers"): ("hpa",),
    ("policy", "poddisruptionbudgets"): ("pdb",),
    ("networking.k8s.io", "ingresses"): ("ing",),
    ("networking.k8s.io", "networkpolicies"): ("netpol",),
    ("networking.k8s.io", "ipaddresses"): ("ip",),
    ("storage.k8s.io", "storageclasses"): ("sc",),
    ("apiextensions.k8s.io", "customresourcedefinitions"): ("crd", "crds"),
    ("scheduling.k8s.io", "priorityclasses"): ("pc",),
    ("certificates.k8s.io", "certificatesigningrequests"): ("csr",),
}

# Resources served under retired groups are the same objects as under their current group, so a
# Deployment created through extensions/v1beta1 and a ReplicaSet owned by apps/v1 Deployment meet.
_LEGACY_GROUPS: dict[tuple[str, str], str] = {
    ("extensions", "deployments"): "apps",
    ("extensions", "replicasets"): "apps",
    ("extensions", "daemonsets"): "apps",
    ("extensions", "ingresses"): "networking.k8s.io",
    ("extensions", "networkpolicies"): "networking.k8s.io",
    ("extensions", "podsecuritypolicies"): "policy",
}


def canonical_group(group: str, resource: str) -> str:
    """The group an object is keyed under, folding retired API groups into their successors."""
    if group == "extensions":
        return _LEGACY_GROUPS.get((group, resource), group)
    return group


def split_api_version(api_version: str) -> tuple[str, str]:
    """``"apps/v1"`` → ``("apps", "v1")``; ``"v1"`` → ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version


def pluralize(kind: str) -> str:
    """A resource name from a kind, close to Kubernetes' default REST mapper (which leaves
    "...endpoints" alone) but with ordinary English plurals where it is naive ("boxes")."""
    lower = kind.lower()
    if not lower or lower.endswith("endpoints"):
        return lower
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        return lower[:-1] + "ies"
    return lower + "s"


class KindResolver:
    """Maps (group, kind) to a resource; discovery results override the built-in table."""

    def __init__(self, discovered: Mapping[tuple[str, str], ResourceInfo] | None = None) -> None:
        self._discovered: dict[tuple[str, str], ResourceInfo] = {}
        self._kinds_of: dict[tuple[str, str], str] = {}
        self._by_resource: dict[tuple[str, str], ResourceInfo] = {}
        self._status: set[tuple[str, str]] = set(STATUS_SUBRESOURCES)
        self._take(BUILTIN)
        self.update(discovered or {})

    def _take(self, table: Mapping[tuple[str, str], ResourceInfo]) -> None:
        for (group, kind), info in table.items():
            self._kinds_of[(group, info.resource)] = kind
            self._by_resource[(group, info.resource)] = info
            if info.status:
                self._status.add((group, info.resource))

    def update(self, discovered: Mapping[tuple[str, str], ResourceInfo]) -> None:
        """Take in what discovery found later (the cluster was not reachable at start)."""
        self._discovered.update(discovered)
        self._take(discovered)

    def namespaced(self, group: str, resource: str) -> bool | None:
        """Whether objects of a resource live in namespaces; None when neither discovery nor the
        built-in table knows the resource."""
        info = self._by_resource.get((group, resource))
        return None if info is None else info.namespaced

    def has_status(self, group: str, resource: str) -> bool:
        return (group, resource) in self._status

    def note_status(self, group: str, resource: str) -> None:
        """A ``status`` subresource was written to, so the resource has one (custom resources
        without discovery learn it from the audit stream)."""
        self._status.add((group, resource))

    def resolve(self, group: str, kind: str) -> ResourceInfo:
        found = self._discovered.get((group, kind)) or BUILTIN.get((group, kind))
        if found is not None:
            return found
        if group == "extensions":
            for new_group in ("apps", "networking.k8s.io", "policy"):
                found = BUILTIN.get((new_group, kind))
                if found is not None:
                    return found
        return ResourceInfo(pluralize(kind), namespaced=True)

    def kind_of(self, group: str, resource: str) -> str:
        """Best-effort reverse lookup, used when an event's body does not say its kind."""
        return self._kinds_of.get((group, resource), "")

    def names(self) -> list[ResourceName]:
        """The resources discovery reported (with their short names), then the built-in ones, for
        reading a resource as a person typed it (``kelemetry.kube.names``)."""
        discovered = [
            ResourceName(group, info.resource, kind, info.short_names)
            for (group, kind), info in self._discovered.items()
        ]
        return [*discovered, *builtin_names()]


def builtin_names() -> list[ResourceName]:
    """The built-in table as resource names, with kubectl's short names."""
    return [
        ResourceName(group, info.resource, kind, SHORT_NAMES.get((group, info.resource), ()))
        for (group, kind), info in BUILTIN.items()
    ]
