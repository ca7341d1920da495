"""``clipag generate PROMPT``: text-to-image by optimizing pixels against a robust CLIP.

Defaults live in :class:`clipag_plugin.synthesis.loop.GenerateConfig`; flags left out keep them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["main", "build_parser", "add_generation_options", "config_from_args", "run_cli", "CliError"]


class CliError(Exception):
    """A bad input, reported as one line without a traceback."""


# flag -> (GenerateConfig field, type, help)
_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--steps", "steps", int, "optimization steps"),
    ("--lr", "lr", float, "AdamW learning rate, or with --optimizer l2 the L2 length of each step "
                          "in [0, 1] pixels (1.0 for the mini models at 96 px)"),
    ("--optimizer", "optimizer", str, "adamw (the notebook's) or l2: fixed-length steps along the gradient, "
                                      "as in synthesis with robust classifiers"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay"),
    ("--grad-clip", "grad_clip", float, "max gradient norm per image (AdamW)"),
    ("--views", "views", int, "augmented full views per step (V)"),
    ("--crops", "crops", int, "random crops per step (P)"),
    ("--view-weight", "view_weight", float, "weight of the views' loss"),
    ("--crop-weight", "crop_weight", float, "weight of the crops' loss"),
    ("--crop-size", "crop_size", int, "crop side in pixels (default: 128 at 224, scaled)"),
    ("--noise-std", "noise_std", float, "std of the pixel noise added to views and crops"),
    ("--threshold", "threshold", float, "dynamic-threshold quantile p"),
    ("--distance", "distance", str, "cosine (1 - cos) or spherical (VQGAN+CLIP's)"),
    ("--size", "size", int, "image side in pixels (default: the model's input resolution)"),
    ("--init", "init", str, "gmm, noise, gray or image"),
    ("--init-image", "init_image", str, "picture to start from (with --init image)"),
    ("--gmm", "gmm_path", str, "GMM file from `clipag gmm fit`, or a shipped prior: photos (default), miniworld"),
    ("--candidates", "gmm_candidates", int, "GMM samples scored to pick the start"),
    ("--save-every", "save_every", int, "write a frame every K steps"),
    ("--param", "param", str, "what is optimized: pixels, or multires (images at 1, 2, 4, ... px summed in "
                              "logit space)"),
    ("--copies", "copies", int, "extra jittered, noisy copies of the image per step (Direct Ascent Synthesis)"),
    ("--jitter", "jitter", int, "max shift of each copy in pixels"),
    ("--copy-noise", "copy_noise", float, "std of the pixel noise of each copy"),
    ("--precision", "precision", str, "encoder compute precision: auto (on CUDA bf16 from compute capability 8.0, "
                                      "fp16 with a scaled loss on 7.x; fp32 elsewhere), fp32, bf16, fp16; pixels "
                                      "and losses stay fp32"),
    ("--weights", "weights", str, "encoder weight dtype: auto (the compute precision, converted once on a copy), "
                                  "or fp32 under autocast"),
]


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """The optimization flags shared by ``generate`` and ``compare`` (defaults from GenerateConfig)."""
    from clipag_plugin.synthesis.loop import GenerateConfig

    defaults = GenerateConfig()
    from clipag_plugin.guidance.losses import DISTANCES
    from clipag_plugin.synthesis.init import INITS
    from clipag_plugin.synthesis.loop import OPTIMIZERS
    from clipag_plugin.synthesis.param import PARAMS
    from clipag_plugin.synthesis.presets import AUTO, NONE, PRESETS

    parser.add_argument("--preset", default=AUTO, choices=[AUTO, NONE, *PRESETS],
                        help="settings under the flags: auto (the model's own preset, see `clipag models`), "
                             "none (the global defaults below), or a preset by name (default: auto)")
    group = parser.add_argument_group("optimization (flags given win over the preset; defaults below are the "
                                      "global ones, the CLIPAG notebook's)")
    from clipag_plugin.synthesis.accel import PRECISIONS, WEIGHTS

    choices = {"init": list(INITS), "distance": list(DISTANCES), "optimizer": list(OPTIMIZERS),
               "param": list(PARAMS), "precision": list(PRECISIONS), "weights": list(WEIGHTS)}
    for flag, name, kind, help_ in _OPTIONS:
        group.add_argument(flag, dest=name, type=kind, default=None, choices=choices.get(name),
                           help=f"{help_} (default: {_show(getattr(defaults, name))})")
    group.add_argument("--levels", dest="levels", type=int, nargs="+", default=None, metavar="R",
                       help="multires resolutions in pixels (default: 1 2 4 ... up to the image side, and the side)")
    group.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                       help="no colour/translation/resize/cutout/noise: with --views 1 --crops 0 the encoder "
                            "runs once per step")
    group.add_argument("--no-threshold", dest="no_threshold", action="store_true",
                       help="plain clamp to [0, 1] instead of dynamic thresholding")
    group.add_argument("--truncate", dest="truncate", action="store_true", default=None,
                       help="cut prompts longer than the model's context length instead of failing")
    group.add_argument("--compile", dest="compile", action="store_true", default=None,
                       help="torch.compile the encoder (fastest on GPUs for long runs; falls back to eager, "
                            "announced, where the compiler is unavailable)")
    parser.add_argument("--seed", dest="seeds", type=int, nargs="+", default=[0],
                        help="one or more seeds (several: a batch, one image each)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or status lines, only the result")


def _show(value: Any) -> str:
    if value is None:
        return "auto"
    return str(value)


def explicit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The GenerateConfig fields whose flags were given (they win over any preset)."""
    given = {name: getattr(args, name) for _, name, _, _ in _OPTIONS if getattr(args, name) is not None}
    if args.augment is not None:
        given["augment"] = args.augment
    if args.truncate:
        given["truncate"] = True
    if getattr(args, "compile", None):
        given["compile"] = True
    if args.no_threshold:
        given["threshold"] = None
    if args.levels is not None:
        given["levels"] = tuple(args.levels)
    return given


