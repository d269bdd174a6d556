"""Karmada: member objects under their Work, and Works under their ResourceBinding.

What Karmada (v1.12) writes, learned from its source:

- The detector makes a ``ResourceBinding`` (``ClusterResourceBinding`` for cluster-scoped
  templates, group ``work.karmada.io``) beside the resource template, with a controller
  ownerReference to it (``pkg/detector/detector.go``: ``BuildResourceBinding``). The owner graph
  hangs it under the template.
- The binding controller makes one ``Work`` per target cluster in the execution namespace
  ``karmada-es-<cluster>`` (``pkg/util/names/names.go``: ``GenerateExecutionSpaceName``), with no
  ownerReference (it lives in another namespace than the binding) but with the annotations
  ``resourcebinding.karmada.io/namespace`` and ``resourcebinding.karmada.io/name``, or
  ``clusterresourcebinding.karmada.io/name`` (``pkg/controllers/binding/common.go``:
  ``ensureWork``, ``mergeAnnotations``; keys among the well-known constants of the work v1alpha2 API).
- The manifest inside the Work, applied as is to the member cluster by the execution controller,
  carries the label ``karmada.io/managed: "true"`` and the annotations ``work.karmada.io/namespace``
  and ``work.karmada.io/name`` naming its Work (``pkg/util/helper/work.go``: ``CreateOrUpdateWork``).
  Before v1.10 the same two keys were labels (``docs/CHANGELOG/CHANGELOG-1.10.md``), so a label is
  read when the annotation is missing.

So the trace reads template Deployment → ResourceBinding → Work (``karmada-es-member1``) → member
Deployment → ReplicaSet → Pod. Works and bindings live in Karmada's API server, which member objects
do not name: `kelemetry.linker.systems.hosts` resolves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kelemetry.linker.links import Clusters, Marks, Refusal
from kelemetry.linker.systems import metadata, parents
from kelemetry.linker.systems.hosts import HostCluster
from kelemetry.model.objects import ObjectKey, ObjectRef

GROUP = "work.karmada.io"
WORK_NAMESPACE = "work.karmada.io/namespace"
WORK_NAME = "work.karmada.io/name"
BINDING_NAMESPACE = "resourcebinding.karmada.io/namespace"
BINDING_NAME = "resourcebinding.karmada.io/name"
CLUSTER_BINDING_NAME = "clusterresourcebinding.karmada.io/name"
EXECUTION_SPACE_PREFIX = "karmada-es-"
CONVENTIONAL_HOSTS = ("karmada-apiserver",)
"""``hack/local-up-karmada.sh`` names the Karmada control plane's context ``karmada-apiserver``."""


class KarmadaLinker:
    name = "karmada"
    # A member object names its Work in annotations or labels; a Work names its binding.
    marks = Marks(
        labels=frozenset({WORK_NAMESPACE, WORK_NAME}),
        annotations=frozenset(
            {WORK_NAMESPACE, WORK_NAME, BINDING_NAMESPACE, BINDING_NAME, CLUSTER_BINDING_NAME}
        ),
    )

    def __init__(self, host: str | None = None) -> None:
        self.host = HostCluster(self.name, CONVENTIONAL_HOSTS, host)

    def parent(
        self, obj: ObjectRef, body: Mapping[str, Any], clusters: Clusters
    ) -> ObjectRef | Refusal | None:
        if obj.key.group == GROUP and obj.key.resource == "works":
            return self._binding(obj, body)
        namespace = metadata.annotation(body, WORK_NAMESPACE)
        if namespace is None:
            namespace = metadata.label(body, WORK_NAMESPACE)
        name = metadata.annotation(body, WORK_NAME)
        if name is None:
            name = metadata.label(body, WORK_NAME)
        if namespace is None and name is None:
            return None
        if not namespace or not name:
            return Refusal(
                self.name, f"names its Work by half: {WORK_NAMESPACE}={namespace!r}, {WORK_NAME}={name!r}"
            )
        if not namespace.startswith(EXECUTION_SPACE_PREFIX) or namespace == EXECUTION_SPACE_PREFIX:
            return Refusal(self.name, f"{WORK_NAMESPACE} {namespace!r} is not an execution namespace")
        host = self.host.resolve(clusters)
        if isinstance(host, Refusal):
            return host
        key = ObjectKey.make(host, GROUP, "works", namespace, name)
        return parents.parent(self.name, obj, key, kind="Work", version="v1alpha1")

    def _binding(self, work: ObjectRef, body: Mapping[str, Any]) -> ObjectRef | Refusal | None:
        # A Work and its binding are both in Karmada's API server: the Work's own cluster.
        namespace = metadata.annotation(body, BINDING_NAMESPACE)
        name = metadata.annotation(body, BINDING_NAME)
        if namespace is not None or name is not None:
            if not namespace or not name:
                return Refusal(
                    self.name,
                    f"names its binding by half: {BINDING_NAMESPACE}={namespace!r}, {BINDING_NAME}={name!r}",
                )
            key = ObjectKey.make(work.key.cluster, GROUP, "resourcebindings", namespace, name)
            return parents.parent(self.name, work, key, kind="ResourceBinding", version="v1alpha2")
        cluster_binding = metadata.annotation(body, CLUSTER_BINDING_NAME)
        if cluster_binding is None:
            # Works of other controllers (namespace sync, service export...) name no binding.
            return None
        if not cluster_binding:
            return Refusal(self.name, f"{CLUSTER_BINDING_NAME} is empty")
        key = ObjectKey.make(work.key.cluster, GROUP, "clusterresourcebindings", "", cluster_binding)
        return parents.parent(self.name, work, key, kind="ClusterResourceBinding", version="v1alpha2")
