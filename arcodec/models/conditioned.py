"""Auxiliary-variable conditioning: a colour PixelCNN-MADE given the image's grayscale
version (the "PixelCNN with auxiliary variables" of the course, lecture 2).

    p(colour) = p(gray) p(colour | gray),   gray = r + g + b

The grayscale of a C-channel image of K levels is the sum of its channels, an integer in
0..C(K-1) (0..9 for colour MNIST's 3 channels of 4 levels): a function of the colour
image, so p(colour) = p(gray, colour) exactly, and a two-part code (gray first, with a
grayscale model; then colour given gray) is a lossless code of the colour image.

``gray-pixelcnn-made``: the PixelCNN-MADE of :mod:`arcodec.models.pixelcnn_made` (phi of
the colour pixels before i, a MADE over the channels of pixel i) whose per-pixel features
also receive features of the *whole* grayscale image (centred, unmasked convolutions of
its one-hot levels). Reading all of the grayscale image, pixel i and later ones included,
is allowed: the decoder has it before it decodes any colour. ``forward(x, gray=None)``;
without ``gray`` the model takes the gray of ``x`` itself (as a constant: no gradient
flows through it, so the causality check still sees the colour dependencies only).

The colour-given-gray model cannot stand alone in an .arc file (the file would need the
gray image): :func:`bind_gray` makes it an ordinary autoregressive model of the colour
image for the coder functions of :mod:`arcodec.codec.autoregressive`, as
``benchmarks/gray_colour.py`` does for the two-part code.

Data set ``colour-mnist-gray``: the gray of colour MNIST's images (10 levels).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arcodec import exact
from arcodec.models.layers import ExactModule, quantized_cached
from arcodec.models.made import one_hot
from arcodec.models.pixelcnn_made import PixelCNNMADE, PixelCNNMADEConfig
from arcodec.registry import register_model


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) integer levels -> (B, 1, H, W) their sum over the channels (same dtype):
    the conditioning variable, the grayscale of colour MNIST (r + g + b, 0..9) that
    ``gray-pixelcnn-made`` is given (data set ``colour-mnist-gray`` holds it)."""
    return x.sum(dim=1, keepdim=True)


