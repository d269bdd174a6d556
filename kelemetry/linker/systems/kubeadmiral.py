"""KubeAdmiral: a member cluster's object under the host object it was propagated from.

What KubeAdmiral (v1.0) writes, learned from its source:

- The federate controller makes a ``FederatedObject`` (``ClusterFederatedObject`` when cluster-scoped,
  group ``core.kubeadmiral.io``) for each source object in the host, with a controller
  ownerReference to the source; its ``spec.template`` is the source itself with uid, resourceVersion,
  ownerReferences, finalizers and status cleared — name, namespace, apiVersion and kind kept
  (``pkg/controllers/federate/util.go``: ``newFederatedObjectForSourceObject``,
  ``TemplateForSourceObject``). The owner graph already hangs it under the source.
- The sync controller writes that template into each selected member cluster under the same name and
  namespace (``pkg/controllers/sync/accessor.go``: ``targetName`` is the template's name;
  ``pkg/util/naming/naming.go``: ``NamespaceForCluster`` returns the namespace unchanged) and always
  adds the label ``kubeadmiral.io/managed: "true"`` (``pkg/controllers/sync/resource.go``:
  ``ApplyOverrides``; ``pkg/util/managedlabel/managedlabel.go``), plus bookkeeping annotations
  (``kubeadmiral.io/source-generation``, ``kubeadmiral.io/propagated-label-keys``... in
  ``pkg/controllers/common/constants.go``). ``"false"`` is the value for objects KubeAdmiral must
  leave alone.

So a member object with the label is the copy of the host object with its own group, resource,
namespace and name; that source object is the parent, and the trace reads host Deployment →
{FederatedObject, member Deployment → ReplicaSet → Pod}. The member object does not name the
FederatedObject (its name depends on the FederatedTypeConfig's name, which the member does not carry)
nor the host cluster, which `kelemetry.linker.systems.hosts` resolves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kelemetry.linker.links import Clusters, Marks, Refusal
from kelemetry.linker.systems import metadata, parents
from kelemetry.linker.systems.hosts import HostCluster
from kelemetry.model.objects import ObjectKey, ObjectRef

MANAGED_LABEL = "kubeadmiral.io/managed"
MANAGED = "true"
UNMANAGED = "false"
CONVENTIONAL_HOSTS = ("kubeadmiral-host",)
"""``hack/make-rules/dev-up.sh`` names KubeAdmiral's host cluster ``kubeadmiral-host``."""


class KubeAdmiralLinker:
    name = "kubeadmiral"
    marks = Marks(labels=frozenset({MANAGED_LABEL}))

    def __init__(self, host: str | None = None) -> None:
        self.host = HostCluster(self.name, CONVENTIONAL_HOSTS, host)

    def parent(
        self, obj: ObjectRef, body: Mapping[str, Any], clusters: Clusters
    ) -> ObjectRef | Refusal | None:
        managed = metadata.label(body, MANAGED_LABEL)
        if managed is None or managed == UNMANAGED:
            return None
        if managed != MANAGED:
            return Refusal(self.name, f"{MANAGED_LABEL} is {managed!r}, neither 'true' nor 'false'")
        host = self.host.resolve(clusters)
        if isinstance(host, Refusal):
            return host
        if host == obj.key.cluster:
            # The host's own copy is the source object itself: nothing above it.
            return None
        key = ObjectKey.make(host, obj.key.group, obj.key.resource, obj.key.namespace, obj.key.name)
        return parents.parent(self.name, obj, key, kind=obj.kind, version=obj.version)
