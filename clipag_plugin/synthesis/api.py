"""``generate``: text -> image by optimizing pixels against one or more robust CLIPs.

``generate(prompt, model=None, **options)`` returns a PIL image; :func:`generate_tensor` returns the
full :class:`~.loop.GenerationResult` (tensors, best loss, cosine, step, history, frames);
:func:`generate_iter` streams frames while it runs. The settings come from the global defaults,
the model's preset and the caller's options (:mod:`.presets`); which models run, and the cache of
models loaded by name, is :mod:`.models`.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any, Iterator, Optional, Sequence, Union

import torch

from ..guidance.losses import prompt_loss
from ..guidance.prompts import Prompt, parse_prompts
from ..progress import StepProgress
from .accel import encoder_autocast
from .init import INITS, auto_candidates, gmm_init, gray_init, image_init, noise_init
from .loop import (
    GenerateConfig,
    GenerationFrame,
    GenerationResult,
    Guide,
    optimize,
    optimize_steps,
    prepare_guides,
)
from .models import (  # noqa: F401  (load_model, clear_model_cache, MODEL_CACHE_SIZE and _MODEL_CACHE stay importable here)
    _MODEL_CACHE,
    MINI_MODELS,
    MODEL_CACHE_SIZE,
    ModelLike,
    as_model,
    clear_model_cache,
    default_model_choice,
    load_model,
    looks_like_model,
    resolve_default_model,
    vocabulary_note,
)
from .param import check_levels, default_levels
from .presets import AUTO, NONE, PresetArg, resolve_config

__all__ = [
    "generate",
    "generate_tensor",
    "generate_iter",
    "vocabulary_note",
    "resolve_default_model",
    "default_model_choice",
    "load_guides",
    "load_model",
    "clear_model_cache",
    "candidates_for",
    "make_init",
    "MIN_SIZE",
    "MAX_SIZE",
]

MIN_SIZE, MAX_SIZE = 16, 2048
logger = logging.getLogger("clipag_plugin.generate")


def _encode_prompts(model: torch.nn.Module, prompts: Sequence[Prompt], truncate: bool) -> torch.Tensor:
    from ..tokenizer import tokenize

    device = next(model.parameters()).device
    tokens = tokenize([p.text for p in prompts], context_length=model.context_length, truncate=truncate)
    with torch.no_grad():
        emb = model.encode_text(tokens.to(device)).float()
    return emb / emb.norm(dim=-1, keepdim=True)


def load_guides(
    models: Union[ModelLike, Sequence[ModelLike], None],
    prompts: Sequence[Prompt],
    device: Optional[str] = None,
    truncate: bool = False,
) -> list[Guide]:
    """Load each model (names, paths or loaded models) and embed the prompts with it."""
    if models is None:
        models = resolve_default_model()
    items = list(models) if isinstance(models, list) else [models]
    if not items:
        raise ValueError("no model given; pass a name such as 'ViT-B/32' or 'mini', or a loaded model")
    guides = []
    for item in items:
        model = as_model(item, device)
        texts = _encode_prompts(model, prompts, truncate)
        weights = torch.tensor([p.weight for p in prompts], device=texts.device)
        stops = None
        if any(p.stop != float("-inf") for p in prompts):
            stops = torch.tensor([p.stop for p in prompts], device=texts.device)
        label = getattr(model, "name", "") or (item if isinstance(item, str) else type(model).__name__)
        guides.append(Guide(model, texts, weights, stops, name=str(label)))
    return guides


def _check_size(size: int, guides: Sequence[Guide]) -> None:
    resolutions = sorted({g.resolution for g in guides})
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(
            f"size {size!r} is not supported: choose an integer between {MIN_SIZE} and {MAX_SIZE} "
            f"(the model(s) see images resized to {', '.join(map(str, resolutions))} px; that is the natural size)"
        )


def _device_of(guides: Sequence[Guide]) -> torch.device:
    return next(guides[0].model.parameters()).device


def candidates_for(config: GenerateConfig, device: torch.device) -> int:
    """GMM candidates of ``config``: its own count, or :func:`~.init.auto_candidates` for ``device``."""
    if config.gmm_candidates is not None:
        return config.gmm_candidates
    per_step = config.effective_views() + config.copies + config.crops
    return auto_candidates(config.steps, per_step, torch.device(device).type)


def make_init(guides: Sequence[Guide], config: GenerateConfig, size: int, seed: int) -> torch.Tensor:
    """The starting image of one seed ``(1, 3, size, size)`` on the models' device."""
    device = _device_of(guides)
    generator = torch.Generator().manual_seed(seed)
    if config.init not in INITS:
        raise ValueError(f"init {config.init!r} is unknown; choose from {', '.join(INITS)}")
    if config.init == "noise":
        x = noise_init(size, generator)
    elif config.init == "gray":
        x = gray_init(size)
    elif config.init == "image":
        if not config.init_image:
            raise ValueError("init 'image' needs a picture: pass init_image=PATH (CLI: --init image --init-image PATH)")
        x = image_init(config.init_image, size)
    else:
        from .gmm import load_gmm

        gmm = load_gmm(config.gmm_path)

        def score(chunk: torch.Tensor) -> torch.Tensor:
            chunk = chunk.to(device)
            with encoder_autocast(config.precision, chunk.device):
                embeddings = [g.model.encode_pixels(chunk).float() for g in guides]
            return sum(
                prompt_loss(e, g.texts, g.weights, None, config.distance, len(chunk))
                for e, g in zip(embeddings, guides, strict=True)
            ).cpu()

        x = gmm_init(gmm, size, generator, score, candidates_for(config, device))
    return x.to(device)


