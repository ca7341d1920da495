"""CLIPDraw: text -> a drawing of vector strokes, optimized against a CLIP (Frans et al. 2021).

The notebook's recipe as a library loop: random open cubic strokes, rendered over white by
clipag's differentiable rasterizer, scored by the cosine between CLIP's image features and the
prompt's, the points, widths and colours stepped by three Adam optimizers. The augmentation trick
(``copies`` perspective-warped, resized crops per step) is one switch: a robust encoder does
without it. :func:`draw_iter` streams frames (for a page or a progress display); :func:`draw`
returns the finished :class:`Drawing`. The bundled ``examples/clipdraw/clipdraw.py`` is this loop
behind the notebook's module-level switches.

Each model gets drawing settings of its own, as generation presets do (:data:`DRAW_PRESETS`,
:func:`draw_preset_for`): the notebook's for the full-size CLIPs, and for the 96 px mini models
a smaller canvas with fewer, wider strokes, chosen by measurement (docs/adapters.md).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any, Generator, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ..guidance.warp import apply_clipdraw_warp, sample_clipdraw_warp
from ..preprocess import OPENAI_MEAN, OPENAI_STD
from ..render import StrokeScene, render

__all__ = ["DrawConfig", "DRAW_PRESETS", "draw_preset_for", "Drawing", "DrawFrame", "init_curves", "clip_input",
           "augment", "drawing_loss", "draw_iter", "draw", "with_options", "NEG_PROMPTS"]

NEG_PROMPTS = ("A badly drawn sketch.", "Many ugly, messy drawings.")


@dataclass(frozen=True)
class DrawConfig:
    """Every setting of a drawing; the defaults are the CLIPDraw notebook's.

    Args:
        paths: number of strokes.
        steps: optimization steps.
        canvas: canvas side in pixels (the model reads it resized to its own resolution).
        augment: the augmentation trick: ``copies`` warped crops per step (False: one plain view).
        copies: augmented copies per step when ``augment`` is on.
        normalize: feed the model its own mean/std (the notebook did not; CLIP was trained with it).
        init_width: starting stroke width in pixels.
        max_width: largest stroke width.
        spread: how far each control point may fall from the previous one, in canvas units.
        points_lr, width_lr, color_lr: the three Adam learning rates (points annealed x0.4 at half
            way and x0.1 at three quarters).
        seed: the random start and the augmentations.
        neg_prompts: prompts to draw away from, each weighted ``neg_weight``.
        neg_weight: weight of the negative prompts.
    """

    paths: int = 256
    steps: int = 1000
    canvas: int = 224
    augment: bool = True
    copies: int = 4
    normalize: bool = True
    init_width: float = 1.0
    max_width: float = 50.0
    spread: float = 0.1
    points_lr: float = 1.0
    width_lr: float = 0.1
    color_lr: float = 0.01
    seed: int = 0
    neg_prompts: tuple[str, ...] = ()
    neg_weight: float = 0.3

    def __post_init__(self) -> None:
        checks = [
            (self.paths >= 1, f"paths={self.paths}: draw at least 1 stroke"),
            (self.steps >= 0, f"steps={self.steps}: must be >= 0"),
            (self.canvas >= 8, f"canvas={self.canvas}: must be at least 8 px"),
            (self.copies >= 1, f"copies={self.copies}: must be >= 1"),
            (1.0 <= self.init_width <= self.max_width,
             f"init_width={self.init_width}, max_width={self.max_width}: need 1 <= init_width <= max_width"),
            (self.spread > 0, f"spread={self.spread}: must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        object.__setattr__(self, "neg_prompts", tuple(self.neg_prompts))


# Drawing settings per model family; the registry's mini models draw on a 96 px canvas.
DRAW_PRESETS: dict[str, DrawConfig] = {
    "notebook": DrawConfig(),
    "mini": DrawConfig(paths=32, steps=200, canvas=96, augment=False, init_width=4.0, max_width=24.0,
                       spread=0.3),
}


def draw_preset_for(model: Union[str, Any]) -> str:
    """The name of the drawing preset for a model (by name, or loaded with a ``name``)."""
    name = model if isinstance(model, str) else getattr(model, "name", "")
    from ..registry import REGISTRY

    entry = REGISTRY.get(name)
    return "mini" if entry is not None and entry.preset == "mini" else "notebook"


@dataclass
class Drawing:
    """What a drawing leaves: the strokes, the final picture and the loss per step."""

    scene: StrokeScene
    image: torch.Tensor  # (3, H, W) in [0, 1], over white
    losses: list[float] = field(default_factory=list)
    config: Optional[DrawConfig] = None


@dataclass
class DrawFrame:
    """One step of a running drawing (as :func:`draw_iter` yields it)."""

    step: int  # updates done
    total: int
    loss: float
    image: torch.Tensor  # (3, H, W) the picture this step scored, over white
    scene: Optional[StrokeScene] = None  # the strokes after this step (detached), e.g. for an SVG


def init_curves(num_paths: int, width: int, height: int, rng: random.Random, device: Any = "cpu",
                spread: float = 0.1, init_width: float = 1.0):
    """The notebook's random start: 1-3 segments per path, each control point within
    ``+-spread / 2`` of the previous one (canvas units), width ``init_width``, uniform random RGBA.

    Returns:
        ``(points, widths, colors)``: lists of leaf tensors that require gradients.
    """
    points, widths, colors = [], [], []
    for _ in range(num_paths):
        num_segments = rng.randint(1, 3)
        p0 = (rng.random(), rng.random())
        path = [p0]
        for _ in range(num_segments):
            p1 = (p0[0] + spread * (rng.random() - 0.5), p0[1] + spread * (rng.random() - 0.5))
            p2 = (p1[0] + spread * (rng.random() - 0.5), p1[1] + spread * (rng.random() - 0.5))
            p3 = (p2[0] + spread * (rng.random() - 0.5), p2[1] + spread * (rng.random() - 0.5))
            path += [p1, p2, p3]
            p0 = p3
        pts = torch.tensor(path) * torch.tensor([float(width), float(height)])
        points.append(pts.to(device).requires_grad_())
        widths.append(torch.tensor(float(init_width), device=device).requires_grad_())
        colors.append(torch.tensor([rng.random() for _ in range(4)], device=device).requires_grad_())
    return points, widths, colors


def clip_input(images: torch.Tensor, model: Any, normalize: bool) -> torch.Tensor:
    """Normalize with the model's own mean/std (OpenAI's for OpenAI's CLIP) when asked."""
    if not normalize:
        return images
    if hasattr(model, "normalize"):  # clipag models know their checkpoint's statistics
        return model.normalize(images)
    mean = torch.tensor(OPENAI_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def augment(image: torch.Tensor, size: int, use_augment: bool, copies: int, generator: torch.Generator) -> torch.Tensor:
    """``copies`` views through RandomPerspective(0.5, white) + RandomResizedCrop(size, 0.7-0.9), or one plain view."""
    if not use_augment:
        if image.shape[-1] != size or image.shape[-2] != size:
            image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return image
    params = sample_clipdraw_warp(copies, image.shape[-2], image.shape[-1], generator=generator)
    return apply_clipdraw_warp(image, params, size=size)


def drawing_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                 neg_features: Optional[torch.Tensor] = None, neg_weight: float = 0.3) -> torch.Tensor:
    """Minus the summed cosine to the prompt over the copies (+ ``neg_weight`` x cosine to each negative)."""
    image_features = image_features.float()
    loss = -torch.cosine_similarity(text_features.float(), image_features, dim=1).sum()
    if neg_features is not None:
        for neg in neg_features.float():
            loss = loss + neg_weight * torch.cosine_similarity(neg[None], image_features, dim=1).sum()
    return loss


