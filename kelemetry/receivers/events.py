"""Kubernetes Events (core/v1 and events.k8s.io/v1) → model Events.

Each Event object becomes one span under its involved (regarding) object, keyed by the Event's
uid: an Event the apiserver updates many times (count 1 → 57) stays one span, with the latest
count and message and a time range from its first to its last occurrence. Warning Events are
marked as errors. Input forms: Event objects (either API version), or watch events
(``{"type": ..., "object": Event}``), as the watcher and recorded ``events.jsonl`` files give them.
This module does no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from kelemetry.kube.kinds import KindResolver, canonical_group, split_api_version
from kelemetry.model import tags
from kelemetry.model.events import Event, Log, TagValue, TraceSource
from kelemetry.model.objects import ObjectKey, ObjectRef
from kelemetry.model.times import parse_time_us

EVENT_API_VERSIONS = frozenset({"v1", "events.k8s.io/v1", "events.k8s.io/v1beta1"})
SECOND_US = 1_000_000


def unwrap(document: Any) -> tuple[str, Mapping[str, Any]] | None:
    """(watch type, Event object) of a line: a bare Event is treated as ADDED."""
    if not isinstance(document, dict):
        return None
    if "object" in document and "type" in document:
        obj = document["object"]
        return (str(document["type"]), obj) if isinstance(obj, dict) else None
    return "ADDED", document


def is_kube_event(document: Any) -> bool:
    found = unwrap(document)
    if found is None:
        return False
    _type, obj = found
    version = obj.get("apiVersion")
    # A list or an object here (bad input) cannot be looked up in a set.
    return obj.get("kind") == "Event" and isinstance(version, str) and version in EVENT_API_VERSIONS


def _time(*values: Any) -> tuple[int, int] | None:
    """(µs, precision in µs) of the first readable time: core/v1 timestamps are whole seconds,
    ``eventTime`` and ``series.lastObservedTime`` (MicroTime) carry microseconds."""
    for value in values:
        if isinstance(value, str) and value:
            try:
                moment = parse_time_us(value)
            except ValueError:
                continue
            # RFC 3339 with a fraction ("...:31.453221Z") is precise; without one it is a whole second.
            precise = "." in value
            return moment, 1 if precise else SECOND_US
    return None


class EventConverter:
    def __init__(self, resolver: KindResolver) -> None:
        self._resolver = resolver
        self.counts: Counter[str] = Counter()

    def convert(self, obj: Mapping[str, Any], cluster: str) -> Event | None:
        counts = self.counts
        meta = obj.get("metadata") or {}
        uid = meta.get("uid") if isinstance(meta, dict) else None
        regarding = obj.get("involvedObject") or obj.get("regarding")
        if (
            not uid
            or not isinstance(regarding, dict)
            or not regarding.get("kind")
            or not regarding.get("name")
        ):
            counts["event_dropped_no_object"] += 1
            return None
        series: Mapping[str, Any] = obj.get("series") or {}
        if not isinstance(series, dict):
            series = {}
        # A precise eventTime wins over the same moment in whole seconds.
        first_at = _time(obj.get("eventTime"), obj.get("firstTimestamp"), obj.get("deprecatedFirstTimestamp"))
        last_at = _time(
            series.get("lastObservedTime"),
            obj.get("lastTimestamp"),
            obj.get("deprecatedLastTimestamp"),
            obj.get("eventTime"),
            meta.get("creationTimestamp"),
        )
        if first_at is None:
            first_at = last_at
        if first_at is None or last_at is None:
            counts["event_dropped_no_time"] += 1
            return None
        (first, first_precision), (last, last_precision) = first_at, last_at
        if series and last < first:
            last = first
        precision = max(first_precision, last_precision)
        resource_version = str(meta.get("resourceVersion") or "")

        group, version = split_api_version(str(regarding.get("apiVersion", "")))
        info = self._resolver.resolve(group, str(regarding["kind"]))
        group = canonical_group(group, info.resource)
        namespace = str(regarding.get("namespace") or "") if info.namespaced else ""
        key = ObjectKey.make(cluster, group, info.resource, namespace, str(regarding["name"]))
        ref = ObjectRef(key, str(regarding.get("uid") or ""), str(regarding["kind"]), version)

        reason = str(obj.get("reason") or "Event")
        event_type = str(obj.get("type") or "Normal")
        count = obj.get("count") or obj.get("deprecatedCount") or series.get("count") or 1
        source: Mapping[str, Any] = obj.get("source") or {}
        if not isinstance(source, dict):
            source = {}
        component = (
            obj.get("reportingComponent") or obj.get("reportingController") or source.get("component") or ""
        )
        event_tags: dict[str, TagValue] = {
            tags.EVENT_REASON: reason,
            tags.EVENT_TYPE: event_type,
            tags.EVENT_COUNT: int(count) if isinstance(count, int | float) else 1,
        }
        if component:
            event_tags[tags.EVENT_SOURCE] = str(component)
        message = str(obj.get("message") or obj.get("note") or "")
        counts["event_kept"] += 1
        return Event(
            object=ref,
            source=TraceSource.EVENT,
            event_id=str(uid),
            title=reason,
            # A one-off Event is a point in time; a repeated one spans its first to last occurrence.
            start_us=first,
            end_us=max(last, first),
            tags=event_tags,
            logs=(Log("message", message),) if message else (),
            error=event_type == "Warning",
            precision_us=precision,
            order=int(resource_version) if resource_version.isdigit() else None,
        )
