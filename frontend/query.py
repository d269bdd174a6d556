"""The query service: lookups, views and Jaeger-style searches, shared by the HTTP API and the CLI.

A lookup names an object and a time range; it becomes a saved view (``frontend.views``) whose
trace id carries the display mode. Reading a view assembles the object's hierarchy over the whole
range (every window merged), cuts it to the mode's scope and applies the mode's transform.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from frontend import modes, scope, transform
from frontend.assemble import AssembledTrace, ObjectQuery
from frontend.backend import Backend, StoreBackend
from frontend.modes import DisplayMode
from frontend.views import ViewSpec, ViewStore
from jaeger import model as jaeger_model
from kelemetry import errors
from kelemetry.model import tags
from kelemetry.store.sqlite import ObjectRow, StoreReader

REDIRECT_SPAN_US = 30 * 60 * 1_000_000
SEARCH_KEYS = frozenset({tags.CLUSTER, tags.GROUP, tags.RESOURCE, tags.NAMESPACE, tags.NAME})


@dataclass(frozen=True, slots=True)
class Found:
    view_id: str
    target: ObjectRow
    trace: AssembledTrace


def object_json(row: ObjectRow) -> dict[str, str]:
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


class QueryService:
    def __init__(self, backend: Backend, views: ViewStore) -> None:
        self.backend = backend
        self.views = views

    def close(self) -> None:
        self.backend.close()
        self.views.close()

    # -- lookups

    def lookup(self, query: ObjectQuery, mode: DisplayMode = modes.DEFAULT) -> list[Found]:
        """One view per object matching the query that was active in its range."""
        if not query.resource or not query.name:
            raise errors.InputError("resource and name are required")
        if query.start_us is not None and query.end_us is not None and query.start_us > query.end_us:
            raise errors.InputError("start is after end")
        candidates = self.backend.find_objects(query)
        if not candidates:
            raise errors.NotFound(f"no object {query.describe()} is known")
        found: list[Found] = []
        for row in candidates:
            try:
                trace = self.backend.trace(row, query.start_us, query.end_us)
            except errors.NotFound:
                continue
            number = self.views.save(ViewSpec.of(row.key, query.start_us, query.end_us))
            found.append(Found(modes.view_trace_id(mode, number), row, trace))
        if not found:
            raise errors.NotFound(f"{query.describe()} has no activity in the requested time range")
        return found

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
        rows = self.backend.find_objects(spec.query(start, end))
        if not rows:
            raise errors.NotFound(f"{spec.key.display} is no longer in the store")
        return render(self.backend.trace(rows[0], start, end), mode, view_id.lower())

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
