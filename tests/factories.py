"""Builders of audit events and related inputs for unit tests (synthetic, shaped like real ones)."""

from __future__ import annotations

import copy
import itertools
from typing import Any

_counter = itertools.count(1)


def audit_event(
    *,
    verb: str = "create",
    resource: str = "pods",
    group: str = "",
    namespace: str = "default",
    name: str = "web-0",
    subresource: str = "",
    stage: str = "ResponseComplete",
    user: str = "admin",
    code: int = 201,
    received: str = "2024-05-01T10:00:00.000000Z",
    completed: str = "2024-05-01T10:00:00.010000Z",
    uid: str = "uid-web-0",
    kind: str | None = None,
    owner: dict[str, Any] | None = None,
    audit_id: str | None = None,
    request_object: dict[str, Any] | None = None,
    response_object: dict[str, Any] | None = None,
    with_bodies: bool = True,
    api_version: str = "audit.k8s.io/v1",
    **extra: Any,
) -> dict[str, Any]:
    """One audit.k8s.io Event as kube-apiserver writes it (RequestResponse level by default)."""
    object_api = f"{group}/v1" if group else "v1"
    kind = kind or {"pods": "Pod", "replicasets": "ReplicaSet", "deployments": "Deployment"}.get(
        resource, "Thing"
    )
    ref: dict[str, Any] = {"resource": resource, "apiVersion": "v1"}
    if group:
        ref["apiGroup"] = group
    if namespace:
        ref["namespace"] = namespace
    if name and verb != "create":
        ref["name"] = name
    if subresource:
        ref["subresource"] = subresource
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": api_version,
        "level": "RequestResponse",
        "auditID": audit_id or f"audit-{next(_counter):06d}",
        "stage": stage,
        "requestURI": f"/api/v1/namespaces/{namespace}/{resource}",
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.1"],
        "userAgent": "kubectl/v1.33.0",
        "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": received,
        "stageTimestamp": completed,
    }
    if with_bodies:
        body: dict[str, Any] = {
            "kind": kind,
            "apiVersion": object_api,
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "100"},
        }
        if owner is not None:
            body["metadata"]["ownerReferences"] = [owner]
        event["requestObject"] = request_object if request_object is not None else copy.deepcopy(body)
        if code < 300:
            event["responseObject"] = response_object if response_object is not None else copy.deepcopy(body)
    event.update(extra)
    return event


def owner_ref(
    kind: str, name: str, *, api_version: str = "apps/v1", uid: str = "", controller: bool = True
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid or f"uid-{name}",
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def event_list(items: list[dict[str, Any]], api_version: str = "audit.k8s.io/v1") -> dict[str, Any]:
    return {"kind": "EventList", "apiVersion": api_version, "metadata": {}, "items": items}


def hierarchy_events() -> list[dict[str, Any]]:
    """A Deployment, its ReplicaSet and a Pod of it, created in that order."""
    return [
        audit_event(resource="deployments", group="apps", name="web", uid="d-1", audit_id="dep"),
        audit_event(
            resource="replicasets",
            group="apps",
            name="web-1",
            uid="r-1",
            owner=owner_ref("Deployment", "web", uid="d-1"),
            audit_id="rs",
        ),
        audit_event(
            name="web-1-a", uid="p-1", owner=owner_ref("ReplicaSet", "web-1", uid="r-1"), audit_id="pod"
        ),
    ]


def kube_event(
    *,
    kind: str,
    name: str,
    reason: str,
    message: str = "",
    namespace: str = "default",
    api_version: str = "v1",
    object_uid: str = "",
    event_type: str = "Normal",
    count: int = 1,
    first: str = "2024-05-01T10:00:00Z",
    last: str | None = None,
    component: str = "",
    uid: str | None = None,
) -> dict[str, Any]:
    """One core/v1 Kubernetes Event about an object, as the Events API lists it."""
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {
            "name": f"{name}.{next(_counter):x}",
            "namespace": namespace,
            "uid": uid or f"event-{next(_counter):06d}",
            "resourceVersion": str(next(_counter)),
        },
        "involvedObject": {
            "apiVersion": api_version,
            "kind": kind,
            "name": name,
            "namespace": namespace,
            "uid": object_uid or f"uid-{name}",
        },
        "reason": reason,
        "message": message,
        "type": event_type,
        "count": count,
        "firstTimestamp": first,
        "lastTimestamp": last or first,
        "source": {"component": component} if component else {},
    }
    return event
