"""A notebook's code cells: read, numbered, titled, chosen, and translated from IPython syntax.

Cells are numbered among the notebook's code cells from 1 and titled by Colab's ``#@title``;
``--cells`` picks them by number, range or title. :func:`translate` is IPython's own
``TransformerManager``: ``%cd x`` becomes ``get_ipython().run_line_magic('cd', 'x')`` line for line,
and :func:`ipython_call` recognizes those calls in the translated code.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from dataclasses import dataclass
from typing import Optional, Sequence

__all__ = ["NotebookCell", "read_cells", "select_cells", "cell_table", "translate", "ipython_call"]

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


def ipython_call(node: ast.AST) -> Optional[tuple[str, list]]:
    """``("system", [args])`` for ``get_ipython().system("...")`` and the like, with constant args."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
            and node.func.value.func.id == "get_ipython"):
        return None
    args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
    return node.func.attr, args