def config_from_args(args: argparse.Namespace):
    """GenerateConfig of the global defaults with the flags that were given (no preset)."""
    from clipag_plugin.synthesis.loop import GenerateConfig

    return GenerateConfig(**explicit_options(args))


def setup_logging(quiet: bool) -> None:
    """Library messages (model choice, preset, init, status lines) to stderr, one line each."""
    from clipag_plugin.progress import log_to_stderr

    log_to_stderr(quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipag generate",
        description="Generator-free text-to-image: optimize pixels so a robust CLIP matches the prompt.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='prompt syntax: "a red barn:1 | blurry:-0.3" (text:weight[:stop], negative weights push away)\n\n'
               "examples:\n"
               '  clipag generate "a red circle on the left, blue background" --model mini --out circle.png\n'
               '  clipag generate "a watercolor of a fox" --model ViT-B/32 --seed 0 1 2 --out fox.png\n'
               '  clipag generate "a red barn" --param multires --views 1 --crops 0 --no-augment --preset none\n'
               "  clipag generate --prompts captions.txt --out-dir runs/ --model mini --seeds 2\n"
               "  torchrun --nproc-per-node 4 -m clipag generate --prompts coco.jsonl --out-dir runs/",
    )
    parser.add_argument("prompt", nargs="?", default=None, help="text prompt(s) (or --prompts FILE)")
    parser.add_argument("--model", nargs="+", default=None,
                        help="model name(s) or path(s); several = an ensemble (losses summed). "
                             "Default: ViT-B/32 when cached or reachable, else the embedded 'mini'")
    parser.add_argument("--out", default="clipag.png", help="output image (several seeds: NAME_s<seed>.png)")
    parser.add_argument("--gif", default=None, help="also write an animated GIF of the frames (needs --save-every)")
    batch = parser.add_argument_group(
        "many captions (one model load; resumable: a rerun skips what is done; under torchrun each rank takes "
        "its share)")
    batch.add_argument("--prompts", default=None, metavar="FILE",
                       help="caption file: .txt one caption a line, or .csv / .jsonl with id and caption")
    batch.add_argument("--out-dir", default=None, metavar="DIR",
                       help="output folder: DIR/<model>/<id>.png and DIR/manifest.jsonl (needs --prompts)")
    batch.add_argument("--seeds", dest="per_caption", type=int, default=1, metavar="K",
                       help="pictures per caption; seeds come from the caption id and --seed (default 1)")
    batch.add_argument("--batch", dest="batch_size", type=int, default=8, metavar="N",
                       help="pictures optimized together, each against its own caption (default 8)")
    add_generation_options(parser)
    return parser


def resolve_models(names: Optional[Sequence[str]]) -> tuple[list[str], str]:
    """The model names to use, and a note saying which default was picked (if one was)."""
    from clipag_plugin.synthesis.api import default_model_choice

    if names:
        return list(names), ""
    name, reason = default_model_choice()
    return [name], f"using model {name!r}: {reason}"


def output_paths(out: Path, seeds: Sequence[int]) -> list[Path]:
    """One path per seed (the given one when there is a single seed)."""
    if len(seeds) == 1:
        return [out]
    return [out.with_name(f"{out.stem}_s{seed}{out.suffix}") for seed in seeds]


def run_cli(command: str, body) -> int:
    """Run ``body()``; turn bad-input exceptions into one line on stderr and exit status 2."""
    from clipag_plugin.tokenizer import ContextLengthError

    try:
        return int(body() or 0)
    except KeyboardInterrupt:
        print(f"clipag {command}: interrupted", file=sys.stderr)
        return 130
    except (CliError, ValueError, KeyError, FileNotFoundError, OSError, ContextLengthError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"clipag {command}: error: {message}", file=sys.stderr)
        return 2


