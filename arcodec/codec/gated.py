"""The integer engine of Gated PixelCNN models, and its raster-order coder (engine 1).

Built from the weights of a trained :class:`arcodec.models.pixelcnn.GatedPixelCNN` (the model
stays plain float PyTorch; :class:`GatedWeights` reads them from a model file without torch),
on the pieces of :mod:`arcodec.codec.engine` (one exact arithmetic for every engine):

* weights are int8, one scale per output channel; activations are integers in
  [-ACT, ACT] (10 bits and a sign) on calibrated scales (the model's ``act_max`` buffer,
  set by ``calibrate`` at every checkpoint of ``arcodec train``): the vertical and the
  horizontal pre-activation of every layer, one scale for the horizontal stack between
  layers, one for the head's hidden layer. Gate outputs tanh(a) sigmoid(b) lie in (-1, 1):
  integers in [-GATE, GATE];
* every partial sum of a layer stays below 2**24 (at most 192 inputs x 511 x 127 for a 3x3
  layer of 32 channels), so float32 matrix products give exact integers in any order, on any
  machine, for any batch, crop or thread count; a layer too wide for that falls back to
  float64 (exact below 2**53);
* the horizontal pre-activation adds the horizontal convolution and the link from the
  vertical stack in one accumulator (:class:`~arcodec.codec.engine.JointLayer`): the decoder
  computes the link part once per row and the rest at every pixel;
* the gate is two look-ups (tanh and sigmoid of the pre-activation's integer, from the
  integer exponential of :mod:`arcodec.fixed`) and an integer product with a rounding shift;
* the logits come out as integers on the 2**-12 grid, which :func:`arcodec.exact.softmax_weights`
  turns into the coder's tables, as for every autoregressive model.

:class:`GatedEngine` computes whole images (the encoder's teacher-forced pass);
:class:`GatedStepper` decodes in raster order with ring buffers: per row the vertical stack
of every layer on that row only, per pixel the horizontal stack on the few columns each
layer's kernel covers, from preallocated buffers (no lists, no concatenation); in a large
batch, a tile whose pixels so far are all 0 copies a blank tile's state instead
(:func:`_blank_arrays`). Files coded this way carry engine 1 in their header
(``docs/format.md``); files of engine 0 (the float64 fixed-point path of
:mod:`arcodec.exact`) still decode with the model's own stepper.

The engine exists twice, with the same integers: in PyTorch (the encoder's whole-image
pass, and the decoder where numba is missing) and in numpy for the decoder's compiled
kernels and numpy's matrix products (:func:`numpy_decodes`), which decodes digits without
importing torch.
"""

from __future__ import annotations

import importlib.util
import math
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from arcodec import fixed
from arcodec.codec import autoregressive, crew
from arcodec.codec.coders import coder_threads, cores, register_coder, share_out
from arcodec.codec.crew import (COLUMN, COMMAND, EAGER, EXIT, GENERATION, ROW, YIELD_LOADS, Crew, all_done, chunk_done,
                                load_acquire, next_chunk, yield_cpu)
from arcodec.codec.engine import IntLayer, JointLayer, float64
from arcodec.codec.mixture import compile_kernel
from arcodec.models.gated_layout import GatedPixelCNNConfig, layer_shapes, receptive_field

ENGINE = 1  # the header's engine field for files this module codes
KERNEL_SPLIT = 16  # tiles in a batch from which the decoder runs on several threads
ACT = 511  # activations: integers in [-ACT, ACT]
GATE = 511  # gate outputs: integers in [-GATE, GATE], units of 1 / GATE
WEIGHTS = 127  # int8 weights
GATE_RANGE = float(fixed.TABLE_RANGE)  # pre-activation scales reach at most +-16 (tanh, sigmoid saturate)
LOGIT_MAX = int(fixed.ACT_LIMIT) << fixed.ACT_FRAC  # logits on the 2**-12 grid, clamped like exact mode
_TABLE_SHIFT = 2 * fixed.TABLE_FRAC  # tanh * sigmoid in 2**-48 units
_TABLE_ROUND = 1 << (_TABLE_SHIFT - 1)  # added before the shift: rounds half up (the kernels read both)


def codes(net) -> bool:
    """Whether the engine codes this model: a causal Gated PixelCNN without classes (the codec
    has no place for labels), as a torch model or as :class:`GatedWeights`."""
    return ((isinstance(net, GatedWeights) or getattr(net, "arch", None) == "gated-pixelcnn")
            and net.config.causal and not net.config.classes)


class GatedWeights:
    """A Gated PixelCNN as its integer engine needs it: the config and the weights (numpy
    float32 arrays by their state-dict names). Read from a model file without torch
    (:meth:`read`), or taken from a torch model (:meth:`of`). The raster coder codes with it
    as with the model; its :attr:`engine` (numpy, the compiled kernels: what a decoder of a
    few tiles runs, without torch) and :attr:`torch_engine` (the same integers in PyTorch:
    the encoder and large batches) are built once, and :meth:`torch_model` gives the float
    model (the files of engine 0 decode with it)."""

    coding = "autoregressive"
    scan = "raster"

    def __init__(self, config: GatedPixelCNNConfig, state: dict[str, np.ndarray], torch_model=None):
        self.config = config
        self.state = state
        self.shapes = layer_shapes(config)
        self._torch_model = torch_model  # the model itself, or a function that loads it
        self._device_engines: dict[str, GatedEngine] = {}  # device_engine's, by device

    @classmethod
    def read(cls, path: Path | str, config: dict, torch_model=None) -> "GatedWeights":
        """From a model file (safetensors, ``.arcm``) and the card's config, without torch;
        ``torch_model``: a function that loads the float model when it is needed."""
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
        return cls(GatedPixelCNNConfig(**config), state, torch_model)

    @classmethod
    def of(cls, model) -> "GatedWeights":
        """From a :class:`arcodec.models.pixelcnn.GatedPixelCNN`."""
        return cls(model.config, {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}, model)

    def torch_model(self):
        m = self._torch_model
        if m is None:
            raise ValueError("these weights were read without their model: no float model to code with")
        return m if hasattr(m, "state_dict") else m()

    def receptive_field(self) -> tuple[int, int]:
        return receptive_field(self.config)

    @cached_property
    def engine(self) -> "GatedEngine":
        return GatedEngine(self, tensors=False)

    @cached_property
    def torch_engine(self) -> "GatedEngine":
        return GatedEngine(self, tensors=True)

    def device_engine(self, device: str) -> "GatedEngine":
        """The PyTorch engine with its tensors on ``device`` (built once per device)."""
        if device not in self._device_engines:
            self._device_engines[device] = GatedEngine(self, tensors=True).to(device)
        return self._device_engines[device]


def _gate_tables(scale: float) -> tuple[np.ndarray, np.ndarray]:
    """tanh and sigmoid (int64, 2**-24 units) of k * scale for the integers k in [-ACT, ACT]
    (entry k + ACT), read from the exact tables at the nearest 2**-12 grid point. ``k * scale``
    is one IEEE multiplication: the same index on every machine."""
    n = fixed.TABLE_RANGE << fixed.ACT_FRAC
    k = np.arange(-ACT, ACT + 1, dtype=np.float64)
    idx = np.clip(np.floor(k * (scale * (1 << fixed.ACT_FRAC)) + 0.5), -n, n).astype(np.int64) + n
    tanh, sig = _integer_gate_tables()
    return tanh[idx], sig[idx]


@lru_cache(maxsize=None)
def _integer_gate_tables() -> tuple[np.ndarray, np.ndarray]:
    """:func:`arcodec.fixed.gate_tables` as int64 multiples of 2**-TABLE_FRAC (once, not per gate)."""
    return tuple(np.round(t * 2.0**fixed.TABLE_FRAC).astype(np.int64) for t in fixed.gate_tables())


