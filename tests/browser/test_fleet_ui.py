"""The web UI over a fleet: the KubeAdmiral recording (samples/federation: host, member-1,
member-2) replayed cluster by cluster into one store, looked up across clusters in Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.support.select import Select

from tests.browser.conftest import REPO_ROOT, Server, _start_browser, serving
from tests.browser.driver import Browser

pytestmark = pytest.mark.slow

FEDERATION = REPO_ROOT / "samples" / "federation"
CLUSTERS = ("host", "member-1", "member-2")


@pytest.fixture(scope="module")
def fleet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`kelemetry serve` replaying each cluster's recording under that cluster's name, as `make run`."""
    work = tmp_path_factory.mktemp("browser-fleet")
    replays = [
        arg
        for cluster in CLUSTERS
        for name in ("audit.log", "events.jsonl")
        for arg in ("--replay", f"{cluster}={FEDERATION / cluster / name}")
    ]
    with serving(work, "--store", str(work / "k.db"), "--cluster", "host", *replays) as srv:
        yield srv


@pytest.fixture
def fleet_browser(fleet_server: Server) -> Iterator[Browser]:
    instance = _start_browser(fleet_server)
    try:
        yield instance
    finally:
        instance.quit()


def test_any_cluster_finds_every_copy_and_the_tree_names_each_rows_cluster(fleet_browser: Browser) -> None:
    browser = fleet_browser
    browser.open("/")
    assert browser.wait_state(("ready", "error")) == "ready", browser.text()
    picker = Select(browser.find("#cluster"))
    assert [(o.get_attribute("value"), o.text) for o in picker.options] == [
        *((name, name) for name in CLUSTERS),
        ("", "any cluster"),
    ]
    picker.select_by_value("")
    # read in the page: the list is filled again as the clusters answer, so elements found go stale
    browser.wait_until(
        lambda b: (
            "deployments.apps"
            in b.js("return [...document.querySelectorAll('#resource-list option')].map((o) => o.value)")
        ),
        10,
        "the resources of every cluster",
    )
    browser.find("#resource").send_keys("deployments.apps")
    Select(browser.find("#scope")).select_by_value("full")
    browser.find("#namespace").send_keys("default")
    browser.find("#name").send_keys("fleet-demo")
    browser.find("#submit").click()

    # The same name in three clusters: one match each, each naming its cluster.
    browser.wait_until(lambda b: len(b.find_all(".matches li")) == 3, 15, "three matches")
    matches = {li.text for li in browser.find_all(".matches li")}
    for cluster in CLUSTERS:
        assert any(f"cluster {cluster} " in text for text in matches), matches
    browser.screenshot("fleet-any-cluster-matches")
    member = next(li for li in browser.find_all(".matches li") if "cluster member-1 " in li.text)
    member.find_element("css selector", "a").click()

    browser.wait_until(lambda b: "/trace/" in b.current_url, 15, "navigation to the trace page")
    browser.wait_rendered()
    labels = [r.find_element("css selector", ".label .name").text for r in browser.find_all(".rows .row")]
    # The full tree of a member's copy starts at the host Deployment KubeAdmiral propagated.
    assert labels[0] == "Deployment default/fleet-demo @host", labels
    for cluster in ("member-1", "member-2"):
        assert f"Deployment default/fleet-demo @{cluster}" in labels, labels
    assert "ConfigMap default/hand-linked @member-2" in labels, labels
    target = [r for r in browser.find_all(".rows .row") if "target" in str(r.get_attribute("class"))]
    assert [r.find_element("css selector", ".label .name").text for r in target] == [
        "Deployment default/fleet-demo @member-1"
    ]
    browser.screenshot("fleet-tree")
