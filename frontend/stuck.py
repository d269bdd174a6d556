"""Stuck and failing Pods of an assembled trace: what the scheduler, the kubelet and evictions said
about each Pod, read from its requests, Events and diffs.

A Pod is listed when the data shows it

- **unscheduled**: ``FailedScheduling`` Events and no binding after them (a ``pods/binding`` create,
  ``spec.nodeName`` set, or a ``Scheduled`` Event);
- **crashlooping**: ``BackOff`` / ``CrashLoopBackOff`` Warnings, failed liveness or startup probes, or
  a container waiting in ``CrashLoopBackOff``, with no Ready Pod after them;
- **evicted**: a ``pods/eviction`` create, an ``Evicted`` / ``TaintManagerEviction`` Event, or
  ``status.reason`` set to ``Evicted``;
- **failed**: ``status.phase`` set to ``Failed``;
- **not-ready**: a Ready condition that was False (readiness probes failing, images not pulled) for
  longer than ``NOT_READY_AFTER_US`` and never True after it.

A Pod whose status is never shown (audit at Metadata level, no watch) is not guessed about: no
signal, no entry. One entry per Pod, in the most serious state it reached; ``reasons`` keeps every
signal seen. Time runs until ``now_us``, or until the Pod was deleted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict

from frontend import spanfacts
from frontend.types import AssembledTrace, SpanNode
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import KnownObject
from kelemetry.model.spans import SpanRecord

NOT_READY_AFTER_US = 5 * 60 * 1_000_000
"""How long a Pod's Ready condition may stay False before it counts as stuck: longer than a slow
image pull or a start-up probe, shorter than a Deployment's default progress deadline (10 min)."""

_UNSCHEDULED = "FailedScheduling"
_SCHEDULED = "Scheduled"
_CRASH_REASONS = frozenset({"BackOff", "CrashLoopBackOff"})
_EVICTION_REASONS = frozenset({"Evicted", "TaintManagerEviction", "Preempted", "Preempting"})
_PROBE = re.compile(r"^(Liveness|Startup|Readiness) probe", re.IGNORECASE)
_IMAGE_PULL = re.compile(r"pulling image|ImagePullBackOff|ErrImagePull", re.IGNORECASE)

CauseHook = Callable[[KnownObject, int], object | None]
"""The cause chain's first request for a Pod at a moment (wired by the explain answer)."""


class PodState(StrEnum):
    EVICTED = "evicted"
    FAILED = "failed"
    CRASHLOOPING = "crashlooping"
    UNSCHEDULED = "unscheduled"
    NOT_READY = "not-ready"


# The most serious state first: a Pod that crashlooped and was then evicted is listed as evicted.
_SEVERITY = (
    PodState.EVICTED,
    PodState.FAILED,
    PodState.CRASHLOOPING,
    PodState.UNSCHEDULED,
    PodState.NOT_READY,
)


class StuckPodJson(TypedDict):
    object: spanfacts.ObjectJson
    state: str
    since: str
    since_us: int
    for_seconds: float
    reasons: list[str]
    count: int
    cause: Any


@dataclass(frozen=True, slots=True)
class StuckPod:
    pod: KnownObject
    state: PodState
    since_us: int
    until_us: int
    """``now_us``, or when the Pod was deleted (then ``deleted`` is set)."""
    reasons: tuple[str, ...]
    count: int
    """How many times the signals of ``state`` were reported (Events counted by their count)."""
    deleted: bool = False
    cause: object | None = None
    """The cause hook's answer, as it gave it (a Step, or its JSON)."""

    @property
    def for_seconds(self) -> float:
        return round(max(self.until_us - self.since_us, 0) / 1_000_000, 3)

    def to_json(self) -> StuckPodJson:
        cause = self.cause
        to_json = getattr(cause, "to_json", None)
        return {
            "object": spanfacts.object_json(self.pod),
            "state": self.state.value,
            "since": spanfacts.format_time(self.since_us),
            "since_us": self.since_us,
            "for_seconds": self.for_seconds,
            "reasons": list(self.reasons),
            "count": self.count,
            "cause": to_json() if callable(to_json) else cause,
        }

    def text(self) -> str:
        key = self.pod.key
        gone = ", then deleted" if self.deleted else ""
        head = (
            f"Pod {key.namespace}/{key.name} {self.state.value} since {spanfacts.format_time(self.since_us)} "
            f"({_duration(self.for_seconds)}{gone}; {self.count}x)"
        )
        lines = [head, *(f"  {reason}" for reason in self.reasons)]
        if self.cause is not None:
            summary = getattr(self.cause, "text", None)
            lines.append(f"  started by: {summary() if callable(summary) else self.cause}")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 120:
        return f"{seconds:g}s"
    if whole < 2 * 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole // 60 % 60:02d}m"


