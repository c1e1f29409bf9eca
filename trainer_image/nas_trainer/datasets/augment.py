"""Batched image augmentation on the training device: pad-crop, flip, cutout, normalize.

Done on whole batches of tensors (no per-image Python), so the GPU is not
starved by a data loader and a CPU run stays close to a plain PyTorch loop.
Random draws come from one explicit CPU ``torch.Generator`` whose state goes
into checkpoints, so a resumed run augments exactly as an uninterrupted one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad`` pixels and crop back to the original size at a random offset per image."""
    if pad <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device, non_blocking=True)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device, non_blocking=True)
    rows = oy[:, None] + torch.arange(h, device=x.device)
    cols = ox[:, None] + torch.arange(w, device=x.device)
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device, non_blocking=True)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Zero one ``size`` x ``size`` square per image, centred anywhere (clipped at the border).

    Applied after normalization, as in DeVries & Taylor 2017, so the square is the mean colour.
    """
    if size <= 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=gen).to(x.device, non_blocking=True)
    cx = torch.randint(0, w, (b,), generator=gen).to(x.device, non_blocking=True)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    half = size // 2
    in_y = (ys >= (cy[:, None] - half)) & (ys < (cy[:, None] - half + size))
    in_x = (xs >= (cx[:, None] - half)) & (xs < (cx[:, None] - half + size))
    hole = in_y[:, :, None] & in_x[:, None, :]
    return x.masked_fill(hole[:, None, :, :], 0.0)
