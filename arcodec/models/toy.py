"""The warm-up models of the course (CS294-158, homework 1), as arcodec models.

Every row of the "image" x (B, 1, H, W) is read as independent samples; logits come out
as (B, K, 1, H, W) like every other model's.

* ``histogram``: p(x) = softmax(theta)_x, theta initialised to 0; every position gets the
  same distribution (the 1-D data set is an (N, 1) image).
* ``ar-mlp-2d``: p(x1) p(x2 | x1): theta for x1, an MLP on one-hot(x1) for x2.
* ``made-2d``: a :class:`~arcodec.models.made.MADE` over (x1, x2).

The 2-D models read columns (2j, 2j+1) of a row as one sample (x1, x2): the 2-D data set
is an (N, 2) image, so W = 2 there; any even width works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from arcodec import exact
from arcodec.models.layers import ExactModule
from arcodec.models.made import MADE, MaskedLinear, one_hot
from arcodec.registry import register_model


def _check(channels: int, levels: int) -> None:
    if channels != 1:
        raise ValueError("the toy models code one channel")
    if levels < 2:
        raise ValueError("levels >= 2 is required")


@dataclass(frozen=True)
class HistogramConfig:
    channels: int = 1
    levels: int = 100

    def __post_init__(self):
        _check(self.channels, self.levels)


@dataclass(frozen=True)
class ArMlp2dConfig:
    channels: int = 1
    levels: int = 200
    hidden: int = 128  # width of the MLP's hidden layers
    layers: int = 2  # hidden layers of the MLP

    def __post_init__(self):
        _check(self.channels, self.levels)
        if self.layers < 1 or self.hidden < 1:
            raise ValueError("hidden >= 1 and layers >= 1 are required")


@dataclass(frozen=True)
class Made2dConfig:
    channels: int = 1
    levels: int = 200
    hidden: int = 128
    layers: int = 2

    def __post_init__(self):
        _check(self.channels, self.levels)
        if self.layers < 1 or self.hidden < 1:
            raise ValueError("hidden >= 1 and layers >= 1 are required")


class Logits(ExactModule):
    """K free logits theta, initialised to 0 (the uniform distribution)."""

    def __init__(self, levels: int):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(levels))

    def forward(self) -> torch.Tensor:
        return exact.to_grid(self.theta.detach().double()) if self.exact else self.theta


class RowStepper:
    """Decoder steps for models whose rows are independent: each step evaluates row r only
    (bit-identical to the full pass in exact mode, whatever the crop)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def begin_row(self, x: torch.Tensor, r: int) -> None:
        pass

    @torch.no_grad()
    def step(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor:
        return self.model(x[:, :, r: r + 1])[:, :, :, 0, c]


class _RowModel(ExactModule):
    """Shared by the toy models: rows independent, samples of ``width`` columns."""

    width = 1  # columns per sample

    def _samples(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B*H*W/width, width), the samples of every row."""
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[3] % self.width:
            raise ValueError(f"{self.arch} codes (B, 1, H, W) with W a multiple of {self.width}, "
                             f"got {tuple(x.shape)}")
        return x.reshape(-1, self.width)

    def _image(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits (B*H*W/width, K, width) back to (B, K, 1, H, W)."""
        b, _, h, w = x.shape
        k = logits.shape[1]
        return logits.reshape(b, h, w // self.width, k, self.width).permute(0, 3, 1, 2, 4).reshape(
            b, k, 1, h, w)

    def receptive_field(self) -> tuple[int, int]:
        """(rows above, columns to the left) a value's distribution can depend on."""
        return 0, self.width - 1

    def incremental(self, batch: int, height: int, width: int) -> RowStepper:
        return RowStepper(self)


@register_model("histogram", HistogramConfig)
class Histogram(_RowModel):
    causality_shape = (4, 1)

    def __init__(self, config: HistogramConfig):
        super().__init__()
        self.config = config
        self.theta = Logits(config.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return self.theta().view(1, -1, 1, 1, 1).expand(b, -1, 1, h, w)


@register_model("ar-mlp-2d", ArMlp2dConfig)
class ArMlp2d(_RowModel):
    """p(x1) = softmax(theta); p(x2 | x1) = softmax(MLP(one-hot(x1)))."""

    width = 2
    causality_shape = (4, 2)

    def __init__(self, config: ArMlp2dConfig):
        super().__init__()
        self.config = c = config
        self.theta = Logits(c.levels)
        sizes = [c.levels] + [c.hidden] * c.layers + [c.levels]
        self.mlp = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self._samples(x)
        h = one_hot(s[:, 0], self.config.levels, self.exact)
        for i, layer in enumerate(self.mlp):
            h = layer(h) if i == 0 else layer(torch.relu(h))
        first = self.theta().view(1, -1).expand(len(s), -1)
        return self._image(torch.stack([first, h], dim=2), x)


@register_model("made-2d", Made2dConfig)
class Made2d(_RowModel):
    """A MADE over (x1, x2), natural ordering."""

    width = 2
    causality_shape = (4, 2)

    def __init__(self, config: Made2dConfig):
        super().__init__()
        self.config = c = config
        self.made = MADE(2, c.levels, [c.hidden] * c.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._image(self.made(self._samples(x)), x)
