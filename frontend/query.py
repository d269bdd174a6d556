"""The query service: lookups, views and Jaeger-style searches, shared by the HTTP API and the CLI.

A lookup names an object and a time range; it becomes a saved view (``frontend.views``) whose
trace id carries the display mode. Reading a view assembles the object's hierarchy over the whole
range (every window merged), cuts it to the mode's scope and applies the mode's transform.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from frontend import modes, scope, transform
from frontend.assemble import AssembledTrace, ObjectQuery, by_key, open_newest
from frontend.backend import Backend, StoreBackend
from frontend.modes import DisplayMode
from frontend.views import ViewSpec, ViewStore
from jaeger import model as jaeger_model
from kelemetry import errors
from kelemetry.model import tags
from kelemetry.model.objects import KnownObject
from kelemetry.store.sqlite import StoreReader

REDIRECT_SPAN_US = 30 * 60 * 1_000_000
SEARCH_KEYS = frozenset({tags.CLUSTER, tags.GROUP, tags.RESOURCE, tags.NAMESPACE, tags.NAME, tags.UID})


@dataclass(frozen=True, slots=True)
class Found:
    view_id: str
    target: KnownObject
    trace: AssembledTrace


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
        if not query.resource or not query.name:
            raise errors.InputError("resource and name are required")
        if query.start_us is not None and query.end_us is not None and query.start_us > query.end_us:
            raise errors.InputError("start is after end")
        groups = by_key(self.backend.find_objects(replace(query, uid=None)))
        if query.uid is not None:
            groups = [group for group in groups if any(row.uid == query.uid for row in group)]
        if not groups:
            raise errors.NotFound(f"no object {query.describe()} is known")
        found: list[Found] = []
        for incarnations in groups:
            try:
                trace = self._open(incarnations, query.uid, query.start_us, query.end_us)
            except errors.NotFound:
                continue
            row = trace.target
            number = self.views.save(ViewSpec.of(row.key, query.start_us, query.end_us, row.uid))
            found.append(Found(modes.view_trace_id(mode, number), row, trace))
        if not found:
            raise errors.NotFound(f"{query.describe()} has no activity in the requested time range")
        return found

    def _open(
        self, incarnations: list[KnownObject], uid: str | None, start_us: int | None, end_us: int | None
    ) -> AssembledTrace:
        tried = incarnations if not uid else [row for row in incarnations if row.uid == uid]
        trace = open_newest(tried, lambda row: self.backend.trace(row, start_us, end_us))
        trace.incarnations = [row for row in incarnations if row is not trace.target]
        return trace

    def view(
        self, view_id: str, start_us: int | None = None, end_us: int | None = None
    ) -> jaeger_model.Trace:
        """A saved view in the mode its id names; ``start``/``end`` override the saved range."""
        mode, number = modes.parse_view_trace_id(view_id)
        spec = self.views.load(number)
        start = spec.start_us if start_us is None else start_us
        end = spec.end_us if end_us is None else end_us
        if start is not None and end is not None and start > end:
            raise errors.InputError("start is after end")
        return render(self.open(spec, start, end), mode, view_id.lower())

    def open(self, spec: ViewSpec, start_us: int | None, end_us: int | None) -> AssembledTrace:
        """The trace a saved view stands for, with the other incarnations of its name listed."""
        rows = [row for row in self.backend.find_objects(spec.query(start_us, end_us)) if row.key == spec.key]
        groups = by_key(rows)
        if not groups or (spec.uid and not any(row.uid == spec.uid for row in groups[0])):
            raise errors.NotFound(f"{spec.key.display} is no longer in the store")
        try:
            return self._open(groups[0], spec.uid or None, start_us, end_us)
        except errors.NotFound:
            raise errors.NotFound(f"{spec.key.display} has no activity in the requested time range") from None

    def incarnations(self, spec: ViewSpec, mode: DisplayMode) -> list[tuple[KnownObject, str]]:
        """The other incarnations of a view's name, each with the id of its own view in ``mode``."""
        rows = [
            r for r in self.backend.find_objects(spec.query(spec.start_us, spec.end_us)) if r.key == spec.key
        ]
        groups = by_key(rows)
        if not groups:
            return []
        shown = spec.uid
        if not shown:
            # A view saved without a uid shows the newest incarnation active in its range.
            try:
                shown = self.open(spec, spec.start_us, spec.end_us).target.uid
            except errors.NotFound:
                shown = groups[0][0].uid
        return [
            (row, modes.view_trace_id(mode, self.views.save(replace(spec, uid=row.uid))))
            for row in groups[0]
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
    ) -> list[jaeger_model.Trace]:
        mode = modes.from_name(service) if service else modes.DEFAULT
        unknown = sorted(set(search_tags) - SEARCH_KEYS)
        if unknown:
            raise errors.InputError(
                f"unsupported tag(s) {', '.join(unknown)}: search by {', '.join(sorted(SEARCH_KEYS))}"
            )
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
        return [render(item.trace, mode, item.view_id) for item in found[: limit or None]]

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


def render(trace: AssembledTrace, mode: DisplayMode, trace_id: str) -> jaeger_model.Trace:
    scoped = scope.select(trace, mode.scope, mode.depth)
    return transform.to_jaeger(transform.apply(scoped, mode.base), trace_id)


def for_store(store_path: str | Path, views_path: str | Path | None = None) -> QueryService:
    """A query service over an embedded store, with its views kept beside it."""
    path = Path(store_path)
    views = path.with_name(path.name + ".views") if views_path is None else views_path
    return QueryService(StoreBackend(StoreReader(path)), ViewStore(views))
