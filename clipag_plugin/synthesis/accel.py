"""Precision and speed settings of the generation loop: autocast, weight dtype, loss scaling,
compiled encoders, TF32.

The pixels, the parametrization's tensors, the losses and the optimizer stay in fp32; only the
image encoder's forward (and its backward) runs in reduced precision under ``torch.autocast``.
Each setting is a pure context or wrapper around the encoder, so the loop itself does not change.

* ``precision`` (compute): ``"auto"`` on CUDA is bf16 where the device in use has it natively
  (compute capability 8.0 and newer: A100, L4, H100, ...), fp16 with a scaled loss on 7.x
  (V100, T4) and fp32 on older GPUs; fp32 on every other device. ``"bf16"`` / ``"fp16"`` force
  it (the CPU runs bf16 too, which keeps this code path tested without a GPU); ``"fp32"`` turns
  it off. fp16 always comes with a dynamic loss scale (:class:`LossScale`).
* ``weights`` (storage): ``"auto"`` converts the encoder's weights once to the compute dtype
  (fp32 without autocast), whatever ``clipag.load`` returned (fp16 on CUDA); ``"fp32"`` keeps
  fp32 weights under autocast. The conversion is made on a copy of the image tower
  (:mod:`.encoder`); the caller's model is never changed.
* ``compile``: ``torch.compile`` of the encoder. The first call of each input shape runs the
  compiled forward and backward once; where that fails and the eager encoder does not (no C++
  toolchain, an unsupported platform, a backend bug), the run falls back to eager and says so.
  Out-of-memory errors and errors of the model itself are raised, not hidden.
* On CUDA, float32 matmuls may use TF32 during the loop (restored afterwards).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator, Optional

import torch

__all__ = ["PRECISIONS", "WEIGHTS", "autocast_dtype", "weight_dtype", "dtype_name", "encoder_autocast",
           "fast_matmuls", "LossScale", "CompiledEncoder", "COMPILE_BACKEND", "is_out_of_memory"]

logger = logging.getLogger("clipag_plugin.generate")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
WEIGHTS = ("auto", "fp32", "bf16", "fp16")
COMPILE_BACKEND = "inductor"  # torch.compile's default; tests use a lighter one
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NATIVE_BF16_CAPABILITY = (8, 0)  # Ampere and newer run bf16 on tensor cores
FAST_FP16_CAPABILITY = (7, 0)  # Volta and Turing (V100, T4) run fp16 on tensor cores, bf16 only emulated


def dtype_name(dtype: Optional[torch.dtype]) -> str:
    """``"bf16"``, ``"fp16"`` or ``"fp32"`` (None, no autocast, is fp32)."""
    return next((name for name, d in _DTYPES.items() if d == dtype), "fp32") if dtype is not None else "fp32"


def _cuda_capability(device: torch.device) -> tuple[int, int]:
    index = device.index if device.index is not None else torch.cuda.current_device()
    return tuple(torch.cuda.get_device_capability(index))


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype ``precision`` means on ``device`` (None: no autocast).

    ``"auto"`` asks the device in use (not the current one) for its compute capability: bf16 from
    8.0, fp16 on 7.x (bf16 is only emulated there, slower than fp32), fp32 below 7.0.

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
        capability = _cuda_capability(device)
        if capability >= NATIVE_BF16_CAPABILITY:
            return torch.bfloat16
        return torch.float16 if capability >= FAST_FP16_CAPABILITY else None
    return _DTYPES[precision]


def weight_dtype(weights: str, compute: Optional[torch.dtype]) -> torch.dtype:
    """The dtype the encoder's weights are held in for a run.

    Args:
        weights: one of :data:`WEIGHTS`; ``"auto"`` is the compute dtype (fp32 without autocast).
        compute: the autocast dtype of the run (:func:`autocast_dtype`), None for fp32.

    Returns:
        ``torch.float32`` or the compute dtype; a ``ValueError`` for any other combination
        (fp16 weights in an fp32 run would run the whole encoder in fp16).
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r}: choose one of {', '.join(WEIGHTS)}")
    if weights == "auto":
        return compute or torch.float32
    wanted = _DTYPES[weights]
    if wanted not in (torch.float32, compute):
        raise ValueError(f"weights={weights!r} does not fit compute precision {dtype_name(compute)}: the weights are "
                         f"fp32 or the compute dtype; choose weights=auto, fp32 or {dtype_name(compute)}")
    return wanted


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


