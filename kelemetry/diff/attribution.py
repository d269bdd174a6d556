"""Which request made which change: audit writes' diffs, reconciled with the object watch.

Every change to an object is made by exactly one write, and every write is numbered by the
resourceVersion it produced. What we see of a write varies: most answer with the whole object
(the diff against the version before is its change), some only with part of it (a Scale response
says ``spec.replicas``) or nothing at all (a Binding or an Eviction answers with a Status). The
tracker keeps, per incarnation (key + uid):

- what audit responses showed (``history``) and what the object watch showed (``watched``). The
  watch sees every version in order, so when it has both a write's version and the one right before
  it, their diff is exactly that write's change. Without the watch (replays, managed clusters), the
  audit history holds the latest version the audit stream showed, and an update names the version
  it was based on, which says whether nobody wrote in between.
- the *partial* writes since the last complete version: their known change (``spec.replicas 2 ->
  4``, ``spec.nodeName null -> "node-1"``) is shown at once, and the next complete version tells
  the rest. A change the next writer cannot have made (a status update does not write
  ``metadata.generation``, kwok's status patch does not name the ``PodScheduled`` condition) goes
  to the partial write whose scope covers it, and that write's span is issued again with it.
- a change that no request seen could have made is logged as ``unattributed`` on the span where it
  showed up, never given to a request that did not make it.

Watched changes that no audit event claims (by resourceVersion; a delete also by uid; a write that
answered without a version by what it can change) within the grace period become ``change``
events: clusters without audit still get diffs, and nothing is shown twice. Pure logic, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kelemetry.diff import compute, scopes
from kelemetry.diff.history import (
    DEFAULT_MAX_BYTES,
    ENTRY_OVERHEAD_BYTES,
    BodyHistory,
    Version,
    body_size,
    rv_order,
)
from kelemetry.model import tags
from kelemetry.model.diffs import Diff
from kelemetry.model.events import Event, Log, TraceSource, WriteDetail
from kelemetry.model.objects import Incarnation, ObjectRef

# The watch runs ahead of the batched audit stream, so it keeps more versions: a busy object may be
# written many times before the audit batch that explains the first write arrives.
WATCHED_VERSIONS = 8
MAX_CLAIMS = 200_000
MAX_PARTIAL_OBJECTS = 50_000
# The same two memories bounded in bytes, so large objects cannot grow them without limit: a write
# whose change is partly known holds its event (the answer's body, its logs); a claim holds its key.
MAX_PARTIAL_BYTES = 64 * 1024 * 1024
MAX_CLAIM_BYTES = 64 * 1024 * 1024
# What a claim costs beyond its two strings: the key tuple and the ordered dict's entry (a claim of
# "rv:NNNNNN" measured 189 bytes in all with tracemalloc).
CLAIM_OVERHEAD_BYTES = 130
PARTIALS_PER_OBJECT = 4
# Writes that answer without a version but make more than one (the eviction API sets the
# DisruptionTarget condition, then deletes gracefully).
_WRITES = {"eviction": 2}
DIFF_LOG = "diff"
UNATTRIBUTED_LOG = "unattributed"
NO_OP = Log("verbose", "No-op update")
_IGNORED_PATHS = frozenset({"metadata.resourceVersion"})


@dataclass(frozen=True, slots=True)
class Attributed:
    """An audit event with its change logs, and earlier events issued again with changes learned now."""

    event: Event
    reissued: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class _Partial:
    """A write whose change is only partly known until a complete version of the object follows."""

    event: Event
    scope: scopes.Scope
    diffs: dict[str, Diff]
    resource_version: str
    writes: int = 1
    """How many versions the write makes (an eviction: the DisruptionTarget condition, then the
    deletion); a write without a version of its own claims that many watched changes."""
    matched: int = 0
    before: str = ""
    """Once a complete version followed, its resourceVersion: the write's own versions are older.
    Until the watch shows them, the write stays to claim them (the watch may lag the audit)."""
    size: int = 0
    """What it is counted as against ``max_partial_bytes`` (set when remembered)."""

    @property
    def done(self) -> bool:
        return bool(self.resource_version) or self.matched >= self.writes


@dataclass(frozen=True, slots=True)
class WatchedChange:
    seen_us: int
    ref: ObjectRef
    verb: str
    change_id: str
    resource_version: str
    diffs: tuple[Diff, ...]
    logs: tuple[Log, ...]


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Diff]:
    return [d for d in compute.compute(old, new) if d.path not in _IGNORED_PATHS]


def _with_logs(event: Event, logs: list[Log]) -> Event:
    return replace(event, logs=(*event.logs, *logs)) if logs else event


def _diff_logs(diffs: list[Diff]) -> list[Log]:
    return [Log(DIFF_LOG, compute.render(diffs))] if diffs else []


class ChangeTracker:
    def __init__(
        self,
        has_status: Callable[[str, str], bool],
        note_status: Callable[[str, str], None] | None = None,
        *,
        grace_us: int = 5_000_000,
        cache_bytes: int = 2 * DEFAULT_MAX_BYTES,
        max_partial_bytes: int = MAX_PARTIAL_BYTES,
        max_claim_bytes: int = MAX_CLAIM_BYTES,
    ) -> None:
        self._has_status = has_status
        self._note_status = note_status or (lambda _group, _resource: None)
        self.grace_us = grace_us
        # The cap is shared evenly: what the audit stream showed, and what the object watch showed.
        self.history = BodyHistory(max_bytes=cache_bytes // 2)
        self.watched = BodyHistory(versions_per_object=WATCHED_VERSIONS, max_bytes=cache_bytes // 2)
        self._partials: OrderedDict[Incarnation, list[_Partial]] = OrderedDict()
        self.max_partial_bytes = max_partial_bytes
        self.partial_bytes = 0
        """The bytes of every partly known write held, as counted against ``max_partial_bytes``."""
        self.partials_evicted = 0
        self._pending: dict[Incarnation, dict[str, WatchedChange]] = {}
        # (object, change id) -> the audit event that made that change
        self._claimed: OrderedDict[tuple[Incarnation, str], str] = OrderedDict()
        self.max_claim_bytes = max_claim_bytes
        self.claim_bytes = 0
        """The bytes of every claim held, as counted against ``max_claim_bytes``."""
        self.claims_evicted = 0
        # Objects a delete request was seen for: the watch's versions of the deletion are its.
        self._deleting: OrderedDict[Incarnation, str] = OrderedDict()

    # -- audit writes

    def audit(self, event: Event) -> Attributed:
        write = event.write
        if write is None or event.error:
            return Attributed(event)
        obj = event.object.incarnation
        if write.subresource == "status":
            self._note_status(obj.key.group, obj.key.resource)
        if write.verb in ("delete", "deletecollection"):
            return self._delete(event, write, obj)
        if event.body is not None and write.resource_version:
            return self._complete(event, write, obj, event.body)
        return self._partial(event, write, obj)

    def _complete(
        self, event: Event, write: WriteDetail, obj: Incarnation, body: Mapping[str, Any]
    ) -> Attributed:
        rv = write.resource_version
        claimer = self._claimed.get((obj, f"rv:{rv}"))
        if claimer is not None and claimer != event.event_id:
            # Another request made this version; this one answered with it unchanged (a no-op
            # update: the apiserver does not write, so the version stays).
            return Attributed(_with_logs(event, [NO_OP]))
        self._claim(obj, f"rv:{rv}", event.event_id)
        base, exact = self._base(obj, rv, write.precondition)
        self.history.put(obj, rv, body, writer=event.event_id, size=event.body_bytes)
        partials = self._supersede(obj, rv)
        if write.verb == "create" and not write.subresource:
            return Attributed(event)
        if base is None:
            return Attributed(event)
        diffs = _changes(base.body, body)
        if not diffs:
            return Attributed(_with_logs(event, [NO_OP]))
        if exact:
            return Attributed(_with_logs(event, _diff_logs(diffs)))
        own: list[Diff] = []
        unattributed: list[Diff] = []
        handed: dict[int, list[Diff]] = {}
        scope = scopes.hard_scope(
            write.verb, write.subresource, has_status=self._has_status(obj.key.group, obj.key.resource)
        )
        for diff in diffs:
            in_scope = scope.allows(diff.segments)
            named = scopes.named_by(write.request, diff) if write.verb == "patch" else None
            if in_scope and named is not False:
                own.append(diff)
                continue
            taker = next((i for i, p in enumerate(partials) if p.scope.allows(diff.segments)), None)
            if taker is not None:
                handed.setdefault(taker, []).append(diff)
            elif in_scope:
                # The patch did not name it, but no other request seen could have made it (defaulting,
                # an admission plugin): it stays with the request.
                own.append(diff)
            else:
                unattributed.append(diff)
        logs = _diff_logs(own) or [NO_OP]
        if unattributed:
            logs.append(Log(UNATTRIBUTED_LOG, compute.render(unattributed)))
        reissued = [self._learned(partials[i], found) for i, found in sorted(handed.items())]
        return Attributed(_with_logs(event, logs), reissued)

    def _base(self, obj: Incarnation, rv: str, precondition: str) -> tuple[Version | None, bool]:
        """The version to diff a write against, and whether it is certainly the one right before."""
        at = self.watched.get(obj, rv)
        if at is not None and not at.listed:
            previous = self.watched.previous(obj, rv)
            if previous is not None:
                return previous, True
        previous = self.history.previous(obj, rv)
        exact = (
            previous is not None and previous.complete and bool(precondition) and precondition == previous.rv
        )
        return previous, exact

    def _partial(self, event: Event, write: WriteDetail, obj: Incarnation) -> Attributed:
        scope = scopes.hard_scope(
            write.verb, write.subresource, has_status=self._has_status(obj.key.group, obj.key.resource)
        )
        rv = write.resource_version
        writes = _WRITES.get(write.subresource, 1)
        if rv:
            self._claim(obj, f"rv:{rv}", event.event_id)
            exact = self._watched_change(obj, rv)
            if exact is not None:
                self.history.put(obj, rv, exact[0], writer=event.event_id)
                self._supersede(obj, rv)
                return Attributed(_with_logs(event, _diff_logs(exact[1])))
        else:
            matches = self._match_pending(obj, scope, writes)
            if matches:
                diffs: dict[str, Diff] = {}
                for match in matches:
                    self._claim(obj, match.change_id, event.event_id)
                    diffs.update((d.path, d) for d in match.diffs)
                    at = self.watched.get(obj, match.resource_version)
                    if at is not None:
                        self.history.put(obj, match.resource_version, at.body, writer=event.event_id)
                found = sorted(diffs.values(), key=lambda d: d.path)
                if len(matches) < writes:
                    self._remember(obj, _Partial(event, scope, dict(diffs), rv, writes, len(matches)))
                return Attributed(_with_logs(event, _diff_logs(found)))
        known = self._known_change(obj, write)
        partial = _Partial(event, scope, {d.path: d for d in known}, rv, writes)
        if write.subresource == "scale" and rv and known:
            base = self._latest(obj, rv)
            if base is not None:
                self.history.put(
                    obj, rv, _with_replicas(base.body, known[0].new), complete=False, writer=event.event_id
                )
        self._remember(obj, partial)
        return Attributed(_with_logs(event, _diff_logs(known)))

    def _known_change(self, obj: Incarnation, write: WriteDetail) -> list[Diff]:
        """What a partial response (or the request) says the write changed, against the latest version."""
        base = self._latest(obj, write.resource_version or None)
        old_body: Mapping[str, Any] = base.body if base is not None else {}
        if write.subresource == "scale":
            spec = (write.response or {}).get("spec")
            if isinstance(spec, Mapping) and isinstance(spec.get("replicas"), int):
                old = (old_body.get("spec") or {}).get("replicas") if base is not None else None
                new = spec["replicas"]
                if old != new:
                    return [Diff("spec.replicas", old, new, ("spec", "replicas"))]
        elif write.subresource == "binding":
            target = write.request.get("target") if isinstance(write.request, Mapping) else None
            node = target.get("name") if isinstance(target, Mapping) else None
            if isinstance(node, str):
                old = (old_body.get("spec") or {}).get("nodeName") if base is not None else None
                if old != node:
                    return [Diff("spec.nodeName", old, node, ("spec", "nodeName"))]
        return []

    def _latest(self, obj: Incarnation, below: str | None) -> Version | None:
        """The newest version known from either source (older than ``below`` when given)."""
        found = [
            v
            for v in (
                self.history.previous(obj, below) if below else self.history.latest(obj),
                self.watched.previous(obj, below) if below else self.watched.latest(obj),
            )
            if v is not None
        ]
        return max(found, key=lambda v: rv_order(v.rv)) if found else None

    def _watched_change(self, obj: Incarnation, rv: str) -> tuple[Mapping[str, Any], list[Diff]] | None:
        """The watch's exact change to version ``rv`` (body, diffs), when it saw both sides."""
        at = self.watched.get(obj, rv)
        if at is None or at.listed:
            return None
        previous = self.watched.previous(obj, rv)
        if previous is None:
            return None
        return at.body, _changes(previous.body, at.body)

    def _match_pending(self, obj: Incarnation, scope: scopes.Scope, writes: int) -> list[WatchedChange]:
        """The watched changes a write that answered without a version made: the oldest unclaimed
        ones of this object that only touch what the write can change."""
        pending = self._pending.get(obj)
        if not pending:
            return []
        candidates = sorted(
            (c for c in pending.values() if c.verb == "update" and c.diffs),
            key=lambda c: rv_order(c.resource_version),
        )
        return [c for c in candidates if all(scope.allows(d.segments) for d in c.diffs)][:writes]

    def _learned(self, partial: _Partial, found: list[Diff]) -> Event:
        for diff in found:
            partial.diffs[diff.path] = diff
        return self._reissue(partial, sorted(partial.diffs.values(), key=lambda d: d.path))

    @staticmethod
    def _reissue(partial: _Partial, diffs: list[Diff]) -> Event:
        event = partial.event
        kept = tuple(log for log in event.logs if log.kind != DIFF_LOG)
        return replace(event, logs=(*kept, *_diff_logs(diffs)))

    @property
    def partials(self) -> int:
        """How many partly known writes are held."""
        return sum(len(partials) for partials in self._partials.values())

    @property
    def claims(self) -> int:
        return len(self._claimed)

    def _remember(self, obj: Incarnation, partial: _Partial) -> None:
        partial.size = _partial_size(partial.event)
        partials = [*self._partials.get(obj, ()), partial]
        self._keep_partials(obj, partials[-PARTIALS_PER_OBJECT:])
        self._partials.move_to_end(obj)
        while len(self._partials) > MAX_PARTIAL_OBJECTS or (
            self.partial_bytes > self.max_partial_bytes and len(self._partials) > 1
        ):
            self._keep_partials(next(iter(self._partials)), [])
            self.partials_evicted += 1

    def _keep_partials(self, obj: Incarnation, kept: list[_Partial]) -> None:
        """``obj``'s partly known writes are now ``kept`` (none: forgotten), counted in bytes."""
        self.partial_bytes -= sum(p.size for p in self._partials.get(obj, ()))
        if kept:
            self._partials[obj] = kept
            self.partial_bytes += sum(p.size for p in kept)
        else:
            self._partials.pop(obj, None)

    def _supersede(self, obj: Incarnation, rv: str) -> list[_Partial]:
        """A complete version ``rv`` followed: the partial writes still open before it (whose
        changes it may show), keeping those the watch has yet to show a version of."""
        partials = self._partials.get(obj)
        if not partials:
            return []
        open_ = [p for p in partials if not p.before]
        for partial in open_:
            partial.before = rv
        self._keep_partials(obj, [p for p in partials if not p.done])
        return open_

    def _delete(self, event: Event, write: WriteDetail, obj: Incarnation) -> Attributed:
        if obj.uid:
            self._claim(obj, f"delete:{obj.uid}", event.event_id)
        rv = write.resource_version
        if rv:
            self._claim(obj, f"rv:{rv}", event.event_id)
        if write.subresource:
            return Attributed(event)
        # A delete may write more than the version it answers with (a delete with grace period 0 of
        # a terminating Pod first shortens the grace period, then removes it): every watched change
        # that only touches the deletion is the delete's, before or after this event.
        self._deleting[obj] = event.event_id
        self._deleting.move_to_end(obj)
        while len(self._deleting) > MAX_PARTIAL_OBJECTS:
            self._deleting.popitem(last=False)
        for change in list(self._pending.get(obj, {}).values()):
            if change.verb == "update" and all(scopes.DELETION.allows(d.segments) for d in change.diffs):
                self._claim(obj, change.change_id, event.event_id)
        body = event.body
        if body is not None and rv:
            # A graceful delete answers with the object as it now is (deletionTimestamp set): later
            # writes (the kubelet's last status, the final delete) are diffed against it.
            self.history.put(obj, rv, body, writer=event.event_id)
        self._keep_partials(obj, [])
        last = body
        if last is None:
            latest = self._latest(obj, None)
            last = latest.body if latest is not None else None
        if last is None:
            return Attributed(event)
        return Attributed(_with_logs(event, [Log("snapshot", compute.snapshot(last))]))

    def _claim(self, obj: Incarnation, change_id: str, claimer: str) -> None:
        claimed = self._claimed
        key = (obj, change_id)
        before = claimed.get(key)
        if before is not None:
            self.claim_bytes -= _claim_size(change_id, before)
        claimed[key] = claimer
        self.claim_bytes += _claim_size(change_id, claimer)
        claimed.move_to_end(key)
        while len(claimed) > MAX_CLAIMS or (self.claim_bytes > self.max_claim_bytes and len(claimed) > 1):
            (_obj, old_id), old_claimer = claimed.popitem(last=False)
            self.claim_bytes -= _claim_size(old_id, old_claimer)
            self.claims_evicted += 1
        pending = self._pending.get(obj)
        if pending is not None:
            pending.pop(change_id, None)
            if not pending:
                del self._pending[obj]

    def _is_claimed(self, obj: Incarnation, *change_ids: str) -> bool:
        return any((obj, change_id) in self._claimed for change_id in change_ids)

    # -- the object watch

    def watched_version(self, kind: str, ref: ObjectRef, body: Mapping[str, Any], now_us: int) -> list[Event]:
        """Take one watched version (``LIST``, ``ADDED``, ``MODIFIED``, ``DELETED``); returns audit
        events issued again because this version showed what they changed."""
        obj = ref.incarnation
        meta = body.get("metadata") or {}
        rv = str(meta.get("resourceVersion") or "") if isinstance(meta, Mapping) else ""
        if kind == "DELETED":
            ids = [f"delete:{ref.uid}"] + ([f"rv:{rv}"] if rv else [])
            if not self._is_claimed(obj, *ids):
                self._add_pending(
                    WatchedChange(
                        now_us, ref, "delete", ids[0], rv, (), (Log("snapshot", compute.snapshot(body)),)
                    )
                )
            return []
        if not rv:
            return []
        previous = self.watched.previous(obj, rv)
        self.watched.put(obj, rv, body, listed=kind == "LIST")
        if kind == "LIST":
            return []
        diffs = _changes(previous.body, body) if kind == "MODIFIED" and previous is not None else []
        change_id = f"rv:{rv}"
        if self._is_claimed(obj, change_id):
            return self._sharpen(obj, rv, body, diffs, previous is not None)
        if kind == "MODIFIED" and previous is not None and not diffs:
            return []
        if kind == "MODIFIED" and diffs:
            deleter = self._deleting.get(obj)
            if deleter is not None and all(scopes.DELETION.allows(d.segments) for d in diffs):
                self._claim(obj, change_id, deleter)
                return []
            for partial in self._partials.get(obj, ()):
                if (
                    not partial.done
                    and (not partial.before or rv_order(rv) < rv_order(partial.before))
                    and all(partial.scope.allows(d.segments) for d in diffs)
                ):
                    # The write that made this version answered without one (a binding): now we know.
                    partial.matched += 1
                    self._claim(obj, change_id, partial.event.event_id)
                    self.history.put(obj, rv, body, writer=partial.event.event_id)
                    return [self._learned(partial, diffs)]
        verb = "update" if kind == "MODIFIED" else "create"
        logs = (Log(DIFF_LOG, compute.render(diffs)),) if diffs else ()
        self._add_pending(WatchedChange(now_us, ref, verb, change_id, rv, tuple(diffs), logs))
        return []

    def _sharpen(
        self, obj: Incarnation, rv: str, body: Mapping[str, Any], diffs: list[Diff], exact: bool
    ) -> list[Event]:
        """A version an audit write already claimed: if that write's change was only partly known,
        the watch now shows it whole."""
        if not exact:
            return []
        for partial in self._partials.get(obj, ()):
            if partial.resource_version == rv and not partial.matched:
                partial.matched = 1
                self.history.put(obj, rv, body, writer=partial.event.event_id)
                return [self._reissue(partial, diffs)]
        return []

    def _add_pending(self, change: WatchedChange) -> None:
        self._pending.setdefault(change.ref.incarnation, {})[change.change_id] = change

    def due(self, now_us: int) -> list[Event]:
        """Change events for watched changes no audit event claimed within the grace period."""
        found: list[Event] = []
        for obj in list(self._pending):
            pending = self._pending[obj]
            for change_id in [c for c, ch in pending.items() if ch.seen_us + self.grace_us <= now_us]:
                change = pending.pop(change_id)
                found.append(
                    Event(
                        object=change.ref,
                        source=TraceSource.CHANGE,
                        event_id=change_id,
                        title=f"{change.verb} (watched)",
                        start_us=change.seen_us,
                        end_us=change.seen_us + 1,
                        tags={tags.CHANGE_VERB: change.verb, tags.RESOURCE_VERSION: change.resource_version},
                        logs=change.logs,
                    )
                )
            if not pending:
                del self._pending[obj]
        return found

    def pending_count(self) -> int:
        return sum(len(p) for p in self._pending.values())


def _partial_size(event: Event) -> int:
    """A held write counted as the history counts a version: its body as JSON, plus its logs."""
    body = 0
    if event.body is not None:
        body = event.body_bytes or body_size(event.body)
    return ENTRY_OVERHEAD_BYTES + body + sum(len(log.message) for log in event.logs)


def _claim_size(change_id: str, claimer: str) -> int:
    return CLAIM_OVERHEAD_BYTES + len(change_id) + len(claimer)


def _with_replicas(body: Mapping[str, Any], replicas: Any) -> dict[str, Any]:
    spec = body.get("spec")
    return {**body, "spec": {**(spec if isinstance(spec, Mapping) else {}), "replicas": replicas}}
