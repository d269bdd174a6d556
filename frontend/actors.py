"""Who did what: a stored request as the causal answers show it, and whether a person or a
controller made it.

Pure: spans in, frozen values and their JSON out. The cause chain (``frontend.causes``) and field
blame (``frontend.blame``) both name requests this way, so a request reads the same in both.

Human or controller is decided from the authenticated user alone, as the audit event names it:

- ``system:serviceaccount:<namespace>:<name>`` — a controller (kube-system's built-in controllers,
  and operators running under their own service accounts);
- any other ``system:`` user — a control-plane component or a node (``system:kube-scheduler``,
  ``system:node:<node>``, ``system:apiserver``);
- a user that is none of these but whose user agent names a controller program (a name ending in
  ``controller-manager``, ``-controller`` or ``-operator``, or a control-plane component such as
  ``kube-scheduler``, ``kubelet``, ``kwok``): a controller that authenticates with its own
  certificate, as KubeAdmiral's controller manager does in its host cluster (user ``kubeadmiral``);
- anyone else — a human (kubectl users, SSO identities, scripts run by people);
- no user (a watched change no audit event claimed, an Event) — unknown.

A person who uses a service account's token is counted as a controller: the audit event cannot
tell them apart, and the answers say whose credentials were used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from frontend import spanfacts
from frontend.spanfacts import ObjectJson, RequestJson, format_time, request_json
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.spans import SpanRecord

Actor = Literal["human", "controller", "unknown"]

SERVICE_ACCOUNT = "system:serviceaccount:"
SYSTEM = "system:"


CONTROLLER_PROGRAMS = frozenset(
    {"kube-scheduler", "kubelet", "kube-proxy", "kwok", "cloud-controller-manager"}
)
CONTROLLER_SUFFIXES = ("controller-manager", "-controller", "-operator")


def actor_of(user: str | None, user_agent: str | None = None) -> Actor:
    if not user:
        return "unknown"
    if user.startswith(SYSTEM):
        return "controller"
    program = short_agent(user_agent).lower()
    if program in CONTROLLER_PROGRAMS or program.endswith(CONTROLLER_SUFFIXES):
        return "controller"
    return "human"


def short_user(user: str | None) -> str:
    """A user as an incident note names it: a service account by its name alone."""
    if not user:
        return "(unknown)"
    if user.startswith(SERVICE_ACCOUNT):
        return user.rsplit(":", 1)[-1]
    return user


def short_agent(agent: str | None) -> str:
    """The program of a user agent (``kubectl/v1.33.13 (linux/amd64) ...`` → ``kubectl``)."""
    if not agent:
        return ""
    return agent.split("/", 1)[0].split(" ", 1)[0]


def _text(value: object) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Request:
    """One audited request: who, with what, what it did, when and how it ended."""

    time_us: int
    user: str
    user_agent: str
    verb: str
    subresource: str
    code: int | None
    audit_id: str
    span_id: int
    trace_id: int
    span: SpanRecord
    """The audit span it was read from: its JSON comes from the one builder every answer shares."""

    @property
    def actor(self) -> Actor:
        return actor_of(self.user, self.user_agent)

    @property
    def succeeded(self) -> bool:
        # A request whose answer is not recorded is taken at its word; a 4xx/5xx changed nothing.
        return self.code is None or 200 <= self.code < 300

    def to_json(self) -> RequestJson:
        return request_json(self.span)

    def text(self) -> str:
        """``admin (kubectl) patch deployments/scale → 200 at 2026-...Z [audit 9a14...]``."""
        agent = short_agent(self.user_agent)
        who = f"{self.user or '(unknown user)'}" + (f" ({agent})" if agent else "")
        what = self.verb + (f" {self.subresource}" if self.subresource else "")
        code = f" → {self.code}" if self.code is not None else ""
        audit = f" [audit {self.audit_id}]" if self.audit_id else ""
        return f"{who} {what}{code} at {format_time(self.time_us)}{audit}"


def request_of(span: SpanRecord) -> Request | None:
    """The request an audit span records; None for Events, watched changes and object spans."""
    if span.source is not TraceSource.AUDIT:
        return None
    code = span.tags.get(tags.AUDIT_CODE)
    return Request(
        time_us=span.start_us,
        user=_text(span.tags.get(tags.AUDIT_USER)),
        user_agent=_text(span.tags.get(tags.AUDIT_USER_AGENT)),
        verb=_text(span.tags.get(tags.AUDIT_VERB)),
        subresource=_text(span.tags.get(tags.AUDIT_SUBRESOURCE)),
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        audit_id=_text(span.tags.get(tags.AUDIT_ID)),
        span_id=span.span_id,
        trace_id=span.trace_id,
        span=span,
    )


def diff_lines(span: SpanRecord) -> list[str]:
    """The ``path old -> new`` lines a request or watched change carries."""
    return [line for log in span.logs if log.kind == "diff" for line in log.message.splitlines() if line]


def object_of(span: SpanRecord) -> ObjectJson:
    """The object a span belongs to, as the lookups name objects."""
    return spanfacts.object_json(spanfacts.object_of(span))


def object_text(span: SpanRecord, *, cluster: bool = False) -> str:
    """``Pod default/demo-5544f8b48c-bq8vc`` (the kind, else the resource), and its cluster."""
    key = span.key
    where = f"{key.namespace}/" if key.namespace else ""
    kind = span.kind or key.display.split("/", 1)[0]
    place = f" (cluster {key.cluster})" if cluster and key.cluster else ""
    return f"{kind} {where}{key.name}{place}"


def was_deleted(activity: Iterable[SpanRecord]) -> bool:
    """Whether a successful delete of the object (requested or watched) is among its activity."""
    for span in activity:
        verb = span.tags.get(tags.AUDIT_VERB) or span.tags.get(tags.CHANGE_VERB)
        if verb not in ("delete", "deleted", "deletecollection"):
            continue
        request = request_of(span)
        if request is None or request.succeeded:
            return True
    return False
