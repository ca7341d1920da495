"""Drive the page in a real browser (headless Chromium through Selenium): for the tests and the docs' picture.

Selenium is not a dependency of the package (the ``[dev]`` extra installs it); Chromium and its
driver come from the system (Debian: ``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

__all__ = ["BrowserUnavailable", "open_chromium", "paint_in_browser"]


class BrowserUnavailable(RuntimeError):
    """No Chromium, chromedriver or Selenium here; the message says what to install."""


def open_chromium(width: int = 1400, height: int = 1200) -> Any:
    """A headless Chromium driven by Selenium.

    Args:
        width: window width in pixels.
        height: window height in pixels.

    Returns:
        The Selenium ``webdriver.Chrome``; call ``.quit()`` when done.
    """
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        raise BrowserUnavailable("selenium is not installed: pip install selenium (the [dev] extra has it)") from err
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        raise BrowserUnavailable("no Chromium and chromedriver on PATH (Debian: apt-get install chromium "
                                 "chromium-driver)")
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.binary_location = binary
    return webdriver.Chrome(service=Service(driver), options=options)


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def paint_in_browser(browser: Any, url: str, prompt: str, screenshot: Optional[Path] = None,
                     timeout: float = 300.0, on_frame: Optional[Callable[[str, str], None]] = None) -> dict:
    """Open the page, type ``prompt``, press Generate, wait for both final pictures.

    Args:
        browser: a Selenium driver (:func:`open_chromium`).
        url: the page.
        prompt: what to paint.
        screenshot: where to save a picture of the page at the end (None: no picture).
        timeout: seconds to wait for the pictures.
        on_frame: called with the two status texts the first time a live frame shows.

    Returns:
        ``{"status": (left, right), "images": (src, src), "downloads": [href, ...]}``.
    """
    from selenium.webdriver.common.by import By

    def status(side: str) -> str:
        found = browser.find_elements(By.CSS_SELECTOR, f"#status-{side}")
        return found[0].text if found else ""

    browser.get(url)
    box = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#prompt textarea"), 60, "the prompt box")[0]
    box.clear()
    box.send_keys(prompt)
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    _wait(lambda: "step" in status("a") and "done" not in status("a"), timeout, "a live frame")
    if on_frame is not None:
        on_frame(status("a"), status("b"))
    _wait(lambda: ": done" in status("a") and ": done" in status("b"), timeout, "both final pictures")
    images = []
    for side in ("a", "b"):
        found = _wait(lambda side=side: browser.find_elements(By.CSS_SELECTOR, f"#image-{side} img"), 30,
                      f"the picture in slot {side}")
        images.append(found[0].get_attribute("src"))
    downloads = [d.get_attribute("href") or "" for d in browser.find_elements(By.CSS_SELECTOR, "a[download]")]
    if screenshot is not None:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(screenshot))
    return {"status": (status("a"), status("b")), "images": tuple(images), "downloads": downloads}
