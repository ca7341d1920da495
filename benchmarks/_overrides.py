"""``name=value,...`` on the command line -> changes to a settings dataclass (the mini-world sweeps)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


def parse_overrides(text: str, settings: type, named: Mapping[str, Mapping[str, Any]] = {}) -> dict[str, Any]:
    """``"steps=100,lr=0.002"`` -> ``{"steps": 100, "lr": 0.002}``; an item may also be a key of ``named``.

    Values: ``True``/``False``/``None``, numbers (a dot makes a float), anything else a string.
    """
    fields = {f.name for f in dataclasses.fields(settings)}
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        if item in named:
            out.update(named[item])
            continue
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown setting {key!r} of {settings.__name__}; choose from {', '.join(sorted(fields))}")
        out[key] = _value(value)
    return out


def _value(text: str) -> Any:
    special = {"True": True, "False": False, "None": None}
    if text in special:
        return special[text]
    try:
        return float(text) if any(c in text for c in ".e") else int(text)
    except ValueError:
        return text.replace("_", " ")
