"""The first view of an object answers "what happened" (issue 12, scope 3), in headless Chromium
against `kelemetry serve` loaded with samples/deployment (Deployment demo → 2 ReplicaSets → 8 Pods).

Opening the Deployment the way a user does (``/redirect`` without a mode) shows the full tree with
the Pods visible, no scope switch touched; a legend names every mark; a Pod name cut to fit keeps its
distinguishing suffix; the controllers' 409 conflicts are drawn benign, not as errors; in the
timeline every row names its object and Event rows read "Reason: message".
"""

from __future__ import annotations

import re

import pytest
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select

from tests.browser.conftest import CLUSTER, Server
from tests.browser.driver import Browser

pytestmark = pytest.mark.slow

SAMPLE_TS = "2026-11-23T07:23:40Z"
LEGEND = [
    "request",
    "request with a diff",
    "Event",
    "Warning",
    "error",
    "benign",
    "change",
    "unattributed diff",
]


def open_by_redirect(browser: Browser, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"cluster": CLUSTER, "ts": SAMPLE_TS, **params}.items())
    browser.open(f"/redirect?{query}")
    browser.wait_until(lambda b: "/trace/" in b.current_url, 15, "the redirect to a trace")
    browser.wait_rendered()
    match = re.search(r"/trace/(ff[0-9a-f]{8}e1e3e7[0-9a-f]{16})", browser.current_url)
    assert match, browser.current_url
    return match.group(1)


def shown_rows(browser: Browser, kind: str) -> list[WebElement]:
    return [r for r in browser.find_all(f'.rows .row[data-kind="{kind}"]') if r.is_displayed()]


def label_of(row: WebElement) -> str:
    return str(row.find_element("css selector", ".label .name").text)


def test_opening_a_deployment_shows_its_replicasets_and_pods(browser: Browser, server: Server) -> None:
    view_id = open_by_redirect(browser, resource="deployments", namespace="default", name="demo")
    assert view_id[2:10] == "21000000", view_id  # tracing [full tree], as Go Kelemetry numbers it
    assert Select(browser.find("#scope-select")).first_selected_option.get_attribute("value") == "full"
    (deployment,) = shown_rows(browser, "Deployment")
    assert label_of(deployment) == "Deployment default/demo"
    assert "target" in str(deployment.get_attribute("class"))
    replicasets = shown_rows(browser, "ReplicaSet")
    pods = shown_rows(browser, "Pod")
    assert len(replicasets) == 2, [label_of(r) for r in replicasets]
    assert all(r.get_attribute("aria-expanded") == "true" for r in replicasets)
    assert len(pods) == 8, [label_of(p) for p in pods]
    assert {p.get_attribute("data-depth") for p in pods} == {"2"}

    legend = browser.find("#legend")
    assert legend.is_displayed()
    items = [i.text for i in legend.find_elements("css selector", ".legend-item")]
    assert items == LEGEND
    assert all(i.get_attribute("title") for i in legend.find_elements("css selector", ".legend-item"))
    browser.screenshot("first-view-full-tree")


def test_a_long_pod_name_keeps_its_suffix(browser: Browser, server: Server) -> None:
    open_by_redirect(browser, resource="deployments", namespace="default", name="demo")
    name = label_of(shown_rows(browser, "Pod")[0])
    # A narrow names column, as on a laptop with the detail panel open.
    browser.js("document.querySelector('.tree-pane').style.setProperty('--label-w', '230px')")
    pod = shown_rows(browser, "Pod")[0]
    suffix = "-".join(name.rsplit("-", 2)[1:])  # `<replicaset hash>-<random>`
    tail = pod.find_element("css selector", ".name-tail")
    head = pod.find_element("css selector", ".name-head")
    assert tail.text.endswith(suffix), (tail.text, name)
    label = pod.find_element("css selector", ".label")
    box = browser.js(
        "const [t, l, h] = arguments; const a = t.getBoundingClientRect(), b = l.getBoundingClientRect();"
        "return {tailLeft: a.left, tailRight: a.right, labelLeft: b.left, labelRight: b.right,"
        " headCut: h.scrollWidth > h.clientWidth};",
        tail,
        label,
        head,
    )
    assert box["headCut"], "the name fits: the column is not narrow enough for the test"
    assert box["labelLeft"] <= box["tailLeft"] and box["tailRight"] <= box["labelRight"], box
    assert pod.find_element("css selector", ".split-name").get_attribute("title") == name
    assert head.text and name.startswith(head.text.rstrip("…")), head.text
    browser.screenshot("first-view-narrow-names")


def test_routine_conflicts_are_benign_not_errors(browser: Browser, server: Server) -> None:
    open_by_redirect(browser, resource="deployments", namespace="default", name="demo")
    (deployment,) = shown_rows(browser, "Deployment")
    assert not deployment.find_elements("css selector", ".mk.sev-error")
    assert not deployment.find_elements("css selector", ".flag-error")
    benign = deployment.find_elements("css selector", ".mk.benign")
    assert benign, "the controller's 409 conflicts are not marked benign"
    assert "benign: conflict" in str(benign[0].get_attribute("title"))
    benign[0].click()
    detail = browser.wait_for("#detail .log-detail")
    assert detail.find_element("css selector", ".badge-benign").is_displayed()
    assert "re-reads the object and retries" in detail.find_element("css selector", ".msg-benign").text
    assert not detail.find_elements("css selector", ".msg-error")
    assert "Conflict" in detail.text  # the apiserver's answer is still there
    browser.screenshot("first-view-benign-conflict")


def test_timeline_rows_name_their_object_and_events_their_message(browser: Browser, server: Server) -> None:
    view_id = open_by_redirect(browser, resource="deployments", namespace="default", name="demo")
    browser.open(f"/trace/ff11000000{view_id[10:]}")  # timeline [full tree]
    browser.wait_rendered()
    requests = [r for r in browser.find_all('.rows .row[data-source="audit"]') if r.is_displayed()]
    named = {
        r.find_element("css selector", ".obj-ref").text
        for r in requests
        if r.find_elements("css selector", ".obj-ref")
    }
    assert any(n.startswith("Pod default/demo-") for n in named), named
    assert any(n.startswith("ReplicaSet default/demo-") for n in named), named
    events = [r for r in browser.find_all('.rows .row[data-source="event"]') if r.is_displayed()]
    labels = [label_of(r) for r in events]
    assert "ScalingReplicaSet: Scaled up replica set demo-85dd8d7bd8 from 0 to 2" in labels, labels
    assert all(": " in label for label in labels), labels
    benign_rows = browser.find_all(".rows .row.span-benign")
    assert benign_rows and not browser.find_all(".rows .row.span-error")
    browser.screenshot("first-view-timeline")
