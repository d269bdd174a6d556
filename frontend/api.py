"""The query side over HTTP: Jaeger's query API shape, ``/redirect``, our lookup API and the web UI.

``install`` adds the routes to an app: ``kelemetry serve`` (beside the webhook, reading the
embedded store) and ``kelemetry frontend`` (alone, reading the store or a real Jaeger). Every
refusal is a JSON body with a reason (``error``, plus Jaeger's ``errors`` list so Jaeger UI
shows it too), never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from frontend import modes
from frontend.assemble import ObjectQuery
from frontend.backend import Suggestion
from frontend.query import QueryService, incarnation_json, object_json
from kelemetry import errors
from kelemetry.model import times

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"

# An unencoded "+02:00" in a query string arrives as " 02:00".


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"data": None, "error": message, "errors": [{"code": status, "msg": message}]}, status_code=status
    )


def _guard(call: Callable[[], Response]) -> Response:
    try:
        return call()
    except errors.InputError as exc:
        return _error(exc.status, str(exc))
    except errors.NotFound as exc:
        return _error(404, str(exc))
    except errors.BackendError as exc:
        return _error(502, str(exc))
    except errors.KelemetryError as exc:
        logger.warning("query failed: %s", exc)
        return _error(500, str(exc))


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def _jaeger(data: list[Any]) -> Response:
    """Jaeger's response envelope."""
    return _json({"data": data, "total": len(data), "limit": 0, "offset": 0, "errors": None})


def _require(**params: str | None) -> None:
    missing = [name for name, value in params.items() if not value]
    if missing:
        raise errors.InputError(f"missing query parameter(s): {', '.join(missing)}")


def parse_time_param(name: str, value: str | None) -> int | None:
    """µs since the epoch (Jaeger's convention) or RFC 3339 with a zone."""
    if value is None or value == "":
        return None
    try:
        return times.parse_moment(value, what=name, jaeger=True)
    except ValueError as exc:
        raise errors.InputError(str(exc)) from None


def _lookback(value: str | None, end_us: int | None) -> int | None:
    if not value or value == "custom":
        return None
    try:
        span = times.parse_duration_us(value, what="lookback")
    except ValueError as exc:
        raise errors.InputError(str(exc)) from None
    end = end_us if end_us is not None else times.now_us()
    # Longer than the epoch is "everything": clamp rather than overflow the store's integers.
    return max(end - span, 0)


