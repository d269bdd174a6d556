"""TLS and the token on a real ``kelemetry serve`` process, and the CLI's refusals of bad TLS files.

The certificates come from `openssl` (tests/certs.py): a CA and a server certificate for 127.0.0.1.
The server is checked the way kube-apiserver and a browser see it: a verified https handshake with
the CA, the token required (bearer or the login's Secure cookie), plain http refused.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from kelemetry import cli
from tests.certs import Certificates, make_certificates
from tests.conftest import REPO_ROOT
from tests.factories import audit_event

TOKEN = "tls-t0ken"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_server(certs: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``kelemetry serve --tls-cert --tls-key`` with KELEMETRY_TOKEN set; (https base URL, its stderr)."""
    work = tmp_path_factory.mktemp("tls-serve")
    port = _free_port()
    log = work / "serve.log"
    command = [sys.executable, "-m", "kelemetry", "serve", "--listen", f"127.0.0.1:{port}"]
    command += ["--store", str(work / "k.db"), "--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]
    env = {**os.environ, "KELEMETRY_TOKEN": TOKEN}
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        with client_for(certs) as client:
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    if client.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (
                    f"no https /healthz in {START_TIMEOUT_S}s:\n{log.read_text()}"
                )
                time.sleep(0.1)
        yield base, log.read_text()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def client_for(certs: Certificates) -> httpx.Client:
    """A client that trusts only the test CA, as kube-apiserver does with ``certificate-authority``."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    return httpx.Client(verify=context, timeout=10, follow_redirects=False)


def test_serve_answers_https_verified_by_the_ca(https_server: tuple[str, str], certs: Certificates) -> None:
    base, log = https_server
    with client_for(certs) as client:
        health = client.get(f"{base}/healthz")
    assert health.status_code == 200
    assert health.headers["x-content-type-options"] == "nosniff"
    assert f"listening on {base}" in log
    assert "token:" in log and TOKEN not in log


def test_plain_http_and_an_unknown_ca_get_nothing(https_server: tuple[str, str]) -> None:
    base, _ = https_server
    with pytest.raises(httpx.TransportError):
        httpx.get(base.replace("https://", "http://") + "/healthz", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        # The system's CAs do not know the test CA.
        httpx.get(f"{base}/healthz", timeout=5)


def test_the_token_guards_everything_over_https(https_server: tuple[str, str], certs: Certificates) -> None:
    base, _ = https_server
    batch = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [audit_event()]})
    with client_for(certs) as client:
        assert client.get(f"{base}/api/traces").status_code == 401
        assert client.get(f"{base}/metrics").status_code == 401
        page = client.get(f"{base}/", headers={"Accept": "text/html"})
        assert (page.status_code, page.headers["location"]) == (303, "/login?next=%2F")
        assert client.get(f"{base}/api/services", headers=BEARER).status_code == 200
        assert client.get(f"{base}/metrics", headers=BEARER).status_code == 200
        json_body = {"Content-Type": "application/json"}
        posted = client.post(f"{base}/audit/tls", content=batch, headers={**json_body, **BEARER})
        assert (posted.status_code, posted.json()) == (200, {"accepted": 1})
        text = client.post(
            f"{base}/audit/tls", content=batch, headers={"Content-Type": "text/plain", **BEARER}
        )
        assert text.status_code == 415

        login = client.post(f"{base}/login", data={"token": TOKEN, "next": "/search"})

        assert login.status_code == 303
        attributes = {part.strip().lower() for part in login.headers["set-cookie"].split(";")}
        assert {"secure", "httponly", "samesite=strict"} <= attributes
        assert client.get(f"{base}/search", headers={"Accept": "text/html"}).status_code == 200


def _serve_argv(tmp_path: Path, *tls: str) -> list[str]:
    return ["serve", "--listen", f"127.0.0.1:{_free_port()}", "--store", str(tmp_path / "k.db"), *tls]


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("kelemetry: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_bad_tls_files_are_one_line_errors(
    tmp_path: Path, certs: Certificates, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_certificates(tmp_path / "other", name="other")
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate\n")
    cases = [
        ((("--tls-cert", str(certs.cert)),), "go together"),
        ((("--tls-key", str(certs.key)),), "go together"),
        (
            (("--tls-cert", str(tmp_path / "missing.crt")), ("--tls-key", str(certs.key))),
            "cannot read --tls-cert",
        ),
        (
            (("--tls-cert", str(certs.cert)), ("--tls-key", str(tmp_path / "missing.key"))),
            "cannot read --tls-key",
        ),
        ((("--tls-cert", str(certs.cert)), ("--tls-key", str(other.key))), "is not the key of --tls-cert"),
        ((("--tls-cert", str(not_pem)), ("--tls-key", str(certs.key))), "both must be PEM files"),
    ]
    for flags, expected in cases:
        argv = _serve_argv(tmp_path, *(part for pair in flags for part in pair))
        assert cli.main(argv) == cli.EXIT_USAGE, flags
        assert expected in _one_line_error(capsys), flags
    # Nothing was started or created for a refused start.
    assert not (tmp_path / "k.db").exists()


def test_the_frontend_checks_its_tls_files_too(
    tmp_path: Path, certs: Certificates, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_certificates(tmp_path / "other", name="other")
    argv = ["frontend", "--listen", f"127.0.0.1:{_free_port()}", "--store", str(tmp_path / "k.db")]
    assert cli.main([*argv, "--tls-cert", str(certs.cert), "--tls-key", str(other.key)]) == cli.EXIT_USAGE
    assert "is not the key of --tls-cert" in _one_line_error(capsys)
