"""API discovery through the real `kubernetes` client against a stand-in API server on loopback.

The stand-in serves the discovery documents an apiserver serves (/api/v1, /apis, /apis/<gv>), so
the client's kubeconfig loading, auth header and JSON handling all run for real. A real
kube-apiserver is exercised by the end-to-end suite.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kelemetry.errors import KelemetryError
from kelemetry.kube import discovery
from kelemetry.kube.kinds import KindResolver, ResourceInfo

DOCUMENTS: dict[str, Any] = {
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {"name": "pods", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
            {"name": "pods/status", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
            {"name": "nodes", "namespaced": False, "kind": "Node", "verbs": ["get"]},
        ],
    },
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "example.com",
                "versions": [{"groupVersion": "example.com/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "example.com/v1", "version": "v1"},
            },
            {
                "name": "broken.example.com",
                "versions": [{"groupVersion": "broken.example.com/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "broken.example.com/v1", "version": "v1"},
            },
        ],
    },
    "/apis/example.com/v1": {
        "kind": "APIResourceList",
        "groupVersion": "example.com/v1",
        "resources": [
            {"name": "widgetsets", "namespaced": True, "kind": "WidgetSet", "verbs": ["get"]},
            {"name": "widgetsets/status", "namespaced": True, "kind": "WidgetSet", "verbs": ["get"]},
            {"name": "gadgetries", "namespaced": False, "kind": "Gadget", "verbs": ["get"]},
        ],
    },
}


class _Handler(BaseHTTPRequestHandler):
    seen_auth: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen_auth.append(self.headers.get("Authorization"))
        document = DOCUMENTS.get(self.path.split("?")[0].rstrip("/"))
        if document is None:
            # An aggregated API that is down answers 503, as a real apiserver does.
            self.send_response(503)
            self.end_headers()
            return
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def apiserver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _kubeconfig(tmp_path: Path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


def test_discover_reads_every_group_and_marks_a_status_subresource(apiserver: str, tmp_path: Path) -> None:
    _Handler.seen_auth.clear()
    table = discovery.discover(_kubeconfig(tmp_path, apiserver))
    assert table[("", "Pod")] == ResourceInfo("pods", True, status=True)
    assert table[("", "Node")] == ResourceInfo("nodes", False)
    assert table[("example.com", "WidgetSet")] == ResourceInfo("widgetsets", True, status=True)
    # Irregular plurals only discovery knows: the fallback would have said "gadgets".
    assert table[("example.com", "Gadget")] == ResourceInfo("gadgetries", False)
    assert all("/" not in info.resource for info in table.values())
    assert set(_Handler.seen_auth) == {"Bearer t0ken"}
    resolver = KindResolver(table)
    assert resolver.resolve("example.com", "Gadget") == ResourceInfo("gadgetries", False)
    # Only discovery can say which custom resources have a status subresource.
    assert resolver.has_status("example.com", "widgetsets") is True
    assert resolver.has_status("example.com", "gadgetries") is False


def test_unreachable_cluster_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KelemetryError, match="API discovery failed"):
        discovery.discover(_kubeconfig(tmp_path, "http://127.0.0.1:9"))


def test_missing_kubeconfig_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KelemetryError, match="cannot load kubeconfig"):
        discovery.discover(str(tmp_path / "missing"))