class LossScale:
    """Dynamic loss scaling for fp16 backward passes through the encoder (as ``torch.amp.GradScaler``).

    The loop takes gradients with ``torch.autograd.grad`` and its L2 step has no optimizer object,
    so GradScaler's optimizer-bound ``unscale_``/``step`` do not fit; the rule is the same: scale
    the loss, unscale the gradients, skip a step whose gradients overflowed and halve the scale,
    double it after ``growth_interval`` clean steps.

    Args:
        enabled: False makes every method a no-op (scale 1).
        init_scale: the first scale.
        growth_interval: clean steps before the scale doubles.
    """

    def __init__(self, enabled: bool, init_scale: float = 2.0**16, growth_interval: int = 200) -> None:
        self.enabled = enabled
        self.scale = float(init_scale) if enabled else 1.0
        self.growth_interval = growth_interval
        self.clean_steps = 0
        self.skipped = 0

    def scaled(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` times the current scale."""
        return loss * self.scale if self.enabled else loss

    def unscale(self, grads: tuple[torch.Tensor, ...]) -> Optional[list[torch.Tensor]]:
        """The true gradients, or None when they overflowed (skip this step; the scale is halved)."""
        if not self.enabled:
            return list(grads)
        finite = bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
        if not finite:
            self.scale /= 2.0
            self.clean_steps = 0
            self.skipped += 1
            return None
        self.clean_steps += 1
        if self.clean_steps >= self.growth_interval:
            self.scale *= 2.0
            self.clean_steps = 0
        return [g / self.scale for g in grads]


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is (or was caused by) running out of device memory."""
    seen: set[int] = set()
    stack: list[Optional[BaseException]] = [err]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, torch.OutOfMemoryError) or "out of memory" in str(current).lower():
            return True
        stack += [current.__cause__, current.__context__, getattr(current, "inner_exception", None)]
    return False


def _exercise(function: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, backward: bool) -> None:
    """One forward of ``function`` (and a backward to the input when ``backward``)."""
    if backward:
        probe = images.detach().requires_grad_()
        torch.autograd.grad(function(probe).float().sum(), probe)
    else:
        with torch.no_grad():
            function(images)


class CompiledEncoder:
    """``torch.compile`` of an encoder function, with an announced fallback to the eager one.

    The first call with a new input (shape, dtype, device, whether a backward follows) runs the
    compiled forward and backward once on a detached copy, so that a failure of the lazily
    compiled backward shows up here rather than in the middle of the loop. A failure counts as
    the compiler's when the eager encoder runs the same input; then the eager encoder is used
    from now on, with one warning. Out-of-memory errors are re-raised, and so is the eager
    encoder's own error when it fails too (a bug in the model, not in the compiler).

    Args:
        function: the eager encoder (e.g. ``model.encode_pixels``).
        name: the model's name, for the notice.
    """

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], name: str = "") -> None:
        self.eager = function
        self.name = name
        self.compiled: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        self.failed = False
        self.ready: set[tuple] = set()
        try:
            self.compiled = torch.compile(function, backend=COMPILE_BACKEND, dynamic=False)
        except Exception as err:  # noqa: BLE001 - torch.compile only sets up here; any error means: no compiler
            if is_out_of_memory(err):
                raise
            self._fall_back(err)

    def _fall_back(self, err: BaseException) -> None:
        self.failed = True
        self.compiled = None
        message = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        logger.warning("compile: torch.compile is unavailable for %s here (%s); running the eager encoder",
                       self.name or "the encoder", message)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.compiled is None:
            return self.eager(images)
        backward = torch.is_grad_enabled() and images.requires_grad
        key = (tuple(images.shape), images.dtype, str(images.device), backward)
        if key not in self.ready:
            try:
                _exercise(self.compiled, images, backward)
            except Exception as err:  # noqa: BLE001 - sorted below: OOM and model errors are raised
                if is_out_of_memory(err):
                    raise
                try:
                    _exercise(self.eager, images, backward)
                except Exception as eager_err:  # noqa: BLE001
                    raise eager_err from err
                self._fall_back(err)
                return self.eager(images)
            self.ready.add(key)
        return self.compiled(images)
