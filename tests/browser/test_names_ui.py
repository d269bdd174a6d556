"""Names as people type them in the web UI: a kubectl resource (`deploy`, `po`) and part of a name
(or a whole uid) open the trace; a misspelt name shows the server's "did you mean"."""

from __future__ import annotations

from selenium.webdriver.support.select import Select

from tests.browser.conftest import Server
from tests.browser.driver import Browser

DEMO_UID = "3eddc752-c366-47dd-853f-8173422d7ebd"


def start(browser: Browser, resource: str) -> None:
    browser.open("/")
    assert browser.wait_state(("ready", "error")) == "ready", browser.text()
    browser.find("#resource").send_keys(resource)


def open_by_suggestion(browser: Browser, typed: str, name: str) -> str:
    """Type part of a name, pick the suggestion of `name`, find its trace; returns the page title."""
    browser.find("#name").send_keys(typed)
    suggestion = browser.wait_for(f'#name-suggestions li[data-name="{name}"]')
    marks = [m.text for m in suggestion.find_elements("css selector", "mark")]
    assert marks == [typed], f"the typed part is not marked: {marks} in {suggestion.text!r}"
    return suggestion.text


def submit_and_wait(browser: Browser) -> str:
    browser.find("#submit").click()
    browser.wait_until(lambda b: "/trace/" in b.current_url, 15, "navigation to the trace page")
    browser.wait_rendered()
    return str(browser.find("#trace-title").text)


def test_deploy_and_part_of_the_name_open_the_trace(browser: Browser, server: Server) -> None:
    start(browser, "deploy")
    text = open_by_suggestion(browser, "emo", "demo")
    assert "Deployment" in text and "default/demo" in text, text
    browser.screenshot("names-deploy-and-part-of-a-name")
    browser.find('#name-suggestions li[data-name="demo"]').click()
    assert browser.find("#name").get_attribute("value") == "demo"
    assert browser.find("#resource").get_attribute("value") == "deployments.apps"
    assert "Deployment default/demo" in submit_and_wait(browser)


def test_a_pod_by_its_suffix_and_short_resource(browser: Browser, server: Server) -> None:
    start(browser, "po")
    pod = "demo-5544f8b48c-b25t4"
    open_by_suggestion(browser, "b25t4", pod)
    browser.screenshot("names-pod-by-suffix")
    browser.find(f'#name-suggestions li[data-name="{pod}"]').click()
    assert f"Pod default/{pod}" in submit_and_wait(browser)


def test_a_typed_resource_needs_no_pick(browser: Browser, server: Server) -> None:
    start(browser, "Deployment")
    browser.find("#name").send_keys("demo")
    assert "Deployment default/demo" in submit_and_wait(browser)


def test_a_uid_opens_its_object(browser: Browser, server: Server) -> None:
    browser.open("/")
    assert browser.wait_state(("ready", "error")) == "ready", browser.text()
    browser.find("#name").send_keys(DEMO_UID)
    assert "Deployment default/demo" in submit_and_wait(browser)


def test_a_misspelt_name_shows_what_was_meant(browser: Browser, server: Server) -> None:
    start(browser, "deploy")
    browser.find("#name").send_keys("dmeo")
    browser.find("#submit").click()
    message = browser.wait_for("#search-message.error")
    assert "did you mean deployments.apps/demo in namespace default (cluster tracetest)?" in message.text, (
        message.text
    )
    browser.screenshot("names-did-you-mean")
    [fix] = browser.find_all(".fixes button.fix")
    assert fix.text == "deployments.apps/default/demo (tracetest)", fix.text
    fix.click()
    assert "Deployment default/demo" in submit_and_wait_for_navigation(browser)


def test_no_activity_in_the_range_offers_the_range_with_activity(browser: Browser, server: Server) -> None:
    start(browser, "deploy")
    Select(browser.find("#range")).select_by_value("1h")
    browser.find("#name").send_keys("demo")
    browser.find("#submit").click()
    message = browser.wait_for("#search-message.error")
    assert "it was last active at 2026-11-23T07:23:3" in message.text, message.text
    fix = browser.wait_for(".fixes button.range-fix")
    browser.screenshot("names-last-active")
    fix.click()
    assert "Deployment default/demo" in submit_and_wait_for_navigation(browser)
    assert browser.find("#trace-title").text


def submit_and_wait_for_navigation(browser: Browser) -> str:
    browser.wait_until(lambda b: "/trace/" in b.current_url, 15, "navigation to the trace page")
    browser.wait_rendered()
    return str(browser.find("#trace-title").text)
