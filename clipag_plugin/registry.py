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
    "is_commit_hash",
]

_HEX = set("0123456789abcdef")


def is_commit_hash(revision: str) -> bool:
    """Whether ``revision`` is a full 40-hex git commit hash (a pin), not a branch or tag.

    Args:
        revision: a Hugging Face revision.

    Returns:
        True for a full commit hash.
    """
    return len(revision) == 40 and set(revision) <= _HEX


@dataclass(frozen=True)
class HubFiles:
    """An open_clip model stored on the Hugging Face Hub.

    ``revision`` is a full commit hash wherever one is known (a pin: a later upload to the repo
    cannot change what users get); ``sha256`` is the weights file's digest as the Hub's LFS
    pointer records it, checked against the downloaded file.
    """

    repo_id: str
    weights_filename: str = "open_clip_model.safetensors"
    config_filename: str = "open_clip_config.json"
    revision: str = "main"
    sha256: Optional[str] = None

    @property
    def pinned(self) -> bool:
        """Whether ``revision`` is a commit hash."""
        return is_commit_hash(self.revision)


@dataclass(frozen=True)
class UrlFile:
    """A single checkpoint file on a plain web host, verified by size and the digests known.

    ``md5`` is what hosts such as Zenodo publish beside a file; ``sha256`` is recorded from a
    verified download. Either, both or neither may be known; the size always is.
    """

    url: str
    filename: str
    size_bytes: int
    sha256: Optional[str] = None
    # open_clip architecture the checkpoint's state dict belongs to.
    architecture: str = "ViT-B-32"
    md5: Optional[str] = None


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

    @property
    def verification(self) -> str:
        """How the weights behind this name are checked, in words (shown by ``clipag models``)."""
        src = self.source
        if isinstance(src, PackagedFiles):
            return "sha256 (shipped)" if src.weights_sha256 else "shipped"
        if isinstance(src, UrlFile):
            digests = [name for name, value in (("sha256", src.sha256), ("md5", src.md5)) if value]
            return " + ".join([*digests, "size"]) if digests else "size only"
        parts = ["sha256"] if src.sha256 else []
        parts.append(f"commit {src.revision[:10]}" if src.pinned else "unpinned (main)")
        return " + ".join(parts)


_ZENODO = "https://zenodo.org/records/10446026/files/CLIPAG_ViTB32.pt?download=1"


def _chs20(
    name: str, repo: str, arch: str, threat: str, base: str, size: Optional[int],
    revision: str = "main", sha256: Optional[str] = None, weights: str = "open_clip_pytorch_model.bin",
) -> ModelEntry:
    return ModelEntry(
        name=name,
        source=HubFiles(repo_id=f"chs20/{repo}", weights_filename=weights, revision=revision, sha256=sha256),
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
    # Pins and digests as the repositories' pages list them (commit history, LFS pointer details).
    _chs20("fare2-ViT-L/14", "fare2-clip", "ViT-L-14", "Linf eps=2/255 (FARE)", "OpenAI ViT-L/14", 1_710_000_000,
           revision="6bc37e8efa55395e2f2a413e7b140dc2808032cb",
           sha256="9fb1f8759c89905809da8ce761a4b90e1c22beaaea7c68f3917647eeb0a230a7"),
    _chs20("fare4-ViT-L/14", "fare4-clip", "ViT-L-14", "Linf eps=4/255 (FARE)", "OpenAI ViT-L/14", 1_710_000_000,
           revision="74d66522302f987ec9cfe61d119c24219bb04462"),
    _chs20("tecoa2-ViT-L/14", "tecoa2-clip", "ViT-L-14", "Linf eps=2/255 (TeCoA)", "OpenAI ViT-L/14", 1_710_000_000,
           revision="8e043fb9e0c9640f21a7a6e3527bce743d144a92"),
    _chs20("tecoa4-ViT-L/14", "tecoa4-clip", "ViT-L-14", "Linf eps=4/255 (TeCoA)", "OpenAI ViT-L/14", 1_710_000_000,
           revision="d9d201ce0c2bffd1be726a92e0e520664c45aedf"),
    # The LAION-2B repositories hold open_clip's safetensors export beside the pickle; the
    # safetensors file is read (the .bin only if it is missing). Their commit hashes are not
    # published in full where they could be read, so they follow main; the digest, where known,
    # still catches a changed file.
    *(
        _chs20(
            f"{method.lower()}4-{label}",
            f"{method}4-{repo_tail}",
            arch,
            f"Linf eps=4/255 ({method})",
            f"LAION-2B {arch}",
            size,
            sha256=digest,
            weights="open_clip_model.safetensors",
        )
        for method, label, repo_tail, arch, size, digest in (
            ("FARE", "ViT-B/32-laion2b", "ViT-B-32-laion2B-s34B-b79K", "ViT-B-32", 605_000_000, None),
            ("FARE", "ViT-B/16-laion2b", "ViT-B-16-laion2B-s34B-b88K", "ViT-B-16", 599_000_000, None),
            ("FARE", "convnext_base_w-laion2b", "convnext_base_w-laion2B-s13B-b82K-augreg", "convnext_base_w",
             720_000_000, None),
            ("TeCoA", "ViT-B/32-laion2b", "ViT-B-32-laion2B-s34B-b79K", "ViT-B-32", 605_000_000, None),
            ("TeCoA", "ViT-B/16-laion2b", "ViT-B-16-laion2B-s34B-b88K", "ViT-B-16", 599_000_000,
             "e687adcdbcc9694947b6bf590d768cf667eddf04a5800c511fa4ffded4c48510"),
            ("TeCoA", "convnext_base_w-laion2b", "convnext_base_w-laion2B-s13B-b82K-augreg", "convnext_base_w",
             720_000_000, None),
        )
    ),
    ModelEntry(
        name="openai-ViT-B/32",
        # the commit that added the open_clip files (config + safetensors) to timm's repository
        source=HubFiles(
            repo_id="timm/vit_base_patch32_clip_224.openai", weights_filename="open_clip_model.safetensors",
            revision="ab5b8ef490e86faa07d3523926b842c765de1de5",
        ),
        architecture="ViT-B-32-quickgelu",
        robust=False,
        threat_model="none (vanilla, NOT robust)",
        finetuned_from="-",
        license="MIT (OpenAI's weights)",
        size_bytes=605_000_000,
        description="Vanilla OpenAI ViT-B/32, the baseline CLIPAG was fine-tuned from",
    ),
    ModelEntry(
        name="laion2b-ViT-B/32",
        source=HubFiles(
            repo_id="laion/CLIP-ViT-B-32-laion2B-s34B-b79K", weights_filename="open_clip_pytorch_model.bin",
            sha256="1bd3c7172de5b207ceac554f5ab5266166f3b9baccc9af5989bc801016d080ad",
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
