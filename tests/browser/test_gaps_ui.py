"""Gap markers in the web UI, in headless Chromium against a real `kelemetry serve` whose store holds
the replayed Deployment sample and a gap of its cluster amid the sample's activity: the trace page
shows the gap's sentence as a banner above the trace and the gap as a row of source ``gap`` under the
root, drawn as missing data (a hatched bar), in the default mode and in tree mode. Screenshots go to
test-artifacts/browser/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kelemetry import cli
from kelemetry.kube.kinds import KindResolver
from kelemetry.model.gaps import Gap, GapReason
from kelemetry.pipeline import build
from kelemetry.settings import TraceSettings
from kelemetry.store.sqlite import SpanStore
from tests.browser.conftest import CLUSTER, SAMPLE, Server, _start_browser, serving
from tests.browser.driver import Browser

pytestmark = pytest.mark.slow

# Amid the sample's requests (2026-11-23 07:23:30 to 07:23:34 UTC).
GAP = Gap(CLUSTER, GapReason.RESTART, 1_795_418_611_000_000, 1_795_418_612_500_000)
SENTENCE = "data may be missing between 07:23:31 and 07:23:33 UTC: collector restarted"


@pytest.fixture(scope="module")
def gap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("browser-gaps")
    store_path = work / "k.db"
    argv = ["replay", "--quiet", "--cluster", CLUSTER, "--store", str(store_path)]
    assert cli.main([*argv, str(SAMPLE / "audit.log"), str(SAMPLE / "events.jsonl")]) == 0
    store = SpanStore(store_path)
    try:
        build(store, TraceSettings(), KindResolver()).process_gaps([GAP])
    finally:
        store.close()
    with serving(work, "--store", str(store_path), "--cluster", CLUSTER) as srv:
        yield srv


@pytest.fixture
def gap_browser(gap_server: Server) -> Iterator[Browser]:
    instance = _start_browser(gap_server)
    try:
        yield instance
    finally:
        instance.quit()


@pytest.mark.parametrize("mode", ["21000000", "01000000"], ids=["tracing", "tree"])
def test_a_gap_is_a_banner_and_a_hatched_row_under_the_root(
    gap_browser: Browser, gap_server: Server, mode: str
) -> None:
    view_id = gap_server.lookup("demo", "deployments", "apps", "default", mode)
    gap_browser.open(f"/trace/{view_id}")
    gap_browser.wait_rendered()

    banners = [b.text for b in gap_browser.find_all(".toolbar .gap-banner")]
    assert banners == [SENTENCE]
    (row,) = gap_browser.find_all('.rows .row[data-source="gap"]')
    assert row.get_attribute("data-depth") == "1"
    assert "collector restarted" in row.find_element("css selector", ".label").text
    bar = row.find_element("css selector", ".bar")
    assert "bar-gap" in str(bar.get_attribute("class"))
    assert "repeating-linear-gradient" in bar.value_of_css_property("background-image")
    gap_browser.screenshot(f"gap-marker-{mode}")
