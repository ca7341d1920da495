"""Run a notebook's code cells, unmodified, as one program: ``clipag run APP -- notebook.ipynb``.

The cells run in order in one ``__main__`` namespace, as a kernel would run them, each translated
from IPython syntax by IPython's own ``TransformerManager`` and compiled with the same rebinding
pass as scripts (:mod:`clipag_plugin.adapters._script`), so the app's hooks reach names a cell sets
(``NUM_AUGS`` inside the loop, a hard-coded ``device``). What a kernel or Colab would provide comes
from :mod:`clipag_plugin.adapters._headless` (``get_ipython()``, ``google.colab``, Colab's
``/content``: the working folder, string literals naming it are mapped when a cell is compiled) and
:mod:`clipag_plugin.adapters._display` (``display``, inline figures, saved as numbered files).

Before the first cell one notice lists the shell lines of the chosen cells (not run) and the
packages the notebook installs anywhere, with those missing here. Cells are named by number (code
cells counted from 1) and by Colab's ``#@title``; a failing cell raises :class:`CellFailure` with
its number, title, line and the traceback from the user's code down.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import linecache
import logging
import os
import re
import shlex
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, MutableMapping, Optional, Sequence

from ._display import DisplaySink, inline_figures
from ._headless import CONTENT, HeadlessShell, colab_stub, content_path
from ._patch import Patcher
from ._script import Rebinder, main_module, running_as_main

__all__ = ["NotebookCell", "NotebookRun", "CellFailure", "read_cells", "select_cells", "cell_table", "translate",
           "shell_lines", "install_notice", "run_notebook", "default_workdir"]

logger = logging.getLogger("clipag_plugin.adapters")

DISPLAY_RESULT = "__clipag_display_result__"
_TITLE = re.compile(r"^\s*#\s*@title\s*(.*?)\s*(\{[^}]*\})?\s*$")


@dataclass(frozen=True)
class NotebookCell:
    """One code cell.

    Attributes:
        number: its place among the notebook's code cells, from 1.
        title: its Colab ``#@title`` (None without one).
        source: its text, IPython syntax included.
    """

    number: int
    title: Optional[str]
    source: str

    @property
    def label(self) -> str:
        """``cell 4 "Curve Optimizer"`` (or ``cell 4``)."""
        return f'cell {self.number} "{self.title}"' if self.title else f"cell {self.number}"


class CellFailure(Exception):
    """A cell raised; ``error`` is what it raised, ``line`` the cell's line, ``user_traceback`` the
    traceback from the cell's frame down."""

    def __init__(self, cell: NotebookCell, line: Optional[int], error: BaseException, user_traceback: str) -> None:
        where = f"{cell.label}, line {line}" if line else cell.label
        super().__init__(f"{where}: {type(error).__name__}: {error}")
        self.cell, self.line, self.error, self.user_traceback = cell, line, error, user_traceback


def _requires_ipython() -> None:
    missing = [name for name in ("IPython", "nbformat") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"running a notebook needs {' and '.join(missing)}: pip install "
                          f"\"clipag-plugin[notebook]\" (or pip install ipython nbformat)")


def read_cells(path: str | os.PathLike) -> list[NotebookCell]:
    """The code cells of a ``.ipynb`` file, numbered from 1, with their ``#@title``.

    Args:
        path: the notebook.

    Returns:
        The cells in notebook order.
    """
    _requires_ipython()
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    cells = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        title = None
        for line in source.splitlines()[:3]:
            match = _TITLE.match(line)
            if match:
                title = match.group(1) or None
                break
        cells.append(NotebookCell(len(cells) + 1, title, source))
    return cells


def cell_table(cells: Sequence[NotebookCell]) -> str:
    """One line per cell: number, title and first code line."""
    lines = []
    for cell in cells:
        code = next((line.strip() for line in cell.source.splitlines()
                     if line.strip() and not line.lstrip().startswith("#")), "")
        lines.append(f"  {cell.number:>3}  {cell.title or '(no title)':<34}  {code[:60]}")
    return "\n".join(lines)


