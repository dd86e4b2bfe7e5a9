"""Causal building blocks shared by the autoregressive models.

Every layer has two modes: the float path used for training, and the exact path
(``self.exact = True``, float64 inputs) used by the codec. See :mod:`arcodec.exact`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from arcodec import exact
from arcodec.models.gated_layout import causal_pad


class ExactModule(nn.Module):
    """A module whose forward has a float path and an exact path, chosen by ``exact``."""

    exact: bool = False


def set_exact(model: nn.Module, flag: bool = True) -> nn.Module:
    """Switch every layer of ``model`` to the exact (codec) or float (training) path."""
    for m in model.modules():
        if isinstance(m, ExactModule):
            m.exact = flag
    return model


def float_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the float path (its mode and gradients as they are), for work
    that needs float arithmetic (gradients, float NLL): the model itself stays as it is, so a
    cached exact model (the zoo's, which the codec uses) is never switched in place."""
    return set_exact(copy.deepcopy(model), False)


def quantized_cached(module: nn.Module, tensors: tuple, make):
    """``make()`` (quantized weights for :mod:`exact`), cached on ``module`` until one of
    ``tensors`` (weights, bias, mask; None allowed) changes in place or is replaced."""
    key = tuple(None if t is None else (t._version, t.data_ptr()) for t in tensors)
    cache = module.__dict__.get("_qcache")
    if cache is None or cache[0] != key:
        cache = (key, make())
        module.__dict__["_qcache"] = cache
    return cache[1]


class CausalConv2d(ExactModule):
    """A convolution whose output at (i, j) sees only a causal neighbourhood of its input.

    The padding is explicit (possibly negative, which crops), so that output position
    (i, j) of any crop of the input equals output (i, j) of the full image as long as the
    crop holds the receptive field. ``kind`` ("down": the vertical stack, "right": the
    horizontal one, "point": 1x1) and ``shift``: :func:`arcodec.models.gated_layout.causal_pad`,
    which the Gated PixelCNN's torch-free engine reads too.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], kind: str, shift: bool = False,
                 dilation: int = 1, bias: bool = True):
        super().__init__()
        self.pad = causal_pad(kind, kernel, shift, dilation)
        self.dilation = dilation
        self.conv = nn.Conv2d(cin, cout, kernel, dilation=dilation, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        return self._conv(x)

    def last_column(self, x: torch.Tensor) -> torch.Tensor:
        """The output's last column only: what a decoder step needs (equal to
        ``self(x)[..., -1:]``, without computing the other columns)."""
        if any(self.pad):
            x = F.pad(x, self.pad)
        return self._conv(x[..., -((self.conv.kernel_size[1] - 1) * self.dilation + 1):])

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        if self.exact:
            return exact.conv2d(x, self._quantized(), self.dilation)
        return self.conv(x)

    def _quantized(self):
        """Quantized weights, recomputed only when the weights change."""
        w, b = self.conv.weight, self.conv.bias
        return quantized_cached(self, (w, b), lambda: exact.quantize_conv(w, b))


class Gate(ExactModule):
    """Gated activation tanh(a) * sigmoid(b), a and b the two halves of the channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        if self.exact:
            return exact.gate(a, b)
        return torch.tanh(a) * torch.sigmoid(b)


def colour_groups(n: int, colours: int) -> torch.Tensor:
    """Colour group (0..colours-1) of each of ``n`` feature maps: contiguous blocks, the
    first block for R, then G, then B (``i * colours // n``). With ``n == colours`` (an
    image's channels) feature map c is group c."""
    return torch.arange(n) * colours // n


