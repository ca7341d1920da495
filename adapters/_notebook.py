"""Run a notebook's code cells, unmodified, as one program: ``clipag run APP -- notebook.ipynb``.

The cells run in order in one ``__main__`` namespace, as a kernel would run them, each translated
from IPython syntax by IPython's own ``TransformerManager`` and compiled with the same rebinding
pass as scripts (:mod:`clipag_plugin.adapters._script`), so the app's hooks reach names a cell sets
(``NUM_AUGS`` inside the loop, a hard-coded ``device``). What a kernel or Colab would provide comes
from :mod:`clipag_plugin.adapters._headless` (``get_ipython()``, ``google.colab``, Colab's
``/content``: the working folder, string literals naming it are mapped when a cell is compiled) and
:mod:`clipag_plugin.adapters._display` (``display``, inline figures, saved as numbered files).

Cells come from :mod:`clipag_plugin.adapters._cells`; the shell lines they would run from
:mod:`clipag_plugin.adapters._installs`. A failing cell raises :class:`CellFailure` with its number,
title, line and the traceback from the user's code down.
"""

from __future__ import annotations

import ast
import linecache
import logging
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, MutableMapping, Optional, Sequence

from ._cells import NotebookCell, ipython_call, translate
from ._display import DisplaySink, inline_figures
from ._headless import CONTENT, HeadlessShell, colab_stub, content_path
from ._installs import shell_lines
from ._patch import Patcher
from ._script import Rebinder, main_module, running_as_main

__all__ = ["NotebookRun", "CellFailure", "run_notebook", "default_workdir"]

logger = logging.getLogger("clipag_plugin.adapters")

DISPLAY_RESULT = "__clipag_display_result__"


class CellFailure(Exception):
    """A cell raised; ``error`` is what it raised, ``line`` the cell's line, ``user_traceback`` the
    traceback from the cell's frame down."""

    def __init__(self, cell: NotebookCell, line: Optional[int], error: BaseException, user_traceback: str) -> None:
        where = f"{cell.label}, line {line}" if line else cell.label
        super().__init__(f"{where}: {type(error).__name__}: {error}")
        self.cell, self.line, self.error, self.user_traceback = cell, line, error, user_traceback


class _ContentPaths(ast.NodeTransformer):
    """String literals naming Colab's ``/content`` (a plain string, or the head of an f-string)
    rewritten into the working folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if ipython_call(node):
            return node  # magics and shell lines: the shell maps paths itself, and notices show them as written
        return self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, str) and (node.value == CONTENT or node.value.startswith(CONTENT + "/")):
            return ast.copy_location(ast.Constant(content_path(node.value, self.workdir)), node)
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        values = list(node.values)
        for i, value in enumerate(values):
            if isinstance(value, ast.FormattedValue):
                values[i] = self.generic_visit(value)
            elif i == 0:
                values[i] = self.visit_Constant(value)
        node.values = values
        return node


def _display_last_expression(tree: ast.Module, source: str) -> ast.Module:
    """Show the value of a cell's last expression, as a notebook does (not after a trailing ``;``)."""
    code_lines = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not tree.body or not isinstance(tree.body[-1], ast.Expr) or (code_lines and code_lines[-1].rstrip().endswith(";")):
        return tree
    last = tree.body[-1]
    call = ast.Call(func=ast.Name(DISPLAY_RESULT, ast.Load()), args=[last.value], keywords=[])
    tree.body[-1] = ast.copy_location(ast.Expr(call), last)
    return tree


@dataclass
class NotebookRun:
    """What a notebook run did.

    Attributes:
        namespace: the notebook's globals after the last cell.
        cells: the cells that ran.
        files: the files written or changed in the working folder, displays included.
        displays: the display files, in order.
        skipped_shell: the shell lines met (not run).
    """

    namespace: dict
    cells: list = field(default_factory=list)
    files: list = field(default_factory=list)
    displays: list = field(default_factory=list)
    skipped_shell: list = field(default_factory=list)


def default_workdir(notebook: str | os.PathLike) -> Path:
    """The working folder a notebook gets by default: ``<notebook name>_run`` beside it."""
    path = Path(notebook)
    return path.with_name(f"{path.stem}_run")


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    state = {}
    for path in folder.rglob("*"):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        stat = path.stat()
        state[path] = (stat.st_mtime_ns, stat.st_size)
    return state


