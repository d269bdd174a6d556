"""The Explain panel and the blame action in headless Chromium, on the replayed Deployment sample
(cluster tracetest: admin creates Deployment demo, scales it 2 -> 4 through the `scale`
subresource, changes its image, scales it back and deletes it).

From the trace of a demo Pod, the panel (opened from the keyboard and from the toolbar) walks the
cause chain up to its ReplicaSet, the Deployment and `admin`; the blame button on the Deployment's
`spec.replicas` diff line names `admin` and the `scale` request; the panel's link opens the same
answer on its own page; an unknown object shows the API's reason, not a blank panel. No page breaks
the Content-Security-Policy. Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

from tests.browser.conftest import CLUSTER, Server
from tests.browser.driver import Browser
from tests.browser.test_login_ui import csp_violations
from tests.browser.test_objectat_ui import scale_rows
from tests.browser.test_ui import click_diff_marker, open_view

pytestmark = pytest.mark.slow

# A Pod the scale 2 -> 4 added: its chain runs through the ReplicaSet's replicas to the scale request.
POD = "demo-85dd8d7bd8-gn7sb"
REPLICASET = "demo-85dd8d7bd8"
TRACING_ANCESTORS = "22000000"
TREE_MODE = "00000000"


def steps(browser: Browser) -> list[WebElement]:
    return browser.find_all("#explain-chain > li.xp-step")


def step_object(step: WebElement) -> str:
    return str(step.find_element("css selector", ".xp-object").text)


def wait_answer(browser: Browser) -> WebElement:
    panel = browser.wait_for('#explain-panel:is([data-state="ready"], [data-state="error"])', timeout=20)
    assert panel.get_attribute("data-state") == "ready", panel.text
    return panel


def deployment_step(browser: Browser) -> WebElement:
    found = [s for s in steps(browser) if step_object(s) == "Deployment default/demo"]
    assert len(found) == 1, [step_object(s) for s in steps(browser)]
    return found[0]


def open_pod(browser: Browser, server: Server, query: str = "") -> str:
    view_id = server.lookup(POD, "pods", "", "default", TRACING_ANCESTORS)
    browser.open(f"/trace/{view_id}{query}")
    browser.wait_rendered()
    return view_id


def pod_row(browser: Browser) -> WebElement:
    found = [r for r in browser.find_all('.rows .row.target[data-kind="Pod"]') if r.is_displayed()]
    assert len(found) == 1, browser.text()[:600]
    return found[0]


def select_the_pod_creation(browser: Browser) -> None:
    """Select the Pod's row and its first log: the request that created it."""
    pod_row(browser).find_element("css selector", ".label").click()
    first = browser.wait_for('#detail .log-item[data-log="0"]')
    assert "create" in first.text, first.text
    first.click()
    browser.wait_for('#detail .log-detail[data-log="0"]')


def test_the_panel_traces_a_demo_pod_back_to_admin(browser: Browser, server: Server) -> None:
    view_id = open_pod(browser, server)
    select_the_pod_creation(browser)
    browser.find("#detail #explain-button").click()
    panel = wait_answer(browser)
    assert "explain=1" in browser.current_url and "log=0" in browser.current_url
    chain = [step_object(s) for s in steps(browser)]
    assert chain[0] == f"Pod default/{POD}", chain
    assert f"ReplicaSet default/{REPLICASET}" in chain, chain
    assert chain.index(f"ReplicaSet default/{REPLICASET}") < chain.index("Deployment default/demo"), chain
    users = [u.text for u in panel.find_elements("css selector", ".xp-step .xp-user")]
    assert "admin" in users, users
    started = deployment_step(browser)
    assert started.find_element("css selector", ".xp-user").text == "admin"
    assert "patch/scale" in started.find_element("css selector", ".xp-verb").text
    assert POD in browser.find("#explain-summary").text and "admin" in browser.find("#explain-summary").text
    # Every object of the chain links to its own trace.
    objects = panel.find_elements("css selector", ".xp-step .xp-object")
    assert all(o.tag_name == "a" and o.get_attribute("href") for o in objects), [o.text for o in objects]
    browser.screenshot("explain-panel-of-a-demo-pod")

    # The Deployment's spec.replicas line: who set each value, per incarnation.
    buttons = [
        b
        for b in started.find_elements("css selector", ".blame-btn")
        if b.get_attribute("data-field") == "spec.replicas"
    ]
    assert len(buttons) == 1, started.text
    buttons[0].click()
    box = browser.wait_for('#explain-panel .blame-box:is([data-state="ready"], [data-state="error"])')
    assert box.get_attribute("data-state") == "ready", box.text
    assert buttons[0].get_attribute("aria-expanded") == "true"
    entries = box.find_elements("css selector", ".blame-entry")
    scale = [e for e in entries if "patch/scale" in e.text]
    assert scale and all("admin" in e.text for e in scale), box.text
    assert "2 -> 4" in " ".join(e.text for e in scale), box.text
    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    browser.screenshot("explain-blame-of-spec-replicas")

    # Closed, and opened again from the keyboard: the tree keeps the focus.
    browser.find("#explain-panel .xp-close").click()
    browser.wait_until(lambda b: not b.find_all("#explain-panel"), 5, "the panel to close")
    assert "explain=1" not in browser.current_url
    browser.find(".tree-pane").send_keys("x")
    wait_answer(browser)
    assert browser.js("return document.activeElement.classList.contains('tree-pane')")
    assert [step_object(s) for s in steps(browser)] == chain
    assert csp_violations(browser) == []
    assert view_id in browser.current_url


