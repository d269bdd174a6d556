"""A small headless-Chromium driver for the web UI (used by the browser tests and the UI benchmark).

Uses Debian's ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` through Selenium with an explicit
driver path, so Selenium Manager never downloads anything. Importable without pytest.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = (
    "headless Chromium is required for the browser tests: install it with `make e2e-deps` "
    "(Debian packages chromium and chromium-driver)"
)

CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
)


class BrowserMissing(RuntimeError):
    """Chromium or chromedriver is not installed where the driver expects it."""


def missing_binaries() -> list[str]:
    """The required browser binaries that are absent (empty when everything is installed)."""
    return [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]


class PageError(AssertionError):
    """The page did not reach the expected state; carries what the page showed."""


class Browser:
    """One headless Chromium with a fresh profile. Use as a context manager or call start()/quit()."""

    def __init__(self, base_url: str = "", artifacts: Path = ARTIFACTS) -> None:
        self.base_url = base_url.rstrip("/")
        self.artifacts = artifacts
        self._driver: webdriver.Chrome | None = None
        self._profile: str | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Browser:
        missing = missing_binaries()
        if missing:
            raise BrowserMissing(f"missing {', '.join(missing)}; {INSTALL_HINT}")
        self._profile = tempfile.mkdtemp(prefix="kelemetry-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in CHROME_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self._profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=str(CHROMEDRIVER))
        try:
            self._driver = webdriver.Chrome(service=service, options=options)
        except Exception:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None
            raise
        self._driver.set_page_load_timeout(30)
        return self

    def quit(self) -> None:
        if self._driver is not None:
            try:
                self._driver.quit()
            finally:
                self._driver = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.quit()

    @property
    def driver(self) -> webdriver.Chrome:
        if self._driver is None:
            raise RuntimeError("the browser is not started")
        return self._driver

    # ---- navigation -----------------------------------------------------------------------------

    def url_for(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def open(self, path_or_url: str) -> None:
        """Load a page (a path relative to base_url, or a full URL)."""
        self.driver.get(self.url_for(path_or_url))

    @property
    def current_url(self) -> str:
        return str(self.driver.current_url)

    def add_script_on_new_document(self, source: str) -> None:
        """Run `source` in every document this browser loads from now on, before the page's scripts."""
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})

    def new_tab(self) -> None:
        """Open a fresh blank tab and switch to it."""
        self.driver.switch_to.new_window("tab")

    def state(self) -> str:
        return str(self.js("return document.body ? (document.body.dataset.state || '') : ''"))

    def wait_state(self, wanted: str | tuple[str, ...], timeout: float = 20.0) -> str:
        """Wait until document.body.dataset.state is one of `wanted`; returns it."""
        states = (wanted,) if isinstance(wanted, str) else wanted
        try:
            WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda _d: self.state() in states)
        except TimeoutException:
            raise PageError(
                f"page state stayed {self.state()!r} (wanted {' or '.join(states)}) after {timeout}s at "
                f"{self.current_url}; page text: {self.text()[:800]!r}; console: {self.console_errors()}"
            ) from None
        return self.state()

    def wait_rendered(self, timeout: float = 30.0) -> dict[str, float]:
        """Wait for the trace page's first render and return window.kelemetryTiming."""
        state = self.wait_state(("rendered", "error"), timeout)
        if state == "error":
            raise PageError(f"the trace page shows an error at {self.current_url}: {self.text()[:800]!r}")
        timing = self.js("return window.kelemetryTiming || null")
        if not isinstance(timing, dict):
            raise PageError("the page is rendered but window.kelemetryTiming is not set")
        return {str(k): float(v) for k, v in timing.items()}

    def wait_until(self, predicate: Any, timeout: float = 10.0, message: str = "condition") -> Any:
        """Wait for predicate(browser) to return something truthy; returns it."""
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda _d: predicate(self))
        except TimeoutException:
            raise PageError(
                f"timed out after {timeout}s waiting for {message} at {self.current_url}; "
                f"page text: {self.text()[:800]!r}"
            ) from None

    # ---- page access ----------------------------------------------------------------------------

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element("css selector", css)

    def find_all(self, css: str) -> list[WebElement]:
        return list(self.driver.find_elements("css selector", css))

    def wait_for(self, css: str, timeout: float = 10.0, visible: bool = True) -> WebElement:
        """Wait for an element matching `css` (displayed, unless visible=False) and return it."""

        def found(_b: Browser) -> WebElement | None:
            for el in self.find_all(css):
                if not visible or el.is_displayed():
                    return el
            return None

        element: WebElement = self.wait_until(found, timeout, f"element {css!r}")
        return element

    def text(self) -> str:
        try:
            return str(self.js("return document.body ? document.body.innerText : ''"))
        except Exception as exc:  # the page may be gone; the message is still useful
            return f"<no page text: {exc}>"

    def console_errors(self) -> list[str]:
        try:
            entries = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        except Exception:
            return []
        return [str(e.get("message", "")) for e in entries if e.get("level") == "SEVERE"]

    def screenshot(self, name: str) -> Path:
        """Save a PNG of the viewport under test-artifacts/browser/<name>.png and return its path."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        if not self.driver.save_screenshot(str(path)):
            raise PageError(f"could not save the screenshot {path}")
        return path
