"""``clipag download NAME``: fetch and verify a model's files so that offline use works."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="clipag download", description="Fetch a model's weights ahead of time.")
    parser.add_argument("names", nargs="+", help="registry names (see `clipag models`) or hf-hub:org/repo")
    parser.add_argument("--download-root", default=None, help="cache folder (as clipag.load's download_root)")
    args = parser.parse_args(argv)
    from ..loading import resolve_files

    status = 0
    for name in args.names:
        try:
            files = resolve_files(name, args.download_root)
        except (KeyError, OSError, ValueError) as err:
            print(f"clipag download {name}: {err.args[0] if err.args else err}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {files.weights}")
    return status
