"""Rebuild every picture in the docs, offline, from the models embedded in the package.

    python docs/figures/make.py            # writes docs/demo.png (and docs/demo.json)

``docs/demo.png``: ``clipag demo`` as it runs after install: ``mini-vanilla`` and ``mini`` paint the
same 16 mini-world captions with their shared preset (every augmentation off), judged; prompts
across, one row per model.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]


def main() -> int:
    from clipag_plugin.cli import main as clipag

    return clipag(["demo", "--out", str(DOCS / "demo.png"), "--quiet"])


if __name__ == "__main__":
    sys.exit(main())
