"""Run a user's unmodified script (or notebook cells) with some module-level names rebound.

The original CLIP-guided programs do everything at import time: ``generate.py`` defines its
cutout classes and uses them a few lines later, the CLIPDraw notebook sets ``NUM_AUGS`` inside
its loop, CLIPStyler assigns ``device = 'cuda'`` right before loading CLIP. Attributes patched
from outside cannot reach those names. This module compiles the script with one small AST pass:
after every statement at module level (including inside ``for``/``if``/``with``/``try`` blocks,
but not inside functions or classes) that binds one of the hooked names, it inserts::

    NAME = __clipag_rebind__("NAME", NAME)

so the hook sees every value the script gives the name and returns the one to use. Line numbers
and the file name stay the script's own, so tracebacks point at the user's code. The same pass is
registered with IPython for a running notebook (:func:`install_cell_hooks`), and applied cell by
cell when ``clipag run`` runs a notebook file (:mod:`clipag_plugin.adapters._notebook`).

The script runs as ``python script.py`` runs it: in a fresh ``__main__`` module that is
``sys.modules["__main__"]`` while it runs (so its classes pickle, for ``torch.save`` and spawned
DataLoader workers), with its folder first on ``sys.path``; the modules it imported from its own
folder are forgotten afterwards, so that the next run imports them afresh.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import os
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, MutableMapping, Optional, Sequence

__all__ = ["Rebinder", "bound_names", "assigned_attributes", "compile_with_hooks", "run_script",
           "running_as_main", "main_module", "install_cell_hooks", "REBIND", "unreachable_bindings",
           "module_level_names"]

REBIND = "__clipag_rebind__"
Hook = Callable[[Any], Any]


def _target_names(target: ast.AST) -> set[str]:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_target_names(t) for t in target.elts)) if target.elts else set()
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return set()


def bound_names(statement: ast.stmt) -> set[str]:
    """Names a module-level statement binds (assignments, ``def``, ``class``, imports, ``for`` targets).

    Args:
        statement: one statement.

    Returns:
        The names it binds in the namespace it runs in.
    """
    if isinstance(statement, ast.Assign):
        return set().union(*(_target_names(t) for t in statement.targets))
    if isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
        return _target_names(statement.target)
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).split(".")[0] for alias in statement.names if alias.name != "*"}
    return set()


def _dotted(target: ast.AST) -> Optional[str]:
    """``"args.num_iter"`` for an attribute target ``args.num_iter`` (a chain of names), else None."""
    parts = []
    while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
    if not isinstance(target, ast.Name) or not parts:
        return None
    return ".".join([target.id, *reversed(parts)])


def assigned_attributes(statement: ast.stmt) -> set[str]:
    """Dotted attribute targets a statement assigns (``args.num_iter = 1000`` gives ``args.num_iter``).

    Args:
        statement: one statement.

    Returns:
        The dotted names.
    """
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
        targets = [statement.target]
    else:
        return set()
    return {name for name in map(_dotted, targets) if name}


def _load(dotted: str, ctx: ast.expr_context) -> ast.expr:
    """The expression node for a dotted name (``Name`` or a chain of ``Attribute``)."""
    root, *attrs = dotted.split(".")
    node: ast.expr = ast.Name(root, ast.Load() if attrs else ctx)
    for i, attr in enumerate(attrs):
        node = ast.Attribute(node, attr, ctx if i == len(attrs) - 1 else ast.Load())
    return node


class Rebinder(ast.NodeTransformer):
    """Insert ``NAME = __clipag_rebind__("NAME", NAME)`` after module-level bindings of ``names``.

    A dotted name (``"args.num_iter"``) is rebound after module-level statements that assign that
    attribute (``args.num_iter = 1000``).
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = set(names)

    def visit_Module(self, node: ast.Module) -> ast.Module:
        node.body = self._block(node.body)
        return node

    def _block(self, statements: list) -> list:
        out = []
        for statement in statements:
            if isinstance(statement, (ast.For, ast.AsyncFor, ast.While, ast.If)):
                statement.body = self._block(statement.body)
                statement.orelse = self._block(statement.orelse)
            elif isinstance(statement, (ast.With, ast.AsyncWith)):
                statement.body = self._block(statement.body)
            elif isinstance(statement, ast.Try):
                statement.body = self._block(statement.body)
                statement.orelse = self._block(statement.orelse)
                statement.finalbody = self._block(statement.finalbody)
                for handler in statement.handlers:
                    handler.body = self._block(handler.body)
            out.append(statement)
            loop_targets = _target_names(statement.target) if isinstance(statement, (ast.For, ast.AsyncFor)) else set()
            bound = bound_names(statement) | loop_targets | assigned_attributes(statement)
            for name in sorted(bound & self.names):
                call = ast.Call(func=ast.Name(REBIND, ast.Load()),
                                args=[ast.Constant(name), _load(name, ast.Load())], keywords=[])
                out.append(ast.copy_location(ast.Assign(targets=[_load(name, ast.Store())], value=call), statement))
        return out


