"""A small client for Jaeger's query HTTP API (``/api/traces``), as served by Jaeger v1 and v2.

Standard library only, so the Jaeger boundary stays free of our other dependencies. Failures are
raised as ``JaegerError`` with the URL and the reason; callers wrap it into their own errors.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, cast

from jaeger.model import Trace


class JaegerError(Exception):
    pass


class JaegerClient:
    def __init__(self, base_url: str, *, timeout_seconds: float = 15.0) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise JaegerError(f"invalid Jaeger query URL {base_url!r}: expected http(s)://host:port")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout_seconds

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise JaegerError(f"Jaeger answered {exc.code} for {url}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise JaegerError(f"cannot reach Jaeger at {self.base_url}: {reason}") from exc
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise JaegerError(f"Jaeger sent invalid JSON for {url}") from exc
        if not isinstance(payload, dict):
            raise JaegerError(f"Jaeger sent {type(payload).__name__} instead of a JSON object for {url}")
        return payload

    def services(self) -> list[str]:
        data = self._get("/api/services").get("data") or []
        return [str(name) for name in data]

    def find_traces(
        self,
        *,
        service: str,
        tags: dict[str, str],
        start_us: int,
        end_us: int,
        limit: int = 100,
        operation: str | None = None,
    ) -> list[Trace]:
        params = {
            "service": service,
            "start": str(start_us),
            "end": str(end_us),
            "limit": str(limit),
        }
        if tags:
            params["tags"] = json.dumps(tags, separators=(",", ":"))
        if operation:
            params["operation"] = operation
        payload = self._get("/api/traces", params)
        return cast(list[Trace], payload.get("data") or [])
