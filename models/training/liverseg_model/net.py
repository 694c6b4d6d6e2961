"""The liver U-Net, shaped for tract.

tract runs wide convolutions at low resolution fast and narrow ones at full
resolution slowly (model 1.0.0, with 8 channels at 256 x 256, ran at about 2x ONNX
Runtime's time). So this network never convolves at full resolution: a 2 x 2
space-to-depth stem folds the 256 x 256 input into 12 channels at 128 x 128, the
U-Net works from there (3x3 convolutions, batch norm folded at export, ReLU, max
pooling, nearest resize + convolution in the decoder: tract runs Resize well and
ConvTranspose and Upsample poorly or not at all), and a depth-to-space head turns 4
channels at 128 x 128 back into one logit per input pixel. Both folds are plain
Reshape/Transpose in ONNX.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

WIDTHS = (24, 32, 64, 96, 128)


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * 4, h // 2, w // 2)


def depth_to_space(x: torch.Tensor) -> torch.Tensor:
    n, c4, h, w = x.shape
    x = x.reshape(n, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c4 // 4, h * 2, w * 2)


class UNet(nn.Module):
    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.widths = list(widths)
        self.down = nn.ModuleList()
        c = in_channels * 4
        for w in widths:
            self.down.append(block(c, w))
            c = w
        self.up = nn.ModuleList()
        for skip in reversed(widths[:-1]):
            self.up.append(block(c + skip, skip))
            c = skip
        self.head = nn.Conv2d(c, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = space_to_depth(x)
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
        return depth_to_space(self.head(x))
