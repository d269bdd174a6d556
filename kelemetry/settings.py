"""Settings, grouped by concern. Every field says what it means, its unit and why its default.

The CLI builds these from flags; tests build them directly. Nothing reads the environment here
except the token, so a secret never has to appear on a command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEFAULT_EXCLUDED_RESOURCES = ("events", "events.k8s.io/events", "coordination.k8s.io/leases")
DEFAULT_EXCLUDED_USER_AGENTS = ("/leader-election",)
DEFAULT_CACHE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoreSettings:
    path: str = "kelemetry-data/kelemetry.db"
    """The embedded SQLite store file; created with its folder if missing."""
    synchronous: str = "OFF"
    """SQLite ``synchronous`` mode. In WAL mode a killed process loses no committed batch even with
    OFF; FULL also survives an OS crash or power loss, at the price of fsyncs per batch."""
    retention_seconds: int | None = 7 * 24 * 3600
    """Traces that arrived in the store longer ago than this are removed whole, with the objects
    nothing refers to any more. Counted from arrival, not from the data's timestamps, so a replayed
    old incident or a skewed apiserver clock decides nothing about other data. None keeps everything."""
    max_bytes: int | None = None
    """Upper bound on the store's used size; the least recently arrived traces go first. None means
    unbounded."""


@dataclass(frozen=True, slots=True)
class TraceSettings:
    window_seconds: int = 1800
    """Length of a trace window; 30 minutes as in Go Kelemetry, aligned to the epoch."""
    aggregator: str = "hierarchy"
    """Name of the aggregator in `aggregators.registry()`."""
    excluded_resources: tuple[str, ...] = DEFAULT_EXCLUDED_RESOURCES
    """Audit events on these resources (``resource`` or ``group/resource``) make no spans; the
    defaults are Go Kelemetry's: Events and Leases are noise as requests."""
    excluded_user_agents: tuple[str, ...] = DEFAULT_EXCLUDED_USER_AGENTS
    """Substrings of user agents whose requests make no spans (leader-election heartbeats)."""
    redact: tuple[str, ...] = ()
    """Extra fields whose values never leave the collector, as ``RESOURCE[.GROUP]:FIELD``
    (``configmaps:data``); Secret ``data`` and ``stringData`` are always redacted."""
    cache_bytes: int = DEFAULT_CACHE_BYTES
    """Memory for the recent object versions diffs are computed from (audit responses and watched
    versions, half each), counted as their bodies' JSON size; least recently used objects are
    dropped past it (their next change shows no diff). Up to ~6x this in process memory (README, Memory)."""
    link_rules: str | None = None
    """A file of user link rules (label/annotation selectors → a parent; `kelemetry.linker.systems.rules`)
    for in-house systems; the built-in linkers always run."""


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    default_cluster: str = "default"
    """Cluster name for ``POST /audit`` without a cluster in the path."""
    max_body_bytes: int = 64 * 1024 * 1024
    """Largest accepted batch. A 400-event RequestResponse batch of node status is ~12 MB."""
    max_backlog_bytes: int = 512 * 1024 * 1024
    """Accepted-but-unprocessed batches past this get 429 so the apiserver retries later
    instead of us running out of memory."""
    token: str | None = None
    """If set, ``Authorization: Bearer <token>`` is required on the webhook, and the token guards
    ``/metrics``, the query API and the web UI as well (``frontend.access``)."""
    min_free_bytes: int = 256 * 1024 * 1024
    """Batches are answered 507 (retried by the apiserver) rather than acknowledged while the store's
    disk has less free space than this; 0 turns the check off."""
    max_clock_skew_seconds: int = 24 * 3600
    """A batch holding an event dated further ahead of the collector's clock than this is refused
    (422): clocks drift, but an event dated 9999-12-31 would open a trace window nobody can reach."""


@dataclass(frozen=True, slots=True)
class OtlpSettings:
    endpoint: str | None = None
    """``grpc://host:4317``, ``http://host:4318`` (``/v1/traces`` added), or ``host:port`` (gRPC)."""
    batch_size: int = 512
    """Spans per export request."""
    poll_interval_seconds: float = 0.2
    """How often the exporter looks for new spans in the store when idle."""


DEFAULT_WATCHED = (
    "deployments.apps",
    "replicasets.apps",
    "statefulsets.apps",
    "daemonsets.apps",
    "jobs.batch",
    "cronjobs.batch",
    "pods",
    "services",
    "configmaps",
    "nodes",
)


# Use fullmatch: Python's "$" also matches before a trailing newline, so match would take "c\n". The
# pattern itself is shared with the chart's Go template (where "$" is the end of the text).
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
"""A cluster name: it is also the last segment of the webhook's path (``/audit/<name>``)."""


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """A cluster the collector connects to: API discovery resolves owner kinds (custom resources),
    its Events are watched, and so are the objects of ``watch_resources``. Its apiserver sends audit
    to ``/audit/<name>``."""

    name: str
    kubeconfig: str
    context: str | None = None


@dataclass(frozen=True, slots=True)
class RequestMetricsSettings:
    """Bounds of the labels of the request metrics derived from the audit stream
    (``kelemetry.receivers.requests``): past them, new values are counted as ``other``."""

    max_users: int = 20
    """Distinct users with their own label (the first seen since start keep theirs)."""
    max_resources: int = 100
    """Distinct (group, resource[/subresource]) with their own label."""


@dataclass(frozen=True, slots=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    clusters: tuple[ClusterSettings, ...] = ()
    """The clusters to connect to (none: the webhook alone)."""
    watch_resources: tuple[str, ...] = DEFAULT_WATCHED
    """``RESOURCE[.GROUP][/VERSION]`` whose changes become diffs and, when no audit event claims them
    within ``change_grace_seconds``, change spans; default: workloads, pods, services, configmaps, nodes."""
    watch_custom_resources: bool = True
    """Also watch the objects of every CustomResourceDefinition (checked again every
    ``CRD_REFRESH_SECONDS``, so CRDs installed later are picked up)."""
    change_grace_seconds: float = 5.0
    """How long a watched change waits for the audit event that explains it (who did it)."""
    store: StoreSettings = field(default_factory=StoreSettings)
    trace: TraceSettings = field(default_factory=TraceSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    otlp: OtlpSettings = field(default_factory=OtlpSettings)
    cluster_aliases: tuple[tuple[str, str], ...] = ()
    """A federation system's name of a member cluster → ours, where they differ."""
    public_query: bool = False
    """With a token set, still let anyone read traces (query API and web UI); the webhook and
    ``/metrics`` keep needing the token."""
    request_metrics: RequestMetricsSettings = field(default_factory=RequestMetricsSettings)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Serve HTTPS with this certificate chain and private key (PEM files)."""

    cert_file: str
    key_file: str
