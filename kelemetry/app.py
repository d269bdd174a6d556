"""The `serve` process: the FastAPI app with the webhook, health and metrics, and its workers.

``Collector`` owns the moving parts (store, inbox, pipeline, ingest worker, OTLP follower,
retention timer) and their start/stop order; ``create_app`` wires a collector into routes. No
module-level app or settings: tests build as many as they like.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from frontend import api as frontend_api
from frontend.query import QueryService
from kelemetry import __version__, pipeline
from kelemetry.errors import KelemetryError
from kelemetry.export.otlp import OtlpFollower
from kelemetry.ingest import Ingestor
from kelemetry.kube import discovery
from kelemetry.kube.kinds import KindResolver
from kelemetry.kube.watch import ResourceWatcher, WatchItem
from kelemetry.model import backoff
from kelemetry.receivers import webhook
from kelemetry.settings import ServeSettings
from kelemetry.store.inbox import Inbox
from kelemetry.store.retention import Removed, RetentionReport
from kelemetry.store.sqlite import SpanStore

logger = logging.getLogger(__name__)

RETENTION_INTERVAL_SECONDS = 300.0
CRD_REFRESH_SECONDS = 10.0


def parse_watch_target(spec: str) -> tuple[str, str, str]:
    """``deployments.apps`` → (apps, v1, deployments); ``widgets.example.com/v1beta1`` too."""
    name, _, version = spec.partition("/")
    resource, _, group = name.partition(".")
    if not resource:
        raise ValueError(f"invalid resource to watch {spec!r}: use RESOURCE[.GROUP][/VERSION]")
    return group, version or "v1", resource


class Collector:
    """Owns every moving part of `serve` and every thread it runs: each is started by ``start`` and
    stopped and joined by ``stop``."""

    def __init__(
        self, settings: ServeSettings, resolver: KindResolver | None = None, *, rediscover: bool = False
    ) -> None:
        self.settings = settings
        store_path = Path(settings.store.path)
        self.store = SpanStore(store_path, synchronous=settings.store.synchronous)
        self.inbox = Inbox(
            store_path.with_name(store_path.name + ".inbox"), synchronous=settings.store.synchronous
        )
        self.resolver = resolver or KindResolver()
        # The cluster did not answer discovery at start: keep asking (owned thread, see start()).
        self._rediscover = rediscover and settings.kubeconfig is not None
        self.pipeline = pipeline.build(self.store, settings.trace, self.resolver)
        # One redactor for the inbox and the pipeline: a field is redacted by one set of rules.
        self.ingestor = Ingestor(
            self.inbox,
            self.pipeline,
            max_backlog_bytes=settings.webhook.max_backlog_bytes,
            redactor=self.pipeline.converter.redactor,
        )
        self.webhook_counters: Counter[str] = Counter()
        self.follower: OtlpFollower | None = None
        if settings.otlp.endpoint:
            self.follower = OtlpFollower(
                store_path,
                settings.otlp.endpoint,
                batch_size=settings.otlp.batch_size,
                poll_interval_seconds=settings.otlp.poll_interval_seconds,
            )
        self.watcher: ResourceWatcher | None = None
        self._resume_path = store_path.with_name(store_path.name + ".events-rv")
        if settings.kubeconfig:
            self.watcher = ResourceWatcher(
                settings.kubeconfig, self._on_kube_events, resume_from=self._resume_point()
            )
        self.object_watchers: list[ResourceWatcher] = []
        self.pipeline.change_grace_us = int(settings.change_grace_seconds * 1_000_000)
        if settings.kubeconfig:
            for spec in settings.watch_resources:
                target = parse_watch_target(spec)
                self.object_watchers.append(
                    ResourceWatcher(
                        settings.kubeconfig,
                        self._sink_for(target),
                        group=target[0],
                        version=target[1],
                        resource=target[2],
                    )
                )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.retention_removed = Removed()

    def _watch_custom_resources(self) -> None:
        """Start a watcher for each CRD's objects, now and whenever new CRDs appear."""
        kubeconfig = self.settings.kubeconfig
        assert kubeconfig is not None
        watched = {(w.group, w.version, w.resource) for w in self.object_watchers}
        while not self._stop.is_set():
            try:
                for target in discovery.custom_resources(kubeconfig):
                    if target in watched:
                        continue
                    watcher = ResourceWatcher(
                        kubeconfig,
                        self._sink_for(target),
                        group=target[0],
                        version=target[1],
                        resource=target[2],
                    )
                    self.object_watchers.append(watcher)
                    watched.add(target)
                    watcher.start()
                    logger.info("watching custom resource %s.%s/%s", target[2], target[0], target[1])
            except KelemetryError as exc:
                logger.debug("custom resources not listed yet: %s", exc)
            self._stop.wait(CRD_REFRESH_SECONDS)

    def _sink_for(self, target: tuple[str, str, str]) -> Callable[[list[WatchItem], str], None]:
        cluster = self.settings.webhook.default_cluster

        def sink(items: list[WatchItem], _resource_version: str) -> None:
            self.ingestor.submit_object_changes(cluster, target, items)

        return sink

    def _resume_point(self) -> str | None:
        try:
            saved = json.loads(self._resume_path.read_text())
        except (OSError, ValueError):
            return None
        if saved.get("cluster") != self.settings.webhook.default_cluster:
            return None
        return str(saved.get("resourceVersion") or "") or None

    def _save_resume_point(self, resource_version: str) -> None:
        tmp = self._resume_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"cluster": self.settings.webhook.default_cluster, "resourceVersion": resource_version}
            )
        )
        os.replace(tmp, self._resume_path)

    def _on_kube_events(self, items: list[WatchItem], resource_version: str) -> None:
        def done() -> None:
            if resource_version:
                self._save_resume_point(resource_version)

        events = [obj for kind, obj in items if kind != "DELETED"]
        self.ingestor.submit_kube_events(self.settings.webhook.default_cluster, events, done)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        # Daemon only as a safety net: stop() sets _stop and joins each of them.
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def start(self) -> None:
        self.ingestor.start()
        if self.watcher is not None:
            self.watcher.start()
        for watcher in self.object_watchers:
            watcher.start()
        if self.settings.kubeconfig and self.settings.watch_custom_resources:
            self._spawn(self._watch_custom_resources, "kelemetry-crds")
        if self._rediscover:
            self._spawn(self._discover, "kelemetry-discovery")
        if self.follower is not None:
            self.follower.start()
        self._spawn(self._retain, "kelemetry-retention")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        if self.watcher is not None:
            self.watcher.stop()
        for watcher in list(self.object_watchers):
            watcher.stop()
        self.ingestor.stop()
        if self.follower is not None:
            self.follower.stop()
        self.inbox.close()
        self.store.close()

    def _discover(self) -> None:
        """API discovery of a cluster that did not answer at start, until it does."""
        kubeconfig = self.settings.kubeconfig
        assert kubeconfig is not None
        retry = backoff.DISCOVERY.start()
        while not self._stop.wait(retry.failed()):
            try:
                self.resolver.update(discovery.discover(kubeconfig))
            except KelemetryError:
                continue
            logger.info("API discovery of %s succeeded", kubeconfig)
            return

    def apply_retention(self) -> RetentionReport:
        """One retention pass by the store's (wall) clock: ages count from when data arrived."""
        store = self.settings.store
        report = self.store.apply_retention(
            max_age_us=None if store.retention_seconds is None else store.retention_seconds * 1_000_000,
            max_bytes=store.max_bytes,
        )
        self.retention_removed += report.total
        return report

    def _retain(self) -> None:
        while not self._stop.wait(RETENTION_INTERVAL_SECONDS):
            try:
                report = self.apply_retention()
                if report.total:
                    logger.info("retention: %s", "; ".join(report.lines()))
            except Exception:
                logger.exception("retention pass failed")

    def metrics(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for name, value in self.webhook_counters.items():
            values[f"kelemetry_{name}_total"] = value
        for name, value in self.ingestor.counters.items():
            values[f"kelemetry_ingest_{name}_total"] = value
        for name, value in self.pipeline.converter.stats.counts.items():
            values[f'kelemetry_audit_events_total{{outcome="{name}"}}'] = value
        values["kelemetry_ingest_backlog_bytes"] = self.ingestor.backlog_bytes
        values["kelemetry_owner_graph_objects"] = len(self.pipeline.graph)
        removed = self.retention_removed
        values["kelemetry_retention_removed_traces_total"] = removed.traces
        values["kelemetry_retention_removed_spans_total"] = removed.spans
        values["kelemetry_retention_removed_objects_total"] = removed.objects
        if self.watcher is not None:
            values["kelemetry_events_watch_relists_total"] = self.watcher.relists
            values["kelemetry_events_watch_reconnects_total"] = self.watcher.reconnects
        for name, value in self.pipeline.events.counts.items():
            values[f'kelemetry_kube_events_total{{outcome="{name}"}}'] = value
        if self.follower is not None:
            values["kelemetry_otlp_exported_spans_total"] = self.follower.exported
            values["kelemetry_otlp_export_failures_total"] = self.follower.failures
        return values


def create_app(collector: Collector, query: QueryService | None = None) -> FastAPI:
    """The app of ``kelemetry serve``: the collector's routes, and the query side when given."""
    return build_app(collector=collector, query=query)


def build_app(*, collector: Collector | None = None, query: QueryService | None = None) -> FastAPI:
    """The one FastAPI app of both processes: ``kelemetry serve`` (a collector, and the query side over
    its store) and ``kelemetry frontend`` (the query side alone). Its lifespan starts the collector
    and, on the way out, stops it and closes the query service."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if collector is not None:
            collector.start()
        try:
            yield
        finally:
            if collector is not None:
                collector.stop()
            if query is not None:
                query.close()

    app = FastAPI(title="kelemetry", version=__version__, lifespan=lifespan)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if collector is not None:
        _add_collector_routes(app, collector)
    if query is not None:
        frontend_api.install(app, query)
    return app


def _add_collector_routes(app: FastAPI, collector: Collector) -> None:
    settings = collector.settings
    app.include_router(
        webhook.create_router(
            collector.ingestor.accept,
            default_cluster=settings.webhook.default_cluster,
            max_body_bytes=settings.webhook.max_body_bytes,
            token=settings.webhook.token,
            counters=collector.webhook_counters,
        )
    )

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return "".join(f"{name} {value:g}\n" for name, value in sorted(collector.metrics().items()))

    @app.get("/api/kelemetry/status")
    def status() -> dict[str, Any]:
        return {
            "service": "kelemetry",
            "version": __version__,
            "webhook": f"POST /audit/<cluster> (default cluster: {settings.webhook.default_cluster})",
            "store": str(settings.store.path),
            "counts": collector.store.counts(),
            "dump": "kelemetry dump --store <store> --cluster C --resource R --namespace N --name NAME",
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
