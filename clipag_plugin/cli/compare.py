"""``clipag compare PROMPT [PROMPT ...] --models A B``: one labelled side-by-side grid of generations.

Columns are (model, setting) pairs, rows are (prompt, seed) pairs. ``--judge`` scores every
column with the mini world's judge (prompts must be mini-world captions). A setting is a comma-separated list of
``GenerateConfig`` fields, e.g. ``"views=1,crops=0,augment=false"``, applied over each model's preset and the
flags given (``default``: nothing more).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from .generate import add_generation_options, explicit_options, run_cli, setup_logging

__all__ = ["main", "parse_setting", "make_grid", "make_across_grid"]


def _coerce(field: dataclasses.Field, raw: str) -> Any:
    text = raw.strip()
    if text.lower() in {"none", "null"}:
        return None
    if field.type in ("bool",) or isinstance(field.default, bool):
        if text.lower() in {"1", "true", "yes", "on"}:
            return True
        if text.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"setting {field.name}={raw!r}: expected true or false")
    if "tuple" in str(field.type):  # levels: resolutions separated by spaces or '/'
        try:
            return tuple(int(v) for v in text.replace("/", " ").split())
        except ValueError:
            raise ValueError(f"setting {field.name}={raw!r}: expected integers separated by spaces, "
                             "e.g. '1 2 4 8 16 32 64 96'") from None
    kind = type(field.default) if field.default is not None else None
    if "int" in str(field.type) and "float" not in str(field.type):
        kind = int
    elif "float" in str(field.type):
        kind = float
    elif kind is None:
        kind = str
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"setting {field.name}={raw!r}: expected a {kind.__name__}") from None


def parse_setting(spec: str) -> dict[str, Any]:
    """``"views=1,crops=0,augment=false"`` -> ``{"views": 1, "crops": 0, "augment": False}``."""
    from clipag_plugin.synthesis.loop import GenerateConfig

    fields = {f.name: f for f in dataclasses.fields(GenerateConfig)}
    spec = spec.strip()
    if spec in {"", "default"}:
        return {}
    out: dict[str, Any] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"setting {spec!r}: expected name=value pairs separated by ',', e.g. 'views=1,crops=0'")
        if key not in fields:
            raise ValueError(f"setting {spec!r}: unknown option {key!r}; valid: {', '.join(fields)}")
        out[key] = _coerce(fields[key], value)
    return out


def make_grid(cells: Sequence[Sequence], col_labels: Sequence[str], row_labels: Sequence[str], cell: int = 224):
    """PIL grid: ``cells[row][col]`` PIL images, labels (``\n`` for new lines) above columns, left of rows."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad, line_h = 4, 12
    wrapped = [_wrap(label, measure, font, cell) for label in col_labels]
    label_h = pad + line_h * max([len(w) for w in wrapped] + [1])
    row_w = max([measure.textlength(r, font=font) for r in row_labels] + [0])
    left = int(row_w) + 2 * pad
    width = left + len(col_labels) * (cell + pad) + pad
    height = label_h + len(cells) * (cell + pad) + pad
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    for c, lines in enumerate(wrapped):
        for i, line in enumerate(lines):
            draw.text((left + c * (cell + pad), pad + line_h * i), line, fill="black", font=font)
    for r, row in enumerate(cells):
        y = label_h + r * (cell + pad)
        draw.text((pad, y + cell // 2 - 5), row_labels[r], fill="black", font=font)
        for c, image in enumerate(row):
            tile = image.convert("RGB").resize((cell, cell), Image.NEAREST if image.width < cell else Image.LANCZOS)
            grid.paste(tile, (left + c * (cell + pad), y))
    return grid


def make_across_grid(
    columns: Sequence[Sequence], col_labels: Sequence[str], row_labels: Sequence[str], per_row: int, cell: int = 224
):
    """PIL grid with prompts across and models down: ``columns[m][p]`` is model ``m``'s picture for prompt ``p``.

    Prompts are laid out ``per_row`` to a block, each block with one row per model (labelled on the
    left with ``col_labels[m]``) under the prompts' captions (``row_labels[p]``, wrapped to the
    cell's width). Wide rather than tall: what a README or a slide shows best.
    """
    from PIL import Image, ImageDraw, ImageFont

    if per_row < 1:
        raise ValueError(f"per_row={per_row}: need at least one prompt per row")
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad, line_h = 4, 12
    n_prompts = len(row_labels)
    per_row = min(per_row, n_prompts)
    blocks = [list(range(start, min(start + per_row, n_prompts))) for start in range(0, n_prompts, per_row)]
    model_lines = [label.split("\n") for label in col_labels]
    left = int(max(measure.textlength(line, font=font) for lines in model_lines for line in lines)) + 3 * pad
    captions = [_wrap(label, measure, font, cell) for label in row_labels]
    caption_h = [pad + line_h * max(len(captions[p]) for p in block) for block in blocks]
    block_h = [h + len(columns) * (cell + pad) + pad for h in caption_h]
    grid = Image.new("RGB", (left + per_row * (cell + pad) + pad, sum(block_h)), "white")
    draw = ImageDraw.Draw(grid)
    y = 0
    for block, head, height in zip(blocks, caption_h, block_h, strict=True):
        for i, p in enumerate(block):
            for k, line in enumerate(captions[p]):
                draw.text((left + i * (cell + pad), y + pad + line_h * k), line, fill="black", font=font)
        for m, lines in enumerate(model_lines):
            top = y + head + m * (cell + pad)
            for k, line in enumerate(lines):
                draw.text((pad, top + pad + line_h * k), line, fill="black", font=font)
            for i, p in enumerate(block):
                image = columns[m][p]
                tile = image.convert("RGB").resize(
                    (cell, cell), Image.NEAREST if image.width < cell else Image.LANCZOS)
                grid.paste(tile, (left + i * (cell + pad), top))
        y += height
    return grid


def _wrap(text: str, draw, font, width: int) -> list[str]:
    """Lines of ``text`` that fit ``width`` pixels: split at newlines, then words, then characters."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for ch in paragraph:
            trial = current + ch
            if draw.textlength(trial, font=font) <= width or not current:
                current = trial
                continue
            cut = current.rfind(" ")
            if cut > 0:  # break at the last space when there is one
                lines.append(current[:cut])
                current = current[cut + 1 :] + ch
            else:
                lines.append(current)
                current = ch
        lines.append(current)
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipag compare",
        description="Generate the same prompt with several models and/or settings; write one labelled grid.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               '  clipag compare "a red barn" --models openai-ViT-B/32 ViT-B/32 --out grid.png\n'
               '  clipag compare "a blue cross at the top, red background" --models mini-vanilla mini --judge\n'
               '  clipag compare "a fox" --models mini --settings default "param=pixels" "optimizer=adamw,lr=0.05"\n',
    )
    parser.add_argument("prompts", nargs="+", metavar="prompt", help="one or more prompts (one row each)")
    parser.add_argument("--models", "--model", dest="models", nargs="+", default=None,
                        help="models to compare (default: the default model)")
    parser.add_argument("--settings", nargs="+", default=["default"],
                        help="settings to compare, each 'name=value,...' over each model's preset and the flags "
                             "below (default: 'default', the preset as it is)")
    parser.add_argument("--out", default="compare.png", help="grid image (a .json summary is written beside it)")
    parser.add_argument("--cell", type=int, default=224, help="side of one tile in the grid, pixels")
    parser.add_argument("--across", type=int, default=0, metavar="N",
                        help="lay prompts across (N per row, one row per model/setting) instead of one row per "
                             "prompt; wide pictures for slides and READMEs (default 0: prompts down)")
    parser.add_argument("--heldout", default=None, metavar="MODEL",
                        help="also score every result with this CLIP (one none of the runs optimized against)")
    parser.add_argument("--judge", action="store_true",
                        help="score each column with the mini world's judge (colour, shape, position, background); "
                             "prompts must be mini-world captions")
    add_generation_options(parser)
    return parser


def _compare(args: argparse.Namespace) -> int:
    import torch

    from clipag_plugin.synthesis.api import generate_tensor
    from clipag_plugin.synthesis.frames import check_writable
    from clipag_plugin.synthesis.loop import GenerateConfig

    from .generate import resolve_models

    setup_logging(args.quiet)
    out = check_writable(args.out)
    base = explicit_options(args)
    configs = [(spec, {**base, **parse_setting(spec)}) for spec in args.settings]
    for _, options in configs:
        GenerateConfig(**options)  # bad values fail here, before any model is loaded
    models, note = resolve_models(args.models)
    if note:
        print(f"clipag compare: {note}", file=sys.stderr)
    heldout = None
    if args.heldout:
        from clipag_plugin.loading import load

        heldout = load(args.heldout, device=args.device)[0]
    if args.judge:
        from clipag_plugin.mini.world import parse_caption

        for prompt in args.prompts:
            try:
                parse_caption(prompt)
            except ValueError as err:
                raise ValueError(f"--judge needs mini-world captions: {err}") from None
    columns, labels, summary = [], [], []
    for model in models:
        for spec, options in configs:
            cells, images, cosines, records = [], [], [], []
            for prompt in args.prompts:
                result = generate_tensor(prompt, model, seeds=args.seeds, device=args.device,
                                         progress=False if args.quiet else None, preset=args.preset, **options)
                cells += result.to_pil()
                images.append(result.images.detach().float().cpu())
                cosines += [float(c) for c in result.cosine]
                record = {"prompt": prompt, "best_loss": result.loss.tolist(), "best_cosine": result.cosine.tolist(),
                          "best_step": result.step.tolist(), "nan_step": result.nan_step}
                if heldout is not None:
                    from clipag_plugin.synthesis.evaluate import heldout_cosine

                    record["heldout_cosine"] = heldout_cosine(heldout, result.images, prompt,
                                                              truncate=result.config.truncate).tolist()
                records.append(record)
            name = Path(model).name if Path(model).exists() else model
            # every prompt of a column resolves to the same settings: the last result speaks for them
            shown = spec if spec not in {"", "default"} else f"preset {result.preset or 'none'}"
            label = f"{name}\n{shown}\nmean cos {sum(cosines) / len(cosines):.3f}"
            column = {"model": model, "setting": spec, "preset": result.preset,
                      "config": dataclasses.asdict(result.config), "runs": records}
            if heldout is not None:
                held = [c for r in records for c in r["heldout_cosine"]]
                label += f"\nheld-out {sum(held) / len(held):.3f}"
            if args.judge:
                from clipag_plugin.mini.judge import confidence, score

                judged = [p for p in args.prompts for _ in args.seeds]
                column["judge"] = score(torch.cat(images), judged)
                column["judge"]["confidence"] = confidence(torch.cat(images), judged)
                label += (f"\njudge colour+shape {column['judge']['colour+shape']:.2f}"
                          f"\njudge confidence {column['judge']['confidence']:.2f}")
            columns.append(cells)
            labels.append(label)
            summary.append(column)
    if args.across:
        captions = [p if len(args.seeds) == 1 else f"{p} (seed {s})" for p in args.prompts for s in args.seeds]
        make_across_grid(columns, labels, captions, args.across, args.cell).save(out)
    else:
        rows = [[col[r] for col in columns] for r in range(len(columns[0]))]
        row_labels = [f"{_short(p, 48)} (seed {s})" for p in args.prompts for s in args.seeds]
        make_grid(rows, labels, row_labels, args.cell).save(out)
    Path(out).with_suffix(".json").write_text(json.dumps(
        {"prompts": args.prompts, "seeds": args.seeds, "heldout": args.heldout, "preset": args.preset,
         "explicit": base, "columns": summary},
        indent=2, default=str))
    _print_table(summary, judge=args.judge)
    print(f"grid: {out}")
    return 0


def _short(prompt: str, width: int = 28) -> str:
    return prompt if len(prompt) <= width else prompt[: width - 3] + "..."


def _print_table(summary: Sequence[dict], judge: bool) -> None:
    """One line per column: mean cosine (and held-out cosine, judge accuracies when measured)."""
    keys = ["colour", "shape", "position", "background", "colour+shape", "all", "confidence"] if judge else []
    head = f"{'model':<16} {'setting':<28} {'cosine':>7}" + "".join(f" {k:>12}" for k in keys)
    print(head)
    print("-" * len(head))
    for col in summary:
        cos = [c for r in col["runs"] for c in r["best_cosine"]]
        line = f"{Path(col['model']).name:<16} {_short(col['setting'], 28):<28} {sum(cos) / len(cos):7.3f}"
        line += "".join(f" {col['judge'][k]:12.2f}" for k in keys)
        print(line)
    if judge:
        print("judge: accuracy of the mini world's independent classifier on the generated images; confidence: "
              "its mean probability of the asked values (clean renders: about 1)")


def main(argv: Optional[Sequence[str]] = None, command: str = "compare") -> int:
    """``clipag compare``; returns the exit status (2 for bad input). ``command`` names the caller in messages."""
    args = build_parser().parse_args(argv)
    return run_cli(command, lambda: _compare(args))
