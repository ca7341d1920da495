"""torch.distributed helpers: who am I, gather features, set up from torchrun's environment.

Everything works unchanged in a single process (world size 1, nothing is initialized).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "info", "setup_from_env", "gather_features", "all_gather_objects", "all_mean", "barrier", "cleanup"]


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and local rank of this process (0, 1, 0 without torch.distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def info() -> DistInfo:
    """The current process's place in the process group (or the single-process default)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def setup_from_env(backend: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); a no-op otherwise.

    The backend defaults to nccl when CUDA is available, gloo otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return info()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return info()


def gather_features(x: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, rank order.

    With ``with_grad`` the local block is ``x`` itself (so gradients flow to this rank's part
    only); the other blocks are constants. Equal batch sizes on every rank are required.
    """
    d = info()
    if not d.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(d.world_size)]
    dist.all_gather(parts, x.detach().contiguous())
    if with_grad:
        parts[d.rank] = x
    return torch.cat(parts, dim=0)


def all_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of a (detached) tensor over ranks; ``x`` itself in a single process."""
    if not info().enabled:
        return x
    out = x.detach().clone()
    dist.all_reduce(out)
    return out / info().world_size


def all_gather_objects(obj):
    """A list of ``obj`` from every rank (``[obj]`` in a single process)."""
    d = info()
    if not d.enabled:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if info().enabled:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
