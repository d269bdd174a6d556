"""The changes page (/changes) in headless Chromium against a real `kelemetry serve` loaded with the
recorded sample (cluster tracetest; user admin created, scaled, re-imaged, scaled and deleted
Deployment demo) and a name deleted and created again.

Covers: the header link, the histogram matching the API's counts, filters (cluster, user, verb,
errors only) kept in the URL and re-applied on reload, paging with "Older changes", a histogram bar
narrowing the range to its minute, a bad range answered with the API's reason, and a row opening
the object's trace. Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

import pytest
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select

from tests.browser.conftest import CLUSTER, Server, serving
from tests.browser.driver import Browser
from tests.factories import audit_event

pytestmark = pytest.mark.slow


def open_changes(browser: Browser, query: str = "") -> None:
    browser.open(f"/changes{query}")
    assert browser.wait_state(("ready", "error")) == "ready", browser.text()


def change_rows(browser: Browser) -> list[WebElement]:
    return browser.find_all("#changes-rows tr.change-row")


def cells(row: WebElement) -> list[str]:
    return [str(td.text) for td in row.find_elements("css selector", "td")]


def apply(browser: Browser) -> None:
    browser.find("#apply").click()
    browser.wait_state(("ready", "error"))
    assert browser.state() == "ready", browser.text()


def test_the_header_links_to_the_changes_page_and_its_histogram_counts_what_the_api_counts(
    browser: Browser, server: Server
) -> None:
    browser.open("/search")
    browser.wait_state(("ready", "error"))
    browser.find("#nav-changes").click()
    browser.wait_until(lambda b: urlparse(b.current_url).path == "/changes", 10, "the changes page")
    assert browser.wait_state(("ready", "error")) == "ready", browser.text()
    status, body = server.get("/api/kelemetry/changes", limit="1")
    assert status == 200, body
    bars = browser.find_all("#histogram g.bar")
    assert bars, "no histogram bars"
    shown = {
        name: sum(int(str(bar.get_attribute(f"data-{name}"))) for bar in bars)
        for name in ("requests", "warnings", "errors")
    }
    expected = {
        name: sum(bucket[name] for bucket in body["histogram"]) for name in ("requests", "warnings", "errors")
    }
    # The sample's failures are all routine (benign), so its histogram shows no errors.
    assert shown == expected and shown["requests"] > 100 and shown["errors"] == 0
    # Newest first, a page at a time.
    first = change_rows(browser)
    assert len(first) == 100
    times = [cells(row)[0] for row in first]
    assert times == sorted(times, reverse=True)
    assert "change" in browser.find("#changes-summary").text
    browser.screenshot("changes-page")


SAMPLE_HOUR = "?range=custom&start=2026-11-23T07:00:00&end=2026-11-23T08:00:00"


def test_filters_narrow_the_rows_and_stay_in_the_url(browser: Browser) -> None:
    # The sample's hour (the server also holds a 2024 stream by admin).
    open_changes(browser, SAMPLE_HOUR)
    Select(browser.find("#cluster")).select_by_value(CLUSTER)
    browser.find("#user").send_keys("admin")
    apply(browser)
    rows = change_rows(browser)
    assert [cells(row)[4] for row in rows] == ["delete", "patch/scale", "patch", "patch/scale", "create"]
    assert all(cells(row)[3] == "admin" and "default/demo" in cells(row)[2] for row in rows)
    patch_image = cells(rows[2])[6]
    assert 'image "nginx:1.27" -> "nginx:1.28"' in patch_image, patch_image
    query = parse_qs(urlparse(browser.current_url).query)
    assert query == {
        "cluster": [CLUSTER],
        "user": ["admin"],
        "range": ["custom"],
        # The browser writes a datetime-local value without its zero seconds.
        "start": ["2026-11-23T07:00"],
        "end": ["2026-11-23T08:00"],
    }
    assert len(browser.find_all("#histogram g.bar")) >= 1
    browser.screenshot("changes-admin")

    Select(browser.find("#verb")).select_by_value("patch")
    apply(browser)
    assert [cells(row)[4] for row in change_rows(browser)] == ["patch/scale", "patch", "patch/scale"]
    # The same URL opened again shows the same filters and rows.
    url = browser.current_url
    browser.open(url)
    assert browser.wait_state(("ready", "error")) == "ready"
    assert browser.find("#user").get_attribute("value") == "admin"
    assert str(Select(browser.find("#verb")).first_selected_option.get_attribute("value")) == "patch"
    assert len(change_rows(browser)) == 3


def test_the_samples_routine_failures_are_listed_as_benign_not_as_errors(browser: Browser) -> None:
    open_changes(browser)
    benign = [row for row in change_rows(browser) if "benign-row" in str(row.get_attribute("class"))]
    assert benign and {cells(row)[5] for row in benign} <= {"404 benign", "409 benign"}
    assert not browser.find_all("#changes-rows tr.error-row")
    open_changes(browser, "?errors=1")
    assert browser.find("#errors").is_selected() and not change_rows(browser)


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A store where a person's update was refused (403) beside a controller's routine conflict."""
    work = tmp_path_factory.mktemp("changes-failures")
    stream = [
        audit_event(verb="create", name="web-0", received=at(0), completed=at(0)),
        audit_event(
            verb="update",
            name="web-0",
            code=409,
            user="system:serviceaccount:kube-system:x",
            received=at(1),
            completed=at(1),
            audit_id="conflict",
        ),
        audit_event(
            verb="update", name="web-0", code=403, received=at(2), completed=at(2), audit_id="forbidden"
        ),
    ]
    log = work / "audit.log"
    log.write_text("".join(json.dumps(event) + "\n" for event in stream))
    with serving(work, "--store", str(work / "k.db"), "--cluster", "c1", "--replay", str(log)) as srv:
        yield srv


