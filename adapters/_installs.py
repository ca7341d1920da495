"""What a notebook would install: its shell lines and the packages they name, found without running them.

``clipag run`` does not run a notebook's shell lines (``!pip install ...``, ``!git clone ...``,
``%pip``, ``%%bash`` cells); :func:`install_notice` says so once before the first cell, with the
packages the notebook installs anywhere (its install cell is usually not among the chosen ones),
those clipag itself provides and those missing here.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shlex
from dataclasses import dataclass
from typing import Optional, Sequence

from ._cells import NotebookCell, ipython_call, translate

__all__ = ["ShellLine", "shell_lines", "installed_by", "install_notice"]

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


def shell_lines(cells: Sequence[NotebookCell]) -> list[ShellLine]:
    """Every shell line of ``cells``, in order (found in the translated source, nothing run)."""
    found = []
    for cell in cells:
        try:
            tree = ast.parse(translate(cell.source))
        except SyntaxError:
            continue
        calls = sorted((n for n in ast.walk(tree) if ipython_call(n)), key=lambda n: (n.lineno, n.col_offset))
        for node in calls:
            kind, args = ipython_call(node)
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
