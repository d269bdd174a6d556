"""The `serve` process: the FastAPI app with the webhook, health and metrics, and its workers.

``Collector`` owns the moving parts (store, inbox, pipeline, ingest worker, OTLP follower,
retention timer) and their start/stop order; ``create_app`` wires a collector into routes. No
module-level app or settings: tests build as many as they like.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from frontend import access
from frontend import api as frontend_api
from frontend.headers import SecurityHeaders
from frontend.query import QueryService
from frontend.timing import RequestTimer
from kelemetry import __version__, metrics, pipeline
from kelemetry.connection import ClusterConnection, ClusterHealth, resume_path
from kelemetry.errors import KelemetryError, StoreError
from kelemetry.export.otlp import OtlpFollower
from kelemetry.ingest import Ingestor
from kelemetry.kube.kinds import KindResolver
from kelemetry.linker.links import Clusters
from kelemetry.metrics import Metric
from kelemetry.receivers import webhook
from kelemetry.receivers.requests import RequestMetrics
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
        registry: metrics.Registry | None = None,
        requests: RequestMetrics | None = None,
    ) -> None:
        """``registry``: the process's metrics (a new one when not given); ``requests``: the request
        metrics of the audit stream, when the caller already counts into them (`serve --replay`)."""
        names = [cluster.name for cluster in settings.clusters]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise KelemetryError(f"cluster name(s) given twice: {', '.join(duplicates)}")
        self.settings = settings
        store_path = Path(settings.store.path)
        self.store = SpanStore(store_path, synchronous=settings.store.synchronous)
        self.inbox = Inbox(inbox_path(store_path), synchronous=settings.store.synchronous)
        self.resolver = resolver or KindResolver()
        self.registry = registry or metrics.Registry()
        bounds = settings.request_metrics
        self.requests = requests or RequestMetrics(
            self.registry, max_users=bounds.max_users, max_resources=bounds.max_resources
        )
        self.registry.add_source(self.collect)
        known = frozenset(names) | {settings.webhook.default_cluster} | frozenset(self.store.clusters())
        self.pipeline = pipeline.build(
            self.store,
            settings.trace,
            self.resolver,
            clusters=Clusters(known, dict(settings.cluster_aliases)),
            requests=self.requests,
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

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics as ``name{labels}`` → value (tests and tools)."""
        return self.registry.values()

    def collect(self) -> Iterator[Metric]:
        """The collector's state at scrape time (a ``metrics.Registry`` source). Everything counted
        here is counted where it happens already; this only reads it."""
        yield metrics.gauge("kelemetry_build_info", "The running version.", {(__version__,): 1}, ("version",))
        yield from self._ingest_metrics()
        yield from self._store_metrics()
        yield from self._cache_metrics()
        yield from self._fleet_metrics()
        yield from self._gap_metrics()
        for name, source in (
            ("links", self.pipeline.links.counts),
            ("kube_events", self.pipeline.events.counts),
        ):
            yield metrics.counter_family(
                f"kelemetry_{name}_total",
                f"{name.replace('_', ' ').capitalize()} by outcome.",
                ("outcome",),
                [((outcome,), value) for outcome, value in list(source.items())],
            )
        yield from self._export_metrics()

    def _ingest_metrics(self) -> Iterator[Metric]:
        yield from webhook.counter_metrics(self.webhook_counters)
        for name, value in list(self.ingestor.counters.items()):
            yield metrics.counter_family(
                f"kelemetry_ingest_{name}_total", f"Ingestion: {name.replace('_', ' ')}.", (), value
            )
        yield metrics.counter_family(
            "kelemetry_audit_events_total",
            "Audit events by what the pipeline did with them (kept, or why not).",
            ("outcome",),
            [((outcome,), value) for outcome, value in list(self.pipeline.converter.stats.counts.items())],
        )
        yield metrics.gauge(
            "kelemetry_ingest_backlog_bytes",
            "Bytes of accepted audit batches not processed yet.",
            self.ingestor.backlog_bytes,
        )
        yield metrics.gauge(
            "kelemetry_ingest_backlog_batches",
            "Accepted audit batches not processed yet.",
            self.ingestor.backlog_batches,
        )
        try:
            oldest, quarantined = self.inbox.oldest_received_us(), self.inbox.quarantine_count()
        except sqlite3.Error as exc:
            # A scrape must answer most when the disk is failing; these two are left out then.
            logger.warning("cannot read the inbox for /metrics: %s", exc)
        else:
            yield metrics.gauge(
                "kelemetry_inbox_oldest_age_seconds",
                "How long the oldest unprocessed batch has waited in the inbox (0: none waits).",
                0.0 if oldest is None else max(time.time_ns() // 1000 - oldest, 0) / 1e6,
            )
            yield metrics.gauge(
                "kelemetry_quarantined_inputs",
                "Inputs kept aside with the reason they failed (kelemetry quarantine lists them).",
                quarantined,
            )
        yield metrics.gauge(
            "kelemetry_store_failing",
            "1 while the store refuses writes (webhook batches are answered 503).",
            int(self.ingestor.store_failure is not None),
        )
        yield metrics.gauge(
            "kelemetry_owner_graph_objects", "Objects in the owner graph.", len(self.pipeline.graph)
        )

    def _store_metrics(self) -> Iterator[Metric]:
        sizes: dict[tuple[str, ...], float] = {}
        wal: dict[tuple[str, ...], float] = {}
        for name, path in (("spans", self.store.path), ("inbox", self.inbox.path)):
            sizes[(name,)] = _file_size(path)
            wal[(name,)] = _file_size(path.with_name(path.name + "-wal"))
        yield metrics.gauge("kelemetry_store_size_bytes", "Size of the store's files.", sizes, ("file",))
        yield metrics.gauge(
            "kelemetry_store_wal_size_bytes",
            "Size of their write-ahead logs (truncated when idle).",
            wal,
            ("file",),
        )
        removed = self.retention_removed
        for what in ("traces", "spans", "objects"):
            yield metrics.counter_family(
                f"kelemetry_retention_removed_{what}_total",
                f"{what.capitalize()} removed by retention.",
                (),
                getattr(removed, what),
            )
        yield metrics.gauge(
            "kelemetry_store_write_sequence",
            "The store's write sequence: spans written or moved.",
            self.store.last_seq,
        )

    def _cache_metrics(self) -> Iterator[Metric]:
        """Each cache's size as counted against its cap (bytes) and its entries (objects)."""
        changes = self.pipeline.changes
        bases = self.store.base_cache
        caches = (
            ("diff_history", changes.history.bytes, len(changes.history)),
            ("diff_watched", changes.watched.bytes, len(changes.watched)),
            ("store_bases", bases.bytes, len(bases)),
            ("diff_partials", changes.partial_bytes, changes.partials),
            ("diff_claims", changes.claim_bytes, changes.claims),
        )
        yield metrics.gauge(
            "kelemetry_cache_bytes",
            "Bytes held, as counted against the cap.",
            {(n,): b for n, b, _ in caches},
            ("cache",),
        )
        yield metrics.gauge(
            "kelemetry_cache_entries", "Entries held.", {(n,): e for n, _, e in caches}, ("cache",)
        )
        yield metrics.counter_family(
            "kelemetry_cache_evictions_total",
            "Entries evicted to stay under the cap.",
            ("cache",),
            [
                (("diff_history",), changes.history.evicted),
                (("diff_watched",), changes.watched.evicted),
                (("diff_partials",), changes.partials_evicted),
                (("diff_claims",), changes.claims_evicted),
            ],
        )

    def _gap_metrics(self) -> Iterator[Metric]:
        """Gaps recorded by this process per cluster and reason, and the seconds they cover."""
        counts = sorted(self.ingestor.gap_counts.items())
        labels = ("cluster", "reason")
        yield metrics.counter_family(
            "kelemetry_gaps_total", "Gaps recorded: times data may be missing.", labels, counts
        )
        yield metrics.counter_family(
            "kelemetry_gap_seconds_total",
            "Seconds the recorded gaps cover.",
            labels,
            [(key, self.ingestor.gap_seconds[key]) for key, _ in counts],
        )

    def _fleet_metrics(self) -> Iterator[Metric]:
        now = time.time_ns() // 1000
        fleet = self.health()
        # All clusters' watches together, under the names of before fleets (dashboards use them).
        yield metrics.counter_family(
            "kelemetry_events_watch_relists_total",
            "Watch relists, all clusters.",
            (),
            sum(h.relists for h in fleet),
        )
        yield metrics.counter_family(
            "kelemetry_events_watch_reconnects_total",
            "Watch reconnects, all clusters.",
            (),
            sum(h.reconnects for h in fleet),
        )
        per: dict[str, dict[tuple[str, ...], float]] = {
            name: {}
            for name in (
                "up",
                "relists",
                "reconnects",
                "errors",
                "audit_age",
                "watch_age",
                "audit_time",
                "watch_time",
                "lag",
            )
        }
        for health in fleet:
            key = (health.name,)
            per["up"][key] = 1.0 if health.state == "ok" else 0.0
            per["relists"][key] = health.relists
            per["reconnects"][key] = health.reconnects
            per["errors"][key] = len(health.errors)
            if health.last_audit_us is not None:
                per["audit_age"][key] = (now - health.last_audit_us) / 1e6
                per["audit_time"][key] = health.last_audit_us / 1e6
            if health.last_watch_us is not None:
                per["watch_age"][key] = (now - health.last_watch_us) / 1e6
                per["watch_time"][key] = health.last_watch_us / 1e6
            if health.watch_lag_s is not None:
                per["lag"][key] = health.watch_lag_s
        cluster = ("cluster",)
        yield metrics.gauge(
            "kelemetry_cluster_up", "1 while the cluster is connected and healthy.", per["up"], cluster
        )
        yield metrics.counter_family(
            "kelemetry_cluster_watch_relists_total",
            "Watch relists (after 410 Gone).",
            cluster,
            per["relists"].items(),
        )
        yield metrics.counter_family(
            "kelemetry_cluster_watch_reconnects_total",
            "Watch reconnects.",
            cluster,
            per["reconnects"].items(),
        )
        yield metrics.gauge("kelemetry_cluster_watch_errors", "Watches failing now.", per["errors"], cluster)
        yield metrics.gauge(
            "kelemetry_cluster_last_audit_age_seconds",
            "Since the last audit batch.",
            per["audit_age"],
            cluster,
        )
        yield metrics.gauge(
            "kelemetry_cluster_last_audit_timestamp_seconds",
            "When the last audit batch arrived (Unix time).",
            per["audit_time"],
            cluster,
        )
        yield metrics.gauge(
            "kelemetry_cluster_last_watch_age_seconds",
            "Since the last watched event.",
            per["watch_age"],
            cluster,
        )
        yield metrics.gauge(
            "kelemetry_cluster_last_watch_timestamp_seconds",
            "When the last watched event arrived (Unix time).",
            per["watch_time"],
            cluster,
        )
        yield metrics.gauge(
            "kelemetry_cluster_watch_lag_seconds",
            "How late the last Kubernetes Event reached us after it happened.",
            per["lag"],
            cluster,
        )

    def _export_metrics(self) -> Iterator[Metric]:
        follower = self.follower
        if follower is None:
            return
        yield metrics.counter_family(
            "kelemetry_otlp_exported_spans_total", "Spans sent to the OTLP endpoint.", (), follower.exported
        )
        yield metrics.counter_family(
            "kelemetry_otlp_export_failures_total", "Failed OTLP export attempts.", (), follower.failures
        )
        yield metrics.gauge(
            "kelemetry_otlp_export_cursor", "The store write sequence exported so far.", follower.cursor
        )
        yield metrics.gauge(
            "kelemetry_otlp_export_lag_spans",
            "Span writes in the store not exported yet (they wait on disk).",
            max(self.store.last_seq - follower.cursor, 0),
        )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def create_app(collector: Collector, query: QueryService | None = None) -> FastAPI:
    """The app of ``kelemetry serve``: the collector's routes, and the query side when given. The
    webhook's token guards everything else too (``frontend.access``)."""
    policy = access.AccessPolicy(
        token=collector.settings.webhook.token, public_query=collector.settings.public_query
    )
    return build_app(collector=collector, query=query, policy=policy, registry=collector.registry)


def build_app(
    *,
    collector: Collector | None = None,
    query: QueryService | None = None,
    policy: access.AccessPolicy | None = None,
    registry: metrics.Registry | None = None,
) -> FastAPI:
    """The one FastAPI app of both processes: ``kelemetry serve`` (a collector, and the query side over
    its store) and ``kelemetry frontend`` (the query side alone). Its lifespan starts the collector
    and, on the way out, stops it and closes the query service. ``policy`` says who may read what;
    ``registry`` holds the process's metrics (a new one when not given), served at ``/metrics``."""
    registry = registry or metrics.Registry()

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
    # Outermost of all: a request's time includes the guard and the headers.
    app.add_middleware(RequestTimer, histogram=RequestTimer.histogram_in(registry))
    app.include_router(access.login_router(policy))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def metrics_page() -> Response:
        """Prometheus' exposition format; behind the token (``frontend.access``)."""
        return Response(registry.render(), media_type=metrics.CONTENT_TYPE)

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
