"""Logging in to a token-protected `kelemetry serve` in headless Chromium, and the UI under its
Content-Security-Policy.

A fresh server with ``KELEMETRY_TOKEN`` set and the deployment sample replayed: opening a trace
link lands on the login page; a wrong token shows the page again with a message; the right one goes
on to the trace that was asked for, which renders with no policy violation in the console (the
trace rows' indentation and time bars are set through the CSSOM, which the policy allows).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import CLUSTER, SAMPLE, Server, serving
from tests.browser.driver import Browser, missing_binaries

pytestmark = pytest.mark.slow

TOKEN = "browser-t0ken"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("guarded-server")
    replays = ("--replay", str(SAMPLE / "audit.log"), "--replay", str(SAMPLE / "events.jsonl"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KELEMETRY_TOKEN", TOKEN)  # inherited by the server process
        with serving(work, "--store", str(work / "k.db"), "--cluster", CLUSTER, *replays) as srv:
            yield srv


def csp_violations(browser: Browser) -> list[str]:
    return [line for line in browser.console_errors() if "Content Security Policy" in line]


def test_logging_in_leads_on_to_the_trace_asked_for(guarded: Server, tmp_path: Path) -> None:
    assert not missing_binaries(), missing_binaries()
    status, body = guarded.get("/api/kelemetry/clusters")
    assert status == 401, body
    with Browser(guarded.base_url) as browser:
        browser.open(
            f"/redirect?cluster={CLUSTER}&resource=deployments&namespace=default&name=demo&ts=2026-11-23T07:23:40Z"
        )
        browser.wait_until(lambda b: "/login" in b.current_url, 15, "the login page")
        browser.wait_for("#token")
        browser.screenshot("login-page")

        browser.find("#token").send_keys("not-the-token")
        browser.find("#login-submit").click()
        message = browser.wait_for(".login-error")
        assert "Wrong token" in message.text
        assert "/login" in browser.current_url
        browser.screenshot("login-wrong-token")

        browser.find("#token").send_keys(TOKEN)
        browser.find("#login-submit").click()
        browser.wait_until(lambda b: "/trace/" in b.current_url, 20, "the trace after logging in")
        browser.wait_rendered()
        browser.screenshot("login-then-trace")

        rows = [row for row in browser.find_all(".rows .row") if row.is_displayed()]
        assert len(rows) > 3, browser.text()[:500]
        indents = {
            browser.js("return getComputedStyle(arguments[0].querySelector('.label')).paddingLeft", row)
            for row in rows
        }
        assert len(indents) > 1, f"nested rows are indented through the CSSOM: {indents}"
        assert csp_violations(browser) == []
        cookie = browser.driver.get_cookie("kelemetry_session")
        assert cookie is not None and cookie["httpOnly"] and cookie.get("sameSite") == "Strict"
        assert TOKEN not in cookie["value"]

        # Every other page, logged in, runs under the policy too.
        for path, ready in (
            ("/search", "#name"),
            ("/changes", ".changes-form"),
            ("/object?cluster=tracetest&resource=deployments&namespace=default&name=demo", ".objectat"),
        ):
            browser.open(path)
            browser.wait_for(ready, timeout=20)
            assert "/login" not in browser.current_url, path
            assert csp_violations(browser) == [], path
