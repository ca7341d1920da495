"""VGG19 ImageNet features for CLIPStyler's content loss, with weights from the Hugging Face Hub.

The weights are timm's copy of torchvision's VGG19 (``timm/vgg19.tv_in1k``, ``model.safetensors``);
:func:`convert_timm_vgg_features` maps them onto torchvision's ``vgg19().features`` layout as a
pure function (dict in, dict out, key counts and shapes checked). Only the ``features.*``
tensors are read from the file; the classifier (about 80% of the file) is never loaded.

Offline, a missing file raises :class:`clipag_plugin.hub.OfflineError` naming the repo, the
file and the command that fetches it ahead of time (``python -m clipag_plugin.vgg``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .hub import fetch_hub_file

__all__ = [
    "VggWeights",
    "VGG_WEIGHTS",
    "VGG19_CONFIG",
    "CONTENT_LAYERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "vgg19_features",
    "fetch_vgg_weights",
    "read_vgg_features_state",
    "convert_timm_vgg_features",
    "load_vgg19_features",
    "random_vgg19_features",
    "vgg_features",
    "content_loss",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's configuration "E": channels of each 3x3 conv, "M" = 2x2 max pool.
VGG19_CONFIG: tuple[Union[int, str], ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)

# Index in ``features`` of the module whose output CLIPStyler reads. The reference stores the
# conv4_2 output (index 21), which the next in-place ReLU then overwrites, and the relu5_2 output
# (index 31); both are therefore post-ReLU activations: relu4_2 (22) and relu5_2 (31).
CONTENT_LAYERS: dict[str, int] = {"conv4_2": 22, "conv5_2": 31}

# Keys of the classifier in timm's VGG (and in torchvision's), ignored by the conversion.
_HEAD_PREFIXES = ("pre_logits.", "head.", "classifier.")


@dataclass(frozen=True)
class VggWeights:
    """A VGG checkpoint on the Hugging Face Hub whose ``features.*`` match torchvision's layout."""

    name: str
    repo_id: str
    filename: str
    revision: str
    config: tuple[Union[int, str], ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    license: str
    description: str
    sha256: Optional[str] = None


VGG_WEIGHTS: dict[str, VggWeights] = {
    "vgg19": VggWeights(
        name="vgg19",
        repo_id="timm/vgg19.tv_in1k",
        filename="model.safetensors",
        revision="main",
        config=VGG19_CONFIG,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        license="BSD-3-Clause (torchvision weights)",
        description="torchvision's ImageNet VGG19, as re-hosted by timm; CLIPStyler's content network",
    ),
}


def vgg19_features(width_divisor: int = 1, config: Sequence[Union[int, str]] = VGG19_CONFIG) -> nn.Sequential:
    """torchvision's ``vgg19().features`` layout (same module indices), channels divided by ``width_divisor``.

    ``width_divisor=1`` is the real network; larger values give small stand-ins for tests.
    """
    if width_divisor < 1:
        raise ValueError(f"width_divisor={width_divisor}: expected an integer >= 1")
    layers: list[nn.Module] = []
    channels = 3
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        width = max(1, int(item) // width_divisor)
        layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
        channels = width
    return nn.Sequential(*layers)


def _entry(name: str) -> VggWeights:
    try:
        return VGG_WEIGHTS[name]
    except KeyError:
        raise KeyError(f"unknown VGG weights {name!r}; valid names: {', '.join(VGG_WEIGHTS)}") from None


def fetch_command(entry: VggWeights) -> str:
    """The shell command that puts ``entry``'s file into the Hugging Face cache."""
    return f"`python -m clipag_plugin.vgg` (or `hf download {entry.repo_id} {entry.filename}`)"


def fetch_vgg_weights(name: str = "vgg19", cache_dir: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Path of the cached weights file (downloaded once through ``huggingface_hub``).

    Offline (``HF_HUB_OFFLINE``/``CLIPAG_OFFLINE``) or without network, a file that is not
    cached raises :class:`~clipag_plugin.hub.OfflineError` saying how to fetch it.
    """
    entry = _entry(name)
    return fetch_hub_file(
        entry.repo_id, entry.filename, revision=entry.revision, cache_dir=cache_dir,
        what=f"VGG19 weights ({entry.name}, CLIPStyler's content loss)", fetch_hint=fetch_command(entry),
    )


def read_vgg_features_state(path: Union[str, os.PathLike]) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a VGG safetensors file (the classifier stays on disk).

    Raises ``ValueError`` when the file holds keys that are neither features nor classifier
    (not a VGG checkpoint).
    """
    from safetensors import SafetensorError, safe_open

    from .checkpoint import CorruptCheckpointError

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
            strange = [k for k in keys if not k.startswith(("features.", *_HEAD_PREFIXES))]
            if strange:
                raise ValueError(
                    f"{path}: not a VGG checkpoint in timm/torchvision layout; unexpected keys {strange[:4]}"
                )
            return {k: handle.get_tensor(k) for k in keys if k.startswith("features.")}
    except (SafetensorError, OSError) as err:
        raise CorruptCheckpointError(f"{path}: not a readable safetensors file ({err})") from err


def convert_timm_vgg_features(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size]
) -> dict[str, torch.Tensor]:
    """timm (or torchvision) VGG state dict -> state dict of torchvision's ``vgg19().features``.

    ``features.<i>.<weight|bias>`` becomes ``<i>.<weight|bias>``; classifier keys are dropped.
    ``expected`` maps every target key to its shape (``features.state_dict()``); a missing,
    extra or misshapen tensor raises ``ValueError`` naming it.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.startswith(_HEAD_PREFIXES):
            continue
        if not key.startswith("features."):
            unknown.append(key)
            continue
        out[key[len("features.") :]] = value
    if unknown:
        raise ValueError(f"not a VGG state dict: keys outside features/classifier, e.g. {unknown[:4]}")
    missing = sorted(set(expected) - set(out), key=_layer_order)
    extra = sorted(set(out) - set(expected), key=_layer_order)
    if missing or extra:
        raise ValueError(
            f"VGG features do not match torchvision's vgg19().features: {len(out)} tensors, expected "
            f"{len(expected)}; missing {missing[:4]}, unexpected {extra[:4]} (is it VGG19 without batch norm?)"
        )
    for key, shape in expected.items():
        if tuple(out[key].shape) != tuple(shape):
            raise ValueError(f"VGG tensor {key!r} has shape {tuple(out[key].shape)}, expected {tuple(shape)}")
    return {k: out[k].detach().float().contiguous() for k in expected}


def _layer_order(key: str) -> tuple[int, str]:
    index, _, name = key.partition(".")
    return (int(index) if index.isdigit() else -1, name)


def _frozen(features: nn.Sequential, device: Union[str, torch.device]) -> nn.Sequential:
    features = features.to(device).eval()
    for parameter in features.parameters():
        parameter.requires_grad_(False)
    return features


def load_vgg19_features(
    device: Union[str, torch.device] = "cpu", cache_dir: Optional[Union[str, os.PathLike]] = None
) -> nn.Sequential:
    """The pretrained VGG19 ``features`` (frozen, eval mode) on ``device``; weights fetched once and cached."""
    features = vgg19_features()
    expected = {k: v.shape for k, v in features.state_dict().items()}
    state = convert_timm_vgg_features(read_vgg_features_state(fetch_vgg_weights("vgg19", cache_dir)), expected)
    features.load_state_dict(state, strict=True)
    features.is_random_stand_in = False
    return _frozen(features, device)


def random_vgg19_features(
    width_divisor: int = 8, seed: int = 0, device: Union[str, torch.device] = "cpu"
) -> nn.Sequential:
    """A RANDOM, untrained VGG19-layout stand-in (``is_random_stand_in = True``): not a perceptual loss.

    For tests and for offline demos that opt in explicitly; same layer indices as the real one.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        features = vgg19_features(width_divisor)
        for module in features:
            if isinstance(module, nn.Conv2d):  # torchvision's VGG init: activations keep their scale
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
    finally:
        torch.random.set_rng_state(generator_state)
    features.is_random_stand_in = True
    return _frozen(features, device)


def vgg_features(
    features: nn.Sequential, image01: torch.Tensor, layers: Mapping[str, int] = CONTENT_LAYERS
) -> dict[str, torch.Tensor]:
    """Activations at ``layers`` (name -> module index) of ImageNet-normalized [0, 1] images."""
    mean = torch.tensor(IMAGENET_MEAN, device=image01.device, dtype=image01.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image01.device, dtype=image01.dtype).view(1, 3, 1, 1)
    x = (image01 - mean) / std
    wanted = {index: name for name, index in layers.items()}
    last = max(wanted)
    if last >= len(features):
        raise ValueError(f"layer index {last} is beyond this VGG's {len(features)} modules")
    out: dict[str, torch.Tensor] = {}
    for index, module in enumerate(features):
        x = module(x)
        if index in wanted:
            out[wanted[index]] = x.clone() if isinstance(module, nn.Conv2d) else x
        if index == last:
            break
    return out


def content_loss(target: Mapping[str, torch.Tensor], content: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the mean squared feature difference (CLIPStyler's content loss)."""
    if set(target) != set(content):
        raise ValueError(f"feature layers differ: {sorted(target)} vs {sorted(content)}")
    return sum(torch.mean((target[k] - content[k]) ** 2) for k in sorted(target))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m clipag_plugin.vgg``: fetch the VGG19 weights into the Hugging Face cache."""
    path = fetch_vgg_weights("vgg19")
    print(f"VGG19 weights cached at {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
