"""The PixelCNN family. Tensors in, logits out: ``forward(x)`` maps integer images
(B, C, H, W) to logits (B, K, C, H, W) over the K intensity levels of every sub-pixel.

* ``pixelcnn`` — PixelCNN (van den Oord et al., 2016, "Pixel Recurrent Neural Networks",
  Table 1): a 7x7 type-A masked convolution, residual blocks of 1x1 / 3x3 / 1x1 type-B
  masked convolutions, two 1x1 type-B layers to the logits. Colour masks for C > 1. Its
  3x3 masks leave a blind spot above right of every pixel.
* ``stack-pixelcnn`` — the vertical / horizontal stacks of the Gated PixelCNN without the
  gates: no blind spot, ReLU units.
* ``gated-pixelcnn`` — Gated PixelCNN (van den Oord et al., 2016, "Conditional Image
  Generation with PixelCNN Decoders"): a vertical stack that sees every row above, a
  horizontal stack that sees the pixels to the left, gated tanh * sigmoid units, a
  residual connection in the horizontal stack and a link from the vertical to the
  horizontal stack. Optional dilations and a class-conditional bias.

Every model has ``causal: bool = True``; ``causal=False`` lets pixel i see input pixel i
(an ablation for study only: such a model cannot be decoded, and the codec refuses it).
``receptive_field()`` gives (rows above, columns to either side) that a pixel's
distribution can depend on; the encoder computes bands of rows from crops that hold them.

Every model has a decoder stepper, ``incremental(batch, height, width)``
(:class:`PixelCNNIncremental`, :class:`StackIncremental`, :class:`GatedIncremental`): it
caches each layer's activations and computes only the positions a new pixel changes, so
a decoder step costs the same on any image size; in exact mode its logits equal the full
pass's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arcodec import exact
from arcodec.models.heads import DiscretizedLogisticMixture
from arcodec.models.gated_layout import GatedPixelCNNConfig, layer_shape, receptive_field
from arcodec.models.pixelcnn_layout import PixelCNNConfig, check_common
from arcodec.models.pixelcnn_layout import receptive_field as pixelcnn_receptive_field
from arcodec.models.layers import CausalConv2d, ChannelNorm, ExactModule, Gate, MaskedConv2d, set_exact
from arcodec.registry import register_model


class LevelModel(ExactModule):
    """The base of the PixelCNN family and of the classic models (:mod:`arcodec.models.classic`):
    integer levels in, inputs in [-1, 1] to the first layer."""

    config: object

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Integer levels 0..K-1 to inputs in [-1, 1] (float64 on the grid in exact mode)."""
        if self.exact:
            return exact.to_grid(x.double() * (2.0 / (self.config.levels - 1)) - 1.0)
        return x.float() * (2.0 / (self.config.levels - 1)) - 1.0

    def clamped_sum(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a + b, clamped to the activation range in exact mode."""
        return (a + b).clamp(-exact.ACT_LIMIT, exact.ACT_LIMIT) if self.exact else a + b


# ----------------------------------------------------------------------------- PixelCNN

class ResidualBlock(ExactModule):
    """x + 1x1(ReLU(kxk(ReLU(1x1(ReLU(norm(x))))))), all type B, halving then restoring the width.

    ``start`` (per pixel, up to the kxk convolution's input) and ``finish`` (per pixel, from
    its output) split the block around its one spatial layer, for the decoder stepper."""

    def __init__(self, width: int, kernel: int, colours: int, norm: bool):
        super().__init__()
        self.norm = ChannelNorm(width, colours) if norm else None
        self.reduce = MaskedConv2d(width, width // 2, 1, "B", colours)
        self.conv = MaskedConv2d(width // 2, width // 2, kernel, "B", colours)
        self.expand = MaskedConv2d(width // 2, width, 1, "B", colours)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(x, self.conv(self.start(x)))

    def start(self, x: torch.Tensor) -> torch.Tensor:
        """The kxk convolution's input, ReLU(1x1(ReLU(norm(x))))."""
        h = x if self.norm is None else self.norm(x)
        return torch.relu(self.reduce(torch.relu(h)))

    def finish(self, x: torch.Tensor, conv: torch.Tensor) -> torch.Tensor:
        """The block's output from its input x and the kxk convolution's output."""
        h = self.expand(torch.relu(conv))
        return (x + h).clamp(-exact.ACT_LIMIT, exact.ACT_LIMIT) if self.exact else x + h


@register_model("pixelcnn", PixelCNNConfig)
class PixelCNN(LevelModel):
    """Exact mode: masked convolutions and ReLU are exact; the layer normalisation
    (``norm=True``) runs in integer arithmetic (:func:`exact.group_norm`), and so does the
    logistic mixture head (``mixture`` > 0, :func:`exact.logistic_mixture`), so every
    option works in the codec.

    ``mixture`` = M > 0: the last layer gives every sub-pixel M mixture logits, means and
    log scales (PixelCNN++'s output, without its coupling of the colour channels: channel c
    sees channels < c through the colour masks instead), and
    :class:`~arcodec.models.heads.DiscretizedLogisticMixture` turns them into
    log-probabilities over the K levels, which take the place of the logits."""

    def __init__(self, config: PixelCNNConfig):
        super().__init__()
        self.config = c = config
        C = c.channels
        self.first = MaskedConv2d(C, c.hidden, c.first_kernel, "A" if c.causal else "B", C)
        self.blocks = nn.ModuleList(ResidualBlock(c.hidden, c.kernel, C, c.norm) for _ in range(c.blocks))
        self.head = nn.Sequential(
            nn.ReLU(), MaskedConv2d(c.hidden, c.head, 1, "B", C),
            nn.ReLU(), MaskedConv2d(c.head, C * (3 * c.mixture if c.mixture else c.levels), 1, "B", C))
        if c.mixture:  # no parameters: categorical state dicts are unchanged
            self.mixture = DiscretizedLogisticMixture(c.levels, c.mixture)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(self.embed(x))
        for block in self.blocks:
            h = block(h)
        return self.logits(h)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The head: features (B, hidden, H, W) of the last block to logits (B, K, C, H, W)."""
        b, _, hh, ww = h.shape
        out = self.head(h)
        if self.config.mixture:  # channel c's block: M logits, M means, M log scales
            return self.mixture(*self.mixture.split(out))
        # the output's colour groups are contiguous: channel c's K logits are block c
        return out.view(b, self.config.channels, self.config.levels, hh, ww).transpose(1, 2)

    def receptive_field(self) -> tuple[int, int]:
        """(rows above, columns to either side) that a pixel's distribution can depend on."""
        return pixelcnn_receptive_field(self.config)

    def incremental(self, batch: int, height: int, width: int) -> "PixelCNNIncremental":
        return PixelCNNIncremental(self, batch, height, width)


def unpadded(conv: MaskedConv2d | CausalConv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` on a window x of its padded input, without the padding its forward adds:
    the steppers keep the zero padding of the image borders in their buffers. The layer's
    own arithmetic (its quantized weights and :func:`exact.conv2d` in exact mode), so the
    outputs are the full pass's at the window's positions, bit for bit."""
    if isinstance(conv, CausalConv2d):
        return conv._conv(x)
    if conv.exact:
        return exact.conv2d(x, conv._quantized(), conv.dilation)
    return F.conv2d(x, conv.conv.weight * conv.mask, conv.conv.bias, dilation=conv.dilation)


def padded_crop(model: LevelModel, x: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """Embedded levels of x (B, C, H, W) at rows [r0, r1) and columns [c0, c1), which may
    reach past the image's top, left and right borders: zeros there, as the first layer's
    padding gives."""
    (r0, r1), (c0, c1) = rows, cols
    lo_r, lo_c, hi_c = max(0, r0), max(0, c0), min(x.shape[3], c1)
    return F.pad(model.embed(x[:, :, lo_r: r1, lo_c: hi_c]), (lo_c - c0, c1 - hi_c, lo_r - r0, 0))


def activations(model: LevelModel) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the model's activations (float64 in exact mode)."""
    probe = model.embed(torch.zeros(1, dtype=torch.long, device=next(model.parameters()).device))
    return probe.dtype, probe.device


class RowRing:
    """The last ``rows`` rows of one layer's activations (B, channels, ., width), with
    ``side`` zero columns either side (the layer's padding): each row is written twice,
    at slots r % rows and r % rows + rows, so rows r - rows + 1..r are always one
    contiguous view. Slots of rows above the image are never written: zeros, the padding
    at the top."""

    def __init__(self, batch: int, channels: int, rows: int, width: int, side: int, dtype: torch.dtype,
                 device: torch.device):
        self.rows, self.side = rows, side
        self.data = torch.zeros(batch, channels, 2 * rows, width + 2 * side, dtype=dtype, device=device)

    def write(self, r: int, c0: int, values: torch.Tensor) -> None:
        """values (B, channels, 1, n) at row r, columns c0..c0+n-1."""
        cols = slice(self.side + c0, self.side + c0 + values.shape[3])
        slot = r % self.rows
        self.data[:, :, slot, cols] = values[:, :, 0]
        self.data[:, :, slot + self.rows, cols] = values[:, :, 0]

    def window(self, r: int, c0: int, c1: int) -> torch.Tensor:
        """Rows r - rows + 1..r, the columns that outputs c0..c1-1 of a convolution
        reaching ``side`` columns to either side read (padding included): a view."""
        start = (r + 1) % self.rows
        return self.data[:, :, start: start + self.rows, c0: c1 + 2 * self.side]


class PixelCNNIncremental:
    """Raster-order evaluation of a :class:`PixelCNN` that caches, for every residual
    block, the last rows of its kxk convolution's input (a :class:`RowRing`).

    Position (r, c) of every layer is computed from the window of the layer below that
    its kernel covers: the first layer from the embedded pixels, each block's kxk
    convolution from its ring, its 1x1 layers from position (r, c) alone; so a step costs
    one position of every layer and the head, whatever the image size. The masks keep
    every layer at (r, c) from reading the pixels after (r, c), and colour group g from
    reading channels g.. of pixel (r, c): every call (one per channel) computes position
    (r, c) again from the channels decoded so far, and the call for the last channel, which
    has every channel that position reads, leaves it final for the pixels after it. With
    ``causal=False`` position (r, c) reads the whole pixel (r, c), which its own steps do
    not have yet, so it is computed once more before the next pixel (one step of lag).
    ``begin_row`` computes whatever rows were never stepped through (a sampler's given
    rows), a row at a time. In exact mode every value equals the full pass's, bit for bit:
    exact arithmetic does not depend on the crop it runs on.
    """

    def __init__(self, model: PixelCNN, batch: int, height: int, width: int):
        self.model, self.width = model, width
        c = model.config
        self.lag = not c.causal  # position (r, c) reads all of pixel (r, c)
        dtype, device = activations(model)
        self.rings = [RowRing(batch, c.hidden // 2, b.conv.pad[2] + 1, width, b.conv.pad[0], dtype, device)
                      for b in model.blocks]
        self.done = 0  # raster index: every position before it holds its final activations

    def _compute(self, x: torch.Tensor, r: int, c0: int, c1: int) -> torch.Tensor:
        """Positions (r, c0..c1-1) of every layer, into the rings; the last block's
        output (B, hidden, 1, c1 - c0)."""
        m = self.model
        side, top = m.first.pad[0], m.first.pad[2]
        h = unpadded(m.first, padded_crop(m, x, (r - top, r + 1), (c0 - side, c1 + side)))
        for block, ring in zip(m.blocks, self.rings):
            ring.write(r, c0, block.start(h))
            h = block.finish(h, unpadded(block.conv, ring.window(r, c0, c1)))
        return h

    def _catch_up(self, x: torch.Tensor, upto: int) -> None:
        """Final activations at every position before raster index ``upto``, a row at a time."""
        while self.done < upto:
            r, c0 = divmod(self.done, self.width)
            c1 = min(self.width, upto - r * self.width)
            self._compute(x, r, c0, c1)
            self.done = r * self.width + c1

    @torch.no_grad()
    def begin_row(self, x: torch.Tensor, r: int) -> None:
        self._catch_up(x, r * self.width)

    @torch.no_grad()
    def features(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor:
        """The last block's output at (r, c), (B, hidden, 1, 1): what the head reads (a
        PixelCNN-MADE, whose trunk is this one's, reads it too)."""
        i = r * self.width + c
        self._catch_up(x, i)
        h = self._compute(x, r, c, c + 1)
        if not self.lag:
            self.done = max(self.done, i + 1)
        return h

    @torch.no_grad()
    def step(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor:
        return self.model.logits(self.features(x, r, c))[:, :, :, 0, 0]


# ----------------------------------------------------------------------- stack PixelCNN

@dataclass(frozen=True)
class StackPixelCNNConfig:
    channels: int = 1  # one channel only: colour images are coded channel by channel
    levels: int = 256
    hidden: int = 32  # feature maps of each stack
    layers: int = 8  # layers, the first one included
    first_kernel: int = 7
    kernel: int = 3
    causal: bool = True  # False: the first horizontal layer sees the pixel itself; study only

    def __post_init__(self):
        if self.channels != 1:
            raise ValueError("stack-pixelcnn models one channel; code colour channel by channel "
                             "(or use pixelcnn, which has colour masks)")
        check_common(self.channels, self.levels, (self.first_kernel, self.kernel))
        if self.layers < 1 or self.hidden < 1:
            raise ValueError("layers >= 1 and hidden >= 1 are required")


class StackLayer(ExactModule):
    """One layer of both stacks with ReLU units: vertical v' = ReLU(V * v), horizontal
    h' = h + 1x1(ReLU(H * h + 1x1(V * v))) (no residual in the first layer)."""

    def __init__(self, cin: int, f: int, k: int, first: bool, causal: bool = True):
        super().__init__()
        self.first = first
        if first:  # rows above / pixels to the left, never the current pixel (unless not causal)
            self.v = CausalConv2d(cin, f, (k // 2, k), "down", shift=True)
            self.h = (CausalConv2d(cin, f, (1, k // 2), "right", shift=True) if causal
                      else CausalConv2d(cin, f, (1, k // 2 + 1), "right"))
        else:
            self.v = CausalConv2d(f, f, (k // 2 + 1, k), "down")
            self.h = CausalConv2d(f, f, (1, k // 2 + 1), "right")
        self.link = CausalConv2d(f, f, (1, 1), "point")
        self.out = CausalConv2d(f, f, (1, 1), "point")

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        link, v_out = self.vertical(self.v(v))
        return v_out, self.horizontal(self.h(h), link, h)

    def vertical(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the link to the horizontal stack, the vertical output) from V * v."""
        return self.link(pre), torch.relu(pre)

    def horizontal(self, conv: torch.Tensor, link: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The horizontal output from H * h, the link and the input h (the residual)."""
        y = self.out(torch.relu(conv + link))  # |.| <= 2 ACT_LIMIT: fine for exact.conv2d
        if not self.first:
            y = y + h
        return y.clamp(-exact.ACT_LIMIT, exact.ACT_LIMIT) if self.exact else y


@register_model("stack-pixelcnn", StackPixelCNNConfig)
class StackPixelCNN(LevelModel):
    """Exact mode: causal convolutions and ReLU, all exact."""

    def __init__(self, config: StackPixelCNNConfig):
        super().__init__()
        self.config = c = config
        self.layers = nn.ModuleList(
            StackLayer(c.channels if i == 0 else c.hidden, c.hidden, c.first_kernel if i == 0 else c.kernel,
                       first=i == 0, causal=c.causal)
            for i in range(c.layers))
        self.out = CausalConv2d(c.hidden, c.levels * c.channels, (1, 1), "point")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = h = self.embed(x)
        for layer in self.layers:
            v, h = layer(v, h)
        return self.logits(v, h)

    def logits(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The head: the last layer's vertical and horizontal outputs to logits (B, K, C, H, W)."""
        b, _, hh, ww = h.shape
        return self.out(torch.relu(self.clamped_sum(v, h))).view(b, self.config.levels, self.config.channels, hh, ww)

    def receptive_field(self) -> tuple[int, int]:
        """(rows above, columns to either side) that a pixel's distribution can depend on."""
        c = self.config
        reach = c.first_kernel // 2 + (c.layers - 1) * (c.kernel // 2)
        return reach, reach

    def incremental(self, batch: int, height: int, width: int) -> "StackIncremental":
        return StackIncremental(self, batch, height, width)


class StackIncremental:
    """Raster-order evaluation of a :class:`StackPixelCNN`.

    The vertical stack at row r reads only the rows above, so ``begin_row(x, r)``
    computes row r of every layer's vertical stack, a whole row at a time, from the last
    rows of the layer below (a :class:`RowRing` each). ``step(x, r, c)`` computes position
    (r, c) of every layer's horizontal stack from the columns of row r its kernel covers
    (one zero-padded row buffer per layer) and the link of the vertical stack. A step
    costs one position of every layer and the head, whatever the image size; with
    ``causal=False`` position (r, c) reads pixel (r, c), so it is computed again before
    the next pixel. In exact mode every value equals the full pass's, bit for bit.
    """

    def __init__(self, model: StackPixelCNN, batch: int, height: int, width: int):
        self.model, self.width = model, width
        f, layers = model.config.hidden, model.layers
        dtype, device = activations(model)
        # the input of layer l >= 1 of each stack (the output of layer l - 1)
        self.v_in = [None] + [RowRing(batch, f, (layer.v.conv.kernel_size[0] - 1) * layer.v.dilation + 1, width,
                                      layer.v.pad[0], dtype, device) for layer in layers[1:]]
        # with the horizontal kernel's zero padding on the left
        self.h_in = [None] + [torch.zeros(batch, f, 1, layer.h.pad[0] + width, dtype=dtype, device=device)
                              for layer in layers[1:]]
        self.link = torch.zeros(len(layers), batch, f, 1, width, dtype=dtype, device=device)  # row r's
        self.v_out = torch.zeros(batch, f, 1, width, dtype=dtype, device=device)  # the last layer's, row r
        self.next_row = 0  # the first row whose vertical stack is not computed
        self.done = 0  # raster index: every horizontal position before it (in its row) is final
        self.lag = not model.config.causal

    def _vertical(self, x: torch.Tensor, r: int) -> None:
        m = self.model
        for i, layer in enumerate(m.layers):
            conv = layer.v
            if i == 0:  # the rows above r that the shifted kernel covers, zero padded
                top, rows = conv.pad[2], (conv.conv.kernel_size[0] - 1) * conv.dilation + 1
                src = padded_crop(m, x, (r - top, r - top + rows), (-conv.pad[0], self.width + conv.pad[0]))
            else:
                src = self.v_in[i].window(r, 0, self.width)
            self.link[i], v = layer.vertical(unpadded(conv, src))
            if i + 1 < len(m.layers):
                self.v_in[i + 1].write(r, 0, v)
            else:
                self.v_out.copy_(v)

    def _horizontal(self, x: torch.Tensor, r: int, c0: int, c1: int) -> torch.Tensor:
        """Positions (r, c0..c1-1) of every layer's horizontal stack, into the row
        buffers; the last layer's (B, hidden, 1, c1 - c0)."""
        m = self.model
        h = None
        for i, layer in enumerate(m.layers):
            conv, left = layer.h, layer.h.pad[0]
            if i == 0:  # the columns the (possibly shifted) kernel covers, zero padded
                span = (conv.conv.kernel_size[1] - 1) * conv.dilation + 1
                src = padded_crop(m, x[:, :, r: r + 1], (0, 1), (c0 - left, c1 - 1 - left + span))
            else:
                src = self.h_in[i][..., c0: c1 + left]
            h = layer.horizontal(unpadded(conv, src), self.link[i][..., c0: c1], h)
            if i + 1 < len(m.layers):
                nxt = self.h_in[i + 1]
                pad = nxt.shape[3] - self.width
                nxt[..., pad + c0: pad + c1] = h
        return h

    @torch.no_grad()
    def begin_row(self, x: torch.Tensor, r: int) -> None:
        while self.next_row <= r:
            self._vertical(x, self.next_row)
            self.next_row += 1

    @torch.no_grad()
    def step(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor:
        self.begin_row(x, r)
        start = max(self.done, r * self.width) - r * self.width
        if start < c:  # columns of row r never stepped through
            self._horizontal(x, r, start, c)
        h = self._horizontal(x, r, c, c + 1)
        self.done = r * self.width + c + (0 if self.lag else 1)
        return self.model.logits(self.v_out[..., c: c + 1], h)[:, :, :, 0, 0]


# ----------------------------------------------------------------------- gated PixelCNN

class GatedLayer(ExactModule):
    """One layer of both stacks. The first layer is strictly causal (mask A) unless
    ``causal=False``; ``classes`` > 0 adds a class-conditional bias to both stacks."""

    def __init__(self, cin: int, f: int, k: int, first: bool, dilation: int = 1, classes: int = 0,
                 causal: bool = True):
        super().__init__()
        self.first = first
        shape = layer_shape(cin, f, k, first, dilation, causal)  # the first sees rows above, pixels to the left
        self.v, self.h = (CausalConv2d(s.cin, s.cout, s.kernel, s.kind, shift=s.shift, dilation=s.dilation)
                          for s in (shape.v, shape.h))
        self.link = CausalConv2d(2 * f, 2 * f, (1, 1), "point")
        self.out = CausalConv2d(f, f, (1, 1), "point")
        self.gate = Gate()
        if classes:  # V y for each stack: y is one-hot (B, classes, 1, 1), broadcast over the image
            self.cond_v = CausalConv2d(classes, 2 * f, (1, 1), "point", bias=False)
            self.cond_h = CausalConv2d(classes, 2 * f, (1, 1), "point", bias=False)

    def _add(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a + b).clamp(-exact.ACT_LIMIT, exact.ACT_LIMIT) if self.exact else a + b

    def vertical(self, v: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the vertical stack's contribution to the horizontal one, output of the vertical stack)."""
        pre = self.v(v)
        if y is not None:
            pre = self._add(pre, self.cond_v(y))
        return self.link(pre), self.gate(pre)

    def horizontal(self, h: torch.Tensor, link: torch.Tensor, y: torch.Tensor | None = None,
                   last: bool = False) -> torch.Tensor:
        """The horizontal stack's output; ``last``: its last column only (a decoder step)."""
        pre = (self.h.last_column(h) if last else self.h(h)) + link
        if y is not None:
            pre = pre + self.cond_h(y)  # the gate's tables clamp their inputs
        out = self.out(self.gate(pre))
        if not self.first:
            out = out + (h[:, :, :, -1:] if last else h)
        return out.clamp(-exact.ACT_LIMIT, exact.ACT_LIMIT) if self.exact else out

    def forward(self, v: torch.Tensor, h: torch.Tensor, y: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        link, v = self.vertical(v, y)
        return v, self.horizontal(h, link, y)


@register_model("gated-pixelcnn", GatedPixelCNNConfig)
class GatedPixelCNN(LevelModel):
    """Exact mode: causal convolutions (any dilation), gates by table look-up, the
    class-conditional bias as a 1x1 convolution of the one-hot label: all exact.

    ``forward(x, y=None)``: a class-conditional model (``classes`` > 0) needs the labels y,
    (B,) integers or (B, classes) one-hot; the others take none. The codec has no place
    for labels in its files, so it cannot code with a class-conditional model.
    """

    def __init__(self, config: GatedPixelCNNConfig):
        super().__init__()
        self.config = c = config
        self.layers = nn.ModuleList(
            GatedLayer(c.channels if i == 0 else c.hidden, c.hidden,
                       c.first_kernel if i == 0 else c.kernel, first=i == 0, dilation=d,
                       classes=c.classes, causal=c.causal)
            for i, d in enumerate(c.dilations()))
        self.head = nn.Sequential(
            nn.ReLU(), CausalConv2d(c.hidden, c.head, (1, 1), "point"),
            nn.ReLU(), CausalConv2d(c.head, c.levels * c.channels, (1, 1), "point"))
        # largest activations on training images, the integer engine's scales (set by
        # calibrate(); 0: not calibrated): see calibrate() for the order
        self.register_buffer("act_max", torch.zeros(2 * c.layers + 2))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the integer engine have no act_max: keep it uncalibrated
        state_dict.setdefault(prefix + "act_max", torch.zeros(2 * self.config.layers + 2))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """Set ``act_max`` to the largest magnitudes the float network reaches on ``images``
        (N, 1, H, W) integer levels: the scales of the integer engine
        (:mod:`arcodec.codec.gated`). The order: the vertical pre-activation of every layer,
        the horizontal pre-activation of every layer, the horizontal stack between layers,
        the head's hidden layer. A class-conditional model is calibrated without labels
        (the codec does not code with it)."""
        was, was_exact = self.training, self.exact
        self.eval()
        set_exact(self, False)
        n = len(self.layers)
        peak = [0.0] * (2 * n + 2)
        for i in range(0, len(images), batch):
            v = h = self.embed(images[i: i + batch].long())
            for k, layer in enumerate(self.layers):
                pre_v = layer.v(v)
                pre_h = layer.h(h) + layer.link(pre_v)
                v = layer.gate(pre_v)
                h = layer.out(layer.gate(pre_h)) if layer.first else h + layer.out(layer.gate(pre_h))
                peak[k] = max(peak[k], float(pre_v.abs().max()))
                peak[n + k] = max(peak[n + k], float(pre_h.abs().max()))
                peak[2 * n] = max(peak[2 * n], float(h.abs().max()))
            peak[2 * n + 1] = max(peak[2 * n + 1], float(self.head[:2](h).relu().max()))
        self.train(was)
        set_exact(self, was_exact)
        self.act_max.copy_(torch.tensor(peak))
        return self.act_max

    def condition(self, y: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """Labels to the one-hot (B, classes, 1, 1) the layers take (None without classes)."""
        k = self.config.classes
        if (y is None) != (k == 0):
            raise ValueError(f"this gated-pixelcnn has classes={k}: "
                             + ("forward(x, y) needs the labels y" if k else "it takes no labels y"))
        if y is None:
            return None
        if y.ndim == 1:
            if y.is_floating_point() or int(y.min()) < 0 or int(y.max()) >= k:
                raise ValueError(f"labels must be integers 0..{k - 1}")
            y = F.one_hot(y.long(), k)
        if tuple(y.shape) != (batch, k):
            raise ValueError(f"expected labels (B,) or one-hot (B, {k}) for a batch of {batch}, got {tuple(y.shape)}")
        return y.to(torch.float64 if self.exact else torch.float32).view(batch, k, 1, 1)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        b, _, hh, ww = h.shape
        return self.head(h).view(b, self.config.levels, self.config.channels, hh, ww)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        cond = self.condition(y, x.shape[0])
        v = h = self.embed(x)
        for layer in self.layers:
            v, h = layer(v, h, cond)
        return self.logits(h)

    def receptive_field(self) -> tuple[int, int]:
        """(rows above, columns to either side) that a pixel's distribution can depend on."""
        return receptive_field(self.config)

    def incremental(self, batch: int, height: int, width: int, y: torch.Tensor | None = None
                    ) -> "GatedIncremental":
        return GatedIncremental(self, batch, height, width, y)


class GatedIncremental:
    """Raster-order evaluation that caches every layer's activations.

    ``begin_row(x, r)`` computes the vertical stack for row r from the rows above;
    ``step(x, r, c)`` then computes the horizontal stack at (r, c) from the columns to
    the left and returns the logits (B, K, C) of pixel (r, c). Each layer convolves only
    the few rows/columns its (dilated) kernel covers: (kh - 1) * dilation + 1 rows of the
    layer below, (kw - 1) * dilation + 1 columns. In exact mode every value equals the one
    the full forward pass computes, bit for bit, because exact arithmetic does not depend
    on the shape of the tensors it runs on. Works with every option (dilation, classes:
    pass the labels ``y``, causal=False).
    """

    def __init__(self, model: GatedPixelCNN, batch: int, height: int, width: int, y: torch.Tensor | None = None):
        self.model = model
        n = len(model.layers)
        self.cond = model.condition(y, batch)
        self.v_rows: list[list[torch.Tensor]] = [[] for _ in range(n)]  # gated vertical outputs
        self.v_link: list[torch.Tensor | None] = [None] * n  # vertical-to-horizontal link, current row
        self.h_cols: list[list[torch.Tensor]] = [[] for _ in range(n + 1)]  # inputs of layer l

    @staticmethod
    def _reach(conv: CausalConv2d, dim: int) -> int:
        """Rows (dim 0) or columns (dim 1) of its input one output of ``conv`` spans."""
        return (conv.conv.kernel_size[dim] - 1) * conv.dilation + 1

    def _rows(self, rows: list[torch.Tensor], keep: int) -> torch.Tensor:
        del rows[:-keep]
        return torch.cat(rows, dim=2)

    @torch.no_grad()
    def begin_row(self, x: torch.Tensor, r: int) -> None:
        m = self.model
        for i, layer in enumerate(m.layers):
            if i == 0:  # strictly above: rows r-kh..r-1 of the image (row r is not used)
                kh = self._reach(layer.v, 0)
                src = m.embed(x[:, :, max(0, r - kh): r + 1])
            else:
                src = self._rows(self.v_rows[i - 1], self._reach(layer.v, 0))
            link, out = layer.vertical(src, self.cond)
            self.v_link[i] = link[:, :, -1:]
            if i + 1 < len(m.layers):  # the next layer's input
                self.v_rows[i].append(out[:, :, -1:])
        self.h_cols = [[] for _ in range(len(m.layers) + 1)]

    @torch.no_grad()
    def step(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor:
        m = self.model
        for i, layer in enumerate(m.layers):
            kw = self._reach(layer.h, 1)
            if i == 0:  # columns c-kw..c of row r (column c is not used by a causal model)
                src = m.embed(x[:, :, r: r + 1, max(0, c - kw): c + 1])
            else:
                cols = self.h_cols[i]
                del cols[:-kw]
                src = torch.cat(cols, dim=3)
            h = layer.horizontal(src, self.v_link[i][:, :, :, c: c + 1], self.cond, last=True)
            self.h_cols[i + 1].append(h)
        return m.logits(self.h_cols[-1][-1])[:, :, :, 0, 0]
