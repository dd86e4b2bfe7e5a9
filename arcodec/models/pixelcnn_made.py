"""PixelCNN-MADE: PixelCNN features of the previous pixels, a MADE over the channels of
the current pixel.

    p(x_i^1..C | x_<i) = prod_c g(x_i^c | x_i^<c, phi_i),   phi_i = phi(x_<i)

phi is a PixelCNN without colour masks (colours=1): a type-A first layer hides every
channel of pixel i, the type-B blocks keep it hidden, so phi_i sees the pixels before i
only. The MADE (:class:`~arcodec.models.made.MADE`, ``context=features``) reads the true
channels of pixel i (teacher forcing) and phi_i, and gives the logits of channel c from
the channels before c. ``forward(x)``: (B, C, H, W) integer levels -> logits (B, K, C, H, W).

Exact mode: the masked convolutions, ReLU and the MADE's masked linear layers are exact
(the MADE's context is phi on the activation grid, its input a one-hot), so the codec can
use the model. The naive decoder calls it once per channel of a pixel with the channels
already decoded filled in; channels not yet decoded are zeros, which the MADE's masks
(exactly zero weights) and the type-A first layer never read.
"""

from __future__ import annotations

import torch
from torch import nn

from arcodec.models.layers import MaskedConv2d
from arcodec.models.made import MADE
from arcodec.models.pixelcnn import LevelModel, PixelCNNIncremental, ResidualBlock
from arcodec.models.pixelcnn_layout import PixelCNNMADEConfig, receptive_field
from arcodec.registry import register_model


@register_model("pixelcnn-made", PixelCNNMADEConfig)
class PixelCNNMADE(LevelModel):
    """PixelCNN features of x_<i, a MADE over the C channels of pixel i (module docstring)."""

    def __init__(self, config: PixelCNNMADEConfig):
        super().__init__()
        self.config = c = config
        self.first = MaskedConv2d(c.channels, c.hidden, c.first_kernel, "A" if c.causal else "B", 1)
        self.blocks = nn.ModuleList(ResidualBlock(c.hidden, c.kernel, 1, c.norm) for _ in range(c.blocks))
        self.features = MaskedConv2d(c.hidden, c.features, 1, "B", 1)
        self.made = MADE(c.channels, c.levels, (c.made_hidden,) * c.made_layers, context=c.features)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """phi (B, features, H, W): position i from the pixels before i."""
        h = self.first(self.embed(x))
        for block in self.blocks:
            h = block(h)
        return torch.relu(self.features(torch.relu(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, C, H, W = x.shape
        phi = self.context(x)
        ctx = phi.permute(0, 2, 3, 1).reshape(b * H * W, -1)
        xs = x.permute(0, 2, 3, 1).reshape(b * H * W, C)  # the MADE reads the true channels
        out = self.made(xs, ctx)  # (B*H*W, K, C)
        return out.view(b, H, W, self.config.levels, C).permute(0, 3, 4, 1, 2)

    def receptive_field(self) -> tuple[int, int]:
        """(rows above, columns to either side) that a pixel's distribution can depend on."""
        return receptive_field(self.config)

    def incremental(self, batch: int, height: int, width: int) -> "PixelCNNMADEStepper":
        return PixelCNNMADEStepper(self, batch, height, width)


class PixelCNNMADEStepper:
    """Decoder steps: phi at (r, c) once per pixel, its trunk (the type-A layer and the
    residual blocks, the same layers as a PixelCNN's) through
    :class:`~arcodec.models.pixelcnn.PixelCNNIncremental`'s ring buffers, one position a
    layer; then the MADE alone for each channel of the pixel. In exact mode every value
    equals the full pass's: exact arithmetic does not depend on the crop it runs on, and
    the MADE reads only the channels already decoded."""

    def __init__(self, model: PixelCNNMADE, batch: int, height: int, width: int):
        self.model = model
        self.trunk = PixelCNNIncremental(model, batch, height, width)
        self.at: tuple[int, int] | None = None
        self.ctx: torch.Tensor | None = None

    @torch.no_grad()
    def begin_row(self, x: torch.Tensor, r: int) -> None:
        self.trunk.begin_row(x, r)

    @torch.no_grad()
    def step(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor:
        m = self.model
        if self.at != (r, c):  # phi_i does not read pixel i: once per pixel
            h = self.trunk.features(x, r, c)
            self.ctx = torch.relu(m.features(torch.relu(h)))[:, :, 0, 0]
            self.at = (r, c)
        return m.made(x[:, :, r, c], self.ctx)  # (B, K, C)
