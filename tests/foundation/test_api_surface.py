"""The public API surface: every public name, its kind and signature, snapshotted.

The snapshot (``api_surface.txt`` beside this file) makes changes to the public API deliberate:
a renamed argument or a removed function fails this test until the snapshot is regenerated with

    python tests/foundation/test_api_surface.py --update

Every name on the surface also needs a docstring; functions document their arguments (``Args:``)
and, when they return something, the result (``Returns:``).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("api_surface.txt")

# modules whose ``__all__`` is the public API (the rest of clipag_plugin is internal)
PUBLIC_MODULES = (
    "clipag",
    "clipag_plugin.registry",
    "clipag_plugin.hub",
    "clipag_plugin.loading",
    "clipag_plugin.synthesis",
    "clipag_plugin.train",
    "clipag_plugin.render",
    "clipag_plugin.vqgan",
    "clipag_plugin.adapters.clipdraw",
    "clipag_plugin.adapters.vqgan_clip",
    "clipag_plugin.adapters.clipstyler",
)


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _entries():
    """``(line, obj)`` for every public name: ``module.name kind signature``."""
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in sorted(module.__all__):
            obj = getattr(module, name)
            if inspect.isclass(obj):
                kind = "dataclass" if dataclasses.is_dataclass(obj) else "class"
                if issubclass(obj, BaseException):
                    kind = "exception"
                yield f"{module_name}.{name} {kind}{_signature(obj)}", obj
            elif callable(obj):
                yield f"{module_name}.{name} function{_signature(obj)}", obj
            else:
                yield f"{module_name}.{name} {type(obj).__name__}", obj


def current_surface() -> str:
    return "\n".join(line for line, _ in _entries()) + "\n"


def test_public_api_matches_the_snapshot():
    expected = SNAPSHOT.read_text().splitlines()
    actual = current_surface().splitlines()
    added = sorted(set(actual) - set(expected))
    removed = sorted(set(expected) - set(actual))
    assert not added and not removed, (
        "the public API changed; if that is deliberate, run "
        "`python tests/foundation/test_api_surface.py --update` and commit the snapshot.\n"
        + "".join(f"+ {line}\n" for line in added) + "".join(f"- {line}\n" for line in removed)
    )


def _has_result(obj) -> bool:
    try:
        annotation = inspect.signature(obj).return_annotation
    except (TypeError, ValueError):
        return False
    return annotation not in (inspect.Signature.empty, None, "None")


def test_every_public_name_is_documented():
    missing = []
    for line, obj in _entries():
        name = line.split(" ")[0]
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants and registries are described where they are defined
        doc = inspect.getdoc(obj) or ""
        if not doc.strip():
            missing.append(f"{name}: no docstring")
            continue
        if inspect.isfunction(obj):
            params = [p for p in inspect.signature(obj).parameters.values()
                      if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "options"]
            if params and "Args:" not in doc:
                missing.append(f"{name}: no 'Args:' section")
            if _has_result(obj) and "Returns:" not in doc:
                missing.append(f"{name}: no 'Returns:' section")
    assert not missing, "undocumented public API:\n" + "\n".join(missing)


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        SNAPSHOT.write_text(current_surface())
        print(f"wrote {SNAPSHOT}")
    else:
        sys.stdout.write(current_surface())
