"""``clipag`` command line: one module per subcommand, each with ``main(argv) -> int``.

Subcommands import lazily so that ``clipag models`` does not pay for the trainer's imports.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

__all__ = ["main", "COMMANDS"]

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("clipag_plugin.cli.demo", "robust vs vanilla mini CLIP on the same prompts: a judged grid (offline, CPU)"),
    "models": ("clipag_plugin.cli.models", "list the models clipag.load accepts, and which are cached"),
    "download": ("clipag_plugin.cli.download", "fetch a model's weights ahead of time (for offline use)"),
    "generate": ("clipag_plugin.cli.generate", "generator-free text-to-image by optimizing pixels"),
    "score": ("clipag_plugin.cli.score", "CLIP score, FID/KID/IS and the mini world's numbers of a batch run"),
    "compare": ("clipag_plugin.cli.compare", "side-by-side grid of generations from several models/settings"),
    "gmm": ("clipag_plugin.cli.gmm", "fit the Gaussian initialization used by `generate --init gmm`"),
    "finetune": ("clipag_plugin.cli.finetune", "adversarially fine-tune a CLIP image encoder (CLIPAG recipe)"),
    "eval": ("clipag_plugin.cli.evaluate", "zero-shot, retrieval, robustness and judge evaluation"),
    "run": ("clipag_plugin.cli.run", "run an original CLIP-guided program (CLIPDraw, VQGAN-CLIP, CLIPStyler) on clipag"),
    "ui": ("clipag_plugin.cli.ui", "a web page: robust and plain CLIP paint your prompt side by side, live"),
}


def _usage() -> str:
    lines = ["usage: clipag <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "examples:",
              "  clipag demo                                             # robust vs vanilla, offline, ~2 min",
              "  clipag ui                                               # the same, live, in a web page",
              '  clipag generate "a watercolor of a fox" --model ViT-B/32 --out fox.png',
              "  clipag models                                           # every model name, source, license",
              "", "Run `clipag <command> --help` for a command's options and examples."]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``clipag`` script and ``python -m clipag``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if args[0] in {"-V", "--version"}:
        from clipag_plugin import __version__

        print(f"clipag-plugin {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"clipag: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name = COMMANDS[command][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        print(f"clipag {command}: not available in this version", file=sys.stderr)
        return 2
    return int(module.main(rest) or 0)
