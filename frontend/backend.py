"""Where the query side reads spans from: one interface, two backends.

``StoreBackend`` reads the embedded store; it is the only frontend module that knows the store.
``frontend.jaegerstore.JaegerBackend`` reads a real Jaeger through its query API (the collector then
only exports OTLP). Both answer with the query side's own types (``frontend.types``) and the model's
``KnownObject``, so scopes, modes and rendering do not know which one they got.

Finding objects and telling whether they had activity is cheap (index lookups); only ``trace``
assembles a hierarchy, and the query service calls it only for what it renders.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypedDict

from frontend import outcomes, stuck
from frontend.assemble import assemble
from frontend.changes import Bucket, ChangePage, ChangeQuery, Cursor, bucket_us_for
from frontend.types import AssembledTrace, ObjectQuery, ResourceInfo, Suggestion
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import KnownObject, ObjectKey
from kelemetry.model.spans import SpanRecord
from kelemetry.model.versions import ObjectVersion
from kelemetry.store.sqlite import StoreReader

# How far around a failed request its object's activity is read to tell a benign failure (a
# controller's conflict it retried, a delete of what was already deleted) from a real one.
OUTCOME_CONTEXT_US = 30 * 60 * 1_000_000
BENIGN_SCAN = 5000

_ACTIVITY_CHUNK = 100
_PODS = frozenset({("", "pods")})


def _any_activity(spans: list[SpanRecord]) -> bool:
    return any(span.source is not TraceSource.OBJECT for span in spans)


class Backend(Protocol):
    name: str

    def find_objects(self, query: ObjectQuery) -> list[KnownObject]:
        """Objects matching the query's key fields (cluster may be "": any); the uid is not applied."""
        ...

    def objects_of(self, key: ObjectKey, start_us: int | None, end_us: int | None) -> list[KnownObject]:
        """Every incarnation of exactly this key (a backend may only see those active in the range)."""
        ...

    def active(self, target: KnownObject, start_us: int | None, end_us: int | None) -> bool:
        """Whether ``target``, or anything it owns, had a request, Event or change in the range: an
        object span alone only says that a window was open. The cheap form of ``trace`` not raising."""
        ...

    def trace(self, target: KnownObject, start_us: int | None, end_us: int | None) -> AssembledTrace:
        """The merged hierarchy ``target`` belongs to over the range; NotFound when it had no activity."""
        ...

    def states(self, target: KnownObject, start_us: int | None, end_us: int | None) -> AssembledTrace:
        """What rollouts and stuck Pods read: the hierarchy ``trace`` gives, where a backend may leave
        out the Pods' updates and patches that mention none of ``stuck.SIGNAL_TEXTS`` (they can say
        nothing of a rollout or a stuck Pod). NotFound as ``trace``."""
        ...

    def lineage(self, target: KnownObject, start_us: int | None, end_us: int | None) -> AssembledTrace:
        """What the causal answers read: ``target`` and its owners up to the root of its hierarchy
        (cross-cluster parents included), with the other incarnations of their names, each with its
        requests, Events and changes; the rest of the hierarchy may be left out. NotFound as ``trace``."""
        ...

    def first_activity(self, target: KnownObject) -> int | None:
        """When the incarnation's own first request, Event or change started (None: none). Its
        ``first_us`` is a whole-second creationTimestamp or a window's start, too coarse to tell a
        name's incarnations apart when one is made again within the second of the other's delete."""
        ...

    def clusters(self) -> list[str]: ...

    def resources(self, cluster: str | None) -> list[ResourceInfo]: ...

    def suggest(self, request: Suggestion) -> list[KnownObject]: ...

    def changes(self, query: ChangeQuery) -> ChangePage:
        """Requests, Events and watched changes matching the query, newest first, one page."""
        ...

    def histogram(self, query: ChangeQuery) -> tuple[int, list[Bucket]]:
        """The same activity counted per bucket over the query's range (its cursor and limit do not
        apply): the bucket length and the buckets with activity, oldest first."""
        ...

    def recent(self, request: Suggestion, start_us: int | None, end_us: int | None) -> list[KnownObject]:
        """Objects with activity in the range, the most recent first (``request.text`` is not applied)."""
        ...

    def gaps(self, clusters: Iterable[str], start_us: int, end_us: int) -> list[SpanRecord]:
        """The gap spans (source ``gap``) of these clusters overlapping the range, oldest first."""
        ...

    def revisions(self, target: KnownObject) -> list[ObjectVersion]:
        """The stored versions of one incarnation, oldest first, without bodies."""
        ...

    def revision_body(self, target: KnownObject, resource_version: str) -> Any | None:
        """The cleaned body of one stored version (None: none stored)."""
        ...

    def close(self) -> None: ...