def _encode_texts(model: Any, texts: Sequence[str], tokenize: Any, device: torch.device) -> torch.Tensor:
    from ..tokenizer import tokenizer_for

    tokens = tokenizer_for(model, tokenize)(list(texts))
    with torch.no_grad():
        return model.encode_text(tokens.to(device))


def draw_iter(
    prompt: str,
    model: Any,
    config: DrawConfig = DrawConfig(),
    *,
    device: Any = None,
    every: int = 1,
    tokenize: Any = None,
    backend: str = "auto",
) -> Generator[DrawFrame, None, Drawing]:
    """Draw ``prompt`` with ``model``: a :class:`DrawFrame` every ``every`` steps (and the last), the
    :class:`Drawing` at the end (``StopIteration.value``; :func:`draw` collects it). Closing the
    generator stops the drawing.

    Args:
        prompt: what to draw.
        model: a CLIP with ``encode_image``/``encode_text`` and ``visual.input_resolution``
            (clipag's, OpenAI's or open_clip's).
        config: the settings.
        device: where the strokes live (default: the model's).
        every: steps between frames.
        tokenize: the text tokenizer (default: clipag's, at the model's context length).
        backend: the rasterizer, ``"auto"``, ``"torch"`` or ``"diffvg"``.

    Returns:
        A generator of frames whose return value is the drawing.
    """
    if device is None:
        device = next(model.parameters()).device
    size = int(model.visual.input_resolution)
    rng = random.Random(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    # 1. the prompt (and the negatives) once
    text_features = _encode_texts(model, [prompt], tokenize, device)
    neg_features = _encode_texts(model, config.neg_prompts, tokenize, device) if config.neg_prompts else None
    # 2. random strokes and one optimizer per kind of parameter
    points, widths, colors = init_curves(config.paths, config.canvas, config.canvas, rng, device, config.spread,
                                         config.init_width)
    points_optim = torch.optim.Adam(points, lr=config.points_lr)
    width_optim = torch.optim.Adam(widths, lr=config.width_lr)
    color_optim = torch.optim.Adam(colors, lr=config.color_lr)
    optimizers = (points_optim, width_optim, color_optim)
    losses: list[float] = []
    for t in range(config.steps):
        # the points' learning rate falls to 0.4x at half way and 0.1x at three quarters
        for fraction, factor in ((0.5, 0.4), (0.75, 0.1)):
            if t == int(config.steps * fraction):
                for group in points_optim.param_groups:
                    group["lr"] = config.points_lr * factor
        for optimizer in optimizers:
            optimizer.zero_grad()
        # render over white, the views (one, or the warped copies), encode once, score
        scene = StrokeScene.from_paths(points, widths, colors, config.canvas, config.canvas)
        image = render(scene, backend=backend).unsqueeze(0)
        views = augment(image, size, config.augment, config.copies, generator)
        loss = drawing_loss(model.encode_image(clip_input(views, model, config.normalize)), text_features,
                            neg_features, config.neg_weight)
        # step, then widths back into [1, max_width] and colours into [0, 1]
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        with torch.no_grad():
            for w in widths:
                w.clamp_(1.0, config.max_width)
            for c in colors:
                c.clamp_(0.0, 1.0)
        losses.append(loss.item())
        if (t + 1) % max(1, every) == 0 or t + 1 == config.steps:
            yield DrawFrame(t + 1, config.steps, losses[-1], image[0].detach(), _snapshot(points, widths, colors, config))
    with torch.no_grad():
        scene = _snapshot(points, widths, colors, config)
        final = render(scene, backend=backend)
    return Drawing(scene, final.cpu(), losses, config)


def _snapshot(points: list, widths: list, colors: list, config: DrawConfig) -> StrokeScene:
    return StrokeScene.from_paths([p.detach() for p in points], [w.detach() for w in widths],
                                  [c.detach() for c in colors], config.canvas, config.canvas)


def draw(prompt: str, model: Any, config: DrawConfig = DrawConfig(), **options: Any) -> Drawing:
    """:func:`draw_iter` run to the end.

    Args:
        prompt: what to draw.
        model: the CLIP.
        config: the settings.
        options: ``device``, ``tokenize``, ``backend`` and ``on_step`` (called as
            ``on_step(step, image, loss)`` after every step, ``step`` counting from 0).

    Returns:
        The :class:`Drawing`.
    """
    from .loop import run_to_end

    on_step = options.pop("on_step", None)
    steps = draw_iter(prompt, model, config, every=1, **options)
    return run_to_end(steps, None if on_step is None else lambda f: on_step(f.step - 1, f.image, f.loss))


def with_options(config: DrawConfig, **changes: Any) -> DrawConfig:
    """``config`` with the given fields changed (None values are ignored)."""
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
