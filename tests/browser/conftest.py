"""Fixtures of the browser tests: a real `kelemetry serve` loaded with the recorded sample, and
headless Chromium driven through tests/browser/driver.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.driver import INSTALL_HINT, Browser, missing_binaries
from tests.factories import reuse_stream

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "samples" / "deployment"
CLUSTER = "tracetest"
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running `kelemetry serve` on loopback."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no server log: {exc}>"
        return "\n".join(text.splitlines()[-lines:])

    def get(self, path: str, **params: str) -> tuple[int, Any]:
        """GET an API path; (status, decoded JSON body or the raw text)."""
        query = urllib.parse.urlencode(params)
        url = f"{self.base_url}{path}{'?' + query if query else ''}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
            err.close()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def lookup(self, name: str, resource: str, group: str, namespace: str, mode: str) -> str:
        """The view id of one object (asserting that exactly one matches)."""
        status, body = self.get(
            "/api/kelemetry/lookup",
            cluster=CLUSTER,
            group=group,
            resource=resource,
            namespace=namespace,
            name=name,
            mode=mode,
        )
        assert status == 200, f"lookup of {resource}/{name} answered {status}: {body}"
        hits = body["data"]
        assert len(hits) == 1, f"lookup of {resource}/{name} matched {len(hits)} objects: {hits}"
        view_id: str = hits[0]["viewId"]
        return view_id


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def serving(work: Path, *args: str) -> Iterator[Server]:
    """`kelemetry serve` on a free loopback port with `args` (store, clusters, replays), until the
    block ends; a server that exits or never answers /healthz fails the test with its log."""
    port = _free_port()
    log_path = work / "serve.log"
    command = [sys.executable, "-m", "kelemetry", "serve", "--listen", f"127.0.0.1:{port}", *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    srv = Server(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"kelemetry serve exited with {process.returncode}:\n{srv.log_tail()}")
            try:
                status, _ = srv.get("/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"kelemetry serve gave no /healthz in {START_TIMEOUT_S}s:\n{srv.log_tail()}")
            time.sleep(0.1)
        yield srv
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`kelemetry serve` with the deployment sample replayed into a fresh store."""
    work = tmp_path_factory.mktemp("browser-server")
    # A name deleted and created again, beside the real sample: the trace page lists the other object.
    reuse = work / "reuse.log"
    reuse.write_text("".join(json.dumps(event) + "\n" for event in reuse_stream()))
    replays = [SAMPLE / "audit.log", SAMPLE / "events.jsonl", reuse]
    args = ["--store", str(work / "k.db"), "--cluster", CLUSTER]
    with serving(work, *args, *(a for path in replays for a in ("--replay", str(path)))) as srv:
        yield srv


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


def _start_browser(server: Server) -> Browser:
    """A fresh headless Chromium (own profile) pointed at the server; fails loudly when absent."""
    missing = missing_binaries()
    if missing:
        pytest.fail(f"missing {', '.join(missing)}. {INSTALL_HINT}", pytrace=False)
    return Browser(server.base_url).start()


@pytest.fixture
def browser(request: pytest.FixtureRequest, server: Server) -> Iterator[Browser]:
    """Chromium for one test; a failing test leaves `failed-<test>.png` in test-artifacts/browser/."""
    instance = _start_browser(server)
    try:
        yield instance
        failure_shot = instance.artifacts / f"failed-{request.node.name}.png"
        if request.node.stash.get(_FAILED, False):
            instance.screenshot(failure_shot.stem)
        else:
            failure_shot.unlink(missing_ok=True)  # left by an earlier failing run
    finally:
        instance.quit()


@pytest.fixture
def fresh_browser(server: Server) -> Iterator[Browser]:
    """A second, independent Chromium (to open a copied URL with nothing shared)."""
    instance = _start_browser(server)
    try:
        yield instance
    finally:
        instance.quit()
