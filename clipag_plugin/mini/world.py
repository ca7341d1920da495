"""The mini world's renderer and captions (64x64 RGB, one object, 600 captions).

The semantics are part of the product: four shapes, six colours, five positions and a
background colour different from the object's. ``sample_scenes`` draws scene parameters,
``render`` applies them (a pure function of the parameters), and ``caption`` names them.
Training-time variation (textures, colour and contrast jitter, noise) never changes what a
caption says about its image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

__all__ = [
    "SIZE",
    "SHAPES",
    "COLOURS",
    "COLOUR_RGB",
    "POSITIONS",
    "POSITION_PHRASES",
    "POSITION_CENTRES",
    "Scenes",
    "Variation",
    "CLEAN",
    "TRAIN",
    "WIDE",
    "caption",
    "all_captions",
    "caption_index",
    "index_tuple",
    "parse_caption",
    "vocabulary",
    "unknown_words",
    "scenes_from_indices",
    "sample_scenes",
    "render",
    "render_clean",
]

SIZE = 64
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")
COLOUR_RGB = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.75, 0.1),
    "blue": (0.1, 0.2, 0.9),
    "yellow": (0.95, 0.9, 0.1),
    "magenta": (0.85, 0.1, 0.85),
    "cyan": (0.1, 0.85, 0.9),
}
POSITIONS = ("left", "right", "top", "bottom", "center")
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
# (x, y) pixel centre of the object for each position.
POSITION_CENTRES = {"left": (16, 32), "right": (48, 32), "top": (32, 16), "bottom": (32, 48), "center": (32, 32)}
JITTER_PX = 4.0
HALF_SIZE = (10.0, 14.0)
_PALETTE = torch.tensor([COLOUR_RGB[c] for c in COLOURS])
_CENTRES = torch.tensor([POSITION_CENTRES[p] for p in POSITIONS], dtype=torch.float32)


def caption(colour: str, shape: str, position: str, background: str) -> str:
    """``"a {colour} {shape} {position phrase}, {background} background"``."""
    return f"a {colour} {shape} {POSITION_PHRASES[position]}, {background} background"


def _index_tuples() -> list[tuple[int, int, int, int]]:
    """(colour, shape, position, background) indices of the 600 captions, in a fixed order."""
    return [
        (c, s, p, b)
        for c in range(len(COLOURS))
        for s in range(len(SHAPES))
        for p in range(len(POSITIONS))
        for b in range(len(COLOURS))
        if b != c
    ]


_TUPLES = _index_tuples()
_LOOKUP = {t: i for i, t in enumerate(_TUPLES)}


def all_captions() -> list[str]:
    """The 600 captions of the world, in a fixed order (index = caption id)."""
    return [caption(COLOURS[c], SHAPES[s], POSITIONS[p], COLOURS[b]) for c, s, p, b in _TUPLES]


def caption_index(colour: int, shape: int, position: int, background: int) -> int:
    """Caption id of an attribute-index tuple (raises ``KeyError`` if object = background colour)."""
    try:
        return _LOOKUP[(colour, shape, position, background)]
    except KeyError:
        raise KeyError(
            f"no caption for colour={colour}, shape={shape}, position={position}, background={background}: "
            "the background colour must differ from the object's and indices must be in range"
        ) from None


def index_tuple(caption_id: int) -> tuple[int, int, int, int]:
    """``(colour, shape, position, background)`` indices of a caption id (inverse of :func:`caption_index`)."""
    if not 0 <= caption_id < len(_TUPLES):
        raise IndexError(f"caption id {caption_id} is out of range; the world has {len(_TUPLES)} captions (0-{len(_TUPLES) - 1})")
    return _TUPLES[caption_id]


def parse_caption(text: str) -> dict[str, str]:
    """Inverse of :func:`caption`: ``{"colour", "shape", "position", "background"}``."""
    for c in COLOURS:
        for s in SHAPES:
            for p in POSITIONS:
                head = f"a {c} {s} {POSITION_PHRASES[p]}, "
                if text.startswith(head) and text.endswith(" background"):
                    b = text[len(head) : -len(" background")]
                    if b in COLOURS and b != c:
                        return {"colour": c, "shape": s, "position": p, "background": b}
    raise ValueError(
        f"{text!r} is not a mini-world caption; expected 'a {{colour}} {{shape}} {{position phrase}}, "
        f"{{background}} background' with colours {COLOURS}, shapes {SHAPES}, positions "
        f"{tuple(POSITION_PHRASES.values())}"
    )


def vocabulary() -> frozenset[str]:
    """Every word of the world's captions (the only words the mini models were trained on)."""
    return frozenset(w for text in all_captions() for w in re.findall(r"[a-z]+", text))