def _prompt_first(prompt: Any, model: Any) -> tuple[Any, Any]:
    """Accept the older ``(model, prompt)`` order with a ``DeprecationWarning``."""
    if looks_like_model(prompt) and model is not None and not looks_like_model(model):
        warnings.warn("generate(model, prompt) is deprecated: the prompt comes first, "
                      "generate(prompt, model=...)", DeprecationWarning, stacklevel=3)
        return model, prompt
    return prompt, model


def generate_tensor(
    prompt: Union[str, Prompt, Sequence[Union[str, Prompt]]] = "",
    model: Union[ModelLike, Sequence[ModelLike], None] = None,
    *,
    seeds: Union[int, Sequence[int]] = 0,
    device: Optional[str] = None,
    progress: Optional[bool] = None,
    preset: PresetArg = AUTO,
    config: Optional[GenerateConfig] = None,
    **options: Any,
) -> GenerationResult:
    """Generate one image per seed; return the :class:`GenerationResult` (images ``(B, 3, S, S)``).

    Args:
        prompt: ``"a red barn:1 | blurry:-0.3"`` syntax, or a list of such strings / Prompts.
        model: a name (``"ViT-B/32"``, ``"mini"``, ``"hf-hub:..."``), a path, a model from
            :func:`clipag.load` (or its ``(model, preprocess)`` pair), or a list of them (an
            ensemble: losses are summed). ``None`` picks :func:`resolve_default_model`. Models
            given by name are loaded once per (name, device) and kept (:func:`clear_model_cache`).
        seeds: one seed or a list (a batch, optimized together, each independent of the others).
        device: where to load models given by name (default: cuda, mps, then cpu).
        progress: ``True`` a progress bar, ``False`` silent, ``None`` a bar on a terminal and a
            log line every 25 steps elsewhere.
        preset: ``"auto"`` (the model's own preset, see :mod:`.presets`), ``"none"`` (the global
            defaults), a preset name, or a :class:`~.presets.GenerationPreset`. Ignored when
            ``config`` is given (a config is complete).
        config, options: a whole :class:`GenerateConfig`, and/or its fields as keywords
            (``steps=50``, ``param="multires"``, ...); keywords win over the preset.

    Returns:
        The :class:`GenerationResult`; its ``config`` is the resolved config and ``preset`` the
        name of the preset applied (None when none was).
    """
    run = _setup(prompt, model, seeds, device, preset, config, options)
    # a bar on a terminal, an INFO log line every 25 steps elsewhere
    with StepProgress(run.config.steps, run.label, progress, log=logger) as bar:
        result = optimize(run.init, run.guides, run.config, run.generators,
                          callback=lambda step, pixels, loss: bar.update(loss=float(loss.mean())))
    return run.finish(result)


@dataclasses.dataclass
class _Run:
    """A generation ready to start: loaded guides, resolved settings, start images, view streams."""

    guides: list
    config: GenerateConfig
    init: torch.Tensor
    generators: list
    label: str
    seeds: list
    prompts: list
    preset: Optional[str]

    def finish(self, result: GenerationResult) -> GenerationResult:
        result.seeds, result.models, result.prompts = self.seeds, [g.name for g in self.guides], self.prompts
        result.preset = self.preset
        return result


