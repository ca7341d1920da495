"""What a notebook displays, as files: ``clipag run`` on a notebook has no page to show it on.

:class:`DisplaySink` writes each displayed object (``display(...)``, IPython's ``Image``/``HTML``/...,
PIL images, matplotlib figures, a cell's last expression) as the next numbered file in the working
folder, in the richest kind the object offers (IPython's ``DisplayFormatter`` decides which kinds
it has); text goes to stdout as in a terminal. :func:`inline_figures` points matplotlib at a
backend (:mod:`clipag_plugin.adapters._inline_backend`) whose ``plt.show()`` saves through the sink.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

__all__ = ["DisplaySink", "inline_figures", "current_sink", "use_inline", "INLINE_BACKEND"]

logger = logging.getLogger("clipag_plugin.adapters")

# rich output kinds in order of preference, with the file suffix each is saved under
_MIME_SUFFIX = (("image/png", ".png"), ("image/jpeg", ".jpeg"), ("image/gif", ".gif"), ("image/svg+xml", ".svg"),
                ("text/html", ".html"), ("text/markdown", ".md"), ("text/latex", ".tex"),
                ("application/json", ".json"))


class DisplaySink:
    """Saves what a notebook displays as ``display-0001-cell4.png`` ... in ``folder``.

    Args:
        folder: where the files go.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.cell = 0
        self.files: list[Path] = []
        self._formatter = None

    def _format(self, obj: Any) -> dict:
        if self._formatter is None:
            from IPython.core.formatters import DisplayFormatter

            self._formatter = DisplayFormatter()
        data, _ = self._formatter.format(obj)
        return data

    def _next_path(self, suffix: str) -> Path:
        return self.folder / f"display-{len(self.files) + 1:04d}-cell{self.cell}{suffix}"

    def _write(self, data: Any, suffix: str) -> Path:
        path = self._next_path(suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str) and suffix in (".png", ".jpeg", ".gif"):
            data = base64.b64decode(data)  # IPython gives binary formats base64-encoded in some versions
        if isinstance(data, (bytes, bytearray)):
            path.write_bytes(bytes(data))
        else:
            path.write_text(data if isinstance(data, str) else repr(data), encoding="utf-8")
        self.files.append(path)
        logger.info("displayed: %s", path)
        return path

    def figure(self, figure: Any) -> Path:
        """Save a matplotlib figure as the next PNG."""
        path = self._next_path(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", bbox_inches="tight")
        self.files.append(path)
        logger.info("displayed: %s", path)
        return path

    def show(self, obj: Any) -> Optional[Path]:
        """Display one object: its richest image/document form to a file, else its text to stdout.

        Returns:
            The file written, or None when the object was printed.
        """
        if obj is None:
            return None
        if _is_figure(obj):
            return self.figure(obj)
        data = self._format(obj)
        for mime, suffix in _MIME_SUFFIX:
            if mime in data and data[mime]:
                return self._write(data[mime], suffix)
        print(data.get("text/plain", repr(obj)))
        return None

    def display(self, *objs: Any, **kwargs: Any) -> None:
        """``IPython.display.display``: each object shown in turn (``raw=True`` takes mime bundles)."""
        for obj in objs:
            if kwargs.get("raw") and isinstance(obj, dict):
                for mime, suffix in _MIME_SUFFIX:
                    if obj.get(mime):
                        self._write(obj[mime], suffix)
                        break
                else:
                    print(obj.get("text/plain", ""))
            else:
                self.show(obj)

    def flush_figures(self) -> None:
        """Save and close the open matplotlib figures, as the inline backend does after each cell."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None or not _inline_active():
            return
        for number in pyplot.get_fignums():
            self.figure(pyplot.figure(number))
        pyplot.close("all")


def _is_figure(obj: Any) -> bool:
    figure = getattr(sys.modules.get("matplotlib.figure"), "Figure", None)
    return figure is not None and isinstance(obj, figure)


# --- matplotlib: a backend whose show() goes to the sink ------------------------------------------

INLINE_BACKEND = "module://clipag_plugin.adapters._inline_backend"
_sinks: list[DisplaySink] = []


def _inline_active() -> bool:
    matplotlib = sys.modules.get("matplotlib")
    return matplotlib is not None and matplotlib.get_backend() == INLINE_BACKEND


def current_sink() -> Optional[DisplaySink]:
    """The sink of the notebook now running (for the matplotlib backend)."""
    return _sinks[-1] if _sinks else None


@contextlib.contextmanager
def inline_figures(sink: DisplaySink):
    """While the block runs, matplotlib draws off-screen and ``plt.show()`` saves figures to ``sink``.

    Sets ``MPLBACKEND`` for a matplotlib imported later, or switches an imported one; restores both.
    """
    saved_env = os.environ.get("MPLBACKEND")
    matplotlib = sys.modules.get("matplotlib")
    saved_backend = matplotlib.get_backend() if matplotlib is not None else None
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    _sinks.append(sink)
    try:
        if matplotlib is not None:
            use_inline()
        yield
    finally:
        _sinks.remove(sink)
        if saved_env is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = saved_env
        matplotlib = sys.modules.get("matplotlib")
        if matplotlib is not None and matplotlib.get_backend() == INLINE_BACKEND:
            pyplot = sys.modules.get("matplotlib.pyplot")
            if pyplot is not None:
                pyplot.close("all")
                pyplot.switch_backend(saved_backend or "agg")
            else:
                matplotlib.use(saved_backend or "agg")


def use_inline() -> None:
    import matplotlib

    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.switch_backend(INLINE_BACKEND)
    else:
        matplotlib.use(INLINE_BACKEND)
