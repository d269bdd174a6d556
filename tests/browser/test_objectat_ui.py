"""The object at a moment in headless Chromium, on the replayed Deployment sample: from the scale
request's row in the trace page's detail panel to the Deployment's manifest as of that request
(``spec.replicas: 4``), the revision picker, and a side-by-side diff against a later revision
(the scale back to 2). Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select

from tests.browser.conftest import Server
from tests.browser.driver import Browser
from tests.browser.test_ui import open_view, row_label, rows

pytestmark = pytest.mark.slow

TREE_MODE = "00000000"
DEMO = "cluster=tracetest&group=apps&resource=deployments&namespace=default&name=demo"


def scale_rows(browser: Browser) -> list[WebElement]:
    return [r for r in rows(browser, "") if "admin patch scale" in row_label(r)] or [
        r for r in browser.find_all('.rows .row[data-source="audit"]') if "admin patch scale" in row_label(r)
    ]


def open_object_from_the_scale_request(browser: Browser, server: Server) -> dict[str, list[str]]:
    open_view(browser, server, TREE_MODE)
    found = scale_rows(browser)
    assert len(found) == 2, [row_label(r) for r in browser.find_all('.rows .row[data-source="audit"]')]
    found[0].find_element("css selector", ".label").click()
    link = browser.wait_for("#detail #object-at-link")
    assert link.text.startswith("object at this moment")
    query = parse_qs(urlparse(str(link.get_attribute("href"))).query)
    browser.screenshot("object-at-link-in-the-detail-panel")
    link.click()
    assert browser.wait_state(("ready", "error")) == "ready", browser.text()[:800]
    return query


def test_the_scale_request_opens_the_deployment_as_it_was_then(browser: Browser, server: Server) -> None:
    query = open_object_from_the_scale_request(browser, server)
    assert (
        query["name"] == ["demo"]
        and query["resource"] == ["deployments"]
        and query["cluster"] == ["tracetest"]
    )
    assert urlparse(browser.current_url).path == "/object"
    assert browser.find("#objectat-title").text == "Deployment default/demo"
    manifest = browser.find("#manifest").text
    assert "\n  replicas: 4\n" in manifest and "\nkind: Deployment" in "\n" + manifest, manifest[:400]
    assert Select(browser.find("#revision")).first_selected_option.get_attribute("value") == "276"
    assert "reconstructed" in browser.find("#objectat-notes").text
    assert "admin" in browser.find("#revision-summary").text
    browser.screenshot("object-at-the-scale-request")

    # The revision before it: the old replica count.
    Select(browser.find("#revision")).select_by_value("275")
    browser.wait_until(lambda b: "rv=275" in b.current_url and b.state() == "ready", 10, "revision 275")
    assert "\n  replicas: 2\n" in browser.find("#manifest").text

    # And back to the trace, at that revision's moment.
    browser.find("#trace-link").click()
    browser.wait_until(lambda b: "/trace/" in b.current_url, 10, "the trace page")
    browser.wait_rendered()


def test_a_side_by_side_diff_against_a_later_revision(browser: Browser, server: Server) -> None:
    open_object_from_the_scale_request(browser, server)
    Select(browser.find("#compare")).select_by_value("378")  # the scale back to 2
    table = browser.wait_for("#sbs")
    changed = table.find_elements("css selector", 'tr[data-kind="changed"]')
    pairs = [
        (r.find_element("css selector", ".sbs-left").text, r.find_element("css selector", ".sbs-right").text)
        for r in changed
    ]
    assert ("  replicas: 4", "  replicas: 2") in pairs, pairs
    assert "rv 276" in table.find_element("css selector", ".sbs-left-head").text
    assert "rv 378" in table.find_element("css selector", ".sbs-right-head").text
    assert "line(s) differ" in browser.find("#diff-summary").text
    assert parse_qs(urlparse(browser.current_url).query)["to"] == ["378"]
    browser.screenshot("object-at-side-by-side-diff")


def test_an_unknown_moment_shows_the_reason(browser: Browser, server: Server) -> None:
    browser.open(f"/object?{DEMO}&at=2026-11-23T07:00:00Z")
    assert browser.wait_state(("ready", "error")) == "error"
    message = browser.find("#error-message").text
    assert "first known is rv 245 at 2026-11-23T07:23:30.571331Z" in message, message


def test_a_reused_name_links_to_the_other_object(browser: Browser, server: Server) -> None:
    # The browser server also replays a Deployment "reuse" deleted and created again (uids d-1, d-2).
    browser.open("/object?cluster=tracetest&group=apps&resource=deployments&namespace=default&name=reuse")
    assert browser.wait_state(("ready", "error")) == "ready", browser.text()[:600]
    assert "uid d-2" in browser.find(".objectat-head").text
    browser.find("#incarnations a").click()
    browser.wait_until(lambda b: "uid=d-1" in b.current_url and b.state() == "ready", 10, "the other object")
    assert "uid d-1" in browser.find(".objectat-head").text
    assert "uid d-2" in browser.find("#incarnations").text
