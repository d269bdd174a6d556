"""The query side over HTTP: Jaeger's query API shape, ``/redirect``, our lookup API and the web UI.

Routers per endpoint group, the ``QueryService`` as a dependency, and one exception handler that
answers our error tree (``kelemetry.errors``) as JSON with a reason (``error``, plus Jaeger's
``errors`` list so Jaeger UI shows it too), never a traceback. ``install`` puts them on the app
that ``kelemetry.app.build_app`` makes for ``kelemetry serve`` (beside the webhook, reading the
embedded store) and ``kelemetry frontend`` (alone, reading the store or a real Jaeger).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from frontend import changes, jaegerjson, modes, objectat, revisions
from frontend.query import QueryService, incarnation_json
from frontend.spanfacts import object_json
from frontend.types import ObjectQuery, Suggestion, View
from kelemetry import errors
from kelemetry.model import times

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
JSON = "application/json"


def query_service(request: Request) -> QueryService:
    service: QueryService = request.app.state.query_service
    return service


Queries = Annotated[QueryService, Depends(query_service)]


@dataclass
class KeyParams:
    """The object-key query parameters of /redirect and the lookup API, each optional here: the route
    says which it needs (and refuses with our JSON, not FastAPI's)."""

    cluster: str | None = None
    group: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None


Key = Annotated[KeyParams, Depends()]


# -- errors


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        # data stays a list even here, so `jq '.data[]'` reads an error as "nothing", not a crash.
        {"data": [], "error": message, "errors": [{"code": status, "msg": message}]},
        status_code=status,
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


def _traces(views: list[View]) -> Response:
    return Response(jaegerjson.traces(views), media_type=JSON)


def _require(**params: str | None) -> None:
    missing = [name for name, value in params.items() if not value]
    if missing:
        raise errors.InputError(f"missing query parameter(s): {', '.join(missing)}")


# Epoch numbers are told apart by magnitude, as Jaeger's clients do: any date from 1973 to 5138 is
# below 1e11 in seconds, between 1e11 and 1e14 in milliseconds, 1e14 to 1e17 in microseconds.
_SECONDS_BELOW = 10**11
_MILLISECONDS_BELOW = 10**14
_MICROSECONDS_BELOW = 10**17
# Nanoseconds, as Go's time.UnixNano, end at 2^63.
_NANOSECONDS_BELOW = 2**63


def epoch_us(number: int | float) -> int:
    """An epoch number in seconds, milliseconds, microseconds or nanoseconds, as microseconds."""
    if number < _SECONDS_BELOW:
        return int(number * 1_000_000)
    if number < _MILLISECONDS_BELOW:
        return int(number * 1_000)
    if number < _MICROSECONDS_BELOW:
        return int(number)
    return int(number // 1_000)


def parse_time_param(name: str, value: str | None) -> int | None:
    """A moment as µs since the epoch: epoch seconds, milliseconds, microseconds (Jaeger's own) or
    nanoseconds, told apart by magnitude (decimals allowed), or RFC 3339 with a zone."""
    if value is None or value == "":
        return None
    text = value.strip()
    if text.isascii() and text.replace(".", "", 1).isdigit():
        # Integers stay integers: nanoseconds are beyond a float's exact range.
        number = int(text) if text.isdigit() else float(text)
        if number >= _NANOSECONDS_BELOW:
            raise errors.InputError(f"invalid {name} {value!r}: out of range for a time since the epoch")
        return epoch_us(number)
    try:
        return times.parse_moment(text, what=name, jaeger=True)
    except ValueError as exc:
        if "time zone" in str(exc):
            raise errors.InputError(str(exc)) from None
        raise errors.InputError(
            f"invalid {name} {value!r}: use RFC 3339 (2024-05-01T10:00:00Z) or a time since the epoch "
            "in seconds, milliseconds or microseconds"
        ) from None


# Go's duration syntax, as Jaeger writes lookbacks: "1h30m", "90s"; plus days and weeks.
_LOOKBACK_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def lookback_us(value: str) -> int:
    """A lookback as µs: a duration (``2h``, ``1h30m``, ``7d``) or a bare number of seconds."""
    text = value.strip().lower()
    if text.isascii() and text.isdigit():
        return int(text) * 1_000_000
    parts = _LOOKBACK_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise errors.InputError(
            f"invalid lookback {value!r}: use a duration, e.g. 30m, 2h, 1h30m, 7d, or seconds"
        )
    return sum(times.parse_duration_us(number + unit, what="lookback") for number, unit in parts)


def _lookback(value: str | None, end_us: int | None) -> int | None:
    if not value or value == "custom":
        return None
    span = lookback_us(value)
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


def _clusters_of(queries: QueryService, service: str | None) -> list[str]:
    """Operations are clusters; the service (display mode) only has to be a valid one."""
    if service:
        modes.from_name(service)
    return queries.backend.clusters()


@jaeger_api.get("/services/{service_name}/operations")
def service_operations(queries: Queries, service_name: str) -> Response:
    return _jaeger(_clusters_of(queries, service_name))


@jaeger_api.get("/operations")
def operations(queries: Queries, service: str | None = None) -> Response:
    return _jaeger([{"name": name, "spanKind": ""} for name in _clusters_of(queries, service)])


@dataclass
class SearchParams:
    """Jaeger's search parameters, as Jaeger UI sends them (the duration and span-kind filters it also
    sends are ignored)."""

    service: str | None = None
    operation: str | None = None
    tags: str | None = None
    tag: Annotated[list[str] | None, Query()] = None
    start: str | None = None
    end: str | None = None
    lookback: str | None = None
    limit: str | None = None
    traceID: Annotated[list[str] | None, Query()] = None


@jaeger_api.get("/traces")
def find_traces(queries: Queries, params: Annotated[SearchParams, Depends()]) -> Response:
    if params.traceID:
        # Jaeger UI's search by trace id and its trace comparison.
        return _traces([queries.view(trace_id) for trace_id in dict.fromkeys(params.traceID)])
    end_us = parse_time_param("end", params.end)
    start_us = parse_time_param("start", params.start)
    if start_us is None:
        start_us = _lookback(params.lookback, end_us)
    found = queries.search(
        service=params.service or "",
        cluster=params.operation or None,
        search_tags=_parse_tags(params.tags, params.tag or []),
        start_us=start_us,
        end_us=end_us,
        limit=_int_param("limit", params.limit, 20, 0, 1000),
    )
    return _traces(found)


@jaeger_api.get("/traces/{trace_id}")
def get_trace(queries: Queries, trace_id: str, start: str | None = None, end: str | None = None) -> Response:
    view = queries.view(trace_id, parse_time_param("start", start), parse_time_param("end", end))
    return _traces([view])


# -- /redirect: from an object and a moment to its trace page

redirects = APIRouter()


@redirects.get("/redirect")
def redirect(queries: Queries, key: Key, ts: str | None = None, uid: str | None = None) -> Response:
    _require(cluster=key.cluster, resource=key.resource, name=key.name, ts=ts)
    assert key.cluster and key.resource and key.name and ts
    moment = parse_time_param("ts", ts)
    assert moment is not None
    query = ObjectQuery(
        cluster=key.cluster,
        group=key.group,
        resource=key.resource,
        namespace=key.namespace or None,
        name=key.name,
        # One incarnation of a reused name (the links of the changes list name theirs).
        uid=uid or None,
    )
    return RedirectResponse(f"/trace/{queries.redirect(query, moment)}", status_code=302)


# -- our own lookup API (the UI's)

lookups = APIRouter(prefix="/api/kelemetry")


@lookups.get("/modes")
def mode_list() -> Response:
    return _json({"default": modes.DEFAULT.id, "modes": [mode.describe() for mode in modes.ALL]})


@lookups.get("/clusters")
def clusters(queries: Queries) -> Response:
    return _json({"data": queries.backend.clusters()})


@lookups.get("/resources")
def resources(queries: Queries, cluster: str | None = None) -> Response:
    # kubectl's short names beside each (from discovery or the built-in table), for the UI to offer.
    short = {(entry.group, entry.resource): list(entry.short_names) for entry in queries.resource_names()}
    data = [
        {
            "group": r.group,
            "resource": r.resource,
            "kind": r.kind,
            "objects": r.objects,
            "shortNames": short.get((r.group, r.resource), []),
        }
        for r in queries.backend.resources(cluster or None)
    ]
    return _json({"data": data})


@lookups.get("/objects")
def objects(
    queries: Queries,
    cluster: str | None = None,
    resource: str | None = None,
    group: str | None = None,
    namespace: str | None = None,
    q: str | None = None,
    limit: str | None = None,
) -> Response:
    if resource:
        # As typed: deploy, Deployment, deployments.apps ...
        group, resource = queries.resolve_resource(resource, group)
    rows = queries.backend.suggest(
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
    queries: Queries,
    key: Key,
    start: str | None = None,
    end: str | None = None,
    mode: str | None = None,
    uid: str | None = None,
) -> Response:
    _require(resource=key.resource, name=key.name)
    assert key.resource and key.name
    display = modes.from_id(mode) if mode else modes.DEFAULT
    query = ObjectQuery(
        cluster=key.cluster or "",
        group=key.group,
        resource=key.resource,
        namespace=key.namespace,
        name=key.name,
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
        for found in queries.lookup(query, display)
    ]
    return _json({"data": data})


@lookups.get("/views/{view_id}")
def view_info(queries: Queries, view_id: str) -> Response:
    mode, number = modes.parse_view_trace_id(view_id)
    spec = queries.views.load(number)
    others = [
        {**incarnation_json(row), "viewId": other_id} for row, other_id in queries.incarnations(spec, mode)
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


# -- browsing what changed

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def _bool_param(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise errors.InputError(f"invalid {name} {value!r}: use true or false")


@lookups.get("/changes")
def changes_list(
    queries: Queries,
    key: Key,
    user: str | None = None,
    verb: str | None = None,
    errors_only: Annotated[str | None, Query(alias="errors")] = None,
    start: str | None = None,
    end: str | None = None,
    limit: str | None = None,
    cursor: str | None = None,
    histogram: str | None = None,
) -> Response:
    """Requests, Events and watched changes, newest first, a page at a time (``next`` is the cursor
    of the following page); with the per-minute histogram of the range unless ``histogram=false``."""
    resource, group = key.resource or None, key.group or None
    query = changes.ChangeQuery(
        cluster=key.cluster or None,
        group=group,
        resource=resource,
        namespace=key.namespace or None,
        user=user or None,
        verb=verb or None,
        errors_only=_bool_param("errors", errors_only, False),
        start_us=parse_time_param("start", start),
        end_us=parse_time_param("end", end),
        limit=_int_param("limit", limit, changes.DEFAULT_LIMIT, 1, changes.MAX_LIMIT),
        cursor=changes.Cursor.parse(cursor) if cursor else None,
    )
    return _json(queries.changes(query, histogram=_bool_param("histogram", histogram, True)))


# -- the object at a moment: its stored versions, the manifest in effect at a time, two compared


def _object_query(key: KeyParams, uid: str | None) -> ObjectQuery:
    _require(resource=key.resource, name=key.name)
    assert key.resource and key.name
    return ObjectQuery(
        cluster=key.cluster or "",
        group=key.group,
        resource=key.resource,
        namespace=key.namespace,
        name=key.name,
        uid=uid or None,
    )


def _moment(at_name: str, at: str | None, rv: str | None) -> objectat.Moment:
    if at and rv:
        raise errors.InputError(f"give {at_name} or a resourceVersion, not both")
    return objectat.Moment(parse_time_param(at_name, at), rv or None)


def _history_json(found: objectat.History) -> dict[str, Any]:
    return {
        "object": object_json(found.target),
        "incarnations": [incarnation_json(row) for row in found.incarnations],
    }


@lookups.get("/revisions")
def revision_list(queries: Queries, key: Key, uid: str | None = None, at: str | None = None) -> Response:
    found = objectat.history(
        queries.backend, queries.normalize(_object_query(key, uid)), parse_time_param("at", at)
    )
    return _json({**_history_json(found), "data": [objectat.version_json(v) for v in found.versions]})


@lookups.get("/manifest")
def manifest(
    queries: Queries,
    key: Key,
    uid: str | None = None,
    at: str | None = None,
    rv: str | None = None,
    format: str | None = None,
) -> Response:
    if format not in (None, "", "json", "yaml"):
        raise errors.InputError(f"invalid format {format!r}: json or yaml")
    moment = _moment("at", at, rv)
    found = objectat.history(queries.backend, queries.normalize(_object_query(key, uid)), moment.at_us)
    shown = objectat.manifest(queries.backend, found, moment)
    if format == "yaml":
        head = "".join(f"# {line}\n" for line in (revisions.describe(shown.version), *shown.notes))
        return Response(head + revisions.to_yaml(shown.body), media_type="application/yaml; charset=utf-8")
    before, after = revisions.neighbours(found.versions, shown.version)
    return _json(
        {
            **_history_json(found),
            "revision": objectat.version_json(shown.version),
            "notes": list(shown.notes),
            "previous": before,
            "next": after,
            "manifest": shown.body,
            "yaml": revisions.to_yaml(shown.body),
        }
    )


@lookups.get("/manifest/diff")
def manifest_diff(
    queries: Queries,
    key: Key,
    uid: str | None = None,
    at: str | None = None,
    rv: str | None = None,
    to: str | None = None,
    toRv: str | None = None,
) -> Response:
    left = _moment("at", at, rv)
    right = _moment("to", to, toRv)
    if right.at_us is None and right.resource_version is None:
        raise errors.InputError("missing query parameter(s): to or toRv (the revision to compare with)")
    found = objectat.history(queries.backend, queries.normalize(_object_query(key, uid)), left.at_us)
    diff = objectat.diff_json(
        objectat.manifest(queries.backend, found, left), objectat.manifest(queries.backend, found, right)
    )
    return _json({**_history_json(found), **diff})


# -- causal answers: why an object is as it is, and who set a field


@lookups.get("/explain")
def explain(
    queries: Queries,
    key: Key,
    uid: str | None = None,
    ts: str | None = None,
    chain_only: Annotated[str | None, Query(alias="chainOnly")] = None,
) -> Response:
    """The cause chain of one object at ``ts`` (default: its last activity), with the rollouts and
    stuck Pods around it unless ``chainOnly=true``."""
    answer = queries.explain(
        _object_query(key, uid),
        parse_time_param("ts", ts),
        chain_only=_bool_param("chainOnly", chain_only, False),
    )
    return _json({"data": [answer.to_json()]})


@lookups.get("/blame")
def blame(
    queries: Queries, key: Key, field: str | None = None, uid: str | None = None, ts: str | None = None
) -> Response:
    """Who set each value of ``field`` on one object, per incarnation of its name."""
    _require(field=field)
    assert field
    answer = queries.blame(_object_query(key, uid), field, parse_time_param("ts", ts))
    return _json({"data": [answer.to_json()]})


# -- stuck and failing Pods of a namespace


@lookups.get("/stuck")
def stuck_pods(
    queries: Queries,
    cluster: str | None = None,
    namespace: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> Response:
    """Pods of a namespace that are unscheduled, crashlooping, evicted, failed or not ready, the
    longest stuck first (``scanned``: Pods read; ``truncated``: the bound cut the list)."""
    _require(cluster=cluster, namespace=namespace)
    assert cluster and namespace
    answer = queries.stuck(cluster, namespace, parse_time_param("start", start), parse_time_param("end", end))
    return _json(answer.to_json())


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


@pages.get("/changes")
def changes_page() -> Response:
    return _page()


@pages.get("/trace/{view_id}")
def trace_page(view_id: str) -> Response:
    return _page()


@pages.get("/object")
def object_page() -> Response:
    return _page()


@pages.get("/explain")
def explain_page() -> Response:
    return _page()


# Last: a path under /api that no route takes (an id holding an encoded "/") is refused with our
# JSON, as every other API error is, not the framework's own body.
unknown_api = APIRouter(include_in_schema=False)


@unknown_api.get("/api/{path:path}")
def unknown_api_path(path: str) -> Response:
    return error_response(404, f"no API endpoint /api/{path[:200]}")


ROUTERS = (jaeger_api, redirects, lookups, pages, unknown_api)


async def answer_not_found(request: Request, exc: Exception) -> Response:
    """The framework's own 404 (no route at all: a path the catch-all's pattern cannot take, such as
    one holding a newline) answered with our JSON under /api, as any other API error."""
    if request.url.path.startswith("/api/"):
        return error_response(404, f"no API endpoint {request.url.path[:200]!r}")
    return await http_exception_handler(request, exc)  # type: ignore[arg-type]


def install(app: FastAPI, service: QueryService) -> None:
    """Serve the query side from ``app``: its routers over ``service``, the error handler, the UI."""
    app.state.query_service = service
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(errors.KelemetryError, answer_error)
    app.add_exception_handler(404, answer_not_found)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
