"""Image operations shared by every CNN space (NASNet, ENAS macro/micro, Zoph & Le).

Conventions follow the papers (docs/papers.md §3, §7): ReLU -> conv -> BN; a
depthwise-separable conv is applied twice (NASNet, ENAS micro); pools keep
the channel count; 1x1 convs / factorized reductions fix shape mismatches.
Every op maps ``C_in`` channels to ``C_out`` channels at ``stride``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ReLUConvBN(nn.Module):
    """ReLU -> (kh x kw) conv -> BN."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        dilation: int = 1,
        affine: bool = True,
    ) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        pad = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, (kh, kw), stride, pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """ReLU -> depthwise kxk -> pointwise 1x1 -> BN, applied ``repeats`` times (2 in NASNet)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int = 1, repeats: int = 2,
        affine: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = c_in
        for r in range(repeats):
            s = stride if r == 0 else 1
            layers += [
                nn.ReLU(inplace=False),
                nn.Conv2d(c, c, kernel, s, kernel // 2, groups=c, bias=False),
                nn.Conv2d(c, c_out, 1, bias=False),
                nn.BatchNorm2d(c_out, affine=affine),
            ]
            c = c_out
        self.op = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class FactorizedConv(nn.Module):
    """1xk then kx1 conv (NASNet's 1x3->3x1, 1x7->7x1), ReLU -> convs -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, (1, kernel), (1, stride), (0, kernel // 2), bias=False),
            nn.Conv2d(c_out, c_out, (kernel, 1), (stride, 1), (kernel // 2, 0), bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Pool(nn.Module):
    """kxk max/avg pool; a 1x1 ReLUConvBN follows when channels change."""

    def __init__(self, kind: str, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__()
        if kind == "max":
            self.pool: nn.Module = nn.MaxPool2d(kernel, stride, kernel // 2)
        elif kind == "avg":
            self.pool = nn.AvgPool2d(kernel, stride, kernel // 2, count_include_pad=False)
        else:
            raise ValueError(f"pool kind must be 'max' or 'avg', got {kind!r}")
        self.proj = ReLUConvBN(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


class FactorizedReduce(nn.Module):
    """Halve H and W with two offset stride-2 1x1 convs, concatenated (NASNet/ENAS)."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        a = self.conv1(x)
        b = self.conv2(nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1)))
        return self.bn(torch.cat([a, b], dim=1))


class Identity(nn.Module):
    """Identity; becomes FactorizedReduce / 1x1 conv when stride or channels change."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        if stride == 2:
            self.op: nn.Module = FactorizedReduce(c_in, c_out)
        elif stride == 1 and c_in != c_out:
            self.op = ReLUConvBN(c_in, c_out, 1)
        elif stride == 1:
            self.op = nn.Identity()
        else:
            raise ValueError(f"identity supports stride 1 or 2, got {stride}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Drop a whole path per example with probability ``drop_prob`` (ScheduledDropPath)."""
    if not training or drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


OpFactory = Callable[[int, int, int], nn.Module]
"""(C_in, C_out, stride) -> module."""

IMAGE_OPS: dict[str, OpFactory] = {
    "identity": lambda ci, co, s: Identity(ci, co, s),
    "conv1x1": lambda ci, co, s: ReLUConvBN(ci, co, 1, s),
    "conv3x3": lambda ci, co, s: ReLUConvBN(ci, co, 3, s),
    "conv5x5": lambda ci, co, s: ReLUConvBN(ci, co, 5, s),
    "conv1x3_3x1": lambda ci, co, s: FactorizedConv(ci, co, 3, s),
    "conv1x7_7x1": lambda ci, co, s: FactorizedConv(ci, co, 7, s),
    "dil_conv3x3": lambda ci, co, s: ReLUConvBN(ci, co, 3, s, dilation=2),
    "sep_conv3x3": lambda ci, co, s: SepConv(ci, co, 3, s),
    "sep_conv5x5": lambda ci, co, s: SepConv(ci, co, 5, s),
    "sep_conv7x7": lambda ci, co, s: SepConv(ci, co, 7, s),
    "avg_pool3x3": lambda ci, co, s: Pool("avg", ci, co, 3, s),
    "max_pool3x3": lambda ci, co, s: Pool("max", ci, co, 3, s),
    "max_pool5x5": lambda ci, co, s: Pool("max", ci, co, 5, s),
    "max_pool7x7": lambda ci, co, s: Pool("max", ci, co, 7, s),
}
"""Operation name (as written in genotypes' vocabularies) -> factory."""
