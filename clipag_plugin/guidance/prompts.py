"""Parse weighted prompts: ``"a red barn:1 | blurry:-0.3 | sky:0.5:0.2"``.

Each ``|``-separated part is ``text[:weight[:stop]]`` (VQGAN+CLIP's syntax). A negative weight
pushes the image away from the text; ``stop`` is the distance below which that prompt stops
pulling (``-inf``: never stops). Up to two trailing numeric fields are read as weight and stop
(as VQGAN+CLIP's ``rsplit(":", 2)``); a colon followed by a number inside the text therefore needs
both fields spelled out: ``"ratio 16:9:1:-inf"`` is text ``"ratio 16:9"``, weight 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

__all__ = ["Prompt", "parse_prompt", "parse_prompts"]


@dataclass(frozen=True)
class Prompt:
    """One text prompt with its loss weight and stop threshold."""

    text: str
    weight: float = 1.0
    stop: float = -math.inf

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("empty prompt text; give some words, e.g. 'a red barn:1'")
        if not math.isfinite(self.weight):
            raise ValueError(f"prompt {self.text!r}: weight must be a finite number, got {self.weight}")
        if math.isnan(self.stop):
            raise ValueError(f"prompt {self.text!r}: stop must be a number or -inf, got nan")


def _number(field: str) -> float | None:
    try:
        value = float(field)
    except ValueError:
        return None
    return value


def parse_prompt(spec: str) -> Prompt:
    """``"text[:weight[:stop]]"`` -> :class:`Prompt` (trailing numeric fields are weight, stop)."""
    if not isinstance(spec, str):
        raise ValueError(f"prompt must be a string, got {type(spec).__name__}")
    parts = spec.strip().split(":")
    numbers: list[float] = []
    # Peel at most two numeric fields off the end: ...:weight or ...:weight:stop.
    while len(parts) > 1 and len(numbers) < 2:
        value = _number(parts[-1].strip())
        if value is None:
            break
        numbers.insert(0, value)
        parts.pop()
    text = ":".join(parts).strip()
    if not text:
        raise ValueError(f"prompt {spec!r} has no text; expected 'text[:weight[:stop]]', e.g. 'a red barn:1'")
    if len(parts) > 1 and parts[-1].strip() == "" and not numbers:
        raise ValueError(f"prompt {spec!r}: empty field after ':'; expected 'text[:weight[:stop]]'")
    if len(parts) > 1 and not numbers and _looks_numeric_tail(spec):
        raise ValueError(f"prompt {spec!r}: could not read weight; expected 'text[:weight[:stop]]'")
    weight = numbers[0] if numbers else 1.0
    stop = numbers[1] if len(numbers) > 1 else -math.inf
    try:
        return Prompt(text, weight, stop)
    except ValueError as err:
        raise ValueError(f"prompt {spec!r}: {err}") from None


def _looks_numeric_tail(spec: str) -> bool:
    """True when the last field is almost a number (``"1.x"``, ``"-"``): likely a typo."""
    tail = spec.rsplit(":", 1)[-1].strip()
    return bool(tail) and tail[0] in "+-.0123456789" and _number(tail) is None


def parse_prompts(specs: Union[str, Prompt, Iterable[Union[str, Prompt]]]) -> list[Prompt]:
    """Prompts from ``"a:1 | b:-0.3"``, a list of such strings, or :class:`Prompt` objects.

    Raises ``ValueError`` for an empty spec, an empty part between ``|`` or a bad number.
    """
    if isinstance(specs, Prompt):
        return [specs]
    items: Sequence[Union[str, Prompt]] = [specs] if isinstance(specs, str) else list(specs)
    prompts: list[Prompt] = []
    for item in items:
        if isinstance(item, Prompt):
            prompts.append(item)
            continue
        if not isinstance(item, str):
            raise ValueError(f"prompt must be a string or Prompt, got {type(item).__name__}")
        parts = item.split("|")
        for part in parts:
            if not part.strip():
                raise ValueError(
                    f"empty prompt in {item!r}; separate prompts with '|', e.g. 'a red barn:1 | blurry:-0.3'"
                )
            prompts.append(parse_prompt(part))
    if not prompts:
        raise ValueError("no prompt given; pass text such as 'a watercolor of a fox'")
    return prompts
