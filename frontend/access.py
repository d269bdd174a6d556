"""Who may read what: the token guard in front of every route, and the login page of the web UI.

With a token configured (``KELEMETRY_TOKEN``), every request needs it except the health checks
(``/healthz``, ``/readyz``) and the login page itself: API clients and Prometheus send
``Authorization: Bearer <token>``; browsers log in once through ``/login``, which sets an HttpOnly,
SameSite=Strict session cookie (Secure over TLS) derived from the token, so the token itself is
never stored in the browser. ``public_query`` opens the query side (API and UI) on purpose; the
webhook and ``/metrics`` stay protected. The webhook checks its own bearer token (and counts
refusals), so the guard lets ``/audit`` through to it.

The guard is a plain ASGI middleware: it decides before any route runs, never buffers a body, and
costs one dictionary lookup per request when no token is set. It must not know the query routes:
it tells pages from API calls by what the client accepts (a browser navigating asks for HTML).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from frontend.api import STATIC_DIR, error_response

logger = logging.getLogger(__name__)

COOKIE = "kelemetry_session"
SESSION_SECONDS = 12 * 3600
LOGIN_PAGE = STATIC_DIR / "login.html"
# A login form is a token and a path; anything bigger is not one.
MAX_FORM_BYTES = 16 * 1024
STATE_KEY = "kelemetry_authenticated"

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login", "/logout", "/static/login.css"})


class Area(Enum):
    OPEN = "open"
    WEBHOOK = "webhook"
    METRICS = "metrics"
    QUERY = "query"


def area_of(path: str) -> Area:
    if path in OPEN_PATHS:
        return Area.OPEN
    if path == "/audit" or path.startswith("/audit/"):
        return Area.WEBHOOK
    if path == "/metrics":
        return Area.METRICS
    # Everything else, known route or not, is the query side: an unknown path is refused like a
    # known one, so the guard does not tell which routes exist.
    return Area.QUERY


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The configured token (None: no authentication) and whether the query side is public."""

    token: str | None = None
    public_query: bool = False

    @property
    def session(self) -> str | None:
        """The cookie value a login sets: a keyed hash of the token, so the browser never holds the
        token itself and a stolen cookie does not reveal it."""
        if self.token is None:
            return None
        return hmac.new(self.token.encode(), b"kelemetry web UI session", hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        if self.token is None:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())

    def authenticated(self, headers: dict[bytes, bytes]) -> bool:
        """Whether a request proves the token: a bearer header, or the login's session cookie."""
        if self.token is None:
            return True
        authorization = headers.get(b"authorization", b"")
        scheme, _, value = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self.token.encode()):
            return True
        session = _cookie(headers.get(b"cookie", b""), COOKIE)
        expected = self.session
        return session is not None and expected is not None and hmac.compare_digest(session, expected)

    def needs_token(self, area: Area) -> bool:
        if self.token is None or area in (Area.OPEN, Area.WEBHOOK):
            return False
        return not (area is Area.QUERY and self.public_query)


def _cookie(header: bytes, name: str) -> str | None:
    for part in header.decode("latin-1").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def is_authenticated(request: Request) -> bool:
    """Whether the guard saw the token on this request (always true when no token is configured)."""
    return bool(request.scope.get("state", {}).get(STATE_KEY, True))


class TokenGuard:
    """ASGI middleware: refuses a request without the token where the policy asks for it; API
    calls get a 401 JSON answer, browser page loads a redirect to the login page."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.policy.token is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        authenticated = self.policy.authenticated(headers)
        scope.setdefault("state", {})[STATE_KEY] = authenticated
        if authenticated or not self.policy.needs_token(area_of(scope["path"])):
            await self.app(scope, receive, send)
            return
        response: Response
        if scope["method"] in ("GET", "HEAD") and b"text/html" in headers.get(b"accept", b""):
            target = scope["path"]
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        else:
            response = error_response(
                401, "this server needs a token: send 'Authorization: Bearer <token>' or log in at /login"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="kelemetry"'
        await response(scope, receive, send)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (never another origin)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 0x20 for c in target):
        return "/"
    return target


def login_page(message: str | None, target: str, status: int = 200) -> Response:
    page = _template(LOGIN_PAGE)
    notice = f'<p class="login-error" role="alert">{html.escape(message)}</p>' if message else ""
    body = page.replace("<!--message-->", notice).replace("{{next}}", html.escape(target, quote=True))
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _template(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def login_router(policy: AccessPolicy) -> APIRouter:
    """``GET /login`` (the form), ``POST /login`` (check the token, set the session cookie) and
    ``POST /logout`` (clear it)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    def login_form(next: str | None = None) -> Response:
        if policy.token is None:
            return RedirectResponse(safe_next(next), status_code=303)
        return login_page(None, safe_next(next))

    @router.post("/login")
    async def login(request: Request) -> Response:
        if policy.token is None:
            return RedirectResponse("/", status_code=303)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return login_page("The form is too large.", "/", status=413)
        form = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=8)
        given = form.get("token", [""])[0]
        target = safe_next(form.get("next", ["/"])[0])
        if not policy.token_matches(given):
            logger.warning("web UI login refused: wrong token")
            return login_page("Wrong token. Try again.", target, status=401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            policy.session or "",
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post("/logout")
    def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response

    return router
