"""Gated PixelCNN (van den Oord et al., 2016, "Conditional Image Generation with PixelCNN
Decoders"): a vertical stack that sees every row above, a horizontal stack that sees the
pixels to the left, gated tanh * sigmoid units, a residual connection in the horizontal
stack and a link from the vertical to the horizontal stack. No blind spot.

Tensors in, logits out: ``forward(x)`` maps integer images (B, C, H, W) to logits
(B, K, C, H, W) over the K intensity levels of every sub-pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from arcodec.models import exact
from arcodec.models.layers import CausalConv2d, ExactModule, Gate
from arcodec.registry import register_model


@dataclass(frozen=True)
class GatedPixelCNNConfig:
    channels: int = 1  # sub-pixels per pixel (1: grayscale)
    levels: int = 256  # K intensity levels per sub-pixel
    hidden: int = 32  # feature maps of each stack
    layers: int = 8  # gated layers, the first one included
    first_kernel: int = 7
    kernel: int = 3
    head: int = 128  # width of the 1x1 output network

    def __post_init__(self):
        if self.channels != 1:
            raise ValueError("gated-pixelcnn models one channel; code colour channel by channel")
        if self.layers < 1 or self.kernel % 2 == 0 or self.first_kernel % 2 == 0:
            raise ValueError("layers >= 1 and odd kernel sizes are required")


class GatedLayer(ExactModule):
    """One layer of both stacks. The first layer is strictly causal (mask A)."""

    def __init__(self, cin: int, f: int, k: int, first: bool):
        super().__init__()
        self.first = first
        if first:  # sees rows above / pixels to the left, never the current pixel
            self.v = CausalConv2d(cin, 2 * f, (k // 2, k), "down", shift=True)
            self.h = CausalConv2d(cin, 2 * f, (1, k // 2), "right", shift=True)
        else:
            self.v = CausalConv2d(f, 2 * f, (k // 2 + 1, k), "down")
            self.h = CausalConv2d(f, 2 * f, (1, k // 2 + 1), "right")
        self.link = CausalConv2d(2 * f, 2 * f, (1, 1), "point")
        self.out = CausalConv2d(f, f, (1, 1), "point")
        self.gate = Gate()

    def vertical(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the vertical stack's contribution to the horizontal one, output of the vertical stack)."""
        pre = self.v(v)
        return self.link(pre), self.gate(pre)

    def horizontal(self, h: torch.Tensor, link: torch.Tensor) -> torch.Tensor:
        y = self.out(self.gate(self.h(h) + link))
        if not self.first:
            y = y + h
        return y.clamp(-exact.ACT_LIMIT, exact.ACT_LIMIT) if self.exact else y

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        link, v = self.vertical(v)
        return v, self.horizontal(h, link)


@register_model("gated-pixelcnn", GatedPixelCNNConfig)
class GatedPixelCNN(ExactModule):
    def __init__(self, config: GatedPixelCNNConfig):
        super().__init__()
        self.config = c = config
        self.layers = nn.ModuleList(
            GatedLayer(c.channels if i == 0 else c.hidden, c.hidden,
                       c.first_kernel if i == 0 else c.kernel, first=i == 0)
            for i in range(c.layers))
        self.head = nn.Sequential(
            nn.ReLU(), CausalConv2d(c.hidden, c.head, (1, 1), "point"),
            nn.ReLU(), CausalConv2d(c.head, c.levels * c.channels, (1, 1), "point"))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Integer levels 0..K-1 to inputs in [-1, 1] (float64 on the grid in exact mode)."""
        if self.exact:
            return exact.to_grid(x.double() * (2.0 / (self.config.levels - 1)) - 1.0)
        return x.float() * (2.0 / (self.config.levels - 1)) - 1.0

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        b, _, hh, ww = h.shape
        return self.head(h).view(b, self.config.levels, self.config.channels, hh, ww)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = h = self.embed(x)
        for layer in self.layers:
            v, h = layer(v, h)
        return self.logits(h)

    def receptive_field(self) -> tuple[int, int]:
        """(rows above, columns to either side) that a pixel's distribution can depend on."""
        c = self.config
        reach = c.first_kernel // 2 + (c.layers - 1) * (c.kernel // 2)
        return reach, reach

    def incremental(self, batch: int, height: int, width: int) -> "GatedIncremental":
        return GatedIncremental(self, batch, height, width)


class GatedIncremental:
    """Raster-order evaluation that caches every layer's activations.

    ``begin_row(x, r)`` computes the vertical stack for row r from the rows above;
    ``step(x, r, c)`` then computes the horizontal stack at (r, c) from the columns to
    the left and returns the logits (B, K, C) of pixel (r, c). Each layer convolves only
    the few rows/columns its kernel covers. In exact mode every value equals the one the
    full forward pass computes, bit for bit, because exact arithmetic does not depend on
    the shape of the tensors it runs on.
    """

    def __init__(self, model: GatedPixelCNN, batch: int, height: int, width: int):
        self.model = model
        n = len(model.layers)
        self.v_rows: list[list[torch.Tensor]] = [[] for _ in range(n)]  # gated vertical outputs
        self.v_link: list[torch.Tensor | None] = [None] * n  # vertical-to-horizontal link, current row
        self.h_cols: list[list[torch.Tensor]] = [[] for _ in range(n + 1)]  # inputs of layer l

    def _rows(self, rows: list[torch.Tensor], keep: int) -> torch.Tensor:
        del rows[:-keep]
        return torch.cat(rows, dim=2)

    @torch.no_grad()
    def begin_row(self, x: torch.Tensor, r: int) -> None:
        m = self.model
        for i, layer in enumerate(m.layers):
            kh = layer.v.conv.kernel_size[0]
            if i == 0:  # strictly above: rows r-kh..r-1 of the image (row r is not used)
                src = m.embed(x[:, :, max(0, r - kh): r + 1])
            else:
                src = self._rows(self.v_rows[i - 1], kh)
            link, out = layer.vertical(src)
            self.v_link[i] = link[:, :, -1:]
            if i + 1 < len(m.layers):  # the next layer's input
                self.v_rows[i].append(out[:, :, -1:])
        self.h_cols = [[] for _ in range(len(m.layers) + 1)]

    @torch.no_grad()
    def step(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor:
        m = self.model
        for i, layer in enumerate(m.layers):
            kw = layer.h.conv.kernel_size[1]
            if i == 0:  # strictly left: columns c-kw..c-1 of row r (column c is not used)
                src = m.embed(x[:, :, r: r + 1, max(0, c - kw): c + 1])
            else:
                cols = self.h_cols[i]
                del cols[:-kw]
                src = torch.cat(cols, dim=3)
            h = layer.horizontal(src, self.v_link[i][:, :, :, max(0, c - src.shape[3] + 1): c + 1])
            self.h_cols[i + 1].append(h[:, :, :, -1:])
        return m.logits(self.h_cols[-1][-1])[:, :, :, 0, 0]
