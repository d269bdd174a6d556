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

from collections.abc import Iterable
from datetime import datetime

from kelemetry.metrics import OTHER, Labels, Registry
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
# Distinct label combinations remembered; past it the memory starts again (labels are unchanged).
MAX_CACHED = 100_000


class BoundedLabel:
    """The first ``limit`` distinct values keep their own label for the life of the process; the
    values after them are ``other`` (and are not remembered, so memory stays bounded too).
    ``admitted`` is read directly on the hot path: a hit is one dictionary lookup."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.admitted: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        label = self.admitted.get(value)
        if label is not None:
            return label
        if len(self.admitted) >= self.limit:
            return OTHER
        self.admitted[value] = value
        return value

    def __len__(self) -> int:
        return len(self.admitted)


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
            f"final stage). Users past the first {max_users} and resources past the first "
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
        self._cache: dict[tuple[str | int | None, ...], tuple[Labels, Labels]] = {}

    def observe(self, events: Iterable[AuditEvent], cluster: str) -> None:
        """Count a batch of one cluster. An event's labels are looked up by what they are made of
        (worked out once per distinct combination: admission is for life, so a label once given
        stays right), and the batch reaches the shared counter and histogram in one update each."""
        counts: dict[Labels, float] = {}
        durations: list[tuple[Labels, float]] = []
        cache = self._cache
        if len(cache) > MAX_CACHED:
            cache.clear()
        for event in events:
            if event.stage not in FINAL_STAGES:
                continue
            ref = event.objectRef
            status = event.responseStatus
            impersonated, user = event.impersonatedUser, event.user
            made_of = (
                cluster,
                *((ref.apiGroup, ref.resource, ref.subresource) if ref is not None else ("", "", "")),
                event.verb,
                status.code if status is not None else None,
                (impersonated.username if impersonated is not None else "")
                or (user.username if user is not None else ""),
            )
            labels = cache.get(made_of)
            if labels is None:
                labels = cache[made_of] = self._labels(*made_of)
            request, latency = labels
            counts[request] = counts.get(request, 0.0) + 1.0
            received, stage = event.requestReceivedTimestamp, event.stageTimestamp
            if received and stage:
                seconds = _duration(received, stage)
                if seconds is not None:
                    durations.append((latency, seconds))
        if counts:
            self.requests.add(counts.items())
        if durations:
            self.duration.observe_all(durations)

    def _labels(
        self,
        cluster: str,
        group: str,
        resource: str,
        subresource: str,
        verb: str,
        code: int | None,
        user: str,
    ) -> tuple[Labels, Labels]:
        """The labels of the request counter and of the latency histogram."""
        if not resource:
            group, resource = "", NONRESOURCE
        else:
            resource = f"{resource}/{subresource}" if subresource else resource
            # Admitted by group and resource together: "events" of two groups are two resources.
            if self.resources(f"{group}/{resource}") == OTHER:
                group = resource = OTHER
        verb = verb if verb in VERBS else OTHER
        shown_code = UNKNOWN if code is None else _CODES.get(code, OTHER)
        if not user:
            user = UNKNOWN
        elif user.startswith(_NODE_PREFIX):
            user = "system:node"
        return (cluster, group, resource, verb, shown_code, self.users(user)), (cluster, resource, verb)


def _duration(received: str, stage: str) -> float | None:
    """Seconds from one timestamp to the other (never negative); None when one is unreadable (the
    event is still counted)."""
    try:
        seconds = (datetime.fromisoformat(stage) - datetime.fromisoformat(received)).total_seconds()
    except (ValueError, TypeError):
        # Not a time the apiserver would write; a time with a zone minus one without is a TypeError.
        return None
    return max(seconds, 0.0)