@dataclass(slots=True)
class _Signals:
    """What one Pod's spans said, in time order."""

    first_us: int | None = None
    deleted_us: int | None = None
    bound_us: int | None = None
    ready_us: int | None = None
    """The last moment its Ready condition turned True."""
    not_ready_us: int | None = None
    """When its Ready condition was last seen False (None once True again)."""
    seen: dict[PodState, list[tuple[int, str, int]]] = field(default_factory=dict)
    """State -> (time, reason text, count) for each signal."""

    def add(self, state: PodState, time_us: int, text: str, count: int = 1) -> None:
        self.seen.setdefault(state, []).append((time_us, text, count))


def _event_count(span: SpanRecord) -> int:
    count = span.tags.get(tags.EVENT_COUNT)
    return count if isinstance(count, int) and count > 0 else 1


def _message(span: SpanRecord) -> str:
    return next((log.message for log in span.logs if log.kind == "message"), "")


def _read_event(span: SpanRecord, signals: _Signals) -> None:
    reason = str(span.tags.get(tags.EVENT_REASON) or span.name)
    kind = span.tags.get(tags.EVENT_TYPE)
    message = _message(span)
    text = f"{reason}: {message}" if message else reason
    if reason == _UNSCHEDULED:
        signals.add(PodState.UNSCHEDULED, span.start_us, text, _event_count(span))
    elif reason == _SCHEDULED:
        signals.bound_us = span.start_us
    elif reason in _EVICTION_REASONS:
        signals.add(PodState.EVICTED, span.start_us, text, _event_count(span))
    elif kind != "Warning":
        return
    elif reason in _CRASH_REASONS and not _IMAGE_PULL.search(message):
        signals.add(PodState.CRASHLOOPING, span.start_us, text, _event_count(span))
    elif reason == "Unhealthy" or _PROBE.match(message):
        # A failing readiness probe only keeps the Pod out of Services; liveness and start-up
        # failures restart its containers.
        readiness = message.lower().startswith("readiness")
        state = PodState.NOT_READY if readiness else PodState.CRASHLOOPING
        signals.add(state, span.start_us, text, _event_count(span))
    elif _IMAGE_PULL.search(message) or reason in ("Failed", "ErrImagePull", "ImagePullBackOff"):
        signals.add(PodState.NOT_READY, span.start_us, text, _event_count(span))


def _condition_status(line: spanfacts.DiffLine) -> str | None:
    """The new status of a Pod's Ready condition a diff line shows (None: not shown)."""
    if line.path == "status.conditions[type=Ready].status":
        value = line.new_value()
        return value if isinstance(value, str) else None
    if line.path == "status.conditions[type=Ready]":
        value = line.new_value()
        if isinstance(value, dict):
            status = value.get("status")
            return status if isinstance(status, str) else None
        found = re.search(r'"status":"(\w+)"', line.new)
        return found.group(1) if found else None
    return None


# The only paths a Pod's diff can say anything stuck-related by: lines are picked by these starts
# before they are parsed (a kubelet's status writes are most of a busy namespace's lines).
_SIGNAL_PATHS = (
    "spec.nodeName ",
    "status.phase ",
    "status.reason ",
    "status.containerStatuses[",
    "status.conditions[type=Ready]",
)


SIGNAL_TEXTS = (
    b"spec.nodeName",
    b"status.phase",
    b"status.reason",
    b"waiting.reason",
    b"status.conditions[type=Ready]",
)
"""What a Pod's update or patch must mention to say anything here (each line ``_read_diff`` reads
holds one): a backend may leave out the rest (``Backend.states``), and the answer is the same."""


def _signal_lines(span: SpanRecord) -> Iterator[spanfacts.DiffLine]:
    for log in span.logs:
        if log.kind != "diff":
            continue
        for text in log.message.splitlines():
            if text.startswith(_SIGNAL_PATHS):
                parsed = spanfacts.parse_line(text)
                if parsed is not None:
                    yield parsed


def _who(span: SpanRecord) -> str:
    return spanfacts.who(span) if span.source is TraceSource.AUDIT else "a watched change"


def _read_diff(span: SpanRecord, signals: _Signals) -> None:
    # Who made the write is only put in words for a signal (formatting it for every write of every
    # Pod cost more than reading them).
    for line in _signal_lines(span):
        if line.path == "spec.nodeName" and line.new != "null":
            signals.bound_us = span.start_us
        elif line.path == "status.phase" and line.new_value() == "Failed":
            signals.add(
                PodState.FAILED, span.start_us, f"status.phase {line.old} -> {line.new} ({_who(span)})"
            )
        elif line.path == "status.reason" and line.new_value() == "Evicted":
            signals.add(PodState.EVICTED, span.start_us, f'status.reason -> "Evicted" ({_who(span)})')
        elif line.path.startswith("status.containerStatuses[") and line.path.endswith(".waiting.reason"):
            if line.new_value() == "CrashLoopBackOff":
                signals.add(PodState.CRASHLOOPING, span.start_us, f"{line.text} ({_who(span)})")
        else:
            status = _condition_status(line)
            if status == "True":
                signals.ready_us = span.start_us
                signals.not_ready_us = None
            elif status == "False" and signals.not_ready_us is None:
                signals.not_ready_us = span.start_us


