"""Read taming/Lightning VQGAN checkpoints without unrestricted unpickling, convert them once.

A Lightning checkpoint pickles a few non-tensor objects beside the weights: the callback
classes used as dict keys (``ModelCheckpoint``), hyper-parameters as OmegaConf containers,
numpy scalars. ``torch.load(weights_only=True)`` refuses them. Instead of allowing the real
classes (whose ``__setstate__`` would run on file contents), each name on an explicit
allow-list is mapped to :class:`InertObject`, a stand-in that accepts and discards whatever
the pickle gives it. Every other global is refused before anything runs.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from ..checkpoint import CorruptCheckpointError, UnsafeCheckpointError, numpy_allow_list

__all__ = [
    "InertObject",
    "LIGHTNING_ALLOW_LIST",
    "read_lightning_checkpoint",
    "convert_vqgan_checkpoint",
    "DROPPED_PREFIXES",
]


class InertObject:
    """What an allow-listed non-tensor global becomes: built from anything, holding nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "InertObject":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "InertObject()"


# Fully qualified names that Lightning/taming checkpoints are known to pickle besides tensors.
LIGHTNING_ALLOW_LIST: tuple[str, ...] = (
    # callback classes used as keys of checkpoint["callbacks"] (Lightning < 1.5)
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.lr_monitor.LearningRateMonitor",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "pytorch_lightning.callbacks.progress.ProgressBar",
    # hyper-parameters saved as OmegaConf containers (Lightning >= 1.0 with an OmegaConf config)
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
    "omegaconf.nodes.ValueNode",
    "typing.Any",
    "builtins.list",
    "builtins.int",
    "builtins.float",
    "builtins.str",
    "argparse.Namespace",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "torch.torch_version.TorchVersion",
)

# Names whose pickled form fills a mapping afterwards (SETITEMS): they become a plain dict.
_DICT_NAMES: tuple[str, ...] = ("collections.defaultdict", "builtins.dict")


def _plain_dict(*args: Any, **kwargs: Any) -> dict:
    """Stand-in for ``defaultdict(factory)`` / ``dict``: an empty plain dict, the factory ignored."""
    return {}


# State-dict prefixes that generation never needs: the training loss (LPIPS VGG, discriminator).
DROPPED_PREFIXES: tuple[str, ...] = ("loss.",)


def read_lightning_checkpoint(path: str | os.PathLike, extra_allowed: Iterable[str] = ()) -> Any:
    """Load a ``.ckpt``/``.pt`` under ``weights_only=True`` with the inert allow-list.

    ``extra_allowed`` adds fully qualified names (they too become :class:`InertObject`).
    Raises :class:`~clipag_plugin.checkpoint.UnsafeCheckpointError` naming any other global
    (nothing from the file ran) and ``CorruptCheckpointError`` for unreadable files.

    Args:
        path: the checkpoint file.
        extra_allowed: further fully qualified names to accept (kept inert).

    Returns:
        The unpickled checkpoint, with allowed objects replaced by inert stand-ins.
    """
    path = Path(path)
    names = (*LIGHTNING_ALLOW_LIST, *extra_allowed)
    allowed: list[Any] = [(InertObject, name) for name in names]
    allowed += [(_plain_dict, name) for name in _DICT_NAMES]
    allowed += numpy_allow_list()
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [repr(err)]
        message = next((line for line in lines if "GLOBAL" in line or "global" in line.split(" ")[0:3]
                        or "Unsupported" in line or "unrecognized" in line or "Can only" in line), lines[0])
        if any(s in str(err) for s in ("Unsupported global", "GLOBAL", "unrecognized function", "Can only")):
            raise UnsafeCheckpointError(
                f"{path}: refused to load; the pickle asks for something outside the allow-list (tensors, "
                f"containers, numpy scalars and {len(LIGHTNING_ALLOW_LIST) + len(_DICT_NAMES)} known Lightning/OmegaConf names). "
                f"Nothing from it was executed. Details: {message}. If this is a genuine Lightning checkpoint "
                f"whose extra class is harmless, pass its full name in extra_allowed= (it is kept inert)."
            ) from err
        raise CorruptCheckpointError(f"{path}: not a readable checkpoint ({message})") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise CorruptCheckpointError(
            f"{path}: truncated or corrupt checkpoint ({str(err).splitlines()[0] if str(err) else err!r}). "
            f"Delete it and download again."
        ) from err


def convert_vqgan_checkpoint(checkpoint: Any) -> dict[str, torch.Tensor]:
    """Lightning checkpoint (or bare state dict) -> the ``VQModel`` tensors, loss weights dropped.

    Tensors come back as contiguous owned copies (safetensors needs them); the count of kept
    plus dropped keys is checked against the input.

    Args:
        checkpoint: what :func:`read_lightning_checkpoint` returned, or a state dict.

    Returns:
        The model's tensors by name.
    """
    state = checkpoint
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CorruptCheckpointError(f"expected a checkpoint dict with a 'state_dict', got {type(state).__name__}")
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    kept = {k: v for k, v in tensors.items() if not k.startswith(DROPPED_PREFIXES)}
    dropped = len(tensors) - len(kept)
    if not kept:
        raise CorruptCheckpointError("checkpoint holds no VQGAN tensors (state_dict empty or only loss weights)")
    if "quantize.embedding.weight" not in kept:
        raise CorruptCheckpointError(
            "checkpoint has no 'quantize.embedding.weight': not a taming VQModel (GumbelVQ and transformer "
            f"checkpoints are not handled); first keys: {sorted(kept)[:5]}"
        )
    out = {k: v.detach().contiguous().clone() for k, v in kept.items()}
    assert len(out) + dropped == len(tensors)
    return out
