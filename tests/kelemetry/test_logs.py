"""Structured logs (``kelemetry.logs``, ``--log-format``): JSON lines with stable keys (time, level,
logger, msg; cluster, batch, audit_id when the record is about one), bounded fields, the text format
showing the same context; and a real `kelemetry serve` at debug level in JSON, fed the secret
canary of test_redaction.py and a wrong token: every line of its stderr is JSON, and neither the
canary nor the token is in any of them."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kelemetry import logs
from tests.factories import audit_event, event_list
from tests.kelemetry.test_redaction import NEEDLES, secret_events
from tests.kelemetry.test_webhook import free_port

KELEMETRY = str(Path(sys.executable).with_name("kelemetry"))
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TOKEN = "log-token-5f2e9b"


def record(msg: str, *args: object, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("kelemetry.ingest", level, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_the_stable_keys_and_the_context_of_the_record() -> None:
    line = logs.JsonFormatter().format(
        record("batch %d failed", 7, cluster="member-1", batch=7, audit_id="a-1", password="not shown")
    )

    document = json.loads(line)
    assert "\n" not in line
    assert TIME.match(document.pop("time"))
    assert document == {
        "level": "warning",
        "logger": "kelemetry.ingest",
        "msg": "batch 7 failed",
        "cluster": "member-1",
        "batch": 7,
        "audit_id": "a-1",
    }


def test_json_fields_are_bounded() -> None:
    huge = "x" * 100_000
    try:
        raise ValueError(huge)
    except ValueError:
        failing = logging.LogRecord(
            "kelemetry.pipeline", logging.ERROR, __file__, 1, "%s", (huge,), sys.exc_info()
        )
    failing.__dict__["cluster"] = huge

    document = json.loads(logs.JsonFormatter().format(failing))

    assert len(document["msg"]) <= logs.MAX_MESSAGE + 30
    assert document["msg"].endswith(f"…({100_000 - logs.MAX_MESSAGE} more)")
    assert len(document["cluster"]) <= logs.MAX_VALUE + 30
    assert "Traceback" in document["exception"]
    assert len(document["exception"]) <= logs.MAX_EXCEPTION + 30


def test_the_text_format_shows_the_context_after_the_message() -> None:
    line = logs.TextFormatter().format(record("quarantined input", cluster="c1", batch=3))

    assert line.endswith("WARNING kelemetry.ingest: quarantined input (cluster=c1 batch=3)")


def test_configure_sends_records_to_the_stream_in_the_chosen_format_and_respects_other_setups() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        logs.configure("info", "json", stream)
        logs.configure("info", "json", stream)  # again: replaces its own handler, no duplicate lines
        logging.getLogger("kelemetry.test").info("hello %s", "there", extra={"cluster": "c1"})
        logging.getLogger("kelemetry.test").debug("below the level")
        foreign = logging.StreamHandler(io.StringIO())
        root.addHandler(foreign)
        logs.configure("debug", "text", stream)  # someone else configured logging: left alone
        assert foreign in root.handlers
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["msg"] == "hello there"
    assert json.loads(lines[0])["cluster"] == "c1"
    with pytest.raises(ValueError, match="unknown log format"):
        logs.configure("info", "yaml")


def test_serve_in_json_logs_only_json_lines_with_context_and_no_secret(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    env = {**os.environ, "KELEMETRY_TOKEN": TOKEN}
    argv = [KELEMETRY, "--log-format", "json", "--log-level", "debug", "serve"]
    argv += ["--listen", f"127.0.0.1:{port}", "--store", str(tmp_path / "k.db")]
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        bearer = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        secrets = json.dumps(event_list(secret_events())).encode()
        assert httpx.post(f"{url}/audit/prod", content=secrets, headers=bearer, timeout=10).status_code == 200
        pods = json.dumps(event_list([audit_event()])).encode()
        assert httpx.post(f"{url}/audit/prod", content=pods, headers=bearer, timeout=10).status_code == 200
        wrong = {"Authorization": f"Bearer {TOKEN}x", "Content-Type": "application/json"}
        assert httpx.post(f"{url}/audit/prod", content=pods, headers=wrong, timeout=10).status_code == 401
        assert httpx.post(f"{url}/audit/prod", content=b"{", headers=bearer, timeout=10).status_code == 400
        assert httpx.get(f"{url}/metrics", headers=bearer, timeout=10).status_code == 200
        deadline = time.monotonic() + 20
        while "processed batch" not in log.read_text() or log.read_text().count("processed batch") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)

    text = log.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    documents = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "msg"} <= set(d) for d in documents)
    assert all(TIME.match(d["time"]) for d in documents)
    assert any(d["msg"].startswith("kelemetry ") and "listening on" in d["msg"] for d in documents)
    accepted = [d for d in documents if d["msg"].startswith("accepted batch")]
    assert [(d["cluster"], d["level"]) for d in accepted] == [("prod", "debug")] * 2
    assert all(isinstance(d["batch"], int) for d in accepted)
    assert any(d["msg"].startswith("audit webhook refused a request (401)") for d in documents)
    assert any(d["msg"].startswith("audit webhook refused a request (400)") for d in documents)
    for needle in [*NEEDLES, TOKEN]:
        assert needle not in text, f"{needle!r} leaked into the log"
