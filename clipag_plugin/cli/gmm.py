"""``clipag gmm fit FOLDER --out FILE``: fit the Gaussian prior used by ``generate --init gmm``."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from .generate import run_cli

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipag gmm", description="Gaussian priors for `clipag generate --init gmm`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  clipag gmm fit tiny-imagenet-200/train --out tin.npz\n"
               "  clipag gmm fit ~/pictures --by image --rank 32 --out mine.npz\n"
               "  clipag gmm sample --gmm miniworld --out samples.png",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    fit = sub.add_parser(
        "fit", help="fit one Gaussian per class on an image folder",
        description="Fit one Gaussian per class of downsampled image patches (the start of `generate --init gmm`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  clipag gmm fit tiny-imagenet-200/train --out tin.npz\n"
               "  clipag gmm fit ~/pictures --by image --rank 32 --out mine.npz\n"
               "  clipag generate \"a red barn\" --gmm tin.npz --out barn.png",
    )
    fit.add_argument("folder", help="images; each subfolder is a class (or every image with --by image)")
    fit.add_argument("--out", required=True, help="output .npz, then pass it as `clipag generate --gmm FILE`")
    fit.add_argument("--resolution", type=int, default=16, help="side the images are downsampled to (default 16)")
    fit.add_argument("--patches-per-image", type=int, default=64, help="random crops taken from each image")
    fit.add_argument("--rank", type=int, default=None,
                     help="keep only the top-R covariance directions (smaller file); default: full covariance")
    fit.add_argument("--by", choices=["folder", "image"], default="folder", help="what makes a class")
    fit.add_argument("--seed", type=int, default=0, help="seed of the random crops (default 0)")
    sample = sub.add_parser(
        "sample", help="write a grid of samples from a GMM file (default: the shipped one)",
        description="Draw samples from a Gaussian prior and write them as one grid image.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  clipag gmm sample --out samples.png\n"
               "  clipag gmm sample --gmm miniworld --n 36 --out world.png\n"
               "  clipag gmm sample --gmm tin.npz --size 224 --seed 1 --out tin.png",
    )
    sample.add_argument("--gmm", default=None, help="a .npz from `clipag gmm fit`, or a shipped name such as miniworld "
                                                   "(default: the shipped photo prior)")
    sample.add_argument("--out", required=True, help="output grid image")
    sample.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    sample.add_argument("--size", type=int, default=64, help="side of each sample in pixels (default 64)")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    return parser


def _fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from clipag_plugin.synthesis.gmm import fit_gmm

    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out {out}: use a .npz file name")
    if not out.parent.exists():
        raise ValueError(f"--out {out}: folder {out.parent} does not exist")
    if args.resolution < 2 or args.patches_per_image < 1:
        raise ValueError("--resolution must be >= 2 and --patches-per-image >= 1")
    gmm = fit_gmm(args.folder, args.resolution, args.patches_per_image, args.rank, args.by, args.seed)
    path = gmm.save(out)
    print(f"{path}: {gmm.num_components} classes at {gmm.resolution}x{gmm.resolution} ({', '.join(gmm.names[:8])}"
          f"{', ...' if gmm.num_components > 8 else ''})")
    return 0


def _sample(args: argparse.Namespace) -> int:
    import torch
    from torchvision.transforms.functional import to_pil_image
    from torchvision.utils import make_grid

    from clipag_plugin.synthesis.frames import check_writable
    from clipag_plugin.synthesis.gmm import load_gmm
    from clipag_plugin.synthesis.init import upsample

    out = check_writable(args.out)
    gmm = load_gmm(args.gmm)
    low, _ = gmm.sample(args.n, torch.Generator().manual_seed(args.seed))
    to_pil_image(make_grid(upsample(low, args.size), nrow=int(args.n**0.5) or 1, padding=2)).save(out)
    print(out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``clipag gmm fit|sample``; returns the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    return run_cli("gmm", lambda: _fit(args) if args.action == "fit" else _sample(args))
