"""CLIPStyler's StyleNet: a small U-Net (ngf 16, instance norm, residual 1x1 skips, sigmoid output).

Three down blocks (stride-2 4x4 convs) and three up blocks (bilinear x2 + concatenated skip),
so image sides must be multiples of 8. Same architecture as the reference ``StyleNet.UNet``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["StyleNet", "SIDE_MULTIPLE"]

SIDE_MULTIPLE = 8  # three halvings


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    """conv3x3 -> instance norm -> ReLU, twice."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 1, 1), nn.InstanceNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, 1, 1), nn.InstanceNorm2d(cout), nn.ReLU(),
    )


class ResBlock(nn.Module):
    """Two 3x3 convs plus a 1x1 projection of the input (the reference's ``EncodingBlock``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _double_conv(cin, cout)
        self.skip = nn.Conv2d(cin, cout, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.skip(x)


class Down(nn.Module):
    """:class:`ResBlock`, then a stride-2 4x4 conv; also returns the pre-downsampling map for the skip."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.block = ResBlock(cin, cout)
        self.downsample = nn.Conv2d(cout, cout, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.block(x)
        return self.downsample(features), features


class Up(nn.Module):
    """Bilinear x2, concatenate the skip map, then :class:`ResBlock` down to ``cout`` channels."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear")
        self.block = ResBlock(cin + cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.upsample(x), skip], dim=1))


class StyleNet(nn.Module):
    """U-Net mapping a [0, 1] image ``(B, 3, H, W)`` to a stylized one; ``H`` and ``W`` multiples of 8."""

    def __init__(self, ngf: int = 16, in_channels: int = 3, out_channels: int = 3) -> None:
        super().__init__()
        self.conv_init = nn.Conv2d(in_channels, ngf, 1, 1, 0)
        self.init = ResBlock(ngf, ngf)
        self.down1, self.down2, self.down3 = Down(ngf, ngf), Down(ngf, 2 * ngf), Down(2 * ngf, 4 * ngf)
        self.encoding = ResBlock(4 * ngf, 8 * ngf)
        self.up3, self.up2, self.up1 = Up(8 * ngf, 4 * ngf), Up(4 * ngf, 2 * ngf), Up(2 * ngf, ngf)
        self.out = ResBlock(2 * ngf, ngf)
        self.conv_fin = nn.Conv2d(ngf, out_channels, 1, 1, 0)

    def forward(self, x: torch.Tensor, use_sigmoid: bool = True) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-2] % SIDE_MULTIPLE or x.shape[-1] % SIDE_MULTIPLE:
            raise ValueError(
                f"StyleNet needs images (B, C, H, W) with H and W multiples of {SIDE_MULTIPLE}, got {tuple(x.shape)}; "
                f"resize or pad the image (clipag_plugin.synthesis.content.load_content does this)"
            )
        x = self.init(self.conv_init(x))
        d1, s1 = self.down1(x)
        d2, s2 = self.down2(d1)
        d3, s3 = self.down3(d2)
        h = self.up1(self.up2(self.up3(self.encoding(d3), s3), s2), s1)
        h = self.conv_fin(self.out(torch.cat([h, x], dim=1)))
        return torch.sigmoid(h) if use_sigmoid else h
