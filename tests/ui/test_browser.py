"""The page in a real browser: Chromium, headless, driven by Selenium.

Chromium and its driver come from the system (Debian: ``apt-get install chromium chromium-driver``;
``.ci/run`` installs them where it can). Without them the test is skipped, and says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHOTS = Path(__file__).resolve().parents[2] / "runs" / "ui-screenshots"


def test_a_prompt_paints_two_live_pictures_in_the_browser(served):
    from clipag_plugin.ui.browser import BrowserUnavailable, open_chromium, paint_in_browser

    url, _ = served
    try:
        browser = open_chromium()
    except BrowserUnavailable as why:
        pytest.skip(str(why))
    live = []
    try:
        seen = paint_in_browser(browser, url, "a green square at the top, red background", SHOTS / "side-by-side.png",
                                timeout=240, on_frame=lambda a, b: live.append((a, b)))
        sizes = [browser.find_element("css selector", f"#image-{side} img").size["width"] for side in "ab"]
    finally:
        browser.quit()
    assert live and "step" in live[0][0]  # a live frame showed before the end
    left, right = seen["status"]
    assert left.startswith("mini: done") and right.startswith("mini-vanilla: done")
    assert "judge reads" in left and "judge reads" in right
    assert all(seen["images"]) and all(width > 50 for width in sizes)
    assert any(".png" in href for href in seen["downloads"])
    assert (SHOTS / "side-by-side.png").stat().st_size > 10_000
