"""Liqo: objects reflected into a remote cluster under the origin cluster's object they stand for.

What Liqo (v1.0) writes, learned from its source:

- A Pod scheduled on a Liqo virtual node in the origin cluster is reflected by the virtual kubelet
  as a ``ShadowPod`` (group ``offloading.liqo.io``) in the remote cluster, with the Pod's name, in
  the remote namespace the origin namespace maps to, carrying the Pod's labels plus
  ``offloading.liqo.io/origin: <origin cluster id>``, ``offloading.liqo.io/destination: <remote
  cluster id>`` and ``offloading.liqo.io/nodename`` (``pkg/virtualKubelet/forge/pods.go``:
  ``RemoteShadowPod``; ``pkg/virtualKubelet/forge/meta.go``: ``ReflectionLabels``).
- The remote cluster's ShadowPod controller creates the real Pod with the same name, labels and
  annotations and a controller ownerReference to the ShadowPod
  (``pkg/liqo-controller-manager/offloading/shadowpod-controller/shadowpod_controller.go``), so the
  owner graph already hangs the remote Pod under its ShadowPod; this linker hangs the ShadowPod
  under the origin Pod. EndpointSlices go the same way through ``ShadowEndpointSlice``
  (``pkg/virtualKubelet/forge/endpointslices.go``); Services, Ingresses, ConfigMaps and Secrets are
  reflected directly under the same name with the same labels (``services.go``, ``ingresses.go``,
  ``configmaps.go``, ``secrets.go``), except the root CA ConfigMap, renamed
  ``kube-root-ca.crt.<first 5 characters of the origin id>``, and the Secrets holding a Pod's
  service-account tokens, which name the Pod in ``offloading.liqo.io/service-account-for-pod-name``.
- Remote namespaces are named by the NamespaceOffloading's strategy
  (``pkg/liqo-controller-manager/offloading/namespaceoffloading-controller/status.go``):
  ``<namespace>-<origin cluster id>`` by default, the same name with ``EnforceSameName``, or any
  name with ``SelectedName`` — which the reflected object cannot tell us; the origin namespace is
  therefore the remote one less a ``-<origin id>`` suffix when it has one, else the same.

So the trace reads origin ReplicaSet → Pod (on the virtual node) → remote ShadowPod → remote Pod.
The origin cluster is named on every reflected object (a Liqo cluster id, a DNS label chosen at
install, matched to ours through ``Clusters``), so no host needs configuring.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kelemetry.linker.links import Clusters, Marks, Refusal
from kelemetry.linker.systems import metadata, parents
from kelemetry.model.objects import ObjectKey, ObjectRef

ORIGIN_LABEL = "offloading.liqo.io/origin"
SA_SECRET_POD_LABEL = "offloading.liqo.io/service-account-for-pod-name"
ROOT_CA = "kube-root-ca.crt"

REFLECTED: Mapping[tuple[str, str], tuple[str, str, str]] = {
    # (group, resource) in the remote cluster → (group, resource, kind) of the origin object.
    ("offloading.liqo.io", "shadowpods"): ("", "pods", "Pod"),
    ("offloading.liqo.io", "shadowendpointslices"): ("discovery.k8s.io", "endpointslices", "EndpointSlice"),
    # Owned by their shadows, so asked only when the ownerReference is gone; the name still holds.
    ("", "pods"): ("", "pods", "Pod"),
    ("discovery.k8s.io", "endpointslices"): ("discovery.k8s.io", "endpointslices", "EndpointSlice"),
    ("", "services"): ("", "services", "Service"),
    ("networking.k8s.io", "ingresses"): ("networking.k8s.io", "ingresses", "Ingress"),
    ("", "configmaps"): ("", "configmaps", "ConfigMap"),
    ("", "secrets"): ("", "secrets", "Secret"),
}


class LiqoLinker:
    name = "liqo"
    marks = Marks(labels=frozenset({ORIGIN_LABEL}))

    def parent(
        self, obj: ObjectRef, body: Mapping[str, Any], clusters: Clusters
    ) -> ObjectRef | Refusal | None:
        origin = metadata.label(body, ORIGIN_LABEL)
        if origin is None:
            return None
        target = REFLECTED.get((obj.key.group, obj.key.resource))
        if target is None:
            return None
        if not origin:
            return Refusal(self.name, f"{ORIGIN_LABEL} is empty")
        cluster = clusters.ours(origin)
        if cluster is None:
            return Refusal(self.name, f"{ORIGIN_LABEL} names cluster {origin!r}, which is not one of ours")
        group, resource, kind = target
        name = obj.key.name
        pod = metadata.label(body, SA_SECRET_POD_LABEL) if resource == "secrets" else None
        if pod is not None:
            group, resource, kind, name = "", "pods", "Pod", pod
        elif resource == "configmaps" and name.startswith(f"{ROOT_CA}."):
            name = ROOT_CA
        if not name:
            return Refusal(self.name, f"{SA_SECRET_POD_LABEL} is empty")
        suffix = f"-{origin}"
        namespace = obj.key.namespace
        if namespace.endswith(suffix) and len(namespace) > len(suffix):
            namespace = namespace.removesuffix(suffix)
        key = ObjectKey.make(cluster, group, resource, namespace, name)
        return parents.parent(self.name, obj, key, kind=kind, version="v1")
