"""The `kelemetry` command: serve, replay, retain, dump, changes, stuck, explain, blame, frontend, quarantine.

Every failure a user can cause (unknown object, bad time, unreadable file, busy port) ends with a
one-line ``kelemetry: error: ...`` on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

import orjson

from frontend import changes as browsing
from frontend import dump as dumping
from frontend import jaegerjson, modes, objectat, query, revisions, text
from frontend.types import Found, ObjectQuery, View
from frontend.views import ViewStore
from kelemetry import __version__, errors, logs
from kelemetry import pipeline as pipelines
from kelemetry.diff.redact import RedactionRule
from kelemetry.kube.kinds import KindResolver
from kelemetry.model import times
from kelemetry.queue.layout import DEFAULT_PARTITIONS
from kelemetry.receivers.auditfiles import STDIN, FileStats, expand, read_input
from kelemetry.settings import (
    CLUSTER_NAME,
    DEFAULT_EXCLUDED_RESOURCES,
    DEFAULT_EXCLUDED_USER_AGENTS,
    DEFAULT_WATCHED,
    ClusterSettings,
    OtlpSettings,
    RequestMetricsSettings,
    ServeSettings,
    StoreSettings,
    TlsSettings,
    TraceSettings,
    WebhookSettings,
)
from kelemetry.store.sqlite import SpanStore

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kelemetry.receivers.requests import RequestMetrics

# The web stack (fastapi, uvicorn), the OTLP exporter (opentelemetry, grpc), the Jaeger client and
# the kubernetes client are imported by the commands that use them: `replay`, `retain` and `dump`
# should not spend a second loading a web server they never start.

logger = logging.getLogger("kelemetry")
T = TypeVar("T")

DEFAULT_STORE = StoreSettings().path
EXIT_USAGE = 2

# In WAL mode a killed process never loses a committed transaction, whatever this setting; only
# an OS crash or power loss needs the fsyncs of FULL, which cost milliseconds per batch.
SYNCHRONOUS = {"process": "OFF", "power": "FULL"}
EXIT_FAILURE = 1
# A replay's export is bounded: a backend that stays down ends it with a summary instead of a hang.
OTLP_REPLAY_ATTEMPTS = 4
OTLP_REPLAY_SECONDS = 60.0
# A terminal reads (or greps) a longer page than the web UI shows at once.
CHANGES_LIMIT = 500
QUARANTINE_LIMIT = 100


class CliError(errors.KelemetryError):
    pass


def parsed(parse: Callable[[str], T], text: str) -> T:
    """A value parsed by `kelemetry.model.times`, its refusal as the CLI's one-line error."""
    try:
        return parse(text)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def seconds(text: str) -> int:
    return parsed(times.parse_duration_us, text) // 1_000_000


