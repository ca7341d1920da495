"""``python -m clipag_plugin.vqgan list`` / ``download NAME [--root DIR]``: fetch ahead of going offline."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    from . import VQGAN_REGISTRY, resolve_vqgan

    parser = argparse.ArgumentParser(prog="python -m clipag_plugin.vqgan", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the VQGAN checkpoints in the registry")
    dl = sub.add_parser("download", help="download and convert one checkpoint into the cache")
    dl.add_argument("name", help=f"one of {', '.join(VQGAN_REGISTRY)} or hf-hub:org/repo")
    dl.add_argument("--root", default=None, help="cache root (default $CLIPAG_CACHE or ~/.cache/clipag)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for entry in VQGAN_REGISTRY.values():
            print(f"{entry.name:28s} f={entry.factor:<3d} codes={entry.n_embed:<6d} {entry.description}")
        return 0
    converted = resolve_vqgan(args.name, args.root)
    print(f"{args.name}: {converted.weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
