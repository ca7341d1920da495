"""``clipag run APP -- PROGRAM ARGS``: an original CLIP-guided program, a script or a notebook,
unmodified, on clipag."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

__all__ = ["main", "build_parser"]


def _add_notebook_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cells", default=None,
                        help="notebooks: the code cells to run, by number, range or #@title, comma-separated "
                             "(e.g. '2-4' or 'Load CLIP,Curve Optimizer'; default: all)")
    parser.add_argument("--workdir", default=None,
                        help="notebooks: the working folder that stands for Colab's /content; the cells start "
                             "there and what they display is saved there (default: NOTEBOOK_run beside it)")
    parser.add_argument("--list-cells", action="store_true",
                        help="notebooks: list the code cells with their numbers and titles, run nothing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipag run",
        description="Run a CLIP-guided program you already have (the CLIPDraw notebook, nerdyrodent's "
                    "VQGAN-CLIP generate.py, CLIPStyler's train_CLIPstyler.py) on a robust CLIP, with its "
                    "augmentation tricks switched off. The program is not modified: `import clip` gives clipag, "
                    "pydiffvg works without building diffvg, offline it runs on the embedded mini model. "
                    "A notebook (.ipynb) runs cell by cell, headless: shell lines (!pip ...) are listed, not "
                    "run; Colab's /content is the working folder; what the cells display is saved as files.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               '  clipag run clipdraw -- clipdraw.ipynb --cells "Imports and Notebook Utilities,Load CLIP,'
               'Curve Optimizer"\n'
               "  clipag run clipdraw --set args.num_iter=20 -- clipdraw.ipynb --cells 2-4\n"
               '  clipag run vqgan-clip -- generate.py -p "a lighthouse at dusk" -i 200\n'
               "  clipag run clipdraw --device cpu -- clipdraw_notebook.py\n"
               '  clipag run clipstyler --tricks on -- train_CLIPstyler.py --content_path face.jpg --text fire\n\n'
               "For a notebook, --cells, --workdir, --list-cells and --set may also follow its path.",
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
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="give a name (num_paths) or attribute (args.num_iter) the program sets at module "
                             "level this value instead, wherever it is set (repeatable; values are Python "
                             "literals or text), e.g. --set args.num_iter=20 for a quick run")
    _add_notebook_options(parser)
    parser.add_argument("--quiet", action="store_true", help="only the program's own output and errors")
    parser.add_argument("script", help="the program: a .py file or a notebook (.ipynb)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the program's own arguments")
    return parser


def _notebook_options(args: argparse.Namespace, rest: list[str]) -> list[str]:
    """Take --cells/--workdir/--list-cells/--set from after a notebook's path; the rest is its argv."""
    parser = argparse.ArgumentParser(prog="clipag run ... NOTEBOOK", add_help=False, allow_abbrev=False)
    _add_notebook_options(parser)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    found, argv = parser.parse_known_args(rest)
    for name in ("cells", "workdir"):
        if getattr(found, name) is not None:
            setattr(args, name, getattr(found, name))
    args.list_cells = args.list_cells or found.list_cells
    args.overrides = [*args.overrides, *found.overrides]
    return argv


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``clipag run``; returns the program's exit status (2 for bad input)."""
    from clipag_plugin.adapters.runner import NotebookCellError, RunError, RunInputError, run
    from clipag_plugin.hub import OfflineError

    from .generate import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    script_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    if args.script.lower().endswith(".ipynb"):
        script_args = _notebook_options(args, script_args)
    try:
        if args.list_cells:
            return _list_cells(args.script)
        report = run(args.app, args.script, script_args, model=args.model, tricks=args.tricks, device=args.device,
                     fallback=None if args.fallback == "none" else args.fallback, cells=args.cells,
                     workdir=args.workdir, overrides=args.overrides)
    except RunInputError as err:
        print(f"clipag run: error: {err}", file=sys.stderr)
        return 2
    except NotebookCellError as err:
        print(err.user_traceback.rstrip(), file=sys.stderr)
        print(str(err), file=sys.stderr)
        return 1
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


def _list_cells(path: str) -> int:
    from clipag_plugin.adapters._cells import cell_table, read_cells
    from clipag_plugin.adapters.runner import RunInputError

    if not path.lower().endswith(".ipynb"):
        raise RunInputError(f"--list-cells is for notebooks; {path!r} is a script")
    try:
        cells = read_cells(path)
    except ImportError as err:
        raise RunInputError(str(err)) from None
    print(f"{path}: {len(cells)} code cells\n{cell_table(cells)}")
    return 0
