"""A small 2.5D U-Net shaped for tract: 3x3 convolutions, batch norm (folded at export),
ReLU, max pooling, and nearest-neighbour resize + convolution instead of transposed
convolution (tract runs Resize well; ConvTranspose and Upsample poorly or not at all)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (8, 16, 32, 64, 96)):
        super().__init__()
        self.widths = list(widths)
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(block(c, w))
            c = w
        self.up = nn.ModuleList()
        for skip in reversed(widths[:-1]):
            self.up.append(block(c + skip, skip))
            c = skip
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, b in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = b(x)
            skips.append(x)
        skips.pop()
        for b in self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = b(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)
