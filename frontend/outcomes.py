"""Benign outcomes: failed requests that are Kubernetes working as designed, told apart from failures.

The audit receiver marks every request answered 4xx/5xx as an error, which is true to the wire but
not to an SRE: a controller's update answered ``409 Conflict`` is optimistic concurrency doing its
job (the controller re-reads and retries), and a delete answered ``404`` for an object already
deleted changes nothing. Drawn as red alarms, they bury the real failures (403, 422, 500, a
person's conflicting edit) among dozens of routine ones.

This runs on the query side, over one object's requests as assembled from either backend, so the
web UI, the API's JSON and every dump format agree, and stores recorded before it (or traces read
back from Jaeger) get it too; the stored spans keep what the apiserver answered. A benign request
loses the error flag and carries ``kelemetry.outcome=benign`` with the reason in
``kelemetry.outcome_reason``; its failure message stays, as a ``response`` log.
"""

from __future__ import annotations

from collections.abc import Sequence

from kelemetry.model import tags
from kelemetry.model.events import Log, TraceSource
from kelemetry.model.spans import SpanRecord

OUTCOME = "kelemetry.outcome"
OUTCOME_REASON = "kelemetry.outcome_reason"
BENIGN = "benign"
RESPONSE_LOG = "response"
"""The log kind a benign request's failure message moves to (``error`` would still read as one)."""

_WRITE_VERBS = frozenset({"update", "patch"})
# Clients people type into; a conflict from one of them is a person's edit that lost a race.
_PEOPLE_AGENTS = ("kubectl", "oc/", "helm", "k9s", "lens", "mozilla")


def _code(record: SpanRecord) -> int | None:
    code = record.tags.get(tags.AUDIT_CODE)
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.isdigit():
        return int(code)
    return None


def _user(record: SpanRecord) -> str:
    return str(record.tags.get(tags.AUDIT_USER, ""))


def _verb(record: SpanRecord) -> str:
    return str(record.tags.get(tags.AUDIT_VERB, ""))


def _succeeded(record: SpanRecord) -> bool:
    code = _code(record)
    return not record.error and code is not None and code < 300


def _by_controller(record: SpanRecord, later: Sequence[SpanRecord]) -> bool:
    """Whether a request came from a controller: a ``system:`` user (service accounts, the
    controller-manager, kubelets, the scheduler), or another program (not a client people type into)
    that wrote the same object successfully afterwards, as a controller's retry does."""
    user = _user(record)
    if user.startswith("system:"):
        return True
    agent = str(record.tags.get(tags.AUDIT_USER_AGENT, "")).lower()
    if not agent or agent.startswith(_PEOPLE_AGENTS):
        return False
    return any(_user(other) == user and _verb(other) in _WRITE_VERBS and _succeeded(other) for other in later)


def _deleted_before(record: SpanRecord, earlier: Sequence[SpanRecord]) -> SpanRecord | None:
    """The request or watched change that had already deleted the object, if the trace shows one."""
    for other in reversed(earlier):
        if other.source is TraceSource.AUDIT and _verb(other) == "delete" and _succeeded(other):
            return other
        if other.source is TraceSource.CHANGE and other.tags.get(tags.CHANGE_VERB) == "delete":
            return other
    return None


def benign_reason(record: SpanRecord, history: Sequence[SpanRecord]) -> str | None:
    """Why a failed request is benign, or None when it is a real failure (or did not fail).

    ``history`` is every request, Event and change of the same object, in any order; the record
    itself may be among them.
    """
    if not record.error or record.source is not TraceSource.AUDIT:
        return None
    code = _code(record)
    verb = _verb(record)
    ordered = sorted(history, key=lambda r: (r.start_us, r.end_us))
    earlier = [r for r in ordered if r.start_us < record.start_us and r is not record]
    later = [r for r in ordered if r.start_us > record.start_us and r is not record]
    if code == 409 and verb in _WRITE_VERBS and _by_controller(record, later):
        return "conflict: the controller's copy was stale; it re-reads the object and retries"
    if code == 404 and verb == "delete":
        gone = _deleted_before(record, earlier)
        if gone is not None:
            who = _user(gone) or "the watch"
            return f"already deleted (by {who}); a repeated delete changes nothing"
        if _user(record).startswith("system:"):
            return "already gone: a controller repeating a delete changes nothing"
    return None


def _benign(record: SpanRecord, reason: str) -> SpanRecord:
    return SpanRecord(
        record.trace_id,
        record.span_id,
        record.parent_id,
        record.source,
        record.name,
        record.start_us,
        record.end_us,
        record.key,
        record.object_id,
        record.window,
        record.uid,
        record.kind,
        record.version,
        {**record.tags, OUTCOME: BENIGN, OUTCOME_REASON: reason},
        tuple(Log(RESPONSE_LOG, log.message) if log.kind == "error" else log for log in record.logs),
        False,
    )


def marked(record: SpanRecord, history: Sequence[SpanRecord]) -> SpanRecord:
    """One record, marked benign when its object's history (every request, Event and change of
    the object around it) shows it to be."""
    reason = benign_reason(record, history)
    return record if reason is None else _benign(record, reason)


def classify(records: list[SpanRecord]) -> list[SpanRecord]:
    """One object's requests, Events and changes, with the benign failures marked (the list itself
    when there are none, which is almost always)."""
    if not any(r.error for r in records):
        return records
    marked = list(records)
    for i, record in enumerate(records):
        reason = benign_reason(record, records)
        if reason is not None:
            marked[i] = _benign(record, reason)
    return marked


def is_benign(record: SpanRecord) -> bool:
    return record.tags.get(OUTCOME) == BENIGN
