"""KubeFed: a member cluster's object under the ``Federated<Kind>`` of the host it was made from.

What KubeFed (v0.10) writes, learned from its source:

- Users create ``Federated<Kind>`` objects in the host; ``kubefedctl enable`` names their type
  ``Federated<Kind>`` with plural ``federated<plural>`` in the group ``types.kubefed.io``, version
  ``v1beta1`` (``pkg/kubefedctl/enable/enable.go``: ``GenerateTypeConfigForTarget``;
  ``pkg/kubefedctl/options/options.go``: ``DefaultFederatedGroup``, ``DefaultFederatedVersion``).
- The sync controller writes ``spec.template`` into each member under the federated object's name
  and namespace (``pkg/controller/sync/resource.go``: ``ObjectForCluster``;
  ``pkg/controller/util/naming.go``: the namespace is kept) and always adds the label
  ``kubefed.io/managed: "true"`` (``ApplyOverrides``; ``pkg/controller/util/managedlabel.go``,
  where ``"false"`` marks objects KubeFed must leave alone). Template annotations are dropped, so
  nothing else on the member object points back.
- A ``FederatedNamespace`` for namespace ``foo`` is ``foo/foo``: it lives in the namespace it
  federates (``pkg/controller/sync/accessor.go``).

So the trace reads FederatedDeployment → member Deployment → ReplicaSet → Pod. The host is not named
on member objects (`kelemetry.linker.systems.hosts`); the host may itself be a member, so a parent
in the object's own cluster is normal here. A ``--federated-group`` other than the default can be
given to the linker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kelemetry.linker.links import Clusters, Marks, Refusal
from kelemetry.linker.systems import metadata, parents
from kelemetry.linker.systems.hosts import HostCluster
from kelemetry.model.objects import ObjectKey, ObjectRef

MANAGED_LABEL = "kubefed.io/managed"
MANAGED = "true"
UNMANAGED = "false"
FEDERATED_GROUP = "types.kubefed.io"
FEDERATED_VERSION = "v1beta1"
CONVENTIONAL_HOSTS = ("kubefed-host",)
"""KubeFed's scripts use whatever context is current (``cluster1``); we give it a recognisable name."""


class KubeFedLinker:
    name = "kubefed"
    marks = Marks(labels=frozenset({MANAGED_LABEL}))

    def __init__(self, host: str | None = None, federated_group: str = FEDERATED_GROUP) -> None:
        self.host = HostCluster(self.name, CONVENTIONAL_HOSTS, host)
        self.federated_group = federated_group

    def parent(
        self, obj: ObjectRef, body: Mapping[str, Any], clusters: Clusters
    ) -> ObjectRef | Refusal | None:
        managed = metadata.label(body, MANAGED_LABEL)
        if managed is None or managed == UNMANAGED:
            return None
        if managed != MANAGED:
            return Refusal(self.name, f"{MANAGED_LABEL} is {managed!r}, neither 'true' nor 'false'")
        if obj.key.group == self.federated_group:
            return Refusal(self.name, f"a federated object ({obj.key.display}) carries {MANAGED_LABEL}")
        host = self.host.resolve(clusters)
        if isinstance(host, Refusal):
            return host
        namespace = obj.key.namespace
        if obj.key.group == "" and obj.key.resource == "namespaces":
            namespace = obj.key.name
        key = ObjectKey.make(
            host, self.federated_group, f"federated{obj.key.resource}", namespace, obj.key.name
        )
        kind = f"Federated{obj.kind}" if obj.kind else ""
        return parents.parent(self.name, obj, key, kind=kind, version=FEDERATED_VERSION)
