"""What a notebook's cells expect from Jupyter or Colab, without a kernel: ``clipag run`` on a notebook.

* :class:`HeadlessShell`: the object ``get_ipython()`` returns to the translated cells. Shell lines
  (``!pip install ...``) are not run: the runner lists them once before the first cell. Line and
  cell magics that matter to a program's Python (``%cd``, ``%env``, ``%matplotlib``, ``%time``,
  ``%%capture``, ``%%writefile``) behave as in IPython; Colab's ``%tensorflow_version`` and the
  rest are skipped, each with one notice. What the cells display goes to a
  :class:`~clipag_plugin.adapters._display.DisplaySink`.
* :func:`colab_stub`: ``google.colab`` for notebooks that import it (``files.download`` leaves
  the file where it is, ``drive.mount`` makes a folder, ``patches.cv2_imshow`` displays).
* Colab's ``/content`` is the working folder: :func:`content_path` maps paths.

IPython's own ``InteractiveShell`` is not used: it takes over ``__main__``, writes a history
database and prints its own tracebacks, where the runner needs a namespace it owns, cell names
in tracebacks and shell lines that are listed rather than run. IPython's input translation
(``TransformerManager``), display formatter, ``capture_output`` and variable expansion are used
as they are.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
import types
from pathlib import Path
from typing import Any, Callable, Optional

from ._display import DisplaySink, use_inline

__all__ = ["HeadlessShell", "colab_stub", "content_path", "CONTENT"]

logger = logging.getLogger("clipag_plugin.adapters")

CONTENT = "/content"  # Colab's working folder

# --- google.colab ----------------------------------------------------------------------------------


def colab_stub(shell: "HeadlessShell") -> dict[str, types.ModuleType]:
    """``google.colab`` and its submodules for a headless run.

    Args:
        shell: maps ``/content`` paths and displays.

    Returns:
        ``{module name: module}`` to register in ``sys.modules``.
    """
    colab = types.ModuleType("google.colab")
    colab.__path__ = []
    colab.__clipag__ = True

    files = types.ModuleType("google.colab.files")

    def download(filename: str) -> None:
        shell.notice(f"files.download: nothing to download in a headless run; the file is "
                     f"{Path(shell.content_path(filename)).resolve()}")

    def upload(*_: Any, **__: Any) -> dict:
        shell.notice("files.upload(): nothing to upload in a headless run; put the files in the working "
                     f"folder {shell.workdir} and read them from there")
        return {}

    files.download, files.upload = download, upload

    drive = types.ModuleType("google.colab.drive")

    def mount(mountpoint: str, *_: Any, **__: Any) -> None:
        folder = Path(shell.content_path(mountpoint))
        folder.mkdir(parents=True, exist_ok=True)
        shell.notice(f"drive.mount: no Google Drive here; the folder {folder} stands in for it")

    drive.mount = mount
    drive.flush_and_unmount = lambda *_, **__: None

    patches = types.ModuleType("google.colab.patches")

    def cv2_imshow(image: Any) -> None:
        import numpy as np
        from PIL import Image

        array = np.asarray(image)
        if array.ndim == 3 and array.shape[2] >= 3:
            array = array[..., [2, 1, 0, *range(3, array.shape[2])]]  # OpenCV's BGR(A) to RGB(A)
        shell.sink.show(Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)))

    patches.cv2_imshow = cv2_imshow

    def quiet(name: str) -> types.ModuleType:
        module = types.ModuleType(f"google.colab.{name}")
        module.__getattr__ = lambda attr: (lambda *_, **__: None)  # widgets and output helpers: no-ops
        return module

    modules = {"google.colab": colab, "google.colab.files": files, "google.colab.drive": drive,
               "google.colab.patches": patches, "google.colab.output": quiet("output"),
               "google.colab.widgets": quiet("widgets")}
    for name, module in modules.items():
        if name != "google.colab":
            setattr(colab, name.rsplit(".", 1)[1], module)
    return modules


# --- get_ipython() ---------------------------------------------------------------------------------

_INSTALLERS = ("pip", "conda", "mamba", "uv")
_COLAB_ONLY = ("tensorflow_version",)
_QUIET = ("load_ext", "reload_ext", "unload_ext", "autoreload", "aimport", "config", "xmode", "precision",
          "autosave", "colors")


class HeadlessShell:
    """The ``get_ipython()`` of a headless notebook run.

    Args:
        user_ns: the notebook's namespace.
        workdir: stands for Colab's ``/content``.
        sink: where displays go.
        run_source: runs IPython-syntax source in the namespace (for cell magics' bodies):
            ``run_source(source, first_line)``.
    """

    def __init__(self, user_ns: dict, workdir: Path, sink: DisplaySink,
                 run_source: Callable[[str, int], None]) -> None:
        self.user_ns = user_ns
        self.workdir = Path(workdir)
        self.sink = sink
        self.run_source = run_source
        self.skipped: list[str] = []  # shell lines met while running
        self.announced: set[str] = set()  # shell lines the runner already listed
        self._told: set[str] = set()

    # -- helpers --

    def notice(self, text: str, once: Optional[str] = None) -> None:
        """Log ``text`` as a warning (only the first time for the same ``once`` key)."""
        if once is not None:
            if once in self._told:
                return
            self._told.add(once)
        logger.warning("%s", text)

    def content_path(self, path: str) -> str:
        """``path`` with Colab's ``/content`` replaced by the working folder."""
        return content_path(path, self.workdir)

    def var_expand(self, text: str) -> str:
        """``{name}`` and ``$name`` expanded from the namespace, as IPython does for magics and shell lines."""
        from IPython.utils.text import DollarFormatter

        try:
            return DollarFormatter().vformat(text, args=[], kwargs=dict(self.user_ns))
        except Exception:  # noqa: BLE001 - IPython leaves what it cannot expand as written
            return text

    # -- shell lines --

    def system(self, cmd: str) -> None:
        """``!cmd``: not run (listed before the first cell; anything else gets its own notice)."""
        self.skipped.append(cmd)
        if cmd not in self.announced:
            self.notice(f"shell line not run: !{self.var_expand(cmd)}", once=f"!{cmd}")

    system_raw = system_piped = system

    def getoutput(self, cmd: str, split: bool = True, depth: int = 0) -> list:
        """``x = !cmd``: not run; ``x`` becomes an empty ``SList`` (IPython's list of output lines)."""
        from IPython.utils.text import SList

        self.system(cmd)
        return SList()

    # -- magics --

    def magic(self, line: str) -> Any:
        """The old ``get_ipython().magic("cd x")`` spelling."""
        name, _, rest = line.lstrip("%").partition(" ")
        return self.run_line_magic(name, rest)

    def run_line_magic(self, magic_name: str, line: str, _stack_depth: int = 1) -> Any:
        """Run a line magic the way IPython would, as far as the program's Python can tell."""
        line = self.var_expand(line)
        handler = getattr(self, f"_line_{magic_name}", None)
        if handler is not None:
            return handler(line)
        if magic_name in _INSTALLERS:
            return self.system(f"{magic_name} {line}")
        if magic_name in _COLAB_ONLY:
            self.notice(f"%{magic_name} {line}: a Colab-only magic, skipped", once=magic_name)
            return None
        if magic_name in _QUIET:
            logger.info("%%%s %s: skipped (no effect on a headless run)", magic_name, line)
            return None
        self.notice(f"%{magic_name} {line}: clipag run does not support this magic; skipped", once=magic_name)
        return None

    def run_cell_magic(self, magic_name: str, line: str, cell: str) -> Any:
        """Run a cell magic: ``%%capture``, ``%%time``, ``%%writefile`` as IPython does; shell and
        browser-side cells are not run."""
        line = self.var_expand(line)
        if magic_name in ("time", "timeit", "prun"):
            start = time.perf_counter()
            self.run_source(cell, 2)
            print(f"Wall time: {time.perf_counter() - start:.2f} s")
            return None
        if magic_name == "capture":
            return self._cell_capture(line, cell)
        if magic_name == "writefile":
            return self._cell_writefile(line, cell)
        if magic_name in ("bash", "sh", "shell", "script", "system"):
            for command in cell.splitlines():
                if command.strip() and not command.lstrip().startswith("#"):
                    self.system(command.strip())
            return None
        if magic_name in ("html", "HTML", "svg", "markdown", "latex"):
            from IPython import display as ipd

            kind = {"html": ipd.HTML, "HTML": ipd.HTML, "svg": ipd.SVG, "markdown": ipd.Markdown,
                    "latex": ipd.Latex}[magic_name]
            self.sink.show(kind(cell))
            return None
        self.notice(f"%%{magic_name}: clipag run does not support this cell magic; the cell's body is skipped",
                    once=f"%%{magic_name}")
        return None

    def _line_cd(self, line: str) -> str:
        target = line.strip().strip("'\"") or str(self.workdir)
        if target.startswith("-b ") or target == "-":
            self.notice(f"%cd {line}: bookmarks and history are not kept in a headless run; staying in "
                        f"{os.getcwd()}")
            return os.getcwd()
        folder = Path(self.content_path(os.path.expanduser(target)))
        if not folder.is_dir():
            self.notice(f"%cd {line}: no folder {folder} (the notebook's shell lines, which would make it, "
                        f"are not run); staying in {os.getcwd()}")
            return os.getcwd()
        os.chdir(folder)
        print(os.getcwd())
        return os.getcwd()

    def _line_pwd(self, line: str) -> str:
        return os.getcwd()

    def _line_env(self, line: str) -> Any:
        text = line.strip()
        if not text:
            return dict(os.environ)
        if "=" in text or " " in text:
            name, _, value = text.partition("=") if "=" in text else text.partition(" ")
            os.environ[name.strip()] = value.strip()
            print(f"env: {name.strip()}={value.strip()}")
            return None
        return os.environ.get(text)

    def _line_matplotlib(self, line: str) -> None:
        if line.strip() not in ("", "inline"):
            logger.info("%%matplotlib %s: figures are saved as files in a headless run", line.strip())
        try:
            use_inline()
        except ImportError:
            self.notice("%matplotlib: matplotlib is not installed", once="matplotlib")

    def _line_time(self, line: str) -> Any:
        start = time.perf_counter()
        result = eval(compile(line, "<%time>", "eval"), self.user_ns) if _is_expression(line) else \
            exec(compile(line, "<%time>", "exec"), self.user_ns)
        print(f"Wall time: {time.perf_counter() - start:.2f} s")
        return result

    _line_timeit = _line_time

    def _cell_capture(self, line: str, cell: str) -> None:
        from IPython.utils.capture import capture_output

        words = shlex.split(line)
        flags = {w for w in words if w.startswith("--")}
        names = [w for w in words if not w.startswith("--")]
        with capture_output(stdout="--no-stdout" not in flags, stderr="--no-stderr" not in flags,
                            display=False) as captured:
            self.run_source(cell, 2)
        if names:
            self.user_ns[names[0]] = captured

    def _cell_writefile(self, line: str, cell: str) -> None:
        words = shlex.split(line)
        append = "-a" in words or "--append" in words
        names = [w for w in words if not w.startswith("-")]
        if not names:
            self.notice("%%writefile without a file name: skipped")
            return
        path = Path(self.content_path(os.path.expanduser(names[0])))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a" if append else "w", encoding="utf-8") as handle:
            handle.write(cell)
        print(f"{'Appending to' if append else 'Writing'} {path}")


def _is_expression(source: str) -> bool:
    try:
        compile(source, "<%time>", "eval")
    except SyntaxError:
        return False
    return True


def content_path(path: str, workdir: Path) -> str:
    """``path`` with Colab's ``/content`` (the folder or anything under it) inside ``workdir``.

    Args:
        path: a path as the notebook writes it.
        workdir: stands for ``/content``.

    Returns:
        The path to use here (other paths unchanged).
    """
    if path == CONTENT or path.startswith(CONTENT + "/"):
        rest = path[len(CONTENT):].lstrip("/")
        return str(Path(workdir) / rest) + ("/" if path.endswith("/") and rest else "")
    return path

