"""The 79 ImageNet prompt templates CLIPStyler averages its text directions over.

They are the prompt-ensembling templates of CLIP's ImageNet zero-shot evaluation as the
CLIPStyler release uses them (its list has 79 entries). Spelling is kept as is ("a origami",
"itap"): text features depend on the exact strings. Order does not matter (features are averaged).
"""

from __future__ import annotations

__all__ = ["IMAGENET_TEMPLATES", "compose_text"]

_ARTICLES = ("a", "the")

# "a <adjective> photo of a/the {}."
_PHOTO_QUALITIES = (
    "bad", "low resolution", "cropped", "bright", "dark", "close-up", "black and white",
    "pixelated", "jpeg corrupted", "blurry", "good",
)
# "a photo of a/the <adjective> {}."
_OBJECT_QUALITIES = ("hard to see", "clean", "dirty", "cool", "large", "nice", "weird", "small")
# "<depiction> a/the {}."
_DEPICTIONS = (
    "a sculpture of", "a rendering of", "graffiti of", "a tattoo of", "a drawing of",
    "a painting of", "a doodle of", "a sketch of", "a rendition of", "art of",
)
# "a/the <material> {}."
_MATERIALS = ("embroidered", "plastic", "origami", "toy", "cartoon", "plushie")
_OTHERS = (
    "a photo of a {}.", "a photo of the {}.", "a photo of my {}.", "a photo of one {}.",
    "itap of a {}.", "itap of the {}.", "itap of my {}.",
    "a {} in a video game.", "the {} in a video game.",
)

IMAGENET_TEMPLATES: tuple[str, ...] = (
    *(f"a {q} photo of {a} {{}}." for q in _PHOTO_QUALITIES for a in _ARTICLES),
    *(f"a photo of {a} {q} {{}}." for q in _OBJECT_QUALITIES for a in _ARTICLES),
    *(f"{d} {a} {{}}." for d in _DEPICTIONS for a in _ARTICLES),
    *(f"{a} {m} {{}}." for m in _MATERIALS for a in _ARTICLES),
    *_OTHERS,
)


def compose_text(text: str, templates: tuple[str, ...] = IMAGENET_TEMPLATES) -> list[str]:
    """``text`` put into every template: ``"fire"`` -> ``["a bad photo of a fire.", ...]``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}; e.g. 'oil painting'")
    return [template.format(text) for template in templates]
