"""GKE Cloud Logging entries of Kubernetes audit logs → audit Events.

A managed cluster's audit log is read from Cloud Logging, where each request is a ``LogEntry``
whose ``protoPayload`` is a ``google.cloud.audit.AuditLog``. The same facts as an audit Event sit
under other names:

    protoPayload.methodName        io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>
    protoPayload.resourceName      <group>/<version>/[namespaces/<ns>/]<resource>[/<name>[/<subresource>]]
    authenticationInfo.principalEmail   the user
    requestMetadata.callerIp / callerSuppliedUserAgent   source IP, user agent
    status.code                    a gRPC code (0 = OK), mapped back to the HTTP code
    request / response             the bodies, each tagged with an ``@type`` that is not the object's
    timestamp                      when the apiserver handled the request (receiveTimestamp is when
                                   Logging got it, the fallback)
    operation.id / insertId        the audit ID

The core group is spelled ``core`` in both names. This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from kelemetry import errors
from kelemetry.receivers.auditwire import (
    EMPTY,
    AuditEvent,
    ObjectReference,
    ResponseStatus,
    UserInfo,
    encode_body,
)

AUDIT_LOG_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"
METHOD_PREFIX = "io.k8s."

# google.rpc.Code → the HTTP status the apiserver answered (the mapping google.rpc documents).
GRPC_TO_HTTP = {
    1: 499,  # CANCELLED
    2: 500,  # UNKNOWN
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    15: 500,  # DATA_LOSS
    16: 401,  # UNAUTHENTICATED
}


def is_log_entry(document: Mapping[str, Any]) -> bool:
    return isinstance(document.get("protoPayload"), dict)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _body(value: Any) -> Any:
    """A request/response as the apiserver saw it: the ``@type`` Logging adds is not part of it."""
    if isinstance(value, dict) and "@type" in value:
        value = {k: v for k, v in value.items() if k != "@type"}
    return value


def _split_method(method: str, version: str) -> tuple[str, str, str]:
    """(resource, subresource, verb) of ``io.k8s.apps.v1.deployments.scale.update``. The group may
    hold dots, so the parts are found after the version named by resourceName."""
    parts = method.removeprefix(METHOD_PREFIX).split(".")
    verb = parts[-1] if parts else ""
    rest = parts[:-1]
    at = len(rest) - 1 - rest[::-1].index(version) if version in rest else -1
    if at < 0 or at + 1 >= len(rest):
        return "", "", verb
    after = rest[at + 1 :]
    return after[0], ".".join(after[1:2]), verb


def _object_ref(resource_name: str, method: str) -> tuple[ObjectReference, str]:
    """The objectRef and the verb of an entry."""
    segments = [s for s in resource_name.split("/") if s]
    if len(segments) < 3:
        raise errors.WrongKind(f"resourceName {resource_name!r} names no Kubernetes resource")
    group = "" if segments[0] == "core" else segments[0]
    version = segments[1]
    rest = segments[2:]
    resource, subresource, verb = _split_method(method, version)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3 and resource != "namespaces":
        namespace, rest = rest[1], rest[2:]
    if resource and rest[0] != resource:
        raise errors.WrongKind(f"resourceName {resource_name!r} does not name the {resource} of {method!r}")
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else subresource
    ref = ObjectReference(
        resource=resource,
        namespace=namespace,
        name=name,
        apiGroup=group,
        apiVersion=version,
        subresource=subresource,
    )
    return ref, verb


def _uid(request: Any, response: Any) -> str:
    """The object's uid, which resourceName does not carry (a patch names it in its body)."""
    for body in (response, request):
        meta = body.get("metadata") if isinstance(body, dict) else None
        if isinstance(meta, dict) and _text(meta.get("uid")):
            return _text(meta.get("uid"))
    return ""


def to_audit_event(entry: Mapping[str, Any]) -> AuditEvent:
    """The audit Event a LogEntry records; ``WrongKind`` with the reason when it records none."""
    payload = entry.get("protoPayload")
    if not isinstance(payload, dict):
        raise errors.WrongKind("a Cloud Logging entry without protoPayload: not an audit log entry")
    kind = _text(payload.get("@type"))
    method = _text(payload.get("methodName"))
    if kind and kind != AUDIT_LOG_TYPE:
        raise errors.WrongKind(f"a Cloud Logging entry of type {kind!r}, not an AuditLog")
    if not method.startswith(METHOD_PREFIX):
        raise errors.WrongKind(
            f"a Cloud Logging audit entry for {method or 'no method'!r}, not a Kubernetes API request"
        )
    ref, verb = _object_ref(_text(payload.get("resourceName")), method)
    operation = _mapping(entry.get("operation"))
    audit_id = _text(operation.get("id")) or _text(entry.get("insertId"))
    if not audit_id or not verb:
        raise errors.WrongKind("a Cloud Logging audit entry without insertId or operation.id")
    # A long request (watch, exec) logs a first entry when it starts and a last when it ends.
    stage = "ResponseStarted" if operation.get("last") is False else "ResponseComplete"
    when = _text(entry.get("timestamp")) or _text(entry.get("receiveTimestamp"))

    request = _body(payload.get("request"))
    response = _body(payload.get("response"))
    ref = msgspec.structs.replace(ref, uid=_uid(request, response))

    status = _mapping(payload.get("status"))
    grpc_code = status.get("code", 0)
    grpc_code = grpc_code if isinstance(grpc_code, int) else 2
    if grpc_code == 0:
        # The apiserver answers 201 to a create that made an object, 200 to every other success.
        code = 201 if verb == "create" and isinstance(response, dict) else 200
    else:
        code = GRPC_TO_HTTP.get(grpc_code, 500)
    message = _text(status.get("message"))

    authn = _mapping(payload.get("authenticationInfo"))
    metadata = _mapping(payload.get("requestMetadata"))
    caller_ip = _text(metadata.get("callerIp"))
    return AuditEvent(
        auditID=audit_id,
        stage=stage,
        verb=verb,
        kind="Event",
        apiVersion="audit.k8s.io/v1",
        user=UserInfo(username=_text(authn.get("principalEmail"))),
        userAgent=_text(metadata.get("callerSuppliedUserAgent")),
        sourceIPs=(caller_ip,) if caller_ip else (),
        objectRef=ref,
        responseStatus=ResponseStatus(
            code=code, status="Success" if code < 400 else "Failure", message=message
        ),
        requestObject=encode_body(request) if request is not None else EMPTY,
        responseObject=encode_body(response) if response is not None else EMPTY,
        requestReceivedTimestamp=when,
        stageTimestamp=when,
    )
