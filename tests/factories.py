"""Builders of audit events and related inputs for unit tests (synthetic, shaped like real ones),
and the one pipeline tests write stores through."""

from __future__ import annotations

import copy
import itertools
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

import aggregators
from kelemetry import pipeline as pipelines
from kelemetry.diff.redact import with_rules
from kelemetry.kube.kinds import KindResolver
from kelemetry.linker.links import Clusters, Marks
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import KnownObject, ObjectKey, ObjectRef
from kelemetry.model.spans import SpanRecord
from kelemetry.receivers.audit import AuditConverter, AuditFilter
from kelemetry.receivers.auditwire import AuditEvent
from kelemetry.settings import TraceSettings
from kelemetry.store.sqlite import SpanStore

_counter = itertools.count(1)

NOTHING_EXCLUDED = TraceSettings(excluded_resources=(), excluded_user_agents=())
"""The collector's trace settings, except that every resource and user agent is traced: a test's
events are the ones it means to see as spans. (The exclusion rules have their own tests.)"""


def new_pipeline(store: SpanStore, trace: TraceSettings = NOTHING_EXCLUDED) -> pipelines.Pipeline:
    """The pipeline ``kelemetry serve`` and ``replay`` make (``kelemetry.pipeline.build``), over
    ``store``; a fresh kind resolver each time, as a restarted collector has."""
    return pipelines.build(store, trace, KindResolver())


class BreaksOnPoison:
    """A linker (the pipeline's own plug-in interface) with a bug: it raises on objects named poison."""

    name = "breaks-on-poison"
    marks: Marks | None = None

    def parent(self, obj: ObjectRef, body: Any, clusters: Clusters) -> None:
        if obj.key.name == "poison":
            raise RuntimeError("linker broke on poison")
        return None


def pipeline_redacting_configmaps(store: SpanStore, *, broken: bool = False) -> pipelines.Pipeline:
    """A pipeline that keeps ConfigMap data out of everything (``--redact configmaps:data``), and
    with ``broken`` a linker that raises on objects named poison."""
    return pipelines.Pipeline(
        store,
        aggregators.create("hierarchy", 1800),
        AuditConverter(KindResolver(), AuditFilter.from_strings((), ()), with_rules(("configmaps:data",))),
        linkers=[BreaksOnPoison()] if broken else [],
    )


def pipeline_with_a_broken_linker(store: SpanStore) -> pipelines.Pipeline:
    return pipeline_redacting_configmaps(store, broken=True)


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


_BODIES = frozenset({"requestObject", "responseObject"})


def mismatches(events: Sequence[AuditEvent], documents: Sequence[Mapping[str, Any]]) -> list[str]:
    """Where decoded ``events`` differ from the ``documents`` they were decoded from: every field a
    document has and the wire form declares must hold the value sent (bodies compared whole). Fields
    the wire form does not declare (``level``, ``requestURI``) are not compared."""
    found = [f"{len(events)} events for {len(documents)} documents"] if len(events) != len(documents) else []
    for n, (event, document) in enumerate(zip(events, documents, strict=False)):
        read = msgspec.json.decode(msgspec.json.encode(event))
        found += _differences(read, document, f"[{n}]")
    return found


def _differences(read: Mapping[str, Any], sent: Mapping[str, Any], path: str) -> list[str]:
    found = []
    for key, value in sent.items():
        if key not in read:
            continue
        held = read[key]
        if isinstance(value, Mapping) and isinstance(held, Mapping) and key not in _BODIES:
            found += _differences(held, value, f"{path}.{key}")
        elif held != value:
            found.append(f"{path}.{key}: sent {value!r}, holds {held!r}")
    return found


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


def at(second: int) -> dict[str, str]:
    return {
        "received": f"2024-05-01T10:00:{second:02d}.000000Z",
        "completed": f"2024-05-01T10:00:{second:02d}.005000Z",
    }


def reuse_stream() -> list[dict[str, Any]]:
    """Deployment reuse → ReplicaSet reuse-5d4 → Pod, deleted, then created again under the same
    names (the pod template, so the ReplicaSet name, is the same) within one window."""
    events: list[dict[str, Any]] = []
    for n, (dep, rs, pod, t) in enumerate((("d-1", "r-1", "p-1", 0), ("d-2", "r-2", "p-2", 30))):
        events += [
            audit_event(
                resource="deployments", group="apps", name="reuse", uid=dep, audit_id=f"dep-{n}", **at(t)
            ),
            audit_event(
                resource="replicasets",
                group="apps",
                name="reuse-5d4",
                uid=rs,
                owner=owner_ref("Deployment", "reuse", uid=dep),
                audit_id=f"rs-{n}",
                user="system:serviceaccount:kube-system:deployment-controller",
                **at(t + 1),
            ),
            audit_event(
                name=f"reuse-5d4-{n}",
                uid=pod,
                owner=owner_ref("ReplicaSet", "reuse-5d4", uid=rs),
                audit_id=f"pod-{n}",
                **at(t + 2),
            ),
        ]
        if n == 0:
            events.append(
                audit_event(
                    verb="delete",
                    code=200,
                    resource="deployments",
                    group="apps",
                    name="reuse",
                    uid=dep,
                    audit_id="dep-delete",
                    **at(10),
                )
            )
    return events


def write_arrived(store: Path, cluster: str, arrived_us: int, traces: int) -> None:
    """``traces`` traces of one pod and one request each in ``cluster``, stamped as arrived at
    ``arrived_us`` through the store's clock seam (ids are arbitrary: the store does not derive them)."""
    key = ObjectKey.make(cluster, "", "pods", "default", "web")
    object_id = zlib.crc32(cluster.encode())
    spans = []
    for n in range(traces):
        trace_id = object_id * 1000 + n
        for offset, source in enumerate((TraceSource.OBJECT, TraceSource.AUDIT)):
            spans.append(
                SpanRecord(
                    trace_id=trace_id,
                    span_id=trace_id * 10 + offset,
                    parent_id=trace_id * 10 if offset else None,
                    source=source,
                    name=key.display,
                    start_us=n * 1_800_000_000,
                    end_us=(n + 1) * 1_800_000_000,
                    key=key,
                    object_id=object_id,
                    window=n,
                    uid="u",
                    kind="Pod",
                    version="v1",
                    tags={},
                )
            )
    writer = SpanStore(store, clock=lambda: arrived_us)
    try:
        writer.write(spans, [KnownObject(object_id, key, "u", "Pod", "v1")])
    finally:
        writer.close()