def at(second: int) -> str:
    return f"2024-05-01T10:00:{second:02d}.000000Z"


def test_errors_only_shows_the_real_failure_in_red(failing: Server) -> None:
    browser = Browser(failing.base_url).start()
    try:
        open_changes(browser, "?errors=1&range=custom&start=2024-05-01T09:00:00&end=2024-05-01T11:00:00")
        rows = change_rows(browser)
        assert [cells(row)[5] for row in rows] == ["403"]
        assert "error-row" in str(rows[0].get_attribute("class"))
        browser.screenshot("changes-errors")
    finally:
        browser.quit()


def test_older_changes_load_below_without_repeating_a_row(browser: Browser) -> None:
    open_changes(browser)
    more = browser.find("#more")
    assert more.is_displayed()
    first = [row.get_attribute("data-span") for row in change_rows(browser)]
    more.click()
    browser.wait_until(lambda b: len(change_rows(b)) > len(first), 10, "older rows")
    spans = [row.get_attribute("data-span") for row in change_rows(browser)]
    assert spans[: len(first)] == first
    assert len(set(spans)) == len(spans)


def test_a_histogram_bar_narrows_the_range_to_its_bucket(browser: Browser, server: Server) -> None:
    open_changes(browser, f"?cluster={CLUSTER}")
    status, body = server.get("/api/kelemetry/changes", cluster=CLUSTER, limit="1")
    assert status == 200, body
    bucket_us = body["bucket"]
    bar = browser.find_all("#histogram g.bar")[-1]
    start_us = int(str(bar.get_attribute("data-start")))
    requests = int(str(bar.get_attribute("data-requests")))
    bar.find_element("css selector", "rect.bar-hit").click()
    browser.wait_until(lambda b: "range=custom" in b.current_url, 10, "the range of the bar")
    assert browser.wait_state(("ready", "error")) == "ready", browser.text()
    assert browser.find("#range").get_attribute("value") == "custom"
    minute = datetime.fromtimestamp(start_us / 1_000_000, tz=UTC).strftime("%Y-%m-%d %H:%M")
    assert str(browser.find("#start").get_attribute("value")).replace("T", " ").startswith(minute)
    # The rows are the API's for exactly that bucket, and the histogram now counts only them.
    status, inside = server.get(
        "/api/kelemetry/changes",
        cluster=CLUSTER,
        start=str(start_us),
        end=str(start_us + bucket_us - 1),
        limit="100",
        histogram="false",
    )
    assert status == 200, inside
    assert [row.get_attribute("data-span") for row in change_rows(browser)] == [
        r["spanId"] for r in inside["data"]
    ]
    assert (
        sum(int(str(b.get_attribute("data-requests"))) for b in browser.find_all("#histogram g.bar"))
        == requests
    )
    browser.screenshot("changes-narrowed-to-a-bar")


def test_a_range_that_ends_before_it_starts_shows_the_apis_reason(browser: Browser) -> None:
    browser.open("/changes?range=custom&start=2026-11-23T08:00:00&end=2026-11-23T07:00:00")
    assert browser.wait_state(("ready", "error")) == "error"
    message = browser.find("#changes-message")
    browser.wait_until(lambda b: "start is after end" in message.text, 10, "the error message")
    assert "HTTP 400" in message.text
    assert not change_rows(browser)


def test_a_row_opens_the_objects_trace_at_that_moment(browser: Browser) -> None:
    open_changes(browser, f"{SAMPLE_HOUR}&cluster={CLUSTER}&user=admin&verb=create")
    (row,) = change_rows(browser)
    row.find_element("css selector", "td.what").click()
    browser.wait_until(lambda b: "/trace/" in b.current_url, 15, "navigation to the trace")
    browser.wait_rendered()
    assert "Deployment default/demo" in browser.find("#trace-title").text
    browser.screenshot("changes-opened-trace")
