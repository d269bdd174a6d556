"""Rollout phases of a Deployment, StatefulSet or DaemonSet, read from its assembled trace.

Each revision of the workload's Pod template is one ``Rollout``: which object holds it (the
Deployment's ReplicaSet, the ControllerRevision), who started it (the request whose diff changed
``spec.template``, or the workload's create), what it changed, when it started and finished, and
whether it is stuck or was superseded before it finished.

What the spans carry, and so what is read:

- **Deployment**: the ``deployment.kubernetes.io/revision`` annotation the deployment controller
  sets (a diff line on the Deployment) numbers the revisions; its ``Progressing`` condition names
  the ReplicaSet (``Created new replica set "x"``) and says when it is done
  (``NewReplicaSetAvailable``) or stuck (``ProgressDeadlineExceeded``).
- **StatefulSet**: ``status.updateRevision`` names the ControllerRevision of a new revision;
  it is done when ``status.currentRevision`` reaches it with every replica updated.
- **DaemonSet**: its status names no revision: each ControllerRevision it owns is one (the
  ControllerRevision's create is its start), or else each change of its template; it is done when
  every scheduled Pod is updated and available for the generation that changed.

ControllerRevisions are traced like any owned object (the default exclusions are Events and Leases
only, and the recommended audit policy logs their writes), but they are not among the objects
watched by default: without audit they are missing, and a revision is then named by its hash.
A revision is ``stuck`` on ``ProgressDeadlineExceeded``, or when Pods of it have been stuck or not
ready (``frontend.stuck``) for ``STUCK_AFTER_US``; nothing is guessed from silence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict

from frontend import spanfacts, stuck
from frontend.types import AssembledTrace, SpanNode
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import KnownObject
from kelemetry.model.spans import SpanRecord

STUCK_AFTER_US = stuck.NOT_READY_AFTER_US
"""How long Pods of an unfinished revision may stay stuck before the rollout counts as stuck."""

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
_REVISION_PATH = f'metadata.annotations["{REVISION_ANNOTATION}"]'
_PROGRESSING = "status.conditions[type=Progressing]"
_RS_NAMED = re.compile(r'(?:replica set|ReplicaSet) \\?"([^"\\]+)\\?"')
_TEMPLATE = re.compile(r"^spec\.template(?:$|[.\[])")

_DEPLOYMENT_DONE = "finished when its Progressing condition turned NewReplicaSetAvailable"
_STS_DONE = "finished when status.currentRevision reached it with every replica updated"
_DS_DONE = "finished when every scheduled Pod was updated and available"
_WORKLOADS = {("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets")}
_BELOW = {("apps", "replicasets"), ("", "pods"), ("apps", "controllerrevisions")}


class RolloutState(StrEnum):
    COMPLETE = "complete"
    PROGRESSING = "progressing"
    STUCK = "stuck"
    SUPERSEDED = "superseded"


class RolloutJson(TypedDict):
    workload: spanfacts.ObjectJson
    revision: str
    object: spanfacts.ObjectJson | None
    started: str
    started_us: int
    finished: str | None
    finished_us: int | None
    state: str
    trigger: spanfacts.RequestJson | None
    changes: list[str]
    reason: str


@dataclass(frozen=True, slots=True)
class Rollout:
    workload: KnownObject
    revision: str
    holder: KnownObject | None
    """The ReplicaSet or ControllerRevision of the revision (None: not in the data)."""
    started_us: int
    finished_us: int | None
    state: RolloutState
    trigger: SpanRecord | None
    changes: tuple[str, ...]
    reason: str

    def to_json(self) -> RolloutJson:
        return {
            "workload": spanfacts.object_json(self.workload),
            "revision": self.revision,
            "object": None if self.holder is None else spanfacts.object_json(self.holder),
            "started": spanfacts.format_time(self.started_us),
            "started_us": self.started_us,
            "finished": None if self.finished_us is None else spanfacts.format_time(self.finished_us),
            "finished_us": self.finished_us,
            "state": self.state.value,
            "trigger": None if self.trigger is None else spanfacts.request_json(self.trigger),
            "changes": list(self.changes),
            "reason": self.reason,
        }

    def text(self) -> str:
        holder = (
            f" ({self.holder.kind or self.holder.key.resource} {self.holder.key.name})" if self.holder else ""
        )
        by = (
            f" by {spanfacts.actor(self.trigger)}"
            if self.trigger is not None
            else " (trigger not in the data)"
        )
        when = f"started {spanfacts.format_time(self.started_us)}{by}"
        if self.finished_us is not None:
            when += f"; finished {spanfacts.short_time(self.finished_us)}"
        lines = [
            f"{spanfacts.describe(self.workload)} revision {self.revision}{holder}: "
            f"{self.state.value}; {when}",
            *(f"  {change}" for change in self.changes),
        ]
        if self.reason:
            lines.append(f"  {self.reason}")
        return "\n".join(lines)


# -- reading the workload's spans


def _own_spans(node: SpanNode) -> list[SpanRecord]:
    return sorted(
        (child.span for child in node.children if child.span.source is not TraceSource.OBJECT),
        key=lambda span: span.start_us,
    )


def _owned(node: SpanNode, group: str, resource: str) -> list[SpanNode]:
    return [
        child
        for child in node.children
        if child.span.source is TraceSource.OBJECT
        and child.span.key.group == group
        and child.span.key.resource == resource
    ]


def _first_us(node: SpanNode) -> int:
    spans = _own_spans(node)
    return spans[0].start_us if spans else node.span.start_us


@dataclass(frozen=True, slots=True)
class _Template:
    """A request (or watched change) that set the Pod template: a change of it, or the create."""

    span: SpanRecord
    lines: tuple[str, ...]


def _templates(spans: list[SpanRecord]) -> list[_Template]:
    found: list[_Template] = []
    for span in spans:
        if span.source is TraceSource.AUDIT and not spanfacts.succeeded(span):
            continue
        verb = span.tags.get(tags.AUDIT_VERB)
        if (
            span.source is TraceSource.AUDIT
            and verb == "create"
            and not span.tags.get(tags.AUDIT_SUBRESOURCE)
        ):
            found.append(_Template(span, ()))
            continue
        lines = tuple(line.text for line in spanfacts.diff_lines(span) if _TEMPLATE.match(line.path))
        if lines:
            found.append(_Template(span, lines))
    return found


def _trigger(templates: list[_Template], after_us: int | None, at_us: int) -> _Template | None:
    """The newest template write at or before ``at_us`` and after the previous revision began."""
    chosen = None
    for template in templates:
        if template.span.start_us > at_us:
            break
        if after_us is None or template.span.start_us > after_us:
            chosen = template
    return chosen


def _deleted_us(spans: list[SpanRecord]) -> int | None:
    for span in spans:
        if (
            span.tags.get(tags.AUDIT_VERB) == "delete"
            and not span.tags.get(tags.AUDIT_SUBRESOURCE)
            and spanfacts.succeeded(span)
        ):
            return span.start_us
    return None


@dataclass(slots=True)
class _Phase:
    """One revision as the scan finds it, before it is judged."""

    revision: str
    start_us: int
    holder: SpanNode | None = None
    holder_name: str | None = None
    finished_us: int | None = None
    deadline: str | None = None
    """The ProgressDeadlineExceeded message, when the workload said so."""
    generation: int | None = None
    numbered: bool = True
    """False when the revision's number is not in the data (then it is named by its object)."""
    done_when: str = ""
    """What showed it finished."""


