"""A real headless Chromium for the console's browser tests: Debian's /usr/bin/chromium driven by
Selenium through Debian's /usr/bin/chromedriver, named explicitly so Selenium Manager never
looks for (or downloads) a driver. Tests skip with that reason only when the binaries are absent.

Screenshots go to SCREENSHOTS (OPCTL_SCREENSHOTS, default .opctl/screenshots/), printed by the test that
takes them; docs/screenshots/ holds copies of one run.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("OPCTL_SCREENSHOTS", ROOT / ".opctl" / "screenshots"))
PHONE, DESKTOP = (390, 844), (1440, 900)
missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
needs_chromium = pytest.mark.skipif(
    bool(missing), reason=f"no {' or '.join(missing)}: install Debian's chromium and chromium-driver (.ci/run does)"
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium'}", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):  # fmt: skip
        options.add_argument(flag)
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: Any, condition: Callable[[Any], Any], timeout: float = 60.0) -> Any:
    """Wait on a condition of the page with a deadline (WebDriverWait polls it)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def sign_in(driver: Any, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    field = until(driver, lambda d: d.find_element(By.ID, "token"))
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    until(driver, lambda d: "(approver)" in d.find_element(By.ID, "whoami").text or "(viewer)" in d.find_element(By.ID, "whoami").text)
    until(driver, lambda d: d.find_element(By.ID, "live").text == "live")


def screenshots(driver: Any, name: str, ready: Callable[[Any], Any]) -> list[Path]:
    """The page at phone and desktop width, saved under SCREENSHOTS."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    saved = []
    for label, (width, height) in (("390", PHONE), ("1440", DESKTOP)):
        driver.set_window_size(width, height)
        until(driver, ready)
        path = SCREENSHOTS / f"{name}-{label}.png"
        # the whole page, not only the viewport (Chromium's DevTools protocol)
        width, height = driver.execute_script(
            "const e = document.documentElement; return [Math.max(e.scrollWidth, window.innerWidth), e.scrollHeight]")
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
        path.write_bytes(base64.b64decode(shot["data"]))
        saved.append(path)
    print(f"screenshots: {' '.join(str(p) for p in saved)}")
    return saved


def click(driver: Any, css: str, timeout: float = 60.0) -> None:
    """Click the element `css` selects; a live refresh may replace it between find and click."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked(d: Any) -> bool:
        try:
            found = d.find_elements(By.CSS_SELECTOR, css)
            if not found:
                return False
            found[0].click()
            return True
        except StaleElementReferenceException:
            return False

    until(driver, clicked, timeout)


def text_of(driver: Any, css: str) -> str:
    """The text of `css` ('' while absent or being replaced)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))
    except StaleElementReferenceException:
        return ""


def tab_to(driver: Any, element_id: str, presses: int = 40) -> None:
    """Press Tab until the element `element_id` has the focus (keyboard navigation)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    for _ in range(presses):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if driver.execute_script("return document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} was not reached with {presses} presses of Tab")


def press(driver: Any, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()
