"""audit.k8s.io Events → model Events.

Input: `kelemetry.receivers.auditwire.AuditEvent`s, decoded and typed at the edge (the webhook's
``EventList``, lines of the log backend). Versions ``audit.k8s.io/v1`` and ``v1beta1`` share every
field read here.

What is kept: mutating verbs (create, update, patch, delete, deletecollection) at stage
``ResponseComplete`` or ``Panic``. Reads and earlier stages are dropped and counted, before any
body is looked at, because they are most of a real audit stream. Failed requests are kept and
marked as errors. This module does no I/O.
"""

from __future__ import annotations

import http
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from kelemetry.diff.redact import Redactor, resource_name
from kelemetry.kube.kinds import KindResolver, canonical_group, split_api_version
from kelemetry.linker.owners import owner_link
from kelemetry.model import tags
from kelemetry.model.events import Event, Log, TagValue, TraceSource, WriteDetail
from kelemetry.model.objects import ObjectKey, ObjectRef
from kelemetry.model.times import parse_time_us
from kelemetry.receivers.auditwire import (
    EMPTY,
    AuditEvent,
    ResponseStatus,
    body_of,
    encode_batch,
    encode_body,
)

KEEP_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
KEEP_STAGES = frozenset({"ResponseComplete", "Panic"})

_NON_OBJECT_KINDS = frozenset({"Status", "DeleteOptions", "Scale", "Binding", "Eviction"})
# Subresources whose writes answer with the object itself; the others (scale, binding, eviction,
# token, ...) answer with something else that must never be taken for the object.
_OBJECT_SUBRESOURCES = frozenset({"", "status", "ephemeralcontainers", "resize", "finalize", "approval"})

# ---------------------------------------------------------------------------------------------
# Keeping secrets out of what is written


# Requests whose bodies are credentials: the answer to a TokenRequest is a live bearer token, and a
# TokenReview carries the token it checks. Their bodies never reach the disk, whatever the policy.
_CREDENTIALS = frozenset({("", "serviceaccounts", "token"), ("authentication.k8s.io", "tokenreviews", "")})
_CREDENTIAL_MARKERS = (b'"token"', b'"tokenreviews"')


def is_credential(group: str, resource: str, subresource: str) -> bool:
    if (group, resource, subresource) in _CREDENTIALS:
        return True
    spelled = f"{group}/{resource}/{subresource}"
    if "%" in spelled or not spelled.islower():
        # `serviceaccounts/Token`, `%74oken`: recognised as the apiserver would route them.
        return (resource_name(group), resource_name(resource), resource_name(subresource)) in _CREDENTIALS
    return False


def scrub_batch(body: bytes, events: list[AuditEvent], redactor: Redactor) -> tuple[bytes, list[AuditEvent]]:
    """``body`` and its events with redacted fields and credentials removed from every request and
    response object, whatever the verb (a list or deletecollection of Secrets answers with all their
    values) — unchanged (and not re-encoded) unless the batch can touch such a resource, so Secret
    values and tokens are never written to disk."""
    may_hold = redactor.may_hold(body)
    may_name = may_hold or any(marker in body for marker in _CREDENTIAL_MARKERS)
    touched = []
    for i, event in enumerate(events):
        ref = event.objectRef
        if not may_name and not _escaped(event):
            # The batch's bytes name no redacted resource, kind or credential, and nothing here is
            # percent-escaped (the one spelling that can hide a name from that look).
            continue
        group, resource, subresource = "", "", ""
        if ref is not None:
            group = canonical_group(resource_name(ref.apiGroup), resource_name(ref.resource))
            resource, subresource = resource_name(ref.resource), resource_name(ref.subresource)
        credential = is_credential(group, resource, subresource)
        if credential or redactor.fields_of(group, resource) or _uri_names(event.requestURI, redactor):
            touched.append((i, group, resource, credential, True))
        elif may_hold and (_holds(event.requestObject, redactor) or _holds(event.responseObject, redactor)):
            # A body of a redacted kind under another resource's name (a v1/List mixing kinds).
            touched.append((i, group, resource, credential, False))
    if not touched:
        return body, events
    # Rare (Secrets, tokens): the batch is written anew with the touched bodies cleaned; every other
    # body is carried over byte for byte.
    cleaned = list(events)
    for i, group, resource, credential, named in touched:
        event = events[i]
        cleaned[i] = msgspec.structs.replace(
            event,
            requestObject=_scrubbed(event.requestObject, group, resource, credential, named, redactor),
            responseObject=_scrubbed(event.responseObject, group, resource, credential, named, redactor),
        )
    return encode_batch(cleaned), cleaned


