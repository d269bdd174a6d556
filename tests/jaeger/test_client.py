"""The client for Jaeger's query HTTP API (jaeger.client), against a stand-in Jaeger on loopback.

Covers: URLs that are not http(s)://host are refused; the query parameters of a search (service,
start, end, limit, compact tags JSON, operation) and of the service list; every failure — nobody
listening, an HTTP error status, invalid JSON, JSON of the wrong shape, a timeout — is a
JaegerError naming the URL and the reason.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from jaeger.client import JaegerClient, JaegerError
from tests.jaeger.fakejaeger import FakeJaeger, Reply, closed_port_url, serving


@pytest.fixture
def jaeger() -> Iterator[FakeJaeger]:
    with serving() as fake:
        yield fake


@pytest.mark.parametrize(
    "url",
    [
        "",
        "localhost:16686",
        "jaeger:16686",
        "ftp://jaeger:21",
        "http://",
        "https:///api",
        "/api/traces",
        "16686",
    ],
)
def test_urls_that_are_not_http_to_a_host_are_refused(url: str) -> None:
    with pytest.raises(JaegerError) as caught:
        JaegerClient(url)
    assert str(caught.value) == f"invalid Jaeger query URL {url!r}: expected http(s)://host:port"


@pytest.mark.parametrize("url", ["http://jaeger:16686", "https://jaeger.example.com/", "HTTP://127.0.0.1:1"])
def test_http_and_https_urls_are_accepted(url: str) -> None:
    client = JaegerClient(url)
    assert not client.base_url.endswith("/")


def test_services_are_listed(jaeger: FakeJaeger) -> None:
    jaeger.reply = Reply(body=json.dumps({"data": ["object", "audit", "event"], "total": 3}).encode())
    assert JaegerClient(jaeger.url + "/").services() == ["object", "audit", "event"]
    assert jaeger.requests == [("/api/services", {})]


def test_a_search_sends_jaegers_query_parameters(jaeger: FakeJaeger) -> None:
    client = JaegerClient(jaeger.url)
    found = client.find_traces(
        service="object",
        tags={"resource": "deployments", "name": "demo"},
        start_us=1_000,
        end_us=2_000,
        limit=7,
        operation="tracetest",
    )
    assert found == []
    ((path, params),) = jaeger.requests
    assert path == "/api/traces"
    assert params == {
        "service": ["object"],
        "start": ["1000"],
        "end": ["2000"],
        "limit": ["7"],
        "tags": ['{"resource":"deployments","name":"demo"}'],
        "operation": ["tracetest"],
    }


def test_a_search_without_tags_or_operation_leaves_them_out(jaeger: FakeJaeger) -> None:
    JaegerClient(jaeger.url).find_traces(service="object", tags={}, start_us=1, end_us=2)
    ((_path, params),) = jaeger.requests
    assert set(params) == {"service", "start", "end", "limit"}
    assert params["limit"] == ["100"]


def test_a_search_returns_the_traces_jaeger_sent(jaeger: FakeJaeger) -> None:
    trace = {"traceID": "ab" * 16, "spans": [], "processes": {}, "warnings": None}
    jaeger.reply = Reply(body=json.dumps({"data": [trace], "total": 1}).encode())
    assert JaegerClient(jaeger.url).find_traces(service="object", tags={}, start_us=1, end_us=2) == [trace]
    jaeger.reply = Reply(body=b'{"data": null}')
    assert JaegerClient(jaeger.url).find_traces(service="object", tags={}, start_us=1, end_us=2) == []


def test_nobody_listening_is_a_clear_error() -> None:
    url = closed_port_url()
    with pytest.raises(JaegerError) as caught:
        JaegerClient(url).services()
    assert str(caught.value).startswith(f"cannot reach Jaeger at {url}: ")
    assert "refused" in str(caught.value).lower()


def test_an_http_error_names_the_status_the_url_and_the_body(jaeger: FakeJaeger) -> None:
    jaeger.reply = Reply(status=500, body=b'{"errors":[{"code":500,"msg":"storage is down"}]}')
    with pytest.raises(JaegerError) as caught:
        JaegerClient(jaeger.url).find_traces(service="object", tags={}, start_us=1, end_us=2)
    message = str(caught.value)
    assert message.startswith(f"Jaeger answered 500 for {jaeger.url}/api/traces?service=object")
    assert message.endswith(': {"errors":[{"code":500,"msg":"storage is down"}]}')


def test_a_long_error_body_is_cut(jaeger: FakeJaeger) -> None:
    jaeger.reply = Reply(status=502, body=b"x" * 5000)
    with pytest.raises(JaegerError) as caught:
        JaegerClient(jaeger.url).services()
    assert str(caught.value).endswith(": " + "x" * 300)


def test_invalid_json_is_a_clear_error(jaeger: FakeJaeger) -> None:
    jaeger.reply = Reply(body=b"<html>not the query API</html>")
    with pytest.raises(JaegerError) as caught:
        JaegerClient(jaeger.url).services()
    assert str(caught.value) == f"Jaeger sent invalid JSON for {jaeger.url}/api/services"


@pytest.mark.parametrize("body", [b"[]", b"null"])
def test_json_that_is_not_an_object_is_a_clear_error(jaeger: FakeJaeger, body: bytes) -> None:
    """Something else answering at the URL (a proxy, another API) must not crash the caller."""
    jaeger.reply = Reply(body=body)
    client = JaegerClient(jaeger.url)
    with pytest.raises(JaegerError):
        client.find_traces(service="object", tags={}, start_us=1, end_us=2)
    with pytest.raises(JaegerError):
        client.services()


def test_a_timeout_is_a_clear_error(jaeger: FakeJaeger) -> None:
    jaeger.reply = Reply(body=b"{}", delay_until=threading.Event())
    with pytest.raises(JaegerError) as caught:
        JaegerClient(jaeger.url, timeout_seconds=0.2).services()
    assert str(caught.value).startswith(f"cannot reach Jaeger at {jaeger.url}: ")
    assert "timed out" in str(caught.value)
