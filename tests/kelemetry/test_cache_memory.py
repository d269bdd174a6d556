"""A collector fed a stream of large objects keeps its caches within the configured bytes, says so
on /metrics (the diff history, the watched versions, the store's bases, the writes held until their
change is known and the claims), and still diffs the objects written recently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from warnings import catch_warnings, filterwarnings

import pytest

from kelemetry import cli
from kelemetry.app import Collector, create_app
from kelemetry.settings import ServeSettings, StoreSettings, TraceSettings
from tests.factories import audit_event, event_list
from tests.kelemetry.test_webhook import metrics_of

with catch_warnings():
    filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

MIB = 1024 * 1024

JSON_TYPE = {"content-type": "application/json"}


def config_map(name: str, rv: str, value: str) -> dict[str, Any]:
    return {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": rv},
        "data": {"blob": "x" * 40_000, "value": value},
    }


def update(name: str, rv: str, value: str, second: int) -> dict[str, Any]:
    body = config_map(name, rv, value)
    return audit_event(
        verb="update",
        resource="configmaps",
        name=name,
        uid=f"uid-{name}",
        code=200,
        kind="ConfigMap",
        request_object=body,
        response_object=body,
        received=f"2024-05-01T10:{second // 60:02d}:{second % 60:02d}Z",
        completed=f"2024-05-01T10:{second // 60:02d}:{second % 60:02d}.01Z",
    )


def test_large_objects_stay_under_the_cap_and_recent_ones_still_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "k.db"
    settings = ServeSettings(store=StoreSettings(path=str(store)), trace=TraceSettings(cache_bytes=2 * MIB))
    collector = Collector(settings)
    peak = 0.0
    with TestClient(create_app(collector)) as client:
        for batch in range(10):
            events = [update(f"cm-{batch}-{i}", "10", "old", batch) for i in range(10)]
            assert (
                client.post("/audit/c", headers=JSON_TYPE, content=json.dumps(event_list(events))).status_code
                == 200
            )
            assert collector.ingestor.wait_idle(10)
            peak = max(peak, metrics_of(client)['kelemetry_cache_bytes{cache="diff_history"}'])
        # The newest object changes again: its diff is there, though 100 x 40 KB went through a 1 MiB
        # share of the cap.
        newest = [update("cm-9-9", "11", "new", 30)]
        assert (
            client.post("/audit/c", headers=JSON_TYPE, content=json.dumps(event_list(newest))).status_code
            == 200
        )
        assert collector.ingestor.wait_idle(10)
        values = metrics_of(client)
    assert 0 < peak <= 1 * MIB
    assert values['kelemetry_cache_bytes{cache="diff_history"}'] <= 1 * MIB
    assert 0 < values['kelemetry_cache_entries{cache="diff_history"}'] < 100
    assert values['kelemetry_cache_evictions_total{cache="diff_history"}'] > 0
    assert values['kelemetry_cache_bytes{cache="store_bases"}'] > 0
    assert values['kelemetry_cache_entries{cache="diff_watched"}'] == 0
    # Every update answered with its version and claimed it; none was partly known.
    assert values['kelemetry_cache_entries{cache="diff_claims"}'] == 101
    assert values['kelemetry_cache_bytes{cache="diff_claims"}'] > 101 * 130
    assert values['kelemetry_cache_entries{cache="diff_partials"}'] == 0
    assert values['kelemetry_cache_bytes{cache="diff_partials"}'] == 0
    assert values['kelemetry_cache_evictions_total{cache="diff_claims"}'] == 0
    args = ["dump", "--store", str(store), "--cluster", "c", "--resource", "configmaps", "--name", "cm-9-9"]
    assert cli.main([*args, "--format", "tree"]) == 0
    assert 'data.value "old" -> "new"' in capsys.readouterr().out


@pytest.mark.parametrize("size", ["lots", "10KB"])
def test_a_bad_cache_size_is_one_line(tmp_path: Path, size: str, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.log"
    log.write_text("")
    code = cli.main(
        ["replay", "--cluster", "c", "--store", str(tmp_path / "k.db"), "--cache-size", size, str(log)]
    )
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1 and "size" in err