def _escaped(event: AuditEvent) -> bool:
    ref = event.objectRef
    return "%" in event.requestURI.partition("?")[0] or (
        ref is not None and ("%" in ref.resource or "%" in ref.apiGroup or "%" in ref.subresource)
    )


def _uri_names(uri: str, redactor: Redactor) -> bool:
    """Whether ``uri``'s path names a redacted resource (``/api/v1/namespaces/ns/secrets``,
    ``/apis/GROUP/VERSION/...``): what the apiserver acted on, even when objectRef is missing or
    says something else."""
    segments = [resource_name(segment) for segment in uri.partition("?")[0].split("/") if segment]
    if len(segments) < 3 or segments[0] not in ("api", "apis"):
        return False
    group = segments[1] if segments[0] == "apis" else ""
    return any(redactor.fields_of(group, segment) for segment in segments[2:])


def _holds(raw: msgspec.Raw, redactor: Redactor) -> bool:
    return bool(raw) and redactor.may_hold(bytes(raw))


def _scrubbed(
    raw: msgspec.Raw, group: str, resource: str, credential: bool, named: bool, redactor: Redactor
) -> msgspec.Raw:
    value = body_of(raw)
    if value is None:
        # Absent — or unreadable, so it cannot be cleaned: keep none of it.
        return EMPTY
    if isinstance(value, dict) and not credential:
        value = redactor.clean(group, resource, value)
    elif not named:
        # Only its kind was in question, and a body that is not an object has none.
        return raw
    else:
        # A credential, or a JSON patch (a list of operations) that can carry any value at any path.
        value = redactor.opaque(value)
    try:
        return encode_body(value)
    except (TypeError, OverflowError, msgspec.EncodeError):
        return EMPTY


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
    """Turns audit events into model Events for one or more clusters."""

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

    @property
    def redactor(self) -> Redactor:
        return self._redactor

    def convert(self, raw: AuditEvent, cluster: str) -> Event | None:
        counts = self.stats.counts
        stage = raw.stage
        if stage not in KEEP_STAGES:
            counts["dropped_stage"] += 1
            return None
        verb = raw.verb
        if verb not in KEEP_VERBS:
            counts["dropped_read"] += 1
            return None
        ref = raw.objectRef
        if ref is None or not ref.resource:
            counts["dropped_no_object"] += 1
            return None
        resource = ref.resource
        if "%" in resource or not resource.islower():
            # Keyed as the apiserver resolves it, so `Secrets` is found (and redacted) as secrets.
            resource = resource_name(resource)
        group = canonical_group(ref.apiGroup, resource)
        excluded = self._filter.excluded_resources
        if excluded and (group, resource) in excluded:
            counts["dropped_excluded_resource"] += 1
            return None
        user_agent = raw.userAgent
        if user_agent and any(pattern in user_agent for pattern in self._filter.excluded_user_agents):
            counts["dropped_excluded_user_agent"] += 1
            return None

        subresource = ref.subresource
        credential = is_credential(group, resource, subresource)
        response = raw.response()
        if response is not None and (
            not isinstance(response, dict)
            or _text(response.get("kind")) in _NON_OBJECT_KINDS
            or subresource not in _OBJECT_SUBRESOURCES
        ):
            # A Secret's subresource may answer with the Secret itself: cleaned like any body.
            status_body = (
                self._redactor.clean(group, resource, response)
                if isinstance(response, dict) and not credential
                else None
            )
            response = None
        else:
            status_body = None
        # The request body is read only where it says something the response does not: what a patch
        # names, a binding's target, the object when there is no response (failed requests, Request
        # level), a created object's name. An update's request repeats its (large) response.
        wanted = (
            response is None
            or verb == "patch"
            or subresource in ("binding", "eviction")
            or (verb == "create" and not ref.name and not _text(_meta(response).get("name")))
        )
        raw_request = raw.request() if wanted else None
        request = raw_request if isinstance(raw_request, dict) else None
        # A Binding, Scale or Eviction request body is about the object, not the object itself.
        request_is_object = (
            request is not None
            and _text(request.get("kind")) not in _NON_OBJECT_KINDS
            and subresource in _OBJECT_SUBRESOURCES
        )

        namespace = ref.namespace
        name = ref.name
        if not name and verb == "create":
            name = _text(_meta(response).get("name")) or _text(_meta(request).get("name"))
            if not name:
                # A failed generateName create never got a name; the prefix is what a user searches.
                name = _text(_meta(request).get("generateName"))
                if not name:
                    counts["dropped_no_name"] += 1
                    return None
        if self.resolver.namespaced(group, resource) is False:
            # The apiserver names a Namespace's own name as objectRef.namespace on some verbs
            # (DELETE /api/v1/namespaces/foo); cluster-scoped objects are keyed without one.
            namespace = ""
        elif not namespace:
            namespace = _text(_meta(response).get("namespace"))

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
        uid = _text(meta.get("uid")) or ref.uid
        if not uid and status_body is not None:
            details = status_body.get("details")
            uid = _text(details.get("uid")) if isinstance(details, dict) else ""
        if not uid and raw.responseStatus is not None and raw.responseStatus.details is not None:
            uid = raw.responseStatus.details.uid
        api_version = _text((body or {}).get("apiVersion"))
        version = split_api_version(api_version)[1] if api_version else ref.apiVersion
        kind = _text((body or {}).get("kind")) or self.resolver.kind_of(group, resource)
        obj = ObjectRef(key, uid, kind, version)

        user = raw.user
        impersonated = raw.impersonatedUser
        acting = (impersonated.username if impersonated else "") or (user.username if user else "")
        username = acting or "unknown"
        status = raw.responseStatus
        code = status.code if status is not None else None

        event_tags: dict[str, TagValue] = {
            tags.AUDIT_ID: raw.auditID,
            tags.AUDIT_VERB: verb,
            tags.AUDIT_USER: username,
        }
        if impersonated is not None and impersonated.username and user is not None and user.username:
            event_tags[tags.AUDIT_IMPERSONATOR] = user.username
        if user_agent:
            event_tags[tags.AUDIT_USER_AGENT] = user_agent
        if code is not None:
            event_tags[tags.AUDIT_CODE] = code
        if subresource:
            event_tags[tags.AUDIT_SUBRESOURCE] = subresource
        # The object's version after the write comes from the response only (a Scale response carries
        # it too); objectRef.resourceVersion is the version an update was *based on*.
        resource_version = _text(_meta(response).get("resourceVersion")) or _text(
            _meta(status_body).get("resourceVersion")
        )
        if resource_version:
            event_tags[tags.RESOURCE_VERSION] = resource_version
        if raw.sourceIPs:
            event_tags[tags.AUDIT_SOURCE_IP] = raw.sourceIPs[0]

        title = f"{username} {verb}"
        if subresource:
            title += f" {subresource}"
        logs: tuple[Log, ...] = ()
        failed = stage == "Panic" or (code is not None and code >= 400)
        if code is not None and code >= 300:
            title += f" ({_status_text(code)})"
        if failed:
            logs = (Log("error", _failure_message(stage, status, status_body)),)

        counts["kept"] += 1
        if raw_request is not None and (self._redactor.fields_of(group, resource) or credential):
            raw_request = self._redactor.opaque(raw_request)
        elif isinstance(raw_request, dict):
            # A body may say it is (or hold, as a list) a redacted kind whatever resource was named.
            raw_request = self._redactor.clean(group, resource, raw_request)
        write = WriteDetail(
            verb=verb,
            subresource=subresource,
            resource_version=resource_version,
            precondition=ref.resourceVersion,
            request=raw_request,
            response=status_body,
        )
        owner = None if verb in ("delete", "deletecollection") else owner_link(obj, meta, self.resolver)
        return Event(
            object=obj,
            source=TraceSource.AUDIT,
            event_id=raw.auditID,
            title=title,
            start_us=start_us,
            end_us=max(end_us, start_us),
            tags=event_tags,
            logs=logs,
            error=failed,
            owner=owner,
            body=None if response is None or failed else self._redactor.clean(group, resource, response),
            body_bytes=len(raw.responseObject) if response is not None else 0,
            write=write,
        )


def _text(value: Any) -> str:
    """A metadata value read as text: bodies are not checked at the edge, so a list or a number where
    a name belongs is treated as absent rather than trusted."""
    return value if isinstance(value, str) else ""


def _meta(body: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not body:
        return {}
    meta = body.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _times(raw: AuditEvent) -> tuple[int | None, int]:
    received = raw.requestReceivedTimestamp or raw.timestamp
    stage = raw.stageTimestamp
    try:
        start = parse_time_us(received) if received else None
        end = parse_time_us(stage) if stage else None
    except (TypeError, ValueError, OverflowError):
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


def _failure_message(stage: str, status: ResponseStatus | None, status_body: Mapping[str, Any] | None) -> str:
    if stage == "Panic":
        return "Panic: the apiserver panicked while serving this request"
    body = status_body or {}
    reason = (
        (status.reason if status else "")
        or _text(body.get("reason"))
        or _status_text((status.code if status else None) or 0)
    )
    message = (status.message if status else "") or _text(body.get("message"))
    return f"{reason}: {message}" if message else reason
