"""Latents of a VQGAN as an optimizable image: straight-through quantization and decoding.

Pure functions of tensors (and a built taming ``VQModel``); nothing here imports taming.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..guidance.cutouts import clamp_with_grad

__all__ = [
    "replace_grad",
    "vector_quantize",
    "codebook",
    "codebook_bounds",
    "random_code_latents",
    "encode_latents",
    "synth",
]


class _ReplaceGrad(torch.autograd.Function):
    """Forward ``x_forward``; send the incoming gradient to ``x_backward`` instead."""

    @staticmethod
    def forward(ctx, x_forward: torch.Tensor, x_backward: torch.Tensor) -> torch.Tensor:
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return None, grad_out.sum_to_size(ctx.shape)


def replace_grad(x_forward: torch.Tensor, x_backward: torch.Tensor) -> torch.Tensor:
    """Value of ``x_forward``, gradient of ``x_backward`` (the straight-through estimator).

    Args:
        x_forward: the value to return.
        x_backward: the tensor the gradient flows to.

    Returns:
        A tensor equal to ``x_forward``.
    """
    return _ReplaceGrad.apply(x_forward, x_backward)


def vector_quantize(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Snap each vector of ``x`` (``(..., D)``) to its nearest row of ``codebook`` (``(K, D)``),
    passing the gradient straight through to ``x``.

    Args:
        x: vectors to snap.
        codebook: the code vectors.

    Returns:
        A tensor shaped like ``x``.
    """
    if x.shape[-1] != codebook.shape[-1]:
        raise ValueError(f"vector_quantize: x has {x.shape[-1]} channels, codebook rows have {codebook.shape[-1]}")
    d = x.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(1) - 2 * x @ codebook.T
    x_q = codebook[d.argmin(-1)]
    return replace_grad(x_q, x)


def codebook(model: torch.nn.Module) -> torch.Tensor:
    """The ``(n_embed, embed_dim)`` code vectors of a taming ``VQModel``.

    Args:
        model: a taming ``VQModel``.

    Returns:
        The codebook tensor (a view of the model's weights).
    """
    return model.quantize.embedding.weight


def codebook_bounds(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel min and max over the codebook, shaped ``(1, D, 1, 1)`` (the latents' clamp box).

    Args:
        model: a taming ``VQModel``.

    Returns:
        ``(low, high)``, each ``(1, D, 1, 1)``.
    """
    book = codebook(model)
    return book.min(dim=0).values[None, :, None, None], book.max(dim=0).values[None, :, None, None]


def random_code_latents(model: torch.nn.Module, toks_y: int, toks_x: int,
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Latents ``(1, D, toks_y, toks_x)`` made of uniformly drawn codebook entries.

    Args:
        model: a taming ``VQModel``.
        toks_y: latent rows.
        toks_x: latent columns.
        generator: the random source, for reproducible starts.

    Returns:
        The latents.
    """
    book = codebook(model)
    idx = torch.randint(book.shape[0], (toks_y * toks_x,), generator=generator, device="cpu").to(book.device)
    return book[idx].view(1, toks_y, toks_x, book.shape[1]).permute(0, 3, 1, 2).contiguous()


def encode_latents(model: torch.nn.Module, image01: torch.Tensor) -> torch.Tensor:
    """Quantized latents of images in [0, 1] (``(B, 3, H, W)``, sides divisible by the factor).

    Args:
        model: a taming ``VQModel``.
        image01: ``(B, 3, H, W)`` images in [0, 1].

    Returns:
        ``(B, D, H / f, W / f)`` latents snapped to the codebook.
    """
    z, *_ = model.encode(image01 * 2 - 1)
    return z


def synth(model: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Quantize (straight-through), decode, map to [0, 1] and clamp with gradient.

    Args:
        model: a taming ``VQModel``.
        z: ``(B, D, h, w)`` latents.

    Returns:
        ``(B, 3, h * f, w * f)`` images in [0, 1].
    """
    z_q = vector_quantize(z.movedim(1, 3), codebook(model)).movedim(3, 1)
    return clamp_with_grad(model.decode(z_q).add(1).div(2), 0.0, 1.0)
