"""Safe checkpoint reading and format conversion, as pure functions (dict in, dict out).

Only two ways into a file exist: safetensors, and ``torch.load(weights_only=True)`` with an
explicit allow-list of the few numpy globals that training checkpoints pickle. Anything else
a pickle asks for is refused before it runs.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

__all__ = [
    "UnsafeCheckpointError",
    "numpy_allow_list",
    "CorruptCheckpointError",
    "read_checkpoint",
    "read_state_dict",
    "extract_state_dict",
    "convert_clipag_checkpoint",
    "save_state_dict",
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list; nothing from it was executed."""


class CorruptCheckpointError(OSError):
    """A checkpoint file is truncated or not a checkpoint at all."""


def numpy_allow_list() -> list[Any]:
    """numpy globals that open_clip training checkpoints pickle (scalars in optimizer state)."""
    import numpy as np

    allowed: list[Any] = [np.dtype, np.ndarray]
    for module_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = __import__(module_name, fromlist=["scalar", "_reconstruct"])
        except ImportError:
            continue
        allowed += [module.scalar, module._reconstruct]
        break
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "bool")]
    return allowed


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Read a ``.safetensors`` file or a torch pickle under ``weights_only=True``.

    Raises :class:`UnsafeCheckpointError` for a pickle that wants anything beyond tensors,
    containers and numpy scalars, and :class:`CorruptCheckpointError` for an unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CorruptCheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    try:
        with torch.serialization.safe_globals(numpy_allow_list()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        message = str(err)
        if "Unsupported global" in message or "not an allowed global" in message or "GLOBAL" in message:
            raise UnsafeCheckpointError(
                f"{path}: refused to load; the pickle asks for a global outside the allow-list "
                f"(tensors, containers, numpy scalars). Nothing from it was executed. Details: "
                f"{message.splitlines()[0]}. If you trust the file, convert it yourself to safetensors."
            ) from err
        raise CorruptCheckpointError(f"{path}: not a readable checkpoint ({message.splitlines()[0]})") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CorruptCheckpointError(
            f"{path}: truncated or corrupt checkpoint ({str(err).splitlines()[0]}). Delete it and download again."
        ) from err


def extract_state_dict(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The tensor state dict inside an open_clip / Lightning / bare checkpoint, ``module.`` stripped."""
    state = checkpoint
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not state:
        raise CorruptCheckpointError("checkpoint holds no state dict (expected a mapping of tensors)")
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        out[key[len("module.") :] if key.startswith("module.") else key] = value
    if not out:
        raise CorruptCheckpointError("checkpoint's state dict holds no tensors")
    return out


def convert_clipag_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Official ``CLIPAG_ViTB32.pt`` (open_clip training checkpoint) -> plain open_clip state dict.

    Drops the optimizer and bookkeeping, strips ``module.``, makes tensors contiguous fp32
    copies (safetensors needs owned, contiguous storage) and checks the key count is unchanged.
    """
    if "state_dict" not in checkpoint:
        raise CorruptCheckpointError(
            f"not a CLIPAG training checkpoint: top-level keys are {sorted(checkpoint)[:8]}, expected 'state_dict'"
        )
    tensors = {k: v for k, v in checkpoint["state_dict"].items() if isinstance(v, torch.Tensor)}
    state = extract_state_dict({"state_dict": tensors})
    if len(state) != len(tensors):
        raise CorruptCheckpointError("duplicate keys after stripping the 'module.' prefix")
    return {k: v.detach().to(torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
            for k, v in state.items()}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read any supported checkpoint file and return its tensor state dict."""
    return extract_state_dict(read_checkpoint(path))


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write a state dict as safetensors atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)
    return path
