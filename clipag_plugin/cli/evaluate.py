"""``clipag eval``: zero-shot, retrieval and robust accuracy of one or more models, side by side.

Also dispatches ``--judge FOLDER`` to ``clipag_plugin.mini.judge.score_folder`` (the mini
world's independent judge of generated pictures) when that module is installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

EPILOG = """\
examples:
  clipag eval --model openai-ViT-B/32 --model ViT-B/32 --zeroshot imagenette/val --l2 0.5 1.0 --linf 1/255 4/255
  clipag eval --model runs/clipag/model --retrieval coco_val.csv --max-samples 1000 --json report.json
  clipag eval --judge generated/           # score pictures with the mini world's judge

eps values are in [0,1] pixel units (CLIP normalization is inside the model); L-infinity
values accept fractions such as 4/255.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipag eval", description="Clean and robust evaluation of CLIP models.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "--models", dest="model", action="extend", nargs="+", default=[],
                        help="models clipag.load accepts; several compare side by side (--model A B, or repeat)")
    parser.add_argument("--zeroshot", default=None, metavar="DIR", help="image folder, one subfolder per class")
    parser.add_argument("--templates", nargs="+", default=None, help="prompt templates with {} for the class name")
    parser.add_argument("--templates-file", default=None, help="text file, one template per line")
    parser.add_argument("--retrieval", default=None, metavar="DATA",
                        help="caption data: CSV of path,caption, folder with sidecar .txt, or tar shards")
    parser.add_argument("--csv-path-column", default="path")
    parser.add_argument("--csv-caption-column", default="caption")
    parser.add_argument("--max-samples", type=int, default=1000, help="cap on images read per task (default 1000)")
    parser.add_argument("--l2", nargs="*", default=[], metavar="EPS", help="L2 PGD radii, e.g. 0.5 1.0")
    parser.add_argument("--linf", nargs="*", default=[], metavar="EPS", help="L-infinity PGD radii, e.g. 1/255 4/255")
    parser.add_argument("--pgd-steps", type=int, default=10, help="PGD steps of every attack (default 10)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the report here")
    parser.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--judge", default=None, metavar="FOLDER", help="score generated pictures with the mini world's judge")
    return parser


def _attacks(args: argparse.Namespace) -> list:
    from ..train.evaluate import AttackConfig

    specs = [f"l2:{e}" for e in args.l2] + [f"linf:{e}" for e in args.linf]
    return [AttackConfig.parse(s, steps=args.pgd_steps) for s in specs]


def load_class_folder(root: str | Path, resolution: int, max_samples: int) -> tuple[Any, Any, list[str], int]:
    """``(images01, labels, class_names, skipped)`` from ``root/<class>/<image>``; names with ``_`` -> space."""
    import torch
    from PIL import Image

    from ..train.data import IMAGE_EXTENSIONS, image_to_tensor

    root = Path(root)
    classes = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise ValueError(f"--zeroshot {root}: expected a folder with one subfolder per class")
    files = [(f, i) for i, c in enumerate(classes) for f in sorted(c.rglob("*")) if f.suffix.lower() in IMAGE_EXTENSIONS]
    if len(files) > max_samples:  # an even spread over classes, deterministic
        step = len(files) / max_samples
        files = [files[int(i * step)] for i in range(max_samples)]
    images, labels, skipped = [], [], 0
    for path, label in files:
        try:
            with Image.open(path) as image:
                image.load()
                images.append(image_to_tensor(image, resolution))
            labels.append(label)
        except (OSError, ValueError, SyntaxError):
            skipped += 1
    if not images:
        raise ValueError(f"--zeroshot {root}: no readable images")
    names = [c.name.replace("_", " ") for c in classes]
    return torch.stack(images), torch.tensor(labels), names, skipped


def load_caption_data(spec: str, resolution: int, max_samples: int, path_column: str = "path",
                      caption_column: str = "caption") -> tuple[Any, Any, int]:
    """``(images01, tokens, skipped)``: the first ``max_samples`` readable pairs, in file order."""
    import torch

    from ..train.data import decode_record, open_source

    source = open_source(spec, "auto", 1, path_column, caption_column)
    images, tokens, skipped = [], [], 0
    for record in source.epoch(0, 0, 0, 1, 1, shuffle=False):
        sample = decode_record(record, resolution)
        if sample is None:
            skipped += 1
            continue
        images.append(sample[0])
        tokens.append(sample[1])
        if len(images) >= max_samples:
            break
    if not images:
        raise ValueError(f"--retrieval {spec}: no readable image-caption pairs")
    return torch.stack(images), torch.stack(tokens), skipped