def unknown_words(text: str) -> list[str]:
    """The words of ``text`` that no caption of the world uses, in order, each once.

    Args:
        text: a prompt.

    Returns:
        The unknown words (lower case); empty when the mini models know every word.
    """
    known = vocabulary()
    return list(dict.fromkeys(w for w in re.findall(r"[a-z]+", text.lower()) if w not in known))


@dataclass(frozen=True)
class Variation:
    """How far training renders may stray from the nominal look (all zero = the clean world)."""

    colour_jitter: float = 0.0  # per-channel uniform offset of both colours
    texture: float = 0.0  # amplitude of smooth random texture on background and object
    contrast: float = 0.0  # contrast scale drawn from [1 - c, 1 + c] around mid-gray
    brightness: float = 0.0  # uniform offset in [-b, b]
    noise: float = 0.0  # Gaussian pixel noise sigma drawn from [0, noise]


CLEAN = Variation()
TRAIN = Variation(colour_jitter=0.08, texture=0.12, contrast=0.25, brightness=0.08, noise=0.08)
WIDE = Variation(colour_jitter=0.12, texture=0.18, contrast=0.35, brightness=0.12, noise=0.12)


@dataclass(frozen=True)
class Scenes:
    """Parameters of a batch of scenes; ``render`` is a pure function of them.

    Index tensors are ``(B,)`` long; geometry ``(B,)`` float (pixels); the variation fields are
    ``None`` for clean renders.
    """

    colour: torch.Tensor
    shape: torch.Tensor
    position: torch.Tensor
    background: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    half: torch.Tensor
    fg_offset: Optional[torch.Tensor] = None  # (B, 3)
    bg_offset: Optional[torch.Tensor] = None  # (B, 3)
    fg_texture: Optional[torch.Tensor] = None  # (B, 3, 8, 8)
    bg_texture: Optional[torch.Tensor] = None  # (B, 3, 8, 8)
    contrast: Optional[torch.Tensor] = None  # (B,)
    brightness: Optional[torch.Tensor] = None  # (B,)
    noise: Optional[torch.Tensor] = None  # (B, 3, 64, 64), already scaled

    @property
    def caption_ids(self) -> torch.Tensor:
        """Caption id of every scene."""
        return torch.tensor(
            [
                _LOOKUP[t]
                for t in zip(self.colour.tolist(), self.shape.tolist(), self.position.tolist(), self.background.tolist(), strict=True)
            ],
            dtype=torch.long,
        )

    @property
    def captions(self) -> list[str]:
        """Caption of every scene."""
        texts = all_captions()
        return [texts[i] for i in self.caption_ids.tolist()]


def _uniform(n: int, low: float, high: float, g: torch.Generator, *shape: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, *shape, generator=g)