def test_a_pasted_link_reopens_the_panel_and_its_own_page(
    browser: Browser, fresh_browser: Browser, server: Server
) -> None:
    open_pod(browser, server)
    select_the_pod_creation(browser)
    browser.find("#explain-toolbar").click()  # the looked-up object: the Pod, at the selected log
    wait_answer(browser)
    assert browser.js("return document.activeElement.id") == "explain-panel"
    copied = browser.current_url
    permalink = str(browser.find("#explain-panel .xp-permalink").get_attribute("href"))

    # The trace URL with ?explain=1 in another browser opens the panel with the view.
    fresh_browser.open(copied)
    fresh_browser.wait_rendered()
    wait_answer(fresh_browser)
    assert step_object(steps(fresh_browser)[0]) == f"Pod default/{POD}"

    # The panel's link: the answer on a page of its own.
    query = parse_qs(urlparse(permalink).query)
    assert urlparse(permalink).path == "/explain"
    assert query["cluster"] == [CLUSTER] and query["name"] == [POD] and query["resource"] == ["pods"]
    fresh_browser.open(permalink + "&field=spec.replicas")
    wait_answer(fresh_browser)
    assert fresh_browser.find("#explain-title").text == f"Explain Pod default/{POD}"
    assert "Deployment default/demo" in [step_object(s) for s in steps(fresh_browser)]
    fresh_browser.screenshot("explain-page")
    assert csp_violations(fresh_browser) == []


def test_the_deployments_panel_lists_its_rollouts(browser: Browser, server: Server) -> None:
    open_view(browser, server, TREE_MODE)
    browser.find("#explain-toolbar").click()
    wait_answer(browser)
    rollouts = browser.find_all("#explain-rollouts > li")
    assert [r.get_attribute("data-revision") for r in rollouts] == ["1", "2"], [r.text for r in rollouts]
    assert all(r.get_attribute("data-state") == "complete" for r in rollouts)
    first, second = rollouts
    assert "admin create" in first.text and "ReplicaSet default/demo-85dd8d7bd8" in first.text
    assert "admin patch" in second.text and "ReplicaSet default/demo-5544f8b48c" in second.text
    image = second.find_elements("css selector", ".diff-line")
    assert [line.text for line in image] == [
        'spec.template.spec.containers[name=nginx].image "nginx:1.27" -> "nginx:1.28"'
    ]
    assert not browser.find_all("#explain-stuck"), "the sample has no stuck Pod"
    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", second)
    browser.screenshot("explain-rollouts-of-the-deployment")
    assert csp_violations(browser) == []


