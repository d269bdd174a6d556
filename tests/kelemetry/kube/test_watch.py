"""The Events watcher through the real `kubernetes` client against a scripted stand-in apiserver:
list then watch, a dropped connection (reconnect from the last version), an ERROR 410 in the
stream and an HTTP 410 on the watch request (list again), and a prompt stop; the gaps a watch
reports (a relist after 410, a reconnect longer than the threshold).

The real apiserver restarting under the watcher is covered by the end-to-end suite.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from kelemetry.kube.watch import ResourceWatcher
from kelemetry.model.gaps import GapReason
from kelemetry.model.times import now_us


def event(uid: str, rv: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"uid": uid, "resourceVersion": rv, "name": uid},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Scheduled",
        "lastTimestamp": "2024-05-01T10:00:00Z",
    }


class _Apiserver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests: ClassVar[list[dict[str, str]]] = []
    lists: ClassVar[list[dict[str, Any]]] = []
    watches: ClassVar[list[Any]] = []

    def do_GET(self) -> None:
        query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        self.requests.append(query)
        if query.get("watch") != "true":
            self._json(200, self.lists.pop(0))
            return
        script = self.watches.pop(0) if self.watches else "hang"
        if isinstance(script, int):
            self._json(script, {"kind": "Status", "code": script, "reason": "Expired"})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        # Like kube-apiserver: a chunked stream, one watch event per chunk, flushed as it happens.
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if script == "hang":
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.05)
            return
        hold = 0.0
        if isinstance(script, dict):  # {"items": [...], "hold": seconds}: send, then stay open
            script, hold = script["items"], script["hold"]
        for item in script:
            line = json.dumps(item).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        deadline = time.monotonic() + hold
        while time.monotonic() < deadline:
            time.sleep(0.05)
        # Returning closes the connection mid-watch: a dropped stream.

    def _json(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[str]:
    _Apiserver.requests.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Apiserver)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    try:
        yield str(kubeconfig)
    finally:
        server.shutdown()
        server.server_close()


def wait_for(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_list_watch_drop_410_and_relist(apiserver: str) -> None:
    _Apiserver.lists[:] = [
        {"kind": "EventList", "metadata": {"resourceVersion": "100"}, "items": [event("e1", "90")]},
        {
            "kind": "EventList",
            "metadata": {"resourceVersion": "200"},
            "items": [event("e1", "90"), event("e3", "150")],
        },
        {"kind": "EventList", "metadata": {"resourceVersion": "300"}, "items": []},
    ]
    _Apiserver.watches[:] = [
        [{"type": "ADDED", "object": event("e2", "101")}, {"type": "MODIFIED", "object": event("e2", "102")}],
        [
            {"type": "BOOKMARK", "object": {"kind": "Event", "metadata": {"resourceVersion": "110"}}},
            {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}},
        ],
        410,
    ]
    received: list[tuple[str, str]] = []
    watcher = ResourceWatcher(
        apiserver, lambda items, rv: received.extend((i["metadata"]["uid"], rv) for _t, i in items)
    )
    watcher.start()
    try:
        wait_for(lambda: len(_Apiserver.requests) >= 7)
    finally:
        watcher.stop()
    versions = [(r.get("watch"), r.get("resourceVersion")) for r in _Apiserver.requests[:7]]
    assert versions == [
        (None, None),  # list
        ("true", "100"),  # watch from the list's version; the stream then drops
        ("true", "102"),  # reconnect from the last version seen
        (None, None),  # the stream said 410 Gone: list again
        ("true", "200"),
        (None, None),  # HTTP 410 on the watch request: list again
        ("true", "300"),
    ]
    assert [uid for uid, _rv in received] == ["e1", "e2", "e2", "e1", "e3"]
    assert received[0] == ("e1", "100") and received[-1] == ("e3", "200")
    assert watcher.relists == 2 and watcher.reconnects >= 1


def test_the_last_events_of_a_burst_are_handed_on_while_the_stream_stays_quiet(apiserver: str) -> None:
    _Apiserver.lists[:] = [{"kind": "EventList", "metadata": {"resourceVersion": "100"}, "items": []}]
    burst = [{"type": "ADDED", "object": event(f"e{i}", str(101 + i))} for i in range(3)]
    _Apiserver.watches[:] = [{"items": burst, "hold": 10}]
    received: list[str] = []
    watcher = ResourceWatcher(
        apiserver, lambda items, rv: received.extend(i["metadata"]["uid"] for _t, i in items)
    )
    watcher.start()
    try:
        wait_for(lambda: len(_Apiserver.requests) >= 2)
        started = time.monotonic()
        wait_for(lambda: len(received) == 3, timeout=5)
        # Well within the batch wait, not at the end of the quiet stream (10 s here, 30 s for real).
        assert time.monotonic() - started < 3
    finally:
        watcher.stop()


def test_resume_point_and_prompt_stop(apiserver: str) -> None:
    _Apiserver.lists[:] = []
    _Apiserver.watches[:] = ["hang"]
    watcher = ResourceWatcher(apiserver, lambda items, rv: None, resume_from="555")
    watcher.start()
    wait_for(lambda: _Apiserver.requests)
    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < 8
    assert _Apiserver.requests[0] == {
        "watch": "true",
        "resourceVersion": "555",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "30",
    }


def test_a_relist_after_410_reports_the_gap_from_the_last_event_seen_to_the_relist(apiserver: str) -> None:
    _Apiserver.lists[:] = [
        {"kind": "EventList", "metadata": {"resourceVersion": "100"}, "items": []},
        {"kind": "EventList", "metadata": {"resourceVersion": "200"}, "items": [event("e3", "150")]},
    ]
    _Apiserver.watches[:] = [
        {"items": [{"type": "ADDED", "object": event("e2", "101")}], "hold": 0.5},
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}],
    ]
    gaps: list[tuple[GapReason, int, int]] = []
    seen_at: list[int] = []

    def sink(items: list[Any], _rv: str) -> None:
        seen_at.extend(now_us() for _ in items)

    started = now_us()
    watcher = ResourceWatcher(apiserver, sink, on_gap=lambda *gap: gaps.append(gap))
    watcher.start()
    try:
        wait_for(lambda: gaps)
    finally:
        watcher.stop()
    ((reason, start, end),) = gaps
    assert reason is GapReason.RELIST
    # From when the watch last showed it was alive (the second watch's answer, after e2) to the
    # relist's answer: e3 arrived by the relist, after the gap's end.
    assert started <= seen_at[0] <= start <= end <= seen_at[1]
    assert watcher.relists == 1


def test_a_reconnect_longer_than_the_threshold_reports_a_gap_and_a_short_one_none(apiserver: str) -> None:
    _Apiserver.lists[:] = [{"kind": "EventList", "metadata": {"resourceVersion": "100"}, "items": []}] * 2
    for threshold, expected in ((0.0, [GapReason.RECONNECT]), (600.0, [])):
        _Apiserver.requests.clear()
        _Apiserver.watches[:] = [500, "hang"]
        gaps: list[tuple[GapReason, int, int]] = []
        watcher = ResourceWatcher(
            apiserver,
            lambda items, rv: None,
            on_gap=lambda reason, start, end, into=gaps: into.append((reason, start, end)),
            reconnect_gap_s=threshold,
        )
        failed = now_us()
        watcher.start()
        try:
            wait_for(lambda: len(_Apiserver.requests) >= 3)
            time.sleep(0.2)
        finally:
            watcher.stop()
        assert [reason for reason, _start, _end in gaps] == expected
        assert watcher.reconnects == 1
        for _reason, start, end in gaps:
            assert failed <= start < end <= now_us()
