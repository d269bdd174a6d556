"""The three fuzzed surfaces behind one shape: ``check(case)`` sends one case and returns what broke.

Each harness keeps a `Tally` (answers by status, lost and duplicated acknowledged events, the first
problems with their reproducers). The bounded tests assert a harness found nothing; the long run
(`tests.fuzz.long_run`) only counts. Nothing here mocks our code: the webhook harness runs the real
``serve`` app (collector, ingest worker, query side over the same store) in-process, the replay
harness runs ``kelemetry replay``'s reader and pipeline.
"""

from __future__ import annotations

import shutil
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from frontend import api
from frontend.backend import StoreBackend
from frontend.query import QueryService
from frontend.views import ViewStore
from kelemetry import errors
from kelemetry import pipeline as pipelines
from kelemetry.app import Collector, create_app
from kelemetry.kube.kinds import KindResolver
from kelemetry.model import tags
from kelemetry.model.events import TraceSource
from kelemetry.receivers.auditfiles import FileStats, read_input
from kelemetry.settings import ServeSettings, StoreSettings, TraceSettings
from kelemetry.store.sqlite import SpanStore, StoreReader
from tests.fuzz.strategies import CLUSTER, Batch, ReplayFile, Request

with warnings.catch_warnings():
    # starlette warns on importing its test client when httpx (our dev dependency) is installed
    # instead of httpx2; the warning is about the environment, not the code under test.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

KEEP_PROBLEMS = 20
DRAIN_SECONDS = 30.0


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    cases: int = 0
    lost: int = 0
    """Valid events of acknowledged batches (or files read) that are not in the store."""
    duplicated: int = 0
    problems: int = 0
    examples: list[str] = field(default_factory=list)

    def problem(self, text: str) -> str:
        self.problems += 1
        if len(self.examples) < KEEP_PROBLEMS:
            self.examples.append(text)
        return text

    def line(self, surface: str) -> str:
        by_status = ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items()))
        return (
            f"{surface}: {self.cases} cases ({by_status}); lost acknowledged events: {self.lost}; "
            f"duplicated: {self.duplicated}; problems: {self.problems}"
        )


