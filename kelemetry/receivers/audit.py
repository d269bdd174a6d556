"""audit.k8s.io Events → model Events.

Input forms: an ``EventList`` (the webhook body), a single ``Event``, or one Event per JSON line
(the log backend). Versions ``audit.k8s.io/v1`` and ``v1beta1`` share every field we read.

What is kept: mutating verbs (create, update, patch, delete, deletecollection) at stage
``ResponseComplete`` or ``Panic``. Reads and earlier stages are dropped and counted, before any
body is looked at, because they are most of a real audit stream. Failed requests are kept and
marked as errors. This module does no I/O.
"""

from __future__ import annotations

import http
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import orjson

from kelemetry import errors
from kelemetry.diff.redact import Redactor
from kelemetry.kube.kinds import KindResolver, canonical_group, split_api_version
from kelemetry.model import tags
from kelemetry.model.events import Event, Log, TagValue, TraceSource, WriteDetail
from kelemetry.model.objects import ObjectKey, ObjectRef, OwnerLink
from kelemetry.model.times import parse_time_us

AUDIT_API_VERSIONS = frozenset({"audit.k8s.io/v1", "audit.k8s.io/v1beta1"})
KEEP_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
KEEP_STAGES = frozenset({"ResponseComplete", "Panic"})

_NON_OBJECT_KINDS = frozenset({"Status", "DeleteOptions", "Scale", "Binding", "Eviction"})
# Subresources whose writes answer with the object itself; the others (scale, binding, eviction,
# token, ...) answer with something else that must never be taken for the object.
_OBJECT_SUBRESOURCES = frozenset({"", "status", "ephemeralcontainers", "resize", "finalize", "approval"})


class RawObjectRef(TypedDict, total=False):
    resource: str
    namespace: str
    name: str
    uid: str
    apiGroup: str
    apiVersion: str
    resourceVersion: str
    subresource: str


class RawUser(TypedDict, total=False):
    username: str
    groups: list[str]


class RawAuditEvent(TypedDict):
    auditID: str
    stage: str
    verb: str
    kind: NotRequired[str]
    apiVersion: NotRequired[str]
    user: NotRequired[RawUser]
    impersonatedUser: NotRequired[RawUser]
    userAgent: NotRequired[str]
    sourceIPs: NotRequired[list[str]]
    objectRef: NotRequired[RawObjectRef]
    responseStatus: NotRequired[dict[str, Any]]
    requestObject: NotRequired[dict[str, Any]]
    responseObject: NotRequired[dict[str, Any]]
    requestReceivedTimestamp: NotRequired[str]
    stageTimestamp: NotRequired[str]
    timestamp: NotRequired[str]


# ---------------------------------------------------------------------------------------------
# Decoding and validation of wire bodies


def loads(body: bytes) -> Any:
    """JSON-decode a body, telling "not UTF-8" apart from "not JSON"."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in str(exc) or "utf-8" in str(exc):
            raise errors.MalformedBody("body is not valid UTF-8") from exc
        raise errors.MalformedBody(f"body is not valid JSON: {exc}") from exc


def check_event(item: Any, where: str, *, strict_version: bool) -> RawAuditEvent:
    """Validate one audit Event's envelope; ``strict_version`` also requires its apiVersion."""
    if not isinstance(item, dict):
        raise errors.WrongKind(f"{where} is not a JSON object")
    kind = item.get("kind")
    if kind is not None and kind != "Event":
        raise errors.WrongKind(f"{where} has kind {kind!r}, expected an audit Event")
    api_version = item.get("apiVersion")
    if (api_version is not None or strict_version) and api_version not in AUDIT_API_VERSIONS:
        raise errors.WrongKind(f"{where} has apiVersion {api_version!r}, expected audit.k8s.io/v1 or v1beta1")
    for required in ("auditID", "stage", "verb"):
        if not isinstance(item.get(required), str):
            raise errors.WrongKind(f"{where} has no {required}")
    return item  # type: ignore[return-value]


def decode_webhook_body(body: bytes) -> list[RawAuditEvent]:
    """Validate a webhook body (EventList, or a lone Event) and return its events.

    The whole body is refused if any part is wrong, so nothing is ever half-ingested.
    """
    document = loads(body)
    if not isinstance(document, dict):
        raise errors.WrongKind("body is not a JSON object")
    kind = document.get("kind")
    api_version = document.get("apiVersion")
    if api_version not in AUDIT_API_VERSIONS:
        raise errors.WrongKind(f"apiVersion {api_version!r} is not audit.k8s.io/v1 or audit.k8s.io/v1beta1")
    if kind == "Event":
        return [check_event(document, "body", strict_version=True)]
    if kind != "EventList":
        raise errors.WrongKind(f"kind {kind!r} is not EventList or Event")
    items = document.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise errors.WrongKind("items is not a list")
    return [check_event(item, f"items[{i}]", strict_version=False) for i, item in enumerate(items)]


