"""``generate``: text -> image by optimizing pixels against one or more robust CLIPs.

``generate(prompt, model=None, **options)`` returns a PIL image; :func:`generate_tensor` returns the
full :class:`~.loop.GenerationResult` (tensors, best loss, cosine, step, history, frames). The
settings come from the global defaults, the model's preset and the caller's options
(:mod:`.presets`); models given by name are loaded once and cached.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import torch

from ..guidance.losses import prompt_loss
from ..guidance.prompts import Prompt, parse_prompts
from .accel import encoder_autocast
from .encoder import resolution_of
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
DEFAULT_MODEL, FALLBACK_MODEL = "ViT-B/32", "mini"
_ZENODO_TIMEOUT_S = 3.0

ModelLike = Union[str, torch.nn.Module, tuple]
MODEL_CACHE_SIZE = 4  # loaded models kept per (name, device), least recently used dropped first
_MODEL_CACHE: "OrderedDict[tuple[str, str], torch.nn.Module]" = OrderedDict()
logger = logging.getLogger("clipag_plugin.generate")


def load_model(name: str, device: Optional[str] = None) -> torch.nn.Module:
    """``clipag.load(name, device)[0]``, kept in a small cache so repeated generations do not reload.

    Args:
        name: anything :func:`clipag.load` accepts (a registry name, ``hf-hub:...``, a path).
        device: as in :func:`clipag.load` (``None``: the best available).

    Returns:
        The loaded model (the same object for the same name and device while it stays cached;
        :data:`MODEL_CACHE_SIZE` are kept).
    """
    from ..loading import load

    key = (str(name), str(device or "auto"))
    if key in _MODEL_CACHE:
        _MODEL_CACHE.move_to_end(key)
        return _MODEL_CACHE[key]
    model = load(str(name), device=device)[0]
    _MODEL_CACHE[key] = model
    while len(_MODEL_CACHE) > MODEL_CACHE_SIZE:
        _MODEL_CACHE.popitem(last=False)
    return model


def clear_model_cache() -> None:
    """Forget the models :func:`load_model` kept (frees their memory once nothing else holds them)."""
    _MODEL_CACHE.clear()


def _vitb32_cached(download_root: Optional[str] = None) -> bool:
    from ..hub import cache_root
    from ..registry import get_entry

    src = get_entry(DEFAULT_MODEL).source
    folder = cache_root(download_root)
    converted = folder / (Path(src.filename).stem + ".safetensors")
    raw = folder / src.filename
    return converted.is_file() or (raw.is_file() and raw.stat().st_size == src.size_bytes)


def _reachable(url: str, timeout: float = _ZENODO_TIMEOUT_S) -> bool:
    import urllib.request

    try:
        request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "clipag-plugin"})
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except Exception:  # any failure (DNS, timeout, HTTP error) means "not reachable now"
        return False


def _mini_available() -> bool:
    from ..loading import CONFIG_NAME, _packaged_folder
    from ..registry import get_entry

    try:
        return (_packaged_folder(get_entry(FALLBACK_MODEL).source) / CONFIG_NAME).is_file()
    except KeyError:
        return False


def default_model_choice(download_root: Optional[str] = None, check_network: bool = True) -> tuple[str, str]:
    """``(name, reason)`` of the default model: CLIPAG ViT-B/32 when cached or downloadable, else ``mini``.

    Raises ``FileNotFoundError`` when neither is usable.

    Args:
        download_root: cache folder to look in.
        check_network: try reaching the Hub when nothing is cached (False: cache only).

    Returns:
        The model name and a sentence saying why it was chosen.
    """
    from ..hub import is_offline
    from ..registry import get_entry

    if _vitb32_cached(download_root):
        return DEFAULT_MODEL, "its weights are cached"
    offline = is_offline()
    if not offline and check_network and _reachable(get_entry(DEFAULT_MODEL).source.url):
        return DEFAULT_MODEL, "its weights are reachable (they will be downloaded once, 1.3 GB)"
    if offline:
        why = "offline mode is on"
    elif check_network:
        why = "its weights are not cached and Zenodo is not reachable"
    else:
        why = "its weights are not cached (network check skipped)"
    if _mini_available():
        return FALLBACK_MODEL, f"ViT-B/32 is unavailable ({why})"
    raise FileNotFoundError(
        f"No default model: ViT-B/32 is unavailable ({why}) and the embedded 'mini' model is not installed. "
        "Pass a model explicitly (--model NAME or a path), or run `clipag download ViT-B/32` on a connected machine."
    )


def resolve_default_model(download_root: Optional[str] = None, check_network: bool = True) -> str:
    """Name of the default model (see :func:`default_model_choice`).

    Args:
        download_root: cache folder to look in.
        check_network: try reaching the Hub when nothing is cached.

    Returns:
        The model name.
    """
    return default_model_choice(download_root, check_network)[0]


def _as_model(item: ModelLike, device: Optional[str]) -> torch.nn.Module:
    if isinstance(item, tuple):
        item = item[0]
    if isinstance(item, (str, os.PathLike)):
        return load_model(str(item), device)
    if hasattr(item, "encode_pixels") and hasattr(item, "encode_text"):
        return item
    if hasattr(item, "encode_image") and hasattr(item, "encode_text") and hasattr(item, "visual"):
        return _PixelEncoder(item)  # an OpenAI `clip` or open_clip model
    raise ValueError(
        f"model {type(item).__name__} has no encode_image/encode_text; pass a name, a path, or a model "
        "returned by clipag.load (or OpenAI's clip.load / open_clip)"
    )


class _PixelEncoder(torch.nn.Module):
    """Give an OpenAI ``clip`` / open_clip model the ``encode_pixels`` the loop uses (OpenAI mean/std).

    The input resolution is kept here, not written onto the model's image tower."""

    def __init__(self, model: torch.nn.Module) -> None:
        from ..preprocess import OPENAI_MEAN, OPENAI_STD

        super().__init__()
        self.model = model
        self.visual = model.visual
        self.input_resolution = resolution_of(model)
        self.context_length = int(getattr(model, "context_length", 77))
        self.name = type(model).__name__
        self.register_buffer("image_mean", torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(OPENAI_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, image01: torch.Tensor) -> torch.Tensor:
        return (image01 - self.image_mean.to(image01)) / self.image_std.to(image01)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        from ..model import input_dtype

        return self.model.encode_image(image.type(input_dtype(self.model.visual)))

    def encode_pixels(self, image01: torch.Tensor) -> torch.Tensor:
        size = self.input_resolution
        if image01.shape[-1] != size or image01.shape[-2] != size:
            image01 = torch.nn.functional.interpolate(
                image01, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        return self.encode_image(self.normalize(image01))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens[..., : self.context_length].long())


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
        model = _as_model(item, device)
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


def _looks_like_model(item: Any) -> bool:
    """A loaded model, a ``(model, preprocess)`` pair, a registry name or an existing path."""
    if isinstance(item, (torch.nn.Module, tuple)):
        return True
    if isinstance(item, str):
        from ..registry import REGISTRY

        if item in REGISTRY or item.startswith("hf-hub:"):
            return True
        try:
            return Path(item).exists()
        except OSError:  # a long prompt is not a valid file name
            return False
    return False


def _prompt_first(prompt: Any, model: Any) -> tuple[Any, Any]:
    """Accept the older ``(model, prompt)`` order with a ``DeprecationWarning``."""
    if _looks_like_model(prompt) and model is not None and not _looks_like_model(model):
        warnings.warn("generate(model, prompt) is deprecated: the prompt comes first, "
                      "generate(prompt, model=...)", DeprecationWarning, stacklevel=3)
        return model, prompt
    return prompt, model


class _Progress:
    """Generation steps through :class:`~clipag_plugin.progress.StepProgress` (a bar on a terminal,
    an INFO log line every 25 steps elsewhere), called as the loop's callback."""

    def __init__(self, progress: Optional[bool], total: int, label: str, every: int = 25) -> None:
        from ..progress import StepProgress

        self.steps = StepProgress(total, label, progress, every, log=logger)

    def __call__(self, step: int, pixels: torch.Tensor, loss: torch.Tensor) -> None:
        self.steps.update(loss=float(loss.mean()))

    def close(self) -> None:
        self.steps.close()


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
    bar = _Progress(progress, run.config.steps, run.label)
    try:
        result = optimize(run.init, run.guides, run.config, run.generators, callback=bar)
    finally:
        bar.close()
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


MINI_MODELS = ("mini", "mini-vanilla")


def vocabulary_note(text: str, model: Any) -> str:
    """For a mini model (by name or loaded), a sentence naming the words of ``text`` it never saw.

    Args:
        text: the prompt text(s).
        model: a model name or a loaded model.

    Returns:
        The sentence, or ``""`` for other models and for prompts in the mini world's words.
    """
    name = model if isinstance(model, str) else getattr(model[0] if isinstance(model, tuple) else model, "name", None)
    if name not in MINI_MODELS:
        return ""
    from ..mini import world

    unknown = world.unknown_words(text)
    if not unknown:
        return ""
    return (f"{name} knows only its world's words ({', '.join(sorted(world.vocabulary()))}); it has never seen "
            f"{', '.join(repr(w) for w in unknown)}, so expect a shape from its world, not the prompt.")


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
