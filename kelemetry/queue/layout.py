"""What scaled mode keeps in JetStream, and which partition an audit event belongs to.

Everything one object hierarchy needs must reach one worker, in order. Owner references never
cross a namespace (a namespaced object is owned by objects of its own namespace or by cluster-scoped
ones), and federation systems propagate an object into the *same* namespace of every member
cluster. So a namespaced object's partition is chosen by its namespace alone — the same in every
cluster, which keeps a federated object and its member copies on one worker — and a cluster-scoped
object's by its resource and name (Nodes, Namespaces, ClusterRoles spread over all partitions
instead of piling onto one). The rare hierarchy that does cross partitions (a mirror Pod owned by
its Node) still lands in one trace: trace and span ids are derived from keys and windows, not from
which worker wrote them.

Names (all fixed, so every replica agrees without configuration beyond the partition count):

- stream ``KELEMETRY_AUDIT``, subjects ``kelemetry.audit.<partition>``: scrubbed audit events, one
  message per (webhook batch, partition, chunk); ``Nats-Msg-Id`` makes a re-sent batch a duplicate
  JetStream drops;
- stream ``KELEMETRY_QUARANTINE``, subjects ``kelemetry.quarantine.<partition>``: what a worker could
  not process, with the reason, kept for inspection;
- key-value bucket ``KELEMETRY_LEASES`` (entries expire after the lease time): ``member.<worker>``
  while a worker lives, ``lease.<partition>`` naming the worker that owns a partition;
- key-value bucket ``KELEMETRY_PROGRESS``: ``part.<partition>``, the last stream sequence whose
  spans were exported and the last snapshot's sequence; written with compare-and-set by the owner,
  which fences a worker that lost its lease;
- object store ``KELEMETRY_STATE``: ``part-<partition>``, the partition's snapshot (working store
  and the pipeline's memory) at a stream sequence, so a worker that takes a partition over starts
  from it instead of from nothing.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from urllib.parse import urlparse

AUDIT_STREAM = "KELEMETRY_AUDIT"
AUDIT_SUBJECT = "kelemetry.audit"
QUARANTINE_STREAM = "KELEMETRY_QUARANTINE"
QUARANTINE_SUBJECT = "kelemetry.quarantine"
LEASES_BUCKET = "KELEMETRY_LEASES"
PROGRESS_BUCKET = "KELEMETRY_PROGRESS"
STATE_STORE = "KELEMETRY_STATE"

HEADER_CLUSTER = "Kelemetry-Cluster"
HEADER_RECEIVED = "Kelemetry-Received-Us"
HEADER_REASON = "Kelemetry-Reason"
HEADER_SOURCE = "Kelemetry-Source"

DEFAULT_PARTITIONS = 16
MAX_PARTITIONS = 1024
DEFAULT_LEASE_SECONDS = 10.0
DEFAULT_SETTLE_SECONDS = 15.0
"""Longer than kube-apiserver waits before it first retries a refused webhook batch (10s)."""
DEFAULT_DUPLICATE_WINDOW_SECONDS = 600.0
"""How long JetStream remembers a message id: longer than kube-apiserver keeps retrying a batch."""


def audit_subject(partition: int) -> str:
    return f"{AUDIT_SUBJECT}.{partition}"


def quarantine_subject(partition: int) -> str:
    return f"{QUARANTINE_SUBJECT}.{partition}"


def lease_key(partition: int) -> str:
    return f"lease.{partition}"


def member_key(worker: str) -> str:
    return f"member.{worker}"


def progress_key(partition: int) -> str:
    return f"part.{partition}"


def state_name(partition: int) -> str:
    return f"part-{partition}"


def partition_of(namespace: str, resource: str, name: str, partitions: int) -> int:
    """The partition of an object: by namespace when namespaced, by resource and name when not.
    The cluster is left out on purpose (see the module's docstring)."""
    if namespace:
        text = "ns/" + namespace
    else:
        text = "cs/" + resource + "/" + name
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % partitions


@dataclass(frozen=True, slots=True)
class QueueSettings:
    url: str
    """The NATS server(s): ``nats://HOST:PORT``, comma-separated for a cluster."""
    partitions: int = DEFAULT_PARTITIONS
    """Partitions of the audit stream; every replica must agree (the stream's subjects use them). More
    partitions than workers lets work move in small pieces when a worker joins or leaves."""
    replicas: int = 1
    """JetStream replicas of the streams and buckets (1 on a single server, 3 on a NATS cluster)."""
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    """How long a dead worker's partitions stay unowned before another worker takes them."""
    max_stream_bytes: int = 8 * 1024 * 1024 * 1024
    """The audit stream's size limit; past it publishing is refused and the webhook answers 429."""

    def servers(self) -> list[str]:
        return [part.strip() for part in self.url.split(",") if part.strip()]


def check_url(url: str) -> str | None:
    """Why ``url`` is not a NATS address we can use, or None."""
    for part in url.split(","):
        part = part.strip()
        parsed = urlparse(part)
        if parsed.scheme not in ("nats", "tls") or not parsed.hostname:
            return f"{part!r} is not a NATS address: use nats://HOST:PORT"
        try:
            parsed.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            return f"{part!r} has an invalid port"
    return None


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    worker_id: str
    """This worker's name in leases and logs (default: host name and process id); unique per replica."""
    state_dir: str
    """Local scratch space for the working stores of the partitions this worker owns. Nothing here
    needs to survive: a partition's state is restored from its snapshot in JetStream."""
    otlp_endpoint: str
    """Where the spans go (Jaeger's OTLP receiver); required in scaled mode."""
    snapshot_seconds: float = 30.0
    """How often an owned partition's state is saved to JetStream (and the stream below it trimmed);
    a takeover replays at most this much of the stream to rebuild the worker's memory."""
    batch_messages: int = 256
    """Messages fetched from a partition at once."""
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    """How long a span waits in the working store before it is exported. Jaeger cannot move or
    replace a span, and a span may still change after it is written: an owner's create that arrives
    late (the apiserver retrying a refused batch while later ones went through) moves its children
    to the owner's trace, and a later event can reveal a fuller diff of an earlier write. A span
    rewritten within this time is exported once, in its final form."""