def select_cells(cells: Sequence[NotebookCell], spec: Optional[str]) -> list[NotebookCell]:
    """The cells ``spec`` names, in notebook order.

    Args:
        cells: every code cell.
        spec: comma-separated numbers (``3``), ranges (``2-4``) and ``#@title`` texts (any case);
            None or empty: every cell.

    Returns:
        The chosen cells. Unknown numbers or titles raise ``ValueError`` listing the cells.
    """
    if not spec or not spec.strip():
        return list(cells)
    by_number = {cell.number: cell for cell in cells}
    by_title = {cell.title.casefold(): cell for cell in cells if cell.title}
    chosen: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        span = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        numbers = range(int(span.group(1)), int(span.group(2)) + 1) if span else \
            [int(part)] if part.isdigit() else None
        if numbers is not None:
            unknown = [n for n in numbers if n not in by_number]
            if unknown or not numbers:
                raise ValueError(f"--cells {part!r}: the notebook has code cells 1 to {len(cells)}:\n"
                                 f"{cell_table(cells)}")
            chosen.update(numbers)
        elif part.casefold() in by_title:
            chosen.add(by_title[part.casefold()].number)
        else:
            raise ValueError(f"--cells {part!r}: no cell has that number or #@title; the notebook's code cells:\n"
                             f"{cell_table(cells)}")
    return [cell for cell in cells if cell.number in chosen]


def translate(source: str) -> str:
    """A cell's IPython syntax (``%cd``, ``!pip``, ``%%capture``) as Python calling ``get_ipython()``,
    line for line."""
    _requires_ipython()
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


# --- what the notebook would install ---------------------------------------------------------------

_SHELL_CELL_MAGICS = ("bash", "sh", "shell", "script", "system")
_INSTALLERS = ("pip", "conda", "mamba", "uv")
# what a notebook installs or clones that clipag itself stands in for
_PROVIDED = {"clip": "import clip gives clipag", "diffvg": "import pydiffvg gives clipag's rasterizer",
             "pydiffvg": "clipag's rasterizer"}
_OPTIONS_WITH_VALUE = {"-f", "--find-links", "-i", "--index-url", "--extra-index-url", "-r", "--requirement",
                       "-c", "--constraint", "-t", "--target", "--prefix", "--root", "--python", "-p"}


@dataclass(frozen=True)
class ShellLine:
    """A shell line of a cell (``!cmd``, ``%pip ...``, a line of a ``%%bash`` cell), as written."""

    cell: NotebookCell
    command: str


