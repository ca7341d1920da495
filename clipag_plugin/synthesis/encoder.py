"""The run's own view of a model: the image tower in the run's weight dtype and memory format.

``clipag.load`` returns fp16 weights on CUDA (as OpenAI's ``clip.load``). Generation decides the
dtype of the encoder's weights itself (:func:`~.accel.weight_dtype`): converted once to the
autocast dtype, or fp32 under autocast, or fp32 in an fp32 run. When that differs from what the
model holds, or when a convolutional tower should run channels-last on CUDA, the image tower is
copied once for the run and the copy converted; the text tower and everything else is shared,
not copied. The caller's model is never changed: its dtype, memory format and attributes are
the same after a generation as before.
"""

from __future__ import annotations

import copy
import itertools
import logging
from typing import Any

import torch
from torch import nn

__all__ = ["resolution_of", "image_tower", "wants_channels_last", "run_model", "describe_weights"]

logger = logging.getLogger("clipag_plugin.generate")


def resolution_of(model: Any) -> int:
    """The square input resolution a generation model reads.

    Args:
        model: a :class:`~clipag_plugin.model.ClipagModel`, the generation wrapper of an OpenAI
            or open_clip model, or anything with ``visual.input_resolution``.

    Returns:
        The side in pixels.
    """
    size = getattr(model, "input_resolution", None)
    if size is None:
        visual = getattr(model, "visual", None)
        size = getattr(visual, "input_resolution", None) or getattr(visual, "image_size", None)
    if size is None:
        raise ValueError(f"model {type(model).__name__} has no input resolution (visual.input_resolution or "
                         "visual.image_size); load it with clipag.load, OpenAI's clip.load or open_clip")
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def image_tower(model: nn.Module) -> nn.Module:
    """``model.visual`` when it holds the image encoder's weights, else the whole model."""
    visual = getattr(model, "visual", None)
    if isinstance(visual, nn.Module) and next(visual.parameters(), None) is not None:
        return visual
    return model


def wants_channels_last(model: nn.Module, device: torch.device) -> bool:
    """Whether the image tower is convolutional (beyond a ViT's patch embedding) and runs on CUDA."""
    if device.type != "cuda":
        return False
    return any(isinstance(m, nn.Conv2d) and m.kernel_size != m.stride for m in image_tower(model).modules())


def _tower_state(tower: nn.Module) -> tuple[set, bool]:
    dtypes = {p.dtype for p in tower.parameters() if p.is_floating_point()}
    convs = [m.weight for m in tower.modules() if isinstance(m, nn.Conv2d) and m.weight.dim() == 4]
    channels_last = bool(convs) and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    return dtypes, channels_last


def run_model(model: nn.Module, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """``model`` itself when its image tower already has ``dtype`` (and channels-last where wanted),
    else a copy whose image tower is converted; the rest of the copy shares the model's tensors.

    Args:
        model: the caller's model (never modified).
        dtype: the weight dtype of the run.
        device: where it runs (channels-last only on CUDA).

    Returns:
        The model to generate with.
    """
    tower = image_tower(model)
    channels_last = wants_channels_last(model, device)
    dtypes, is_channels_last = _tower_state(tower)
    # fp16 towers from clipag.load keep their norms in fp32 (as OpenAI's): that still counts as fp16
    if dtypes in ({dtype}, {dtype, torch.float32}) and (is_channels_last or not channels_last):
        return model
    own = {id(t) for t in itertools.chain(tower.parameters(), tower.buffers())}
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers()) if id(t) not in own}
    twin = copy.deepcopy(model, shared)  # tensors outside the image tower are shared, not copied
    twin_tower = image_tower(twin)
    twin_tower.to(dtype=dtype)
    if channels_last:
        twin_tower.to(memory_format=torch.channels_last)
    return twin


def describe_weights(model: nn.Module, used: nn.Module) -> str:
    """``"bf16 (a converted copy of the fp16 weights)"`` / ``"fp32 (as loaded)"``, for the log."""
    from .accel import dtype_name

    def names(m: nn.Module) -> str:
        return "+".join(sorted(dtype_name(d) for d in _tower_state(image_tower(m))[0])) or "none"

    if used is model:
        return f"{names(model)} (as loaded)"
    return f"{names(used)} (a converted copy of the {names(model)} weights; the loaded model is unchanged)"
