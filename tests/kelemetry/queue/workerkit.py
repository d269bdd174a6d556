"""What the worker tests share: the sample stream published as the webhook would, the real Jaeger v2,
worker subprocesses, and the embedded replay the results are compared with."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kelemetry.kube.kinds import KindResolver
from kelemetry.model import tags
from kelemetry.pipeline import build
from kelemetry.queue import layout
from kelemetry.queue.jetstream import JetStream
from kelemetry.settings import TraceSettings
from kelemetry.store.sqlite import SpanStore
from tests import jaegerv2

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "samples" / "deployment" / "audit.log"
JAEGER_VERSION = "1.76.0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# -- the stream


def sample_events(copies: int = 1) -> list[dict[str, Any]]:
    """The recorded Deployment scenario; with ``copies`` > 1, repeated in namespaces ns0, ns1, …
    (audit ids made unique), so the stream spreads over the partitions."""
    lines = SAMPLE.read_text().splitlines()
    if copies == 1:
        return [json.loads(line) for line in lines]
    found: list[dict[str, Any]] = []
    for copy in range(copies):
        for line in lines:
            text = line.replace("/namespaces/default/", f"/namespaces/ns{copy}/")
            text = text.replace('"namespace":"default"', f'"namespace":"ns{copy}"')
            event = json.loads(text)
            event["auditID"] = f"{event['auditID']}-{copy}"
            found.append(event)
    return found


def partition_of(event: dict[str, Any], partitions: int) -> int:
    ref = event.get("objectRef") or {}
    return layout.partition_of(
        ref.get("namespace") or "", ref.get("resource") or "", ref.get("name") or "", partitions
    )


def event_list(events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events}).encode()


async def _publish(url: str, events: list[dict[str, Any]], partitions: int, chunk: int, cluster: str) -> int:
    stream = await JetStream.connect(layout.QueueSettings(url=url, partitions=partitions), "test-publisher")
    published = 0
    try:
        per_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for event in events:
            per_partition[partition_of(event, partitions)].append(event)
        for partition, items in sorted(per_partition.items()):
            for start in range(0, len(items), chunk):
                part = items[start : start + chunk]
                await stream.publish(
                    layout.audit_subject(partition),
                    event_list(part),
                    msg_id=f"test-{partition}-{part[0]['auditID']}",
                    headers={layout.HEADER_CLUSTER: cluster},
                )
                published += 1
    finally:
        await stream.close()
    return published


def publish(
    url: str, events: list[dict[str, Any]], partitions: int, chunk: int = 20, cluster: str = "default"
) -> int:
    """Publish as the webhook does: per partition, EventList bodies of ``chunk`` events; the messages."""
    return asyncio.run(_publish(url, events, partitions, chunk, cluster))


def with_stream(url: str, partitions: int, work: Callable[[JetStream], Any]) -> Any:
    async def run() -> Any:
        stream = await JetStream.connect(layout.QueueSettings(url=url, partitions=partitions), "test-reader")
        try:
            return await work(stream)
        finally:
            await stream.close()

    return asyncio.run(run())


# -- the embedded baseline


def replay(events: list[dict[str, Any]], path: Path, cluster: str = "default") -> SpanStore:
    """The embedded mode's store of the same events, processed per partition in stream order as the
    worker sees them (`kelemetry replay` builds the same pipeline)."""
    store = SpanStore(path)
    pipeline = build(store, TraceSettings(), KindResolver())
    pipeline.process_audit(events, cluster)
    return store


Ids = tuple[str, str, str | None]
Logs = tuple[tuple[str, str], ...]


def audit_spans(store: SpanStore) -> dict[str, tuple[Ids, Logs]]:
    """audit id → (trace hex, span hex, parent hex) and the logs of the store's audit spans."""
    found: dict[str, tuple[Ids, Logs]] = {}
    for span in store.all_spans():
        audit_id = span.tags.get(tags.AUDIT_ID)
        if isinstance(audit_id, str):
            parent = None if span.parent_id is None else f"{span.parent_id:016x}"
            found[audit_id] = (
                (span.trace_hex, span.span_hex, parent),
                tuple((log.kind, log.message) for log in span.logs),
            )
    return found


# -- Jaeger v2


