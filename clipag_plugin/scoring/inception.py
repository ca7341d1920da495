"""The Inception-v3 that FID, KID and IS are computed with: its weights, fetched once and verified.

The field's numbers use one network: the TensorFlow Inception-v3 of 2015-12-05 (``pytorch-fid``,
``torch-fidelity`` and ``torchmetrics`` all load the same port). Its weights come from a local file
or from clipag's cache (``clipag download inception`` fetches them once, checked against the sha256
prefix their file name carries), never silently from the network during a score. torch-fidelity
reads weight files with ``torch.load(weights_only=False)``; :func:`inception_extractor` makes that
read weights-only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import torch

__all__ = ["InceptionWeights", "INCEPTION", "fetch_inception", "inception_path", "inception_extractor", "MISSING"]

MISSING = ("FID, KID and IS need the [score] extra: pip install 'clipag-plugin[score]' (torchmetrics and "
           "torch-fidelity)")


@dataclass(frozen=True)
class InceptionWeights:
    """Where the Inception weights live and how a copy is checked."""

    name: str
    url: str
    filename: str
    sha256_prefix: str  # the hash prefix in the file name (torch.hub's convention)
    license: str


INCEPTION = InceptionWeights(
    name="inception",
    url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
    filename="weights-inception-2015-12-05-6726825d.pth",
    sha256_prefix="6726825d",
    license="Apache-2.0 (TensorFlow models)",
)
FETCH_HINT = "Run `clipag download inception` on a connected machine (once), or pass --inception FILE."


def _check_prefix(path: Path, entry: InceptionWeights) -> Path:
    from ..hub import ChecksumError

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(entry.sha256_prefix):
        raise ChecksumError(f"{path}: sha256 {digest.hexdigest()[:16]}... does not start with {entry.sha256_prefix} "
                            f"(the Inception weights' digest); delete the file and fetch it again. {FETCH_HINT}")
    return path


def fetch_inception(download_root: Optional[Union[str, os.PathLike]] = None,
                    entry: Optional[InceptionWeights] = None) -> Path:
    """The Inception weights in the cache, downloaded once (resumable) and checked.

    Args:
        download_root: cache root (default ``$CLIPAG_CACHE`` or ``~/.cache/clipag``).
        entry: which weights (default :data:`INCEPTION`).

    Returns:
        The file's path.
    """
    from .. import hub

    entry = entry or INCEPTION
    target = hub.cache_root(download_root) / "inception" / entry.filename
    if not target.is_file():
        hub.fetch_verified(entry.url, target, what="Inception weights", fetch_hint=FETCH_HINT)
    return _check_prefix(target, entry)


def inception_path(path: Optional[Union[str, os.PathLike]] = None,
                   download_root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """A local weights file (``path``, checked) or the cached one; offline without either, an
    :class:`~clipag_plugin.hub.OfflineError` naming the file and ``clipag download inception``.

    Args:
        path: a weights file of one's own, or None for the cache.
        download_root: cache root.

    Returns:
        The file's path.
    """
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"Inception weights {file} do not exist. {FETCH_HINT}")
        return file
    return fetch_inception(download_root)


@contextlib.contextmanager
def _weights_only_load() -> Iterator[None]:
    """``torch.load`` reads weights only, whatever its caller asks (torch-fidelity asks for pickles)."""
    real = torch.load

    def load(f, *args, **kwargs):
        kwargs["weights_only"] = True
        return real(f, *args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = real


def inception_extractor(features: Sequence[str], path: Union[str, os.PathLike]) -> torch.nn.Module:
    """torchmetrics' Inception-v3 feature extractor (``"2048"``, ``"logits_unbiased"``, ...) from ``path``.

    Args:
        features: the outputs wanted, in torch-fidelity's names.
        path: the weights file (:func:`inception_path`).

    Returns:
        The module, in eval mode, taking uint8 images ``(B, 3, H, W)``.
    """
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as err:
        raise ImportError(MISSING) from err
    with _weights_only_load():
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(f) for f in features],
                                  feature_extractor_weights_path=str(path))