class StoreBackend:
    name = "store"

    def __init__(self, reader: StoreReader) -> None:
        self.reader = reader

    @classmethod
    def open(cls, path: str | Path) -> StoreBackend:
        return cls(StoreReader(path))

    def find_objects(self, query: ObjectQuery) -> list[KnownObject]:
        return self.reader.find_objects(
            cluster=query.cluster or None,
            resource=query.resource,
            name=query.name,
            namespace=query.namespace,
            group=query.group,
        )

    def objects_of(self, key: ObjectKey, start_us: int | None, end_us: int | None) -> list[KnownObject]:
        rows = self.reader.find_objects(
            cluster=key.cluster,
            resource=key.resource,
            name=key.name,
            namespace=key.namespace,
            group=key.group,
        )
        return [row for row in rows if row.key == key]

    def active(self, target: KnownObject, start_us: int | None, end_us: int | None) -> bool:
        # Without a span of its own in the range the target is in no trace of the range at all.
        own = self.reader.spans_of_objects([target.object_id], start_us, end_us)
        if not own:
            return False
        if _any_activity(own):
            return True
        # Then level by level down the owner links the store keeps beside the spans (the links that
        # parent the object spans), reading the spans of a few objects at a time by index, so a busy
        # hierarchy answers at its first request.
        seen = {target.object_id}
        level = [target.object_id]
        while level:
            level = [child for child in self.reader.children_of(level) if child not in seen]
            seen.update(level)
            for i in range(0, len(level), _ACTIVITY_CHUNK):
                if _any_activity(
                    self.reader.spans_of_objects(level[i : i + _ACTIVITY_CHUNK], start_us, end_us)
                ):
                    return True
        return False

    def trace(self, target: KnownObject, start_us: int | None, end_us: int | None) -> AssembledTrace:
        own = self.reader.spans_of_objects([target.object_id], start_us, end_us)
        spans = self.reader.spans_of_traces({span.trace_id for span in own}) if own else []
        return assemble(spans, target, start_us, end_us)

    def states(self, target: KnownObject, start_us: int | None, end_us: int | None) -> AssembledTrace:
        # The kubelet's status writes are most of a workload's spans; those that mention no signal
        # are skipped before they are decoded.
        own = self.reader.spans_of_objects([target.object_id], start_us, end_us)
        if not own:
            return assemble([], target, start_us, end_us)
        spans = self.reader.spans_of_traces(
            {span.trace_id for span in own}, thin=_PODS, unless=stuck.SIGNAL_TEXTS
        )
        return assemble(spans, target, start_us, end_us)

    def lineage(self, target: KnownObject, start_us: int | None, end_us: int | None) -> AssembledTrace:
        # Up the owner links the store keeps beside the spans, then the spans of those objects alone:
        # a Pod of a Deployment with a thousand Pods reads three objects' spans, not the thousand.
        chain = [target]
        seen = {target.object_id}
        current: KnownObject | None = target
        while current is not None and current.owner_id is not None and current.owner_id not in seen:
            seen.add(current.owner_id)
            current = self.reader.object_by_id(current.owner_id)
            if current is not None:
                chain.append(current)
        wanted = set(seen)
        for row in chain:
            wanted.update(other.object_id for other in self.objects_of(row.key, start_us, end_us))
        return assemble(self.reader.spans_of_objects(wanted, start_us, end_us), target, start_us, end_us)

    def first_activity(self, target: KnownObject) -> int | None:
        return self.reader.first_activity(target.object_id)

    def clusters(self) -> list[str]:
        return self.reader.clusters()

    def resources(self, cluster: str | None) -> list[ResourceInfo]:
        return [ResourceInfo(*row) for row in self.reader.resources(cluster)]

    def suggest(self, request: Suggestion) -> list[KnownObject]:
        return self.reader.suggest(
            cluster=request.cluster,
            resource=request.resource,
            group=request.group,
            namespace=request.namespace,
            text=request.text,
            limit=request.limit,
            prefix_only=request.prefix_only,
        )

    def gaps(self, clusters: Iterable[str], start_us: int, end_us: int) -> list[SpanRecord]:
        return self.reader.gap_spans(clusters, start_us, end_us)

    # -- browsing what changed

    def changes(self, query: ChangeQuery) -> ChangePage:
        before = None if query.cursor is None else (query.cursor.start_us, query.cursor.span_id)
        # One row more than the page tells whether another page follows.
        spans = self.reader.activity(**_activity_filters(query), before=before, limit=query.limit + 1)
        page = spans[: query.limit]
        more = len(spans) > query.limit
        cursor = Cursor(page[-1].start_us, page[-1].span_id) if more else None
        shown = self._with_outcomes(page)
        if query.errors_only:
            # A benign failure is no error to look for; the cursor still follows the rows read.
            shown = [span for span in shown if span.error]
        return ChangePage(tuple(shown), cursor)

    def _with_outcomes(self, page: list[SpanRecord]) -> list[SpanRecord]:
        """The page with benign failures marked as the trace view marks them, judged on each failed
        request's object's activity around it (read only for the few objects with a failure)."""
        failed = {span.object_id for span in page if span.error and span.source is TraceSource.AUDIT}
        if not failed:
            return page
        around = [span for span in page if span.object_id in failed]
        history: dict[int, list[SpanRecord]] = defaultdict(list)
        for record in self.reader.spans_of_objects(
            failed,
            min(span.start_us for span in around) - OUTCOME_CONTEXT_US,
            max(span.end_us for span in around) + OUTCOME_CONTEXT_US,
        ):
            history[record.object_id].append(record)
        return [
            outcomes.marked(span, history[span.object_id]) if span.object_id in failed else span
            for span in page
        ]

    def histogram(self, query: ChangeQuery) -> tuple[int, list[Bucket]]:
        start, end = query.start_us, query.end_us
        if start is None or end is None:
            # An open range is sized by the store's own first and last activity (two index probes).
            bounds = self.reader.activity_bounds()
            if bounds is not None:
                start = bounds[0] if start is None else start
                end = bounds[1] if end is None else end
        bucket_us = bucket_us_for(start, end)
        rows = self.reader.activity_histogram(bucket_us=bucket_us, **_activity_filters(query))
        benign = self._benign_per_bucket(query, bucket_us)
        buckets = []
        for start_us, requests, events, changes, warnings, failed in rows:
            drop = benign.get(start_us, 0)
            if query.errors_only:
                # Benign failures are not listed among the errors, so they are not counted there.
                requests -= drop
            bucket = Bucket(start_us, requests, events, changes, warnings, failed - drop)
            if bucket.requests or bucket.events or bucket.changes:
                buckets.append(bucket)
        return bucket_us, buckets

    def _benign_per_bucket(self, query: ChangeQuery, bucket_us: int) -> dict[int, int]:
        """How many of the range's failed requests are benign, per bucket: they are drawn as routine
        activity, not as errors, as in the list and the trace view. Failures are few next to the
        rest; past BENIGN_SCAN failures in one range the counts stay as the apiserver answered."""
        failed = self.reader.activity(
            **_activity_filters(replace(query, errors_only=True)), before=None, limit=BENIGN_SCAN
        )
        if not failed or len(failed) >= BENIGN_SCAN:
            return {}
        counts: dict[int, int] = defaultdict(int)
        for span in self._with_outcomes(failed):
            if outcomes.is_benign(span):
                counts[span.start_us // bucket_us * bucket_us] += 1
        return counts

    def recent(self, request: Suggestion, start_us: int | None, end_us: int | None) -> list[KnownObject]:
        rows = self.reader.recent_objects(
            cluster=request.cluster,
            group=request.group,
            resource=request.resource,
            namespace=request.namespace,
            start_us=start_us,
            end_us=end_us,
            limit=request.limit,
        )
        return [row for row, _last in rows]

    # -- the object at a moment

    def revisions(self, target: KnownObject) -> list[ObjectVersion]:
        return self.reader.versions_of(target.object_id)

    def revision_body(self, target: KnownObject, resource_version: str) -> Any | None:
        return self.reader.version_body(target.object_id, resource_version)

    def close(self) -> None:
        self.reader.close()


class _ActivityFilters(TypedDict):
    cluster: str | None
    group: str | None
    resource: str | None
    namespace: str | None
    user: str | None
    verb: str | None
    errors_only: bool
    start_us: int | None
    end_us: int | None


def _activity_filters(query: ChangeQuery) -> _ActivityFilters:
    return {
        "cluster": query.cluster,
        "group": query.group,
        "resource": query.resource,
        "namespace": query.namespace,
        "user": query.user,
        "verb": query.verb,
        "errors_only": query.errors_only,
        "start_us": query.start_us,
        "end_us": query.end_us,
    }
