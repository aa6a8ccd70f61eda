"""Small building blocks shared by the encoders and decoders (export- and INT8-friendly).

Only Conv1d/Conv2d, Linear, ReLU, nearest/bilinear Resize, optional GroupNorm, Reshape/Slice and
Concat: every op here exports with ``torch.onnx.export(dynamo=False)`` at opset 17, has a native
TensorRT layer and (except GroupNorm) an INT8 path in ONNX Runtime. See ``model/config.py`` for
why ReLU and no BatchNorm.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def conv(dim: int, c_in: int, c_out: int, stride: int = 1) -> nn.Module:
    """3-wide convolution (1D or 2D) with 'same' padding; stride 2 halves each spatial size."""
    cls = nn.Conv1d if dim == 1 else nn.Conv2d
    return cls(c_in, c_out, kernel_size=3, stride=stride, padding=1)


def norm_layer(norm: str, channels: int) -> nn.Module:
    """GroupNorm with up to 8 groups, or Identity for ``norm == "none"``."""
    if norm == "none":
        return nn.Identity()
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def stage_channels(width: int, max_width: int, stages: int) -> list[int]:
    """Encoder channels per stage: width, 2*width, ... capped at max_width."""
    return [min(width * 2**i, max_width) for i in range(stages)]


def down_sizes(size: tuple[int, ...], min_size: int = 4) -> list[tuple[int, ...]]:
    """Spatial sizes after each stride-2 stage until the smallest side is <= ``min_size``.

    At least one stage, so every trunk downsamples once. ``ceil(s / 2)`` per stage (padding 1).
    """
    sizes = []
    cur = tuple(size)
    while True:
        cur = tuple((s + 1) // 2 for s in cur)
        sizes.append(cur)
        if min(cur) <= min_size or min(cur) == 1:
            return sizes


class ConvStage(nn.Module):
    """One resolution stage: a (strided) conv + ReLU, then ``blocks - 1`` more conv + ReLU."""

    def __init__(self, dim: int, c_in: int, c_out: int, stride: int, blocks: int, norm: str):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(blocks):
            layers += [
                conv(dim, c_in if i == 0 else c_out, c_out, stride if i == 0 else 1),
                norm_layer(norm, c_out),
                nn.ReLU(),
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class UpStage(nn.Module):
    """Upsample x2 (nearest or bilinear), crop to ``size`` when it is odd, then conv(s) + ReLU.

    ``last=True`` builds a decoder's output stage: its final conv maps to the output channels and
    has no norm and no activation. Whether to crop is decided here, from the known sizes, so the
    exported graph has no shape-dependent branch.
    """

    def __init__(
        self,
        dim: int,
        c_in: int,
        c_out: int,
        in_size: tuple[int, ...],
        size: tuple[int, ...],
        blocks: int,
        norm: str,
        mode: str,
        last: bool = False,
    ):
        super().__init__()
        self.mode = "linear" if (mode == "bilinear" and dim == 1) else mode
        self.crop = tuple(size) if tuple(2 * s for s in in_size) != tuple(size) else None
        hidden = c_in if last else c_out  # width of the convs before the output conv
        layers: list[nn.Module] = []
        for i in range(blocks):
            final = i == blocks - 1
            layers.append(conv(dim, c_in if i == 0 else hidden, c_out if final else hidden))
            if not (last and final):
                layers += [norm_layer(norm, c_out if final else hidden), nn.ReLU()]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        align = None if self.mode == "nearest" else False
        x = F.interpolate(x, scale_factor=2.0, mode=self.mode, align_corners=align)
        if self.crop is not None:  # odd target size: drop the extra last row/column
            x = (
                x[..., : self.crop[-1]]
                if len(self.crop) == 1
                else x[..., : self.crop[0], : self.crop[1]]
            )
        return self.body(x)