# -- Deployments


def _condition_fields(line: spanfacts.DiffLine) -> dict[str, str]:
    """reason/message of the Progressing condition a line shows (a whole condition, or one field)."""
    if line.path == _PROGRESSING:
        value = line.new_value()
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k in ("reason", "message") and isinstance(v, str)}
        # An abbreviated condition still shows its leading fields.
        found = {}
        for name in ("reason", "message"):
            match = re.search(rf'"{name}":"((?:[^"\\]|\\.)*)"', line.new)
            if match:
                found[name] = match.group(1)
        return found
    for name in ("reason", "message"):
        if line.path == f"{_PROGRESSING}.{name}":
            value = line.new_value()
            return {name: value} if isinstance(value, str) else {}
    return {}


def _revision_of(line: spanfacts.DiffLine) -> str | None:
    if line.path == _REVISION_PATH:
        value = line.new_value()
        return value if isinstance(value, str) else None
    if line.path == "metadata.annotations":
        value = line.new_value()
        if isinstance(value, dict) and isinstance(value.get(REVISION_ANNOTATION), str):
            revision: str = value[REVISION_ANNOTATION]
            return revision
    return None


def _deployment_phases(node: SpanNode, spans: list[SpanRecord]) -> list[_Phase]:
    replica_sets = {child.span.key.name: child for child in _owned(node, "apps", "replicasets")}
    phases: list[_Phase] = []
    current: str | None = None
    for span in spans:
        fields: dict[str, str] = {}
        for line in spanfacts.diff_lines(span):
            revision = _revision_of(line)
            if revision is not None and revision != current:
                current = revision
                phases.append(_Phase(revision, span.start_us, done_when=_DEPLOYMENT_DONE))
            fields.update(_condition_fields(line))
        if not phases or not fields:
            continue
        phase = phases[-1]
        named = _RS_NAMED.search(fields.get("message", ""))
        if named and phase.holder_name is None and phase.finished_us is None:
            phase.holder_name = named.group(1)
        same = named is None or phase.holder_name is None or named.group(1) == phase.holder_name
        reason = fields.get("reason")
        if reason == "NewReplicaSetAvailable" and same and phase.finished_us is None:
            phase.finished_us = span.start_us
        elif reason == "ProgressDeadlineExceeded" and phase.finished_us is None:
            phase.deadline = (
                f"ProgressDeadlineExceeded: {fields.get('message', 'the progress deadline passed')}"
            )
    if not phases:
        # No revision annotation in the data (no audit bodies): each ReplicaSet the Deployment
        # created is a revision of unknown number.
        for child in sorted(replica_sets.values(), key=_first_us):
            phases.append(
                _Phase(child.span.key.name, _first_us(child), child, child.span.key.name, numbered=False)
            )
        return phases
    for phase in phases:
        if phase.holder_name is not None:
            phase.holder = replica_sets.get(phase.holder_name)
    return phases


