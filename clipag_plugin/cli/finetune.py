"""``clipag finetune``: adversarial fine-tuning of a CLIP image encoder (the CLIPAG recipe).

Flags are generated from :class:`clipag_plugin.train.config.FinetuneConfig`, so defaults live in
one place. Precedence: dataclass defaults < ``--config FILE`` (YAML/JSON) < explicit flags.
Under ``torchrun --nproc_per_node N -m clipag finetune ...`` it runs data-parallel.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any, Optional, Sequence

EPILOG = """\
attack radius: eps is in [0,1] pixel units with CLIP's normalization applied inside the model.
The default L2 eps is CLIPAG's 1.5 at 224x224, scaled by sqrt(pixel count) at other input
resolutions (eps = 1.5 * R / 224: 0.75 at 112, 0.43 at 64); L-infinity defaults to 4/255.
PGD takes --pgd-steps steps of 2.5 * eps / steps.

examples:
  clipag finetune --model openai-ViT-B/32 --data 'shards/{00000..00099}.tar' --out runs/clipag
  torchrun --nproc_per_node 8 -m clipag finetune --config recipe.yaml --out runs/clipag
  clipag finetune --out runs/clipag --resume            # continue from the last checkpoint
"""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    from ..train.config import FinetuneConfig

    parser = argparse.ArgumentParser(
        prog="clipag finetune", description="Adversarially fine-tune a CLIP image encoder (CLIPAG recipe).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--out", required=True, help="output folder (checkpoints, metrics.jsonl, config.json, model/)")
    parser.add_argument("--config", default=None, help="YAML or JSON file of settings (flags override it)")
    parser.add_argument("--resume", action="store_true", default=False, help="continue from the newest checkpoint in --out")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO", help="upload the exported model to org/name")
    parser.add_argument("--private", action="store_true", default=False, help="make the --push-to-hub repo private")
    parser.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true", default=False,
                        help="no progress bar")
    hints = typing.get_type_hints(FinetuneConfig)
    group = parser.add_argument_group("recipe (defaults shown)")
    for f in dataclasses.fields(FinetuneConfig):
        kind = hints[f.name]
        help_ = f"{f.metadata.get('help', '')} (default: {f.default})"
        kwargs: dict[str, Any] = {"help": help_, "dest": f.name}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.name == "betas":
            kwargs.update(nargs=2, type=float, metavar=("BETA1", "BETA2"))
        else:
            base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
            kwargs["type"] = base if base in (int, float, str) else str
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
        group.add_argument(_flag(f.name), **kwargs)
    return parser


def resolve_config(args: argparse.Namespace):
    """Defaults < config file < flags given on the command line."""
    from ..train.config import FinetuneConfig, load_config_file

    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    values.update({k: v for k, v in vars(args).items() if k in fields})
    return FinetuneConfig.from_dict(values)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = resolve_config(args)
    except (KeyError, ValueError, OSError) as err:
        print(f"clipag finetune: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    if not config.data:
        print("clipag finetune: no training data; pass --data (tar shards, CSV or caption folder) or set it in --config",
              file=sys.stderr)
        return 2

    import clipag_plugin as clipag

    from ..train import dist
    from ..train.export import push_to_hub
    from ..train.loop import finetune

    d = dist.setup_from_env()
    try:
        model, _ = clipag.load(config.model, device="cpu")
        finetune(model, None, config, out_dir=args.out, progress=not args.no_progress, resume=args.resume)
        if d.is_main:
            print(f"clipag finetune: model written to {args.out}/model")
            if args.push_to_hub:
                url = push_to_hub(f"{args.out}/model", args.push_to_hub, private=args.private)
                print(f"clipag finetune: uploaded to {url}")
    finally:
        dist.cleanup()
    return 0