def jaeger_binary() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = cache / "kelemetry-py" / "bin" / f"jaeger-v{JAEGER_VERSION}" / "jaeger"
    if not path.exists():
        raise RuntimeError(f"the Jaeger v2 binary is missing at {path}: run `make e2e-deps`")
    return path


class Jaeger:
    """The real Jaeger v2 with its in-memory store; ``start`` may come after the worker (backend down)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.otlp_grpc = free_port()
        self.query = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        config = jaegerv2.config(
            name="mem",
            backend=jaegerv2.MEMORY,
            query=self.query,
            query_grpc=free_port(),
            otlp_grpc=self.otlp_grpc,
            otlp_http=free_port(),
            batch_timeout="100ms",
            log_level="warn",
        )
        self.config = folder / "jaeger.yaml"
        self.config.write_text(yaml.safe_dump(config))

    @property
    def endpoint(self) -> str:
        return f"grpc://127.0.0.1:{self.otlp_grpc}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.query}"

    def start(self) -> Jaeger:
        log = (self.folder / "jaeger.log").open("ab")
        self.process = subprocess.Popen(
            [str(jaeger_binary()), "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        wait_until("Jaeger's query API", lambda: http_status(f"{self.api}/api/services") == 200, 60)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def trace(self, trace_hex: str) -> list[dict[str, Any]]:
        """The spans Jaeger's API returns for a trace (what a user sees)."""
        try:
            with urllib.request.urlopen(f"{self.api}/api/traces/{trace_hex}", timeout=10) as response:
                data = json.load(response)["data"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        return [span for trace in data for span in trace["spans"]]

    def audit_spans(self, trace_ids: set[str]) -> dict[str, list[tuple[Ids, Logs]]]:
        """audit id → every (trace, span, parent) and logs Jaeger shows for it, over the given traces."""
        found: dict[str, list[tuple[Ids, Logs]]] = defaultdict(list)
        for trace_hex in sorted(trace_ids):
            for span in self.trace(trace_hex):
                values = {tag["key"]: tag["value"] for tag in span.get("tags", [])}
                audit_id = values.get(tags.AUDIT_ID)
                if audit_id is None:
                    continue
                parents = [
                    ref["spanID"] for ref in span.get("references", []) if ref["refType"] == "CHILD_OF"
                ]
                ids = (
                    span["traceID"].rjust(32, "0"),
                    span["spanID"].rjust(16, "0"),
                    parents[0] if parents else None,
                )
                logs = []
                for log in span.get("logs", []):
                    fields = {field["key"]: field["value"] for field in log.get("fields", [])}
                    logs.append((str(fields.get("event", "")), str(fields.get("message", ""))))
                found[audit_id].append((ids, tuple(logs)))
        return found


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


# -- worker subprocesses


class WorkerProcess:
    """`kelemetry serve --queue … --role worker` as a user runs it."""

    def __init__(
        self,
        folder: Path,
        nats_url: str,
        otlp_endpoint: str,
        worker_id: str,
        *,
        partitions: int,
        lease: str = "2s",
        snapshot_every: str = "30s",
        settle: str = "2s",
    ) -> None:
        self.port = free_port()
        self.worker_id = worker_id
        self.log = folder / f"{worker_id}.log"
        folder.mkdir(parents=True, exist_ok=True)
        self.argv = [
            sys.executable,
            "-m",
            "kelemetry",
            "serve",
            "--queue",
            nats_url,
            "--role",
            "worker",
            "--otlp-endpoint",
            otlp_endpoint,
            "--partitions",
            str(partitions),
            "--worker-id",
            worker_id,
            "--state-dir",
            str(folder / f"{worker_id}-state"),
            "--lease",
            lease,
            "--snapshot-every",
            snapshot_every,
            "--settle",
            settle,
            "--listen",
            f"127.0.0.1:{self.port}",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        wait_until(
            f"worker {self.worker_id} to listen",
            lambda: self.alive() and http_status(self.url("/healthz")) == 200,
        )
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"worker {self.worker_id} exited: {self.log.read_text()[-3000:]}")
        return True

    def metrics(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for line in http_text(self.url("/metrics")).splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                found[name] = float(value)
        return found

    def owned(self) -> int:
        return int(self.metrics().get("kelemetry_worker_partitions_owned", 0))

    def stop(self) -> int:
        """SIGTERM: every partition is given up gracefully; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"worker {self.worker_id} did not stop on SIGTERM") from None

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def ensure_stopped(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
