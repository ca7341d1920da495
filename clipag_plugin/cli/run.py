"""``clipag run APP -- script.py ARGS``: an original CLIP-guided program, unmodified, on clipag."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipag run",
        description="Run a CLIP-guided program you already have (the CLIPDraw notebook's code, nerdyrodent's "
                    "VQGAN-CLIP generate.py, CLIPStyler's train_CLIPstyler.py) on a robust CLIP, with its "
                    "augmentation tricks switched off. The script is not modified: `import clip` gives clipag, "
                    "pydiffvg works without building diffvg, offline it runs on the embedded mini model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               '  clipag run vqgan-clip -- generate.py -p "a lighthouse at dusk" -i 200\n'
               "  clipag run clipdraw --device cpu -- clipdraw_notebook.py\n"
               '  clipag run clipstyler --tricks on -- train_CLIPstyler.py --content_path face.jpg --text fire',
    )
    parser.add_argument("app", choices=("clipdraw", "vqgan-clip", "clipstyler"), help="which program it is")
    parser.add_argument("--model", default=None,
                        help="clipag model to load whatever the program asks for (default: its own name; "
                             "'ViT-B/32' is CLIPAG, OpenAI's other names map to the closest robust model)")
    parser.add_argument("--tricks", choices=("on", "off"), default="off",
                        help="the program's augmentation tricks (default off: the robust encoder needs none)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:1, mps: where CLIP and a hard-coded `device` run (default: the "
                             "program's choice, the CPU in place of CUDA on machines without it)")
    parser.add_argument("--fallback", default="mini",
                        help="model used when the wanted weights are not available offline ('none': an error)")
    parser.add_argument("--quiet", action="store_true", help="only the program's own output and errors")
    parser.add_argument("script", help="the program's .py file")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the program's own arguments")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``clipag run``; returns the program's exit status (2 for bad input)."""
    from clipag_plugin.adapters.runner import RunError, RunInputError, run
    from clipag_plugin.hub import OfflineError

    from .generate import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    script_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    try:
        report = run(args.app, args.script, script_args, model=args.model, tricks=args.tricks, device=args.device,
                     fallback=None if args.fallback == "none" else args.fallback)
    except RunInputError as err:
        print(f"clipag run: error: {err}", file=sys.stderr)
        return 2
    except (RunError, OfflineError) as err:
        print(str(err), file=sys.stderr)
        return 1
    except SystemExit as stop:  # the program's own sys.exit / argparse error
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
            return 1
        return int(stop.code or 0)
    if not args.quiet:
        print(report.summary(), file=sys.stderr)
    return 0