def _generate_batch(args: argparse.Namespace) -> int:
    from clipag_plugin.synthesis.batch import generate_batch, read_captions
    from clipag_plugin.train import dist

    if args.prompt:
        raise CliError("give either a prompt or --prompts FILE, not both")
    if not args.out_dir:
        raise CliError("--prompts needs --out-dir DIR (where the pictures and manifest.jsonl go)")
    if len(args.seeds) > 1:
        raise CliError("with --prompts, --seed takes one base seed; --seeds K asks for K pictures per caption")
    for flag, value in (("--seeds", args.per_caption), ("--batch", args.batch_size)):
        if value < 1:
            raise CliError(f"{flag} {value} must be at least 1")
    setup_logging(args.quiet)
    explicit = explicit_options(args)
    config_from_args(args)  # bad values fail here, before any model is loaded
    if args.gif or explicit.get("save_every"):
        raise CliError("--gif and --save-every keep the frames of one prompt; a caption file writes the "
                       "finished pictures only")
    captions = read_captions(args.prompts)
    where = dist.setup_from_env()
    try:
        models, note = resolve_models(args.model)
        if note and where.is_main:
            print(f"clipag generate: {note}", file=sys.stderr)
        device = args.device
        if device is None and where.enabled and torch_cuda():
            device = f"cuda:{where.local_rank}"
        summary = generate_batch(captions, models if len(models) > 1 else models[0], args.out_dir,
                                 per_caption=args.per_caption, seed=args.seeds[0], batch_size=args.batch_size,
                                 device=device, preset=args.preset, progress=False if args.quiet else None,
                                 **explicit)
    finally:
        dist.cleanup()
    if where.is_main:
        print(f"{summary.folder}: {summary.made} pictures painted, {summary.skipped} already there "
              f"(settings {summary.settings}); manifest {summary.manifest}")
    return 0


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _generate(args: argparse.Namespace) -> int:
    from clipag_plugin.synthesis.api import generate_tensor

    if args.prompts or args.out_dir:
        if not args.prompts:
            raise CliError("--out-dir is for caption files: add --prompts FILE (or use --out for one prompt)")
        return _generate_batch(args)
    if not args.prompt:
        raise CliError('give a prompt, e.g. clipag generate "a red circle", or a caption file with --prompts FILE')
    from clipag_plugin.synthesis.frames import check_writable, save_gif
    from clipag_plugin.synthesis.loop import NonFiniteLossWarning

    setup_logging(args.quiet)
    explicit = explicit_options(args)
    config_from_args(args)  # bad values fail here, before any model is loaded
    out = check_writable(args.out)
    paths = [check_writable(p) for p in output_paths(out, args.seeds)]
    if args.gif:
        check_writable(args.gif)
        if not explicit.get("save_every"):
            raise CliError("--gif needs frames: add --save-every K (e.g. --save-every 5)")
    models, note = resolve_models(args.model)
    if note:
        print(f"clipag generate: {note}", file=sys.stderr)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonFiniteLossWarning)
        result = generate_tensor(args.prompt, models if len(models) > 1 else models[0], seeds=args.seeds,
                                 device=args.device, progress=False if args.quiet else None, preset=args.preset,
                                 **explicit)
    seconds = time.perf_counter() - start
    for w in caught:  # the NaN warning becomes the message below; pass others on
        if not issubclass(w.category, NonFiniteLossWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    for path, image in zip(paths, result.to_pil(), strict=True):
        image.save(path)
    frame_dir = None
    if result.frames:
        frame_dir = out.with_name(out.stem + "_frames")
        frame_dir.mkdir(exist_ok=True)
        from torchvision.transforms.functional import to_pil_image

        gif_frames = []
        for step, batch in result.frames:
            for seed, img in zip(result.seeds, batch, strict=True):
                pil = to_pil_image(img.clamp(0, 1))
                pil.save(frame_dir / f"s{seed}_step{step:04d}.png")
                if seed == result.seeds[0]:
                    gif_frames.append(pil)
        if args.gif:
            save_gif(gif_frames, args.gif)
    summary = {
        "prompt": args.prompt,
        "prompts": [dataclasses.asdict(p) for p in result.prompts],
        "models": result.models,
        "seeds": result.seeds,
        "preset": result.preset,
        "explicit": sorted(explicit),
        "config": dataclasses.asdict(result.config),
        "best_loss": result.loss.tolist(),
        "best_cosine": result.cosine.tolist(),
        "best_step": result.step.tolist(),
        "nan_step": result.nan_step,
        "seconds": round(seconds, 3),
        "outputs": [str(p) for p in paths],
        "frames": str(frame_dir) if frame_dir else None,
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=str))
    for path, seed, loss, cos, step in zip(paths, result.seeds, result.loss, result.cosine, result.step, strict=True):
        print(f"{path}  seed {seed}  loss {float(loss):.4f}  cosine {float(cos):.4f}  best step {int(step)}")
    if result.nan_step is not None:
        print(f"clipag generate: loss became NaN/inf at step {result.nan_step}; saved the best image so far "
              "(try a lower --lr)", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``clipag generate``; returns the exit status (2 for bad input, 1 when the loss went NaN)."""
    args = build_parser().parse_args(argv)
    return run_cli("generate", lambda: _generate(args))