# -- StatefulSets and DaemonSets


def _status_scan(spans: list[SpanRecord]) -> list[tuple[SpanRecord, dict[str, Any]]]:
    """The workload's top-level spec/status/metadata numbers and names after each span."""
    state: dict[str, Any] = {}
    after: list[tuple[SpanRecord, dict[str, Any]]] = []
    for span in spans:
        changed = False
        for line in spanfacts.diff_lines(span):
            if line.path.count(".") == 1 and line.path.split(".")[0] in ("status", "spec", "metadata"):
                state[line.path] = line.new_value()
                changed = True
            elif line.path == "status" and isinstance(value := line.new_value(), dict):
                state.update({f"status.{k}": v for k, v in value.items()})
                changed = True
        if changed:
            after.append((span, dict(state)))
    return after


def _statefulset_phases(node: SpanNode, spans: list[SpanRecord]) -> list[_Phase]:
    revisions = {child.span.key.name: child for child in _owned(node, "apps", "controllerrevisions")}
    phases: list[_Phase] = []
    for span, state in _status_scan(spans):
        update = state.get("status.updateRevision")
        if isinstance(update, str) and (not phases or phases[-1].revision != update):
            phases.append(_Phase(update, span.start_us, revisions.get(update), update, done_when=_STS_DONE))
        if not phases or phases[-1].finished_us is not None:
            continue
        replicas = state.get("status.replicas")
        updated = state.get("status.updatedReplicas")
        if state.get("status.currentRevision") == phases[-1].revision and (
            replicas is None or updated is None or updated >= replicas
        ):
            phases[-1].finished_us = span.start_us
    return phases


def _daemonset_phases(node: SpanNode, spans: list[SpanRecord], templates: list[_Template]) -> list[_Phase]:
    revisions = sorted(_owned(node, "apps", "controllerrevisions"), key=_first_us)
    if revisions:
        phases = [
            _Phase(child.span.key.name, _first_us(child), child, child.span.key.name) for child in revisions
        ]
    else:
        phases = [
            _Phase(f"generation of {spanfacts.short_time(t.span.start_us)}", t.span.start_us, numbered=False)
            for t in templates
        ]
    scan = _status_scan(spans)
    for phase in phases:
        phase.done_when = _DS_DONE
        generation = None
        for span, state in scan:
            if span.start_us < phase.start_us:
                continue
            if generation is None:
                found = state.get("metadata.generation")
                generation = found if isinstance(found, int) else None
            desired = state.get("status.desiredNumberScheduled")
            observed = state.get("status.observedGeneration")
            if (
                isinstance(desired, int)
                and state.get("status.updatedNumberScheduled") == desired
                and state.get("status.numberAvailable") == desired
                and (generation is None or (isinstance(observed, int) and observed >= generation))
            ):
                phase.finished_us = span.start_us
                break
    return phases


# -- judging


def _pods_of(phase: _Phase, workload: SpanNode, next_us: int | None) -> list[SpanNode]:
    """The Pods of a revision: those of its ReplicaSet, or (StatefulSet, DaemonSet: Pods are owned
    by the workload) those created while it was the newest revision."""
    if phase.holder is not None and phase.holder.span.key.resource == "replicasets":
        return [child for child in phase.holder.children if stuck.is_pod(child.span)]
    return [
        child
        for child in workload.children
        if stuck.is_pod(child.span)
        and _first_us(child) >= phase.start_us
        and (next_us is None or _first_us(child) < next_us)
    ]


