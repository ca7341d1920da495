"""Rebuild every picture in the docs, offline, from the models embedded in the package.

    python docs/figures/make.py            # docs/demo.png (and docs/demo.json), docs/ui.png
    python docs/figures/make.py demo       # one of them: demo or ui

``docs/demo.png``: ``clipag demo`` as it runs after install: ``mini-vanilla`` and ``mini`` paint the
same 16 mini-world captions with their shared preset (every augmentation off), judged; prompts
across, one row per model.

``docs/ui.png``: the page of ``clipag ui`` in headless Chromium (Selenium; Debian's ``chromium``
and ``chromium-driver``) after painting one caption with ``mini`` and ``mini-vanilla``.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
UI_PROMPT = "a red circle on the left, blue background"  # the page's own default prompt


def demo() -> int:
    from clipag_plugin.cli import main as clipag

    return clipag(["demo", "--out", str(DOCS / "demo.png"), "--quiet"])


def ui() -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from clipag_plugin.ui import build_app
    from clipag_plugin.ui.browser import open_chromium, paint_in_browser

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app(device="cpu", online=False)
    app.queue(default_concurrency_limit=1)
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    browser = open_chromium(1280, 1100)
    try:
        paint_in_browser(browser, url, UI_PROMPT, DOCS / "ui.png")
    finally:
        browser.quit()
        app.close()
    print(f"wrote {DOCS / 'ui.png'}")
    return 0


def main(argv: list[str]) -> int:
    wanted = argv or ["demo", "ui"]
    figures = {"demo": demo, "ui": ui}
    unknown = [w for w in wanted if w not in figures]
    if unknown:
        print(f"make.py: unknown figure(s) {', '.join(unknown)}; choose from {', '.join(figures)}", file=sys.stderr)
        return 2
    return max(figures[name]() for name in wanted)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
