"""A stand-in CUDA device for device-correctness tests on machines without one.

While :class:`VirtualCuda` is active, a tensor created with ``device="cuda"`` (or moved there with
``.to``/``.cuda``) is a CPU tensor marked as being "on CUDA": its ``.device`` says ``cuda:0``, the
results of operations on it are marked too, ``.cpu()`` / ``.to("cpu")`` unmark, and an operation
that mixes marked tensors with unmarked CPU tensors of one element or more raises the error CUDA
raises ("Expected all tensors to be on the same device"). CPU scalars (0-dim) and CPU index tensors
may mix, as on CUDA. Only what the Python code does is checked, which is where device mix-ups live.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

CUDA = torch.device("cuda", 0)
_MARK = "_virtual_cuda"
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_select, torch.index_select}


def _is_cuda(value) -> bool:
    if isinstance(value, torch.device):
        return value.type == "cuda"
    return isinstance(value, str) and value.startswith("cuda")


def _marked(t) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, _MARK, False)


def _mark(value):
    if isinstance(value, torch.Tensor):
        setattr(value, _MARK, True)
    return value


class VirtualCuda(TorchFunctionMode):
    """See the module docstring."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func == torch.Tensor.device.__get__:
            return CUDA if _marked(args[0]) else func(*args)
        if func == torch.Tensor.is_cuda.__get__:
            return _marked(args[0])
        if func is torch.Tensor.to:
            return self._to(func, args, kwargs)
        if func is torch.Tensor.cuda:
            return _mark(args[0].clone())
        if func is torch.Tensor.cpu:
            out = func(*args, **kwargs)
            return out.clone() if _marked(out) else out
        to_cuda = _is_cuda(kwargs.get("device"))
        if to_cuda:
            kwargs["device"] = "cpu"
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if func not in _INDEXING:
            marked = [t for t in tensors if _marked(t)]
            plain = [t for t in tensors if not _marked(t) and t.dim() > 0]
            if marked and plain:
                raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                                   f"cuda:0 and cpu! (in {getattr(func, '__name__', func)})")
        out = func(*args, **kwargs)
        if to_cuda or any(_marked(t) for t in tensors):
            tree_map(_mark, out)
        return out

    @staticmethod
    def _to(func, args, kwargs):
        source, rest, target = args[0], list(args[1:]), None
        for i, value in enumerate(rest):
            if isinstance(value, (torch.device, str)):
                target, rest[i] = _is_cuda(value), "cpu"
            elif isinstance(value, torch.Tensor):
                target = _marked(value)
        if "device" in kwargs:
            target, kwargs["device"] = _is_cuda(kwargs["device"]), "cpu"
        out = func(source, *rest, **kwargs)
        on_cuda = _marked(source) if target is None else target
        if out is source and on_cuda != _marked(source):
            out = out.clone()  # a real move makes a new tensor
        return _mark(out) if on_cuda else out
