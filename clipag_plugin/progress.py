"""Progress of a loop's steps that suits where it runs: a tqdm bar on a terminal, log lines elsewhere.

A bar redrawn on every step turns a log file or a CI job's output into hundreds of lines; off a
terminal the loop instead logs one INFO line every ``every`` steps (and the last) through
``logging`` (logger ``clipag_plugin.progress``). :func:`log_to_stderr` sends the package's log
lines to stderr, one line each, for scripts that have no logging set up.
"""

from __future__ import annotations

import datetime
import logging
import sys
import time
from typing import Any, Optional

__all__ = ["StepProgress", "log_to_stderr"]

logger = logging.getLogger("clipag_plugin.progress")


class StepProgress:
    """Count a loop's steps.

    Args:
        total: the number of steps.
        label: what is running (shown before the counts).
        progress: True a bar (even off a terminal), False nothing, None a bar on a terminal and a
            log line every ``every`` steps elsewhere.
        every: steps between log lines off a terminal.
        log: where the log lines go (default: ``clipag_plugin.progress``).
        unit: what is counted (``"step"``, ``"image"``), in the bar and the log lines.
    """

    def __init__(self, total: int, label: str, progress: Optional[bool] = None, every: int = 25,
                 log: Optional[logging.Logger] = None, unit: str = "step") -> None:
        from tqdm.auto import tqdm

        # disable=None lets tqdm decide: a bar only when stderr is a terminal
        self.bar = tqdm(total=total, desc=label, disable=None if progress is None else not progress, leave=False,
                        unit=unit)
        self.logging = self.bar.disable and progress is not False
        self.total, self.label, self.every, self.unit = total, label, max(1, every), unit
        self.done = 0
        self.started = time.monotonic()
        self.log = log or logger

    def update(self, **values: Any) -> None:
        """One step done; ``values`` (e.g. ``loss=0.21``) shown beside the count."""
        self.done += 1
        shown = {k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in values.items()}
        self.bar.update(1)
        if shown:
            self.bar.set_postfix(shown)
        if self.logging and (self.done % self.every == 0 or self.done == self.total):
            extra = "".join(f", {k} {v}" for k, v in shown.items())
            if self.done < self.total:  # the time left at the pace so far
                left = (time.monotonic() - self.started) / self.done * (self.total - self.done)
                extra += f", eta {datetime.timedelta(seconds=round(left))}"
            self.log.info("%s: %s %d/%d%s", self.label, self.unit, self.done, self.total, extra)

    def close(self) -> None:
        """Remove the bar."""
        self.bar.close()

    def __enter__(self) -> "StepProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is at the time of each record (a
    notebook's captured stderr, a test's), never to a stream closed since it was made."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def log_to_stderr(quiet: bool = False) -> None:
    """Send the package's log lines (``clipag_plugin.*``) to stderr as ``clipag: message``, once.

    Args:
        quiet: only warnings and errors.
    """
    root = logging.getLogger("clipag_plugin")
    for handler in [h for h in root.handlers if getattr(h, "_clipag_cli", False)]:
        root.removeHandler(handler)  # one handler, on the current stderr
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("clipag: %(message)s"))
    handler._clipag_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)
