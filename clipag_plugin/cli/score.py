"""``clipag score DIR``: the numbers of a batch run's pictures, per model and overall.

Reads ``DIR/manifest.jsonl`` (written by ``clipag generate --prompts FILE --out-dir DIR``) and
prints a table, with ``DIR/score.json`` beside it: CLIP score with a scoring model named in the
output; for mini-world captions the world judge's readings and FID in the judge's feature space
against the world's renders of the same captions; with ``--reference DIR``, FID and KID against
those pictures and IS, on the field's Inception-v3 (``clipag download inception`` once).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["main", "build_parser"]

DEFAULT_SCORER = "openai-ViT-B/32"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CHUNK = 256  # pictures read at once: a folder of 10,000 need not fit in memory


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipag score", description=__doc__.split("\n\n")[1].replace("\n", " "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  clipag score runs/                                  # CLIP score (+ judge numbers on mini captions)\n"
               "  clipag score runs/ --clip-model openai-ViT-B/32 --reference coco-val2017/\n"
               "  clipag score runs/ --reference ref/ --inception weights-inception-2015-12-05-6726825d.pth",
    )
    parser.add_argument("folder", help="the --out-dir of a batch run (holds manifest.jsonl)")
    parser.add_argument("--clip-model", default=None,
                        help=f"the CLIP that scores (default: {DEFAULT_SCORER} when cached, else the shipped "
                             f"mini-vanilla); best one that did not paint")
    parser.add_argument("--reference", default=None, metavar="DIR",
                        help="real pictures for FID and KID (and IS of the generated ones); needs the Inception "
                             "weights")
    parser.add_argument("--inception", default=None, metavar="FILE",
                        help="Inception-v3 weights file (default: the cache; `clipag download inception`)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--json", default=None, help="where the JSON goes (default: DIR/score.json)")
    return parser


def _read_images(paths: Sequence[Path]):
    import numpy as np
    import torch
    from PIL import Image

    arrays = []
    size = None
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            size = size or image.size
            if image.size != size:
                image = image.resize(size, Image.BICUBIC)
            arrays.append(np.asarray(image, dtype=np.float32) / 255)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _scorer(name: Optional[str], painted: set[str], warnings: list[str]) -> str:
    from ..registry import REGISTRY
    from .models import is_cached

    if name is None:
        name = DEFAULT_SCORER if is_cached(REGISTRY[DEFAULT_SCORER]) else "mini-vanilla"
        if name != DEFAULT_SCORER:
            warnings.append(f"{DEFAULT_SCORER} is not cached, so mini-vanilla scores (`clipag download "
                            f"{DEFAULT_SCORER}` for the usual scorer)")
    if name in painted:
        warnings.append(f"the scoring CLIP {name} also painted some of these pictures: a CLIP score rewards "
                        f"pictures made against the same model, adversarial ones included; pass another "
                        f"--clip-model")
    return name


def _chunks(paths: Sequence[Path], size: int = CHUNK):
    for start in range(0, len(paths), size):
        yield _read_images(paths[start:start + size])


def _score(args: argparse.Namespace) -> int:
    from ..scoring.metrics import PictureScores, world_captions
    from ..synthesis.batch import MANIFEST, Manifest
    from ..synthesis.models import load_model

    folder = Path(args.folder)
    if not (folder / MANIFEST).is_file() and not list(folder.glob("manifest.part-*.jsonl")):
        raise FileNotFoundError(f"{folder} has no {MANIFEST}; make one with `clipag generate --prompts FILE "
                                f"--out-dir {folder}`")
    records = [r for r in Manifest(folder).records() if (folder / r["file"]).is_file()]
    if not records:
        raise ValueError(f"{folder}/{MANIFEST} lists no picture that is there")
    weights = None
    ref_paths: list[Path] = []
    if args.reference:
        from ..scoring.inception import inception_path

        weights = inception_path(args.inception)  # fails early, naming the file and the command
        ref_paths = sorted(p for p in Path(args.reference).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(ref_paths) < 2:
            raise ValueError(f"--reference {args.reference} holds {len(ref_paths)} pictures; FID needs at least 2")
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record["model"], []).append(record)
    warnings: list[str] = []
    scorer = _scorer(args.clip_model, set(groups), warnings)
    judged = world_captions([r["caption"] for r in records]) is not None
    scores = PictureScores(load_model(scorer, args.device), judge=judged, inception=weights)
    for chunk in _chunks(ref_paths):  # once: the reference's features serve every row
        scores.add_reference(chunk)
    report: dict = {"folder": str(folder), "scoring_model": scorer, "reference": args.reference, "models": {},
                    "warnings": warnings}
    rows = [*groups.items(), ("all", records)] if len(groups) > 1 else list(groups.items())
    for name, group in rows:
        scores.reset()
        for start in range(0, len(group), CHUNK):
            part = group[start:start + CHUNK]
            scores.update(_read_images([folder / r["file"] for r in part]), [r["caption"] for r in part])
        report["models"][name] = scores.compute()
    out = Path(args.json) if args.json else folder / "score.json"
    out.write_text(json.dumps(report, indent=2))
    _print_table(report)
    for warning in warnings:
        print(f"clipag score: warning: {warning}", file=sys.stderr)
    print(f"clipag score: {out}")
    return 0


COLUMNS = (("pictures", "n", "{:.0f}"), ("clip_score", "CLIP score", "{:.2f}"), ("colour+shape", "colour+shape", "{:.2f}"),
           ("all", "all four", "{:.2f}"), ("confidence", "judge conf", "{:.2f}"), ("judge_fid", "judge FID", "{:.2f}"),
           ("fid", "FID", "{:.2f}"), ("kid", "KID", "{:.4f}"), ("is", "IS", "{:.2f}"))


def _print_table(report: dict) -> None:
    rows = report["models"]
    columns = [c for c in COLUMNS if any(c[0] in numbers for numbers in rows.values())]
    width = max(len(n) for n in rows) + 2
    print(f"scored with {report['scoring_model']}")
    print("model".ljust(width) + "  ".join(title.rjust(max(len(title), 7)) for _, title, _ in columns))
    for name, numbers in rows.items():
        cells = [(fmt.format(numbers[key]) if key in numbers else "-").rjust(max(len(title), 7))
                 for key, title, fmt in columns]
        print(name.ljust(width) + "  ".join(cells))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``clipag score``; 2 for bad input or missing weights."""
    from .generate import run_cli, setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(False)
    return run_cli("score", lambda: _score(args))