_STAGE_KEY = b'"stage":"'
_VERB_KEY = b'"verb":"'
_KEEP_STAGES_RAW = frozenset(stage.encode() for stage in KEEP_STAGES)
_KEEP_VERBS_RAW = frozenset(verb.encode() for verb in KEEP_VERBS)


def cheap_drop(line: bytes) -> str | None:
    """The drop outcome of a JSON line that can be decided without decoding it, else None.

    Most of a real audit stream is reads and early stages; deciding those from the bytes skips
    the JSON decode that dominates the cost. It only decides when the key occurs exactly once in
    the line, so a field of the same name inside a request or response body can never be
    mistaken for the event's own; anything else goes through the full decoder.
    """
    if line.count(_STAGE_KEY) == 1:
        start = line.index(_STAGE_KEY) + len(_STAGE_KEY)
        if line[start : line.find(b'"', start)] not in _KEEP_STAGES_RAW:
            return "dropped_stage"
    if line.count(_VERB_KEY) == 1:
        start = line.index(_VERB_KEY) + len(_VERB_KEY)
        if line[start : line.find(b'"', start)] not in _KEEP_VERBS_RAW:
            return "dropped_read"
    return None


def events_of_document(document: Any, where: str) -> list[RawAuditEvent]:
    """Events of one JSON-lines record: a bare Event (apiVersion optional) or an EventList."""
    if isinstance(document, dict) and document.get("kind") == "EventList":
        items = document.get("items") or []
        if not isinstance(items, list):
            raise errors.WrongKind(f"{where}: items is not a list")
        return [
            check_event(item, f"{where} items[{i}]", strict_version=False) for i, item in enumerate(items)
        ]
    return [check_event(document, where, strict_version=False)]


# Requests whose bodies are credentials: the answer to a TokenRequest is a live bearer token, and a
# TokenReview carries the token it checks. Their bodies never reach the disk, whatever the policy.
_CREDENTIALS = frozenset({("", "serviceaccounts", "token"), ("authentication.k8s.io", "tokenreviews", "")})
_CREDENTIAL_MARKERS = (b'"token"', b'"tokenreviews"')


def is_credential(group: str, resource: str, subresource: str) -> bool:
    return (group, resource, subresource) in _CREDENTIALS


def scrub_batch(body: bytes, events: list[RawAuditEvent], redactor: Redactor) -> bytes:
    """``body`` with redacted fields and credentials removed from every request/response object,
    re-encoded only if the batch touches such a resource at all (so Secret values and tokens are
    never written to disk)."""
    if not any(f'"{resource}"'.encode() in body for resource in redactor.resources()) and not any(
        marker in body for marker in _CREDENTIAL_MARKERS
    ):
        return body
    changed = False
    for event in events:
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "")
        group = canonical_group(ref.get("apiGroup", ""), resource)
        if is_credential(group, resource, ref.get("subresource", "")):
            if "requestObject" in event:
                event["requestObject"] = redactor.opaque(event["requestObject"])
                changed = True
            if "responseObject" in event:
                event["responseObject"] = redactor.opaque(event["responseObject"])
                changed = True
            continue
        if not redactor.fields_of(group, resource):
            continue
        for side in ("requestObject", "responseObject"):
            target = event.get(side)
            if isinstance(target, dict):
                redactor.scrub_in_place(group, resource, target)
                changed = True
            elif target is not None:
                # A JSON patch (a list of operations) can carry any value at any path: keep none.
                event[side] = redactor.opaque(target)
                changed = True
    if not changed:
        return body
    document = orjson.loads(body)
    if isinstance(document, dict) and document.get("kind") == "EventList":
        document["items"] = events
        return orjson.dumps(document)
    return orjson.dumps(events[0])


