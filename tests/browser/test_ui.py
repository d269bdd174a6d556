"""The web UI in headless Chromium against a real `kelemetry serve` loaded with the recorded sample
(samples/deployment: Deployment demo → 2 ReplicaSets → 8 Pods, cluster tracetest)."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select

from tests.browser.conftest import Server
from tests.browser.driver import Browser
from tests.browser.synthetic import big_trace, serve_trace_script

pytestmark = pytest.mark.slow

VIEW_URL = re.compile(r"/trace/(ff[0-9a-f]{8}e1e3e7[0-9a-f]{16})(?:\?|$)")
TRACING_FULL = "21000000"


def view_id_of(url: str) -> str:
    match = VIEW_URL.search(url)
    assert match, f"not a trace URL: {url}"
    return match.group(1)


def open_view(browser: Browser, server: Server, mode: str, query: str = "") -> str:
    view_id = server.lookup("demo", "deployments", "apps", "default", mode)
    browser.open(f"/trace/{view_id}{query}")
    browser.wait_rendered()
    return view_id


def rows(browser: Browser, kind: str) -> list[WebElement]:
    return [r for r in browser.find_all(f'.rows .row[data-kind="{kind}"]') if r.is_displayed()]


def row_label(row: WebElement) -> str:
    return str(row.find_element("css selector", ".label .name").text)


def deployment_row(browser: Browser) -> WebElement:
    found = [r for r in rows(browser, "Deployment") if row_label(r) == "Deployment default/demo"]
    assert len(found) == 1, f"expected one 'Deployment default/demo' row; page: {browser.text()[:600]!r}"
    return found[0]


def selected(browser: Browser, css: str) -> str:
    """The value of the selected option of a <select>."""
    return str(Select(browser.find(css)).first_selected_option.get_attribute("value"))


def click_fresh(browser: Browser, css: str, attempts: int = 5) -> WebElement:
    """Click the first element matching `css`, finding it again if the page replaced it meanwhile
    (markers are redrawn when the detail panel changes the timeline's width)."""
    for attempt in range(attempts):
        try:
            element = browser.find(css)
            element.click()
            return element
        except StaleElementReferenceException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


def click_diff_marker(browser: Browser, row: WebElement) -> tuple[WebElement, str]:
    """Click the first marker of `row` whose log has a diff; returns (diff <pre>, log index)."""
    markers = row.find_elements("css selector", '.mk[data-diff="1"]')
    assert markers, "the row has no marker of a log with a diff"
    marker = markers[0]
    log = str(marker.get_attribute("data-log"))
    marker.click()
    pre = browser.wait_for(f'#detail .log-detail[data-log="{log}"] pre.diff')
    return pre, log


def test_search_by_name_suggestion_opens_the_trace(browser: Browser, server: Server) -> None:
    browser.open("/")
    assert browser.wait_state(("ready", "error")) == "ready", browser.text()
    Select(browser.find("#cluster")).select_by_value("tracetest")
    choices = browser.find_all("#resource-list option")
    kinds = [str(o.get_attribute("value")) for o in choices]
    assert "deployments.apps" in kinds, f"resource choices: {kinds}"
    browser.find("#resource").send_keys("deployments.apps")
    browser.find("#namespace").send_keys("default")
    browser.find("#name").send_keys("de")
    suggestion = browser.wait_for('#name-suggestions li[data-name="demo"]')
    assert "Deployment" in suggestion.text and "default/demo" in suggestion.text, suggestion.text
    browser.screenshot("search-page")
    suggestion.click()
    assert browser.find("#name").get_attribute("value") == "demo"
    assert browser.find("#resource").get_attribute("value") == "deployments.apps"
    browser.find("#submit").click()

    browser.wait_until(lambda b: "/trace/" in b.current_url, 15, "navigation to the trace page")
    timing = browser.wait_rendered()
    assert timing["totalMs"] > 0 and timing["renderMs"] >= 0 and timing["fetchMs"] > 0, timing
    view_id = view_id_of(browser.current_url)
    _, modes = server.get("/api/kelemetry/modes")
    assert view_id[2:10] == modes["default"], f"searched in mode {view_id[2:10]}, not {modes['default']}"
    row = deployment_row(browser)
    assert "target" in str(row.get_attribute("class")), "the looked-up object is not marked"
    assert "Deployment default/demo" in browser.find("#trace-title").text


def test_tree_expands_from_deployment_to_pod(browser: Browser, server: Server) -> None:
    open_view(browser, server, TRACING_FULL)
    deployment = deployment_row(browser)
    assert deployment.get_attribute("data-depth") == "0"
    replicasets = rows(browser, "ReplicaSet")
    assert len(replicasets) == 2, f"expected the 2 ReplicaSets under the Deployment: {browser.text()[:600]!r}"
    assert all(r.get_attribute("data-depth") == "1" for r in replicasets)
    # The looked-up Deployment's ReplicaSets open with it: their 8 Pods show at once.
    assert len(rows(browser, "Pod")) == 8

    replicaset = replicasets[0]
    rs_name = row_label(replicaset).split("/", 1)[1]
    replicaset.find_element("css selector", ".tg").click()
    browser.wait_until(
        lambda b: len(rows(b, "Pod")) == 4, 5, "the other ReplicaSet's Pods after collapsing one"
    )
    assert replicaset.get_attribute("aria-expanded") == "false"
    replicaset.find_element("css selector", ".tg").click()
    browser.wait_until(lambda b: len(rows(b, "Pod")) == 8, 5, "Pod rows after expanding a ReplicaSet again")
    pods = [p for p in rows(browser, "Pod") if row_label(p).startswith(f"Pod default/{rs_name}-")]
    assert len(pods) == 4, [row_label(p) for p in rows(browser, "Pod")]
    for pod in pods:
        assert pod.get_attribute("data-depth") == "2"
    assert replicaset.get_attribute("aria-expanded") == "true"
    # each Pod row has its bar and log markers on the shared axis
    assert pods[0].find_elements("css selector", ".lane .bar")
    assert pods[0].find_elements("css selector", ".lane .mk")
    browser.screenshot("tree-expanded-to-pod")


def test_request_diff_opens_in_the_detail_panel(browser: Browser, server: Server) -> None:
    open_view(browser, server, TRACING_FULL)
    pre, log = click_diff_marker(browser, deployment_row(browser))
    lines = [line for line in pre.text.splitlines() if line.strip()]
    assert any(" -> " in line for line in lines), f"no 'path old -> new' line in {pre.text!r}"
    assert all(re.match(r"^\S+ .+ -> .+$", line) for line in lines), lines
    detail = browser.find("#detail")
    assert "Deployment default/demo" in detail.find_element("css selector", "h2").text
    assert "audit" in detail.text  # the request's fields are listed with the diff
    query = parse_qs(urlparse(browser.current_url).query)
    assert query.get("log") == [log], browser.current_url
    assert query.get("span") == [deployment_row(browser).get_attribute("data-span-id")]
    browser.screenshot("diff-panel")


def test_errors_are_highlighted(browser: Browser, server: Server) -> None:
    # The sample's failures are all routine (benign; see test_first_view): a person's conflicting
    # updates, in a trace served in place of the API's, are real errors.
    browser.add_script_on_new_document(
        serve_trace_script(big_trace(replicasets=1, pods_per_replicaset=2, logs=300))
    )
    open_view(browser, server, TRACING_FULL)
    row = deployment_row(browser)
    errors = row.find_elements("css selector", ".mk.sev-error")
    assert errors, "alice's 409 Conflict updates of the Deployment are not marked as errors"
    assert row.find_element("css selector", ".flag-error").text.isdigit()
    errors[0].click()
    message = browser.wait_for("#detail .log-detail .msg-error")
    assert "Conflict" in message.text, message.text
    assert browser.find("#detail .log-item.selected.sev-error")


def test_copied_url_reopens_the_same_view(browser: Browser, fresh_browser: Browser, server: Server) -> None:
    view_id = open_view(browser, server, TRACING_FULL)
    pod = browser.wait_until(lambda b: rows(b, "Pod"), 5, "Pod rows")[0]
    pod_label = row_label(pod)
    pod_span = str(pod.get_attribute("data-span-id"))
    markers = pod.find_elements("css selector", '.mk[data-diff="1"]')
    assert markers, f"{pod_label} has no marker of a log with a diff"
    log = str(markers[0].get_attribute("data-log"))
    markers[0].click()
    shown = browser.wait_for(f'#detail .log-detail[data-log="{log}"]').text
    url = browser.current_url
    assert view_id_of(url) == view_id
    assert parse_qs(urlparse(url).query) == {"span": [pod_span], "log": [log]}, url

    def assert_same(b: Browser) -> None:
        b.wait_rendered()
        assert view_id_of(b.current_url) == view_id
        assert selected(b, "#mode-select") == "tracing"
        assert selected(b, "#scope-select") == "full"
        selected_row = b.wait_for(f'.rows .row.selected[data-span-id="{pod_span}"]')
        assert row_label(selected_row) == pod_label
        assert b.find("#detail h2").text == pod_label
        assert b.wait_for(f'#detail .log-detail[data-log="{log}"]').text == shown

    fresh_browser.open(url)
    assert_same(fresh_browser)
    fresh_browser.driver.refresh()
    assert_same(fresh_browser)


def test_switching_mode_and_scope_rewrites_the_view_id(browser: Browser, server: Server) -> None:
    view_id = open_view(browser, server, TRACING_FULL)
    assert rows(browser, "ReplicaSet"), "the full-tree view shows the ReplicaSets"
    assert not browser.find_all('.rows .row[data-source="audit"]'), "tracing mode folds requests into logs"

    Select(browser.find("#mode-select")).select_by_value("tree")
    browser.wait_until(lambda b: view_id_of(b.current_url) != view_id, 15, "a new URL after the mode switch")
    browser.wait_rendered()
    tree_id = view_id_of(browser.current_url)
    assert tree_id[2:10] == "01000000", tree_id
    assert tree_id[:2] + tree_id[10:] == view_id[:2] + view_id[10:]
    assert browser.find_all('.rows .row[data-source="audit"]'), "tree mode shows requests as spans"

    Select(browser.find("#scope-select")).select_by_value("object")
    browser.wait_until(lambda b: view_id_of(b.current_url) != tree_id, 15, "a new URL after the scope switch")
    browser.wait_rendered()
    object_id = view_id_of(browser.current_url)
    assert object_id[2:10] == "00000000", object_id
    assert object_id[:2] + object_id[10:] == view_id[:2] + view_id[10:]
    deployment_row(browser)
    assert not rows(browser, "ReplicaSet"), "the object scope shows no owned objects"
    assert browser.find_all('.rows .row[data-source="audit"]')
    assert selected(browser, "#mode-select") == "tree"
    assert selected(browser, "#scope-select") == "object"


def test_tree_mode_logs_show_diffs_and_snapshots(browser: Browser, server: Server) -> None:
    """In tree mode a request's diff/snapshot is a log `event=diff|snapshot, message=...`."""
    open_view(browser, server, "00000000")
    click_fresh(browser, '.rows .row[data-source="audit"] .mk[data-diff="1"]')
    pre = browser.wait_for("#detail .log-detail pre.diff")
    assert any(" -> " in line for line in pre.text.splitlines()), pre.text
    click_fresh(browser, '.rows .row[data-source="audit"] .mk[data-snapshot="1"]')
    snapshot = browser.wait_for("#detail .log-detail pre.snapshot")
    assert snapshot.text.startswith("{\n") and '\n  "apiVersion": ' in snapshot.text, snapshot.text[:300]


def test_bad_view_id_shows_an_error(browser: Browser, server: Server) -> None:
    browser.open("/trace/not-a-view-id")
    assert browser.wait_state(("rendered", "error")) == "error"
    message = browser.wait_for("#error-message")
    status, body = server.get("/api/kelemetry/views/not-a-view-id")
    assert status == 400, body
    assert body["error"] in message.text, (message.text, body)

    browser.open("/trace/ff21000000e1e3e70000000000000000")
    assert browser.wait_state(("rendered", "error")) == "error"
    message = browser.wait_for("#error-message")
    assert message.text.strip() and "404" in message.text, message.text
    assert browser.find("a[href='/search']").is_displayed()


def test_search_shows_api_errors(browser: Browser, server: Server) -> None:
    browser.open("/search")
    assert browser.wait_state(("ready", "error")) == "ready", browser.text()
    browser.find("#resource").send_keys("deployments.apps")
    browser.find("#name").send_keys("no-such-deployment")
    browser.find("#submit").click()
    message = browser.wait_for("#search-message.error")
    assert "no-such-deployment" in message.text, message.text
    assert "/search" in browser.current_url


def test_large_trace_renders_lazily(browser: Browser, server: Server) -> None:
    """1,001 object spans and 10,000 logs (served in place of the API's trace): only expanded rows
    exist, a ReplicaSet with 249 Pods shows 200 and a "show more" row, and all of it stays quick."""
    browser.add_script_on_new_document(serve_trace_script(big_trace(replicasets=4, pods_per_replicaset=249)))
    open_view(browser, server, TRACING_FULL)
    timing = browser.wait_rendered()
    assert timing["spans"] == 1 + 4 + 4 * 249 and timing["logs"] == 10_000, timing
    assert timing["renderMs"] < 3000, timing
    # Too many Pods to unfold the ReplicaSets at once (it would add 800 rows).
    assert len(browser.find_all(".rows .row")) == 5, "only the Deployment and its ReplicaSets are rendered"
    assert deployment_row(browser).find_elements("css selector", ".mk.sev-error")

    toggle = rows(browser, "ReplicaSet")[0].find_element("css selector", ".tg")
    expand_ms = float(
        browser.js("const t = performance.now(); arguments[0].click(); return performance.now() - t", toggle)
    )
    assert expand_ms < 1000, f"expanding 249 Pods took {expand_ms:.0f} ms"
    assert len(browser.find_all('.rows .row[data-kind="Pod"]')) == 200
    more = browser.find(".rows .row.more")
    assert "show 49 more" in more.text, more.text
    more.find_element("css selector", ".more-btn").click()
    browser.wait_until(lambda b: len(b.find_all('.rows .row[data-kind="Pod"]')) == 249, 5, "all 249 Pods")
    assert not browser.find_all(".rows .row.more")
    browser.screenshot("large-trace")


def test_a_reused_name_lists_the_other_object_and_opens_it(browser: Browser, server: Server) -> None:
    view_id = server.lookup("reuse", "deployments", "apps", "default", TRACING_FULL)
    browser.open(f"/trace/{view_id}")
    browser.wait_rendered()
    notice = browser.wait_for(".notice.incarnations")
    assert "this one is uid d-2" in notice.text, notice.text
    [link] = notice.find_elements("css selector", "a.incarnation")
    assert link.text == "uid d-1"
    link.click()
    browser.wait_until(lambda b: view_id_of(b.current_url) != view_id, message="the other object's view")
    browser.wait_rendered()
    notice = browser.wait_for(".notice.incarnations")
    assert "this one is uid d-1" in notice.text and "uid d-2" in notice.text, notice.text
    # The old object's tree: its own ReplicaSet, which had the same name as the new one's.
    assert [row_label(r) for r in rows(browser, "Deployment")] == ["Deployment default/reuse"]
    browser.screenshot("incarnations")


def test_keyed_diff_paths_are_coloured_as_diffs(browser: Browser, server: Server) -> None:
    open_view(browser, server, TRACING_FULL)
    row = deployment_row(browser)
    for index in range(len(row.find_elements("css selector", '.mk[data-diff="1"]'))):
        # found again each time: opening the detail panel narrows the timeline, which redraws its markers
        click_fresh(browser, f'.row.target .mk[data-diff="1"]:nth-child({index + 1} of .mk[data-diff="1"])')
        log = parse_qs(urlparse(browser.current_url).query)["log"][0]
        pre = browser.wait_for(f'#detail .log-detail[data-log="{log}"] pre.diff')
        keyed = [p.text for p in pre.find_elements("css selector", ".diff-path") if "[type=" in p.text]
        if keyed:
            assert all(re.match(r"^status\.conditions\[type=\w+\]", path) for path in keyed), keyed
            return
    raise AssertionError("no diff of the Deployment has a condition named by its type")