def test_blame_from_the_scale_requests_diff_in_the_trace(browser: Browser, server: Server) -> None:
    open_view(browser, server, TREE_MODE)
    pre, _log = click_diff_marker(browser, scale_rows(browser)[0])
    lines = [
        line
        for line in pre.find_elements("css selector", ".diff-line")
        if line.text.startswith("spec.replicas ")
    ]
    assert len(lines) == 1, pre.text
    button = lines[0].find_element("css selector", ".blame-btn")
    button.send_keys(Keys.ENTER)  # reachable from the keyboard
    box = browser.wait_for('#detail .blame-box:is([data-state="ready"], [data-state="error"])')
    assert box.get_attribute("data-state") == "ready", box.text
    assert "admin" in box.find_element("css selector", ".blame-current").text
    scale = [e.text for e in box.find_elements("css selector", ".blame-entry") if "patch/scale" in e.text]
    assert len(scale) == 2 and all("admin" in text for text in scale), box.text  # 2 -> 4 and 4 -> 2
    browser.screenshot("blame-from-a-diff-line-in-the-trace")
    button.click()
    browser.wait_until(lambda b: not b.find_all("#detail .blame-box"), 5, "the blame to close")
    assert csp_violations(browser) == []


def test_an_unknown_object_shows_the_reason(browser: Browser) -> None:
    browser.open(f"/explain?cluster={CLUSTER}&resource=pods&namespace=default&name=no-such-pod")
    panel = browser.wait_for('#explain-panel[data-state="error"]', timeout=20)
    message = browser.find("#explain-error").text
    assert "no-such-pod" in message and "HTTP 404" in message, message
    assert panel.find_element("css selector", "[role=alert]").is_displayed()
    browser.screenshot("explain-unknown-object")

    # a moment the API cannot read: its reason, on the page
    browser.open(f"/explain?cluster={CLUSTER}&resource=deployments&namespace=default&name=demo&ts=yesterday")
    browser.wait_for('#explain-panel[data-state="error"]', timeout=20)
    message = browser.find("#explain-error").text
    assert "invalid ts 'yesterday'" in message and "HTTP 400" in message, message

    browser.open("/explain?cluster=tracetest&resource=pods")
    assert browser.wait_state(("ready", "error")) == "error"
    assert "name" in browser.find("#error-message").text
    assert csp_violations(browser) == []


def test_blame_from_a_row_of_what_changed_stays_on_the_page(browser: Browser) -> None:
    browser.open(f"/changes?cluster={CLUSTER}&user=admin&verb=patch")
    assert browser.wait_state(("ready", "error")) == "ready", browser.text()
    rows = [r for r in browser.find_all("#changes-rows tr.change-row") if "patch/scale" in r.text]
    assert len(rows) == 2, [r.text for r in browser.find_all("#changes-rows tr.change-row")]
    before = browser.current_url
    button = rows[0].find_element("css selector", '.blame-btn[data-field="spec.replicas"]')
    button.click()
    box = rows[0].find_element("css selector", ".blame-box")
    browser.wait_until(lambda _b: box.get_attribute("data-state") != "loading", 10, "the blame answer")
    assert box.get_attribute("data-state") == "ready", box.text
    assert browser.current_url == before, "the blame button does not open the row's trace"
    box.find_element("css selector", ".blame-current").click()  # nor does a click in its answer
    assert browser.current_url == before
    assert "admin" in box.text and "patch/scale" in box.text
    browser.screenshot("blame-in-what-changed")
    assert csp_violations(browser) == []


# An answer in the agreed shape with what the sample cannot show: an unproven step, a stuck
# rollout and an unscheduled Pod. The page fetches it for the name below only.
SYNTHETIC_NAME = "web"


def _obj(kind: str, resource: str, name: str, group: str = "apps") -> dict[str, str]:
    return {
        "cluster": CLUSTER,
        "group": group,
        "resource": resource,
        "namespace": "shop",
        "name": name,
        "kind": kind,
        "uid": f"uid-{name}",
    }


def _request(user: str, verb: str, subresource: str, time: str, code: int) -> dict[str, object]:
    return {
        "time": time,
        "time_us": None,
        "user": user,
        "user_agent": "kubectl/v1.31.0 (linux/amd64)",
        "verb": verb,
        "subresource": subresource,
        "code": code,
        "audit_id": "a",
        "span_id": "0" * 16,
        "trace_id": "0" * 32,
    }


