"""``clipag download NAME``: fetch and verify files ahead of time so that offline use works.

Files already cached are hashed again against their recorded digests; an interrupted download
resumes where it stopped.

Accepts CLIP names (``clipag models``), ``hf-hub:org/repo``, and the apps' auxiliary weights:
VGG19 for CLIPStyler (``vgg19``), the VQGAN checkpoints (``python -m clipag_plugin.vqgan list``)
and the Inception-v3 of FID, KID and IS (``inception``, for ``clipag score``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence


def _fetch(name: str, download_root: Optional[str]) -> Path:
    from ..vgg import VGG_WEIGHTS
    from ..vqgan.registry import VQGAN_REGISTRY

    if name in VGG_WEIGHTS:
        from ..vgg import fetch_vgg_weights

        return fetch_vgg_weights(name, download_root)
    if name == "inception":
        from ..scoring.inception import fetch_inception

        return fetch_inception(download_root)
    if name in VQGAN_REGISTRY:
        from ..vqgan import resolve_vqgan

        return resolve_vqgan(name, download_root).weights
    from ..loading import resolve_files

    return resolve_files(name, download_root, verify=True).weights


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="clipag download", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  clipag download ViT-B/32\n  clipag download fare4-ViT-L/14 vgg19\n"
               "  clipag download ViT-B/32 --download-root /data/clipag-cache",
    )
    parser.add_argument("names", nargs="+", help="CLIP names, hf-hub:org/repo, vgg19, inception, or a VQGAN name")
    parser.add_argument("--download-root", default=None, help="cache folder (as clipag.load's download_root)")
    args = parser.parse_args(argv)
    status = 0
    for name in args.names:
        try:
            path = _fetch(name, args.download_root)
        except (KeyError, OSError, ValueError) as err:
            print(f"clipag download {name}: {err.args[0] if err.args else err}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {path}")
    return status