# ---------------------------------------------------------------------------------------------
# Conversion


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which audit events become spans beyond the verb/stage rule."""

    excluded_resources: frozenset[tuple[str, str]] = frozenset()
    excluded_user_agents: tuple[str, ...] = ()

    @classmethod
    def from_strings(cls, resources: Iterable[str], user_agents: Iterable[str]) -> AuditFilter:
        """Resources are written ``resource`` (core group) or ``group/resource``."""
        parsed = set()
        for entry in resources:
            group, _, resource = entry.strip().rpartition("/")
            if resource:
                parsed.add((group, resource))
        return cls(frozenset(parsed), tuple(ua for ua in user_agents if ua))


@dataclass
class AuditStats:
    """Counters of what the converter did with each event, by outcome."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] += n


class AuditConverter:
    """Turns raw audit events into model Events for one or more clusters."""

    def __init__(
        self,
        resolver: KindResolver,
        audit_filter: AuditFilter | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.resolver = resolver
        self._filter = audit_filter or AuditFilter()
        self._redactor = redactor or Redactor()
        self.stats = AuditStats()

    def convert_all(self, raws: Iterable[RawAuditEvent], cluster: str) -> Iterator[Event]:
        for raw in raws:
            event = self.convert(raw, cluster)
            if event is not None:
                yield event

    def convert(self, raw: RawAuditEvent, cluster: str) -> Event | None:
        counts = self.stats.counts
        if raw["stage"] not in KEEP_STAGES:
            counts["dropped_stage"] += 1
            return None
        verb = raw["verb"]
        if verb not in KEEP_VERBS:
            counts["dropped_read"] += 1
            return None
        ref = raw.get("objectRef")
        if not ref or not ref.get("resource"):
            counts["dropped_no_object"] += 1
            return None
        resource = ref["resource"]
        group = canonical_group(ref.get("apiGroup", ""), resource)
        excluded = self._filter.excluded_resources
        if excluded and (group, resource) in excluded:
            counts["dropped_excluded_resource"] += 1
            return None
        user_agent = raw.get("userAgent", "")
        if user_agent and any(pattern in user_agent for pattern in self._filter.excluded_user_agents):
            counts["dropped_excluded_user_agent"] += 1
            return None

        response = raw.get("responseObject")
        subresource = ref.get("subresource", "")
        if response is not None and (
            not isinstance(response, dict)
            or response.get("kind") in _NON_OBJECT_KINDS
            or subresource not in _OBJECT_SUBRESOURCES
        ):
            status_body = response if isinstance(response, dict) else None
            response = None
        else:
            status_body = None
        request = raw.get("requestObject")
        if not isinstance(request, dict):
            request = None
        # A Binding, Scale or Eviction request body is about the object, not the object itself.
        request_is_object = (
            request is not None
            and request.get("kind") not in _NON_OBJECT_KINDS
            and subresource in _OBJECT_SUBRESOURCES
        )

        namespace = ref.get("namespace", "")
        name = ref.get("name", "")
        if not name and verb == "create":
            name = _meta(response).get("name") or _meta(request).get("name") or ""
            if not name:
                # A failed generateName create never got a name; the prefix is what a user searches.
                name = _meta(request).get("generateName") or ""
                if not name:
                    counts["dropped_no_name"] += 1
                    return None
        if self.resolver.namespaced(group, resource) is False:
            # The apiserver names a Namespace's own name as objectRef.namespace on some verbs
            # (DELETE /api/v1/namespaces/foo); cluster-scoped objects are keyed without one.
            namespace = ""
        elif not namespace:
            namespace = _meta(response).get("namespace") or ""

        start_us, end_us = _times(raw)
        if start_us is None:
            counts["dropped_no_time"] += 1
            return None

        key = ObjectKey.make(cluster, group, resource, namespace, name)
        body: dict[str, Any] | None
        if response is not None:
            body = response
        else:
            body = request if request_is_object and verb in ("create", "update") else None
        meta = _meta(body)
        uid = meta.get("uid") or ref.get("uid") or ""
        if not uid and status_body is not None:
            uid = (status_body.get("details") or {}).get("uid") or ""
        api_version = (body or {}).get("apiVersion") or ""
        version = split_api_version(api_version)[1] if api_version else ref.get("apiVersion", "")
        kind = (body or {}).get("kind") or self.resolver.kind_of(group, resource)
        obj = ObjectRef(key, uid, kind, version)

        user = raw.get("user") or {}
        impersonated = raw.get("impersonatedUser") or {}
        username = impersonated.get("username") or user.get("username") or "unknown"
        status = raw.get("responseStatus") or {}
        code = status.get("code")

        event_tags: dict[str, TagValue] = {
            tags.AUDIT_ID: raw["auditID"],
            tags.AUDIT_VERB: verb,
            tags.AUDIT_USER: username,
        }
        if impersonated.get("username") and user.get("username"):
            event_tags[tags.AUDIT_IMPERSONATOR] = user["username"]
        if user_agent:
            event_tags[tags.AUDIT_USER_AGENT] = user_agent
        if isinstance(code, int):
            event_tags[tags.AUDIT_CODE] = code
        if subresource:
            event_tags[tags.AUDIT_SUBRESOURCE] = subresource
        # The object's version after the write comes from the response only (a Scale response carries
        # it too); objectRef.resourceVersion is the version an update was *based on*.
        resource_version = str(
            _meta(response).get("resourceVersion") or _meta(status_body).get("resourceVersion") or ""
        )
        if resource_version:
            event_tags[tags.RESOURCE_VERSION] = resource_version
        source_ips = raw.get("sourceIPs")
        if source_ips:
            event_tags[tags.AUDIT_SOURCE_IP] = source_ips[0]

        title = f"{username} {verb}"
        if subresource:
            title += f" {subresource}"
        logs: tuple[Log, ...] = ()
        failed = raw["stage"] == "Panic" or (isinstance(code, int) and code >= 400)
        if isinstance(code, int) and code >= 300:
            title += f" ({_status_text(code)})"
        if failed:
            logs = (Log("error", _failure_message(raw["stage"], status, status_body)),)

        counts["kept"] += 1
        raw_request = raw.get("requestObject")
        if raw_request is not None and (
            self._redactor.fields_of(group, resource) or is_credential(group, resource, subresource)
        ):
            raw_request = self._redactor.opaque(raw_request)
        if is_credential(group, resource, subresource):
            status_body = None
        write = WriteDetail(
            verb=verb,
            subresource=subresource,
            resource_version=resource_version,
            precondition=str(ref.get("resourceVersion") or ""),
            request=raw_request,
            response=status_body,
        )
        return Event(
            object=obj,
            source=TraceSource.AUDIT,
            event_id=raw["auditID"],
            title=title,
            start_us=start_us,
            end_us=max(end_us, start_us),
            tags=event_tags,
            logs=logs,
            error=failed,
            owner=self._owner(obj, meta, verb),
            body=None if response is None or failed else self._redactor.clean(group, resource, response),
            write=write,
        )

    def owner_link(self, obj: ObjectRef, meta: Mapping[str, Any]) -> OwnerLink | None:
        """The controller owner that an object's metadata declares."""
        return self._owner(obj, meta, "update")

    @property
    def redactor(self) -> Redactor:
        return self._redactor

    def _owner(self, obj: ObjectRef, meta: Mapping[str, Any], verb: str) -> OwnerLink | None:
        refs = meta.get("ownerReferences")
        if not refs or verb in ("delete", "deletecollection") or not isinstance(refs, list):
            return None
        chosen = next((r for r in refs if isinstance(r, dict) and r.get("controller")), None)
        if chosen is None:
            chosen = refs[0] if isinstance(refs[0], dict) else None
        if chosen is None or not chosen.get("kind") or not chosen.get("name"):
            return None
        group, version = split_api_version(str(chosen.get("apiVersion", "")))
        info = self.resolver.resolve(group, str(chosen["kind"]))
        group = canonical_group(group, info.resource)
        key = obj.key
        owner_key = ObjectKey.make(
            key.cluster, group, info.resource, key.namespace if info.namespaced else "", str(chosen["name"])
        )
        owner = ObjectRef(owner_key, str(chosen.get("uid", "")), str(chosen["kind"]), version)
        return OwnerLink(child=obj, owner=owner)


def _meta(body: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not body:
        return {}
    meta = body.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _times(raw: RawAuditEvent) -> tuple[int | None, int]:
    received = raw.get("requestReceivedTimestamp") or raw.get("timestamp")
    stage = raw.get("stageTimestamp")
    try:
        start = parse_time_us(received) if received else None
        end = parse_time_us(stage) if stage else None
    except (TypeError, ValueError):
        return None, 0
    if start is None:
        start = end
    if start is None:
        return None, 0
    return start, end if end is not None else start


def _status_text(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return str(code)


def _failure_message(stage: str, status: Mapping[str, Any], status_body: Mapping[str, Any] | None) -> str:
    if stage == "Panic":
        return "Panic: the apiserver panicked while serving this request"
    reason = (
        status.get("reason") or (status_body or {}).get("reason") or _status_text(int(status.get("code", 0)))
    )
    message = status.get("message") or (status_body or {}).get("message") or ""
    return f"{reason}: {message}" if message else str(reason)
