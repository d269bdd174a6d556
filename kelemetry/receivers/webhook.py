"""The audit webhook: ``POST /audit`` and ``POST /audit/{cluster}`` (FastAPI).

kube-apiserver's webhook backend posts ``EventList`` batches here. The handler reads the body
under a size limit, hands it to the ingest ``accept`` callable (validate → durable → queued) on a
worker thread, and answers 200 only after that. Bad input gets a 4xx with a reason; a full
backlog gets 429, which the apiserver retries with backoff. The handler never blocks the event
loop and never holds more than one body per request in memory.
"""

from __future__ import annotations

import hmac
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from kelemetry import errors, metrics
from kelemetry.receivers.auditwire import cut
from kelemetry.settings import CLUSTER_NAME

logger = logging.getLogger(__name__)

AcceptFn = Callable[[str, bytes], int]
# Counters named STATUS_PREFIX + code count the answers by HTTP status (/metrics).
STATUS_PREFIX = "status_"


def counter_metrics(counters: Counter[str]) -> Iterator[metrics.Metric]:
    """The router's counters as metric families: answers by HTTP status, and each refusal's cause."""
    by_status = []
    for name, value in list(counters.items()):
        if name.startswith(STATUS_PREFIX):
            by_status.append(((name.removeprefix(STATUS_PREFIX),), value))
        else:
            yield metrics.counter_family(
                f"kelemetry_{name}_total", f"Webhook requests: {name.removeprefix('webhook_')}.", (), value
            )
    yield metrics.counter_family(
        "kelemetry_webhook_responses_total",
        "Webhook answers by HTTP status (429: backlog or stream full; 503/507: cannot be made durable now).",
        ("code",),
        by_status,
    )


def _problem(
    status: int, reason: str, counters: Counter[str], counter: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    # Reasons may quote the input: bounded, so a megabyte field cannot flood the log or the answer.
    counters[counter] += 1
    counters[f"{STATUS_PREFIX}{status}"] += 1
    reason = cut(reason)
    logger.warning("audit webhook refused a request (%d): %s", status, reason)
    return JSONResponse(_refusal(status, reason), status_code=status, headers=headers)


def _refusal(status: int, reason: str) -> dict[str, object]:
    """The refusal body, shaped as the query API's: ``error`` and ``errors`` with the status."""
    return {"error": reason, "errors": [{"code": status, "msg": reason}]}


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type is JSON (``application/json``, parameters such as charset allowed)."""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def create_router(
    accept: AcceptFn, *, default_cluster: str, max_body_bytes: int, token: str | None, counters: Counter[str]
) -> APIRouter:
    router = APIRouter(tags=["audit"])

    async def receive(request: Request, cluster: str, authorization: str | None) -> JSONResponse:
        if token is not None:
            expected = f"Bearer {token}".encode()
            if authorization is None or not hmac.compare_digest(authorization.encode(), expected):
                return _problem(401, "missing or wrong bearer token", counters, "webhook_unauthorized")
        if not is_json(request.headers.get("content-type")):
            # A browser may POST text/plain or a form cross-origin without asking first (no CORS
            # preflight); insisting on JSON, as kube-apiserver sends, shuts that door.
            return _problem(
                415,
                "the audit webhook accepts only Content-Type: application/json",
                counters,
                "webhook_media_type",
            )
        if not CLUSTER_NAME.fullmatch(cluster):
            return _problem(400, f"invalid cluster name {cluster[:80]!r}", counters, "webhook_bad_cluster")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return _problem(
                413,
                f"body of {declared} bytes is over the {max_body_bytes}-byte limit",
                counters,
                "webhook_too_large",
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return _problem(
                    413, f"body is over the {max_body_bytes}-byte limit", counters, "webhook_too_large"
                )
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body:
            return _problem(400, "empty body", counters, "webhook_malformed")
        try:
            accepted = await run_in_threadpool(accept, cluster, body)
        except errors.BacklogFull as exc:
            counters["webhook_throttled"] += 1
            counters[f"{STATUS_PREFIX}429"] += 1
            return JSONResponse(_refusal(429, str(exc)), status_code=429, headers={"Retry-After": "1"})
        except errors.InputError as exc:
            return _problem(
                exc.status,
                str(exc),
                counters,
                "webhook_malformed"
                if exc.status == 400
                else "webhook_too_large"
                if exc.status == 413
                else "webhook_wrong_kind",
            )
        except errors.QueueFull as exc:
            # Scaled mode: the audit stream is at its limit (workers are behind); retried like a full backlog.
            counters["webhook_queue_full"] += 1
            counters[f"{STATUS_PREFIX}429"] += 1
            return JSONResponse(_refusal(429, str(exc)), status_code=429, headers={"Retry-After": "1"})
        except errors.QueueError as exc:
            # Scaled mode: NATS is away or refused; nothing was acknowledged, the apiserver retries.
            return _problem(
                503, str(exc), counters, "webhook_queue_unavailable", headers={"Retry-After": "1"}
            )
        except errors.StoreUnavailable as exc:
            # Nothing was acknowledged; the apiserver retries after Retry-After.
            return _problem(
                exc.status, str(exc), counters, "webhook_store_unavailable", headers={"Retry-After": "5"}
            )
        except errors.StoreError as exc:
            logger.error(
                "audit batch could not be made durable: %s", cut(str(exc)), extra={"cluster": cluster}
            )
            counters["webhook_store_error"] += 1
            counters[f"{STATUS_PREFIX}503"] += 1
            return JSONResponse(_refusal(503, "the batch could not be stored; retry"), status_code=503)
        counters["webhook_accepted"] += 1
        counters[f"{STATUS_PREFIX}200"] += 1
        return JSONResponse({"accepted": accepted})

    @router.post("/audit")
    async def audit_default(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        """Receive an audit EventList for the default cluster."""
        return await receive(request, default_cluster, authorization)

    @router.post("/audit/{cluster}")
    async def audit_cluster(
        request: Request, cluster: str, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        """Receive an audit EventList for the cluster named in the path."""
        return await receive(request, cluster, authorization)

    return router