def _judge(
    trace: AssembledTrace,
    workload: KnownObject,
    node: SpanNode,
    phase: _Phase,
    next_us: int | None,
    template: _Template | None,
    deleted_us: int | None,
    now_us: int,
    judged: stuck.Judged | None = None,
) -> Rollout:
    notes: list[str] = []
    started = template.span.start_us if template is not None else phase.start_us
    if template is None:
        notes.append("the request that changed spec.template is not in the data")
    elif not template.lines and template.span.tags.get(tags.AUDIT_VERB) == "create":
        notes.append(f"the template of the {workload.kind or 'workload'}'s create")
    if not phase.numbered:
        notes.append("the revision number is not in the data")
    if phase.holder is None and phase.holder_name is not None:
        notes.append(f"{phase.holder_name} is not in the trace")
    state = RolloutState.PROGRESSING
    if phase.finished_us is not None:
        state = RolloutState.COMPLETE
        if phase.done_when:
            notes.append(phase.done_when)
        if next_us is not None:
            notes.append(f"replaced by a newer revision at {spanfacts.short_time(next_us)}")
    elif next_us is not None:
        state = RolloutState.SUPERSEDED
        notes.append(f"a newer revision started at {spanfacts.short_time(next_us)} before it finished")
    elif phase.deadline is not None:
        state = RolloutState.STUCK
        notes.insert(0, phase.deadline)
    else:
        # Pods are only judged once the revision has run long enough to be stuck at all.
        late = now_us - started >= STUCK_AFTER_US
        bad = [
            item
            for pod in (_pods_of(phase, node, next_us) if late else [])
            for item in stuck.stuck_pods(trace, now_us, under=pod, judged=judged)
            if item.until_us - item.since_us >= STUCK_AFTER_US or item.state is not stuck.PodState.NOT_READY
        ]
        if bad:
            state = RolloutState.STUCK
            shown = "; ".join(
                f"{item.pod.key.name} {item.state.value} ({item.reasons[0]})" for item in bad[:3]
            )
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            notes.insert(0, f"Pods not ready: {shown}{more}")
        elif deleted_us is not None:
            notes.append(
                f"the {workload.kind or 'workload'} was deleted at {spanfacts.short_time(deleted_us)} "
                "before it finished"
            )
        else:
            notes.append("not finished yet: no completion in the data")
    return Rollout(
        workload=workload,
        revision=phase.revision,
        holder=None if phase.holder is None else spanfacts.object_of(phase.holder.span),
        started_us=started,
        finished_us=phase.finished_us,
        state=state,
        trigger=None if template is None else template.span,
        changes=() if template is None else template.lines,
        reason="; ".join(notes),
    )


def _workload_node(trace: AssembledTrace, target: KnownObject) -> SpanNode | None:
    parents: dict[int, SpanNode] = {}
    found: SpanNode | None = None
    for node in trace.walk():
        for child in node.children:
            parents[id(child)] = node
        if node.span.source is TraceSource.OBJECT and node.span.object_id == target.object_id:
            found = node
    while found is not None:
        key = found.span.key
        if (key.group, key.resource) in _WORKLOADS:
            return found
        if (key.group, key.resource) not in _BELOW:
            return None
        found = parents.get(id(found))
    return None


def rollouts(
    trace: AssembledTrace, target: KnownObject, now_us: int, judged: stuck.Judged | None = None
) -> list[Rollout]:
    """The rollouts of the workload ``target`` is (or belongs to), oldest first; [] for anything
    that is neither a Deployment, StatefulSet or DaemonSet nor below one. ``judged``: Pods judged
    stuck or not for the same answer, shared with its stuck list."""
    if (target.key.group, target.key.resource) not in _WORKLOADS | _BELOW:
        return []
    node = _workload_node(trace, target)
    if node is None:
        return []
    workload = spanfacts.object_of(node.span)
    spans = _own_spans(node)
    templates = _templates(spans)
    resource = node.span.key.resource
    if resource == "deployments":
        phases = _deployment_phases(node, spans)
    elif resource == "statefulsets":
        phases = _statefulset_phases(node, spans)
    else:
        phases = _daemonset_phases(node, spans, templates)
    deleted_us = _deleted_us(spans)
    found: list[Rollout] = []
    for i, phase in enumerate(phases):
        previous_us = phases[i - 1].start_us if i else None
        next_us = phases[i + 1].start_us if i + 1 < len(phases) else None
        template = _trigger(templates, previous_us, phase.start_us)
        found.append(_judge(trace, workload, node, phase, next_us, template, deleted_us, now_us, judged))
    return found
