"""The one table of model names: a frozen dataclass per weight, no string conventions.

Three kinds of source exist:

* :class:`HubFiles` - an open_clip-layout repository on the Hugging Face Hub
  (``open_clip_config.json`` + a weights file), fetched through ``huggingface_hub``;
* :class:`UrlFile` - one file on a plain web host (the official CLIPAG release on Zenodo),
  streamed into the cache, verified, then converted once to safetensors;
* :class:`PackagedFiles` - weights shipped inside this package (the mini world).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Optional, Union

__all__ = [
    "HubFiles",
    "UrlFile",
    "PackagedFiles",
    "ModelEntry",
    "REGISTRY",
    "get_entry",
    "model_names",
]


@dataclass(frozen=True)
class HubFiles:
    """An open_clip model stored on the Hugging Face Hub."""

    repo_id: str
    weights_filename: str = "open_clip_model.safetensors"
    config_filename: str = "open_clip_config.json"
    revision: str = "main"


@dataclass(frozen=True)
class UrlFile:
    """A single checkpoint file on a plain web host, verified by size and (when known) sha256."""

    url: str
    filename: str
    size_bytes: int
    sha256: Optional[str] = None
    # open_clip architecture the checkpoint's state dict belongs to.
    architecture: str = "ViT-B-32"


@dataclass(frozen=True)
class PackagedFiles:
    """A model folder in open_clip layout shipped inside ``clipag_plugin`` (see ``mini/``)."""

    folder: str
    weights_sha256: Optional[str] = None


Source = Union[HubFiles, UrlFile, PackagedFiles]


@dataclass(frozen=True)
class ModelEntry:
    """Everything known about one loadable model name."""

    name: str
    source: Source
    architecture: str
    robust: bool
    threat_model: str
    finetuned_from: str
    license: str
    size_bytes: Optional[int]
    description: str
    # name of its generation preset (clipag_plugin.synthesis.presets.PRESETS): the settings
    # `clipag generate` uses for this model unless told otherwise. A vanilla baseline names the
    # preset of the robust model it is compared with, so a comparison isolates the gradients.
    preset: str = "notebook"


_ZENODO = "https://zenodo.org/records/10446026/files/CLIPAG_ViTB32.pt?download=1"


def _chs20(name: str, repo: str, arch: str, threat: str, base: str, size: Optional[int]) -> ModelEntry:
    return ModelEntry(
        name=name,
        source=HubFiles(repo_id=f"chs20/{repo}", weights_filename="open_clip_pytorch_model.bin"),
        architecture=arch,
        robust=True,
        threat_model=threat,
        finetuned_from=base,
        license="MIT",
        size_bytes=size,
        description=f"{threat.split(' ')[0]}-robust CLIP from Schlarmann et al. (ICML 2024), {arch}",
    )


_ENTRIES = (
    ModelEntry(
        name="ViT-B/32",
        source=UrlFile(url=_ZENODO, filename="CLIPAG_ViTB32.pt", size_bytes=1_310_567_621, sha256=None),
        architecture="ViT-B-32",
        robust=True,
        threat_model="L2 eps=1.5 at 224x224 (CLIPAG)",
        finetuned_from="OpenAI ViT-B/32",
        license="see Zenodo record 10446026",
        size_bytes=1_310_567_621,
        description="Official CLIPAG ViT-B/32 (Ganz & Elad, WACV 2024)",
    ),
    _chs20("fare2-ViT-L/14", "fare2-clip", "ViT-L-14", "Linf eps=2/255 (FARE)", "OpenAI ViT-L/14", 1_710_000_000),
    _chs20("fare4-ViT-L/14", "fare4-clip", "ViT-L-14", "Linf eps=4/255 (FARE)", "OpenAI ViT-L/14", 1_710_000_000),
    _chs20("tecoa2-ViT-L/14", "tecoa2-clip", "ViT-L-14", "Linf eps=2/255 (TeCoA)", "OpenAI ViT-L/14", 1_710_000_000),
    _chs20("tecoa4-ViT-L/14", "tecoa4-clip", "ViT-L-14", "Linf eps=4/255 (TeCoA)", "OpenAI ViT-L/14", 1_710_000_000),
    *(
        _chs20(
            f"{method.lower()}4-{label}",
            f"{method}4-{repo_tail}",
            arch,
            f"Linf eps=4/255 ({method})",
            f"LAION-2B {arch}",
            size,
        )
        for method in ("FARE", "TeCoA")
        for label, repo_tail, arch, size in (
            ("ViT-B/32-laion2b", "ViT-B-32-laion2B-s34B-b79K", "ViT-B-32", 605_000_000),
            ("ViT-B/16-laion2b", "ViT-B-16-laion2B-s34B-b88K", "ViT-B-16", 599_000_000),
            ("convnext_base_w-laion2b", "convnext_base_w-laion2B-s13B-b82K-augreg", "convnext_base_w", 720_000_000),
        )
    ),
    ModelEntry(
        name="openai-ViT-B/32",
        source=HubFiles(
            repo_id="timm/vit_base_patch32_clip_224.openai", weights_filename="open_clip_pytorch_model.bin"
        ),
        architecture="ViT-B-32-quickgelu",
        robust=False,
        threat_model="none (vanilla, NOT robust)",
        finetuned_from="-",
        license="MIT",
        size_bytes=605_000_000,
        description="Vanilla OpenAI ViT-B/32, the baseline CLIPAG was fine-tuned from",
    ),
    ModelEntry(
        name="laion2b-ViT-B/32",
        source=HubFiles(
            repo_id="laion/CLIP-ViT-B-32-laion2B-s34B-b79K", weights_filename="open_clip_pytorch_model.bin"
        ),
        architecture="ViT-B-32",
        robust=False,
        threat_model="none (vanilla, NOT robust)",
        finetuned_from="-",
        license="MIT",
        size_bytes=605_000_000,
        description="Vanilla LAION-2B ViT-B/32, the baseline of the FARE/TeCoA B/32 models",
    ),
    ModelEntry(
        name="mini",
        source=PackagedFiles(
            folder="mini", weights_sha256="83a60413deb8372f6961a0ec05dca6018ecf330e5aa2a7e40fd61192d2c54dc5"
        ),
        architecture="mini-RN (reads the 64 px world at 96 px)",
        robust=True,
        threat_model="L2 (mini world, see docs/mini-world.md)",
        finetuned_from="mini-vanilla",
        license="MIT",
        size_bytes=5_905_402,
        description="Tiny CLIPAG-fine-tuned CLIP of the mini world, shipped in the package",
        preset="mini",
    ),
    ModelEntry(
        name="mini-vanilla",
        source=PackagedFiles(
            folder="mini-vanilla", weights_sha256="fe38af3bfdb68a165077dc7b875c3617d509760bd1f71cdedb4db293c7e60822"
        ),
        architecture="mini-RN (reads the 64 px world at 96 px)",
        robust=False,
        threat_model="none (vanilla, NOT robust)",
        finetuned_from="-",
        license="MIT",
        size_bytes=5_905_402,
        description="Tiny vanilla CLIP of the mini world, shipped in the package",
        preset="mini",
    ),
)

REGISTRY: dict[str, ModelEntry] = {entry.name: entry for entry in _ENTRIES}


def model_names() -> list[str]:
    """All registry names, in table order.

    Returns:
        Every name :func:`clipag.load` accepts besides ``hf-hub:`` repos and paths.
    """
    return list(REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """Look a name up; an unknown one raises a ``KeyError`` listing the valid names.

    Args:
        name: a registry name such as ``"ViT-B/32"`` or ``"mini"``.

    Returns:
        The frozen :class:`ModelEntry`.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        pass
    hint = ""
    close = difflib.get_close_matches(name, REGISTRY, n=3)
    if close:
        hint += f" Did you mean {', '.join(map(repr, close))}?"
    if "/" in name and not name.startswith(("hf-hub:", "/", ".")) and name.count("/") == 1:
        hint += f" If {name!r} is a Hugging Face repository in open_clip layout, pass 'hf-hub:{name}'."
    raise KeyError(
        f"Unknown model {name!r}. Valid names: {', '.join(REGISTRY)}; or 'hf-hub:org/repo', "
        f"or a local path (safetensors file, open_clip checkpoint, or a folder in open_clip layout).{hint}"
    )