def _parse_tags(tags_json: str | None, tag_pairs: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    if tags_json:
        try:
            value = orjson.loads(tags_json)
        except orjson.JSONDecodeError:
            raise errors.InputError(
                'tags must be a JSON object, e.g. {"resource":"pods","name":"web-1"}'
            ) from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise errors.InputError('tags must be a JSON object of strings, e.g. {"resource":"pods"}')
        found.update(value)
    for pair in tag_pairs:
        key, sep, val = pair.partition(":")
        if not sep or not key:
            raise errors.InputError(f"invalid tag {pair!r}: use key:value")
        found[key] = val
    return found


def _int_param(name: str, value: str | None, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise errors.InputError(f"invalid {name} {value!r}: expected an integer") from None
    if not low <= number <= high:
        raise errors.InputError(f"{name} must be between {low} and {high}, not {number}")
    return number


def install(app: FastAPI, query_service: QueryService) -> None:
    """Add the query API, /redirect and the UI to ``app``."""

    # -- Jaeger's query API

    @app.get("/api/services")
    def services() -> Response:
        return _jaeger([mode.name for mode in modes.ALL])

    def clusters_of(service_name: str | None) -> list[str]:
        """Operations are clusters; the service (display mode) only has to be a valid one."""
        if service_name:
            modes.from_name(service_name)
        return query_service.backend.clusters()

    @app.get("/api/services/{service_name}/operations")
    def service_operations(service_name: str) -> Response:
        return _guard(lambda: _jaeger(clusters_of(service_name)))

    @app.get("/api/operations")
    def operations(service: str | None = None) -> Response:
        return _guard(lambda: _jaeger([{"name": name, "spanKind": ""} for name in clusters_of(service)]))

    @app.get("/api/traces")
    def find_traces(
        service: str | None = None,
        operation: str | None = None,
        tags: str | None = None,
        tag: Annotated[list[str] | None, Query()] = None,
        start: str | None = None,
        end: str | None = None,
        lookback: str | None = None,
        limit: str | None = None,
        traceID: Annotated[list[str] | None, Query()] = None,
    ) -> Response:
        def run() -> Response:
            if traceID:
                # Jaeger UI's search by trace id and its trace comparison.
                return _jaeger([query_service.view(trace_id) for trace_id in dict.fromkeys(traceID)])
            end_us = parse_time_param("end", end)
            start_us = parse_time_param("start", start)
            if start_us is None:
                start_us = _lookback(lookback, end_us)
            found = query_service.search(
                service=service or "",
                cluster=operation or None,
                search_tags=_parse_tags(tags, tag or []),
                start_us=start_us,
                end_us=end_us,
                limit=_int_param("limit", limit, 20, 0, 1000),
            )
            return _jaeger(found)

        return _guard(run)

    @app.get("/api/traces/{trace_id}")
    def get_trace(trace_id: str, start: str | None = None, end: str | None = None) -> Response:
        def run() -> Response:
            trace = query_service.view(
                trace_id, parse_time_param("start", start), parse_time_param("end", end)
            )
            return _jaeger([trace])

        return _guard(run)

    # -- /redirect: from an object and a moment to its trace page

    @app.get("/redirect")
    def redirect(
        cluster: str | None = None,
        group: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        ts: str | None = None,
    ) -> Response:
        def run() -> Response:
            _require(cluster=cluster, resource=resource, name=name, ts=ts)
            assert cluster and resource and name and ts
            moment = parse_time_param("ts", ts)
            assert moment is not None
            query = ObjectQuery(
                cluster=cluster, group=group, resource=resource, namespace=namespace or None, name=name
            )
            view_id = query_service.redirect(query, moment)
            return RedirectResponse(f"/trace/{view_id}", status_code=302)

        return _guard(run)

    # -- our own lookup API (the UI's)

    @app.get("/api/kelemetry/modes")
    def mode_list() -> Response:
        return _json({"default": modes.DEFAULT.id, "modes": [mode.describe() for mode in modes.ALL]})

    @app.get("/api/kelemetry/clusters")
    def clusters() -> Response:
        return _guard(lambda: _json({"data": query_service.backend.clusters()}))

    @app.get("/api/kelemetry/resources")
    def resources(cluster: str | None = None) -> Response:
        def run() -> Response:
            data = [
                {"group": r.group, "resource": r.resource, "kind": r.kind, "objects": r.objects}
                for r in query_service.backend.resources(cluster or None)
            ]
            return _json({"data": data})

        return _guard(run)

    @app.get("/api/kelemetry/objects")
    def objects(
        cluster: str | None = None,
        resource: str | None = None,
        group: str | None = None,
        namespace: str | None = None,
        q: str | None = None,
        limit: str | None = None,
    ) -> Response:
        def run() -> Response:
            rows = query_service.backend.suggest(
                Suggestion(
                    cluster=cluster or None,
                    resource=resource or None,
                    group=group,
                    namespace=namespace,
                    text=(q or "").strip(),
                    limit=_int_param("limit", limit, 20, 1, 500),
                )
            )
            data = [{**object_json(row), "firstSeen": row.first_us, "lastSeen": row.last_us} for row in rows]
            return _json({"data": data})

        return _guard(run)

    @app.get("/api/kelemetry/lookup")
    def lookup(
        cluster: str | None = None,
        group: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        start: str | None = None,
        end: str | None = None,
        mode: str | None = None,
        uid: str | None = None,
    ) -> Response:
        def run() -> Response:
            _require(resource=resource, name=name)
            assert resource and name
            display = modes.from_id(mode) if mode else modes.DEFAULT
            query = ObjectQuery(
                cluster=cluster or "",
                group=group,
                resource=resource,
                namespace=namespace,
                name=name,
                start_us=parse_time_param("start", start),
                end_us=parse_time_param("end", end),
                uid=uid or None,
            )
            found = query_service.lookup(query, display)
            data = [
                {
                    "viewId": f.view_id,
                    "object": object_json(f.target),
                    # The same name used by other objects (deleted and created again): open by uid.
                    "incarnations": [incarnation_json(row) for row in f.trace.incarnations],
                }
                for f in found
            ]
            return _json({"data": data})

        return _guard(run)

    @app.get("/api/kelemetry/views/{view_id}")
    def view_info(view_id: str) -> Response:
        def run() -> Response:
            mode, number = modes.parse_view_trace_id(view_id)
            spec = query_service.views.load(number)
            others = [
                {**incarnation_json(row), "viewId": other_id}
                for row, other_id in query_service.incarnations(spec, mode)
            ]
            return _json(
                {
                    "viewId": view_id.lower(),
                    "modeId": mode.id,
                    "mode": mode.base.value,
                    "scope": mode.scope.value,
                    "depth": mode.depth,
                    "name": mode.name,
                    "object": {
                        "cluster": spec.cluster,
                        "group": spec.group,
                        "resource": spec.resource,
                        "namespace": spec.namespace,
                        "name": spec.name,
                        "uid": spec.uid,
                    },
                    "start": spec.start_us,
                    "end": spec.end_us,
                    "incarnations": others,
                }
            )

        return _guard(run)

    # -- the web UI: one page, routed in the browser

    index = STATIC_DIR / "index.html"

    def page() -> Response:
        if not index.is_file():
            return _error(500, "the web UI is not installed (frontend/static/index.html is missing)")
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return page()

    @app.get("/search", include_in_schema=False)
    def search_page() -> Response:
        return page()

    @app.get("/trace/{view_id}", include_in_schema=False)
    def trace_page(view_id: str) -> Response:
        return page()

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