def compile_with_hooks(source: str, filename: str, names: Sequence[str]):
    """Compile ``source`` with the rebinding pass for ``names``.

    Args:
        source: the script's text.
        filename: shown in tracebacks.
        names: the module-level names to hook.

    Returns:
        A code object for ``exec``.
    """
    tree = Rebinder(names).visit(ast.parse(source, filename))
    return compile(ast.fix_missing_locations(tree), filename, "exec")


def _rebind_function(hooks: Mapping[str, Hook],
                     fired: Optional[MutableMapping[str, int]] = None) -> Callable[[str, Any], Any]:
    def rebind(name: str, value: Any) -> Any:
        if fired is not None:
            fired[name] = fired.get(name, 0) + 1
        return hooks[name](value)

    return rebind


def module_level_names(source: str) -> set[str]:
    """Every name a script binds at module level (in blocks too, not in functions or classes).

    Args:
        source: the script's text.

    Returns:
        The names.
    """
    names: set[str] = set()

    def walk(statements: list) -> None:
        for statement in statements:
            names.update(bound_names(statement))
            if isinstance(statement, (ast.For, ast.AsyncFor)):
                names.update(_target_names(statement.target))
            for block in ("body", "orelse", "finalbody"):
                if not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    walk(getattr(statement, block, []) or [])
            for handler in getattr(statement, "handlers", []) or []:
                walk(handler.body)

    walk(ast.parse(source).body)
    return names


def unreachable_bindings(source: str, names: Sequence[str]) -> dict[str, str]:
    """Where a script binds ``names`` out of the rebinding pass's reach (inside a function or class).

    Args:
        source: the script's text.
        names: the hooked names.

    Returns:
        ``{name: "function train (line 12)"}`` for names bound only inside functions or classes.
    """
    wanted, found = set(names), {}
    at_module_level = module_level_names(source)
    for scope in ast.walk(ast.parse(source)):
        if not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        kind = "class" if isinstance(scope, ast.ClassDef) else "function"
        for node in ast.walk(scope):
            if isinstance(node, ast.stmt) and node is not scope:
                for name in (bound_names(node) & wanted) - at_module_level - set(found):
                    found[name] = f"{kind} {scope.name} (line {node.lineno})"
    return found


def _imported_from(folder: Path, before: set[str]) -> list[str]:
    """Modules imported since ``before`` whose top-level package or module lives in ``folder``."""
    local = []
    for name in set(sys.modules) - before:
        top = sys.modules.get(name.split(".")[0])
        origin = getattr(top, "__file__", None) or next(iter(getattr(top, "__path__", []) or []), None)
        if origin is None:
            continue
        path = Path(origin).resolve()
        if path.parent == folder or (path.name == "__init__.py" and path.parent.parent == folder):
            local.append(name)
    return local