def _max_clock_skew(text: str) -> int:
    return parsed(lambda t: times.parse_duration_us(t, what="--max-clock-skew"), text) // 1_000_000


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"invalid --listen {text!r}: use HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kelemetry",
        description="Kubernetes control-plane tracer: turns kube-apiserver audit events into per-object "
        "traces (Deployment → ReplicaSet → Pod), keeps them in an embedded store, exports OTLP, and dumps "
        "the trace of any object for incident reviews.",
    )
    parser.add_argument("--version", action="version", version=f"kelemetry {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--log-format",
        default="text",
        choices=logs.FORMATS,
        help="'text' (default) or 'json': one object per line with time, level, logger, msg and, where "
        "relevant, cluster, batch and audit_id",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_store(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--store", default=DEFAULT_STORE, help=f"embedded store file (default: {DEFAULT_STORE})"
        )

    def add_trace(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--window",
            default="30m",
            help="trace window length; one trace per root object per window (default 30m)",
        )
        sub.add_argument(
            "--exclude-resource",
            action="append",
            metavar="[GROUP/]RESOURCE",
            help="audit events on this resource make no spans (repeatable; default: "
            + ", ".join(DEFAULT_EXCLUDED_RESOURCES)
            + "; pass 'none' to keep all)",
        )
        sub.add_argument(
            "--redact",
            action="append",
            default=[],
            metavar="RESOURCE[.GROUP]:FIELD",
            help="also keep the values of this top-level field out of diffs, snapshots and every output "
            "(repeatable, e.g. configmaps:data); Secret data and stringData are always redacted",
        )
        sub.add_argument(
            "--cache-size",
            default="128MiB",
            metavar="SIZE",
            help="memory for the recent object versions diffs are made from, counted as their JSON size "
            "(default 128MiB; up to ~6x that in process memory); least recently used objects go first",
        )
        sub.add_argument(
            "--link-rules",
            metavar="FILE",
            help="YAML or JSON rules linking objects of in-house systems to a parent (label/annotation "
            "selectors → a parent key template; see README, Fleets); the built-in linkers always run",
        )
        sub.add_argument(
            "--kubeconfig",
            action="append",
            default=[],
            metavar="[NAME=]PATH[#CONTEXT]",
            help="connect to a cluster: API discovery resolves owner kinds of custom resources, and "
            "`serve` also watches its Kubernetes Events and objects into the traces. `serve` takes one per "
            "cluster of a fleet, named (NAME=PATH, the name its apiserver's audit webhook posts to: "
            "/audit/NAME; #CONTEXT picks a context of the file); an unnamed one is --cluster. Default: no "
            "cluster; owner kinds from the built-in table of standard kinds, then the pluralised kind",
        )

    def add_access(sub: argparse.ArgumentParser, guarded: str) -> None:
        sub.add_argument(
            "--token-env",
            default="KELEMETRY_TOKEN",
            help=f"if this environment variable is set, {guarded} need its value: 'Authorization: Bearer "
            "<value>', or a login through the web UI's /login page (default KELEMETRY_TOKEN); /healthz and "
            "/readyz stay open",
        )
        sub.add_argument(
            "--public-query",
            action="store_true",
            help="with a token set, still let anyone read traces (the query API and the web UI)"
            + ("; the webhook and /metrics keep needing the token" if "webhook" in guarded else ""),
        )
        sub.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate (chain)")
        sub.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")

    serve = commands.add_parser(
        "serve",
        help="run the audit webhook, the embedded store and optional OTLP export",
        description="Serve the audit webhook (POST /audit/<cluster>) and write traces to the embedded store; "
        "with --otlp-endpoint also export them to Jaeger or any OTLP backend. Point kube-apiserver at it "
        "with --audit-webhook-config-file (see samples/apiserver/).",
    )
    serve.add_argument(
        "--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on (default 127.0.0.1:8080)"
    )
    add_store(serve)
    serve.add_argument(
        "--otlp-endpoint",
        help="export spans over OTLP: grpc://HOST:4317, http://HOST:4318 or HOST:PORT (gRPC); spans wait in "
        "the store while the endpoint is down",
    )
    serve.add_argument(
        "--cluster",
        default="default",
        help="cluster name for POST /audit without one in the path, and for an unnamed --kubeconfig",
    )
    serve.add_argument(
        "--cluster-alias",
        action="append",
        default=[],
        metavar="THEIR_NAME=OUR_NAME",
        help="a federation system (KubeAdmiral, Karmada, ...) calls a member cluster THEIR_NAME where this "
        "collector calls it OUR_NAME (repeatable; not needed when the names are the same)",
    )
    serve.add_argument(
        "--replay",
        action="append",
        metavar="[CLUSTER=]FILE",
        help="replay this audit log or Events file (any form `kelemetry replay` reads; a directory; '-' for "
        "stdin) into the store before serving, as CLUSTER's (default --cluster); repeatable, so a fleet's "
        "recordings can be replayed together. Idempotent, so it is "
        "safe on every start",
    )
    serve.add_argument(
        "--watch",
        action="append",
        metavar="RESOURCE[.GROUP][/VERSION]",
        help="with --kubeconfig: watch these objects for diffs and for changes no audit event explains "
        "(repeatable; default: " + ", ".join(DEFAULT_WATCHED) + ", and the objects of every "
        "CustomResourceDefinition; 'none' to watch no objects)",
    )
    serve.add_argument(
        "--no-watch-custom-resources",
        action="store_true",
        help="with --kubeconfig: do not watch the objects of CustomResourceDefinitions (watched by default), "
        "e.g. when the collector's RBAC grants no access to them",
    )
    serve.add_argument(
        "--change-grace",
        default="5s",
        help="how long a watched change waits for the audit event that explains it before it becomes a "
        "change span of its own (default 5s)",
    )
    serve.add_argument("--max-body", default="64MB", help="largest accepted webhook batch (default 64MB)")
    serve.add_argument(
        "--max-backlog",
        default="512MB",
        help="unprocessed batches beyond this are answered 429 (default 512MB)",
    )
    serve.add_argument(
        "--min-free-space",
        default="256MB",
        metavar="SIZE",
        help="answer webhook batches 507 (the apiserver retries) instead of acknowledging them while "
        "the store's disk has less free space than this (default 256MB; 0 to not check)",
    )
    serve.add_argument(
        "--max-clock-skew",
        default="24h",
        metavar="DURATION",
        help="refuse (422) a webhook batch holding an event dated more than this ahead of this "
        "collector's clock, naming the field (default 24h): a far-future date, from a crafted sender or an "
        "apiserver whose clock jumped, would open a trace window nobody can reach",
    )
    serve.add_argument(
        "--retention",
        default="7d",
        help="remove traces that arrived in the store longer ago than this, checked every 5 minutes "
        "(default 7d; 'forever'); see `kelemetry retain --help`",
    )
    serve.add_argument(
        "--max-store-size",
        help="remove the least recently arrived traces while the store is bigger than this, e.g. 5GB",
    )
    serve.add_argument(
        "--durability",
        choices=["process", "power"],
        default="process",
        help="'process' survives a killed collector (default); "
        "'power' also survives power loss (fsync per batch)",
    )
    serve.add_argument(
        "--request-metrics-users",
        type=int,
        default=RequestMetricsSettings().max_users,
        metavar="N",
        help="users with their own label in the request metrics of /metrics (the first N seen keep "
        f"theirs; later ones are 'other'; default {RequestMetricsSettings().max_users})",
    )
    serve.add_argument(
        "--request-metrics-resources",
        type=int,
        default=RequestMetricsSettings().max_resources,
        metavar="N",
        help="resources with their own label in the request metrics of /metrics "
        f"(default {RequestMetricsSettings().max_resources})",
    )
    add_access(serve, "the webhook, /metrics, the query API and the web UI")
    add_trace(serve)
    scaled = serve.add_argument_group(
        "scaled mode",
        "many replicas over NATS JetStream instead of one process and the embedded store "
        "(README, Scaling out)",
    )
    scaled.add_argument(
        "--queue",
        metavar="nats://HOST:PORT",
        help="run one role of the scaled mode against this NATS server (JetStream enabled; "
        "comma-separated for a NATS cluster); without it, serve runs everything in one process",
    )
    scaled.add_argument(
        "--role",
        choices=["webhook", "worker"],
        help="with --queue: 'webhook' answers the audit webhook and publishes to JetStream; 'worker' "
        "consumes partitions and exports the traces to --otlp-endpoint",
    )
    scaled.add_argument(
        "--partitions",
        type=int,
        default=DEFAULT_PARTITIONS,
        metavar="N",
        help="with --queue: partitions of the audit stream, the same on every replica "
        f"(default {DEFAULT_PARTITIONS})",
    )
    scaled.add_argument(
        "--queue-replicas",
        type=int,
        default=1,
        metavar="N",
        help="with --queue: JetStream replicas of the streams and buckets (1 on one server, 3 on a NATS "
        "cluster; default 1)",
    )
    scaled.add_argument(
        "--worker-id",
        metavar="NAME",
        help="with --role worker: this replica's unique name (default: host name and process id)",
    )
    scaled.add_argument(
        "--state-dir",
        metavar="DIR",
        help="with --role worker: scratch space for the partitions it owns (default: a new temporary folder)",
    )
    scaled.add_argument(
        "--lease",
        default="10s",
        metavar="DURATION",
        help="with --queue: how long a dead worker's partitions wait before another worker takes them "
        "(default 10s)",
    )
    scaled.add_argument(
        "--snapshot-every",
        default="30s",
        metavar="DURATION",
        help="with --role worker: how often a partition's state is saved to JetStream (default 30s)",
    )
    scaled.add_argument(
        "--settle",
        default="15s",
        metavar="DURATION",
        help="with --role worker: how long a span waits before it is exported (default 15s). Jaeger "
        "cannot move or replace a span, and a span can still change: moved into its owner's trace when "
        "the owner's create arrives late (the apiserver retries a refused batch after 10s), or given a "
        "fuller diff by a later event. Spans reach Jaeger this much later; 0s exports at once",
    )

    replay = commands.add_parser(
        "replay",
        help="replay audit logs and Kubernetes Events (files, directories, stdin) into the store",
        description=(
            "Read kube-apiserver audit logs and Kubernetes Events and write their traces to the store. "
            "Forms are recognised by content: JSON lines (the log backend's output), pretty-printed JSON, "
            "YAML, audit EventLists, `kubectl get events -o json|yaml`, GKE Cloud Logging exports "
            "(protoPayload entries), plain or gzip. A directory is its files, rotated ones first; '-' "
            "reads stdin. Records that cannot be read are summarized in one line per file. Replaying the "
            "same input again changes nothing."
        ),
    )
    replay.add_argument("files", nargs="+", metavar="FILE|DIR|-")
    replay.add_argument(
        "--cluster", default="default", help="cluster name to record the events under (default 'default')"
    )
    add_store(replay)
    replay.add_argument(
        "--otlp-endpoint",
        help="also export the store's new spans over OTLP before exiting; gives up after "
        f"{OTLP_REPLAY_ATTEMPTS} failed attempts (exit code 1, the spans stay in the store for a rerun)",
    )
    replay.add_argument(
        "--quiet", action="store_true", help="no progress output (the summary is still printed)"
    )
    add_trace(replay)

    dump = commands.add_parser(
        "dump",
        help="dump the trace of one object (tree, Jaeger JSON, JSON lines, Parquet)",
        description="Print or write the trace of one object: the object, its owners and owned objects, and "
        "every request on them, over the requested time range (all windows merged).",
    )
    dump.add_argument("--cluster", help="cluster (default: any; several matches list the choices)")
    dump.add_argument("--group", help="API group ('' for core; default: any)")
    dump.add_argument(
        "--resource",
        required=True,
        help="resource as kubectl takes it: deploy, Deployment, deployments, deployments.apps, "
        "deployments.v1.apps, po, a custom resource's plural or kind",
    )
    dump.add_argument("--namespace", help="namespace (default: any; '' for cluster-scoped)")
    dump.add_argument("--name", required=True)
    dump.add_argument(
        "--uid",
        help="one incarnation of the name (an object deleted and created again under the same name); "
        "default: the newest one active in the range",
    )
    dump.add_argument("--since", help="only the last DURATION, e.g. 2h (default: all history)")
    dump.add_argument("--start", help="range start, RFC 3339")
    dump.add_argument("--end", help="range end, RFC 3339 (default now)")
    dump.add_argument(
        "--format", choices=dumping.FORMATS, default="tree", help="output format (default tree)"
    )
    dump.add_argument(
        "--output", "-o", help="write to this file instead of stdout (required for parquet on a tty)"
    )
    dump.add_argument(
        "--mode",
        choices=[base.value for base in modes.Base],
        help="display mode, as in the web UI and /api/traces: 'tracing' folds requests and Events into "
        "their object's row, 'grouped' groups them per source, 'tree' shows them as spans, 'timeline' "
        "lists them flat under the root (tree and json formats; default: the classic tree)",
    )
    dump.add_argument(
        "--scope",
        choices=["object", "ancestors", "children", "full"],
        help="which objects: the object alone, its owners, what it owns, or the full tree from its highest "
        "owner (default full)",
    )
    dump.add_argument(
        "--depth",
        type=int,
        help=f"levels of owners/owned objects the scope follows (default {modes.DEFAULT_DEPTH} with "
        "--scope, unlimited without)",
    )
    dump.add_argument(
        "--full",
        action="store_true",
        help="tree format: print snapshots, long diffs and messages whole (default: abbreviated, a "
        "snapshot as a one-line summary and long values cut with '…')",
    )
    add_store(dump)

    get = commands.add_parser(
        "get",
        help="print an object's manifest as it was at a moment, or compare two of its revisions",
        description="Print the manifest of one object as it was at --at (or at resourceVersion --rv; "
        "default: its latest state), rebuilt from the versions the store kept of it (request responses "
        "and watched versions, redacted, without managedFields). After a delete, the last state, marked "
        "deleted. "
        "--diff-to compares it with the revision in effect at another moment.",
    )
    get.add_argument("--cluster", help="cluster (default: any)")
    get.add_argument("--group", help="API group ('' for core; default: any)")
    get.add_argument(
        "--resource",
        required=True,
        help="resource as kubectl takes it: deployments, deploy, Deployment, pods.v1",
    )
    get.add_argument("--namespace", help="namespace (default: any; '' for cluster-scoped)")
    get.add_argument("--name", required=True)
    get.add_argument("--uid", help="one incarnation of the name (default: the one that existed at --at)")
    moment = get.add_mutually_exclusive_group()
    moment.add_argument("--at", metavar="TIME", help="the moment, RFC 3339 (default: the latest revision)")
    moment.add_argument("--rv", metavar="RV", help="the revision with this resourceVersion")
    get.add_argument(
        "--format", choices=["yaml", "json"], default="yaml", help="output format (default yaml)"
    )
    other = get.add_mutually_exclusive_group()
    other.add_argument("--diff-to", metavar="TIME2", help="compare with the revision in effect at TIME2")
    other.add_argument("--diff-to-rv", metavar="RV2", help="compare with the revision of resourceVersion RV2")
    other.add_argument(
        "--list", action="store_true", help="list the stored revisions (time, resourceVersion, who, verb)"
    )
    get.add_argument(
        "--side-by-side",
        action="store_true",
        help="with --diff-to: two columns (| changed, < only before, > only after) instead of a unified diff",
    )
    get.add_argument(
        "--width", type=int, help="with --side-by-side: columns of output (default: the terminal's)"
    )
    add_store(get)

    def add_answer_object(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--cluster", help="cluster (default: any; several matches list the choices)")
        sub.add_argument("--group", help="API group ('' for core; default: any)")
        sub.add_argument(
            "--resource",
            required=True,
            help="resource as kubectl takes it: deploy, Deployment, deployments, pods, po, rs",
        )
        sub.add_argument("--namespace", help="namespace (default: any; '' for cluster-scoped)")
        sub.add_argument("--name", required=True)
        sub.add_argument(
            "--uid", help="one incarnation of the name (default: the newest one created by --at)"
        )
        sub.add_argument(
            "--at",
            "--ts",
            dest="at",
            metavar="TIME",
            help="the moment, RFC 3339 (default: the object's last activity)",
        )
        sub.add_argument("--format", choices=["text", "json"], default="text", help="output format")
        add_store(sub)
        sub.add_argument(
            "--jaeger-url",
            help="read traces from this Jaeger query service (e.g. http://jaeger:16686) instead of the store",
        )
        sub.add_argument(
            "--lookback",
            default="7d",
            help="with --jaeger-url: how far back the object is searched (default 7d)",
        )

    explain = commands.add_parser(
        "explain",
        help="why an object is as it is: the requests back to the person or controller that started it",
        description="Walk from one object up its owners and back in time to the request that started it: "
        "each step names the object, the request (user, user agent, verb, time, result) and the diff lines "
        "that caused the next step. Steps the data cannot prove are marked so.",
    )
    add_answer_object(explain)
    explain.add_argument(
        "--chain-only",
        action="store_true",
        help="only the cause chain: no rollouts or stuck Pods (those read the whole hierarchy; the chain "
        "reads only the object's owners)",
    )

    blame = commands.add_parser(
        "blame",
        help="who set each value of one field of an object (spec.replicas, an image, ...)",
        description="The history of one field's values and the request that set each (user, time), per "
        "incarnation of the name, from the diff lines of the object's requests and watched changes.",
    )
    add_answer_object(blame)
    blame.add_argument(
        "--field",
        required=True,
        help="the field as diffs write it: spec.replicas, spec.template.spec.containers[name=nginx].image, "
        "or a prefix such as spec.template",
    )

    front = commands.add_parser(
        "frontend",
        help="serve the web UI, the Jaeger-compatible query API and /redirect only",
        description="Serve the query side alone: the web UI at /, Jaeger's query API (/api/services, "
        "/api/traces, /api/traces/{id}) and /redirect, reading the embedded store or, with --jaeger-url, a "
        "real Jaeger that the collector exports to.",
    )
    front.add_argument(
        "--listen", default="127.0.0.1:8081", help="HOST:PORT to listen on (default 127.0.0.1:8081)"
    )
    front.add_argument(
        "--jaeger-url",
        help="read traces from this Jaeger query service (e.g. http://jaeger:16686) instead of the store",
    )
    front.add_argument(
        "--lookback",
        default="7d",
        help="with --jaeger-url: how far back a lookup without a time range searches (default 7d)",
    )
    front.add_argument(
        "--views",
        help="file that keeps saved views so shared URLs survive restarts "
        "(default: next to the store, or kelemetry-data/views.db with --jaeger-url)",
    )
    add_store(front)
    add_access(front, "the query API and the web UI")

    retain = commands.add_parser(
        "retain",
        help="apply retention to a store now and print what was removed per cluster",
        description="Run one retention pass on the store now, as `serve` does every 5 minutes. Age counts "
        "from when data arrived in the store (written by `serve` or `replay`), never from the timestamps "
        "inside it: a replayed incident from months ago is kept for --retention from the replay, and "
        "neither it nor an event dated in the far future shortens what other data is kept. Whole traces "
        "(an object hierarchy in one window) are removed, never a request without its object; then the "
        "objects with no spans left that were not seen within --retention.",
    )
    retain.add_argument(
        "--retention",
        default="7d",
        metavar="DURATION",
        help="remove traces that arrived longer ago than this (default 7d, as serve; 'forever' to "
        "only apply --max-store-size)",
    )
    retain.add_argument(
        "--max-store-size",
        metavar="SIZE",
        help="then remove the least recently arrived traces while the store uses more than this, e.g. 5GB",
    )
    retain.add_argument(
        "--dry-run", action="store_true", help="print what would be removed and change nothing"
    )
    add_store(retain)

    browse = commands.add_parser(
        "changes",
        help="list what changed: requests, Events and watched changes, newest first",
        description="List the requests, Kubernetes Events and watched changes of a cluster or namespace "
        "over a time range, newest first: when, which object, who, what verb, the result and the first "
        "diff line (or the Event's message). --format json prints the rows of GET /api/kelemetry/changes.",
    )
    browse.add_argument("--cluster", help="only this cluster (default: every cluster)")
    browse.add_argument("--namespace", help="only this namespace")
    browse.add_argument("--resource", help="only this plural resource, e.g. deployments or deployments.apps")
    browse.add_argument("--group", help="only this API group ('' for core)")
    browse.add_argument("--user", help="only requests by this user, e.g. admin")
    browse.add_argument("--verb", help="only this verb, e.g. patch, delete")
    browse.add_argument("--errors", action="store_true", help="only failed requests and Warning Events")
    browse.add_argument("--since", help="only the last DURATION, e.g. 15m (default: all history)")
    browse.add_argument("--start", help="range start, RFC 3339")
    browse.add_argument("--end", help="range end, RFC 3339 (default: the newest)")
    browse.add_argument(
        "--limit",
        type=int,
        default=CHANGES_LIMIT,
        help=f"rows per page (default {CHANGES_LIMIT}, at most {browsing.MAX_LIMIT})",
    )
    browse.add_argument("--cursor", help="the page after this cursor (printed after a full page)")
    browse.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    add_store(browse)

    stuck = commands.add_parser(
        "stuck",
        help="list the stuck and failing Pods of a namespace",
        description="List the Pods of a namespace that are unscheduled (FailedScheduling and no binding), "
        "crashlooping (BackOff Warnings, failed probes), evicted, failed or not ready, with since when, "
        "for how long and every signal seen, the longest stuck first. --format json prints what "
        "GET /api/kelemetry/stuck answers.",
    )
    stuck.add_argument("--cluster", required=True, help="the cluster")
    stuck.add_argument("--namespace", required=True, help="the namespace")
    stuck.add_argument("--since", help="only Pods active in the last DURATION, e.g. 1h (default: all)")
    stuck.add_argument("--start", help="range start, RFC 3339")
    stuck.add_argument("--end", help="range end, RFC 3339 (default: now); durations run to it")
    stuck.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    add_store(stuck)
    aside = commands.add_parser(
        "quarantine",
        help="list, retry or purge the input the collector kept aside instead of losing it",
        description="The collector never drops input it acknowledged: an audit event, Kubernetes Event or "
        "watched object version that the pipeline raised on or the store refused is kept in the quarantine "
        "(in the inbox next to the store) with its reason. Without options: list it, oldest first (when, "
        "cluster, source, audit id, object, size, reason) with counts by reason. --retry feeds it through "
        "the pipeline again (after a fix; give the trace flags `serve` runs with), storing what it can and "
        "keeping the rest with its new reason; like `replay`, it may run beside `serve`. --purge deletes it.",
    )
    aside.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    aside.add_argument(
        "--limit",
        type=int,
        default=QUARANTINE_LIMIT,
        help=f"list at most this many inputs, oldest first (default {QUARANTINE_LIMIT}; counts cover all)",
    )
    aside.add_argument(
        "--retry", action="store_true", help="process the quarantined input again; exit 1 if some still fails"
    )
    aside.add_argument("--purge", action="store_true", help="delete the quarantined input and say how much")
    aside.add_argument(
        "--before",
        metavar="TIME",
        help="with --purge: only what was quarantined before TIME (RFC 3339, or a duration ago, e.g. 7d)",
    )
    aside.add_argument(
        "--queue",
        metavar="nats://HOST:PORT",
        help="scaled mode: the quarantine the workers keep in NATS JetStream instead of the store's; "
        "--retry sends it back to the workers (they set aside again what still fails)",
    )
    add_store(aside)
    add_trace(aside)
    return parser


def _trace_settings(args: argparse.Namespace) -> TraceSettings:
    excluded = args.exclude_resource
    if excluded is None:
        resources: tuple[str, ...] = DEFAULT_EXCLUDED_RESOURCES
    else:
        resources = tuple(r for r in excluded if r != "none")
    for rule in args.redact:
        try:
            RedactionRule.parse(rule)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if args.link_rules:
        from kelemetry.linker.systems.rules import load_rules

        try:
            load_rules(args.link_rules)  # refused now, in one line, rather than when the pipeline starts
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot use the link rules {args.link_rules}: {exc}") from None
    cache_bytes = parsed(times.parse_size, args.cache_size)
    if cache_bytes < 1024 * 1024:
        raise CliError(f"--cache-size {args.cache_size} is too small: use at least 1MiB")
    return TraceSettings(
        cache_bytes=cache_bytes,
        link_rules=args.link_rules,
        redact=tuple(args.redact),
        window_seconds=seconds(args.window),
        excluded_resources=resources,
        excluded_user_agents=DEFAULT_EXCLUDED_USER_AGENTS,
    )


def parse_clusters(specs: Sequence[str], default_name: str) -> tuple[ClusterSettings, ...]:
    """``--kubeconfig`` values: ``PATH`` (the cluster named --cluster) or ``NAME=PATH``, each with an
    optional ``#CONTEXT``. Names must be valid webhook path segments and given once."""
    found: list[ClusterSettings] = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if not sep or "/" in name or not name:
            name, rest = default_name, spec
        if not CLUSTER_NAME.fullmatch(name):
            raise CliError(
                f"invalid cluster name {name!r} in --kubeconfig {spec!r}: use letters, digits, '.', '_', '-'"
            )
        path, _, context = rest.partition("#")
        if not path:
            raise CliError(f"--kubeconfig {spec!r} names no file")
        found.append(ClusterSettings(name, path, context or None))
    names = [c.name for c in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CliError(
            f"cluster {', '.join(twice)} given twice in --kubeconfig (name each cluster: NAME=PATH)"
        )
    return tuple(found)


def _resolver(
    clusters: Sequence[ClusterSettings], *, required: bool = True
) -> tuple[KindResolver, frozenset[str]]:
    """A kind resolver filled by the API discovery of each cluster (built-in kinds without any), and
    the clusters whose discovery failed (retried later; only allowed when not ``required``)."""
    resolver = KindResolver()
    if not clusters:
        return resolver, frozenset()
    # Imported here so commands that need no cluster never pay for loading the kubernetes client.
    from kelemetry.kube import discovery

    failed = set()
    for cluster in clusters:
        try:
            resolver.update(discovery.discover(cluster.kubeconfig, cluster.context))
        except errors.KelemetryError as exc:
            if required:
                raise
            # The webhook must be up before the apiservers it serves: start anyway, discover later.
            logger.warning("cluster %s: %s; using built-in kinds until it answers", cluster.name, exc)
            failed.add(cluster.name)
    return resolver, frozenset(failed)


def tune_gc() -> None:
    """Keep the collector's pauses short: decoded audit batches are acyclic and die by reference
    counting, so frequent young collections only cost time, and full collections over the owner
    graph and modules (frozen here, after start-up) stalled the webhook for tens of ms."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _serve_scaled(args: argparse.Namespace) -> int:
    """One role of the scaled mode (``--queue`` with ``--role``)."""
    from kelemetry.queue import layout

    if not args.queue or not args.role:
        raise CliError("scaled mode needs both --queue nats://HOST:PORT and --role webhook|worker")
    problem = layout.check_url(args.queue)
    if problem:
        raise CliError(f"invalid --queue: {problem}")
    if not 1 <= args.partitions <= layout.MAX_PARTITIONS:
        raise CliError(f"--partitions must be between 1 and {layout.MAX_PARTITIONS}, not {args.partitions}")
    if args.queue_replicas not in (1, 3, 5):
        raise CliError(f"--queue-replicas must be 1, 3 or 5, not {args.queue_replicas}")
    lease = seconds(args.lease)
    if lease < 1:
        raise CliError(f"--lease {args.lease} is too short: use at least 1s")
    queue_settings = layout.QueueSettings(
        url=args.queue, partitions=args.partitions, replicas=args.queue_replicas, lease_seconds=lease
    )
    host, port = parse_listen(args.listen)
    if args.role == "webhook":
        from kelemetry.queue import webhook

        webhook_settings = WebhookSettings(
            default_cluster=args.cluster,
            max_body_bytes=parsed(times.parse_size, args.max_body),
            max_backlog_bytes=parsed(times.parse_size, args.max_backlog),
            min_free_bytes=0,
            max_clock_skew_seconds=_max_clock_skew(args.max_clock_skew),
            token=os.environ.get(args.token_env) or None,
        )
        from kelemetry import metrics
        from kelemetry.diff.redact import with_rules

        tls = tls_settings(args)
        replica = webhook.WebhookReplica(
            queue_settings, webhook_settings, with_rules(_trace_settings(args).redact), metrics.Registry()
        )
        _announce(args, webhook.banner(replica, host, port, tls, args.token_env))
        _run_server(webhook.create_app(replica), host, port, args.listen, tls)
        return 0
    from kelemetry.queue import worker

    if not args.otlp_endpoint:
        raise CliError(
            "--role worker needs --otlp-endpoint: in scaled mode the traces go to Jaeger over OTLP"
        )
    from kelemetry.export.otlp import create_exporter

    create_exporter(args.otlp_endpoint).shutdown()  # fail fast on a malformed endpoint
    worker_id = args.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    problem = worker.worker_id_problem(worker_id)
    if problem:
        raise CliError(problem)
    snapshot = seconds(args.snapshot_every)
    if snapshot < 1:
        raise CliError(f"--snapshot-every {args.snapshot_every} is too short: use at least 1s")
    settle = parsed(lambda t: times.parse_duration_us(t, what="--settle"), args.settle) / 1_000_000
    worker_settings = layout.WorkerSettings(
        worker_id=worker_id,
        state_dir=args.state_dir or tempfile.mkdtemp(prefix="kelemetry-worker-"),
        otlp_endpoint=args.otlp_endpoint,
        snapshot_seconds=snapshot,
        settle_seconds=settle,
    )
    return worker.serve(queue_settings, worker_settings, _trace_settings(args), host, port)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.queue or args.role:
        return _serve_scaled(args)
    from kelemetry import metrics
    from kelemetry.app import Collector, create_app
    from kelemetry.connection import parse_watch_target
    from kelemetry.export.otlp import create_exporter
    from kelemetry.receivers.requests import RequestMetrics

    host, port = parse_listen(args.listen)
    retention = parsed(times.parse_retention_us, args.retention)
    watched = DEFAULT_WATCHED if args.watch is None else tuple(w for w in args.watch if w != "none")
    for spec in watched:
        try:
            parse_watch_target(spec)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    clusters = parse_clusters(args.kubeconfig, args.cluster)
    aliases = []
    for spec in args.cluster_alias:
        theirs, sep, ours = spec.partition("=")
        if not sep or not theirs or not ours:
            raise CliError(f"invalid --cluster-alias {spec!r}: use THEIR_NAME=OUR_NAME")
        aliases.append((theirs, ours))
    for flag, bound in (
        ("--request-metrics-users", args.request_metrics_users),
        ("--request-metrics-resources", args.request_metrics_resources),
    ):
        if bound < 0:
            raise CliError(f"{flag} must be 0 or more, not {bound}")
    settings = ServeSettings(
        host=host,
        port=port,
        clusters=clusters,
        cluster_aliases=tuple(aliases),
        watch_resources=watched,
        watch_custom_resources=not (args.watch and "none" in args.watch)
        and not args.no_watch_custom_resources,
        change_grace_seconds=seconds(args.change_grace),
        store=StoreSettings(
            path=args.store,
            synchronous=SYNCHRONOUS[args.durability],
            retention_seconds=None if retention is None else retention // 1_000_000,
            max_bytes=parsed(times.parse_size, args.max_store_size) if args.max_store_size else None,
        ),
        trace=_trace_settings(args),
        webhook=WebhookSettings(
            default_cluster=args.cluster,
            max_body_bytes=parsed(times.parse_size, args.max_body),
            max_backlog_bytes=parsed(times.parse_size, args.max_backlog),
            min_free_bytes=parsed(times.parse_size, args.min_free_space),
            max_clock_skew_seconds=_max_clock_skew(args.max_clock_skew),
            token=os.environ.get(args.token_env) or None,
        ),
        otlp=OtlpSettings(endpoint=args.otlp_endpoint),
        public_query=args.public_query,
        request_metrics=RequestMetricsSettings(
            max_users=args.request_metrics_users, max_resources=args.request_metrics_resources
        ),
    )
    tls = tls_settings(args)
    if settings.otlp.endpoint:
        create_exporter(settings.otlp.endpoint).shutdown()  # fail fast on a malformed endpoint
    resolver, undiscovered = _resolver(clusters, required=False)
    # One registry for the process; the files replayed first count in its request metrics too.
    registry = metrics.Registry()
    requests = RequestMetrics(
        registry,
        max_users=settings.request_metrics.max_users,
        max_resources=settings.request_metrics.max_resources,
    )
    if args.replay:
        replays = parse_replays(args.replay, args.cluster)
        _replay_files(replays, args.store, settings.trace, resolver, quiet=True, requests=requests)
    try:
        collector = Collector(
            settings, resolver, undiscovered=undiscovered, registry=registry, requests=requests
        )
    except errors.KelemetryError as exc:
        raise CliError(str(exc)) from None
    app = create_app(collector, query.for_store(args.store, kinds=resolver))
    tune_gc()
    # The ingest worker is CPU-bound Python; a shorter GIL switch interval lets the webhook's
    # request threads answer the apiserver promptly while it works.
    sys.setswitchinterval(0.001)
    shown_host = f"[{host}]" if ":" in host else host
    scheme = "https" if tls else "http"
    banner = [
        f"kelemetry {__version__} listening on {scheme}://{shown_host}:{port}",
        f"  web UI:        {scheme}://{shown_host}:{port}/",
        f"  audit webhook: {scheme}://{shown_host}:{port}/audit/<cluster>",
        f"  store:         {Path(args.store).resolve()}",
    ]
    if settings.otlp.endpoint:
        banner.append(f"  OTLP export:   {settings.otlp.endpoint}")
    if settings.webhook.token:
        guarded = "the webhook and /metrics" if args.public_query else "everything but /healthz and /readyz"
        banner.append(f"  token:         required on {guarded} (${args.token_env})")
    _announce(args, banner)
    _run_server(app, host, port, args.listen, tls)
    return 0


def tls_settings(args: argparse.Namespace) -> TlsSettings | None:
    """--tls-cert and --tls-key, both or neither, checked now: a certificate that does not match its
    key, or a file that is not PEM, is a one-line error before anything starts."""
    import ssl

    if not args.tls_cert and not args.tls_key:
        return None
    if not args.tls_cert or not args.tls_key:
        raise CliError("--tls-cert and --tls-key go together: give both")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise CliError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise CliError(f"--tls-key {args.tls_key} is not the key of --tls-cert {args.tls_cert}") from None
        raise CliError(
            f"cannot use --tls-cert {args.tls_cert} with --tls-key {args.tls_key}: "
            f"{exc.reason or exc} (both must be PEM files)"
        ) from None
    return TlsSettings(cert_file=args.tls_cert, key_file=args.tls_key)


def _run_server(app: FastAPI, host: str, port: int, listen: str, tls: TlsSettings | None = None) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        # uvicorn's records go to the handler `--log-format` chose, not to a format of its own.
        log_config=None,
        access_log=False,
        ssl_certfile=tls.cert_file if tls else None,
        ssl_keyfile=tls.key_file if tls else None,
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except OSError as exc:
        raise CliError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
    if not server.started:
        raise CliError(f"cannot listen on {listen} (is the port in use?)")


def cmd_frontend(args: argparse.Namespace) -> int:
    from frontend.access import AccessPolicy
    from frontend.jaegerstore import JaegerBackend
    from jaeger.client import JaegerClient, JaegerError
    from kelemetry.app import build_app

    host, port = parse_listen(args.listen)
    tls = tls_settings(args)
    policy = AccessPolicy(token=os.environ.get(args.token_env) or None, public_query=args.public_query)
    if args.jaeger_url:
        try:
            client = JaegerClient(args.jaeger_url)
        except JaegerError as exc:
            raise CliError(str(exc)) from None
        backend = JaegerBackend(client, lookback_us=seconds(args.lookback) * 1_000_000)
        views = ViewStore(args.views or Path(DEFAULT_STORE).with_name("views.db"))
        service = query.QueryService(backend, views)
        source = f"Jaeger at {args.jaeger_url}"
    else:
        service = query.for_store(args.store, args.views)
        source = f"store {Path(args.store).resolve()}"
    # The app's lifespan closes the service.
    app = build_app(query=service, policy=policy)
    tune_gc()  # a big view allocates ~100k objects; default GC thresholds would rescan them many times
    shown_host = f"[{host}]" if ":" in host else host
    scheme = "https" if tls else "http"
    _announce(args, [f"kelemetry {__version__} frontend on {scheme}://{shown_host}:{port}/ reading {source}"])
    _run_server(app, host, port, args.listen, tls)
    return 0


class _Progress:
    """Progress of a replay on stderr: a rewriting line on a terminal, a line every 5 s otherwise."""

    def __init__(self, stream: IO[str], enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last = 0.0
        self.events = 0
        self.file = ""
        self.open_line = False

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        interval = 0.5 if self.tty else 5.0
        if now - self.last < interval and done < total:
            return
        self.last = now
        rate = self.events / max(now - self.started, 1e-6)
        percent = 100.0 * done / total if total else 100.0
        line = f"replay {self.file}: {percent:5.1f}%  {self.events} events  {rate:,.0f} events/s"
        if self.tty:
            self.stream.write("\r" + line)
            self.open_line = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False


def parse_replays(specs: Sequence[str], default_cluster: str) -> list[tuple[str, str]]:
    """``--replay`` values of ``serve``: ``FILE`` (the cluster named --cluster) or ``CLUSTER=FILE``, as
    (cluster, file) pairs in the order given; every file or directory must exist (``-``: stdin)."""
    found: list[tuple[str, str]] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or "/" in name or not name or os.path.exists(spec):
            name, path = default_cluster, spec
        if not CLUSTER_NAME.fullmatch(name):
            raise CliError(
                f"invalid cluster name {name!r} in --replay {spec!r}: use letters, digits, '.', '_', '-'"
            )
        if path != STDIN and not os.path.exists(path):
            raise CliError(f"cannot read {path}: no such file")
        found.append((name, path))
    if sum(1 for _, path in found if path == STDIN) > 1:
        raise CliError("standard input ('-') can be replayed once")
    return found


class ReplayFailed(errors.KelemetryError):
    """The inputs held nothing to replay, or the export after it gave up (exit code 1)."""


def _shown(path: str) -> str:
    return "standard input" if path == STDIN else path


def _check_input(path: str) -> None:
    """Refused before the store is opened: a missing input, an empty file or directory."""
    if path == STDIN:
        return
    if not os.path.exists(path):
        raise CliError(f"cannot read {path}: no such file")
    if os.path.isdir(path):
        if not expand(path):
            raise ReplayFailed(f"{path} is an empty directory: nothing to replay")
    elif os.path.getsize(path) == 0:
        raise ReplayFailed(f"{path} is empty: nothing to replay")


def _nothing_in(path: str, stats: FileStats) -> str:
    if stats.bad_lines:
        records = "record" if stats.bad_lines == 1 else "records"
        return (
            f"{_shown(path)} holds no audit events or Kubernetes Events ({stats.bad_lines} unreadable "
            f"{records}, the first at {stats.first_bad}: {stats.hint})"
        )
    if stats.lines == 0 or not stats.events:
        return f"{_shown(path)} is empty: nothing to replay"
    return f"{_shown(path)} holds no audit events or Kubernetes Events"


def _remove_store(path: Path, created_dir: bool) -> None:
    """A failed replay that wrote nothing leaves no store behind (nor the folder it made for it)."""
    for name in (path.name, path.name + "-wal", path.name + "-shm", path.name + "-journal"):
        path.with_name(name).unlink(missing_ok=True)
    if created_dir:
        try:
            path.parent.rmdir()
        except OSError:
            pass  # something else is in it now


def _replay_files(
    files: Sequence[tuple[str, str]],
    store_path: str,
    trace: TraceSettings,
    resolver: KindResolver,
    *,
    quiet: bool,
    requests: RequestMetrics | None = None,
) -> int:
    """Replay each input (a file, a directory of files, ``-``) into the store; returns the spans
    written. Unreadable records are summarized in one line per file."""
    for _cluster, path in files:
        _check_input(path)
    tune_gc()
    store_file = Path(store_path)
    created_dir = not store_file.parent.exists()
    existed = store_file.exists()
    store = SpanStore(store_path)
    pipeline = pipelines.build(store, trace, resolver, requests=requests)
    converter = pipeline.converter
    progress = _Progress(sys.stderr, not quiet)
    totals = FileStats()
    spans = 0
    kube_events = 0
    count = 0
    started = time.monotonic()
    try:
        for cluster, spec in files:
            members = expand(spec)
            in_directory = members != [spec]
            found_any = False
            for path in members:
                count += 1
                stats = FileStats()
                progress.file = _shown(path)
                seen = 0
                for batch in read_input(path, stats, progress.update):
                    if batch.audit:
                        spans += pipeline.process_audit(batch.audit, cluster).spans
                    if batch.kube_events:
                        result = pipeline.process_kube_events(batch.kube_events, cluster)
                        spans += result.spans
                        kube_events += result.kept
                    progress.events += stats.events - seen
                    seen = stats.events
                if stats.events == 0 and not in_directory:
                    raise ReplayFailed(_nothing_in(path, stats))
                found_any = found_any or stats.events > 0
                summary = stats.summary(_shown(path))
                if stats.events == 0:
                    summary = _nothing_in(path, stats) + "; skipped"
                if summary:
                    progress.finish()
                    print(f"kelemetry: warning: {summary}", file=sys.stderr)
                totals.lines += stats.lines
                totals.events += stats.events
                totals.bad_lines += stats.bad_lines
            if in_directory and not found_any:
                raise ReplayFailed(f"{spec} holds no audit events or Kubernetes Events in any of its files")
        progress.finish()
    except BaseException:
        store.close()
        if not existed and spans == 0:
            _remove_store(store_file, created_dir)
        raise
    store.close()
    took = time.monotonic() - started
    counts = converter.stats.counts
    dropped = ", ".join(f"{k.removeprefix('dropped_')} {v}" for k, v in sorted(counts.items()) if k != "kept")
    print(
        f"replayed {totals.events} events from {count} file(s) in {took:.1f}s: "
        f"{counts['kept']} audit events and {kube_events} Kubernetes Events traced, {spans} spans written"
        + (f"; skipped: {dropped}" if dropped else "")
        + (f"; {totals.bad_lines} unreadable records" if totals.bad_lines else ""),
        file=sys.stderr,
    )
    if pipeline.failed_events:
        print(f"kelemetry: warning: {pipeline.failed_events} events failed (see log)", file=sys.stderr)
    return spans


def _export_reason(message: str) -> str:
    """The gist of an export failure: HTTP and gRPC clients wrap a refused connection in a paragraph."""
    lowered = message.lower()
    for gist in ("connection refused", "timed out", "name or service not known", "certificate verify failed"):
        if gist in lowered:
            return gist
    text = _one_line(Exception(message))
    return text if len(text) <= 200 else text[:199] + "…"


def cmd_replay(args: argparse.Namespace) -> int:
    trace = _trace_settings(args)
    for path in args.files:
        _check_input(path)
    if args.files.count(STDIN) > 1:
        raise CliError("standard input ('-') can be replayed once")
    clusters = parse_clusters(args.kubeconfig, args.cluster)
    if len(clusters) > 1:
        raise CliError("replay takes one --kubeconfig (the cluster the files come from)")
    resolver, _ = _resolver(clusters)
    files = [(args.cluster, path) for path in args.files]
    spans = _replay_files(files, args.store, trace, resolver, quiet=args.quiet)
    if args.otlp_endpoint:
        from kelemetry.export.otlp import OtlpFollower

        follower = OtlpFollower(args.store, args.otlp_endpoint)
        started = time.monotonic()
        # The outcome is told in one line below; a warning per failed attempt would only repeat it.
        export_log = logging.getLogger("kelemetry.export.otlp")
        level = export_log.level
        if not logger.isEnabledFor(logging.DEBUG):
            export_log.setLevel(logging.ERROR)
        try:
            done = follower.drain(timeout_seconds=OTLP_REPLAY_SECONDS, max_failures=OTLP_REPLAY_ATTEMPTS)
        finally:
            export_log.setLevel(level)
            follower.exporter.shutdown()
        if not done:
            why = f" ({_export_reason(follower.last_error)})" if follower.last_error else ""
            raise ReplayFailed(
                f"OTLP export to {args.otlp_endpoint} gave up after {follower.failures} failed attempts in "
                f"{time.monotonic() - started:.1f}s{why}: {spans} spans written to {args.store}, "
                f"{follower.exported} exported; rerun the command to export the rest"
            )
        if not args.quiet:
            print(f"exported {follower.exported} spans to {args.otlp_endpoint}", file=sys.stderr)
    return 0


def cmd_retain(args: argparse.Namespace) -> int:
    retention = parsed(times.parse_retention_us, args.retention)
    max_bytes = parsed(times.parse_size, args.max_store_size) if args.max_store_size else None
    # The writer creates a missing file; a typo in --store must not leave an empty store behind.
    if not Path(args.store).is_file():
        raise CliError(f"no store at {args.store}")
    store = SpanStore(args.store)
    try:
        report = store.apply_retention(
            max_age_us=retention,
            max_bytes=max_bytes,
            dry_run=args.dry_run,
        )
    finally:
        store.close()
    print("\n".join(report.lines()))
    return 0


def _incarnations_note(found: Found) -> str:
    """Lines naming the other objects that had the looked-up name, and how to see each."""
    lines = []
    for row in found.incarnations:
        seen = " – ".join(text.format_time(t) for t in (row.first_us, row.last_us) if t is not None)
        lines.append(
            f"note: {row.key.display} was also the name of uid {row.uid or '(unknown)'}"
            + (f" (active {seen})" if seen else "")
            + (f"; add --uid {row.uid} to dump it" if row.uid else "")
        )
    return "".join(line + "\n" for line in lines)


def cmd_dump(args: argparse.Namespace) -> int:
    start_us = end_us = None
    if args.since and (args.start or args.end):
        raise CliError("use either --since or --start/--end, not both")
    if args.since:
        end_us = time.time_ns() // 1000
        start_us = max(end_us - seconds(args.since) * 1_000_000, 0)
    if args.start:
        start_us = parsed(times.parse_moment, args.start)
    if args.end:
        end_us = parsed(times.parse_moment, args.end)
    if start_us is not None and end_us is not None and start_us > end_us:
        raise CliError("--start is after --end")
    if args.format == "parquet" and not args.output and sys.stdout.isatty():
        raise CliError("parquet is binary: give --output FILE")
    lookup = ObjectQuery(
        cluster=args.cluster or "",
        group=args.group,
        resource=args.resource,
        namespace=args.namespace,
        name=args.name,
        start_us=start_us,
        end_us=end_us,
        uid=args.uid or None,
    )
    if args.mode and args.format not in ("tree", "json"):
        raise CliError(
            "--mode applies to the tree and json formats (jsonl and parquet have one row per span)"
        )
    if args.depth is not None and not 1 <= args.depth <= modes.MAX_DEPTH:
        raise CliError(f"--depth must be between 1 and {modes.MAX_DEPTH}")
    # Without options: the classic dump, the tree mode of the whole hierarchy.
    depth = args.depth or (modes.DEFAULT_DEPTH if args.scope else modes.DUMP.depth)
    display = modes.build(args.mode or modes.DUMP.base, args.scope or modes.DUMP.scope, depth)
    # The API's query service over the store, its views in memory: a dump saves nothing.
    service = query.for_store(args.store, keep_views=False)
    try:
        found = service.lookup_one(lookup, display)
        view = service.view(found.view_id)
    finally:
        service.close()
    note = _incarnations_note(found)
    if note and args.format != "tree":
        print(note, file=sys.stderr, end="")
    if args.format == "parquet":
        dumping.write_parquet(view, args.output or sys.stdout.buffer)
        return 0
    _write_output(args.output, _render(view, args.format, classic=not args.mode, note=note, full=args.full))
    return 0


def _since_or_range(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """The range of `--since DURATION` (up to now) or `--start/--end` (either may be open)."""
    if args.since and (args.start or args.end):
        raise CliError("use either --since or --start/--end, not both")
    start_us = end_us = None
    if args.since:
        end_us = time.time_ns() // 1000
        start_us = max(end_us - seconds(args.since) * 1_000_000, 0)
    if args.start:
        start_us = parsed(times.parse_moment, args.start)
    if args.end:
        end_us = parsed(times.parse_moment, args.end)
    return start_us, end_us


def cmd_changes(args: argparse.Namespace) -> int:
    start_us, end_us = _since_or_range(args)
    resource, group = args.resource or None, args.group
    request = browsing.ChangeQuery(
        cluster=args.cluster or None,
        group=group,
        resource=resource,
        namespace=args.namespace or None,
        user=args.user or None,
        verb=args.verb or None,
        errors_only=args.errors,
        start_us=start_us,
        end_us=end_us,
        limit=args.limit,
        cursor=browsing.Cursor.parse(args.cursor) if args.cursor else None,
    )
    service = query.for_store(args.store, keep_views=False)
    try:
        answer = service.changes(request)
    finally:
        service.close()
    if args.format == "json":
        _write_output(None, orjson.dumps(answer) + b"\n")
        return 0
    lines = [browsing.line_of(row) for row in answer["data"]]
    _write_output(None, "".join(line + "\n" for line in lines).encode())
    if not lines:
        print("kelemetry: nothing matched in the store", file=sys.stderr)
    if answer["next"]:
        print(f"kelemetry: more: add --cursor {answer['next']}", file=sys.stderr)
    return 0


# -- stuck: the stuck and failing Pods of a namespace


def cmd_stuck(args: argparse.Namespace) -> int:
    start_us, end_us = _since_or_range(args)
    service = query.for_store(args.store, keep_views=False)
    try:
        answer = service.stuck(args.cluster, args.namespace, start_us, end_us)
    finally:
        service.close()
    if args.format == "json":
        _write_output(None, orjson.dumps(answer.to_json()) + b"\n")
        return 0
    _write_output(None, "".join(item.text() + "\n" for item in answer.pods).encode())
    where = f"namespace {args.namespace} (cluster {args.cluster})"
    if not answer.pods:
        print(
            f"kelemetry: no stuck or failing Pods among {answer.scanned} Pod(s) in {where}", file=sys.stderr
        )
    if answer.truncated:
        print(
            f"kelemetry: only the {answer.scanned} most recently active Pods of {where} were read; "
            "narrow the range with --since or --start/--end",
            file=sys.stderr,
        )
    return 0


# -- get: the object at a moment


def cmd_get(args: argparse.Namespace) -> int:
    at_us = parsed(times.parse_moment, args.at) if args.at else None
    lookup = ObjectQuery(
        cluster=args.cluster,
        group=args.group,
        resource=args.resource,
        namespace=args.namespace,
        name=args.name,
        uid=args.uid or None,
    )
    if args.side_by_side and not (args.diff_to or args.diff_to_rv):
        raise CliError("--side-by-side needs --diff-to or --diff-to-rv")
    service = query.for_store(args.store, keep_views=False)
    try:
        backend = service.backend
        found = objectat.history(backend, service.normalize(lookup), at_us)
        if args.list:
            _write_output(None, _revision_list(found, args.format).encode())
            return 0
        shown = objectat.manifest(backend, found, objectat.Moment(at_us, args.rv))
        if args.diff_to or args.diff_to_rv:
            to_us = parsed(times.parse_moment, args.diff_to) if args.diff_to else None
            other = objectat.manifest(backend, found, objectat.Moment(to_us, args.diff_to_rv))
            _write_output(None, _diff_text(shown, other, args).encode())
            return 0
    finally:
        service.close()
    said = [f"{found.what}: {revisions.describe(shown.version)}", *shown.notes]
    if args.format == "json":
        # JSON has no comments: what the manifest is goes to stderr, the manifest alone to stdout.
        print("".join(f"note: {line}\n" for line in said), file=sys.stderr, end="")
        _write_output(None, orjson.dumps(shown.body, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        head = "".join(f"# {line}\n" for line in said)
        _write_output(None, (head + revisions.to_yaml(shown.body)).encode())
    return 0


# -- explain and blame: causal answers


def _answer_service(args: argparse.Namespace) -> query.QueryService:
    """The query service over the store, or over Jaeger with --jaeger-url; views kept in memory."""
    if not args.jaeger_url:
        return query.for_store(args.store, keep_views=False)
    from frontend.jaegerstore import JaegerBackend
    from jaeger.client import JaegerClient, JaegerError

    try:
        client = JaegerClient(args.jaeger_url)
    except JaegerError as exc:
        raise CliError(str(exc)) from None
    backend = JaegerBackend(client, lookback_us=seconds(args.lookback) * 1_000_000)
    return query.QueryService(backend, ViewStore(None))


def _answer_query(args: argparse.Namespace) -> ObjectQuery:
    return ObjectQuery(
        cluster=args.cluster or "",
        group=args.group,
        resource=args.resource,
        namespace=args.namespace,
        name=args.name,
        uid=args.uid or None,
    )


def cmd_explain(args: argparse.Namespace) -> int:
    at_us = parsed(times.parse_moment, args.at) if args.at else None
    service = _answer_service(args)
    try:
        answer = service.explain(_answer_query(args), at_us, chain_only=args.chain_only)
    finally:
        service.close()
    if args.format == "json":
        _write_output(None, orjson.dumps({"data": [answer.to_json()]}, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        _write_output(None, answer.text().encode())
    return 0


def cmd_blame(args: argparse.Namespace) -> int:
    at_us = parsed(times.parse_moment, args.at) if args.at else None
    service = _answer_service(args)
    try:
        answer = service.blame(_answer_query(args), args.field, at_us)
    finally:
        service.close()
    if args.format == "json":
        _write_output(None, orjson.dumps({"data": [answer.to_json()]}, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        _write_output(None, (answer.text() + "\n").encode())
    return 0


def _revision_list(found: objectat.History, output_format: str) -> str:
    if output_format == "json":
        rows = [objectat.version_json(v) for v in found.versions]
        return (
            orjson.dumps({"object": found.what, "revisions": rows}, option=orjson.OPT_INDENT_2).decode()
            + "\n"
        )
    lines = [f"{found.what}: {len(found.versions)} revision(s)"]
    for version in found.versions:
        mark = "" if version.complete else "  (reconstructed from a partial answer)"
        lines.append(f"  {revisions.describe(version)}{mark}")
    return "\n".join(lines) + "\n"


def _diff_text(left: revisions.Manifest, right: revisions.Manifest, args: argparse.Namespace) -> str:
    left_text = revisions.to_yaml(left.body)
    right_text = revisions.to_yaml(right.body)
    left_label = revisions.describe(left.version)
    right_label = revisions.describe(right.version)
    if left_text == right_text:
        return f"no difference between {left_label} and {right_label}\n"
    if not args.side_by_side:
        return revisions.unified(left_text, right_text, left_label, right_label) + "\n"
    width = args.width or shutil.get_terminal_size((160, 40)).columns
    rows = revisions.changed_only(revisions.side_by_side(left_text, right_text))
    head = f"{left_label[: width // 2 - 2]:<{max(20, (width - 3) // 2)}}   {right_label}"
    return head + "\n" + revisions.render_columns(rows, width) + "\n"


def _render(view: View, output_format: str, *, classic: bool, note: str, full: bool = False) -> bytes:
    if output_format == "json":
        # Byte for byte what GET /api/traces/{id} answers for the view.
        return jaegerjson.traces([view])
    if output_format == "jsonl":
        return dumping.render_jsonl(view)
    layout = text.render_tree if classic else text.render_outline
    return (layout(view, full=full) + note).encode()


def _write_output(output: str | None, data: bytes) -> None:
    if output:
        try:
            Path(output).write_bytes(data)
        except OSError as exc:
            raise CliError(f"cannot write {output}: {exc.strerror or exc}") from exc
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _one_line(exc: Exception) -> str:
    # Some messages quote a parser's own (YAML points at the bad column over several lines).
    return " ".join(str(exc).split())


def cmd_quarantine(args: argparse.Namespace) -> int:
    from kelemetry.ingest import Ingestor
    from kelemetry.receivers import quarantined
    from kelemetry.store.inbox import Inbox, inbox_path

    if args.before is not None and not args.purge:
        raise CliError("--before only goes with --purge")
    if args.purge and args.retry:
        raise CliError("--purge and --retry cannot be combined: retry first, then purge what still fails")
    if args.limit < 1:
        raise CliError(f"--limit must be at least 1, not {args.limit}")
    before_us = _before(args.before) if args.before is not None else None
    if args.queue:
        return _queue_quarantine(args, before_us)
    if not Path(args.store).is_file():
        raise errors.NotFound(f"no store at {args.store}")
    path = inbox_path(args.store)
    if not path.is_file():
        # Only `serve` quarantines (it keeps the inbox); a store written by `replay` alone has none.
        if args.retry:
            return _print_retried(args.format, 0, [])
        if args.purge:
            return _print_purged(args.format, 0, 0, before_us)
        return _print_quarantine(args.format, 0, 0, {}, [])
    inbox = Inbox(path)
    try:
        if args.purge:
            purged = inbox.purge(before_us)
            return _print_purged(args.format, purged, inbox.quarantine_summary()[0], before_us)
        if args.retry:
            store = SpanStore(args.store)
            try:
                resolver, _ = _resolver(parse_clusters(args.kubeconfig, "default"))
                pipeline = pipelines.build(store, _trace_settings(args), resolver)
                retried = Ingestor(inbox, pipeline, max_backlog_bytes=0).retry_quarantined()
            finally:
                store.close()
            return _print_retried(args.format, retried.stored, retried.failed)
        total, size = inbox.quarantine_summary()
        by_reason = Counter(quarantined.reason_kind(reason) for reason in inbox.quarantine_reasons())
        items = []
        for row in inbox.quarantined(args.limit):
            described = quarantined.describe(row.source, row.body)
            items.append(
                {
                    "id": row.row_id,
                    "quarantined": _utc(row.at_us),
                    "cluster": row.cluster,
                    "source": row.source,
                    "audit_id": described.audit_id,
                    "object": described.object,
                    "size": len(row.body),
                    "reason": row.reason,
                }
            )
        return _print_quarantine(args.format, total, size, dict(by_reason.most_common()), items)
    finally:
        inbox.close()


def _queue_quarantine(args: argparse.Namespace, before_us: int | None) -> int:
    """`kelemetry quarantine --queue`: the scaled mode's quarantine (a JetStream stream)."""
    import asyncio

    from kelemetry.queue import jetstream, layout
    from kelemetry.receivers import quarantined

    problem = layout.check_url(args.queue)
    if problem:
        raise CliError(f"invalid --queue: {problem}")

    async def run() -> int:
        settings = layout.QueueSettings(url=args.queue)
        stream = await jetstream.JetStream.connect(settings, "kelemetry-quarantine", declare=False)
        try:
            total, size = await stream.quarantine_size()
            if args.purge and before_us is None:
                await stream.purge_quarantine()
                return _print_purged(args.format, total, 0, None)
            rows = await stream.quarantined(total if (args.purge or args.retry) else args.limit)
            if args.purge:
                old = [row for row in rows if row.time_us < (before_us or 0)]
                for row in old:
                    await stream.unquarantine(row.seq)
                return _print_purged(args.format, len(old), total - len(old), before_us)
            if args.retry:
                now = str(time.time_ns() // 1000)
                for row in rows:
                    cluster = row.headers.get(layout.HEADER_CLUSTER, "default")
                    partition = int(row.subject.rpartition(".")[2] or 0)
                    await stream.publish(
                        layout.audit_subject(partition),
                        row.data,
                        msg_id=f"kelemetry-retry-{row.seq}",
                        headers={layout.HEADER_CLUSTER: cluster, layout.HEADER_RECEIVED: now},
                    )
                    await stream.unquarantine(row.seq)
                return _print_resent(args.format, len(rows))
            by_reason: Counter[str] = Counter()
            items = []
            for row in rows:
                reason = row.headers.get(layout.HEADER_REASON, "")
                source = row.headers.get(layout.HEADER_SOURCE, "audit")
                by_reason[quarantined.reason_kind(reason)] += 1
                described = quarantined.describe(source, row.data)
                items.append(
                    {
                        "id": row.seq,
                        "quarantined": _utc(row.time_us),
                        "cluster": row.headers.get(layout.HEADER_CLUSTER, ""),
                        "source": source,
                        "audit_id": described.audit_id,
                        "object": described.object,
                        "size": len(row.data),
                        "reason": reason,
                    }
                )
            return _print_quarantine(args.format, total, size, dict(by_reason.most_common()), items)
        finally:
            await stream.close()

    try:
        return asyncio.run(run())
    except errors.QueueError as exc:
        raise CliError(str(exc)) from None


def _print_resent(output_format: str, resent: int) -> int:
    if output_format == "json":
        print(orjson.dumps({"resent": resent}).decode())
    else:
        print(f"sent {_inputs(resent)} back to the workers; what still fails is set aside again")
    return 0


def _before(text: str) -> int:
    """--before: a moment, or a duration that long ago."""
    try:
        return times.parse_moment(text, what="--before")
    except ValueError as exc:
        try:
            return times.now_us() - times.parse_duration_us(text)
        except ValueError:
            raise CliError(f"{exc}, or a duration ago such as 7d") from None


def _utc(at_us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at_us // 1_000_000))


def _inputs(count: int) -> str:
    return f"{count} quarantined input{'' if count == 1 else 's'}"


def _print_quarantine(
    output_format: str, total: int, size: int, by_reason: dict[str, int], items: list[dict[str, object]]
) -> int:
    if output_format == "json":
        answer = {"total": total, "bytes": size, "by_reason": by_reason, "items": items}
        print(orjson.dumps(answer).decode())
        return 0
    if not total:
        print("nothing quarantined")
        return 0
    lines = [f"{_inputs(total)} ({size} bytes)", "by reason:"]
    lines += [f"  {count}  {reason}" for reason, count in by_reason.items()]
    header = ("QUARANTINED", "CLUSTER", "SOURCE", "AUDIT ID", "OBJECT", "SIZE")
    rows = [
        tuple(str(item[k]) for k in ("quarantined", "cluster", "source", "audit_id", "object", "size"))
        for item in items
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines.append("")
    for row, item in zip([header, *rows], [None, *items], strict=True):
        reason = "REASON" if item is None else str(item["reason"])
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + "  " + reason
        )
    if len(items) < total:
        lines.append(f"(showing the first {len(items)} of {total} (--limit))")
    lines.append("kelemetry quarantine --retry processes them again after a fix; --purge deletes them")
    print("\n".join(lines))
    return 0


def _print_purged(output_format: str, purged: int, left: int, before_us: int | None) -> int:
    if output_format == "json":
        print(orjson.dumps({"purged": purged, "left": left}).decode())
    else:
        since = "" if before_us is None else f" from before {_utc(before_us)}"
        print(f"purged {_inputs(purged)}{since}; {left} left")
    return 0


def _print_retried(output_format: str, stored: int, failed: list[tuple[int, str]]) -> int:
    if output_format == "json":
        answer = {"stored": stored, "failed": [{"id": row_id, "reason": reason} for row_id, reason in failed]}
        print(orjson.dumps(answer).decode())
    else:
        print(f"retried {_inputs(stored + len(failed))}: {stored} stored, {len(failed)} still quarantined")
        for row_id, reason in failed:
            print(f"  #{row_id}: {reason}")
    return EXIT_FAILURE if failed else 0


COMMANDS = {
    "serve": cmd_serve,
    "replay": cmd_replay,
    "retain": cmd_retain,
    "dump": cmd_dump,
    "get": cmd_get,
    "frontend": cmd_frontend,
    "changes": cmd_changes,
    "explain": cmd_explain,
    "blame": cmd_blame,
    "stuck": cmd_stuck,
    "quarantine": cmd_quarantine,
}


def _announce(args: argparse.Namespace, lines: list[str]) -> None:
    """What a server says on start: lines for a person, or log records where logs are JSON (a log
    pipeline reading stderr then sees nothing but JSON lines)."""
    if args.log_format == "json":
        for line in lines:
            logger.info("%s", " ".join(line.split()))
    else:
        print("".join(f"{line}\n" for line in lines), file=sys.stderr, end="")


def _fail(args: argparse.Namespace, message: str) -> None:
    if args.log_format == "json":
        logger.error("%s", message)
    else:
        print(f"kelemetry: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except errors.NotFound as exc:
        _fail(args, _one_line(exc))
        return EXIT_FAILURE
    except errors.KelemetryError as exc:
        _fail(args, _one_line(exc))
        return EXIT_USAGE if isinstance(exc, CliError | errors.InputError) else EXIT_FAILURE
    except KeyboardInterrupt:
        print("kelemetry: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `kelemetry dump | head` closes the pipe early; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
