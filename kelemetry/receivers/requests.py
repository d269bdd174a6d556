"""Request metrics derived from the audit stream: what the cluster's apiserver was asked, by whom,
how it answered and how long it took (the idea of the original's kelemetrix).

Every audit event the pipeline sees passes through ``RequestMetrics.observe`` — reads and watches
too, which the traces leave out — but only at its final stage (``ResponseComplete``, or ``Panic``
for a request that never completed), so a request is counted once however many stages the audit
policy records. It runs on the ingest worker's hot path: a few dictionary lookups and two
timestamp parses per event, no body is looked at.

Label values are bounded, so a busy or hostile cluster cannot grow the series without limit:

- ``user``: the acting user (the impersonated one when a request impersonates); every node's
  ``system:node:<name>`` is one ``system:node``. The first ``max_users`` distinct users seen since
  the process started keep their own label for as long as it runs; later ones are ``other``. That
  is stable — a user's series never changes meaning, and counters stay monotonic — and costs one
  dictionary lookup; in a real cluster the first users are the control plane's controllers and the
  people and operators active at start, which are the ones a dashboard is about. Raise the bound
  (``--request-metrics-users``) to see more of them.
- ``group`` and ``resource``: resource requests as ``resource`` or ``resource/subresource`` (as
  RBAC spells them); the first ``max_resources`` distinct ones keep their label, later ones are
  ``other``. Requests for non-resource URLs (``/healthz``, ``/version``) are resource
  ``nonresource``.
- ``verb``: Kubernetes' verbs (and the HTTP verbs of non-resource requests); anything else ``other``.
- ``code``: the exact HTTP status (404, 409 and 429 mean different things to an operator), within
  100–599; outside it ``other``; an event without a status ``unknown``.
- ``cluster``: the clusters that send audit to this collector.

The duration is ``stageTimestamp - requestReceivedTimestamp`` as the apiserver wrote them
(microsecond precision), so it is the apiserver's own latency, not ours. A long watch lands in the
``+Inf`` bucket of its own ``verb="watch"`` series and does not disturb the others.
"""

from __future__ import annotations

from datetime import datetime

from kelemetry.metrics import OTHER, Registry
from kelemetry.receivers.auditwire import AuditEvent

DEFAULT_MAX_USERS = 20
DEFAULT_MAX_RESOURCES = 100
FINAL_STAGES = frozenset({"ResponseComplete", "Panic"})
NONRESOURCE = "nonresource"
UNKNOWN = "unknown"
VERBS = frozenset(
    {
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        # Non-resource requests carry the lowercase HTTP method.
        "post",
        "put",
        "head",
        "options",
    }
)
# Apiserver latencies: 5 ms to a minute (its request timeout); watches past it land in +Inf.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_CODES = {code: str(code) for code in range(100, 600)}
_NODE_PREFIX = "system:node:"


class BoundedLabel:
    """The first ``limit`` distinct values keep their own label for the life of the process; the
    values after them are ``other`` (and are not remembered, so memory stays bounded too)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._admitted: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        label = self._admitted.get(value)
        if label is not None:
            return label
        if len(self._admitted) >= self.limit:
            return OTHER
        self._admitted[value] = value
        return value

    def __len__(self) -> int:
        return len(self._admitted)


class RequestMetrics:
    """``kelemetry_audit_requests_total`` and ``kelemetry_audit_request_duration_seconds``."""

    def __init__(
        self,
        registry: Registry,
        *,
        max_users: int = DEFAULT_MAX_USERS,
        max_resources: int = DEFAULT_MAX_RESOURCES,
    ) -> None:
        self.requests = registry.counter(
            "kelemetry_audit_requests_total",
            "Requests the apiserver completed, from its audit stream (all verbs, counted once, at the "
            "final stage). Users past the first --request-metrics-users and resources past the first "
            f"{max_resources} are 'other'.",
            ("cluster", "group", "resource", "verb", "code", "user"),
        )
        self.duration = registry.histogram(
            "kelemetry_audit_request_duration_seconds",
            "How long the apiserver took per request: stageTimestamp - requestReceivedTimestamp of its "
            "final audit stage.",
            ("cluster", "resource", "verb"),
            buckets=DURATION_BUCKETS,
        )
        self.users = BoundedLabel(max_users)
        self.resources = BoundedLabel(max_resources)

    def observe(self, event: AuditEvent, cluster: str) -> None:
        if event.stage not in FINAL_STAGES:
            return
        ref = event.objectRef
        if ref is None or not ref.resource:
            group, resource = "", NONRESOURCE
        else:
            group = ref.apiGroup
            resource = f"{ref.resource}/{ref.subresource}" if ref.subresource else ref.resource
            # Admitted by group and resource together: "events" of two groups are two resources.
            label = self.resources(f"{group}/{resource}")
            if label == OTHER:
                group = resource = OTHER
        verb = event.verb if event.verb in VERBS else OTHER
        status = event.responseStatus
        code = UNKNOWN if status is None or status.code is None else _CODES.get(status.code, OTHER)
        self.requests.inc((cluster, group, resource, verb, code, self.users(_user_of(event))))
        seconds = _duration(event.requestReceivedTimestamp, event.stageTimestamp)
        if seconds is not None:
            self.duration.observe((cluster, resource, verb), seconds)


def _duration(received: str, stage: str) -> float | None:
    """Seconds from one timestamp to the other (never negative); None when either is missing or
    unreadable (the event is still counted)."""
    if not received or not stage:
        return None
    try:
        seconds = (datetime.fromisoformat(stage) - datetime.fromisoformat(received)).total_seconds()
    except (ValueError, TypeError):
        # Not a time the apiserver would write; a time with a zone minus one without is a TypeError.
        return None
    return max(seconds, 0.0)


def _user_of(event: AuditEvent) -> str:
    impersonated, user = event.impersonatedUser, event.user
    name = (impersonated.username if impersonated is not None else "") or (
        user.username if user is not None else ""
    )
    if not name:
        return UNKNOWN
    if name.startswith(_NODE_PREFIX):
        return "system:node"
    return name
