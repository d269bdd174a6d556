"""Rows with odd fields in the store (a list where a user agent belongs, a mapping for a user, null
for a verb, a number too large for 64 bits, a log entry of the wrong shape), as an older or faulty
writer could leave them: every view of the object still answers 200 through the query API in
every display mode, and ``kelemetry dump`` writes every format without a traceback."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from frontend import api
from frontend.backend import StoreBackend
from frontend.query import QueryService
from frontend.views import ViewStore
from kelemetry.store.sqlite import StoreReader

with warnings.catch_warnings():
    # starlette warns on importing its test client when httpx (the dev dependency) is installed.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

KELEMETRY = str(Path(sys.executable).with_name("kelemetry"))
DEMO = ["--cluster", "tracetest", "--resource", "deployments", "--namespace", "default", "--name", "demo"]
DEMO_TAGS = json.dumps({"resource": "deployments", "name": "demo"})
ODD_TAGS: dict[str, Any] = {
    "audit.user_agent": ["x"],
    "audit.user": {"name": ["alice"]},
    "audit.verb": None,
    "audit.code": "abc",
    "audit.id": 12345678901234567890123,
}


@pytest.fixture(scope="module")
def odd_store(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("odd") / "k.db"
    shutil.copy(sample_store, path)
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT span_id, tags FROM spans WHERE source = 'audit'").fetchall()
        assert rows
        for span_id, stored in rows:
            db.execute(
                "UPDATE spans SET tags = ?, logs = ? WHERE span_id = ?",
                (json.dumps({**json.loads(stored), **ODD_TAGS}).encode(), b'[["diff", ["a"]], 7]', span_id),
            )
        db.commit()
    finally:
        db.close()
    return path


@pytest.fixture(scope="module")
def client(odd_store: Path) -> Iterator[TestClient]:
    service = QueryService(StoreBackend(StoreReader(odd_store)), ViewStore(None))
    app = FastAPI()
    api.install(app, service)
    yield TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    service.close()


def test_every_view_of_an_object_with_odd_stored_fields_answers_200(client: TestClient) -> None:
    services = client.get("/api/services")
    assert services.status_code == 200, services.text
    modes = services.json()["data"]
    assert len(modes) >= 4
    seen_odd = False
    for mode in modes:
        found = client.get("/api/traces", params={"service": mode, "tags": DEMO_TAGS})
        assert found.status_code == 200, (mode, found.text)
        for trace in found.json()["data"]:
            one = client.get(f"/api/traces/{trace['traceID']}")
            assert one.status_code == 200, (mode, one.text)
            text = one.text
            seen_odd = seen_odd or '["x"]' in text or '[\\"x\\"]' in text
    assert seen_odd, "the odd value is shown as text, not dropped"


@pytest.mark.parametrize("form", ["tree", "json", "jsonl", "parquet"])
def test_dump_writes_every_format_of_an_object_with_odd_stored_fields(
    odd_store: Path, tmp_path: Path, form: str
) -> None:
    out = tmp_path / f"demo.{form}"
    result = subprocess.run(
        [
            KELEMETRY,
            "dump",
            "--store",
            str(odd_store),
            *DEMO,
            "--scope",
            "full",
            "--format",
            form,
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert out.stat().st_size > 0
