"""Speed settings of the generation loop: mixed precision, compiled encoders, TF32, channels-last.

The pixels, the parametrization's tensors, the losses and the optimizer stay in fp32; only the
image encoder's forward (and its backward) runs in reduced precision under ``torch.autocast``.
Each setting is a pure context or wrapper around the encoder, so the loop itself does not change.

* ``precision``: ``"auto"`` is bf16 on CUDA devices that support it (fp16 on older ones) and fp32
  elsewhere; ``"bf16"`` / ``"fp16"`` force it (the CPU runs bf16 too, which keeps this code path
  tested without a GPU); ``"fp32"`` turns it off.
* ``compile``: ``torch.compile`` of the encoder; where the compiler is unavailable (no C++
  toolchain, an unsupported platform) the first call falls back to the eager encoder and says so.
* On CUDA, float32 matmuls may use TF32 during the loop (restored afterwards), and convolutional
  image towers run channels-last.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator, Optional

import torch

__all__ = ["PRECISIONS", "autocast_dtype", "encoder_autocast", "fast_matmuls", "CompiledEncoder",
           "COMPILE_BACKEND", "prefer_channels_last"]

logger = logging.getLogger("clipag_plugin.generate")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_BACKEND = "inductor"  # torch.compile's default; tests use a lighter one


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype ``precision`` means on ``device`` (None: no autocast).

    Args:
        precision: one of :data:`PRECISIONS`.
        device: where the encoder runs.

    Returns:
        ``torch.bfloat16``, ``torch.float16`` or None.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def encoder_autocast(precision: str, device: torch.device):
    """A context in which the encoder runs at ``precision`` (a no-op context for fp32).

    Args:
        precision: one of :data:`PRECISIONS`.
        device: where the encoder runs.

    Returns:
        A context manager.
    """
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def fast_matmuls(device: torch.device) -> Iterator[None]:
    """On CUDA, let float32 matmuls use TF32 inside the block; the previous setting is restored."""
    if device.type != "cuda":
        yield
        return
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


class CompiledEncoder:
    """``torch.compile`` of an encoder function, with an announced fallback to the eager one.

    Args:
        function: the eager encoder (e.g. ``model.encode_pixels``).
        name: the model's name, for the notice.
    """

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], name: str = "") -> None:
        self.eager = function
        self.name = name
        self.compiled: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        self.failed = False
        try:
            self.compiled = torch.compile(function, backend=COMPILE_BACKEND, dynamic=False)
        except Exception as err:  # noqa: BLE001 - any compiler setup error means: run eager
            self._fall_back(err)

    def _fall_back(self, err: BaseException) -> None:
        self.failed = True
        self.compiled = None
        logger.warning("compile: torch.compile is unavailable here (%s); running the eager encoder",
                       str(err).splitlines()[0][:160] if str(err) else type(err).__name__)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(images)
            except Exception as err:  # noqa: BLE001 - compilation happens on the first call
                self._fall_back(err)
        return self.eager(images)


def prefer_channels_last(model: torch.nn.Module, device: torch.device) -> bool:
    """Put a convolutional image tower in channels-last memory format on CUDA (faster convolutions).

    Args:
        model: the CLIP model.
        device: where it runs.

    Returns:
        True when the tower was converted.
    """
    visual = getattr(model, "visual", None)
    if device.type != "cuda" or visual is None:
        return False
    if not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size != m.stride for m in visual.modules()):
        return False  # a ViT's patch embedding alone gains nothing
    visual.to(memory_format=torch.channels_last)
    return True
