"""The page in a real browser: Chromium, headless, driven by Selenium.

Chromium and its driver come from the system (Debian: ``apt-get install chromium chromium-driver``;
``.ci/run`` installs them where it can). Without them the test is skipped, and says why.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

SHOTS = Path(__file__).resolve().parents[2] / "runs" / "ui-screenshots"


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the [dev] extra has it)")
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("no Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1200"):
        options.add_argument(flag)
    options.binary_location = binary
    return webdriver.Chrome(service=Service(driver), options=options)


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_a_prompt_paints_two_live_pictures_in_the_browser(served):
    from selenium.webdriver.common.by import By

    url, _ = served
    browser = _browser()
    try:
        browser.get(url)
        box = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#prompt textarea"), 60, "the prompt box")[0]
        box.clear()
        box.send_keys("a green square at the top, red background")
        browser.find_element(By.CSS_SELECTOR, "#generate").click()

        def status(side: str) -> str:
            found = browser.find_elements(By.CSS_SELECTOR, f"#status-{side}")
            return found[0].text if found else ""

        # a live frame first (a step count while running), then both final pictures
        _wait(lambda: "step" in status("a") and "done" not in status("a"), 120, "a live frame on the left")
        _wait(lambda: status("a").startswith("mini: done") and status("b").startswith("mini-vanilla: done"),
              240, "both final pictures")
        for side in ("a", "b"):
            images = browser.find_elements(By.CSS_SELECTOR, f"#image-{side} img")
            assert images and images[0].get_attribute("src"), f"no picture in slot {side}"
            assert images[0].size["width"] > 50
        assert "judge reads" in status("a") and "judge reads" in status("b")
        downloads = browser.find_elements(By.CSS_SELECTOR, "a[download]")
        assert any(".png" in (d.get_attribute("href") or "") for d in downloads)
        SHOTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SHOTS / "side-by-side.png"))
    finally:
        browser.quit()
