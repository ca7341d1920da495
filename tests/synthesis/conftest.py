"""A fast stand-in for a CLIP (linear image and text encoders) to test the loop's logic."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn


class FakeClip(nn.Module):
    """Has the surface the loop uses: encode_pixels, encode_text, visual.input_resolution, context_length."""

    def __init__(self, resolution: int = 16, dim: int = 8, seed: int = 0, nan_after: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.visual = nn.Module()
        self.visual.input_resolution = resolution
        self.visual.output_dim = dim
        self.proj = nn.Linear(3 * 4 * 4, dim)
        self.text = nn.Embedding(49408, dim)
        self.context_length = 77
        self.name = "fake"
        self.calls = 0
        self.nan_after = nan_after

    def encode_pixels(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        r = self.visual.input_resolution
        if x.shape[-1] != r:
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)
        out = self.proj(F.adaptive_avg_pool2d(x - 0.5, 4).flatten(1))
        if self.nan_after is not None and self.calls > self.nan_after:
            out = out * float("nan")
        return out

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens.long()).mean(1)


@pytest.fixture
def fake_clip() -> FakeClip:
    return FakeClip()
