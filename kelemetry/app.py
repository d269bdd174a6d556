"""The `serve` process: the FastAPI app with the webhook, health and metrics, and its workers.

``Collector`` owns the moving parts (store, inbox, pipeline, ingest worker, OTLP follower,
retention timer) and their start/stop order; ``create_app`` wires a collector into routes. No
module-level app or settings: tests build as many as they like.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from frontend import access
from frontend import api as frontend_api
from frontend.headers import SecurityHeaders
from frontend.query import QueryService
from kelemetry import __version__, pipeline
from kelemetry.connection import ClusterConnection, ClusterHealth, resume_path
from kelemetry.errors import KelemetryError, StoreError
from kelemetry.export.otlp import OtlpFollower
from kelemetry.ingest import Ingestor
from kelemetry.kube.kinds import KindResolver
from kelemetry.linker.links import Clusters
from kelemetry.receivers import webhook
from kelemetry.settings import ServeSettings
from kelemetry.store.inbox import Inbox, inbox_path
from kelemetry.store.retention import Removed, RetentionReport
from kelemetry.store.sqlite import SpanStore

logger = logging.getLogger(__name__)

RETENTION_INTERVAL_SECONDS = 300.0


class Collector:
    """Owns every moving part of `serve` and every thread it runs: each is started by ``start`` and
    stopped and joined by ``stop``. One `ClusterConnection` per cluster given."""

    def __init__(
        self,
        settings: ServeSettings,
        resolver: KindResolver | None = None,
        *,
        undiscovered: frozenset[str] = frozenset(),
    ) -> None:
        names = [cluster.name for cluster in settings.clusters]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise KelemetryError(f"cluster name(s) given twice: {', '.join(duplicates)}")
        self.settings = settings
        store_path = Path(settings.store.path)
        self.store = SpanStore(store_path, synchronous=settings.store.synchronous)
        self.inbox = Inbox(inbox_path(store_path), synchronous=settings.store.synchronous)
        self.resolver = resolver or KindResolver()
        known = frozenset(names) | {settings.webhook.default_cluster} | frozenset(self.store.clusters())
        self.pipeline = pipeline.build(
            self.store,
            settings.trace,
            self.resolver,
            clusters=Clusters(known, dict(settings.cluster_aliases)),
        )
        # One redactor for the inbox and the pipeline: a field is redacted by one set of rules.
        self.ingestor = Ingestor(
            self.inbox,
            self.pipeline,
            max_backlog_bytes=settings.webhook.max_backlog_bytes,
            redactor=self.pipeline.converter.redactor,
            min_free_bytes=settings.webhook.min_free_bytes,
            max_clock_skew_us=settings.webhook.max_clock_skew_seconds * 1_000_000,
            clusters=names,
        )
        self.webhook_counters: Counter[str] = Counter()
        self.last_audit_us: dict[str, int] = {}
        self.follower: OtlpFollower | None = None
        if settings.otlp.endpoint:
            self.follower = OtlpFollower(
                store_path,
                settings.otlp.endpoint,
                batch_size=settings.otlp.batch_size,
                poll_interval_seconds=settings.otlp.poll_interval_seconds,
            )
        self.pipeline.change_grace_us = int(settings.change_grace_seconds * 1_000_000)
        self.connections = [
            ClusterConnection(
                cluster,
                self.ingestor,
                self.resolver,
                watch_resources=settings.watch_resources,
                watch_custom_resources=settings.watch_custom_resources,
                resume_path=resume_path(store_path, cluster.name),
                discovered=cluster.name not in undiscovered,
            )
            for cluster in settings.clusters
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.retention_removed = Removed()

    def accept(self, cluster: str, body: bytes) -> int:
        """The webhook's entry: ingest the batch, and note that the cluster's apiserver is talking."""
        accepted = self.ingestor.accept(cluster, body)
        self.last_audit_us[cluster] = time.time_ns() // 1000
        return accepted

    def quarantined(self) -> int:
        """Inputs kept aside now (`kelemetry quarantine` lists them); -1 if the inbox cannot say."""
        try:
            return self.inbox.quarantine_summary()[0]
        except StoreError:
            return -1

    def health(self) -> list[ClusterHealth]:
        """Every cluster: those connected to, and those that only send audit."""
        connected = {c.name: c.health(self.last_audit_us.get(c.name)) for c in self.connections}
        for name, last in self.last_audit_us.items():
            connected.setdefault(name, ClusterHealth(name=name, connected=False, last_audit_us=last))
        return sorted(connected.values(), key=lambda h: h.name)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        # Daemon only as a safety net: stop() sets _stop and joins each of them.
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def start(self) -> None:
        self.ingestor.start()
        for connection in self.connections:
            connection.start()
        if self.follower is not None:
            self.follower.start()
        self._spawn(self._retain, "kelemetry-retention")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        for connection in self.connections:
            connection.stop()
        self.ingestor.stop()
        if self.follower is not None:
            self.follower.stop()
        self.inbox.close()
        self.store.close()

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

    def _cache_metrics(self) -> dict[str, float]:
        """Each cache's size as counted against its cap (bytes) and its entries (objects)."""
        changes = self.pipeline.changes
        bases = self.store.base_cache
        values: dict[str, float] = {}
        for name, size, entries in (
            ("diff_history", changes.history.bytes, len(changes.history)),
            ("diff_watched", changes.watched.bytes, len(changes.watched)),
            ("store_bases", bases.bytes, len(bases)),
            ("diff_partials", changes.partial_bytes, changes.partials),
            ("diff_claims", changes.claim_bytes, changes.claims),
        ):
            values[f'kelemetry_cache_bytes{{cache="{name}"}}'] = size
            values[f'kelemetry_cache_entries{{cache="{name}"}}'] = entries
        values['kelemetry_cache_evictions_total{cache="diff_history"}'] = changes.history.evicted
        values['kelemetry_cache_evictions_total{cache="diff_watched"}'] = changes.watched.evicted
        values['kelemetry_cache_evictions_total{cache="diff_partials"}'] = changes.partials_evicted
        values['kelemetry_cache_evictions_total{cache="diff_claims"}'] = changes.claims_evicted
        return values

    def _gap_metrics(self) -> dict[str, float]:
        """Gaps recorded by this process per cluster and reason, and the seconds they cover."""
        values: dict[str, float] = {}
        for (cluster, reason), count in sorted(self.ingestor.gap_counts.items()):
            label = f'{{cluster="{cluster}",reason="{reason}"}}'
            values[f"kelemetry_gaps_total{label}"] = count
            values[f"kelemetry_gap_seconds_total{label}"] = self.ingestor.gap_seconds[(cluster, reason)]
        return values

    def metrics(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for name, value in self.webhook_counters.items():
            values[f"kelemetry_{name}_total"] = value
        for name, value in self.ingestor.counters.items():
            values[f"kelemetry_ingest_{name}_total"] = value
        for name, value in self.pipeline.converter.stats.counts.items():
            values[f'kelemetry_audit_events_total{{outcome="{name}"}}'] = value
        values["kelemetry_ingest_backlog_bytes"] = self.ingestor.backlog_bytes
        values["kelemetry_store_failing"] = int(self.ingestor.store_failure is not None)
        values["kelemetry_quarantined_inputs"] = self.quarantined()
        values["kelemetry_owner_graph_objects"] = len(self.pipeline.graph)
        values.update(self._cache_metrics())
        removed = self.retention_removed
        values["kelemetry_retention_removed_traces_total"] = removed.traces
        values["kelemetry_retention_removed_spans_total"] = removed.spans
        values["kelemetry_retention_removed_objects_total"] = removed.objects
        now = time.time_ns() // 1000
        fleet = self.health()
        # All clusters' watches together, under the names of before fleets (dashboards use them);
        # per cluster below.
        values["kelemetry_events_watch_relists_total"] = sum(h.relists for h in fleet)
        values["kelemetry_events_watch_reconnects_total"] = sum(h.reconnects for h in fleet)
        for health in fleet:
            label = f'{{cluster="{health.name}"}}'
            values[f"kelemetry_cluster_up{label}"] = 1.0 if health.state == "ok" else 0.0
            values[f"kelemetry_cluster_watch_relists_total{label}"] = health.relists
            values[f"kelemetry_cluster_watch_reconnects_total{label}"] = health.reconnects
            values[f"kelemetry_cluster_watch_errors{label}"] = len(health.errors)
            if health.last_audit_us is not None:
                values[f"kelemetry_cluster_last_audit_age_seconds{label}"] = (
                    now - health.last_audit_us
                ) / 1e6
            if health.last_watch_us is not None:
                values[f"kelemetry_cluster_last_watch_age_seconds{label}"] = (
                    now - health.last_watch_us
                ) / 1e6
            if health.watch_lag_s is not None:
                values[f"kelemetry_cluster_watch_lag_seconds{label}"] = health.watch_lag_s
        for name, value in self.pipeline.links.counts.items():
            values[f'kelemetry_links_total{{outcome="{name}"}}'] = value
        for name, value in self.pipeline.events.counts.items():
            values[f'kelemetry_kube_events_total{{outcome="{name}"}}'] = value
        values.update(self._gap_metrics())
        if self.follower is not None:
            values["kelemetry_otlp_exported_spans_total"] = self.follower.exported
            values["kelemetry_otlp_export_failures_total"] = self.follower.failures
        return values


def create_app(collector: Collector, query: QueryService | None = None) -> FastAPI:
    """The app of ``kelemetry serve``: the collector's routes, and the query side when given. The
    webhook's token guards everything else too (``frontend.access``)."""
    policy = access.AccessPolicy(
        token=collector.settings.webhook.token, public_query=collector.settings.public_query
    )
    return build_app(collector=collector, query=query, policy=policy)


def build_app(
    *,
    collector: Collector | None = None,
    query: QueryService | None = None,
    policy: access.AccessPolicy | None = None,
) -> FastAPI:
    """The one FastAPI app of both processes: ``kelemetry serve`` (a collector, and the query side over
    its store) and ``kelemetry frontend`` (the query side alone). Its lifespan starts the collector
    and, on the way out, stops it and closes the query service. ``policy`` says who may read what."""

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

    # No /docs, /redoc or /openapi.json: FastAPI's pages load Swagger UI from a CDN, and the schema
    # would list every route to anyone; the README documents the API.
    app = FastAPI(
        title="kelemetry",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    policy = policy or access.AccessPolicy()
    # Added last, so outermost: the guard's refusals carry the security headers too.
    app.add_middleware(access.TokenGuard, policy=policy)
    app.add_middleware(SecurityHeaders)
    app.include_router(access.login_router(policy))

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
            collector.accept,
            default_cluster=settings.webhook.default_cluster,
            max_body_bytes=settings.webhook.max_body_bytes,
            token=settings.webhook.token,
            counters=collector.webhook_counters,
        )
    )

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Whether a webhook batch would be acknowledged now, and if not, why (503). Quarantined input
        is shown, not a failure: what the pipeline could not take does not stop what it can."""
        problems = collector.ingestor.problems()
        quarantined = collector.quarantined()
        if problems:
            return JSONResponse(
                {"status": "not ready", "reasons": problems, "quarantined": quarantined}, status_code=503
            )
        return JSONResponse({"status": "ready", "reasons": [], "quarantined": quarantined})

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return "".join(f"{name} {value:g}\n" for name, value in sorted(collector.metrics().items()))

    @app.get("/api/kelemetry/fleet")
    def fleet() -> dict[str, Any]:
        """Each cluster the collector knows of, and whether it is talking to us."""
        return {"data": [health.as_json() for health in collector.health()]}

    @app.get("/api/kelemetry/status")
    def status(request: Request) -> dict[str, Any]:
        return {
            "service": "kelemetry",
            "version": __version__,
            "webhook": f"POST /audit/<cluster> (default cluster: {settings.webhook.default_cluster})",
            # Where the data lies on disk is for those holding the token (--public-query readers not).
            **({"store": str(settings.store.path)} if access.is_authenticated(request) else {}),
            "counts": collector.store.counts(),
            "quarantined": {
                "inputs": collector.quarantined(),
                "see": "kelemetry quarantine --store <store>",
            },
            "dump": "kelemetry dump --store <store> --cluster C --resource R --namespace N --name NAME",
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