class _Gate:
    """tanh(a) * sigmoid(b) of integer pre-activations on one scale, a and b the two halves
    of the channels, as integers in [-GATE, GATE]: two look-ups, a product, a rounding shift.
    Its tables are numpy arrays, or torch tensors with ``tensors`` (the PyTorch path)."""

    def __init__(self, scale: float, tensors: bool):
        self.tanh, self.sig = self.arrays = _gate_tables(scale)
        if tensors:
            import torch

            self.tanh, self.sig = torch.from_numpy(self.tanh), torch.from_numpy(self.sig)

    def to(self, device) -> "_Gate":
        self.tanh, self.sig = self.tanh.to(device), self.sig.to(device)
        return self

    def __call__(self, pre):
        """pre (N, 2f) integer-valued tensor -> (N, f) integers, in pre's type: one compiled
        kernel (:func:`_gate_kernel`, rows shared among the coder's threads) on the CPU, the
        same integers as the PyTorch operations below (without numba, or on another device)."""
        import torch

        if _GATE is not None and pre.device.type == "cpu":
            out = torch.empty((len(pre), pre.shape[1] // 2), dtype=pre.dtype)
            _split_rows(lambda a, b: _GATE(pre.numpy()[a:b], *self.arrays, ACT, GATE, out.numpy()[a:b]), len(pre))
            return out
        a, b = (pre.long() + ACT).chunk(2, dim=1)
        prod = torch.take(self.tanh, a) * torch.take(self.sig, b) * GATE  # < 2**58
        out = torch.bitwise_right_shift(prod + _TABLE_ROUND, _TABLE_SHIFT)
        return out.to(pre.dtype)


class _Layer:
    """One gated layer in integers: the vertical convolution, the joint horizontal
    convolution + link, the two gates, the output 1x1 convolution (weights ``w(name)`` by
    their names in the layer)."""

    def __init__(self, w, shape, v_in: tuple[float, int], h_in: tuple[float, int], pre_v: float, pre_h: float,
                 stream: float, tensors: bool):
        self.first = shape.first
        self.v_conv, self.h_conv = shape.v, shape.h  # their padding, kernel and dilation
        sv, sh = min(pre_v, GATE_RANGE) / ACT, min(pre_h, GATE_RANGE) / ACT
        self.vertical = IntLayer(taps_last(w("v.conv.weight")), w("v.conv.bias"), v_in[0], sv, v_in[1], -ACT, ACT,
                                 WEIGHTS, tensors=tensors)
        self.horizontal = JointLayer([taps_last(w("h.conv.weight")), w("link.conv.weight")],
                                     w("h.conv.bias") + w("link.conv.bias"), [h_in[0], sv], [h_in[1], ACT],
                                     sh, -ACT, ACT, WEIGHTS, tensors=tensors)  # the bias: float32's sum, as the model's
        self.out = IntLayer(w("out.conv.weight"), w("out.conv.bias"), 1.0 / GATE, stream, GATE, None, None,
                            WEIGHTS, tensors=tensors)
        self.gate_v, self.gate_h = _Gate(sv, tensors), _Gate(sh, tensors)

    def parts(self) -> tuple:
        return self.vertical, self.horizontal, self.out, self.gate_v, self.gate_h

    def residual(self, h, g):
        """The horizontal stack's output from the gated values g and the layer's input h
        (none for the first layer), clamped to [-ACT, ACT]."""
        o = self.out(g)
        return (o if self.first else o.add_(h)).clamp_(-ACT, ACT)


def _scales(w: GatedWeights) -> list[float]:
    """The calibrated ``act_max`` (see ``GatedPixelCNN.calibrate``), or for a model never
    calibrated, bounds from its weights (exact but coarse: fine for tests, not for shipping)."""
    st = w.state
    n = w.config.layers
    stored = float64(st["act_max"]).tolist() if "act_max" in st else []
    if len(stored) == 2 * n + 2 and all(v > 0 for v in stored):
        return stored

    def bound(name, x):  # |conv(.)| <= sum |w| * max|input| + |b| per output channel (math.fsum: exact rounding)
        wt = float64(st[f"{name}.conv.weight"])
        b = float64(st[f"{name}.conv.bias"])
        return max(math.fsum(abs(v) for v in row) * x + abs(bb) for row, bb in zip(wt.reshape(len(wt), -1).tolist(),
                                                                                 b.tolist()))
    pv, ph, h = [], [], 1.0
    for i, shape in enumerate(w.shapes):
        pv.append(bound(f"layers.{i}.v", 1.0))
        ph.append(bound(f"layers.{i}.h", h) + bound(f"layers.{i}.link", min(pv[-1], GATE_RANGE)))
        h = bound(f"layers.{i}.out", 1.0) + (0.0 if shape.first else h)
    head = bound("head.1", h)
    return [max(v, 1e-6) for v in pv + ph + [h, head]]


class GatedEngine:
    """Integer inference of a Gated PixelCNN; see the module docstring. ``engine(x)`` gives
    the logits of every sub-pixel of integer images x (B, 1, H, W): (B, K, 1, H, W) float64 on
    the 2**-12 grid (what :func:`arcodec.codec.autoregressive.table` takes)."""

    def __init__(self, model, tensors: bool = True):
        w = model if isinstance(model, GatedWeights) else GatedWeights.of(model)
        if not codes(w):
            raise ValueError("the integer engine codes causal gated-pixelcnn models without classes")
        self.weights = w
        self.tensors = tensors  # PyTorch tensors (the encoder, large batches), or numpy (the kernels)
        self.device = None  # where the tensors are, once moved (to): images go there, logits come back
        self.config = cfg = w.config
        K, n = cfg.levels, cfg.layers
        peaks = _scales(w)
        stream = peaks[2 * n] / ACT
        self.layers = []
        for i, shape in enumerate(w.shapes):
            inputs = (1.0 / (K - 1), K - 1)  # the first layer sees the levels as 2k - (K - 1)
            v_in = inputs if i == 0 else (1.0 / GATE, GATE)
            h_in = inputs if i == 0 else (stream, ACT)
            self.layers.append(_Layer(lambda name, i=i: w.state[f"layers.{i}.{name}"], shape, v_in, h_in, peaks[i],
                                      peaks[n + i], stream, tensors))
        hidden = peaks[2 * n + 1] / ACT
        st = w.state
        self.head = [IntLayer(st["head.1.conv.weight"], st["head.1.conv.bias"], stream, hidden, ACT, 0, ACT,
                              WEIGHTS, tensors=tensors),
                     IntLayer(st["head.3.conv.weight"], st["head.3.conv.bias"], hidden, 2.0**-fixed.ACT_FRAC,
                              ACT, -LOGIT_MAX, LOGIT_MAX, WEIGHTS, tensors=tensors)]

    def receptive_field(self) -> tuple[int, int]:
        return receptive_field(self.config)

    def to(self, device) -> "GatedEngine":
        """The PyTorch engine (``tensors``) on ``device``, in place: the same integers there
        (see :func:`use_device`). ``features`` then takes images from anywhere and keeps its
        results on the device; ``head_logits`` hands the logits back on the CPU, where the
        coder makes its tables."""
        import torch

        if not self.tensors:
            raise ValueError("only the PyTorch engine (tensors=True) moves to a device")
        for layer in self.layers:
            for part in layer.parts():
                part.to(device)
        for part in self.head:
            part.to(device)
        self.device = torch.device(device)
        return self

    def units(self, x):
        """Integer levels (a tensor) -> the first layer's input units 2k - (K - 1)."""
        import torch

        return (x * 2 - (self.config.levels - 1)).to(torch.float32)

    def logits(self, h):
        """The horizontal stack after the last layer (N, f) -> logits (N, K) on the 2**-12 grid."""
        t = self.head[1](self.head[0](h.clamp(min=0)))
        return t.double().mul_(2.0**-fixed.ACT_FRAC)

    def features(self, x):
        """The horizontal stack after the last layer, (B, H, W, f) float32 integers: what
        :meth:`head_logits` turns into logits (f numbers a position where the logits are K)."""
        b, _, hh, ww = x.shape
        if self.device is not None:
            x = x.to(self.device)
        v = h = self.units(x).permute(0, 2, 3, 1)  # (B, H, W, C): every layer works on rows of channels
        rows_h = None
        for layer in self.layers:
            pre_v = layer.vertical(windows(v, layer.v_conv))
            pre_h = layer.horizontal(windows(h, layer.h_conv), pre_v)
            rows_h = layer.residual(rows_h, layer.gate_h(pre_h))
            v, h = layer.gate_v(pre_v).view(b, hh, ww, -1), rows_h.view(b, hh, ww, -1)
        return h

    def head_logits(self, features):
        """Features (B, H, W, f) -> logits (B, K, 1, H, W)."""
        b, hh, ww, f = features.shape
        logits = self.logits(features.reshape(-1, f)).view(b, hh, ww, -1).permute(0, 3, 1, 2).unsqueeze(2)
        return logits if self.device is None else logits.cpu()

    def __call__(self, x):
        return self.head_logits(self.features(torch_levels(x)))

    def incremental(self, batch: int, height: int, width: int) -> "GatedStepper":
        return GatedStepper(self, batch, height, width)


def torch_levels(x):
    """Integer levels as a tensor (the codec gives numpy arrays)."""
    import torch

    return torch.as_tensor(x)


def taps_last(weight: np.ndarray) -> np.ndarray:
    """A convolution's weights (out, C, kh, kw) as (out, kh, kw, C): the order of
    :func:`windows`, whose copies then move runs of C contiguous channels. Quantisation per
    output channel does not see the order, and the integer sums do not depend on it."""
    return np.ascontiguousarray(np.asarray(weight).transpose(0, 2, 3, 1))


def windows(x, conv, pad: bool = True):
    """Every window of causal convolution ``conv`` (its :class:`ConvShape`) over a tensor x
    (B, H, W, C) (padded as ``conv`` pads, unless ``pad`` is False: x is padded already):
    (B H' W', kh kw C), each window in the order of the weights (:func:`taps_last`). Views
    and one copy."""
    if pad:
        import torch.nn.functional as F

        left, right, top, bottom = conv.pad
        x = F.pad(x, (0, 0, left, right, top, bottom))
    (kh, kw), d = conv.kernel, conv.dilation
    win = x.unfold(1, (kh - 1) * d + 1, 1).unfold(2, (kw - 1) * d + 1, 1)  # (B, H', W', C, span_h, span_w)
    if d > 1:
        win = win[..., ::d, ::d]
    return win.permute(0, 1, 2, 4, 5, 3).reshape(-1, win.shape[3] * kh * kw)


class GatedStepper:
    """Raster-order decoding with the engine: ``begin_row(x, r)`` runs the vertical stack of
    every layer on row r (from ring buffers of the rows each kernel reaches) and the link
    part of every horizontal accumulator; ``step(x, r, c)`` runs the horizontal stack at
    (r, c) from row buffers and returns the logits (B, K, 1). Every value equals the one the
    engine's whole-image pass computes, bit for bit (integers, exact in any order).

    With numba (and scipy, whose BLAS numba's ``np.dot`` calls) and every layer in float32,
    ``begin_row`` runs each layer's vertical stack as one float32 matrix product over the
    batch's row, all layers in one compiled call (:func:`_fused_row_kernel`); ``step`` runs
    one compiled loop kernel for all layers and the head (:func:`_step_kernel`), or from
    BLAS_BATCH tiles, where that kernel's loops would read every weight once per tile, each
    layer as a matrix product over the batch, again in one call (:func:`_fused_step_kernel`).
    Those calls hold no GIL; with several threads each runs a slice of the batch, on a
    :class:`~arcodec.codec.crew.Crew` whose workers wait for the next row or step in
    compiled code (:func:`_serve`), or with CREW off on the coder's pool. Without numba (or
    with ARCODEC_NO_NUMBA=1) the same arithmetic runs as PyTorch operations. All give
    identical integers (tested). :meth:`close` stops the crew.

    A numpy engine (``engine.tensors`` False) runs the compiled paths only, on numpy images
    x (:attr:`numpy`): no torch at all (:func:`numpy_decodes` says when it can)."""

    def __init__(self, engine: GatedEngine, batch: int, height: int, width: int):
        self.engine = engine
        self.width = width
        self.numpy = not engine.tensors  # x is a numpy array, every step a kernel
        layers = engine.layers
        f = engine.config.hidden
        self.kernel = _kernel_args(engine)
        # with numba and scipy: every row (and a large batch's steps) as matrix products over
        # the batch, in one compiled call each; a smaller batch's steps in the step kernel
        self.fused = self.kernel is not None and _FUSED is not None and _FUSED_ROW is not None \
            and all(_float32(layer.vertical.dtype) for layer in layers)
        self.fused_steps = self.fused and batch >= BLAS_BATCH
        if self.numpy and not self.fused:
            raise ValueError("a numpy engine decodes with the compiled kernels only")
        self._crew = None  # (the images' address and shape and the thread count it was made for, the crew)
        zeros = np.zeros if self.numpy else _torch_zeros
        self.rows = []  # the ring buffers: the rows of each layer's vertical input its kernel
        for layer in layers:  # reaches, padded at the sides
            v = layer.v_conv
            span = (v.kernel[0] - 1) * v.dilation + 1
            self.rows.append(zeros((batch, span, v.pad[0] + width + v.pad[1], v.cin), dtype=layer.vertical.dtype))
        # the current row of every layer's horizontal input, padded at the left (layer i's
        # columns start at LEFT - its padding), and the link part of its accumulators
        lefts = [layer.h_conv.pad[0] for layer in layers]
        self.left = max(lefts)
        dtype = layers[0].horizontal.dtype
        self.cols_all = zeros((len(layers), batch, 1, self.left + width, f), dtype=dtype)
        self.cols = [self.cols_all[i, :, :, self.left - lefts[i]:, :layer.h_conv.cin]
                     for i, layer in enumerate(layers)]
        # the link parts by column (layer, column, tile, 2f): a step reads one contiguous block
        self.links = zeros((len(layers), width, batch, 2 * f), dtype=dtype)
        self.logits = zeros((batch, engine.config.levels), dtype=np.float32)
        self.table = np.zeros((batch, engine.config.levels))  # the kernel's coder weights
        self.arrays = tuple(np.asarray(a) for a in (self.cols_all, self.links, self.logits, self.table))
        self.row_buffers = tuple(np.asarray(b) for b in self.rows) if self.fused else None
        self.row_args = _row_args(engine) if self.fused else None
        # a tile's first nonzero pixel (raster order; height x width while none is known):
        # a large batch's tiles blank so far take a blank image's state instead of computing it
        skip = self.fused_steps and height * width <= BLANK_POSITIONS
        self.first = np.full(batch, height * width if skip else -1, dtype=np.int64)
        self.blank = (_blank_arrays(engine, height, width) if skip else _no_blank(self.row_buffers, engine)) \
            if self.fused else None

    def begin_row(self, x, r: int) -> None:
        if self.row_args is not None:
            images = np.asarray(x)
            args = (images, r, self.engine.config.levels, self.row_buffers, *self.row_args, self.arrays[1],
                    self.arrays[0], ACT, np.float32(ACT), GATE, self.first, self.blank)
            self.spread(images, _FUSED_ROW, args, ROW_COMMAND, r)
            return
        import torch

        threads = torch.get_num_threads()
        if threads > 1 and self.links.shape[2] < KERNEL_SPLIT:  # a row of a few tiles: threads cost more than they give
            torch.set_num_threads(1)
            try:
                self._begin_row(x, r)
            finally:
                torch.set_num_threads(threads)
        else:
            self._begin_row(x, r)

    def spread(self, images: np.ndarray, kernel, args: tuple, command: int, r: int, c: int = 0) -> None:
        """kernel(b0, b1, *args) over the batch's tiles: in one call, or in slices on the
        coder's threads: on the crew from SLICE_TILES tiles a thread (made for ``images``,
        whose row r and column c the command names: the workers' copy of ``args`` refers to
        the same arrays), or with CREW off on the coder's pool from BLAS_BATCH tiles a
        thread (a pool's thread costs more to wake than a step of fewer tiles takes)."""
        n = self.links.shape[2]
        # a crew's threads spin: never more of them than the CPUs this process may use
        on_crew = CREW and _SERVE is not None and coder_threads() <= cores()
        threads = min(coder_threads(), n // (SLICE_TILES if on_crew else BLAS_BATCH))
        if threads < 2:
            kernel(0, n, *args)
            return
        if not on_crew:
            share_out(lambda b0, b1: kernel(b0, b1, *args), n, threads)
            return
        key = (images.ctypes.data, images.shape, threads)  # a torch tensor's view is a new array each call
        if self._crew is None or self._crew[0] != key:
            self.close()
            chunk = max(SLICE_TILES, -(-n // (threads * CHUNKS)))
            self._crew = (key, Crew(_SERVE, _LEAD, threads, chunk, n, self.serve_args(images)))
        self._crew[1].run(command, r, c)

    def serve_args(self, images: np.ndarray) -> tuple:
        """What :func:`_serve` passes on to the row and the step kernels, after its slice."""
        return (images, self.engine.config.levels, self.row_buffers, *self.row_args, self.left, *self.arrays[:2],
                *self.kernel, ACT, np.float32(ACT), GATE, np.float32(LOGIT_MAX), self.arrays[2], _EXP_WEIGHTS,
                self.arrays[3], self.first, self.blank)

    def close(self) -> None:
        """Stop the crew's threads, if any (a decode's end; also when the stepper is collected)."""
        if self._crew is not None:
            self._crew[1].close()
            self._crew = None

    def _begin_row(self, x, r: int) -> None:
        eng = self.engine
        w = self.width
        new = None  # the newest row of the next layer's vertical input
        for i, layer in enumerate(eng.layers):
            buf = self.rows[i]
            buf[:, :-1] = buf[:, 1:].clone()
            side = layer.v_conv.pad[0]
            if i == 0:  # the first layer sees rows above only: row r - 1 is its newest
                buf[:, -1, side: side + w] = eng.units(x[:, :, r - 1]).transpose(1, 2) if r > 0 else 0
            else:
                buf[:, -1, side: side + w] = new
            pre_v = layer.vertical(windows(buf, layer.v_conv, pad=False))  # (B W, 2f)
            self.links[i] = layer.horizontal.accumulate_part(1, pre_v).view(len(buf), w, -1).transpose(0, 1)
            new = layer.gate_v(pre_v).view(len(buf), w, -1)
        self.cols_all.zero_()

    def weights(self, x, r: int, c: int, ch: int) -> np.ndarray:
        """The coder's table (B, K) of pixel (r, c): what :func:`arcodec.codec.autoregressive.table`
        makes of :meth:`step`'s logits, computed inside the kernel when there is one (then
        the kernel's own buffer, valid until the next step: the coder reads it at once)."""
        if self.kernel is None:
            return autoregressive.table(self.step(x, r, c)[:, :, ch])
        _run_kernel(self, x, r, c)
        return self.table

    def step(self, x, r: int, c: int):
        eng = self.engine
        if self.kernel is not None:
            _run_kernel(self, x, r, c)
            return self.logits.double().mul_(2.0**-fixed.ACT_FRAC).unsqueeze(2)
        if c > 0:  # the first layer sees the pixels to the left: (r, c - 1) is its newest
            self.cols[0][:, 0, eng.layers[0].h_conv.pad[0] + c - 1] = eng.units(x[:, :, r, c - 1])
        h = None
        for i, layer in enumerate(eng.layers):
            buf = self.cols[i]
            conv = layer.h_conv
            left = conv.pad[0]
            if i > 0:
                buf[:, 0, left + c] = h
            span = (conv.kernel[1] - 1) * conv.dilation + 1
            acc = layer.horizontal.accumulate_part(0, windows(buf[:, :, c: c + span], conv, pad=False))
            pre_h = layer.horizontal.requantize(acc.add_(self.links[i, c]))  # + the row's link part
            h = layer.residual(None if layer.first else buf[:, 0, left + c], layer.gate_h(pre_h))
        return eng.logits(h).unsqueeze(2)


# ------------------------------------------------------------- the compiled decoder step

def _kernel_args(engine: GatedEngine) -> tuple | None:
    """The engine's horizontal stack and head as flat arrays for :func:`_step_kernel`, or None
    without numba or when a layer computes in float64 (the kernel's type is float32)."""
    layers = engine.layers
    parts = [q for layer in layers for q in (layer.horizontal, layer.out)] + engine.head
    if _STEP is None or any(not _float32(q.dtype) for q in parts):
        return None
    n, f = len(layers), engine.config.hidden
    n_in = [layer.horizontal.parts[0].shape[0] for layer in layers]
    wh = np.zeros((n, max(n_in), 2 * f), dtype=np.float32)
    for i, layer in enumerate(layers):
        wh[i, : n_in[i]] = np.asarray(layer.horizontal.parts[0])

    def stack(get):
        return np.stack([np.asarray(get(layer)) for layer in layers])
    geometry = np.array([[n_in[i], layer.h_conv.kernel[1], layer.h_conv.dilation, layer.h_conv.pad[0]]
                         for i, layer in enumerate(layers)], dtype=np.int64)
    h0, h1 = engine.head
    return (geometry, wh, stack(lambda q: q.horizontal.bias), stack(lambda q: q.horizontal.mul),
            stack(lambda q: q.gate_h.tanh), stack(lambda q: q.gate_h.sig),
            stack(lambda q: q.out.wt), stack(lambda q: q.out.bias), stack(lambda q: q.out.mul),
            *(np.asarray(a) for a in (h0.wt, h0.bias, h0.mul, h1.wt, h1.bias, h1.mul)))


def _run_kernel(stepper: GatedStepper, x, r: int, c: int) -> None:
    """The step of column c of row r over the batch: the step kernel, or from BLAS_BATCH
    tiles :func:`_fused_step_kernel`, in slices of the batch on the coder's threads when
    it is large enough to pay (:meth:`GatedStepper.spread`)."""
    cols, links, logits, table = stepper.arrays
    images = np.asarray(x)
    batch = cols.shape[1]
    args = (c, images, r, stepper.engine.config.levels, stepper.left, cols, links, *stepper.kernel, ACT,
            np.float32(ACT), GATE, np.float32(LOGIT_MAX), logits, _EXP_WEIGHTS, table)
    if stepper.fused_steps:
        stepper.spread(images, _FUSED, (*args, stepper.first, stepper.blank), STEP_COMMAND, r, c)
        return
    share_out(lambda b0, b1: _STEP(b0, b1, *args), batch, 1 if batch < KERNEL_SPLIT else coder_threads())


def _step_kernel(b0, b1_, c, x, r, levels, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig, w_out,
                 bias_out, mul_out, w1, b1, m1, w2, b2, m2, act_int, act, gate, logit_max, logits, exp_weights,
                 table):
    """Column c of every layer's horizontal stack and the head, for tiles b0..b1_-1 of the batch,
    in float32 operations in the order of the PyTorch path (accumulate, + link, + bias,
    x multiplier, + 0.5, floor, clamp): every sum is an exact integer, so the order of the
    products does not matter, and the requantisation steps are the same IEEE operations.
    First the pixel left of c (of row r of the images x (B, C, H, W)) enters the first layer's buffer;
    last the logits (integers, 2**-12 units) become the coder's weights exp(logit - max)
    from ``exp_weights`` (:func:`arcodec.exact.softmax_weights`'s table)."""
    n_layers = cols.shape[0]
    f2 = wh.shape[2]
    f = f2 // 2
    half = np.float32(0.5)
    acc = np.zeros(f2, dtype=np.float32)
    g = np.zeros(f, dtype=np.float32)
    h = np.zeros(f, dtype=np.float32)
    hid = np.zeros(w1.shape[1], dtype=np.float32)
    for b in range(b0, b1_):
        if c > 0:
            cols[0, b, 0, left_all + c - 1, 0] = np.float32(2 * x[b, 0, r, c - 1] - (levels - 1))
        for i in range(n_layers):
            n_in, kw, dil, left = geometry[i, 0], geometry[i, 1], geometry[i, 2], geometry[i, 3]
            base = left_all - left + c  # the window's first column in the row buffer
            cin = n_in // kw
            for o in range(f2):
                acc[o] = np.float32(0.0)
            for ch in range(cin):
                for t in range(kw):
                    xv = cols[i, b, 0, base + t * dil, ch]
                    if xv != 0:
                        row = t * cin + ch
                        for o in range(f2):
                            acc[o] += xv * wh[i, row, o]
            for o in range(f2):
                y = np.floor(((acc[o] + links[i, c, b, o]) + bias_h[i, o]) * mul_h[i, o] + half)
                acc[o] = min(max(y, -act), act)
            for o in range(f):
                a = np.int64(acc[o]) + act_int
                s = np.int64(acc[f + o]) + act_int
                g[o] = np.float32((tanh[i, a] * sig[i, s] * gate + _TABLE_ROUND) >> _TABLE_SHIFT)
            for o in range(f):
                acc[o] = np.float32(0.0)
            for j in range(f):
                if g[j] != 0:
                    for o in range(f):
                        acc[o] += g[j] * w_out[i, j, o]
            for o in range(f):
                y = np.floor((acc[o] + bias_out[i, o]) * mul_out[i, o] + half)
                if i > 0:
                    y = y + h[o]
                h[o] = min(max(y, -act), act)
            if i + 1 < n_layers:
                for o in range(f):
                    cols[i + 1, b, 0, left_all + c, o] = h[o]
        for o in range(hid.shape[0]):
            hid[o] = np.float32(0.0)
        for j in range(f):
            if h[j] > 0:
                for o in range(hid.shape[0]):
                    hid[o] += h[j] * w1[j, o]
        for o in range(hid.shape[0]):
            y = np.floor((hid[o] + b1[o]) * m1[o] + half)
            hid[o] = min(max(y, np.float32(0.0)), act)
        for o in range(logits.shape[1]):
            logits[b, o] = np.float32(0.0)
        for j in range(hid.shape[0]):
            if hid[j] != 0:
                for o in range(logits.shape[1]):
                    logits[b, o] += hid[j] * w2[j, o]
        _HEAD_TABLE(logits[b: b + 1], b2, m2, logit_max, exp_weights, logits[b: b + 1], table[b: b + 1])


# ------------------------------------------- a large batch: matrix products, in one call

BLAS_BATCH = KERNEL_SPLIT  # tiles from which a step and a row run as matrix products over the batch
SLICE_TILES = 8  # tiles of a crew's chunk at the least, and of an encoder's thread's share of a row
CHUNKS = 2  # chunks a crew's thread claims in a row or a step, on average (a busy CPU's thread fewer)
HEAD_SHARE = 1024  # positions an encoder's thread takes at the least in the head


def _fused_row_kernel(b0, b1_, x, r, levels, rows, geometry, wv, bias_v, mul_v, tanh, sig, w_link, links, cols,
                      act_int, act, gate, first, blank):
    """The start of row r (:meth:`GatedStepper._begin_row`'s arithmetic) in one compiled
    call (:func:`_row_args`): for tiles b0..b1_-1, every layer's ring of rows moved up and
    its newest row filled (the levels of row r - 1 of the images x, zeros on row 0, for the
    first layer; the previous layer's gate for the others), the windows of the row
    gathered into one block, one float32 matrix product, its requantisation
    (:func:`_requant_clamp`), the link part of the horizontal accumulators (stored by
    column) and the gate (:func:`_gate_kernel`).

    ``first`` (B,): each tile's first nonzero pixel in raster order (h w while none is
    known, -1: never skipped); a tile whose rows above row r are all 0 takes its rings and
    links from ``blank`` (:func:`_blank_arrays`: a blank image's, the same integers) instead."""
    w = links.shape[1]
    tiles = _ACTIVE(b0, b1_, first, r * w, x, r - 1, 0, w)
    nb = len(tiles)
    n_layers = len(rows)
    f2 = wv.shape[2]
    new = np.zeros((nb * w, f2 // 2), dtype=np.float32)
    if nb < b1_ - b0:
        blank_rows, blank_links = blank[0], blank[1]
        for b in range(b0, b1_):
            if first[b] >= r * w:
                for i in range(n_layers):
                    rows[i][b] = blank_rows[i][r]
                    for col in range(w):
                        links[i, col, b] = blank_links[i, r, col]
    for i in range(n_layers):
        buf = rows[i]
        kh, kw, dil, side = geometry[i, 0], geometry[i, 1], geometry[i, 2], geometry[i, 3]
        span, cin = buf.shape[1], buf.shape[3]
        for k in range(nb):
            b = tiles[k]
            for a in range(span - 1):
                buf[b, a] = buf[b, a + 1]
            if i == 0:
                for col in range(w):
                    buf[b, span - 1, side + col, 0] = (np.float32(0.0) if r == 0
                                                       else np.float32(2 * x[b, 0, r - 1, col] - (levels - 1)))
            else:
                for col in range(w):
                    for ch in range(cin):
                        buf[b, span - 1, side + col, ch] = new[k * w + col, ch]
        n_in = kh * kw * cin
        win = np.empty((nb * w, n_in), dtype=np.float32)
        for k in range(nb):
            b = tiles[k]
            for col in range(w):
                j = 0
                for a in range(kh):
                    for t in range(kw):
                        for ch in range(cin):
                            win[k * w + col, j] = buf[b, a * dil, col + t * dil, ch]
                            j += 1
        pre = np.dot(win, np.ascontiguousarray(wv[i, :n_in]))
        _REQ_CLAMP(pre, bias_v[i], mul_v[i], -act, act)
        lk = np.dot(pre, np.ascontiguousarray(w_link[i]))
        for k in range(nb):
            b = tiles[k]
            for col in range(w):
                for o in range(f2):
                    links[i, col, b, o] = lk[k * w + col, o]
        _GATE(pre, tanh[i], sig[i], act_int, gate, new)
    for i in range(cols.shape[0]):
        for b in range(b0, b1_):
            cols[i, b] = np.float32(0.0)


def _active(b0, b1_, first, start, x, r, c0, c1):
    """The tiles of b0..b1_-1 not blank before raster position ``start`` (an array): ``first``
    updated first from pixels c0..c1-1 of row r of x for the tiles without a known nonzero
    pixel (none on row -1)."""
    none = x.shape[2] * x.shape[3]
    tiles = np.empty(b1_ - b0, dtype=np.int64)
    n = 0
    for b in range(b0, b1_):
        if first[b] == none and r >= 0:
            for col in range(c0, c1):
                if x[b, 0, r, col] != 0:
                    first[b] = r * x.shape[3] + col
                    break
        if first[b] < start:
            tiles[n] = b
            n += 1
    return tiles[:n]


BLANK_POSITIONS = 4096  # tiles of up to this many pixels skip their blank beginning (its state: ~10 KB a pixel)
BLANK_SHAPES = 4  # tile shapes whose blank state an engine keeps (the oldest goes first)


def _blank_arrays(engine: GatedEngine, height: int, width: int) -> tuple:
    """What the decoder's kernels hold for a tile of height x width whose pixels so far are
    all 0 (a digit's blank top rows): per row the rings (a tuple, per layer (height, ...)) and
    the links (layers, height, width, 2f) at its start; per pixel the horizontal stack's
    outputs (height, width, layers, f), the logits (height, width, K) and the coder's table
    (height, width, K). Computed once per engine and tile shape by the encoder's kernels on a
    blank tile: the integers every such tile computes, whatever its batch."""
    cache = engine.__dict__.setdefault("blanks", {})
    if (height, width) in cache:
        return cache[height, width]
    while len(cache) >= BLANK_SHAPES:
        cache.pop(next(iter(cache)), None)
    st = GatedStepper(engine, 1, height, width)  # one tile: never skips
    x = np.zeros((1, 1, height, width), dtype=np.int64)
    n, f, K = len(engine.layers), engine.config.hidden, engine.config.levels
    rows = tuple(np.empty((height, *b.shape[1:]), dtype=np.float32) for b in st.row_buffers)
    links = np.empty((n, height, width, 2 * f), dtype=np.float32)
    hs = np.empty((height, width, n, f), dtype=np.float32)
    logits = np.empty((height, width, K), dtype=np.float32)
    table = np.empty((height, width, K))
    features = np.empty((1, width, f), dtype=np.float32)
    cols, lk = st.arrays[:2]
    for r in range(height):
        _ENCODE_ROW(0, 1, x, r, K, st.row_buffers, *st.row_args, st.left, cols, lk, *st.kernel[:9], ACT,
                    np.float32(ACT), GATE, features, st.first, st.blank)
        for ring, buf in zip(rows, st.row_buffers):
            ring[r] = buf[0]
        links[:, r] = lk[:, :, 0]
        hs[r, :, : n - 1] = cols[1:, 0, 0, st.left: st.left + width].transpose(1, 0, 2)
        hs[r, :, n - 1] = features[0]
        _HEAD(0, width, features[0], *st.kernel[9:], np.float32(ACT), np.float32(LOGIT_MAX), logits[r], _EXP_WEIGHTS,
              table[r])
    cache[height, width] = (rows, links, hs, logits, table)
    return cache[height, width]


def _no_blank(row_buffers: tuple, engine: GatedEngine) -> tuple:
    """:func:`_blank_arrays`' types, empty: for a stepper that never skips (``first`` -1)."""
    n, f, K = len(engine.layers), engine.config.hidden, engine.config.levels
    return (tuple(np.empty((0, *b.shape[1:]), dtype=np.float32) for b in row_buffers),
            np.empty((n, 0, 0, 2 * f), dtype=np.float32), np.empty((0, 0, n, f), dtype=np.float32),
            np.empty((0, 0, K), dtype=np.float32), np.empty((0, 0, K)))


def _row_args(engine: GatedEngine) -> tuple:
    """Per layer the vertical stack's geometry (kh, kw, dilation, left padding), weights
    (zero-padded to the widest layer's inputs), bias, multiplier, gate tables and the link's
    weights, stacked for :func:`_fused_row_kernel`."""
    layers = engine.layers
    n_in = [np.asarray(layer.vertical.wt).shape[0] for layer in layers]
    f2 = np.asarray(layers[0].vertical.wt).shape[1]
    wv = np.zeros((len(layers), max(n_in), f2), dtype=np.float32)
    for i, layer in enumerate(layers):
        wv[i, : n_in[i]] = np.asarray(layer.vertical.wt)
    geometry = np.array([[*layer.v_conv.kernel, layer.v_conv.dilation, layer.v_conv.pad[0]] for layer in layers],
                        dtype=np.int64)

    def stack(get):
        return np.ascontiguousarray(np.stack([np.asarray(get(layer)) for layer in layers]))
    return (geometry, wv, stack(lambda q: q.vertical.bias), stack(lambda q: q.vertical.mul),
            stack(lambda q: q.gate_v.tanh), stack(lambda q: q.gate_v.sig), stack(lambda q: q.horizontal.parts[1]))


def _fused_step_kernel(b0, b1_, c, x, r, levels, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig,
                       w_out, bias_out, mul_out, w1, b1, m1, w2, b2, m2, act_int, act, gate, logit_max, logits,
                       exp_weights, table, first, blank):
    """:func:`_step_kernel`'s arithmetic for a large batch, in one compiled call (its
    arguments, then ``first`` and ``blank`` as :func:`_fused_row_kernel`'s): the pixel left
    of c enters the first layer's buffer, the horizontal stack at column c
    (:func:`_horizontal_kernel`: one float32 matrix product a layer over the slice), the
    head and the tables (:func:`_head_kernel`); a tile whose pixels before (r, c) are all 0
    takes its buffers' column, logits and table from ``blank`` instead. Nothing in it holds
    the GIL, so the coder's threads each run a slice of the batch at once however thin."""
    if c > 0:
        for b in range(b0, b1_):
            cols[0, b, 0, left_all + c - 1, 0] = np.float32(2 * x[b, 0, r, c - 1] - (levels - 1))
    start = r * links.shape[1] + c
    tiles = _ACTIVE(b0, b1_, first, start, x, r if c > 0 else -1, c - 1, c)
    if len(tiles) < b1_ - b0:
        blank_h, blank_logits, blank_table = blank[2], blank[3], blank[4]
        for b in range(b0, b1_):
            if first[b] >= start:
                for i in range(cols.shape[0] - 1):
                    cols[i + 1, b, 0, left_all + c] = blank_h[r, c, i]
                logits[b] = blank_logits[r, c]
                table[b] = blank_table[r, c]
        if len(tiles) == 0:
            return
    h = _HORIZONTAL(tiles, c, c + 1, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig, w_out,
                    bias_out, mul_out, act_int, act, gate)
    if len(tiles) == b1_ - b0:  # the slice's rows in place
        _HEAD(0, b1_ - b0, h, w1, b1, m1, w2, b2, m2, act, logit_max, logits[b0:b1_], exp_weights, table[b0:b1_])
        return
    lg = np.empty((len(tiles), logits.shape[1]), dtype=np.float32)
    tb = np.empty((len(tiles), table.shape[1]))
    _HEAD(0, len(tiles), h, w1, b1, m1, w2, b2, m2, act, logit_max, lg, exp_weights, tb)
    for k in range(len(tiles)):
        logits[tiles[k]] = lg[k]
        table[tiles[k]] = tb[k]


def _fused_line_kernel(b0, b1_, x, r, levels, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig,
                       w_out, bias_out, mul_out, act_int, act, gate, features, first, blank):
    """Every column of row r at once, for tiles b0..b1_-1 whose pixels are all known (the
    encoder's teacher forcing): the row's pixels enter the first layer's buffer (column c
    reads those left of it), then the horizontal stack over the whole row
    (:func:`_horizontal_kernel`). Writes the last layer's output, ``features`` (B, W, f):
    the integers the decoder's steps give the head. A tile blank up to the row's last pixel
    takes them from ``blank`` (as :func:`_fused_step_kernel`)."""
    w = links.shape[1]
    for b in range(b0, b1_):
        for col in range(w):
            cols[0, b, 0, left_all + col, 0] = np.float32(2 * x[b, 0, r, col] - (levels - 1))
    start = r * w + w - 1
    tiles = _ACTIVE(b0, b1_, first, start, x, r, 0, w)
    if len(tiles) < b1_ - b0:
        blank_h = blank[2]
        for b in range(b0, b1_):
            if first[b] >= start:
                for col in range(w):  # (its buffers' row: read by none of its columns)
                    features[b, col] = blank_h[r, col, cols.shape[0] - 1]
    if len(tiles) == 0:
        return
    h = _HORIZONTAL(tiles, 0, w, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig, w_out, bias_out,
                    mul_out, act_int, act, gate)
    for k in range(len(tiles)):
        features[tiles[k]] = h[k * w: (k + 1) * w]


def _horizontal_kernel(tiles, c0, c1, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig, w_out,
                       bias_out, mul_out, act_int, act, gate):
    """The horizontal stack of every layer at columns c0..c1-1 of the batch's ``tiles``, from the
    row buffers ``cols`` (the first layer's pixels already in) and the row's vertical links:
    per layer the windows gathered into one block over the (tile, column) positions, one
    float32 matrix product (``np.dot``: BLAS, exact integers in any order), the step
    kernel's element-wise steps (:func:`_requant_gate`, :func:`_requant_residual`), the
    output written into the next layer's buffer. Returns the last layer's output
    (positions p = k * (c1 - c0) + column - c0 of tiles[k], f)."""
    nb, span = len(tiles), c1 - c0
    n_layers = cols.shape[0]
    f = wh.shape[2] // 2
    m = nb * span
    g = np.empty((m, f), dtype=np.float32)
    h = np.zeros((m, f), dtype=np.float32)
    link = np.empty((m, 2 * f), dtype=np.float32)
    for i in range(n_layers):
        n_in, kw, dil, left = geometry[i, 0], geometry[i, 1], geometry[i, 2], geometry[i, 3]
        cin = n_in // kw
        win = np.empty((m, n_in), dtype=np.float32)
        for b in range(nb):
            tile = tiles[b]
            for col in range(c0, c1):
                p = b * span + col - c0
                base = left_all - left + col  # the window's first column in the row buffer
                for t in range(kw):
                    for ch in range(cin):
                        win[p, t * cin + ch] = cols[i, tile, 0, base + t * dil, ch]
                for o in range(2 * f):
                    link[p, o] = links[i, col, tile, o]
        acc = np.dot(win, np.ascontiguousarray(wh[i, :n_in]))
        _REQ_GATE(acc, link, bias_h[i], mul_h[i], tanh[i], sig[i], act_int, act, gate, g)
        out = np.dot(g, np.ascontiguousarray(w_out[i]))
        _REQ_RES(out, bias_out[i], mul_out[i], h, i == 0, act, h)  # h: the layer's input, then its output
        if i + 1 < n_layers:
            for b in range(nb):
                tile = tiles[b]
                for col in range(c0, c1):
                    for o in range(f):
                        cols[i + 1, tile, 0, left_all + col, o] = h[b * span + col - c0, o]
    return h


def _encode_row_kernel(b0, b1_, x, r, levels, rows, geometry_v, wv, bias_v, mul_v, tanh_v, sig_v, w_link, left_all,
                       cols, links, geometry, wh, bias_h, mul_h, tanh, sig, w_out, bias_out, mul_out, act_int, act,
                       gate, features, first, blank):
    """Row r of tiles b0..b1_-1 for the encoder, in one call: its start
    (:func:`_fused_row_kernel`) and all its columns (:func:`_fused_line_kernel`)."""
    _FUSED_ROW(b0, b1_, x, r, levels, rows, geometry_v, wv, bias_v, mul_v, tanh_v, sig_v, w_link, links, cols,
               act_int, act, gate, first, blank)
    _FUSED_LINE(b0, b1_, x, r, levels, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig, w_out,
                bias_out, mul_out, act_int, act, gate, features, first, blank)


def _head_kernel(a, b1_, features, w1, b1, m1, w2, b2, m2, act, logit_max, logits, exp_weights, table):
    """The head of positions a..b1_-1 of ``features`` (N, f): logits (N, K) on the 2**-12
    grid and the coder's tables (N, K), as the step kernels make them."""
    hid = np.dot(np.maximum(features[a:b1_], np.float32(0.0)), w1)
    _REQ_CLAMP(hid, b1, m1, np.float32(0.0), act)
    _HEAD_TABLE(np.dot(hid, w2), b2, m2, logit_max, exp_weights, logits[a:b1_], table[a:b1_])


ROW_COMMAND, STEP_COMMAND = 1, 2  # a crew's commands (crew.EXIT stops it)


def _serve(control, claims, generation, spins, chunk, n, x, levels, rows, geometry_v, wv, bias_v, mul_v, tanh_v,
           sig_v, w_link, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig, w_out, bias_out, mul_out,
           w1, b1, m1, w2, b2, m2, act_int, act, gate, logit_max, logits, exp_weights, table, first, blank):
    """A crew worker's loop (:class:`~arcodec.codec.crew.Crew`): wait for a new generation of
    the control array, run the chunks of its command (the start of a row, or a step) that
    it claims; return the last generation seen after ``spins`` loads without a command (the
    worker naps), or EXIT when told to stop."""
    waited = 0
    while True:
        now = load_acquire(control, GENERATION)
        if now == generation:
            waited += 1
            if waited > spins:
                return generation
            if waited > EAGER:  # the caller is busy elsewhere: leave the CPU to whoever wants it
                yield_cpu()
                waited += YIELD_LOADS
            continue
        waited = 0
        generation = now
        command, r, c = control[COMMAND], control[ROW], control[COLUMN]
        if command == EXIT:
            return EXIT
        _CHUNKS(claims, generation, command, r, c, chunk, n, x, levels, rows, geometry_v, wv, bias_v, mul_v, tanh_v,
                sig_v, w_link, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig, w_out, bias_out,
                mul_out, w1, b1, m1, w2, b2, m2, act_int, act, gate, logit_max, logits, exp_weights, table, first,
                blank)


def _lead(claims, generation, command, r, c, chunk, n, spins, x, levels, rows, geometry_v, wv, bias_v, mul_v, tanh_v,
          sig_v, w_link, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig, w_out, bias_out, mul_out,
          w1, b1, m1, w2, b2, m2, act_int, act, gate, logit_max, logits, exp_weights, table, first, blank):
    """The caller's part of a crew's command: run the chunks it claims, then wait until every
    chunk is done; False if ``spins`` loads passed first."""
    _CHUNKS(claims, generation, command, r, c, chunk, n, x, levels, rows, geometry_v, wv, bias_v, mul_v, tanh_v,
            sig_v, w_link, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig, w_out, bias_out, mul_out,
            w1, b1, m1, w2, b2, m2, act_int, act, gate, logit_max, logits, exp_weights, table, first, blank)
    return all_done(claims, (n + chunk - 1) // chunk, spins)


def _chunks(claims, generation, command, r, c, chunk, n, x, levels, rows, geometry_v, wv, bias_v, mul_v, tanh_v,
            sig_v, w_link, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig, w_out, bias_out, mul_out,
            w1, b1, m1, w2, b2, m2, act_int, act, gate, logit_max, logits, exp_weights, table, first, blank):
    """Claim chunks of ``chunk`` tiles of the batch of ``n`` and run the command on each, until
    none is left (a worker's and the caller's share of one command)."""
    chunks = (n + chunk - 1) // chunk
    while True:
        k = next_chunk(claims, generation, chunks)
        if k < 0:
            return
        b0 = k * chunk
        b1_ = min(n, b0 + chunk)
        if command == ROW_COMMAND:
            _FUSED_ROW(b0, b1_, x, r, levels, rows, geometry_v, wv, bias_v, mul_v, tanh_v, sig_v, w_link, links, cols,
                       act_int, act, gate, first, blank)
        else:
            _FUSED(b0, b1_, c, x, r, levels, left_all, cols, links, geometry, wh, bias_h, mul_h, tanh, sig, w_out,
                   bias_out, mul_out, w1, b1, m1, w2, b2, m2, act_int, act, gate, logit_max, logits, exp_weights,
                   table, first, blank)
        chunk_done(claims)


def _requant_gate(acc, link, bias, mul, tanh, sig, act_int, act, gate, out):
    """The step kernel's horizontal requantisation and gate: acc (N, 2f) sums, + the row's
    link part, + bias, x multiplier, rounded, clamped; then tanh * sigmoid -> out (N, f)."""
    f = out.shape[1]
    half = np.float32(0.5)
    for b in range(acc.shape[0]):
        for o in range(2 * f):
            y = np.floor(((acc[b, o] + link[b, o]) + bias[o]) * mul[o] + half)
            acc[b, o] = min(max(y, -act), act)
        for o in range(f):
            a = np.int64(acc[b, o]) + act_int
            s = np.int64(acc[b, f + o]) + act_int
            out[b, o] = np.float32((tanh[a] * sig[s] * gate + _TABLE_ROUND) >> _TABLE_SHIFT)


def _requant_residual(acc, bias, mul, prev, first, act, out):
    """The output convolution's requantisation, the residual sum (none for the first layer)
    and its clamp: acc (N, f) -> out (N, f)."""
    half = np.float32(0.5)
    for b in range(acc.shape[0]):
        for o in range(acc.shape[1]):
            y = np.floor((acc[b, o] + bias[o]) * mul[o] + half)
            if not first:
                y = y + prev[b, o]
            out[b, o] = min(max(y, -act), act)


def _requant_clamp(acc, bias, mul, lo, hi):
    """acc (N, n), in place: + bias, x multiplier, rounded half up, clamped to [lo, hi]."""
    half = np.float32(0.5)
    for b in range(acc.shape[0]):
        for o in range(acc.shape[1]):
            acc[b, o] = min(max(np.floor((acc[b, o] + bias[o]) * mul[o] + half), lo), hi)


def _head_table(acc, bias, mul, logit_max, exp_weights, logits, table):
    """The head's last requantisation -> logits (N, K) on the 2**-12 grid, and the coder's
    weights exp(logit - max) from ``exp_weights``, as the step kernel makes them."""
    half = np.float32(0.5)
    n_exp = len(exp_weights) - 1
    for b in range(acc.shape[0]):
        top = -logit_max
        for o in range(acc.shape[1]):
            y = np.floor((acc[b, o] + bias[o]) * mul[o] + half)
            logits[b, o] = min(max(y, -logit_max), logit_max)
            top = max(top, logits[b, o])
        for o in range(acc.shape[1]):
            table[b, o] = exp_weights[min(np.int64(top - logits[b, o]), n_exp)]


def _gate_kernel(pre, tanh, sig, act, gate, out):
    """:class:`_Gate`'s arithmetic, element by element: rows of pre (N, 2f) -> out (N, f)."""
    f = out.shape[1]
    for i in range(out.shape[0]):
        for o in range(f):
            a = np.int64(pre[i, o]) + act
            s = np.int64(pre[i, f + o]) + act
            out[i, o] = (tanh[a] * sig[s] * gate + _TABLE_ROUND) >> _TABLE_SHIFT


GATE_ROWS = 1 << 13  # rows of a gate from which they are shared among the coder's threads


def _split_rows(fn, n: int) -> None:
    """fn(a, b) over rows 0..n-1: at once, or in slices on the coder's threads (the kernels
    release the GIL) when there are enough rows to pay."""
    share_out(fn, n, coder_threads() if n >= GATE_ROWS else 1)


_STEP = compile_kernel(_step_kernel)
# numba's np.dot calls the BLAS that scipy carries: without scipy, rows in PyTorch and steps in the loop kernel
_FUSED = compile_kernel(_fused_step_kernel) if importlib.util.find_spec("scipy") else None
_FUSED_ROW = compile_kernel(_fused_row_kernel) if importlib.util.find_spec("scipy") else None
_FUSED_LINE = compile_kernel(_fused_line_kernel) if _FUSED is not None else None
_HORIZONTAL = compile_kernel(_horizontal_kernel) if _FUSED is not None else None
_ENCODE_ROW = compile_kernel(_encode_row_kernel) if _FUSED is not None else None
_HEAD = compile_kernel(_head_kernel) if _FUSED is not None else None
_CHUNKS = compile_kernel(_chunks) if _FUSED is not None and crew.CALLER is not None else None
_SERVE = compile_kernel(_serve) if _CHUNKS is not None else None
_LEAD = compile_kernel(_lead) if _CHUNKS is not None else None
CREW = True  # several threads share a step through a crew (False: through the coder's pool, for comparison)
_GATE = compile_kernel(_gate_kernel)
_ACTIVE = compile_kernel(_active)
_REQ_GATE = compile_kernel(_requant_gate)
_REQ_RES = compile_kernel(_requant_residual)
_REQ_CLAMP = compile_kernel(_requant_clamp)
_HEAD_TABLE = compile_kernel(_head_table)
_EXP_WEIGHTS = fixed.exp_table()


def _float32(dtype) -> bool:
    """A numpy or torch dtype that is float32 (the kernels' type)."""
    return dtype is np.float32 or str(dtype) == "torch.float32"


def _torch_zeros(shape, dtype):
    import torch

    if dtype is np.float32 or dtype is np.float64:
        dtype = torch.float32 if dtype is np.float32 else torch.float64
    return torch.zeros(shape, dtype=dtype)


_ENGINES: dict[int, tuple[tuple, GatedWeights]] = {}


def weights_of(model) -> GatedWeights:
    """:class:`GatedWeights` as given, or of a torch model (taken once, again only if its
    weights change)."""
    if isinstance(model, GatedWeights):
        return model
    key = tuple((p._version, p.data_ptr()) for p in model.state_dict().values())
    cached = _ENGINES.get(id(model))
    if cached is None or cached[0] != key:
        cached = (key, GatedWeights.of(model))
        _ENGINES[id(model)] = cached
    return cached[1]


DEVICE = "cpu"  # where the engine's PyTorch pass runs (use_device); the coder and its tables stay on the CPU


def use_device(name: str) -> None:
    """Code Gated PixelCNN files with the engine's PyTorch pass on device ``name`` ("cpu",
    "cuda", "cuda:1", ...): the encoder's teacher-forced pass, and a decoder that runs the
    whole-image pass at every pixel (the rows its receptive field reaches; the ring-buffer
    stepper is the CPU's). The integers are the same as on the CPU, so the files are the
    same bytes and decode on either: float32 products of integers whose partial sums stay
    below 2**24 are exact in any order, once TF32 (which rounds the factors to 10 bits) is
    off, which this does for the whole process; the rest is integer arithmetic, look-ups and
    elementwise IEEE operations. ``benchmarks/cross_device.py`` checks it on a GPU."""
    import torch

    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name}: torch sees no CUDA GPU on this machine")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif device.type != "cpu":
        raise ValueError(f"device {name}: the engine runs on cpu or cuda")
    global DEVICE
    DEVICE = str(device)


def engine(model) -> GatedEngine:
    """The model's integer engine in PyTorch (the encoder's, and large batches'), built once
    (on :data:`DEVICE`)."""
    w = weights_of(model)
    return w.torch_engine if DEVICE == "cpu" else w.device_engine(DEVICE)


def numpy_decodes(model) -> bool:
    """Whether the model's files decode on the numpy engine (the compiled kernels and numpy's
    matrix products, no torch): numba and scipy present, every layer exact in float32."""
    if _STEP is None or _FUSED is None or _FUSED_ROW is None:
        return False
    eng = weights_of(model).engine
    return all(_float32(q.dtype) for layer in eng.layers for q in (layer.vertical, layer.horizontal, layer.out)) \
        and all(_float32(q.dtype) for q in eng.head)


NUMPY_ENCODES = True  # the encoder's compiled rows where the decoder has them (False: the PyTorch pass)
# (tiles x columns) of a batch the compiled rows take at most: their buffers hold about 7.5 KB
# a tile's column (the decoder's, for the same batch); a larger batch takes the PyTorch pass,
# whose memory is bounded by bands (the codec's batches stay below: 512 tiles of up to 64 columns)
ENCODE_POSITIONS = 1 << 15


def encode_streams(model, x, counts, on_table=None):
    """:func:`arcodec.codec.autoregressive.encode_streams` with the integer engine: row by
    row in compiled calls (:func:`_encode_rows`) where the decoder's kernels exist
    (:func:`numpy_decodes`) and the batch is not too large (ENCODE_POSITIONS), else the
    engine's whole-image pass in PyTorch. The same payloads (tested)."""
    if NUMPY_ENCODES and DEVICE == "cpu" and numpy_decodes(model) and len(x) * x.shape[-1] <= ENCODE_POSITIONS:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):  # as the decoder's (see decode_streams)
            return _encode_rows(weights_of(model).engine, x, counts, on_table)
    return autoregressive.encode_streams(engine(model), x, counts, on_table=on_table)


def _encode_rows(eng: GatedEngine, x, counts: list[int], on_table=None) -> list[tuple[bytes, float]]:
    """The teacher-forced pass as the decoder's own row kernels: per row, every tile's start
    of the row and all its columns in one call (:func:`_encode_row_kernel`; tiles shared
    among the coder's threads), which leaves the last layer's features of the row; then the
    head, the tables and the coder, a few columns of every tile at a time, in the decoder's
    order (column, tile). The model NLL from the logits by :func:`arcodec.models.heads.nll_bits`."""
    import torch

    from arcodec.models.heads import nll_bits

    images = np.ascontiguousarray(np.asarray(x), dtype=np.int64)
    n, _, h, w = images.shape
    if sum(counts) != n:
        raise ValueError(f"stream sizes {counts} do not add up to {n} tiles")
    bounds = np.cumsum([0, *counts]).tolist()
    encs = [autoregressive.StreamEncoder() for _ in counts]
    bits = [0.0] * len(counts)
    K = eng.config.levels
    stepper = GatedStepper(eng, n, h, w)
    cols, links = stepper.arrays[:2]
    features = np.empty((n, w, eng.config.hidden), dtype=np.float32)
    row_args = (images, 0, K, stepper.row_buffers, *stepper.row_args, stepper.left, cols, links,
                *stepper.kernel[:9], ACT, np.float32(ACT), GATE, features, stepper.first, stepper.blank)
    w1, bias1, m1, w2, bias2, m2 = stepper.kernel[9:]
    span = max(1, min(w, autoregressive.TABLE_POSITIONS // n))  # columns a chunk of tables holds
    logits = np.empty((span * n, K), dtype=np.float32)
    table = np.empty((span * n, K))
    threads = min(coder_threads(), n // SLICE_TILES)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torch's threads would spin after the NLL's operations, beside the kernels' threads
    try:
        for r in range(h):
            args = (*row_args[:1], r, *row_args[2:])
            share_out(lambda b0, b1: _ENCODE_ROW(b0, b1, *args), n, threads)
            ordered = np.ascontiguousarray(features.transpose(1, 0, 2)).reshape(w * n, -1)  # column, tile
            symbols = np.ascontiguousarray(images[:, 0, r].T)  # (w, n): column, tile
            row_tables = []
            for c0 in range(0, w, span):
                c1 = min(w, c0 + span)
                m = (c1 - c0) * n
                share_out(lambda a, b: _HEAD(a, b, ordered[c0 * n: c1 * n], w1, bias1, m1, w2, bias2, m2,
                                             np.float32(ACT), np.float32(LOGIT_MAX), logits, _EXP_WEIGHTS, table),
                          m, min(coder_threads(), m // HEAD_SHARE))
                lg = torch.from_numpy(logits[:m]).mul(2.0**-fixed.ACT_FRAC)  # (m, K), exact: a power of 2
                nb = nll_bits(lg, torch.from_numpy(symbols[c0:c1].reshape(m))).view(c1 - c0, n).sum(0)
                weights = table[:m].reshape(c1 - c0, n, K)
                for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
                    bits[i] += float(nb[lo:hi].sum())
                    encs[i].encode(symbols[c0:c1, lo:hi], weights[:, lo:hi].reshape(-1, K))
                if on_table is not None:
                    row_tables.append(table[:m].copy())
            if on_table is not None:
                on_table(r, r + 1, np.concatenate(row_tables))
    finally:
        torch.set_num_threads(torch_threads)
    return [(e.finish(), b) for e, b in zip(encs, bits)]


def decode_streams(model, payloads, counts, channels, h, w, naive=False, on_table=None, progress=None):
    """:func:`arcodec.codec.autoregressive.decode_streams` with the integer engine's stepper
    (``naive``: its whole-image pass at every pixel): on the numpy engine where numba is
    installed (:func:`numpy_decodes`: the same integers, without torch), in PyTorch
    otherwise; on another device (:func:`use_device`) the whole-image pass there."""
    naive = naive or DEVICE != "cpu"
    numpy = not naive and numpy_decodes(model)
    eng = weights_of(model).engine if numpy else engine(model)
    if not numpy:
        return autoregressive.decode_streams(eng, payloads, counts, channels, h, w, naive=naive,
                                             on_table=on_table, progress=progress)
    from threadpoolctl import threadpool_limits

    # numpy's BLAS at one thread: a row's and a step's products are small, and the coder
    # shares the batch out among its own threads (several BLAS threads under each cost more)
    with threadpool_limits(1, user_api="blas"):
        return autoregressive.decode_streams(eng, payloads, counts, channels, h, w, naive=naive,
                                             on_table=on_table, progress=progress)


register_coder("autoregressive", encode_streams, decode_streams, engine=ENGINE, codes=codes, network=engine,
               room=autoregressive.room)