class CentredConv2d(ExactModule):
    """An unmasked k x k convolution with zero padding (output size = input size): for an
    input every position may see, such as the gray image. Exact like the masked layers."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"odd kernel sizes are required, got {kernel}")
        self.conv = nn.Conv2d(cin, cout, kernel)
        self.pad = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad
        x = F.pad(x, (p, p, p, p)) if p else x
        if self.exact:
            w, b = self.conv.weight, self.conv.bias
            return exact.conv2d(x, quantized_cached(self, (w, b), lambda: exact.quantize_conv(w, b)))
        return self.conv(x)


@dataclass(frozen=True)
class GrayPixelCNNMADEConfig(PixelCNNMADEConfig):
    channels: int = 3
    levels: int = 4
    gray_hidden: int = 32  # feature maps of the grayscale network
    gray_kernel: int = 5  # its centred convolutions
    gray_layers: int = 2  # how many (then a 1x1 layer to the features)
    constrain: bool = True  # give the levels that contradict the gray no probability (see the class)

    def __post_init__(self):
        super().__post_init__()
        if self.gray_hidden < 1 or self.gray_layers < 1 or self.gray_kernel % 2 == 0:
            raise ValueError("gray_hidden >= 1, gray_layers >= 1 and an odd gray_kernel are required")
        if not self.causal:
            raise ValueError("gray-pixelcnn-made has no non-causal ablation")

    @property
    def gray_levels(self) -> int:
        return self.channels * (self.levels - 1) + 1

    def base(self) -> PixelCNNMADEConfig:
        """The settings of the PixelCNN-MADE it extends."""
        names = {f.name for f in dataclasses.fields(PixelCNNMADEConfig)}
        return PixelCNNMADEConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


@register_model("gray-pixelcnn-made", GrayPixelCNNMADEConfig)
class GrayPixelCNNMADE(ExactModule):
    """p(colour | gray): PixelCNN-MADE features plus features of the whole gray image.

    With ``constrain`` (the default) the logits of every level that contradicts the gray are
    set to -ACT_LIMIT: channel c's value v is possible only if what is left of the gray,
    gray - (channels before c) - v, lies in 0..(channels after c) * (K - 1). So the last
    channel is determined by the gray and the others (it costs ~0 bits) and no probability
    goes to colour images of another gray. The mask is a function of the gray and the
    channels before c only (a constant for the gradient): it keeps the model causal."""

    codec_refusal = ("is conditioned on the image's grayscale version, which .arc files do not carry "
                     "(benchmarks/gray_colour.py codes gray first, then colour given gray)")

    def __init__(self, config: GrayPixelCNNMADEConfig):
        super().__init__()
        self.config = c = config
        self.pixelcnn = PixelCNNMADE(c.base())
        sizes = [c.gray_levels] + [c.gray_hidden] * c.gray_layers
        self.gray_convs = nn.ModuleList(CentredConv2d(a, b, c.gray_kernel) for a, b in zip(sizes[:-1], sizes[1:]))
        self.gray_out = CentredConv2d(c.gray_hidden, c.features, 1)

    def gray_features(self, gray: torch.Tensor) -> torch.Tensor:
        """(B, features, H, W) from the whole gray image (B, 1, H, W)."""
        h = one_hot(gray.detach()[:, 0], self.config.gray_levels, self.exact).permute(0, 3, 1, 2)
        for conv in self.gray_convs:
            h = torch.relu(conv(h))
        return self.gray_out(h)

    def forward(self, x: torch.Tensor, gray: torch.Tensor | None = None) -> torch.Tensor:
        b, C, H, W = x.shape
        if gray is None:
            gray = to_gray(x.detach().round().long() if x.is_floating_point() else x)
        if gray.shape != (b, 1, H, W):
            raise ValueError(f"gray image of shape {tuple(gray.shape)} for colour images {tuple(x.shape)}")
        p = self.pixelcnn
        phi = p.context(x) + self.gray_features(gray)
        if self.exact:
            phi = phi.clamp(-exact.ACT_LIMIT, exact.ACT_LIMIT)
        ctx = phi.permute(0, 2, 3, 1).reshape(b * H * W, -1)
        xs = x.permute(0, 2, 3, 1).reshape(b * H * W, C)
        out = p.made(xs, ctx)  # (B*H*W, K, C)
        if self.config.constrain:
            out = torch.where(self._possible(xs, gray), out, torch.full_like(out, -exact.ACT_LIMIT))
        return out.view(b, H, W, self.config.levels, C).permute(0, 3, 4, 1, 2)


    def _possible(self, xs: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
        """(P, K, C) bool: level k of channel c agrees with the gray, given the channels before c."""
        C, K = self.config.channels, self.config.levels
        v = xs.detach().round().long() if xs.is_floating_point() else xs.long()
        before = torch.cumsum(v, dim=1) - v  # (P, C): the sum of the channels before c
        rest = gray.detach().reshape(-1, 1, 1).long() - before.unsqueeze(1) - torch.arange(K).view(1, K, 1)
        room = ((C - 1 - torch.arange(C)) * (K - 1)).view(1, 1, C)
        return (rest >= 0) & (rest <= room)


class GrayBound(nn.Module):
    """``model`` with its gray images bound: an autoregressive model of n colour images
    (n, C, h, W) -> logits, for the coder. The rows given may be the top h of the images
    (the encoder's bands, the naive decoder's crops): the rows below are filled with zeros,
    which the causal colour path never reads for the rows above, and the gray path sees the
    whole gray image every time, so a crop gives the full pass's numbers."""

    def __init__(self, model: GrayPixelCNNMADE, gray: torch.Tensor):
        super().__init__()
        self.model, self.gray = model, gray
        self.config = model.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, C, h, W = x.shape
        H = self.gray.shape[2]
        if n != len(self.gray) or h > H or W != self.gray.shape[3]:
            raise ValueError(f"colour tiles {tuple(x.shape)} do not match the bound gray images "
                             f"{tuple(self.gray.shape)}")
        full = torch.cat([x, x.new_zeros(n, C, H - h, W)], dim=2) if h < H else x
        return self.model(full, self.gray)[:, :, :, :h]


def bind_gray(model: GrayPixelCNNMADE, gray: torch.Tensor) -> GrayBound:
    """:class:`GrayBound` of ``model`` and gray images (n, 1, H, W)."""
    return GrayBound(model, gray)