def _setup(prompt: Any, model: Any, seeds: Union[int, Sequence[int]], device: Optional[str], preset: PresetArg,
           config: Optional[GenerateConfig], options: dict) -> _Run:
    """Everything a generation does before its first step (shared by the plain and streaming forms)."""
    prompt, model = _prompt_first(prompt, model)
    prompts = parse_prompts(prompt)
    if not any(p.weight > 0 for p in prompts):
        raise ValueError("at least one prompt needs a positive weight (negative prompts only push away)")
    seed_list = [seeds] if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds is empty; pass an int or a non-empty list of ints")
    if model is None:
        model, reason = default_model_choice()
        logger.info("using model %r: %s", model, reason)
    items = list(model) if isinstance(model, list) else [model]
    for item in items:
        note = vocabulary_note(" ".join(p.text for p in prompts), item)
        if note:
            logger.warning("%s", note)
    cfg, chosen = resolve_config(items, NONE if config is not None else preset, options, base=config)
    if chosen is not None:
        given = f"; given, and winning: {', '.join(f'{k}={v}' for k, v in options.items())}" if options else ""
        logger.info("preset %s%s", chosen.summary(), given)
    guides = load_guides(model, prompts, device, cfg.truncate)
    guides, cfg = prepare_guides(guides, cfg, _device_of(guides))  # the run's weights, never the caller's model
    size = cfg.size if cfg.size is not None else guides[0].resolution  # 0 is an error, not "the model's"
    _check_size(size, guides)
    if cfg.init == "gmm" and cfg.gmm_candidates is None:
        dev = _device_of(guides)
        cfg = dataclasses.replace(cfg, gmm_candidates=candidates_for(cfg, dev))
        logger.info("init: best of %d GMM candidates (chosen for %s; set gmm_candidates / --candidates to change)",
                    cfg.gmm_candidates, dev.type)
    if cfg.param == "multires":  # the JSON of resolved settings names the levels actually used
        cfg = dataclasses.replace(cfg, levels=check_levels(cfg.levels or default_levels(size), size))
    init = torch.cat([make_init(guides, cfg, size, s) for s in seed_list])
    # views get their own stream so that changing the init (or the number of candidates) keeps them
    generators = [torch.Generator().manual_seed(s + 0x5EED) for s in seed_list]
    text = " | ".join(p.text for p in prompts)
    label = f"{', '.join(g.name for g in guides)} \"{text if len(text) <= 40 else text[:37] + '...'}\""
    return _Run(guides, cfg, init, generators, label, seed_list, prompts, chosen.name if chosen is not None else None)


def generate_iter(
    prompt: Union[str, Prompt, Sequence[Union[str, Prompt]]],
    model: Union[ModelLike, Sequence[ModelLike], None] = None,
    *,
    every: int = 10,
    seeds: Union[int, Sequence[int]] = 0,
    device: Optional[str] = None,
    preset: PresetArg = AUTO,
    config: Optional[GenerateConfig] = None,
    **options: Any,
) -> Iterator[Union[GenerationFrame, GenerationResult]]:
    """Generate while watching: yield a :class:`~.loop.GenerationFrame` every ``every`` steps, then
    the :class:`GenerationResult`.

    Each frame has ``step``, ``total``, ``loss`` and ``images`` (the current images, CPU fp32),
    and ``result``, whose ``images`` are the best so far. Closing the iterator (``.close()``, or
    leaving a ``for`` loop early) stops the run; keep the last frame's ``result`` for its best
    images. Settings resolve as in :func:`generate_tensor`.

    Args:
        prompt: as :func:`generate_tensor`.
        model: as :func:`generate_tensor`.
        every: steps between frames (the last step always gives one).
        seeds, device, preset, config, options: as :func:`generate_tensor`.

    Returns:
        An iterator of frames ending with the result.

    Example::

        for item in clipag.generate_iter("a red circle on the left, blue background", "mini", every=25):
            if isinstance(item, clipag.GenerationResult):
                item.to_pil()[0].save("circle.png")
            else:
                print(item.step, float(item.loss.mean()))
    """
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every={every!r}: frames come every K steps; pass an integer K >= 1")
    run = _setup(prompt, model, seeds, device, preset, config, options)
    steps = optimize_steps(run.init, run.guides, run.config, run.generators, every=every)
    try:
        while True:
            try:
                frame = next(steps)
            except StopIteration as done:
                yield run.finish(done.value)
                return
            if frame.images is not None:
                run.finish(frame.result)
                yield frame
    finally:
        steps.close()


def generate(
    prompt: Union[str, Prompt, Sequence[Union[str, Prompt]]],
    model: Union[ModelLike, Sequence[ModelLike], None] = None,
    **options: Any,
):
    """Text -> ``PIL.Image`` with a robust CLIP (a list of images when ``seeds`` is a list).

    Args:
        prompt: the text (``"a red barn:1 | blurry:-0.3"`` syntax for several weighted prompts).
        model: a registry name, ``hf-hub:`` name, path or loaded model; ``None`` picks the
            default (CLIPAG ViT-B/32 when available, else ``mini``).
        options: ``seeds``, ``device``, ``progress``, ``preset`` and any :class:`GenerateConfig`
            field (see :func:`generate_tensor`); the model's preset fills in the rest.

    Returns:
        A ``PIL.Image``, or a list of them when ``seeds`` is a list.

    Example::

        import clipag
        image = clipag.generate("a watercolor of a fox", model="ViT-B/32")
        image.save("fox.png")
    """
    prompt, model = _prompt_first(prompt, model)
    seeds = options.get("seeds", 0)
    images = generate_tensor(prompt, model, **options).to_pil()
    return images if not isinstance(seeds, int) else images[0]
