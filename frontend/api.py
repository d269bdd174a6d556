"""The query side over HTTP: Jaeger's query API shape, ``/redirect``, our lookup API and the web UI.

Routers per endpoint group, the ``QueryService`` as a dependency, and one exception handler that
answers our error tree (``kelemetry.errors``) as JSON with a reason (``error``, plus Jaeger's
``errors`` list so Jaeger UI shows it too), never a traceback. ``install`` puts them on the app
that ``kelemetry.app.build_app`` makes for ``kelemetry serve`` (beside the webhook, reading the
embedded store) and ``kelemetry frontend`` (alone, reading the store or a real Jaeger).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from frontend import jaegerjson, modes
from frontend.query import QueryService, incarnation_json, object_json
from frontend.types import ObjectQuery, Suggestion
from kelemetry import errors
from kelemetry.model import times

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
JSON = "application/json"


def query_service(request: Request) -> QueryService:
    service: QueryService = request.app.state.query_service
    return service


Service = Annotated[QueryService, Depends(query_service)]


# -- errors


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"data": None, "error": message, "errors": [{"code": status, "msg": message}]}, status_code=status
    )


def status_of(exc: errors.KelemetryError) -> int:
    if isinstance(exc, errors.InputError):
        return exc.status
    if isinstance(exc, errors.NotFound):
        return 404
    if isinstance(exc, errors.BackendError):
        return 502
    return 500


async def answer_error(_request: Request, exc: Exception) -> Response:
    """The one handler of our error tree on the query side."""
    if not isinstance(exc, errors.KelemetryError):
        raise exc  # registered for KelemetryError only; satisfies the handler signature
    status = status_of(exc)
    if status == 500:
        logger.warning("query failed: %s", exc)
    return error_response(status, str(exc))


# -- parameters (read here rather than by FastAPI, so every refusal is our JSON with the reason)


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type=JSON)


def _jaeger(data: list[Any]) -> Response:
    return Response(jaegerjson.response(data), media_type=JSON)


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


# -- Jaeger's query API

jaeger_api = APIRouter(prefix="/api")


@jaeger_api.get("/services")
def services() -> Response:
    return _jaeger([mode.name for mode in modes.ALL])


def _clusters_of(service: QueryService, service_name: str | None) -> list[str]:
    """Operations are clusters; the service (display mode) only has to be a valid one."""
    if service_name:
        modes.from_name(service_name)
    return service.backend.clusters()


@jaeger_api.get("/services/{service_name}/operations")
def service_operations(service: Service, service_name: str) -> Response:
    return _jaeger(_clusters_of(service, service_name))


@jaeger_api.get("/operations")
def operations(
    service: Service, service_name: Annotated[str | None, Query(alias="service")] = None
) -> Response:
    return _jaeger([{"name": name, "spanKind": ""} for name in _clusters_of(service, service_name)])


@jaeger_api.get("/traces")
def find_traces(
    service: Service,
    service_name: Annotated[str | None, Query(alias="service")] = None,
    operation: str | None = None,
    tags: str | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
    start: str | None = None,
    end: str | None = None,
    lookback: str | None = None,
    limit: str | None = None,
    traceID: Annotated[list[str] | None, Query()] = None,
) -> Response:
    if traceID:
        # Jaeger UI's search by trace id and its trace comparison.
        return Response(
            jaegerjson.traces([service.view(trace_id) for trace_id in dict.fromkeys(traceID)]),
            media_type=JSON,
        )
    end_us = parse_time_param("end", end)
    start_us = parse_time_param("start", start)
    if start_us is None:
        start_us = _lookback(lookback, end_us)
    found = service.search(
        service=service_name or "",
        cluster=operation or None,
        search_tags=_parse_tags(tags, tag or []),
        start_us=start_us,
        end_us=end_us,
        limit=_int_param("limit", limit, 20, 0, 1000),
    )
    return Response(jaegerjson.traces(found), media_type=JSON)


@jaeger_api.get("/traces/{trace_id}")
def get_trace(service: Service, trace_id: str, start: str | None = None, end: str | None = None) -> Response:
    view = service.view(trace_id, parse_time_param("start", start), parse_time_param("end", end))
    return Response(jaegerjson.traces([view]), media_type=JSON)


# -- /redirect: from an object and a moment to its trace page

redirects = APIRouter()


@redirects.get("/redirect")
def redirect(
    service: Service,
    cluster: str | None = None,
    group: str | None = None,
    resource: str | None = None,
    namespace: str | None = None,
    name: str | None = None,
    ts: str | None = None,
) -> Response:
    _require(cluster=cluster, resource=resource, name=name, ts=ts)
    assert cluster and resource and name and ts
    moment = parse_time_param("ts", ts)
    assert moment is not None
    query = ObjectQuery(
        cluster=cluster, group=group, resource=resource, namespace=namespace or None, name=name
    )
    return RedirectResponse(f"/trace/{service.redirect(query, moment)}", status_code=302)


# -- our own lookup API (the UI's)

lookups = APIRouter(prefix="/api/kelemetry")


@lookups.get("/modes")
def mode_list() -> Response:
    return _json({"default": modes.DEFAULT.id, "modes": [mode.describe() for mode in modes.ALL]})


@lookups.get("/clusters")
def clusters(service: Service) -> Response:
    return _json({"data": service.backend.clusters()})


@lookups.get("/resources")
def resources(service: Service, cluster: str | None = None) -> Response:
    data = [
        {"group": r.group, "resource": r.resource, "kind": r.kind, "objects": r.objects}
        for r in service.backend.resources(cluster or None)
    ]
    return _json({"data": data})


@lookups.get("/objects")
def objects(
    service: Service,
    cluster: str | None = None,
    resource: str | None = None,
    group: str | None = None,
    namespace: str | None = None,
    q: str | None = None,
    limit: str | None = None,
) -> Response:
    rows = service.backend.suggest(
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


@lookups.get("/lookup")
def lookup(
    service: Service,
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
    data = [
        {
            "viewId": found.view_id,
            "object": object_json(found.target),
            # The same name used by other objects (deleted and created again): open by uid.
            "incarnations": [incarnation_json(row) for row in found.incarnations],
        }
        for found in service.lookup(query, display)
    ]
    return _json({"data": data})


@lookups.get("/views/{view_id}")
def view_info(service: Service, view_id: str) -> Response:
    mode, number = modes.parse_view_trace_id(view_id)
    spec = service.views.load(number)
    others = [
        {**incarnation_json(row), "viewId": other_id} for row, other_id in service.incarnations(spec, mode)
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


# -- the web UI: one page, routed in the browser

pages = APIRouter(include_in_schema=False)
INDEX = STATIC_DIR / "index.html"


def _page() -> Response:
    if not INDEX.is_file():
        return error_response(500, "the web UI is not installed (frontend/static/index.html is missing)")
    return FileResponse(INDEX, headers={"Cache-Control": "no-cache"})


@pages.get("/")
def home() -> Response:
    return _page()


@pages.get("/search")
def search_page() -> Response:
    return _page()


@pages.get("/trace/{view_id}")
def trace_page(view_id: str) -> Response:
    return _page()


ROUTERS = (jaeger_api, redirects, lookups, pages)


def install(app: FastAPI, service: QueryService) -> None:
    """Serve the query side from ``app``: its routers over ``service``, the error handler, the UI."""
    app.state.query_service = service
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(errors.KelemetryError, answer_error)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
