"""Who may read what (frontend.access) and the headers of every answer (frontend.headers).

The app is the one ``kelemetry serve`` runs: a collector (webhook, /metrics, status) and the query
side over the recorded Deployment sample, with ``KELEMETRY_TOKEN``'s value in its settings. Covers:
every protected route refused without the token (401 JSON for API calls, a redirect to the login
page for a browser's page load), answered with the bearer token or the login's cookie; the health
check open; the cookie login flow (wrong token: the page again with a message; right token: an
HttpOnly, SameSite=Strict cookie, Secure over https, that is not the token); ``--public-query``; the
webhook's 415 for anything but JSON; the security headers on pages, API answers and refusals; no
/docs; and static pages that a Content-Security-Policy without inline script leaves working.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import httpx
import orjson
import pytest

from frontend.backend import StoreBackend
from frontend.headers import CONTENT_SECURITY_POLICY
from frontend.query import QueryService
from frontend.views import ViewStore
from kelemetry.app import Collector, create_app
from kelemetry.settings import ServeSettings, StoreSettings, WebhookSettings
from kelemetry.store.sqlite import StoreReader
from tests.factories import audit_event

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TOKEN = "s3cret-t0ken"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
JSON_BODY = {"Content-Type": "application/json"}
STATIC = Path(__file__).resolve().parents[2] / "frontend" / "static"
BATCH = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [audit_event()]})

# Query side and collector routes, each as a client would call it.
QUERY_ROUTES = [
    "/api/services",
    "/api/operations",
    "/api/traces?service=tracing&operation=tracetest&tags=%7B%22resource%22%3A%22deployments%22%2C%22name%22%3A%22demo%22%7D&lookback=100000d",
    "/api/traces/ff20000000e1e3e70000000000001234",
    "/api/kelemetry/modes",
    "/api/kelemetry/clusters",
    "/api/kelemetry/lookup?resource=deployments&name=demo",
    "/api/kelemetry/changes",
    "/api/kelemetry/status",
    "/api/kelemetry/fleet",
    "/redirect?cluster=tracetest&resource=deployments&name=demo&ts=2026-11-23T07:25:00Z",
    "/static/app.js",
    "/static/app.css",
    "/no-such-route",
]
PAGES = [
    "/",
    "/search",
    "/changes",
    "/object?resource=pods&name=x",
    "/explain?resource=pods&name=x",
    "/trace/ff20000000e1e3e70000000000001234",
]


@contextmanager
def serving(
    tmp_path: Path, sample_store: Path, *, token: str | None = TOKEN, public_query: bool = False
) -> Iterator[TestClient]:
    settings = ServeSettings(
        store=StoreSettings(path=str(tmp_path / "k.db")),
        webhook=WebhookSettings(token=token),
        public_query=public_query,
    )
    collector = Collector(settings)
    service = QueryService(StoreBackend(StoreReader(sample_store)), ViewStore(tmp_path / "views.db"))
    app = create_app(collector, service)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


@pytest.fixture
def client(tmp_path: Path, sample_store: Path) -> Iterator[TestClient]:
    with serving(tmp_path, sample_store) as guarded:
        yield guarded


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, (response.request.url, response.status_code, response.text)
    body = response.json()
    assert "token" in body["error"] and body["errors"][0]["code"] == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text


@pytest.mark.parametrize("path", [*QUERY_ROUTES, "/metrics"], ids=lambda p: p.split("?")[0])
def test_every_route_needs_the_token(client: TestClient, path: str) -> None:
    assert_401(client.get(path))
    assert_401(client.get(path, headers={"Authorization": f"Bearer {TOKEN}x"}))
    assert_401(client.get(path, headers={"Authorization": TOKEN}))
    assert_401(client.get(path, headers={"Cookie": f"kelemetry_session={TOKEN}"}))

    answered = client.get(path, headers=BEARER)

    # Past the guard: the route's own answer (a 404 for the unknown view and the unknown route).
    assert answered.status_code != 401, answered.text
    assert answered.status_code in (200, 302, 404), answered.text


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.split("?")[0])
def test_a_page_load_without_the_token_goes_to_the_login_page(client: TestClient, path: str) -> None:
    response = client.get(path, headers=HTML)

    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/login?next=")
    assert unquote(location.removeprefix("/login?next=")) == path
    # A script (not a browser navigating) gets the API's answer.
    assert_401(client.get(path))
    assert client.get(path, headers={**HTML, **BEARER}).status_code == 200


def test_health_and_the_login_page_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    login = client.get("/login?next=/search", headers=HTML)
    assert login.status_code == 200
    assert 'name="next" value="/search"' in login.text
    assert client.get("/static/login.css").status_code == 200


def test_the_webhook_keeps_its_own_token_check(client: TestClient) -> None:
    refused = client.post("/audit/c1", content=BATCH, headers=JSON_BODY)
    accepted = client.post("/audit/c1", content=BATCH, headers={**JSON_BODY, **BEARER})

    reason = "missing or wrong bearer token"
    assert refused.status_code == 401
    assert refused.json() == {"error": reason, "errors": [{"code": 401, "msg": reason}]}
    assert (accepted.status_code, accepted.json()) == (200, {"accepted": 1})


def test_logging_in_through_the_page_sets_a_strict_httponly_cookie(client: TestClient) -> None:
    wrong = client.post("/login", data={"token": "guess", "next": "/search"})
    assert wrong.status_code == 401
    assert "Wrong token" in wrong.text and 'value="/search"' in wrong.text
    assert "set-cookie" not in wrong.headers
    assert_401(client.get("/api/services"))

    right = client.post("/login", data={"token": TOKEN, "next": "/trace/ff2?x=1"})

    assert right.status_code == 303 and right.headers["location"] == "/trace/ff2?x=1"
    cookie = right.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attributes, "plain http: a Secure cookie would never come back"
    value = cookie.split(";")[0].split("=", 1)[1]
    assert TOKEN not in value, "the cookie holds a value derived from the token, not the token"
    # The client keeps the cookie, as a browser does.
    assert client.get("/api/services").status_code == 200
    assert client.get("/", headers=HTML).status_code == 200
    assert client.get("/metrics").status_code == 200

    out = client.post("/logout")
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert_401(client.get("/api/services"))


def test_the_cookie_is_secure_over_https(tmp_path: Path, sample_store: Path) -> None:
    with serving(tmp_path, sample_store) as plain:
        secure = TestClient(plain.app, base_url="https://testserver", follow_redirects=False)
        response = secure.post("/login", data={"token": TOKEN})
    assert response.status_code == 303
    assert "secure" in {part.strip().lower() for part in response.headers["set-cookie"].split(";")}


@pytest.mark.parametrize(
    "target",
    ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", ""],
    ids=["protocol-relative", "absolute", "backslash", "javascript", "empty"],
)
def test_after_login_the_browser_stays_on_this_server(client: TestClient, target: str) -> None:
    response = client.post("/login", data={"token": TOKEN, "next": target})
    assert (response.status_code, response.headers["location"]) == (303, "/")


def test_the_login_page_escapes_what_it_repeats(client: TestClient) -> None:
    page = client.get("/login", params={"next": '/x"><script>alert(1)</script>'})
    assert "<script>" not in page.text
    assert "&quot;&gt;&lt;script&gt;" in page.text


def test_without_a_token_there_is_nothing_to_log_in_to(tmp_path: Path, sample_store: Path) -> None:
    with serving(tmp_path, sample_store, token=None) as open_client:
        assert open_client.get("/api/services").status_code == 200
        assert open_client.get("/metrics").status_code == 200
        assert open_client.get("/login?next=/search").headers["location"] == "/search"
        status = open_client.get("/api/kelemetry/status").json()
    assert status["store"].endswith("k.db")


def test_public_query_opens_traces_but_not_the_webhook_or_metrics(tmp_path: Path, sample_store: Path) -> None:
    with serving(tmp_path, sample_store, public_query=True) as client:
        for path in QUERY_ROUTES:
            assert client.get(path).status_code != 401, path
        assert client.get("/", headers=HTML).status_code == 200
        assert_401(client.get("/metrics"))
        assert client.post("/audit/c1", content=BATCH, headers=JSON_BODY).status_code == 401
        anonymous = client.get("/api/kelemetry/status").json()
        holder = client.get("/api/kelemetry/status", headers=BEARER).json()

    assert "store" not in anonymous, "where the data lies is not for anonymous readers"
    assert holder["store"].endswith("k.db")


def test_the_status_page_hides_the_store_from_a_reader_without_the_token(client: TestClient) -> None:
    assert_401(client.get("/api/kelemetry/status"))
    assert "store" in client.get("/api/kelemetry/status", headers=BEARER).json()


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ],
    ids=["none", "text-plain", "text-plain-charset", "form", "multipart"],
)
def test_the_webhook_accepts_only_json(tmp_path: Path, sample_store: Path, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    with serving(tmp_path, sample_store, token=None) as client:
        # What a cross-origin page can send without a CORS preflight.
        refused = client.post(
            "/audit/c1", content=BATCH, headers={**headers, "Origin": "https://evil.example"}
        )
        metrics = client.get("/metrics").text
        accepted = client.post(
            "/audit/c1", content=BATCH, headers={"Content-Type": "application/json; charset=utf-8"}
        )

    assert refused.status_code == 415
    assert "application/json" in refused.json()["error"]
    assert "kelemetry_webhook_media_type_total 1" in metrics
    assert accepted.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/", {**HTML, **BEARER}),
        ("GET", "/", HTML),
        ("GET", "/login", HTML),
        ("GET", "/api/services", BEARER),
        ("GET", "/api/services", {}),
        ("GET", "/api/kelemetry/lookup?resource=deployments", BEARER),
        ("GET", "/static/app.js", BEARER),
        ("GET", "/metrics", BEARER),
        ("GET", "/healthz", {}),
        ("POST", "/audit/c1", {"Content-Type": "text/plain"}),
    ],
    ids=[
        "page",
        "login-redirect",
        "login",
        "api",
        "api-401",
        "api-400",
        "static",
        "metrics",
        "healthz",
        "webhook",
    ],
)
def test_security_headers_on_every_answer(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = client.request(method, path, headers=headers, content=BATCH if method == "POST" else None)

    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["frame-ancestors"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_no_api_docs_from_a_cdn(tmp_path: Path, sample_store: Path, path: str) -> None:
    with serving(tmp_path, sample_store, token=None) as client:
        response = client.get(path)
    assert response.status_code == 404
    assert "cdn" not in response.text.lower()


class _InlineFinder(HTMLParser):
    """Everything in a page that a CSP without 'unsafe-inline' refuses, and every outside URL."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "style":
            self.blocked.append("<style>")
        if tag == "script" and not values.get("src"):
            self.blocked.append("inline <script>")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.blocked.append(f"{tag} {name}=")
            if value and re.match(r"(https?:)?//", value):
                self.blocked.append(f"outside URL {value}")


@pytest.mark.parametrize("page", sorted(p.name for p in STATIC.glob("*.html")))
def test_static_pages_have_nothing_the_policy_blocks(page: str) -> None:
    finder = _InlineFinder()
    finder.feed((STATIC / page).read_text())
    assert finder.blocked == []


def test_scripts_set_no_style_attributes_and_load_nothing_from_outside() -> None:
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        assert 'setAttribute("style"' not in text, script.name
        assert not re.search(r"""(import|from)\s*\(?\s*["']https?://""", text), script.name
        assert "eval(" not in text and "new Function(" not in text, script.name


def test_the_policy_is_one_string_for_all(client: TestClient) -> None:
    assert client.get("/healthz").headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_a_refusal_quoting_a_huge_field_is_bounded_in_the_log_and_the_answer(
    tmp_path: Path, sample_store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "K" * 1_000_000
    body = orjson.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [{**audit_event(), "kind": huge}]}
    )
    with serving(tmp_path, sample_store, token=None) as client:
        response = client.post("/audit/c1", content=body, headers=JSON_BODY)

    assert response.status_code == 422
    assert len(response.json()["error"]) < 1_000
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and all(len(line) < 1_000 for line in refusals)