def _read_request(span: SpanRecord, signals: _Signals) -> None:
    verb = span.tags.get(tags.AUDIT_VERB)
    subresource = span.tags.get(tags.AUDIT_SUBRESOURCE)
    ok = spanfacts.succeeded(span)
    if verb == "create" and subresource == "binding" and ok:
        signals.bound_us = span.start_us
    elif verb == "create" and subresource == "eviction" and ok:
        signals.add(PodState.EVICTED, span.start_us, f"eviction requested by {spanfacts.who(span)}")
    elif verb == "delete" and not subresource and ok and signals.deleted_us is None:
        # The first delete that succeeded: the Pod is going (a graceful delete is seen again at 0s).
        signals.deleted_us = span.start_us


def read_pod(node: SpanNode) -> _Signals:
    signals = _Signals()
    spans = sorted(
        (child.span for child in node.children if child.span.source is not TraceSource.OBJECT),
        key=lambda span: span.start_us,
    )
    for span in spans:
        if signals.first_us is None:
            signals.first_us = span.start_us
        if span.source is TraceSource.EVENT:
            _read_event(span, signals)
            continue
        if span.source is TraceSource.AUDIT:
            _read_request(span, signals)
        _read_diff(span, signals)
    return signals


def _judge(pod: KnownObject, signals: _Signals, now_us: int) -> StuckPod | None:
    until = signals.deleted_us if signals.deleted_us is not None else now_us
    seen = dict(signals.seen)
    unscheduled = seen.get(PodState.UNSCHEDULED)
    if unscheduled and signals.bound_us is not None and signals.bound_us >= unscheduled[-1][0]:
        del seen[PodState.UNSCHEDULED]  # it was scheduled in the end
    for recoverable in (PodState.CRASHLOOPING, PodState.NOT_READY):
        found = seen.get(recoverable)
        if found and signals.ready_us is not None and signals.ready_us >= found[-1][0]:
            del seen[recoverable]  # Ready again after the last complaint
    if signals.not_ready_us is not None and until - signals.not_ready_us >= NOT_READY_AFTER_US:
        seen.setdefault(PodState.NOT_READY, []).insert(
            0, (signals.not_ready_us, "Ready condition False and never True since", 1)
        )
    state = next((state for state in _SEVERITY if seen.get(state)), None)
    if state is None:
        return None
    signals_of = seen[state]
    since = min(time for time, _text, _count in signals_of)
    # Repeated Events carry their running count: the largest per text is how often it was said.
    counts: dict[str, int] = {}
    for _time, text, count in signals_of:
        counts[text] = max(counts.get(text, 0), count)
    others = [text for other in _SEVERITY if other is not state for _t, text, _c in seen.get(other, [])]
    reasons = tuple(dict.fromkeys([*(text for _t, text, _c in signals_of), *others]))
    return StuckPod(
        pod=pod,
        state=state,
        since_us=since,
        until_us=max(until, since),
        reasons=reasons,
        count=sum(counts.values()),
        deleted=signals.deleted_us is not None,
    )


def is_pod(span: SpanRecord) -> bool:
    return span.source is TraceSource.OBJECT and span.key.group == "" and span.key.resource == "pods"


Judged = dict[int, "StuckPod | None"]
"""Pods already judged (by object id) at one ``now_us``: the rollouts and the stuck list of one
answer read the same Pods, once."""


def stuck_pods(
    trace: AssembledTrace,
    now_us: int,
    cause_of: CauseHook | None = None,
    *,
    under: SpanNode | None = None,
    judged: Judged | None = None,
) -> list[StuckPod]:
    """The stuck or failing Pods of the trace (or of the subtree ``under``), the longest stuck first;
    ``judged`` keeps each Pod's verdict for the next call of the same answer."""
    root = under if under is not None else trace.root
    found: list[StuckPod] = []
    stack = [root]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if not is_pod(node.span):
            continue
        object_id = node.span.object_id
        if judged is not None and object_id in judged:
            stuck = judged[object_id]
        else:
            stuck = _judge(spanfacts.object_of(node.span), read_pod(node), now_us)
            if judged is not None:
                judged[object_id] = stuck
        if stuck is None:
            continue
        if cause_of is not None:
            stuck = StuckPod(
                stuck.pod,
                stuck.state,
                stuck.since_us,
                stuck.until_us,
                stuck.reasons,
                stuck.count,
                stuck.deleted,
                cause_of(stuck.pod, stuck.since_us),
            )
        found.append(stuck)
    found.sort(key=lambda item: (item.since_us, item.pod.key.name))
    return found


def stuck_below(
    trace: AssembledTrace,
    target: KnownObject,
    now_us: int,
    cause_of: CauseHook | None = None,
    judged: Judged | None = None,
) -> list[StuckPod]:
    """The stuck or failing Pods at or below ``target`` in the trace (the explain answer's list):
    [] when the target is not in it."""
    node = next(
        (
            node
            for node in trace.walk()
            if node.span.source is TraceSource.OBJECT and node.span.object_id == target.object_id
        ),
        None,
    )
    return [] if node is None else stuck_pods(trace, now_us, cause_of, under=node, judged=judged)
