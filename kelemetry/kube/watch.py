"""Watching a resource of a live cluster: Kubernetes Events (core/v1; the same objects
events.k8s.io serves) and the objects whose changes become diffs.

List, then watch from the list's resourceVersion. A ``410 Gone`` (the version is too old) means
list again; a dropped connection or an apiserver restart means reconnect with backoff from the
last version seen. What the watch could not see is reported to ``on_gap``: the window between the
last event seen and a relist after 410, and a disconnection longer than ``reconnect_gap_s``.
Items go to ``sink`` in small batches together with the resourceVersion they
reach; the sink persists that resume point only after the batch is stored, so a restart resumes
without gaps, and span ids derived from Event uids make anything seen twice a no-op.

Raw JSON is read straight from the watch stream (no client models), which keeps this independent
of how each client release models Events. One of the two modules that import `kubernetes`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client

from kelemetry.errors import KelemetryError
from kelemetry.kube.discovery import api_client_for
from kelemetry.model import backoff
from kelemetry.model.gaps import GapReason
from kelemetry.model.times import now_us

logger = logging.getLogger(__name__)

WatchItem = tuple[str, Mapping[str, Any]]
"""(``LIST`` for an item of a (re)list, or the watch type ``ADDED``/``MODIFIED``/``DELETED``, object)."""
EventSink = Callable[[list[WatchItem], str], None]
"""Called with (items, resourceVersion reached after them)."""
GapSink = Callable[[GapReason, int, int], None]
"""Called with (reason, start, end) when the watch could not see for a while (``kelemetry.model.gaps``)."""

_CORE_LISTS = {
    "events": "list_event_for_all_namespaces",
    "pods": "list_pod_for_all_namespaces",
    "services": "list_service_for_all_namespaces",
    "configmaps": "list_config_map_for_all_namespaces",
    "secrets": "list_secret_for_all_namespaces",
    "serviceaccounts": "list_service_account_for_all_namespaces",
    "endpoints": "list_endpoints_for_all_namespaces",
    "persistentvolumeclaims": "list_persistent_volume_claim_for_all_namespaces",
    "persistentvolumes": "list_persistent_volume",
    "nodes": "list_node",
    "namespaces": "list_namespace",
}

WATCH_TIMEOUT_SECONDS = 30
BATCH_MAX = 200
BATCH_WAIT_SECONDS = 0.5
RECONNECT_GAP_SECONDS = 30.0
"""A watch disconnected longer than this is recorded as a gap; shorter ones are routine (apiserver
restarts, load balancer idle timeouts) and resume from the last version seen."""


class Gone(Exception):
    """The resourceVersion is too old to watch from: list again."""


class ResourceWatcher:
    def __init__(
        self,
        kubeconfig: str,
        sink: EventSink,
        *,
        group: str = "",
        version: str = "v1",
        resource: str = "events",
        resume_from: str | None = None,
        context: str | None = None,
        on_gap: GapSink | None = None,
        reconnect_gap_s: float = RECONNECT_GAP_SECONDS,
    ) -> None:
        self._api_client = api_client_for(kubeconfig, context)
        self.group, self.version, self.resource = group, version, resource
        if group == "":
            if resource not in _CORE_LISTS:
                raise KelemetryError(f"watching core resource {resource!r} is not supported")
            self._list_fn: Callable[..., Any] = getattr(
                client.CoreV1Api(self._api_client), _CORE_LISTS[resource]
            )
        else:
            custom = client.CustomObjectsApi(self._api_client)

            def list_grouped(**kwargs: Any) -> Any:
                return custom.list_cluster_custom_object(group, version, resource, **kwargs)

            self._list_fn = list_grouped
        self._sink = sink
        self._on_gap = on_gap
        self._reconnect_gap_us = int(reconnect_gap_s * 1_000_000)
        self.last_seen_us = 0
        """When the stream last showed that it was alive (an event, a bookmark, a list's answer)."""
        self._gone_since: int | None = None
        self._down_since: int | None = None
        self.resource_version = resume_from
        self.relists = 0
        self.last_error = ""
        """Why the last attempt failed ("" once a watch ran again): a cluster's health at a glance."""
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"kelemetry-watch-{self.resource}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.close()
            except Exception:
                logger.debug("closing the watch stream failed", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout)
        self._api_client.close()

    def _run(self) -> None:
        retry = backoff.WATCH.start()
        self.last_seen_us = now_us()
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                    self._relisted()
                self._watch()
                retry.succeeded()
                self.last_error = ""
            except Gone:
                logger.info(
                    "watch of %s: resourceVersion %s is gone; listing again",
                    self.resource,
                    self.resource_version,
                )
                self._gone()
            except Exception as exc:
                if self._stop.is_set():
                    return
                self.reconnects += 1
                self.last_error = _describe(exc)[:300]
                status = getattr(exc, "status", None)
                if status == 410:
                    self._gone()
                    continue
                if self._down_since is None:
                    self._down_since = now_us()
                delay = retry.failed()
                logger.warning(
                    "watch of %s interrupted (%s); reconnecting in %.1fs",
                    self.resource,
                    _describe(exc),
                    delay,
                )
                self._stop.wait(delay)

    def _gone(self) -> None:
        """The version is too old: what happened between the last event seen and the relist is only
        known by its result (intermediate versions and short-lived objects are lost)."""
        self.resource_version = None
        self.relists += 1
        if self._gone_since is None:
            self._gone_since = self.last_seen_us

    def _relisted(self) -> None:
        gone_since, self._gone_since = self._gone_since, None
        if gone_since is None:
            return
        # The relist's gap starts before any disconnection that led to it, so it stands for both.
        self._down_since = None
        if self._on_gap is not None:
            self._on_gap(GapReason.RELIST, gone_since, self.last_seen_us)

    def _connected(self) -> None:
        """A watch request was answered: a disconnection longer than the threshold is a gap."""
        now = now_us()
        self.last_seen_us = now
        down_since, self._down_since = self._down_since, None
        if down_since is not None and now - down_since >= self._reconnect_gap_us and self._on_gap is not None:
            self._on_gap(GapReason.RECONNECT, down_since, now)

    def _list(self) -> None:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": 500, "_preload_content": False}
            if token:
                kwargs["_continue"] = token
            response: Any = self._list_fn(**kwargs)
            document = json.loads(response.data)
            meta = document.get("metadata") or {}
            items = document.get("items") or []
            token = meta.get("continue")
            self.last_seen_us = now_us()
            if not token:
                self.resource_version = str(meta.get("resourceVersion", ""))
                self._sink([("LIST", item) for item in items], self.resource_version)
                return
            self._sink([("LIST", item) for item in items], "")

    def _watch(self) -> None:
        response: Any = self._list_fn(
            watch=True,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
            _preload_content=False,
            _request_timeout=(10, WATCH_TIMEOUT_SECONDS + 10),
        )
        self._response = response
        self._connected()
        batch = _Batch(self._sink)
        # The stream only yields when data arrives, so a batch left over from the last burst is
        # handed on by a timer; otherwise it would wait for the next event, up to the watch timeout.
        stop_flushing = threading.Event()
        flusher = threading.Thread(
            target=batch.flush_while, args=(stop_flushing,), name=f"kelemetry-watch-flush-{self.resource}"
        )
        flusher.start()
        buffer = b""
        try:
            for chunk in response.stream(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        self.last_seen_us = now_us()
                        item = self._handle(event)
                        batch.add(item, self.resource_version or "")
                if self._stop.is_set():
                    break
        finally:
            stop_flushing.set()
            flusher.join()
            self._response = None
            response.release_conn()
            batch.flush()

    def _handle(self, event: Mapping[str, Any]) -> WatchItem | None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise KelemetryError(f"watch error {obj.get('code')}: {obj.get('message')}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = str(version)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            return (str(kind), obj)
        return None


class _Batch:
    """Watch items on their way to the sink: handed on at BATCH_MAX items or BATCH_WAIT_SECONDS after
    the first one, whichever comes first; the sink is called from one thread at a time."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._items: list[WatchItem] = []
        self._version = ""
        self._since = 0.0

    def add(self, item: WatchItem | None, version: str) -> None:
        with self._lock:
            self._version = version
            if item is None:
                return
            if not self._items:
                self._since = time.monotonic()
            self._items.append(item)
            if len(self._items) >= BATCH_MAX:
                self._hand_on()

    def flush(self) -> None:
        with self._lock:
            if self._items:
                self._hand_on()

    def flush_while(self, stop: threading.Event) -> None:
        while not stop.wait(BATCH_WAIT_SECONDS / 4):
            with self._lock:
                if self._items and time.monotonic() - self._since >= BATCH_WAIT_SECONDS:
                    self._hand_on()

    def _hand_on(self) -> None:
        items, self._items = self._items, []
        self._sink(items, self._version)


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return f"{status} {getattr(exc, 'reason', '')}".strip() if status else f"{type(exc).__name__}: {exc}"
