"""Real servers for the end-to-end tests: built by build-servers.sh, started on loopback.

Each server is a `Server`: a subprocess with its own log file under the run folder; the logs stay
there after the run (and their tails are printed when a test fails) so CI output shows what the
apiserver, the controllers, Jaeger and the collector said.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.certs import Certificates, make_certificates

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "e2e" / "build-servers.sh"
CACHE = Path(os.environ.get("KELEMETRY_CACHE", Path.home() / ".cache" / "kelemetry-py"))
K8S_VERSION = os.environ.get("K8S_VERSION", "1.33.13")
KWOK_VERSION = os.environ.get("KWOK_VERSION", "v0.7.0")
JAEGER_VERSION = os.environ.get("JAEGER_VERSION", "v1.76.0")
KUBEADMIRAL_VERSION = os.environ.get("KUBEADMIRAL_VERSION", "v1.0.0")
KUBEADMIRAL_MODULE = "github.com/kubewharf/kubeadmiral"
CLUSTER = "tracetest"
ADMIN_TOKEN = "admin-token"


class HarnessError(RuntimeError):
    """A real component could not be built or started: the run fails, it never skips."""


@dataclass(frozen=True)
class Binaries:
    apiserver: Path
    controller_manager: Path
    scheduler: Path
    kubectl: Path
    kwok: Path
    jaeger: Path
    etcd: Path
    kelemetry: Path
    kubeadmiral: Path


def build() -> Binaries:
    started = time.monotonic()
    result = subprocess.run(["bash", str(BUILD_SCRIPT), "all"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise HarnessError(f"building the test servers failed:\n{result.stderr[-4000:]}")
    took = time.monotonic() - started
    print(f"e2e: servers ready in {took:.0f}s", file=sys.stderr)
    k8s = CACHE / "bin" / f"k8s-v{K8S_VERSION}"
    etcd = shutil.which("etcd")
    if etcd is None:
        raise HarnessError("etcd is not installed (Debian package etcd-server; `make test` installs it)")
    return Binaries(
        apiserver=k8s / "kube-apiserver",
        controller_manager=k8s / "kube-controller-manager",
        scheduler=k8s / "kube-scheduler",
        kubectl=k8s / "kubectl",
        kwok=CACHE / "bin" / f"kwok-{KWOK_VERSION}" / "kwok",
        jaeger=CACHE / "bin" / f"jaeger-{JAEGER_VERSION}" / "jaeger",
        etcd=Path(etcd),
        kelemetry=Path(sys.executable).with_name("kelemetry"),
        kubeadmiral=CACHE / "bin" / f"kubeadmiral-{KUBEADMIRAL_VERSION}" / "kubeadmiral-controller-manager",
    )


def kubeadmiral_source() -> Path:
    """KubeAdmiral's module tree (its CRDs and sample FederatedTypeConfigs) in the Go module cache.

    The build downloaded it already; `go mod download` answers from the cache then, and fetches it
    again through the module proxy if the cache was cleaned since. Nothing of it is committed here.
    """
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{KUBEADMIRAL_MODULE}@{KUBEADMIRAL_VERSION}"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
        # Outside any module, so no go.mod of ours (or of the caller's directory) is consulted.
        cwd=CACHE if CACHE.is_dir() else None,
    )
    if result.returncode != 0:
        raise HarnessError(f"could not locate {KUBEADMIRAL_MODULE}@{KUBEADMIRAL_VERSION}: {result.stderr}")
    return Path(json.loads(result.stdout)["Dir"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; raise with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the thing polled for is not up yet
            last_error = exc
        time.sleep(interval)
    raise HarnessError(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last_error}" if last_error else "")
    )


_STARTED_LOGS: set[Path] = set()


@dataclass
class Server:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # A restart in the same run appends, so a crash test's log shows both lives.
        log = self.log_path.open("ab" if self.log_path in _STARTED_LOGS else "wb")
        _STARTED_LOGS.add(self.log_path)
        log.write(f"\n===== start {' '.join(map(str, self.argv))}\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [str(a) for a in self.argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        log.close()
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.running():
            raise HarnessError(f"{self.name} exited early; its log:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def http_ok(url: str, **kwargs: Any) -> bool:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code == 200
    except httpx.TransportError:
        return False


def kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "local", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "user", "user": {"token": token}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": "user"}}],
                "current-context": "local",
            }
        )
    )
    return path


def collector_tls(folder: Path) -> Certificates:
    """TLS for the collector under test: a CA and a certificate for 127.0.0.1 (tests/certs.py). The
    apiservers' audit webhooks trust the CA through ``certificate-authority``; so does this process,
    beside the usual CAs, through ``SSL_CERT_FILE`` (which httpx reads), so the tests reach the
    collector's https URLs as a client configured with the CA would."""
    import certifi

    certs = make_certificates(folder)
    bundle = folder / "trusted.pem"
    # Each harness (one cluster, the fleet) has its own CA and the session's collectors all stay up:
    # the bundle keeps trusting the CAs made before this one.
    earlier = os.environ.get("SSL_CERT_FILE")
    trusted = Path(earlier) if earlier and Path(earlier).is_file() else Path(certifi.where())
    bundle.write_text(trusted.read_text() + certs.ca.read_text())
    os.environ["SSL_CERT_FILE"] = str(bundle)
    return certs


def tls_flags(certs: Certificates) -> list[str | Path]:
    return ["--tls-cert", certs.cert, "--tls-key", certs.key]


def audit_webhook_kubeconfig(path: Path, url: str, certs: Certificates) -> Path:
    """The example webhook configuration the README points users to, with this run's https address
    of the collector and its CA."""
    webhook = yaml.safe_load((REPO / "samples" / "apiserver" / "audit-webhook.kubeconfig").read_text())
    webhook["clusters"][0]["cluster"]["server"] = url
    webhook["clusters"][0]["cluster"]["certificate-authority"] = str(certs.ca)
    path.write_text(yaml.safe_dump(webhook))
    return path
