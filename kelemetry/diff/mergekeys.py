"""Which field names an item of a Kubernetes list: the merge keys a diff matches list items by.

The table holds the strategic-merge keys (``patchMergeKey`` / ``listMapKey``) of the built-in types,
looked up by the list field's own name, since the same field name carries the same key wherever it
appears (``conditions`` in every status, ``env`` in every container). A few lists that the API marks
atomic are keyed too because their items are still unique by one field in practice (container
statuses, taints, readiness gates); `compute` checks uniqueness on every diff, so a list that breaks
the rule is simply diffed by position. Lists not in the table (custom resources mostly) are keyed by
``name``, under the same check.
"""

from __future__ import annotations

from kelemetry.model.diffs import Segment

GENERIC: tuple[str, ...] = ("name",)
"""The key tried for a list the table does not know."""

# Field name -> key fields tried in order; the first that names every item of both lists wins.
BY_FIELD: dict[str, tuple[str, ...]] = {
    # Every built-in condition list (Pod, Node, Deployment, Job, metav1.Condition, ...).
    "conditions": ("type",),
    # PodSpec and its containers.
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),  # also the mount statuses of a container status
    "volumeDevices": ("devicePath",),
    # Container ports are keyed by containerPort, Service and Endpoints ports by port; the item shape
    # tells which, as a container port has no `port` and a Service port no `containerPort`.
    "ports": ("containerPort", "port"),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "readinessGates": ("conditionType",),
    "resourceClaims": ("name",),
    "schedulingGates": ("name",),
    "topologySpreadConstraints": ("topologyKey",),
    "claims": ("name",),  # container resources.claims
    # PodStatus.
    "containerStatuses": ("name",),
    "initContainerStatuses": ("name",),
    "ephemeralContainerStatuses": ("name",),
    "resourceClaimStatuses": ("name",),
    "allocatedResourcesStatus": ("name",),
    "podIPs": ("ip",),
    "hostIPs": ("ip",),
    # Metadata, nodes and the rest.
    "ownerReferences": ("uid",),
    "taints": ("key",),
    "secrets": ("name",),  # ServiceAccount
    "webhooks": ("name",),  # Validating/MutatingWebhookConfiguration
    "matchConditions": ("name",),
    "variables": ("name",),
    "versions": ("name",),  # CustomResourceDefinition
    "drivers": ("name",),  # CSINode
    "reservedFor": ("uid",),  # ResourceClaim status
}

# (parent field, field) -> key fields, for names whose key depends on where the list sits: a Node's
# `status.addresses` is keyed by type, while Endpoints' `subsets[].addresses` is atomic and keyless.
BY_PARENT: dict[tuple[Segment | None, str], tuple[str, ...]] = {
    ("status", "addresses"): ("type",),
}


def key_fields(parent: Segment | None, field: Segment | None) -> tuple[str, ...]:
    """The candidate key fields of the list at ``field`` (the map key holding it; None for a list
    at the root or inside another list) whose own container sits at ``parent``."""
    if not isinstance(field, str):
        return GENERIC
    fields = BY_PARENT.get((parent, field)) if field in _PARENT_FIELDS else None
    if fields is not None:
        return fields
    return BY_FIELD.get(field, GENERIC)


_PARENT_FIELDS = frozenset(field for _, field in BY_PARENT)