def _short(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


class _StoredIds:
    """Audit ids in a store, counted per span row, read incrementally in write order."""

    def __init__(self, path: Path) -> None:
        self.reader = StoreReader(path)
        self.cursor = 0
        self.by_span: dict[int, str] = {}

    def refresh(self) -> Counter[str]:
        while rows := self.reader.spans_after(self.cursor, 5_000):
            for seq, span in rows:
                self.cursor = seq
                if span.source is TraceSource.AUDIT:
                    self.by_span[span.span_id] = str(span.tags.get(tags.AUDIT_ID))
        return Counter(self.by_span.values())

    def recount(self) -> Counter[str]:
        """From scratch: what a retention pass or a rewrite removed shows here."""
        return Counter(
            str(span.tags.get(tags.AUDIT_ID))
            for span in self.reader.all_spans()
            if span.source is TraceSource.AUDIT
        )

    def close(self) -> None:
        self.reader.close()


class WebhookHarness:
    """The `serve` app in-process: POST batches to ``/audit/fuzz``, check the store and the views.

    A fresh store every ``rotate_every`` batches keeps each check's cost flat over a long run.
    """

    def __init__(self, directory: Path, *, rotate_every: int = 250) -> None:
        self.directory = directory
        self.rotate_every = rotate_every
        self.tally = Tally()
        self._generation = 0
        self._open()

    def _open(self) -> None:
        self._generation += 1
        self.path = self.directory / f"webhook-{self._generation}.db"
        self.collector = Collector(ServeSettings(store=StoreSettings(path=str(self.path))))
        self.query = QueryService(StoreBackend(StoreReader(self.path)), ViewStore(None))
        self.client = TestClient(create_app(self.collector, self.query), raise_server_exceptions=False)
        self.client.__enter__()
        self.ids = _StoredIds(self.path)
        self.acknowledged: set[str] = set()
        self.batches = 0
        self.closed = False

    def close(self) -> list[str]:
        """Stop the collector, then check that every acknowledged event is still stored once."""
        if self.closed:
            return []
        self.closed = True
        self.client.__exit__(None, None, None)
        counts = self.ids.recount()
        self.ids.close()
        found = []
        for ident in sorted(self.acknowledged):
            if counts[ident] != 1:
                self.tally.lost += counts[ident] == 0
                self.tally.duplicated += counts[ident] > 1
                found.append(
                    self.tally.problem(
                        f"webhook: acknowledged {ident} stored {counts[ident]} times at the end"
                    )
                )
        shutil.rmtree(self.directory / f"webhook-{self._generation}.db.views", ignore_errors=True)
        for leftover in self.directory.glob(f"webhook-{self._generation}.db*"):
            leftover.unlink(missing_ok=True)
        return found

    def check(self, batch: Batch) -> list[str]:
        if self.batches >= self.rotate_every:
            found = self.close()
            self._open()
            if found:
                return found
        self.batches += 1
        self.tally.cases += 1
        response = self.client.post(
            f"/audit/{CLUSTER}", content=batch.body, headers={"Content-Type": "application/json"}
        )
        status = response.status_code
        self.tally.statuses[str(status)] += 1
        found: list[str] = []
        if status >= 500:
            found.append(
                self.tally.problem(
                    f"webhook: {status} {_short(response.text)} for {_short(batch.describe())}"
                )
            )
        if not self.collector.ingestor.wait_idle(DRAIN_SECONDS):
            found.append(self.tally.problem("webhook: the ingest worker did not drain"))
        counts = self.ids.refresh()
        for ident in batch.valid_ids:
            held = counts[ident]
            if status == 200 and held != 1:
                self.tally.lost += held == 0
                self.tally.duplicated += held > 1
                found.append(
                    self.tally.problem(
                        f"webhook: 200 but valid {ident} stored {held} times; body {_short(batch.describe())}"
                    )
                )
            elif status != 200 and held:
                found.append(
                    self.tally.problem(
                        f"webhook: {status} but {ident} stored anyway; body {_short(batch.describe())}"
                    )
                )
        for ident in batch.odd_ids:
            if counts[ident] > 1:
                self.tally.duplicated += 1
                found.append(self.tally.problem(f"webhook: odd {ident} stored {counts[ident]} times"))
        if status == 200:
            self.acknowledged.update(batch.valid_ids)
            found += self._views(batch)
        return found

    def _get(self, path: str, params: dict[str, str], allowed: tuple[int, ...] = (200,)) -> Any:
        response = self.client.get(path, params=params)
        if response.status_code not in allowed:
            self.tally.problem(
                f"views: {path}?{httpx.QueryParams(params)} answered {response.status_code}: "
                f"{_short(response.text)}"
            )
            return None
        if response.status_code != 200 or not response.headers["content-type"].startswith("application/json"):
            return None
        return response.json()

    def _views(self, batch: Batch) -> list[str]:
        """Every view of every object of the batch answers, and so does the changes list."""
        before = self.tally.problems
        self._get("/api/kelemetry/changes", {"cluster": CLUSTER, "limit": "20"})
        for group, resource, namespace, name in sorted(batch.keys):
            key = {"cluster": CLUSTER, "group": group, "resource": resource, "namespace": namespace}
            key["name"] = name
            found = self._get("/api/kelemetry/lookup", key)
            for item in (found or {}).get("data", []):
                self._get(f"/api/traces/{item['viewId']}", {})
            self._get("/api/kelemetry/revisions", key)
            # An object known only from requests without a body has no manifest to show.
            self._get("/api/kelemetry/manifest", key, (200, 404))
            self._get("/api/kelemetry/manifest", {**key, "format": "yaml"}, (200, 404))
        return self.tally.examples[-(self.tally.problems - before) :] if self.tally.problems > before else []


class QueryHarness:
    """The query side over a read-only store: no request is answered 5xx, every refusal is our JSON
    with a reason, and the object's own view still answers after each request."""

    def __init__(self, store: Path, views: Path, *, canary_every: int = 1) -> None:
        self.tally = Tally()
        self.canary_every = canary_every
        self.service = QueryService(StoreBackend(StoreReader(store)), ViewStore(views))
        app = FastAPI()
        api.install(app, self.service)
        self.client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
        # Views 1..3 exist, so the strategies' small view numbers reach real traces.
        self.canary()

    def close(self) -> None:
        self.service.close()

    def canary(self) -> str | None:
        response = self.client.get(
            "/redirect",
            params={
                "cluster": "tracetest",
                "group": "apps",
                "resource": "deployments",
                "namespace": "default",
                "name": "demo",
                "ts": "2026-11-23T07:25:00Z",
            },
        )
        if response.status_code != 302:
            return self.tally.problem(f"query: /redirect to demo answered {response.status_code}")
        trace = self.client.get(f"/api/traces/{response.headers['location'].removeprefix('/trace/')}")
        if trace.status_code != 200 or not trace.json()["data"][0]["spans"]:
            return self.tally.problem(f"query: demo's trace answered {trace.status_code}")
        return None

    def check(self, request: Request) -> list[str]:
        self.tally.cases += 1
        response = self.client.get(request.path, params=request.params)
        status = response.status_code
        self.tally.statuses[str(status)] += 1
        shown = f"GET {_short(request.path, 200)} {_short(repr(request.params), 400)}"
        found: list[str] = []
        if status >= 500:
            found.append(self.tally.problem(f"query: {status} {_short(response.text)} for {shown}"))
        elif 400 <= status < 500:
            try:
                body = response.json()
                assert isinstance(body["error"], str) and body["error"]
                assert body["errors"] == [{"code": status, "msg": body["error"]}]
            except (ValueError, KeyError, TypeError, AssertionError):
                found.append(self.tally.problem(f"query: {status} without our JSON reason for {shown}"))
        elif status == 200 and response.headers["content-type"].startswith("application/json"):
            try:
                response.json()
            except ValueError:
                found.append(self.tally.problem(f"query: 200 with unreadable JSON for {shown}"))
        if self.tally.cases % self.canary_every == 0 and (problem := self.canary()):
            found.append(problem)
        return found


class ReplayHarness:
    """``kelemetry replay``'s reading code and pipeline: files of odd records are read or refused with
    an input error, and each valid event of a file read is yielded and stored exactly once."""

    def __init__(self, directory: Path, *, rotate_every: int = 250) -> None:
        self.directory = directory
        self.rotate_every = rotate_every
        self.tally = Tally()
        self._generation = 0
        self._open()

    def _open(self) -> None:
        self._generation += 1
        self.path = self.directory / f"replay-{self._generation}.db"
        self.store = SpanStore(self.path)
        self.pipeline = pipelines.build(self.store, TraceSettings(), KindResolver())
        self.ids = _StoredIds(self.path)
        self.files = 0

    def close(self) -> None:
        self.ids.close()
        self.store.close()
        for leftover in self.directory.glob(f"replay-{self._generation}.db*"):
            leftover.unlink(missing_ok=True)

    def check(self, case: ReplayFile) -> list[str]:
        if self.files >= self.rotate_every:
            self.close()
            self._open()
        self.files += 1
        self.tally.cases += 1
        path = self.directory / "input"
        path.write_bytes(case.data)
        shown = f"{case.form} file {_short(repr(case.data), 1_500)}"
        read: Counter[str] = Counter()
        status = "read"
        try:
            for batch in read_input(str(path), FileStats()):
                read.update(event.auditID for event in batch.audit)
                if batch.audit:
                    self.pipeline.process_audit(batch.audit, CLUSTER)
                if batch.kube_events:
                    self.pipeline.process_kube_events(batch.kube_events, CLUSTER)
        except errors.InputError:
            status = "refused"
        except Exception as exc:
            status = "crashed"
            self.tally.statuses[status] += 1
            # `kelemetry replay` ends there: the next file starts a fresh process, store and pipeline.
            self.close()
            self._open()
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno} ({frame.name})"
            return [
                self.tally.problem(
                    f"replay: {type(exc).__name__}: {_short(str(exc), 300)} at {where} on {shown}"
                )
            ]
        self.tally.statuses[status] += 1
        if status != "read":
            return []
        stored = self.ids.refresh()
        found = []
        for ident in case.valid_ids:
            if read[ident] != 1 or stored[ident] != 1:
                self.tally.lost += read[ident] == 0 or stored[ident] == 0
                self.tally.duplicated += read[ident] > 1 or stored[ident] > 1
                found.append(
                    self.tally.problem(
                        f"replay: valid {ident} read {read[ident]}, stored {stored[ident]} times; {shown}"
                    )
                )
        return found