def conv_mask(cin: int, cout: int, kernel: tuple[int, int], mask_type: str, colours: int = 1) -> torch.Tensor:
    """The PixelCNN mask (cout, cin, kh // 2 + 1, kw) of a ``kh x kw`` kernel, rows below the
    centre left out: every row above the centre and the columns left of the centre are on;
    at the centre, output group g sees input groups < g (type "A") or <= g (type "B")."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask type must be 'A' or 'B', got {mask_type!r}")
    kh, kw = kernel
    mask = torch.ones(cout, cin, kh // 2 + 1, kw)
    mask[:, :, kh // 2, kw // 2:] = 0.0
    gin, gout = colour_groups(cin, colours), colour_groups(cout, colours)
    centre = gout[:, None] > gin[None, :] if mask_type == "A" else gout[:, None] >= gin[None, :]
    mask[:, :, kh // 2, kw // 2] = centre.float()
    return mask


class MaskedConv2d(ExactModule):
    """PixelCNN masked convolution (van den Oord et al., 2016, "Pixel Recurrent Neural
    Networks"), type "A" (the centre pixel is hidden) or "B" (the centre pixel is seen),
    with the colour masks of the paper when ``colours`` > 1: the feature maps of input and
    output are split into ``colours`` contiguous groups (R, G, B; the channels of the
    image for the input layer), and at the centre output group g sees input groups < g
    (A) or <= g (B). Positions above the centre row and left of the centre are always seen.

    The kernel rows below the centre are always masked, so they are not stored: the weight
    is (cout, cin, kh // 2 + 1, kw), the ``mask`` buffer has the same shape. The padding is
    explicit (zeros above, left and right), so that output (i, j) of a crop of rows equals
    output (i, j) of the whole image whenever the crop holds the rows above that it
    reaches ((kh // 2) * dilation). The output has the input's height and width.

    Exact path: ``weight * mask`` quantized by :func:`exact.quantize_conv` (cached until
    the weights or the mask change), then :func:`exact.conv2d`.
    """

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], mask_type: str, colours: int = 1,
                 dilation: int = 1, bias: bool = True):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if kh % 2 == 0 or kw % 2 == 0 or dilation < 1:
            raise ValueError(f"masked convolutions need odd kernel sizes and dilation >= 1, got "
                             f"{kh}x{kw}, dilation {dilation}")
        self.mask_type, self.colours, self.dilation = mask_type, colours, dilation
        self.kernel = (kh, kw)
        self.conv = nn.Conv2d(cin, cout, (kh // 2 + 1, kw), dilation=dilation, bias=bias)
        self.register_buffer("mask", conv_mask(cin, cout, (kh, kw), mask_type, colours))
        side = (kw // 2) * dilation
        self.pad = (side, side, (kh // 2) * dilation, 0)

    def extra_repr(self) -> str:
        return f"type={self.mask_type}, kernel={self.kernel}, colours={self.colours}, dilation={self.dilation}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        if self.exact:
            return exact.conv2d(x, self._quantized(), self.dilation)
        return F.conv2d(x, self.conv.weight * self.mask, self.conv.bias, dilation=self.dilation)

    def _quantized(self):
        """Quantized masked weights, recomputed only when the weights or the mask change."""
        w, b, m = self.conv.weight, self.conv.bias, self.mask
        return quantized_cached(self, (w, b, m), lambda: exact.quantize_conv(w.detach() * m, b))


class ChannelNorm(ExactModule):
    """Layer normalisation over the channels of each pixel, separately for each of the
    ``colours`` contiguous groups of channels (so that it keeps the colour masks causal),
    then a per-channel scale and shift. Normalising over rows or columns as well would let
    every pixel see the whole image.

    Exact path: :func:`exact.group_norm` (integer mean and variance, an integer
    reciprocal-square-root table) and :func:`exact.scale_shift`: the same bits on every
    machine.
    """

    def __init__(self, channels: int, colours: int = 1, eps: float = 1e-5):
        super().__init__()
        if channels % colours:
            raise ValueError(f"{channels} channels do not split into {colours} colour groups")
        self.colours, self.eps = colours, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.exact:
            return exact.scale_shift(exact.group_norm(x, self.colours, self.eps), self._quantized())
        b, c, h, w = x.shape
        g = x.view(b, self.colours, c // self.colours, h, w)
        mean = g.mean(dim=2, keepdim=True)
        var = (g - mean).pow(2).mean(dim=2, keepdim=True)
        y = ((g - mean) / torch.sqrt(var + self.eps)).view(b, c, h, w)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def _quantized(self):
        w, b = self.weight, self.bias
        return quantized_cached(self, (w, b), lambda: exact.quantize_conv(w.detach().view(-1, 1, 1, 1), b))