def _ipython_call(node: ast.AST) -> Optional[tuple[str, list]]:
    """``("system", [args])`` for ``get_ipython().system("...")`` and the like, with constant args."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
            and node.func.value.func.id == "get_ipython"):
        return None
    args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
    return node.func.attr, args


def shell_lines(cells: Sequence[NotebookCell]) -> list[ShellLine]:
    """Every shell line of ``cells``, in order (found in the translated source, nothing run)."""
    found = []
    for cell in cells:
        try:
            tree = ast.parse(translate(cell.source))
        except SyntaxError:
            continue
        calls = sorted((n for n in ast.walk(tree) if _ipython_call(n)), key=lambda n: (n.lineno, n.col_offset))
        for node in calls:
            kind, args = _ipython_call(node)
            if kind in ("system", "getoutput", "system_raw") and args and isinstance(args[0], str):
                found.append(ShellLine(cell, args[0]))
            elif kind == "run_line_magic" and len(args) >= 2 and args[0] in _INSTALLERS:
                found.append(ShellLine(cell, f"{args[0]} {args[1]}"))
            elif kind == "run_cell_magic" and len(args) >= 3 and args[0] in _SHELL_CELL_MAGICS:
                found.extend(ShellLine(cell, line.strip()) for line in str(args[2]).splitlines()
                             if line.strip() and not line.lstrip().startswith("#"))
            elif kind == "run_cell_magic" and len(args) >= 3 and isinstance(args[2], str):
                found.extend(shell_lines([NotebookCell(cell.number, cell.title, args[2])]))
    return found


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command, comments=True)
    except ValueError:
        return command.split()


def _spec_name(spec: str) -> Optional[str]:
    """The package name in a pip argument (a requirement, a VCS URL, an archive URL)."""
    spec = re.sub(r"\{[^}]*\}|\$\w+", "", spec)  # the notebook's variables, e.g. a CUDA suffix
    if "://" in spec or spec.startswith("git+"):
        egg = re.search(r"#egg=([A-Za-z0-9._-]+)", spec)
        if egg:
            return egg.group(1)
        tail = spec.split("@")[0].rstrip("/").rsplit("/", 1)[-1]
        return re.sub(r"(\.git|\.zip|\.tar\.gz|\.whl)$", "", tail) or None
    if spec.startswith((".", "/", "~")):
        return None
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)
    return match.group(0) if match else None


def installed_by(command: str) -> tuple[list[str], list[str]]:
    """``(packages, clones)`` a shell line installs or clones (``pip install a b``, ``git clone URL``).

    Args:
        command: the line as written.

    Returns:
        Package names and cloned repository names.
    """
    packages, clones = [], []
    for part in re.split(r"&&|\|\||;|\|", command):
        words = _words(part.strip())
        while words and words[0] in ("sudo", "python", "python3", "-m", "uv") and words[:1] != ["pip"]:
            words = words[1:]
        if len(words) >= 3 and words[0] == "git" and words[1] == "clone":
            urls = [w for w in words[2:] if not w.startswith("-")]
            if urls:
                clones.append(urls[0].rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
            continue
        if len(words) < 2 or words[0] not in ("pip", "pip3", *_INSTALLERS) or words[1] != "install":
            continue
        skip = False
        for word in words[2:]:
            if skip:
                skip = False
                continue
            if word in _OPTIONS_WITH_VALUE:
                skip = True
                continue
            if word.startswith("-") and word not in ("-e", "--editable"):
                continue
            name = _spec_name(word) if not word.startswith("-") else None
            if name:
                packages.append(name)
    return packages, clones


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def install_notice(all_cells: Sequence[NotebookCell], chosen: Sequence[NotebookCell]) -> Optional[str]:
    """The one notice before the first cell: the chosen cells' shell lines (not run) and what the
    notebook installs anywhere, with what clipag provides and what is missing here.

    Args:
        all_cells: every code cell (the install cell is usually not among the chosen ones).
        chosen: the cells that will run.

    Returns:
        The notice, or None when the notebook has no shell lines.
    """
    every = shell_lines(all_cells)
    if not every:
        return None
    chosen_numbers = {cell.number for cell in chosen}
    lines = []
    not_run: dict[NotebookCell, list[str]] = {}
    for line in every:
        if line.cell.number in chosen_numbers:
            not_run.setdefault(line.cell, []).append(line.command)
    if not_run:
        lines.append("shell lines are not run (the cells' Python runs, their shell commands do not):")
        lines += [f"  {cell.label}: " + " | ".join(f"!{c}" for c in commands) for cell, commands in not_run.items()]
    packages: list[str] = []
    clones: list[str] = []
    for line in every:
        found, cloned = installed_by(line.command)
        packages += [p for p in found if p not in packages]
        clones += [c for c in cloned if c not in clones]
    provided = [n for n in [*packages, *clones] if n.lower() in _PROVIDED]
    wanted = [p for p in packages if p.lower() not in _PROVIDED and p.lower() != "clipag-plugin"]
    missing = [p for p in wanted if not _installed(p)]
    if packages or clones:
        lines.append(("  the notebook" if lines else "the notebook") + " installs " + ", ".join(packages or ["nothing"])
                     + (f" and clones {', '.join(clones)}" if clones else ""))
    if provided:
        lines.append("  provided by clipag: " + "; ".join(f"{n} ({_PROVIDED[n.lower()]})" for n in provided))
    if missing:
        lines.append(f"  not installed here: {', '.join(missing)} (pip install {' '.join(missing)})")
    elif wanted:
        lines.append("  the others are installed here")
    return "\n".join(lines)


# --- running ---------------------------------------------------------------------------------------


class _ContentPaths(ast.NodeTransformer):
    """String literals naming Colab's ``/content`` (a plain string, or the head of an f-string)
    rewritten into the working folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if _ipython_call(node):
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
    _requires_ipython()
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