def scenes_from_indices(
    ids: torch.Tensor | Sequence[int],
    generator: torch.Generator,
    variation: Variation = CLEAN,
) -> Scenes:
    """Scenes for given caption ids, with position jitter, size and variation drawn from ``generator``."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(_TUPLES)):
        raise ValueError(f"caption ids must be in [0, {len(_TUPLES)}), got min {int(ids.min())}, max {int(ids.max())}")
    tup = torch.tensor([_TUPLES[i] for i in ids.tolist()], dtype=torch.long).view(-1, 4)
    n = ids.numel()
    g = generator
    centre = _CENTRES[tup[:, 2]]
    v = variation
    return Scenes(
        colour=tup[:, 0],
        shape=tup[:, 1],
        position=tup[:, 2],
        background=tup[:, 3],
        cx=centre[:, 0] + _uniform(n, -JITTER_PX, JITTER_PX, g),
        cy=centre[:, 1] + _uniform(n, -JITTER_PX, JITTER_PX, g),
        half=_uniform(n, *HALF_SIZE, g),
        fg_offset=_uniform(n, -v.colour_jitter, v.colour_jitter, g, 3) if v.colour_jitter else None,
        bg_offset=_uniform(n, -v.colour_jitter, v.colour_jitter, g, 3) if v.colour_jitter else None,
        fg_texture=v.texture * (2 * torch.rand(n, 3, 8, 8, generator=g) - 1) if v.texture else None,
        bg_texture=v.texture * (2 * torch.rand(n, 3, 8, 8, generator=g) - 1) if v.texture else None,
        contrast=_uniform(n, 1 - v.contrast, 1 + v.contrast, g) if v.contrast else None,
        brightness=_uniform(n, -v.brightness, v.brightness, g) if v.brightness else None,
        noise=(
            _uniform(n, 0.0, v.noise, g).view(n, 1, 1, 1) * torch.randn(n, 3, SIZE, SIZE, generator=g)
            if v.noise
            else None
        ),
    )


def sample_scenes(n: int, generator: torch.Generator, variation: Variation = CLEAN) -> Scenes:
    """``n`` scenes with uniformly drawn captions."""
    ids = torch.randint(len(_TUPLES), (n,), generator=generator)
    return scenes_from_indices(ids, generator, variation)


def _signed_distance(shape: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """Signed distance (pixels, positive inside) of each pixel to the scene's shape outline."""
    h = half.view(-1, 1, 1)
    circle = h - torch.sqrt(dx * dx + dy * dy)
    square = h * 0.9 - torch.maximum(dx.abs(), dy.abs())
    # Upward triangle: apex (0, -h), base y = 0.75h from x = -h to x = +h (side slopes 1.75).
    norm = torch.sqrt(torch.tensor(1.0 + 1.75**2))
    left_side = (1.75 * dx + (dy + h)) / norm
    right_side = (-1.75 * dx + (dy + h)) / norm
    triangle = torch.minimum(0.75 * h - dy, torch.minimum(left_side, right_side))
    arm = h * 0.33
    cross = torch.maximum(
        torch.minimum(h - dx.abs(), arm - dy.abs()),
        torch.minimum(arm - dx.abs(), h - dy.abs()),
    )
    stacked = torch.stack([circle, square, triangle, cross], 1)  # (B, 4, H, W)
    return stacked.gather(1, shape.view(-1, 1, 1, 1).expand(-1, 1, *dx.shape[-2:])).squeeze(1)


def _smooth_texture(tex: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate(tex, size=(SIZE, SIZE), mode="bicubic", align_corners=False)


def render(scenes: Scenes) -> torch.Tensor:
    """Images ``(B, 3, 64, 64)`` in [0, 1] of ``scenes`` (anti-aliased edges)."""
    coords = torch.arange(SIZE, dtype=torch.float32) + 0.5
    n = scenes.cx.shape[0]
    dx = (coords.view(1, 1, SIZE) - scenes.cx.view(-1, 1, 1)).expand(n, SIZE, SIZE)
    dy = (coords.view(1, SIZE, 1) - scenes.cy.view(-1, 1, 1)).expand(n, SIZE, SIZE)
    mask = (_signed_distance(scenes.shape, dx, dy, scenes.half) + 0.5).clamp(0, 1).unsqueeze(1)
    fg = _PALETTE[scenes.colour].view(-1, 3, 1, 1)
    bg = _PALETTE[scenes.background].view(-1, 3, 1, 1)
    if scenes.fg_offset is not None:
        fg = fg + scenes.fg_offset.view(-1, 3, 1, 1)
        bg = bg + scenes.bg_offset.view(-1, 3, 1, 1)
    if scenes.fg_texture is not None:
        fg = fg + _smooth_texture(scenes.fg_texture)
        bg = bg + _smooth_texture(scenes.bg_texture)
    image = mask * fg + (1 - mask) * bg
    if scenes.contrast is not None:
        image = 0.5 + (image - 0.5) * scenes.contrast.view(-1, 1, 1, 1)
    if scenes.brightness is not None:
        image = image + scenes.brightness.view(-1, 1, 1, 1)
    if scenes.noise is not None:
        image = image + scenes.noise
    return image.clamp(0, 1)


def render_clean(ids: torch.Tensor | Sequence[int], seed: int = 0) -> torch.Tensor:
    """Clean renders of caption ids (nominal colours, seeded jitter and size)."""
    return render(scenes_from_indices(ids, torch.Generator().manual_seed(seed), CLEAN))
