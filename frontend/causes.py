"""The cause chain: why an object is as it is at a moment, back to the request that started it.

Pure functions over an ``AssembledTrace`` (any backend's): the object's own requests say what last
made it so (its creation, a change of its spec, its deletion); when a controller made that request,
the object's owner in the trace (an ownerReference, or a cross-cluster parent a linker found) is
asked the same question for the moment just before, and so on up, until a person's request, an
owner-less controller, or the top of the hierarchy.

What counts as a cause on an object (its *decisive* requests):

- a successful ``create`` — ``recreated`` when an earlier incarnation of the same name was deleted
  before it (the delete is then the next step: a person deleting a ReplicaSet is why the
  controller made a new one);
- the first successful ``delete`` of an incarnation (later deletes finish a graceful deletion: the
  kubelet's, not a decision), and a Pod's ``eviction``;
- an ``update``/``patch`` of the object or its ``scale`` subresource that changed its desired state:
  a diff line under ``spec`` (or ``data``/``stringData``/``binaryData``). A generation bump alone is
  not one: a diff made against an older version can show it on a controller's metadata update.
  ``status`` and ``binding`` writes report or carry out a decision and are never a cause.

A watched change no audit event claimed is a cause nobody can be named for: its step is unproven.
So is an object with no decisive request before the moment (created before the data starts, or its
audit event was lost): the walk still goes up through its owner, marked unproven, and an Event of
the owner naming the object is quoted as the only evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict

from frontend import actors
from frontend.actors import Actor, Request
from frontend.spanfacts import ObjectJson, RequestJson, format_time
from frontend.types import AssembledTrace, SpanNode
from kelemetry import errors
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.model.spans import SpanRecord

Relation = Literal["created", "changed", "scaled", "deleted", "recreated"]

CAUSE_SUBRESOURCES = frozenset({"", "scale"})
EVICTION = "eviction"
DESIRED_STATE = ("spec", "data", "stringData", "binaryData")
MAX_STEPS = 32
"""A chain longer than any real hierarchy: a guard, since links are refused when cyclic anyway."""


class StepJson(TypedDict):
    object: ObjectJson
    relation: Relation
    request: RequestJson | None
    changes: list[str]
    actor: Actor
    proven: bool
    reason: str
    time: str | None
    time_us: int | None


@dataclass(frozen=True, slots=True)
class Step:
    """One link of the chain: what happened to an object, by whose request, and why it follows."""

    object: SpanRecord
    """The object's span (its key, uid and kind)."""
    relation: Relation
    request: Request | None
    changes: tuple[str, ...]
    actor: Actor
    proven: bool
    reason: str
    time_us: int | None

    def to_json(self) -> StepJson:
        return {
            "object": actors.object_of(self.object),
            "relation": self.relation,
            "request": None if self.request is None else self.request.to_json(),
            "changes": list(self.changes),
            "actor": self.actor,
            "proven": self.proven,
            "reason": self.reason,
            "time": None if self.time_us is None else format_time(self.time_us),
            "time_us": self.time_us,
        }

    def text(self) -> str:
        """A block of lines an incident channel can take: what, who, the changes, why."""
        when = format_time(self.time_us) if self.time_us is not None else "(time unknown)"
        mark = "" if self.proven else "  [not proven]"
        lines = [f"{actors.object_text(self.object, cluster=True)}  {self.relation}  {when}{mark}"]
        if self.request is not None:
            lines.append(f"    by {self.request.text()}  ({self.actor})")
            if self.request.user_agent:
                lines.append(f"    user agent: {self.request.user_agent}")
        lines.extend(f"    change: {line}" for line in self.changes)
        lines.append(f"    why: {self.reason}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Chain:
    at_us: int
    steps: tuple[Step, ...]

    @property
    def complete(self) -> bool:
        return bool(self.steps) and all(step.proven for step in self.steps)

    def summary(self) -> str:
        return summarize(self.steps)


# -- the trace as objects


@dataclass(frozen=True, slots=True)
class _Object:
    node: SpanNode
    activity: tuple[SpanRecord, ...]
    """Its requests, Events and watched changes, oldest first."""


class _Tree:
    """The object nodes of a trace with their owners and activity, read once; ``elsewhere`` adds the
    activity of other incarnations of its objects' names that are in other traces (another window,
    another root), so a re-creation is found wherever its delete is."""

    def __init__(self, trace: AssembledTrace, elsewhere: Sequence[SpanRecord] = ()) -> None:
        self.objects: dict[int, _Object] = {}
        self.others: dict[int, _Object] = {}
        self.owner: dict[int, int] = {}
        stack: list[tuple[SpanNode, int | None]] = [(trace.root, None)]
        while stack:
            node, owner = stack.pop()
            if node.span.source is not TraceSource.OBJECT:
                continue
            object_id = node.span.object_id
            activity = sorted(
                (child.span for child in node.children if child.span.source is not TraceSource.OBJECT),
                key=lambda span: (span.start_us, span.span_id),
            )
            self.objects[object_id] = _Object(node, tuple(activity))
            if owner is not None:
                self.owner[object_id] = owner
            stack.extend((child, object_id) for child in node.children)
        apart: dict[int, list[SpanRecord]] = {}
        for record in elsewhere:
            if record.object_id not in self.objects and record.source is not TraceSource.OBJECT:
                apart.setdefault(record.object_id, []).append(record)
        for object_id, records in apart.items():
            records.sort(key=lambda span: (span.start_us, span.span_id))
            # No object span of it is at hand: its first request names it (key, uid, kind).
            self.others[object_id] = _Object(SpanNode(records[0]), tuple(records))

    def by_key(self, span: SpanRecord) -> list[_Object]:
        """The other incarnations of an object's name, in the trace or elsewhere."""
        return [
            found
            for found in [*self.objects.values(), *self.others.values()]
            if found.node.span.key == span.key and found.node.span.object_id != span.object_id
        ]


def last_activity(trace: AssembledTrace) -> int:
    """When the looked-up object last had a request, Event or change (its span's end without one)."""
    tree = _Tree(trace)
    found = tree.objects.get(trace.target.object_id)
    if found is None:
        return trace.root.span.end_us
    if found.activity:
        return max(span.start_us for span in found.activity)
    return found.node.span.end_us


# -- decisive requests


def _desired(lines: Sequence[str]) -> list[str]:
    return [line for line in lines if line.startswith(DESIRED_STATE)]


def _verb(span: SpanRecord) -> str:
    return str(span.tags.get(tags.AUDIT_VERB) or span.tags.get(tags.CHANGE_VERB) or "")


@dataclass(frozen=True, slots=True)
class _Cause:
    span: SpanRecord
    relation: Relation
    changes: tuple[str, ...]


def _decisive(activity: Sequence[SpanRecord]) -> list[_Cause]:
    """The object's decisive requests and watched changes, oldest first."""
    found: list[_Cause] = []
    deleted = False
    for span in activity:
        if span.source is TraceSource.EVENT:
            continue
        lines = actors.diff_lines(span)
        verb = _verb(span)
        if span.source is TraceSource.CHANGE:
            if verb in ("delete", "deleted") and not deleted:
                deleted = True
                found.append(_Cause(span, "deleted", ()))
            elif verb == "create":
                found.append(_Cause(span, "created", tuple(lines)))
            elif _desired(lines):
                found.append(_Cause(span, _change_relation(lines, ""), tuple(lines)))
            continue
        request = actors.request_of(span)
        if request is None or not request.succeeded:
            continue
        if request.subresource == EVICTION and verb == "create" and not deleted:
            deleted = True
            found.append(_Cause(span, "deleted", tuple(lines)))
            continue
        if request.subresource not in CAUSE_SUBRESOURCES:
            continue
        if verb == "create":
            found.append(_Cause(span, "created", tuple(lines)))
        elif verb in ("delete", "deletecollection"):
            if not deleted:
                deleted = True
                found.append(_Cause(span, "deleted", tuple(lines)))
        elif verb in ("update", "patch") and _desired(lines):
            found.append(_Cause(span, _change_relation(lines, request.subresource), tuple(lines)))
    return found


def _change_relation(lines: Sequence[str], subresource: str) -> Relation:
    desired = _desired(lines)
    if subresource == "scale" or (desired and all(line.startswith("spec.replicas ") for line in desired)):
        return "scaled"
    return "changed"


def _latest(causes: Sequence[_Cause], at_us: int) -> _Cause | None:
    before = [cause for cause in causes if cause.span.start_us <= at_us]
    return before[-1] if before else None


# -- the walk


def explain(trace: AssembledTrace, at_us: int | None = None, elsewhere: Sequence[SpanRecord] = ()) -> Chain:
    """The chain of the trace's looked-up object at ``at_us`` (default: its last activity);
    ``elsewhere``: the requests of other incarnations of the line's names outside the trace."""
    tree = _Tree(trace, elsewhere)
    target = tree.objects.get(trace.target.object_id)
    if target is None:
        raise errors.NotFound(f"{trace.target.key.display} is not in its own trace")
    moment = last_activity(trace) if at_us is None else at_us
    steps: list[Step] = []
    current: _Object | None = target
    before_us = moment
    below: Step | None = None
    while current is not None and len(steps) < MAX_STEPS:
        made = _step(tree, current, before_us, below)
        steps.extend(made)
        last = made[-1]
        if last.actor == "human":
            break
        owner_id = tree.owner.get(last.object.object_id, tree.owner.get(current.node.span.object_id))
        if owner_id is None:
            break
        current = tree.objects.get(owner_id)
        below = last
        if last.time_us is not None:
            before_us = last.time_us
    return Chain(moment, tuple(steps))


def _step(tree: _Tree, found: _Object, before_us: int, below: Step | None) -> list[Step]:
    """The step of one object (two when a delete of its earlier incarnation made it be recreated)."""
    span = found.node.span
    cause = _latest(_decisive(found.activity), before_us)
    if cause is None:
        return [_unproven(tree, found, before_us, below)]
    request = actors.request_of(cause.span)
    because = _because(below)
    if request is None:
        who = "a watched change no audit event claimed"
        return [
            Step(
                span,
                cause.relation,
                None,
                cause.changes,
                "unknown",
                False,
                f"{_verb_text(cause.relation)} by {who}: the request and its user are not known{because}",
                cause.span.start_us,
            )
        ]
    if cause.relation == "created":
        previous = _previous_deletion(tree, span, cause.span.start_us)
        if previous is not None:
            old, delete = previous
            delete_request = actors.request_of(delete.span)
            deleted_by = delete_request.text() if delete_request else "a watched deletion"
            recreated = Step(
                span,
                "recreated",
                request,
                cause.changes,
                request.actor,
                True,
                f"recreated by {actors.short_user(request.user)} after {deleted_by} deleted the earlier "
                f"{actors.object_text(old.node.span)} (uid {old.node.span.uid or '?'}){because}",
                cause.span.start_us,
            )
            removal = Step(
                old.node.span,
                "deleted",
                delete_request,
                delete.changes,
                delete_request.actor if delete_request else "unknown",
                delete_request is not None,
                (
                    f"the delete of uid {old.node.span.uid or '?'} left its owner's controller short of "
                    "what it wants, so it made the object again"
                    if delete_request is not None
                    else "the deletion was only watched: who deleted it is not known"
                ),
                delete.span.start_us,
            )
            return [recreated, removal]
    return [
        Step(
            span,
            cause.relation,
            request,
            cause.changes,
            request.actor,
            True,
            _reason(cause, request, span, below, tree),
            cause.span.start_us,
        )
    ]


def _verb_text(relation: Relation) -> str:
    return {"created": "created", "recreated": "created again", "deleted": "deleted"}.get(
        relation, "changed" if relation == "changed" else "scaled"
    )


def _because(below: Step | None) -> str:
    """Why an owner's request is the one that led to the step below it."""
    if below is None:
        return ""
    return (
        f"; the latest decisive request on it before {actors.object_text(below.object)} was "
        f"{below.relation} at {format_time(below.time_us or 0)}"
    )


def _reason(cause: _Cause, request: Request, span: SpanRecord, below: Step | None, tree: _Tree) -> str:
    who = actors.short_user(request.user)
    kind = request.actor
    if kind == "human":
        tail = "a person's request: the chain starts here"
    else:
        owner = tree.owner.get(span.object_id)
        if owner is not None and owner in tree.objects:
            parent = tree.objects[owner].node.span
            across = parent.key.cluster != span.key.cluster
            tail = f"{who} acts for its owner {actors.object_text(parent, cluster=across)}"
        else:
            tail = (
                f"{who} is a controller, and no owner of the object is in the trace: its reason is not known"
            )
    return f"{_verb_text(cause.relation)} by {who} ({kind}){_because(below)}; {tail}"


def _previous_deletion(tree: _Tree, span: SpanRecord, created_us: int) -> tuple[_Object, _Cause] | None:
    """The earlier incarnation of the name deleted last before this one was created, and its delete."""
    found: tuple[_Object, _Cause] | None = None
    for other in tree.by_key(span):
        for cause in _decisive(other.activity):
            if cause.relation == "deleted" and cause.span.start_us <= created_us:
                if found is None or cause.span.start_us > found[1].span.start_us:
                    found = (other, cause)
    return found


def _unproven(tree: _Tree, found: _Object, before_us: int, below: Step | None) -> Step:
    span = found.node.span
    evidence = _event_evidence(tree, span)
    if evidence is not None:
        why = (
            f"no request creating or changing it before {format_time(before_us)} is recorded; only an "
            f"Event says what happened: {evidence}"
        )
    else:
        why = (
            f"no request creating or changing it before {format_time(before_us)} is recorded (it may "
            "predate the data, or its audit event was not received)"
        )
    if below is not None:
        why += f"; it is in the chain as the owner of {actors.object_text(below.object)}"
    # No time either: its owner is then asked about the moment the step below it was asked about.
    return Step(span, "created", None, (), "unknown", False, why, None)


def _event_evidence(tree: _Tree, span: SpanRecord) -> str | None:
    """An Event of the object, or of its owner, that names the object (``Created pod: x``)."""
    candidates = [tree.objects[span.object_id]]
    owner = tree.owner.get(span.object_id)
    if owner is not None and owner in tree.objects:
        candidates.append(tree.objects[owner])
    for holder in candidates:
        for event in holder.activity:
            if event.source is not TraceSource.EVENT:
                continue
            message = " ".join(log.message for log in event.logs if log.kind == "message")
            if holder is candidates[0] or span.key.name in message:
                reason = event.tags.get(tags.EVENT_REASON) or "Event"
                on = actors.object_text(holder.node.span)
                return f"{reason} on {on} at {format_time(event.start_us)}: {message}".rstrip(": ")
    return None


# -- one line for the whole chain


def summarize(steps: Sequence[Step]) -> str:
    if not steps:
        return "nothing is recorded about it"
    parts: list[str] = []
    home = steps[0].object.key.cluster
    for index, step in enumerate(steps):
        what = actors.object_text(step.object) if index == 0 else _short_object(step.object, home)
        who = actors.short_user(step.request.user) if step.request else "an unknown actor"
        verb = _verb_text(step.relation)
        if index == 0:
            part = f"{what} was {verb} by {who}"
        else:
            part = f"{what} {verb} by {who}"
        if not step.proven:
            part += " (not proven)"
        parts.append(part)
    text = (
        ", after ".join(parts) if len(parts) < 2 else parts[0] + "; because " + ", because ".join(parts[1:])
    )
    origin = steps[-1]
    if origin.request is not None and origin.actor == "human":
        agent = actors.short_agent(origin.request.user_agent)
        started = f"{origin.request.user}" + (f" ({agent})" if agent else "")
        text += f"; started by {started} at {format_time(origin.request.time_us)}"
    elif origin.request is not None:
        text += f"; the earliest request found is {actors.short_user(origin.request.user)}'s (a controller)"
    else:
        text += "; where it started is not proven"
    return text


def _short_object(span: SpanRecord, home: str) -> str:
    """An object named by kind and name, with its cluster when it is not the first step's."""
    place = f" (cluster {span.key.cluster})" if span.key.cluster != home else ""
    return f"{span.kind or span.key.resource} {span.key.name}{place}"


# -- the answer


class Part(Protocol):
    """An item of an answer's other lists (rollouts, stuck Pods), rendered as it renders itself."""

    def to_json(self) -> Any: ...

    def text(self) -> str: ...


class ExplanationJson(TypedDict):
    object: ObjectJson
    at: str
    at_us: int
    summary: str
    chain: list[StepJson]
    complete: bool
    rollouts: list[Any]
    stuck: list[Any]
    view_id: str


@dataclass(frozen=True, slots=True)
class Explanation:
    object: ObjectJson
    chain: Chain
    view_id: str
    rollouts: tuple[Part, ...] = ()
    stuck: tuple[Part, ...] = ()

    def to_json(self) -> ExplanationJson:
        return {
            "object": self.object,
            "at": format_time(self.chain.at_us),
            "at_us": self.chain.at_us,
            "summary": self.chain.summary(),
            "chain": [step.to_json() for step in self.chain.steps],
            "complete": self.chain.complete,
            "rollouts": [item.to_json() for item in self.rollouts],
            "stuck": [item.to_json() for item in self.stuck],
            "view_id": self.view_id,
        }

    def text(self) -> str:
        blocks = [
            f"why: {self.chain.summary()}",
            f"at {format_time(self.chain.at_us)}; chain "
            + ("complete" if self.chain.complete else "incomplete: some steps are not proven by the data"),
        ]
        for index, step in enumerate(self.chain.steps):
            label = (
                "object" if index == 0 else ("started" if index == len(self.chain.steps) - 1 else "because")
            )
            blocks.append(f"[{index + 1}] {label}: " + step.text())
        if self.rollouts:
            blocks.append("rollouts:\n" + "\n".join(item.text() for item in self.rollouts))
        if self.stuck:
            blocks.append("stuck pods:\n" + "\n".join(item.text() for item in self.stuck))
        blocks.append(f"trace: /trace/{self.view_id}")
        return "\n\n".join(blocks) + "\n"


def owner_line(trace: AssembledTrace) -> list[SpanRecord]:
    """The object spans of the looked-up object and its owners in the trace, the object first."""
    tree = _Tree(trace)
    line: list[SpanRecord] = []
    current = trace.target.object_id
    while current in tree.objects and len(line) < MAX_STEPS:
        line.append(tree.objects[current].node.span)
        if current not in tree.owner:
            break
        current = tree.owner[current]
    return line