def evaluate_model(model, args: argparse.Namespace, templates: Sequence[str], attacks: list,
                   label: str = "") -> dict[str, Any]:
    """Every requested task for one model: ``{task: {"clean": {...}, attack_label: {...}}}``."""
    from tqdm.auto import tqdm

    from ..train.evaluate import retrieval_accuracy, zero_shot_accuracy, zero_shot_classifier

    res = model.visual.input_resolution
    settings = [None, *attacks]
    tasks = [t for t in ("zeroshot", "retrieval") if getattr(args, t)]
    bar = tqdm(total=len(tasks) * len(settings), desc=f"eval {label}", unit="run",
               disable=getattr(args, "no_progress", False))
    out: dict[str, Any] = {}
    if args.zeroshot:
        images, labels, names, skipped = load_class_folder(args.zeroshot, res, args.max_samples)
        classifier = zero_shot_classifier(model, names, templates)
        task: dict[str, Any] = {}
        for attack in settings:
            task["clean" if attack is None else attack.label] = zero_shot_accuracy(
                model, images, labels, names, templates, attack, args.batch_size, classifier)
            bar.update(1)
        out["zeroshot"] = task | {"skipped": skipped, "classes": len(names)}
    if args.retrieval:
        images, tokens, skipped = load_caption_data(args.retrieval, res, args.max_samples, args.csv_path_column,
                                                    args.csv_caption_column)
        task = {}
        for attack in settings:
            task["clean" if attack is None else attack.label] = retrieval_accuracy(
                model, images, tokens, attack, batch_size=args.batch_size)
            bar.update(1)
        out["retrieval"] = task | {"skipped": skipped, "n": int(images.shape[0])}
    bar.close()
    return out


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Rows ``task | setting | metric`` in percent, one column per model."""
    models = list(results)
    rows: list[tuple[str, list[str]]] = []
    keys: list[tuple[str, str, str]] = []
    for res in results.values():
        for task, settings in res.items():
            for setting, metrics in settings.items():
                if isinstance(metrics, dict):
                    for metric in metrics:
                        if metric != "n" and (task, setting, metric) not in keys:
                            keys.append((task, setting, metric))
    for task, setting, metric in keys:
        cells = []
        for m in models:
            value = results[m].get(task, {}).get(setting, {}).get(metric)
            cells.append("-" if value is None else f"{100 * value:.1f}")
        rows.append((f"{task} | {setting} | {metric}", cells))
    width = max([len(r[0]) for r in rows] + [10])
    cols = [max(len(m), 6) for m in models]
    lines = [" " * width + "  " + "  ".join(m.rjust(c) for m, c in zip(models, cols, strict=True))]
    lines += [label.ljust(width) + "  " + "  ".join(v.rjust(c) for v, c in zip(cells, cols, strict=True)) for label, cells in rows]
    return "\n".join(lines)


def run_judge(folder: str) -> Any:
    """``clipag_plugin.mini.judge.score_folder(folder)``, or a helpful error when it is absent."""
    try:
        module = importlib.import_module("clipag_plugin.mini.judge")
    except ModuleNotFoundError as err:
        raise ValueError("--judge needs clipag_plugin.mini.judge (the mini world's judge), which is not installed") from err
    if not hasattr(module, "score_folder"):
        raise ValueError("clipag_plugin.mini.judge has no score_folder(folder); update clipag-plugin")
    return module.score_folder(folder)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.zeroshot or args.retrieval or args.judge):
        print("clipag eval: nothing to do; give --zeroshot DIR, --retrieval DATA and/or --judge FOLDER", file=sys.stderr)
        return 2
    if (args.zeroshot or args.retrieval) and not args.model:
        print("clipag eval: --zeroshot/--retrieval need at least one --model", file=sys.stderr)
        return 2
    try:
        attacks = _attacks(args)
        templates = list(args.templates or [])
        if args.templates_file:
            templates += [t.strip() for t in Path(args.templates_file).read_text().splitlines() if t.strip()]
        from ..train.evaluate import DEFAULT_TEMPLATES

        templates = templates or list(DEFAULT_TEMPLATES)
        report: dict[str, Any] = {"models": args.model, "attacks": [a.label for a in attacks], "results": {}}
        if args.zeroshot or args.retrieval:
            import clipag_plugin as clipag

            for name in args.model:
                model, _ = clipag.load(name, device=args.device)
                model.float()
                report["results"][name] = evaluate_model(model, args, templates, attacks, name)
                del model
        if args.judge:
            report["judge"] = run_judge(args.judge)
    except (KeyError, ValueError, OSError) as err:
        print(f"clipag eval: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    if report["results"]:
        print(format_table(report["results"]))
    if "judge" in report:
        print("judge:", json.dumps(report["judge"], indent=2, default=str))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0
