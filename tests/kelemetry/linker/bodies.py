"""Objects as the linkers receive them: a ref (key, uid, kind, version) and the body as read."""

from __future__ import annotations

from typing import Any

from kelemetry.model.objects import ObjectKey, ObjectRef


def ref(
    cluster: str,
    group: str,
    resource: str,
    namespace: str,
    name: str,
    *,
    kind: str = "",
    version: str = "v1",
    uid: str = "",
) -> ObjectRef:
    return ObjectRef(ObjectKey.make(cluster, group, resource, namespace, name), uid, kind, version)


def body(
    obj: ObjectRef,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
    owners: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A body shaped as the API server returns it (managedFields already dropped)."""
    group = obj.key.group
    meta: dict[str, Any] = {
        "name": obj.key.name,
        "uid": obj.uid or "00000000-0000-0000-0000-000000000000",
        "resourceVersion": "4711",
        "generation": 2,
        "creationTimestamp": "2025-01-01T00:00:00Z",
    }
    if obj.key.namespace:
        meta["namespace"] = obj.key.namespace
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    if owners is not None:
        meta["ownerReferences"] = owners
    return {
        "apiVersion": f"{group}/{obj.version}" if group else obj.version,
        "kind": obj.kind,
        "metadata": meta,
        "spec": spec or {},
        "status": {},
    }


DEPLOYMENT_SPEC: dict[str, Any] = {
    "replicas": 2,
    "selector": {"matchLabels": {"app": "web"}},
    "template": {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
    },
}
