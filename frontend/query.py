"""The query service: the one orchestration of lookups, views and Jaeger-style searches, shared by
the HTTP API and ``kelemetry dump``.

A lookup names an object and a time range. It finds the matching objects and keeps those with
activity in the range (both cheap questions to the backend), and saves a view for each: the
object's exact key, uid and range (``frontend.views``), named by a trace id that also carries the
display mode. Only reading a view assembles the object's hierarchy (every window of the range
merged), cuts it to the mode's scope and applies the mode's transform; renderers
(``frontend.jaegerjson``, ``frontend.text``, ``frontend.dump``) turn the result into output.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from frontend import actors, causes, gapmarks, modes, rollouts, scope, spanfacts, transform
from frontend import blame as blaming
from frontend import stuck as failing
from frontend.backend import Backend, StoreBackend
from frontend.changes import ChangeQuery, ChangesJson, bucket_json, row_of
from frontend.modes import DisplayMode
from frontend.spanfacts import format_time
from frontend.types import AssembledTrace, Found, ObjectQuery, Suggestion, View
from frontend.views import ViewSpec, ViewStore
from kelemetry import errors
from kelemetry.kube import names
from kelemetry.kube.kinds import KindResolver, builtin_names
from kelemetry.kube.names import ResourceName
from kelemetry.model import tags
from kelemetry.model.diffs import Segment
from kelemetry.model.events import TraceSource
from kelemetry.model.objects import KnownObject, ObjectKey
from kelemetry.model.spans import SpanRecord

REDIRECT_SPAN_US = 30 * 60 * 1_000_000
RECENT_LIMIT = 20
# The resources the store has seen change rarely; re-read them at most this often (seconds).
STORE_RESOURCES_TTL = 10.0
# How many objects a "did you mean" reads and names.
NEAR_CANDIDATES = 200
NEAR_SHOWN = 5
# A stuck Pod's cause is its own read of the store; past this many Pods in one answer they are
# listed without it (the Pods of one workload mostly share their origin anyway).
STUCK_CAUSES = 50
NO_CREATED_BODY = "the value at creation is not known: no body of the created object was stored"
# The namespace-wide view of stuck Pods reads at most this many Pods (the most recently active
# first), so a busy namespace answers in bounded time; the answer says when the bound cut it.
STUCK_PODS_SCANNED = 2000
SEARCH_KEYS = frozenset({tags.CLUSTER, tags.GROUP, tags.RESOURCE, tags.NAMESPACE, tags.NAME, tags.UID})


def incarnation_json(row: KnownObject) -> dict[str, str | int | None]:
    return {"uid": row.uid, "kind": row.kind, "firstSeen": row.first_us, "lastSeen": row.last_us}


def by_key(rows: list[KnownObject]) -> list[list[KnownObject]]:
    """Rows grouped by object key, each group's incarnations newest first (by first activity)."""
    groups: dict[ObjectKey, list[KnownObject]] = defaultdict(list)
    for row in rows:
        groups[row.key].append(row)
    for group in groups.values():
        group.sort(key=lambda r: (r.first_us or r.last_us or 0, r.last_us or 0), reverse=True)
    return list(groups.values())


def _ambiguity(query: ObjectQuery, groups: list[list[KnownObject]]) -> str:
    keys = [group[0].key for group in groups]
    several_clusters = len({k.cluster for k in keys}) > 1
    several_groups = len({k.group for k in keys}) > 1

    def option(key: ObjectKey) -> str:
        parts = [f"--cluster {key.cluster!r}"] if several_clusters else []
        if several_groups:
            parts.append(f"--group {key.group!r}")
        parts.append(f"--namespace {key.namespace!r}")
        return " ".join(parts)

    options = ", ".join(dict.fromkeys(option(k) for k in keys))
    return f"{query.describe()} is ambiguous; narrow it with one of: {options}"


def _where(key: ObjectKey) -> str:
    """An object as a "did you mean" names it."""
    place = f" in namespace {key.namespace}" if key.namespace else ""
    return f"{key.display}{place} (cluster {key.cluster})"


