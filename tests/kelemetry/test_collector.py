"""The collector as the owner of its parts: threads started by ``start`` are stopped and joined by
``stop``; a webhook batch is decoded once, at acceptance, and what the worker traces is exactly what
was made durable; the cluster's API discovery is retried by a thread the collector owns.

The HTTP edge of the webhook is covered by test_webhook.py, ingestion order and recovery by
test_ingest.py; this module only looks at who owns what.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from kelemetry.app import Collector
from kelemetry.errors import KelemetryError
from kelemetry.ingest import AuditBatch
from kelemetry.kube.kinds import KindResolver
from kelemetry.receivers import auditwire
from kelemetry.settings import ClusterSettings, ServeSettings, StoreSettings
from tests.factories import audit_event, event_list, hierarchy_events


def ours() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("kelemetry-")}


def unreachable_kubeconfig(path: Path) -> str:
    path.write_text(
        '{"apiVersion":"v1","kind":"Config",'
        '"clusters":[{"name":"c","cluster":{"server":"http://127.0.0.1:9"}}],'
        '"users":[{"name":"u","user":{"token":"t"}}],'
        '"contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}],"current-context":"x"}'
    )
    return str(path)


def test_stop_joins_every_thread_start_began(tmp_path: Path) -> None:
    before = ours()
    # Two clusters that never answer: each retries discovery and its watches on threads of its own.
    settings = ServeSettings(
        store=StoreSettings(path=str(tmp_path / "k.db")),
        clusters=(
            ClusterSettings("member-1", unreachable_kubeconfig(tmp_path / "m1")),
            ClusterSettings("member-2", unreachable_kubeconfig(tmp_path / "m2")),
        ),
        watch_resources=("deployments.apps",),
        watch_custom_resources=True,
    )
    collector = Collector(settings, KindResolver(), undiscovered=frozenset({"member-1", "member-2"}))
    collector.start()
    started = ours() - before
    assert {"kelemetry-ingest", "kelemetry-retention"} <= started
    for member in ("member-1", "member-2"):
        assert {f"kelemetry-discovery-{member}", f"kelemetry-crds-{member}"} <= started
    assert any(name.startswith("kelemetry-watch-") for name in started)
    stopped_at = time.monotonic()
    collector.stop()
    assert time.monotonic() - stopped_at < 20
    assert ours() - before == set()


def test_each_cluster_shows_its_own_health_and_one_bad_member_does_not_stop_the_others(
    tmp_path: Path,
) -> None:
    settings = ServeSettings(
        store=StoreSettings(path=str(tmp_path / "k.db")),
        clusters=(ClusterSettings("member-1", unreachable_kubeconfig(tmp_path / "m1")),),
        watch_resources=(),
        watch_custom_resources=False,
    )
    collector = Collector(settings, KindResolver(), undiscovered=frozenset({"member-1"}))
    collector.start()
    try:
        # A cluster that only sends audit (no kubeconfig) is traced all the same.
        body = orjson.dumps(event_list(hierarchy_events()))
        assert collector.accept("host", body) == 3
        assert collector.ingestor.wait_idle(10)

        def member_degraded() -> bool:
            member = next(h for h in collector.health() if h.name == "member-1")
            return member.state == "degraded" and any("watch of events" in e for e in member.errors)

        deadline = time.monotonic() + 15
        while not member_degraded():
            assert time.monotonic() < deadline, collector.health()
            time.sleep(0.1)
        host = next(h for h in collector.health() if h.name == "host")
        assert host.state == "audit only" and host.last_audit_us is not None
        assert collector.store.counts().get("spans_audit") == 3
        metrics = collector.metrics()
        assert metrics['kelemetry_cluster_up{cluster="member-1"}'] == 0.0
        assert metrics['kelemetry_cluster_watch_errors{cluster="member-1"}'] >= 1
        # The totals under their names from before fleets: every cluster's, summed.
        for name in ("relists", "reconnects"):
            per_cluster = [
                v for k, v in metrics.items() if k.startswith(f"kelemetry_cluster_watch_{name}_total")
            ]
            assert len(per_cluster) == 2
            assert metrics[f"kelemetry_events_watch_{name}_total"] == sum(per_cluster)
    finally:
        collector.stop()


def test_a_cluster_named_twice_is_refused(tmp_path: Path) -> None:
    settings = ServeSettings(
        store=StoreSettings(path=str(tmp_path / "k.db")),
        clusters=(ClusterSettings("a", "x"), ClusterSettings("a", "y")),
    )
    with pytest.raises(KelemetryError, match="given twice: a"):
        Collector(settings)


def test_a_batch_is_decoded_once_and_the_worker_traces_what_was_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = Collector(ServeSettings(store=StoreSettings(path=str(tmp_path / "k.db"))))
    decoded: list[int] = []
    real = auditwire.decode_batch

    def counting(body: bytes, **settings: Any) -> list[auditwire.AuditEvent]:
        decoded.append(len(body))
        return real(body, **settings)

    # The ingest module holds its own reference; count through it.
    monkeypatch.setattr("kelemetry.ingest.decode_batch", counting)
    seen: list[AuditBatch] = []
    audit = collector.ingestor._audit
    monkeypatch.setattr(collector.ingestor, "_audit", lambda batch: (seen.append(batch), audit(batch)))
    collector.start()
    try:
        body = orjson.dumps(event_list(hierarchy_events()))
        assert collector.ingestor.accept("c1", body) == 3
        assert collector.ingestor.wait_idle(10)
    finally:
        collector.stop()
    assert decoded == [len(body)]
    [batch] = seen
    assert batch.events is not None and [e.auditID for e in batch.events] == ["dep", "rs", "pod"]


def test_a_batch_recovered_from_the_inbox_is_decoded_by_the_worker(tmp_path: Path) -> None:
    settings = ServeSettings(store=StoreSettings(path=str(tmp_path / "k.db")))
    first = Collector(settings)
    body = orjson.dumps(event_list([audit_event(name="left-behind", uid="u-1", audit_id="a-1")]))
    first.ingestor.accept("c1", body)  # never started: the batch waits in the inbox
    first.stop()
    second = Collector(settings)
    second.start()
    try:
        assert second.ingestor.wait_idle(10)
        assert second.store.counts().get("spans_audit") == 1
    finally:
        second.stop()