@contextlib.contextmanager
def running_as_main(module: types.ModuleType, argv: Sequence[str], folders: Sequence[Path]) -> Iterator[None]:
    """While the block runs, ``module`` is ``sys.modules["__main__"]``, ``sys.argv`` is ``argv`` and
    ``folders`` lead ``sys.path``; all three are restored afterwards, and the modules imported from
    ``folders`` meanwhile are removed from ``sys.modules`` (the next run imports them afresh).

    Args:
        module: the program's namespace module.
        argv: the program's ``sys.argv`` (its own name first).
        folders: put first on ``sys.path``.
    """
    saved_argv, saved_path, saved_main = sys.argv[:], sys.path[:], sys.modules.get("__main__")
    before = set(sys.modules)
    sys.argv = list(argv)
    sys.path[:0] = [str(folder) for folder in folders]
    sys.modules["__main__"] = module
    try:
        yield
    finally:
        sys.argv[:] = saved_argv
        sys.path[:] = saved_path
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
        for folder in folders:
            for name in _imported_from(Path(folder).resolve(), before):
                sys.modules.pop(name, None)


def main_module(filename: str, hooks: Mapping[str, Hook], fired: Optional[MutableMapping[str, int]],
                extra_globals: Optional[Mapping[str, Any]] = None) -> types.ModuleType:
    """A fresh ``__main__`` module for a program, with the rebinding function in its namespace.

    Args:
        filename: its ``__file__``.
        hooks: ``{name: function(value) -> value}``.
        fired: filled with ``{name: times its hook ran}``.
        extra_globals: further names placed in its namespace.

    Returns:
        The module.
    """
    module = types.ModuleType("__main__")
    module.__dict__.update({"__file__": filename, "__builtins__": builtins, "__spec__": None, "__loader__": None,
                            "__package__": None, "__cached__": None,
                            REBIND: _rebind_function(hooks, fired if fired is not None else Counter()),
                            **(extra_globals or {})})
    return module


def run_script(path: str | os.PathLike, argv: Sequence[str] = (), hooks: Optional[Mapping[str, Hook]] = None,
               extra_globals: Optional[Mapping[str, Any]] = None,
               fired: Optional[MutableMapping[str, int]] = None) -> dict:
    """Run ``path`` as ``__main__`` with ``sys.argv = [path, *argv]``, the hooked names rebound.

    The script runs in a fresh module registered as ``sys.modules["__main__"]`` while it runs, its
    folder first on ``sys.path``; ``sys.argv``, ``sys.path`` and ``__main__`` are restored
    afterwards and the modules imported from the script's folder are removed from ``sys.modules``.

    Args:
        path: the script.
        argv: its command-line arguments.
        hooks: ``{name: function(value) -> value}`` applied whenever the script binds ``name``.
        extra_globals: further names placed in the script's namespace before it runs.
        fired: filled with ``{name: times its hook ran}``.

    Returns:
        The script's global namespace after it ran.
    """
    path = Path(path)
    source = path.read_text(encoding="utf-8")
    hooks = dict(hooks or {})
    code = compile_with_hooks(source, str(path), list(hooks))
    module = main_module(str(path), hooks, fired, extra_globals)
    with running_as_main(module, [str(path), *argv], [path.resolve().parent]):
        exec(code, module.__dict__)
    return module.__dict__


class _CellTransformer(ast.NodeTransformer):
    """IPython AST transformer: the rebinding pass on every cell run after it is installed."""

    def __init__(self, names: Sequence[str]) -> None:
        self.rebinder = Rebinder(names)

    def visit_Module(self, node: ast.Module) -> ast.Module:
        return self.rebinder.visit_Module(node)


def install_cell_hooks(patcher: Any, hooks: Mapping[str, Hook]) -> bool:
    """In IPython/Jupyter, apply the hooks to every later cell (undone by ``patcher``).

    Args:
        patcher: the adapter's :class:`~clipag_plugin.adapters._patch.Patcher`.
        hooks: ``{name: function(value) -> value}``.

    Returns:
        True when an IPython shell was found and the hooks installed.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    transformer = _CellTransformer(list(hooks))
    shell.ast_transformers.append(transformer)
    shell.user_ns[REBIND] = _rebind_function(dict(hooks))

    def undo() -> None:
        if transformer in shell.ast_transformers:
            shell.ast_transformers.remove(transformer)
        shell.user_ns.pop(REBIND, None)

    patcher.add_undo(undo)
    return True