def _moment(time_us: int) -> str:
    return datetime.fromtimestamp(time_us // 1_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(age_us: int) -> str:
    minutes = age_us // 60_000_000
    if minutes < 120:
        return f"{minutes}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h"
    return f"{minutes // (24 * 60)}d {minutes // 60 % 24}h"


def since_covering(age_us: int) -> str:
    """A ``--since`` duration a little longer than ``age_us``, in the largest readable unit."""
    minutes = max(math.ceil(age_us / 60_000_000) + 1, 1)
    if minutes <= 120:
        return f"{minutes}m"
    hours = math.ceil(minutes / 60)
    if hours <= 48:
        return f"{hours}h"
    return f"{math.ceil(hours / 24)}d"


def inactive_reason(query: ObjectQuery, incarnations: list[KnownObject], now_us: int | None = None) -> str:
    """NotFound's reason when the object exists but had no activity in the range: when it was
    active, and the range to ask for instead (as ``--since`` for the CLI, ``start``/``end`` for
    the API)."""
    base = f"{query.describe()} has no activity in the requested time range"
    tried = [row for row in incarnations if not query.uid or row.uid == query.uid]
    firsts = [row.first_us for row in tried if row.first_us is not None]
    lasts = [row.last_us for row in tried if row.last_us is not None]
    if not firsts or not lasts:
        return base + (
            "; it had no requests of its own, only objects it owns had: widen the range "
            "(without --since/--start/--end on the CLI, without start and end on the API)"
        )
    first, last = min(firsts), max(lasts)
    now = time.time_ns() // 1000 if now_us is None else now_us
    # Whole seconds around the activity, so the suggested range includes its first and last event.
    start, end = _moment(first), _moment(last + 1_000_000)
    ago = f" ({_age(now - last)} ago)" if now > last else ""
    return (
        f"{base}; it was last active at {_moment(last)}{ago}, first at {_moment(first)}: "
        f"try --since {since_covering(max(now - first, 0))} or --start {start} --end {end} (CLI), "
        f"start={start}&end={end} (API)"
    )


class QueryService:
    def __init__(self, backend: Backend, views: ViewStore, kinds: KindResolver | None = None) -> None:
        self.backend = backend
        self.views = views
        self.kinds = kinds
        """The collector's kind table when it serves beside one: API discovery of the connected
        clusters, with their custom resources' short names."""
        self._store_resources: tuple[float, list[ResourceName]] | None = None

    def close(self) -> None:
        self.backend.close()
        self.views.close()

    # -- resources as people type them

    def resource_names(self) -> list[ResourceName]:
        """Every resource a typed name can mean: discovery of the connected clusters, what the store
        has seen, the built-in table."""
        discovered = self.kinds.names() if self.kinds is not None else []
        return names.unite(discovered, self._seen_resources(), builtin_names())

    def _seen_resources(self) -> list[ResourceName]:
        cached = self._store_resources
        if cached is not None and time.monotonic() - cached[0] < STORE_RESOURCES_TTL:
            return cached[1]
        seen = [ResourceName(r.group, r.resource, r.kind) for r in self.backend.resources(None)]
        self._store_resources = (time.monotonic(), seen)
        return seen

    def resolve_resource(self, text: str, group: str | None = None) -> tuple[str | None, str]:
        """(group, plural resource) for a resource as typed (``deploy``, ``Deployment``,
        ``deployments.v1.apps``); ``group`` narrows it. A spelling that names resources of several
        groups is an InputError listing them (the ones the store has objects of, when that settles
        it); one that names nothing known is returned as typed, for the lookup's "did you mean"."""
        typed = text.strip()
        discovered = self.kinds.names() if self.kinds is not None else builtin_names()
        if "." not in typed and any(entry.resource == typed for entry in discovered):
            # A plural as the store keys it: matched in any group, as before names were read, and
            # without reading the store's resources (a Jaeger backend would search for them).
            return group, typed
        known = self.resource_names()
        matches = names.resolve(typed, known)
        if group is not None:
            narrowed = [entry for entry in matches if entry.group == group]
            if matches and not narrowed:
                groups = ", ".join(repr(entry.group) for entry in matches)
                raise errors.InputError(f"resource {typed!r} is in group {groups}, not group {group!r}")
            matches = narrowed
        if not matches:
            return group, typed
        if len(matches) > 1 and all(entry.resource == typed for entry in matches):
            # The plural as stored: every group's objects, as above.
            return group, typed
        if len(matches) > 1:
            seen = {(entry.group, entry.resource) for entry in self._seen_resources()}
            present = [entry for entry in matches if (entry.group, entry.resource) in seen]
            matches = present or matches
        if len(matches) > 1:
            choices = ", ".join(entry.qualified for entry in matches)
            raise errors.InputError(f"resource {typed!r} is ambiguous: it may be {choices}; name one of them")
        return matches[0].group, matches[0].resource

    def normalize(self, query: ObjectQuery) -> ObjectQuery:
        """The query with its resource as the store keys it."""
        if not query.resource:
            return query
        group, resource = self.resolve_resource(query.resource, query.group)
        return replace(query, group=group, resource=resource)

    def _unknown_resource(self, resource: str) -> str | None:
        """The reason for a resource nothing knows, with the nearest spellings; None when known."""
        known = self.resource_names()
        if any(entry.resource == resource for entry in known):
            return None
        spellings = [entry.resource for entry in known]
        spellings += [entry.kind for entry in known if entry.kind]
        spellings += [short for entry in known for short in entry.short_names]
        near = names.nearest(resource, spellings)
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        return f"unknown resource {resource!r}{hint}"

    def _near_objects(self, query: ObjectQuery) -> list[KnownObject]:
        """The known objects closest to one a query names and nothing matched: the same name in
        another namespace, cluster or resource, then names of the resource near the typed one."""
        same = self.backend.find_objects(replace(query, cluster="", namespace=None, group=None))
        exact = [
            row
            for row in self.backend.suggest(Suggestion(text=query.name, limit=NEAR_SHOWN, prefix_only=True))
            if row.key.name == query.name
        ]
        # Edit distance is measured on bounded pools read by index: the names sharing the longest
        # prefix with the typed one (a typo or extra characters at the end), then those sharing its
        # first two letters and its first letter (a typo further in).
        # Last, the names that contain the typed one (a Pod's suffix typed as its name): one pass
        # over the objects, only when no start matched.
        contained = Suggestion(resource=query.resource, group=query.group, text=query.name, limit=NEAR_SHOWN)
        near: list[KnownObject] = []
        for prefix in dict.fromkeys((self._longest_prefix(query), query.name[:2], query.name[:1], None)):
            if prefix == "":
                continue
            pool = (
                self._names_from(query, prefix, NEAR_CANDIDATES)
                if prefix is not None
                else self.backend.suggest(contained)
            )
            by_name: dict[str, KnownObject] = {}
            for row in pool:
                by_name.setdefault(row.key.name, row)
            near = [by_name[name] for name in names.nearest(query.name, by_name, NEAR_SHOWN)]
            if near:
                break
        ordered: dict[ObjectKey, KnownObject] = {}
        for row in [*same, *exact, *near]:
            ordered.setdefault(row.key, row)
        return list(ordered.values())[:NEAR_SHOWN]

    def _names_from(self, query: ObjectQuery, prefix: str, limit: int) -> list[KnownObject]:
        return self.backend.suggest(
            Suggestion(resource=query.resource, group=query.group, text=prefix, limit=limit, prefix_only=True)
        )

    def _longest_prefix(self, query: ObjectQuery) -> str:
        """The longest start of the typed name that some name of the resource starts with, by a
        binary search of index reads (a shorter start matches whatever a longer one does)."""
        low, high = 0, len(query.name) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self._names_from(query, query.name[:middle], 1):
                low = middle
            else:
                high = middle - 1
        return query.name[:low]

    def _missing(self, query: ObjectQuery, unknown: str) -> str:
        """NotFound's reason for a query that matched no object, with what it may have meant."""
        reason = f"no object {query.describe()} {unknown}"
        unknown_resource = self._unknown_resource(query.resource)
        if unknown_resource is not None:
            return f"{reason}: {unknown_resource}"
        near = self._near_objects(query)
        if near:
            return f"{reason}; did you mean {'; '.join(_where(row.key) for row in near)}?"
        return reason

    # -- lookups

    def lookup(self, query: ObjectQuery, mode: DisplayMode = modes.DEFAULT) -> list[Found]:
        """One view per object matching the query that was active in its range: for each name, its
        newest incarnation with activity (or the one the query's uid names)."""
        query = self.normalize(query)
        found: list[Found] = []
        groups = self._groups(query, "is known")
        for incarnations in groups:
            item = self._found(incarnations, query, mode)
            if item is not None:
                found.append(item)
        if not found:
            raise errors.NotFound(inactive_reason(query, [row for group in groups for row in group]))
        return found

    def lookup_one(self, query: ObjectQuery, mode: DisplayMode = modes.DEFAULT) -> Found:
        """The one object a query names (``kelemetry dump``): NotFound when its key fields match
        several objects, with the options to narrow it, whatever their activity."""
        query = self.normalize(query)
        groups = self._groups(query, "in the store")
        if len(groups) > 1:
            raise errors.NotFound(_ambiguity(query, groups))
        found = self._found(groups[0], query, mode)
        if found is None:
            raise errors.NotFound(inactive_reason(query, groups[0]))
        return found

    def _groups(self, query: ObjectQuery, unknown: str) -> list[list[KnownObject]]:
        """The incarnations of each object the query's key fields match, newest first; NotFound
        ("no object ... {unknown}", with what it may have meant) when none does."""
        if not query.resource or not query.name:
            raise errors.InputError("resource and name are required")
        if query.start_us is not None and query.end_us is not None and query.start_us > query.end_us:
            raise errors.InputError("start is after end")
        groups = by_key(self.backend.find_objects(query))
        if query.uid is not None:
            groups = [group for group in groups if any(row.uid == query.uid for row in group)]
        if not groups:
            raise errors.NotFound(self._missing(query, unknown))
        return groups

    def _found(self, incarnations: list[KnownObject], query: ObjectQuery, mode: DisplayMode) -> Found | None:
        """The view of the incarnation to show (the uid's, or the newest active in the range); None
        when it had no activity."""
        target = self._active(incarnations, query.uid, query.start_us, query.end_us)
        if target is None:
            return None
        number = self.views.save(ViewSpec.of(target.key, query.start_us, query.end_us, target.uid))
        others = tuple(row for row in incarnations if row is not target)
        return Found(modes.view_trace_id(mode, number), target, others)

    def _active(
        self, incarnations: list[KnownObject], uid: str | None, start_us: int | None, end_us: int | None
    ) -> KnownObject | None:
        tried = incarnations if not uid else [row for row in incarnations if row.uid == uid]
        return next((row for row in tried if self.backend.active(row, start_us, end_us)), None)

    # -- views

    def view(self, view_id: str, start_us: int | None = None, end_us: int | None = None) -> View:
        """A saved view in the mode its id names; ``start``/``end`` override the saved range."""
        mode, number = modes.parse_view_trace_id(view_id)
        spec = self.views.load(number)
        start = spec.start_us if start_us is None else start_us
        end = spec.end_us if end_us is None else end_us
        if start is not None and end is not None and start > end:
            raise errors.InputError("start is after end")
        return self._present(self.open(spec, start, end), mode, view_id.lower(), start, end)

    def open(self, spec: ViewSpec, start_us: int | None, end_us: int | None) -> AssembledTrace:
        """The trace a saved view stands for: its object opened by its exact key and uid (a view saved
        without a uid shows the newest incarnation active in the range)."""
        incarnations = self._incarnations_of(spec, start_us, end_us)
        if not incarnations or (spec.uid and not any(row.uid == spec.uid for row in incarnations)):
            raise errors.NotFound(f"{spec.key.display} is no longer in the store")
        if spec.uid:
            target = next(row for row in incarnations if row.uid == spec.uid)
        else:
            active = self._active(incarnations, None, start_us, end_us)
            if active is None:
                raise errors.NotFound(f"{spec.key.display} has no activity in the requested time range")
            target = active
        return self.backend.trace(target, start_us, end_us)

    def _incarnations_of(self, spec: ViewSpec, start_us: int | None, end_us: int | None) -> list[KnownObject]:
        rows = self.backend.objects_of(spec.key, start_us, end_us)
        return by_key(rows)[0] if rows else []

    def incarnations(self, spec: ViewSpec, mode: DisplayMode) -> list[tuple[KnownObject, str]]:
        """The other incarnations of a view's name, each with the id of its own view in ``mode``."""
        incarnations = self._incarnations_of(spec, spec.start_us, spec.end_us)
        if not incarnations:
            return []
        shown = spec.uid
        if not shown:
            # A view saved without a uid shows the newest incarnation active in its range.
            active = self._active(incarnations, None, spec.start_us, spec.end_us)
            shown = (active or incarnations[0]).uid
        return [
            (row, modes.view_trace_id(mode, self.views.save(replace(spec, uid=row.uid))))
            for row in incarnations
            if row.uid != shown
        ]

    def _present(
        self, trace: AssembledTrace, mode: DisplayMode, view_id: str, start_us: int | None, end_us: int | None
    ) -> View:
        """``present`` with the gaps of the trace's clusters that overlap the view's range."""
        low, high = gapmarks.view_range(trace, start_us, end_us)
        found = self.backend.gaps(gapmarks.clusters_of(trace), low, high)
        return present(trace, mode, view_id, found, (low, high))

    # -- Jaeger-style search

    def search(
        self,
        *,
        service: str,
        cluster: str | None,
        search_tags: dict[str, str],
        start_us: int | None,
        end_us: int | None,
        limit: int,
    ) -> list[View]:
        mode, cluster = self._service(service, cluster)
        unknown = sorted(set(search_tags) - SEARCH_KEYS)
        if unknown:
            raise errors.InputError(
                f"unsupported tag(s) {', '.join(unknown)}: search by {', '.join(sorted(SEARCH_KEYS))}"
            )
        if tags.NAME not in search_tags and tags.UID not in search_tags:
            return self.recent(mode, search_tags, cluster, start_us, end_us, limit)
        if tags.RESOURCE not in search_tags or tags.NAME not in search_tags:
            raise errors.InputError('tags must include "resource" and "name" (the object to look up)')
        query = ObjectQuery(
            cluster=search_tags.get(tags.CLUSTER) or cluster or "",
            group=search_tags.get(tags.GROUP),
            resource=search_tags[tags.RESOURCE],
            namespace=search_tags.get(tags.NAMESPACE),
            name=search_tags[tags.NAME],
            start_us=start_us,
            end_us=end_us,
            uid=search_tags.get(tags.UID) or None,
        )
        # An unknown object, or one without activity in the range, is a 404 with the reason (as
        # /redirect and the lookup API answer), not an empty list a script cannot tell from "quiet".
        found = self.lookup(query, mode)
        return [
            self._present(
                self.backend.trace(item.target, start_us, end_us), mode, item.view_id, start_us, end_us
            )
            for item in found[: limit or None]
        ]

    def _service(self, service: str, cluster: str | None) -> tuple[DisplayMode, str | None]:
        """The display mode a search's service names; a service that is a cluster's name (as people
        who know Jaeger but not our services type it) is that cluster in the default mode."""
        try:
            return (modes.from_name(service) if service else modes.DEFAULT), cluster
        except errors.InputError:
            if service in self.backend.clusters():
                return modes.DEFAULT, cluster or service
            raise

    def recent(
        self,
        mode: DisplayMode,
        search_tags: dict[str, str],
        cluster: str | None,
        start_us: int | None,
        end_us: int | None,
        limit: int,
    ) -> list[View]:
        """A search that names no object: the objects active in the range (within the cluster,
        resource and namespace given), each as its view, the most recent activity first."""
        rows = self.backend.recent(
            Suggestion(
                cluster=search_tags.get(tags.CLUSTER) or cluster or None,
                resource=search_tags.get(tags.RESOURCE),
                group=search_tags.get(tags.GROUP),
                namespace=search_tags.get(tags.NAMESPACE),
                limit=limit or RECENT_LIMIT,
            ),
            start_us,
            end_us,
        )
        found: list[View] = []
        for row in rows:
            view_id = modes.view_trace_id(
                mode, self.views.save(ViewSpec.of(row.key, start_us, end_us, row.uid))
            )
            try:
                found.append(
                    self._present(self.backend.trace(row, start_us, end_us), mode, view_id, start_us, end_us)
                )
            except errors.NotFound:
                continue  # retention removed it since the listing
        return found

    # -- browsing what changed

    def changes(self, query: ChangeQuery, *, histogram: bool = False) -> ChangesJson:
        """A page of the requests, Events and watched changes the query matches, newest first, with
        the cursor of the next page, and (``histogram``) their counts per bucket over the range."""
        if query.resource:
            group, resource = self.resolve_resource(query.resource, query.group)
            query = replace(query, group=group, resource=resource)
        query = query.checked()
        page = self.backend.changes(query)
        answer: ChangesJson = {
            "data": [row_of(span) for span in page.spans],
            "next": page.next.encode() if page.next is not None else None,
        }
        if histogram:
            bucket_us, buckets = self.backend.histogram(query)
            answer["bucket"] = bucket_us
            answer["histogram"] = [bucket_json(bucket) for bucket in buckets]
        return answer

    # -- causal answers: why an object is as it is, and who set a field

    def _incarnation_at(self, query: ObjectQuery, at_us: int | None) -> tuple[KnownObject, list[KnownObject]]:
        """The incarnation an answer is about (the uid's; else the newest whose own first activity is
        at or before ``at_us``; else the newest) and every incarnation of its name, newest first, each
        with ``first_us`` set to its first activity. An unknown object is NotFound with what it may
        have meant; a query matching several objects, with the options."""
        query = self.normalize(query)
        groups = self._groups(query, "is known")
        if len(groups) > 1:
            raise errors.NotFound(_ambiguity(query, groups))
        incarnations = self._by_first_activity(groups[0])
        if query.uid:
            return next(row for row in incarnations if row.uid == query.uid), incarnations
        if at_us is not None:
            existing = [row for row in incarnations if (row.first_us or 0) <= at_us]
            return (existing[0] if existing else incarnations[-1]), incarnations
        return incarnations[0], incarnations

    def _by_first_activity(self, incarnations: list[KnownObject]) -> list[KnownObject]:
        """A name's incarnations newest first by when each really began (its first request, Event
        or change), which also becomes its ``first_us``. The stored first_us is a whole-second
        creationTimestamp or a window's start: a ReplicaSet deleted at .858 and made again at .865
        of one second would otherwise seem to exist from the start of that second, before the
        delete, and overlap the incarnation it replaced."""
        dated = []
        for row in incarnations:
            began = self.backend.first_activity(row)
            dated.append(row if began is None else replace(row, first_us=began))
        dated.sort(key=lambda r: (r.first_us or r.last_us or 0, r.last_us or 0), reverse=True)
        return dated

    def explain(
        self,
        query: ObjectQuery,
        at_us: int | None = None,
        *,
        now_us: int | None = None,
        chain_only: bool = False,
    ) -> causes.Explanation:
        """The cause chain of one object at ``at_us`` (default: its last activity), with its view,
        the rollouts of the workload it is or belongs to and the stuck Pods below it (durations run
        to ``now_us``; default: ``at_us``, or now). ``chain_only`` leaves those two lists empty: they
        need the object's whole hierarchy, the chain only its line of owners."""
        target, _ = self._incarnation_at(query, at_us)
        # Nothing after the moment can explain it: the spans are read up to it.
        try:
            trace = self._lineage(target, at_us)
        except errors.NotFound:
            if at_us is None:
                raise
            # Milliseconds: the moments that matter here can be a few apart within one second.
            first = f"; it was first active at {format_time(target.first_us)}" if target.first_us else ""
            raise errors.NotFound(
                f"{query.describe()} has no activity at or before {format_time(at_us)}{first}"
            ) from None
        chain = causes.explain(trace, at_us, self._elsewhere(trace, at_us))
        number = self.views.save(ViewSpec.of(target.key, None, None, target.uid))
        now = now_us if now_us is not None else at_us if at_us is not None else time.time_ns() // 1000
        found_rollouts, found_stuck = ([], []) if chain_only else self._around(target, at_us, now)
        return causes.Explanation(
            spanfacts.object_json(target),
            chain,
            modes.view_trace_id(modes.DEFAULT, number),
            tuple(found_rollouts),
            tuple(found_stuck),
        )

    def _around(
        self, target: KnownObject, at_us: int | None, now_us: int
    ) -> tuple[list[rollouts.Rollout], list[failing.StuckPod]]:
        """The rollouts of the workload the object is or belongs to, and the stuck Pods below it:
        both need its hierarchy (ReplicaSets beside it, Pods below), assembled once without the
        Pods' routine writes (``Backend.states``), each Pod judged once for both."""
        try:
            whole = self.backend.states(target, None, at_us)
        except errors.NotFound:
            return [], []
        judged: failing.Judged = {}
        found_rollouts = rollouts.rollouts(whole, target, now_us, judged)
        return found_rollouts, failing.stuck_below(whole, target, now_us, self._cause_hook(), judged)

    def _cause_hook(self) -> failing.CauseHook:
        """The first request of a stuck Pod's cause chain (its origin step), for at most
        ``STUCK_CAUSES`` Pods of one answer: each is a read of the Pod's line of owners."""
        asked = 0

        def origin(pod: KnownObject, since_us: int) -> causes.Step | None:
            nonlocal asked
            asked += 1
            if asked > STUCK_CAUSES:
                return None
            # The Pod as the backend knows it: with its owner link, which a trace's span does not carry.
            known = next(
                (row for row in self.backend.objects_of(pod.key, None, since_us) if row.uid == pod.uid), pod
            )
            try:
                lineage = self._lineage(known, since_us)
                steps = causes.explain(lineage, since_us, self._elsewhere(lineage, since_us)).steps
            except errors.NotFound:
                return None
            return steps[-1] if steps else None

        return origin

    def _elsewhere(self, trace: AssembledTrace, at_us: int | None) -> list[SpanRecord]:
        """The requests, up to ``at_us``, of the other incarnations of the names on the object's
        line of owners that the trace does not hold (an earlier window's, another root's): where a
        delete of them was is where "recreated" is decided. One index read per name; an
        incarnation's activity is read only when there is such an incarnation."""
        held = {node.span.object_id for node in trace.walk()}
        found: list[SpanRecord] = []
        for span in causes.owner_line(trace):
            for row in self.backend.objects_of(span.key, None, at_us):
                if row.object_id in held:
                    continue
                held.add(row.object_id)
                try:
                    other = self.backend.lineage(row, None, at_us)
                except errors.NotFound:
                    continue
                found.extend(
                    node.span
                    for node in other.walk()
                    if node.span.object_id == row.object_id and node.span.source is not TraceSource.OBJECT
                )
        return found

    def _lineage(self, target: KnownObject, at_us: int | None) -> AssembledTrace:
        """The object's line of owners; for an object with no activity of its own (only what it owns
        had any), its whole hierarchy, so the answer can still say what is known of it."""
        try:
            return self.backend.lineage(target, None, at_us)
        except errors.NotFound:
            return self.backend.trace(target, None, at_us)

    def blame(self, query: ObjectQuery, field: str, at_us: int | None = None) -> blaming.Blame:
        """Who set each value of ``field`` on the object, per incarnation of its name (newest first;
        only the uid's when the query names one), up to ``at_us``."""
        path = blaming.parse_field(field)
        target, incarnations = self._incarnation_at(query, at_us)
        shown = [target] if query.uid else incarnations
        parts: list[blaming.IncarnationBlame] = []
        for row in shown:
            try:
                trace = self._lineage(row, at_us)
            except errors.NotFound:
                activity: list[SpanRecord] = []
            else:
                activity = [
                    node.span
                    for node in trace.walk()
                    if node.span.object_id == row.object_id and node.span.source is not TraceSource.OBJECT
                ]
            entries = blaming.history(activity, path, self._creation(row, activity, path))
            parts.append(
                blaming.IncarnationBlame(
                    row.uid, row.first_us, row.last_us, actors.was_deleted(activity), tuple(entries)
                )
            )
        return blaming.Blame(spanfacts.object_json(target), blaming.field_text(path), tuple(parts))

    def _creation(
        self, row: KnownObject, activity: list[SpanRecord], path: tuple[Segment, ...]
    ) -> blaming.Creation | None:
        """The field's value when the incarnation was created, from the body the store kept of the
        version its create request made; None when no create request is recorded."""
        create = next(
            (
                span
                for span in sorted(activity, key=lambda s: s.start_us)
                if span.tags.get(tags.AUDIT_VERB) == "create"
                and not span.tags.get(tags.AUDIT_SUBRESOURCE)
                and (request := actors.request_of(span)) is not None
                and request.succeeded
            ),
            None,
        )
        if create is None:
            return None
        try:
            versions = self.backend.revisions(row)
        except errors.Unsupported:
            return blaming.Creation(
                create,
                None,
                f"the value at creation is not known: the {self.backend.name} backend keeps "
                "requests and their diffs, not object bodies",
            )
        made = next((v for v in versions if v.span_id == create.span_id), None)
        if made is None:
            return blaming.Creation(create, None, NO_CREATED_BODY)
        body = self.backend.revision_body(row, made.resource_version)
        if body is None:
            return blaming.Creation(create, None, NO_CREATED_BODY)
        note = None if made.complete else "read from a partial answer of the create request"
        return blaming.Creation(create, blaming.shown_value(body, path), note)

    # -- stuck and failing Pods of a namespace

    def stuck(
        self,
        cluster: str,
        namespace: str,
        start_us: int | None,
        end_us: int | None,
        *,
        now_us: int | None = None,
        cause_of: failing.CauseHook | None = None,
    ) -> StuckAnswer:
        """The stuck or failing Pods of a namespace active in the range: each hierarchy they belong
        to is assembled once (Pods of one workload share it), at most ``STUCK_PODS_SCANNED`` Pods.
        Durations run to ``now_us`` (default: the end of the range, or now)."""
        if not cluster or not namespace:
            raise errors.InputError("cluster and namespace are required")
        if start_us is not None and end_us is not None and start_us > end_us:
            raise errors.InputError("start is after end")
        if cluster not in self.backend.clusters():
            known = ", ".join(self.backend.clusters()) or "none"
            raise errors.NotFound(f"no cluster {cluster!r} in the store; known: {known}")
        request = Suggestion(
            cluster=cluster, group="", resource="pods", namespace=namespace, limit=STUCK_PODS_SCANNED + 1
        )
        pods = self.backend.recent(request, start_us, end_us)
        truncated = len(pods) > STUCK_PODS_SCANNED
        pods = pods[:STUCK_PODS_SCANNED]
        now = min(time.time_ns() // 1000, end_us) if end_us is not None else time.time_ns() // 1000
        if now_us is not None:
            now = now_us
        wanted = {row.object_id for row in pods}
        judged: set[int] = set()
        hook = self._cause_hook()
        found: list[failing.StuckPod] = []
        for pod in pods:
            if pod.object_id in judged:
                continue
            try:
                trace = self.backend.states(pod, start_us, end_us)
            except errors.NotFound:
                judged.add(pod.object_id)
                continue  # retention removed it since the listing
            in_trace = {node.span.object_id for node in trace.walk() if failing.is_pod(node.span)}
            for item in failing.stuck_pods(trace, now, cause_of or hook):
                if item.pod.object_id in wanted and item.pod.object_id not in judged:
                    found.append(item)
            judged.update(in_trace & wanted)
            judged.add(pod.object_id)
        found.sort(key=lambda item: (item.since_us, item.pod.key.name))
        return StuckAnswer(tuple(found), len(pods), truncated)

    def redirect(self, query: ObjectQuery, ts_us: int) -> str:
        """The view of the object's activity within 30 minutes of ``ts``, in the default mode."""
        window = replace(query, start_us=ts_us - REDIRECT_SPAN_US, end_us=ts_us + REDIRECT_SPAN_US)
        found = self.lookup(window, modes.DEFAULT)
        if len(found) > 1:
            options = "; ".join(
                f"namespace={item.target.key.namespace!r} group={item.target.key.group!r}" for item in found
            )
            raise errors.InputError(f"{query.describe()} matches {len(found)} objects ({options}); narrow it")
        return found[0].view_id


@dataclass(frozen=True, slots=True)
class StuckAnswer:
    pods: tuple[failing.StuckPod, ...]
    scanned: int
    """How many Pods with activity in the range were read."""
    truncated: bool
    """More Pods were active than ``STUCK_PODS_SCANNED``: the least recently active were not read."""

    def to_json(self) -> dict[str, object]:
        return {
            "data": [item.to_json() for item in self.pods],
            "scanned": self.scanned,
            "truncated": self.truncated,
            "limit": STUCK_PODS_SCANNED,
        }


def present(
    trace: AssembledTrace,
    mode: DisplayMode,
    view_id: str,
    gaps: list[SpanRecord] | None = None,
    gap_range: tuple[int, int] | None = None,
) -> View:
    """An assembled trace in a display mode: the scope cut, then the mode's transform; then the
    ``gaps`` overlapping ``gap_range`` (the view's range) marked on it (``frontend.gapmarks``)."""
    scoped = scope.select(trace, mode.scope, mode.depth)
    root = transform.apply(scoped, mode.base)
    if gaps and gap_range is not None:
        root = gapmarks.mark(root, gaps, *gap_range)
    return View(view_id, root, trace.target)


def for_store(
    store_path: str | Path,
    views_path: str | Path | None = None,
    *,
    keep_views: bool = True,
    kinds: KindResolver | None = None,
) -> QueryService:
    """A query service over an embedded store, with its views kept beside it (or in ``views_path``;
    in memory only without ``keep_views``, as for a one-shot dump); ``kinds`` is the collector's
    discovered kind table, for custom resources' short names."""
    path = Path(store_path)
    views = path.with_name(path.name + ".views") if views_path is None else views_path
    return QueryService(StoreBackend.open(path), ViewStore(views if keep_views else None), kinds)
