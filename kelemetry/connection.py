"""One cluster of the fleet: its API discovery, its Events watch, its object watches, and its health.

A collector holds one connection per cluster it is given (``--kubeconfig NAME=PATH``). Each runs on
its own: a member that cannot be reached retries with backoff and shows as degraded, and never
stops the others. What a connection sees goes to the ingest queue under its cluster's name, the
same name its apiserver's audit webhook posts to (``/audit/NAME``), so audit and watches meet.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kelemetry.errors import KelemetryError
from kelemetry.ingest import Ingestor
from kelemetry.kube import discovery
from kelemetry.kube.kinds import KindResolver
from kelemetry.kube.watch import GapSink, ResourceWatcher, WatchItem
from kelemetry.model import backoff
from kelemetry.model.gaps import Gap, GapReason
from kelemetry.model.times import now_us, parse_time_us
from kelemetry.settings import ClusterSettings

logger = logging.getLogger(__name__)

CRD_REFRESH_SECONDS = 10.0


def parse_watch_target(spec: str) -> tuple[str, str, str]:
    """``deployments.apps`` → (apps, v1, deployments); ``widgets.example.com/v1beta1`` too."""
    name, _, version = spec.partition("/")
    resource, _, group = name.partition(".")
    if not resource:
        raise ValueError(f"invalid resource to watch {spec!r}: use RESOURCE[.GROUP][/VERSION]")
    return group, version or "v1", resource


@dataclass
class ClusterHealth:
    """What a person asks first about a member of the fleet: is it talking to us?"""

    name: str
    connected: bool
    """Has a kubeconfig: the collector watches it (else it only sends audit)."""
    discovered: bool = False
    last_audit_us: int | None = None
    last_watch_us: int | None = None
    watch_lag_s: float | None = None
    """How late the last Kubernetes Event reached us after it happened (seconds)."""
    relists: int = 0
    reconnects: int = 0
    errors: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        if not self.connected:
            return "audit only"
        if self.errors or not self.discovered:
            return "degraded"
        return "ok"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "connected": self.connected,
            "discovered": self.discovered,
            "lastAudit": self.last_audit_us,
            "lastWatchEvent": self.last_watch_us,
            "watchLagSeconds": self.watch_lag_s,
            "relists": self.relists,
            "reconnects": self.reconnects,
            "errors": list(self.errors),
        }


class ClusterConnection:
    def __init__(
        self,
        cluster: ClusterSettings,
        ingestor: Ingestor,
        resolver: KindResolver,
        *,
        watch_resources: tuple[str, ...],
        watch_custom_resources: bool,
        resume_path: Path,
        discovered: bool,
    ) -> None:
        self.cluster = cluster
        self.name = cluster.name
        self._ingestor = ingestor
        self._resolver = resolver
        self._resume_path = resume_path
        self._watch_custom = watch_custom_resources
        self.discovered = discovered
        self.discovery_error = ""
        self.last_watch_us: int | None = None
        self.watch_lag_s: float | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        kubeconfig, context = cluster.kubeconfig, cluster.context
        self.events = ResourceWatcher(
            kubeconfig,
            self._on_kube_events,
            resume_from=self._resume_point(),
            context=context,
            on_gap=self._gap_sink("events"),
        )
        self.watchers: list[ResourceWatcher] = []
        self._watched: set[tuple[str, str, str]] = set()
        for spec in watch_resources:
            self._add_watch(parse_watch_target(spec), start=False)

    def _add_watch(self, target: tuple[str, str, str], *, start: bool) -> None:
        watcher = ResourceWatcher(
            self.cluster.kubeconfig,
            self._sink_for(target),
            group=target[0],
            version=target[1],
            resource=target[2],
            context=self.cluster.context,
            on_gap=self._gap_sink(f"{target[2]}.{target[0]}" if target[0] else target[2]),
        )
        with self._lock:
            self.watchers.append(watcher)
            self._watched.add(target)
        if start:
            watcher.start()

    # -- lifecycle

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        # Daemon only as a safety net: stop() sets _stop and joins each of them.
        thread = threading.Thread(target=target, name=f"{name}-{self.name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def start(self) -> None:
        self.events.start()
        for watcher in list(self.watchers):
            watcher.start()
        if self._watch_custom:
            self._spawn(self._watch_custom_resources, "kelemetry-crds")
        if not self.discovered:
            self._spawn(self._discover, "kelemetry-discovery")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        self.events.stop()
        with self._lock:
            watchers = list(self.watchers)
        for watcher in watchers:
            watcher.stop()

    def health(self, last_audit_us: int | None) -> ClusterHealth:
        with self._lock:
            watchers = [self.events, *self.watchers]
        errors = tuple(
            dict.fromkeys(f"watch of {w.resource}: {w.last_error}" for w in watchers if w.last_error)
        )
        if self.discovery_error:
            errors = (f"discovery: {self.discovery_error}", *errors)
        return ClusterHealth(
            name=self.name,
            connected=True,
            discovered=self.discovered,
            last_audit_us=last_audit_us,
            last_watch_us=self.last_watch_us,
            watch_lag_s=self.watch_lag_s,
            relists=sum(w.relists for w in watchers),
            reconnects=sum(w.reconnects for w in watchers),
            errors=errors,
        )

    # -- what runs

    def _discover(self) -> None:
        """API discovery of a cluster that did not answer at start, until it does."""
        retry = backoff.DISCOVERY.start()
        while not self._stop.wait(retry.failed()):
            try:
                self._resolver.update(discovery.discover(self.cluster.kubeconfig, self.cluster.context))
            except KelemetryError as exc:
                self.discovery_error = str(exc)[:300]
                continue
            self.discovered = True
            self.discovery_error = ""
            logger.info("API discovery of cluster %s succeeded", self.name)
            return

    def _watch_custom_resources(self) -> None:
        """Start a watcher for each CRD's objects, now and whenever new CRDs appear."""
        while not self._stop.is_set():
            try:
                for target in discovery.custom_resources(self.cluster.kubeconfig, self.cluster.context):
                    if target not in self._watched:
                        self._add_watch(target, start=True)
                        logger.info(
                            "cluster %s: watching custom resource %s.%s/%s",
                            self.name,
                            target[2],
                            target[0],
                            target[1],
                        )
            except KelemetryError as exc:
                logger.debug("cluster %s: custom resources not listed yet: %s", self.name, exc)
            self._stop.wait(CRD_REFRESH_SECONDS)

    def _gap_sink(self, resource: str) -> GapSink:
        def record(reason: GapReason, start_us: int, end_us: int) -> None:
            self._ingestor.record_gap(Gap(self.name, reason, start_us, end_us, f"watch of {resource}"))

        return record

    def _sink_for(self, target: tuple[str, str, str]) -> Callable[[list[WatchItem], str], None]:
        def sink(items: list[WatchItem], _resource_version: str) -> None:
            self.last_watch_us = now_us()
            self._ingestor.submit_object_changes(self.name, target, items)

        return sink

    def _on_kube_events(self, items: list[WatchItem], resource_version: str) -> None:
        received = now_us()
        self.last_watch_us = received
        self.watch_lag_s = _lag(items, received)

        def done() -> None:
            if resource_version:
                self._save_resume_point(resource_version)

        events = [obj for kind, obj in items if kind != "DELETED"]
        self._ingestor.submit_kube_events(self.name, events, done)

    def _resume_point(self) -> str | None:
        try:
            saved = json.loads(self._resume_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict) or saved.get("cluster") != self.name:
            return None
        return str(saved.get("resourceVersion") or "") or None

    def _save_resume_point(self, resource_version: str) -> None:
        tmp = self._resume_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"cluster": self.name, "resourceVersion": resource_version}))
        os.replace(tmp, self._resume_path)


def _lag(items: list[WatchItem], received_us: int) -> float | None:
    """Seconds between the newest Event of a batch happening and it reaching us."""
    newest = 0
    for _kind, obj in items:
        for field in ("eventTime", "lastTimestamp", "firstTimestamp"):
            value = obj.get(field)
            if isinstance(value, str) and value:
                try:
                    newest = max(newest, parse_time_us(value))
                except ValueError:
                    pass
                break
    return round((received_us - newest) / 1e6, 3) if newest else None


def resume_path(store_path: Path, cluster: str) -> Path:
    """Where the Events watch of ``cluster`` saves how far it got."""
    return store_path.with_name(f"{store_path.name}.events-rv.{cluster}")


def wall_time_of(us: int | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us / 1e6)) if us else "never"
