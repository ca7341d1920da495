"""Generation presets: the settings each model paints best with, declared beside its weights.

Every registry entry names a preset (:attr:`clipag_plugin.registry.ModelEntry.preset`), as timm
attaches a pretrained config to each weight. A preset is a typed, frozen set of
:class:`~.loop.GenerateConfig` overrides. Settings resolve in this order, later wins:

1. the global defaults (:class:`~.loop.GenerateConfig`, the CLIPAG notebook's recipe);
2. the model's preset (``preset="auto"``), a preset named explicitly, or none (``"none"``);
3. the options given explicitly (CLI flags, keyword arguments, ``compare --settings``).

A model loaded from the registry (``clipag.load("mini")[0]``) carries its name and gets the same
preset as the name; models given as paths or ``hf-hub:`` names have no preset of their own.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

from .loop import GenerateConfig

__all__ = [
    "GenerationPreset",
    "PRESETS",
    "AUTO",
    "NONE",
    "get_preset",
    "preset_of_model",
    "resolve_config",
    "config_fields",
]

AUTO, NONE = "auto", "none"
logger = logging.getLogger(__name__)


def config_fields() -> tuple[str, ...]:
    """The names a preset or an option may set (the fields of :class:`GenerateConfig`)."""
    return tuple(f.name for f in dataclasses.fields(GenerateConfig))


@dataclass(frozen=True)
class GenerationPreset:
    """A named set of :class:`GenerateConfig` overrides.

    Args:
        name: how the preset is chosen (``--preset NAME``, ``preset="NAME"``).
        description: one line for ``clipag models`` and the logs.
        settings: ``(field, value)`` pairs; every field must be a :class:`GenerateConfig` field and
            the values must make a valid config (checked when the preset is created).
    """

    name: str
    description: str
    settings: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        valid = config_fields()
        unknown = [key for key, _ in self.settings if key not in valid]
        if unknown:
            raise ValueError(f"preset {self.name!r} names unknown field(s) {', '.join(unknown)}; "
                             f"valid: {', '.join(valid)}")
        GenerateConfig(**self.as_dict())  # values out of range fail here, with GenerateConfig's message

    def as_dict(self) -> dict[str, Any]:
        """The overrides as a dict."""
        return dict(self.settings)

    def summary(self) -> str:
        """``name (k=v, ...)`` for logs and tables."""
        items = ", ".join(f"{k}={_short(v)}" for k, v in self.settings)
        return f"{self.name} ({items})" if items else f"{self.name} (the global defaults)"


def _short(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


PRESETS: dict[str, GenerationPreset] = {
    preset.name: preset
    for preset in (
        GenerationPreset(
            "notebook",
            "the CLIPAG notebook's recipe: AdamW on pixels, 32 views + 32 crops, dynamic threshold, photo GMM",
        ),
        GenerationPreset(
            "mini",
            "the mini world: multi-resolution image, fixed-length L2 steps, one un-augmented view, "
            "best of 1000 world-GMM starts",
            (
                ("param", "multires"),
                ("optimizer", "l2"),
                ("lr", 1.0),
                ("views", 1),
                ("crops", 0),
                ("augment", False),
                ("threshold", None),
                ("gmm_path", "miniworld"),
                ("gmm_candidates", 1000),
                ("steps", 150),
            ),
        ),
    )
}


def get_preset(name: str) -> Optional[GenerationPreset]:
    """The preset called ``name`` (``"none"``: no preset); a ``ValueError`` listing the choices otherwise."""
    if name == NONE:
        return None
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"preset {name!r} is unknown; choose one of {', '.join([AUTO, NONE, *PRESETS])}") from None


def preset_of_model(model: Any) -> Optional[GenerationPreset]:
    """The preset a registry name declares, also for a model loaded under that name (its ``name``
    attribute) or its ``(model, preprocess)`` pair; None for paths and ``hf-hub:`` names."""
    from ..registry import REGISTRY

    if isinstance(model, tuple) and model:
        model = model[0]
    if not isinstance(model, str):
        model = getattr(model, "name", None)
        if not isinstance(model, str):
            return None
    entry = REGISTRY.get(model)
    return get_preset(entry.preset) if entry is not None else None


PresetArg = Union[str, GenerationPreset, None]


def _choose(models: Sequence[Any], preset: PresetArg) -> Optional[GenerationPreset]:
    if isinstance(preset, GenerationPreset):
        return preset
    if preset is None or preset == NONE:
        return None
    if preset != AUTO:
        return get_preset(preset)
    found = [(m, p) for m in models if (p := preset_of_model(m)) is not None]
    names = {p.name for _, p in found}
    if len(names) > 1:
        logger.warning("the models declare different presets (%s); using %r, the first model's",
                       ", ".join(f"{m}: {p.name}" for m, p in found), found[0][1].name)
    return found[0][1] if found else None


def resolve_config(
    models: Sequence[Any],
    preset: PresetArg = AUTO,
    explicit: Optional[Mapping[str, Any]] = None,
    base: Optional[GenerateConfig] = None,
) -> tuple[GenerateConfig, Optional[GenerationPreset]]:
    """The settings of a run: ``base`` (default :class:`GenerateConfig`) < preset < ``explicit``.

    Args:
        models: the run's models (names, paths or modules); ``preset="auto"`` takes the first
            registry name's preset.
        preset: ``"auto"``, ``"none"``, a name from :data:`PRESETS`, or a :class:`GenerationPreset`.
        explicit: options given by the caller; they always win.
        base: the settings below the preset.

    Returns:
        ``(config, preset)``: the resolved config and the preset applied (None when none was).
    """
    explicit = dict(explicit or {})
    valid = config_fields()
    unknown = sorted(set(explicit) - set(valid))
    if unknown:
        raise ValueError(f"unknown generate option(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    chosen = _choose(list(models), preset)
    settings = {**(chosen.as_dict() if chosen else {}), **explicit}
    return dataclasses.replace(base or GenerateConfig(), **settings), chosen
