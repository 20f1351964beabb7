"""A real headless browser for the admin console: Debian's `chromium` driven by Selenium through
Debian's `chromedriver` (never a downloaded driver), a fresh profile per browser.

Without chromium and chromedriver on PATH these tests are skipped (`make chromium` installs
them), unless MEDIAPROXY_TEST_REQUIRE_BROWSER is set (CI), where they fail instead.
Screenshots of every page go to $MEDIAPROXY_TEST_SCREENSHOT_DIR when set, else to the test's
tmp_path; the directory is printed at the end of the run. (The name keeps the MEDIAPROXY_TEST_
prefix: any other MEDIAPROXY_* variable is a configuration override, and an unknown one stops
the proxy.)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from tests.cluster.conftest import origin_process, redis_server

__all__ = ["origin_process", "redis_server"]  # fixtures, used here too

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
BROWSER_SECONDS = 20.0  # bound on every page load and wait; never an assertion threshold
_SHOT_DIRS: list[Path] = []

Browser = Callable[..., WebDriver]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """browser(javascript=True) -> a new headless Chromium; every one is quit at the end."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        message = "chromium or chromedriver is not on PATH (make chromium installs them)"
        if os.environ.get("MEDIAPROXY_TEST_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    drivers: list[WebDriver] = []

    def start(*, javascript: bool = True) -> WebDriver:
        profile = tmp_path / f"chromium-profile-{len(drivers)}"
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,1400",
                     f"--user-data-dir={profile}"):
            options.add_argument(flag)
        if not javascript:
            options.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2})
        driver = webdriver.Chrome(options=options,
                                  service=Service(executable_path=str(CHROMEDRIVER)))
        drivers.append(driver)
        driver.set_page_load_timeout(BROWSER_SECONDS)
        return driver

    try:
        yield start
    finally:
        for driver in drivers:
            driver.quit()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    configured = os.environ.get("MEDIAPROXY_TEST_SCREENSHOT_DIR")
    directory = Path(configured) if configured else tmp_path / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    if directory not in _SHOT_DIRS:
        _SHOT_DIRS.append(directory)
    return directory


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for directory in _SHOT_DIRS:
        terminalreporter.write_line(f"console screenshots: {directory}")


def shot(driver: WebDriver, directory: Path, name: str) -> Path:
    path = directory / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"screenshot {path} not written"
    return path


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], object], what: str) -> None:
    # The live pages replace their rows as they poll: an element read mid-replacement is stale,
    # which only means "look again".
    WebDriverWait(driver, BROWSER_SECONDS, poll_frequency=0.1,
                  ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, f"not within {BROWSER_SECONDS:g} s: {what}")


def text_of(driver: WebDriver, css: str) -> str:
    for _ in range(20):
        try:
            return str(driver.find_element(By.CSS_SELECTOR, css).text)
        except StaleElementReferenceException:  # replaced by the page's poll: read again
            continue
    raise AssertionError(f"{css} kept changing under the reader")


def rows(driver: WebDriver, table: str) -> list[list[str]]:
    """The cells of the table whose body is `data-table=table` (read again if the page's poll
    replaced a row while it was being read)."""
    for _ in range(20):
        try:
            return [[str(td.text) for td in tr.find_elements(By.TAG_NAME, "td")]
                    for tr in driver.find_elements(By.CSS_SELECTOR,
                                                   f'tbody[data-table="{table}"] tr')]
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"the {table} table kept changing under the reader")


def sign_in(driver: WebDriver, admin_url: str, token: str) -> None:
    """Open the console (the listener's / redirects there) and sign in with the keyboard."""
    driver.get(admin_url + "/")
    wait_for(driver, lambda d: d.current_url.endswith("/console/login"), "the sign-in page")
    field = driver.find_element(By.ID, "token")
    field.send_keys(token + "\n")