SYNTHETIC = {
    "data": [
        {
            "object": _obj("Deployment", "deployments", SYNTHETIC_NAME),
            "at": "2026-11-23T10:05:00.000Z",
            "at_us": 1795428300000000,
            "summary": "Deployment shop/web was changed by alice (kubectl) at 10:01:02.000",
            "chain": [
                {
                    "object": _obj("ReplicaSet", "replicasets", "web-5d4"),
                    "relation": "scaled",
                    "request": None,
                    "changes": ["spec.replicas 0 -> 3"],
                    "actor": "unknown",
                    "proven": False,
                    "reason": "no audit event of this update was recorded (a missed window)",
                },
                {
                    "object": _obj("Deployment", "deployments", SYNTHETIC_NAME),
                    "relation": "changed",
                    "request": _request("alice", "patch", "", "2026-11-23T10:01:02.000Z", 200),
                    "changes": ['spec.template.spec.containers[name=web].image "web:1" -> "web:2"'],
                    "actor": "human",
                    "proven": True,
                    "reason": "a person's request: the chain starts here",
                },
            ],
            "complete": False,
            "rollouts": [
                {
                    "workload": _obj("Deployment", "deployments", SYNTHETIC_NAME),
                    "revision": "3",
                    "object": _obj("ReplicaSet", "replicasets", "web-5d4"),
                    "started": "2026-11-23T10:01:02.000Z",
                    "started_us": 1795428062000000,
                    "finished": None,
                    "finished_us": None,
                    "state": "stuck",
                    "trigger": _request("alice", "patch", "", "2026-11-23T10:01:02.000Z", 200),
                    "changes": ['spec.template.spec.containers[name=web].image "web:1" -> "web:2"'],
                    "reason": 'ProgressDeadlineExceeded: ReplicaSet "web-5d4" has timed out progressing.',
                },
            ],
            "stuck": [
                {
                    "object": _obj("Pod", "pods", "web-5d4-x2x", ""),
                    "state": "unscheduled",
                    "since": "2026-11-23T10:01:03.000Z",
                    "since_us": 1795428063000000,
                    "for_seconds": 237.0,
                    "reasons": [
                        "FailedScheduling: 0/3 nodes are available: "
                        "3 node(s) didn't match Pod's node affinity/selector."
                    ],
                    "count": 5,
                    "cause": None,
                },
            ],
            "view_id": None,
        }
    ]
}


def fake_explain_script(answer: dict[str, object]) -> str:
    body = json.dumps(json.dumps(answer))
    return f"""
(() => {{
  const realFetch = window.fetch.bind(window);
  window.fetch = (input, init) => {{
    const url = new URL(typeof input === "string" ? input : input.url, window.location.href);
    const ours = url.searchParams.get("name") === {json.dumps(SYNTHETIC_NAME)};
    if (url.pathname === "/api/kelemetry/explain" && ours) {{
      const headers = {{ "Content-Type": "application/json" }};
      return Promise.resolve(new Response({body}, {{ status: 200, headers }}));
    }}
    return realFetch(input, init);
  }};
}})();
"""


def test_unproven_steps_rollouts_and_stuck_pods_are_drawn(browser: Browser) -> None:
    browser.add_script_on_new_document(fake_explain_script(SYNTHETIC))
    browser.open(
        f"/explain?cluster={CLUSTER}&group=apps&resource=deployments&namespace=shop&name={SYNTHETIC_NAME}"
    )
    panel = wait_answer(browser)
    assert "cannot be proven" in panel.find_element("css selector", ".xp-incomplete").text
    first, second = steps(browser)
    assert first.get_attribute("data-proven") == "0" and "unproven" in first.text
    assert "no request recorded" in first.text and "missed window" in first.text
    assert (
        second.get_attribute("data-proven") == "1"
        and second.find_element("css selector", ".xp-user").text == "alice"
    )
    # an unproven step is drawn apart: dashed, and its reason in the warning colour
    assert browser.js("return getComputedStyle(arguments[0]).borderLeftStyle", first) == "dashed"
    rollout = browser.find("#explain-rollouts > li")
    assert rollout.get_attribute("data-state") == "stuck" and rollout.get_attribute("data-revision") == "3"
    assert (
        "alice" in rollout.text
        and "not finished" in rollout.text
        and "ProgressDeadlineExceeded" in rollout.text
    )
    pod = browser.find("#explain-stuck > li")
    assert pod.get_attribute("data-state") == "unscheduled"
    assert "for 3m 57s" in pod.text and "5 times" in pod.text and "FailedScheduling" in pod.text
    assert "not found in the data" in pod.text  # no cause: said, not guessed
    browser.screenshot("explain-rollouts-and-stuck-pods")
    assert csp_violations(browser) == []