def _user_traceback(error: BaseException, filename: str) -> tuple[Optional[int], str]:
    """The cell's line and the traceback from the cell's first frame down."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    lines = [f.lineno for f in traceback.extract_tb(tb or error.__traceback__) if f.filename == filename]
    if lines:
        line = lines[-1]
    elif isinstance(error, SyntaxError) and error.filename == filename:
        line = error.lineno
    else:
        line = None
    text = "".join(traceback.format_exception(type(error), error, tb or error.__traceback__))
    return line, text


def run_notebook(path: str | os.PathLike, cells: Sequence[NotebookCell], argv: Sequence[str] = (),
                 hooks: Optional[Mapping[str, Callable[[Any], Any]]] = None, *,
                 workdir: Optional[str | os.PathLike] = None,
                 fired: Optional[MutableMapping[str, int]] = None) -> NotebookRun:
    """Run ``cells`` of the notebook at ``path`` in order, in one namespace, headless.

    Args:
        path: the notebook (its folder is on ``sys.path``, as in Jupyter).
        cells: the cells to run (:func:`read_cells`, :func:`select_cells`).
        argv: ``sys.argv[1:]`` while the cells run.
        hooks: ``{name: function(value) -> value}`` applied whenever a cell binds ``name``.
        workdir: the working folder, standing for Colab's ``/content``: the cells start in it and
            displays are saved in it (default :func:`default_workdir`).
        fired: filled with ``{name: times its hook ran}``.

    Returns:
        A :class:`NotebookRun`. A cell that raises stops the run with :class:`CellFailure`
        (``SystemExit`` and ``KeyboardInterrupt`` propagate as they are).
    """
    path = Path(path)
    hooks = dict(hooks or {})
    workdir = Path(workdir) if workdir is not None else default_workdir(path)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    before = _snapshot(workdir)
    sink = DisplaySink(workdir)
    module = main_module(str(path), hooks, fired)
    namespace = module.__dict__
    rebinder_names = list(hooks)
    current: dict[str, Any] = {}

    def compile_cell(source: str, filename: str, first_line: int = 1):
        tree = ast.parse(translate(source), filename)
        if first_line > 1:
            ast.increment_lineno(tree, first_line - 1)
        tree = _ContentPaths(workdir).visit(tree)
        tree = Rebinder(rebinder_names).visit(tree)
        tree = _display_last_expression(tree, source)
        return compile(ast.fix_missing_locations(tree), filename, "exec")

    def run_source(source: str, first_line: int) -> None:
        exec(compile_cell(source, current["filename"], first_line), namespace)

    shell = HeadlessShell(namespace, workdir, sink, run_source)
    shell.announced = {line.command for line in shell_lines(cells)}
    namespace.update({"get_ipython": lambda: shell, "display": sink.display, DISPLAY_RESULT: sink.show})
    if any(re.search(r"^\s*(from|import)\s+google\.colab", cell.source, re.MULTILINE) for cell in cells):
        logger.warning("google.colab is stood in for: files.download leaves files in %s, "
                       "drive.mount makes a folder there, widgets and output helpers do nothing", workdir)
    run = NotebookRun(namespace, list(cells))
    patcher = Patcher()
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    try:
        _stand_ins(patcher, shell, sink)
        os.chdir(workdir)
        with running_as_main(module, [str(path), *argv], [workdir, path.resolve().parent]), inline_figures(sink):
            sys.path.insert(0, "")  # the current folder, as in a kernel (restored with sys.path)
            for cell in cells:
                filename = f"{path.name} [cell {cell.number}" + (f": {cell.title}]" if cell.title else "]")
                current["filename"] = filename
                linecache.cache[filename] = (len(cell.source), None, cell.source.splitlines(True), filename)
                sink.cell = cell.number
                logger.info("running %s", cell.label)
                try:
                    exec(compile_cell(cell.source, filename), namespace)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as error:  # noqa: BLE001 - every cell error becomes a CellFailure
                    line, text = _user_traceback(error, filename)
                    raise CellFailure(cell, line, error, text) from error
                finally:
                    sink.flush_figures()
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        patcher.restore()
        run.skipped_shell = list(shell.skipped)
        run.displays = list(sink.files)
        after = _snapshot(workdir)
        run.files = sorted(p for p, state in after.items() if before.get(p) != state)
    return run


def _stand_ins(patcher: Patcher, shell: HeadlessShell, sink: DisplaySink) -> None:
    """IPython's ``display`` functions go to the sink; ``google.colab`` is the stand-in."""
    import IPython.display as ipd

    patcher.setattr(ipd, "display", sink.display)
    functions = sys.modules.get("IPython.core.display_functions")
    if functions is not None:
        patcher.setattr(functions, "display", sink.display)
    for name, module in colab_stub(shell).items():
        patcher.set_module(name, module)
    google = sys.modules.get("google")
    if google is None:
        try:
            import google  # noqa: F401 - a namespace package other libraries (protobuf) may provide
        except ImportError:
            import types

            google = types.ModuleType("google")
            google.__path__ = []
            patcher.set_module("google", google)
        google = sys.modules["google"]
    patcher.setattr(google, "colab", sys.modules["google.colab"])
