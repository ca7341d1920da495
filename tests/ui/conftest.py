"""A served copy of the page on 127.0.0.1 (one per module), for gradio_client and the browser."""

from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``(url, app)`` of the page on the mini models, CPU, frames every 5 steps, small caps, and an
    empty clipag cache (no VQGAN)."""
    pytest.importorskip("gradio", reason="the [ui] extra (gradio) is not installed")
    from clipag_plugin.ui import Caps, build_app

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLIPAG_CACHE", str(tmp_path_factory.mktemp("clipag-cache")))
        app = build_app(device="cpu", caps=Caps(max_size=128, max_steps=60), every=5,
                        out_dir=tmp_path_factory.mktemp("ui-runs"), online=False)
    app.queue(default_concurrency_limit=1)
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    yield url, app
    app.close()
