"""Headless Chromium for the browser tests (`make test-browser`; `make test` does not collect them).

The browser is Debian's `chromium` with its `chromedriver`, driven by selenium; nothing is
downloaded. Without them the tests are skipped with a message saying what to install, unless
COURSE_REQUIRE_BROWSER=1 (set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from course_lib.data import ROOT

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# screenshots: the site's pages always, JupyterLab when a test fails (gitignored with site/_build)
ARTIFACTS = Path(
    os.environ.get("COURSE_BROWSER_ARTIFACTS", ROOT / "site" / "_build" / "browser-tests")
)


def _find_chromium() -> tuple[str, str] | None:
    browser = next((p for name in BROWSERS if (p := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="session")
def chromium_paths() -> tuple[str, str]:
    found = _find_chromium()
    if found is None:
        message = (
            "no headless browser: the browser tests need Chromium and its chromedriver "
            "(Debian/Ubuntu: `sudo apt-get install chromium chromium-driver`)"
        )
        if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; COURSE_REQUIRE_BROWSER=1 makes this an error")
        pytest.skip(message)
    return found


@pytest.fixture
def browser(chromium_paths, request):
    """A fresh headless Chromium (1400×1000); a screenshot lands in ARTIFACTS if the test fails."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium_paths
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI and many containers run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",  # no update checks, no component downloads
        # offline: every host name fails to resolve, loopback still works
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"{request.node.name}.png"
        driver.save_screenshot(str(shot))
        print(f"screenshot of the failure: {shot}")
    driver.quit()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
