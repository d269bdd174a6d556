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

from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from frontend import modes, scope, transform
from frontend.backend import Backend, StoreBackend
from frontend.changes import ChangeQuery, ChangesJson, bucket_json, row_of
from frontend.modes import DisplayMode
from frontend.types import AssembledTrace, Found, ObjectQuery, Suggestion, View
from frontend.views import ViewSpec, ViewStore
from kelemetry import errors
from kelemetry.model import tags
from kelemetry.model.objects import KnownObject, ObjectKey

REDIRECT_SPAN_US = 30 * 60 * 1_000_000
RECENT_LIMIT = 20
SEARCH_KEYS = frozenset({tags.CLUSTER, tags.GROUP, tags.RESOURCE, tags.NAMESPACE, tags.NAME, tags.UID})


def object_json(row: KnownObject) -> dict[str, str]:
    key = row.key
    return {
        "cluster": key.cluster,
        "group": key.group,
        "resource": key.resource,
        "namespace": key.namespace,
        "name": key.name,
        "kind": row.kind,
        "uid": row.uid,
    }


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
    several_groups = len({k.group for k in keys}) > 1
    options = ", ".join(
        f"--group {k.group!r} --namespace {k.namespace!r}"
        if several_groups
        else f"--namespace {k.namespace!r}"
        for k in keys
    )
    return f"{query.describe()} is ambiguous; narrow it with one of: {options}"


class QueryService:
    def __init__(self, backend: Backend, views: ViewStore) -> None:
        self.backend = backend
        self.views = views

    def close(self) -> None:
        self.backend.close()
        self.views.close()

    # -- lookups

    def lookup(self, query: ObjectQuery, mode: DisplayMode = modes.DEFAULT) -> list[Found]:
        """One view per object matching the query that was active in its range: for each name, its
        newest incarnation with activity (or the one the query's uid names)."""
        found: list[Found] = []
        for incarnations in self._groups(query, "is known"):
            item = self._found(incarnations, query, mode)
            if item is not None:
                found.append(item)
        if not found:
            raise errors.NotFound(f"{query.describe()} has no activity in the requested time range")
        return found

    def lookup_one(self, query: ObjectQuery, mode: DisplayMode = modes.DEFAULT) -> Found:
        """The one object a query names (``kelemetry dump``): NotFound when its key fields match
        several objects, with the options to narrow it, whatever their activity."""
        groups = self._groups(query, "in the store")
        if len(groups) > 1:
            raise errors.NotFound(_ambiguity(query, groups))
        found = self._found(groups[0], query, mode)
        if found is None:
            raise errors.NotFound(f"{query.describe()} has no activity in the requested time range")
        return found

    def _groups(self, query: ObjectQuery, unknown: str) -> list[list[KnownObject]]:
        """The incarnations of each object the query's key fields match, newest first; NotFound
        ("no object ... {unknown}") when none does."""
        if not query.resource or not query.name:
            raise errors.InputError("resource and name are required")
        if query.start_us is not None and query.end_us is not None and query.start_us > query.end_us:
            raise errors.InputError("start is after end")
        groups = by_key(self.backend.find_objects(query))
        if query.uid is not None:
            groups = [group for group in groups if any(row.uid == query.uid for row in group)]
        if not groups:
            raise errors.NotFound(f"no object {query.describe()} {unknown}")
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
        return present(self.open(spec, start, end), mode, view_id.lower())

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
        try:
            found = self.lookup(query, mode)
        except errors.NotFound:
            return []
        return [
            present(self.backend.trace(item.target, start_us, end_us), mode, item.view_id)
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
                found.append(present(self.backend.trace(row, start_us, end_us), mode, view_id))
            except errors.NotFound:
                continue  # retention removed it since the listing
        return found

    # -- browsing what changed

    def changes(self, query: ChangeQuery, *, histogram: bool = False) -> ChangesJson:
        """A page of the requests, Events and watched changes the query matches, newest first, with
        the cursor of the next page, and (``histogram``) their counts per bucket over the range."""
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


def present(trace: AssembledTrace, mode: DisplayMode, view_id: str) -> View:
    """An assembled trace in a display mode: the scope cut, then the mode's transform."""
    scoped = scope.select(trace, mode.scope, mode.depth)
    return View(view_id, transform.apply(scoped, mode.base), trace.target)


def for_store(
    store_path: str | Path, views_path: str | Path | None = None, *, keep_views: bool = True
) -> QueryService:
    """A query service over an embedded store, with its views kept beside it (or in ``views_path``;
    in memory only without ``keep_views``, as for a one-shot dump)."""
    path = Path(store_path)
    views = path.with_name(path.name + ".views") if views_path is None else views_path
    return QueryService(StoreBackend.open(path), ViewStore(views if keep_views else None))
