"""Compiled decoder steps for the PixelCNN family: the exact arithmetic of engine 0, fused.

The files of a PixelCNN or a PixelCNN-MADE are coded in the exact mode of :mod:`arcodec.exact`:
activations on the 2**-12 grid, integer weights times 2**-s, sums of integer products that
stay below 2**53, so float64 holds every one exactly. The PyTorch steppers
(:class:`~arcodec.models.pixelcnn.PixelCNNIncremental`, the PixelCNN-MADE's) compute one
position of every layer a pixel, but through some 150 torch operations, each a few
microseconds of dispatch for a few thousand multiply-adds: the decoder ran at a few images
a second whatever the batch.

:class:`CompiledStepper` runs the same arithmetic in one numba kernel per pixel and channel:

* values are held in grid units (the integers ``v = x * 2**12``), so a layer is
  ``rint((bias + sum v w) * 2**-s)`` clamped to the activation range: the products and
  sums are the same exact integers as torch's (any order gives them), the scaling by a
  power of two is exact and ``rint`` rounds half to even as ``torch.round`` does; ReLU,
  the residual sum and its clamp are the same too. So the coder's tables are the PyTorch
  stepper's, element for element (``tests/test_pixelcnn_step.py``): no format change, and
  files written before decode as they did;
* the residual blocks' k x k convolutions read ring buffers of their input rows (one slot a
  row, the rows above the image left out as the padding leaves them out); the first layer
  reads the levels themselves through the embedding's K grid values; taps that the mask
  removes entirely are never visited, and zero inputs (most of them, after a ReLU) are
  skipped;
* PixelCNN-MADE: the trunk and the context parts of the MADE once a pixel, then for each
  channel only the MADE's hidden layers and the K outputs of that channel; PixelCNN: the
  whole network again for every channel (its colour masks make position (r, c) depend on
  the channels decoded so far), the head's K outputs of that channel only;
* the logits become the coder's weights exp(logit - max) from the table of
  :func:`arcodec.exact.softmax_weights`, inside the kernel;
* a batch of KERNEL_SPLIT tiles or more is shared among the coder's threads (the kernel
  releases the GIL), each thread a slice of the tiles.

Models the kernel does not cover (layer normalisation, a mixture head, ``causal=False``,
a MADE with another ordering) and runs without numba (or with ARCODEC_NO_NUMBA=1) keep the
PyTorch steppers: the same numbers, slower.
"""

from __future__ import annotations

import math

import numpy as np

from arcodec import fixed
from arcodec.codec.autoregressive import EXP_WEIGHTS, TABLE_KERNEL
from arcodec.codec.coders import coder_threads, share_out
from arcodec.codec.mixture import compile_kernel

KERNEL_SPLIT = 16  # tiles in a batch from which a step is shared among threads
ENABLED = True  # False: the codec takes the PyTorch steppers (benchmarks/pixelcnn_step.py times both)
_ONE = float(fixed.ONE)
_LIMIT = float(fixed.ACT_LIMIT) * _ONE  # the activation clamp in grid units


def compiled_stepper(model, batch: int, channels: int, height: int, width: int) -> "CompiledStepper | None":
    """The compiled stepper of ``model`` (a PixelCNN or PixelCNN-MADE in exact mode that the
    kernel covers, or its :class:`PixelCNNWeights`), or None: the caller then takes the
    model's own stepper."""
    if not ENABLED or _TRUNK is None or not _covered(model):
        return None
    return CompiledStepper(model, batch, height, width)


def _covered(model) -> bool:
    arch = getattr(model, "arch", None)
    if arch not in ("pixelcnn", "pixelcnn-made"):
        return False
    c = model.config
    if c.norm or not c.causal or getattr(c, "mixture", 0):
        return False
    if isinstance(model, PixelCNNWeights):
        ordering = model.state.get("made.ordering")
        return arch == "pixelcnn" or (ordering is not None and ordering.tolist() == list(range(c.channels)))
    if not model.first.exact:  # the float path is not the codec's
        return False
    if arch == "pixelcnn-made":
        return model.made.ordering.tolist() == list(range(c.channels))
    return True


class PixelCNNWeights:
    """A PixelCNN or PixelCNN-MADE as its compiled decoder needs it: the arch, the config and
    the weights (numpy arrays by their state-dict names), read from a model file without
    torch. The codec codes with it as with the model: the decoder runs the compiled steps
    (their layers quantized here as :func:`arcodec.exact.quantize_conv` quantizes them, the
    same integers: tested), the encoder loads the torch model (:meth:`torch_model`)."""

    coding = "autoregressive"
    scan = "raster"

    def __init__(self, arch: str, config, state: dict[str, np.ndarray], torch_model=None):
        self.arch, self.config, self.state = arch, config, state
        self._torch_model = torch_model  # a function that loads the float model

    @classmethod
    def read(cls, path, arch: str, config: dict, torch_model=None) -> "PixelCNNWeights":
        from safetensors import safe_open

        from arcodec.models import pixelcnn_layout

        with safe_open(str(path), framework="np") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
        kind = pixelcnn_layout.PixelCNNMADEConfig if arch == "pixelcnn-made" else pixelcnn_layout.PixelCNNConfig
        return cls(arch, kind(**config), state, torch_model)

    def torch_model(self):
        if self._torch_model is None:
            raise ValueError("these weights were read without their model: no float model to code with")
        return self._torch_model()

    def receptive_field(self) -> tuple[int, int]:
        from arcodec.models.pixelcnn_layout import receptive_field

        return receptive_field(self.config)

    def embedding(self) -> np.ndarray:
        """The first layer's inputs of the K levels in grid units (``LevelModel.embed``)."""
        k = self.config.levels
        x = np.arange(k, dtype=np.float64) * (2.0 / (k - 1)) - 1.0
        return np.clip(np.round(x * _ONE), -_LIMIT, _LIMIT)

    def quantized(self, name: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Layer ``name`` (a masked convolution or masked linear layer) quantized as
        :func:`arcodec.exact.quantize_conv` does: the float32 weights times their mask, an
        exponent s keeping WEIGHT_BITS bits of the largest, round(w 2**s) (half to even, as
        torch.round), the bias on the grid; as :func:`_grid` gives it."""
        st = self.state
        conv = f"{name}.conv.weight" in st
        w = st[f"{name}.conv.weight" if conv else f"{name}.linear.weight"] * st[f"{name}.mask"]
        if not conv:
            w = w.reshape(*w.shape, 1, 1)
        peak = float(np.abs(w).max()) if w.size else 0.0
        s = 0 if peak == 0.0 else fixed.WEIGHT_BITS - math.frexp(peak)[1]
        wq = np.round(w.astype(np.float64) * 2.0**s)
        if wq[0].size * 2.0 ** (22 + fixed.WEIGHT_BITS) >= 2.0**53:
            raise ValueError(f"layer {name} too wide for exact mode")
        bias = st.get(f"{name}.conv.bias" if conv else f"{name}.linear.bias")
        b = np.zeros(len(wq)) if bias is None else np.round(bias.astype(np.float64) * 2.0 ** (s + fixed.ACT_FRAC))
        return wq, b, 2.0 ** (-s)


class _TorchLayers:
    """The same questions as :class:`PixelCNNWeights` answers, asked of a torch model (its
    layers' own quantization, :func:`arcodec.exact.quantize_conv`)."""

    def __init__(self, model):
        self.model = model

    def embedding(self) -> np.ndarray:
        import torch

        with torch.no_grad():
            return (self.model.embed(torch.arange(self.model.config.levels)) * _ONE).numpy()

    def quantized(self, name: str) -> tuple[np.ndarray, np.ndarray, float]:
        return _grid(self.model.get_submodule(name)._quantized())


def _grid(q) -> tuple[np.ndarray, np.ndarray, float]:
    """A quantized layer (wq, bq, s) of :func:`arcodec.exact.quantize_conv` as (weights (o, ...)
    float64 integers, bias in grid units, the multiplier 2**-s)."""
    wq, bq, s = q
    w = wq.detach().double().numpy()
    b = np.zeros(len(w)) if bq is None else (bq.detach().double() * _ONE).numpy()
    return w, b, 2.0 ** (-s)


def _taps(w: np.ndarray, dilation: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The taps of a masked convolution's weights w (o, i, kh // 2 + 1, kw) that are not all
    zero: offsets (T, 2) (rows up, columns either side) and their weights (T, i, o)."""
    _, _, rows, kw = w.shape
    taps, ws = [], []
    for a in range(rows):
        for t in range(kw):
            if np.any(w[:, :, a, t]):
                taps.append(((a - (rows - 1)) * dilation, (t - kw // 2) * dilation))
                ws.append(w[:, :, a, t].T)
    if not taps:  # a layer that reads nothing: one zero tap keeps the arrays' shapes
        taps, ws = [(0, 0)], [np.zeros((w.shape[1], w.shape[0]))]
    return np.array(taps, dtype=np.int64), np.ascontiguousarray(np.stack(ws))


def _linear(q) -> tuple[np.ndarray, np.ndarray, float]:
    """A quantized 1x1 masked convolution or masked linear layer (:func:`_grid`'s form) as
    (weights (i, o), bias, multiplier)."""
    w, b, m = q
    return np.ascontiguousarray(w.reshape(len(w), -1).T), b, m


class CompiledStepper:
    """Raster-order decoding of a PixelCNN or PixelCNN-MADE by the compiled kernels (the
    module docstring). ``weights(x, r, c, ch)`` gives the coder's table (B, K) of channel ch
    of pixel (r, c), the channels before ch of that pixel decoded in x (B, C, H, W) (a
    torch tensor on the CPU or a numpy array, int64); ``begin_row(x, r)`` computes the
    positions before row r that no step went through (a sampler's given rows)."""

    def __init__(self, model, batch: int, height: int, width: int):
        src = model if isinstance(model, PixelCNNWeights) else _TorchLayers(model)
        # built from a weights file, x is a numpy array (no torch at all); from a torch
        # model, x may be a tensor: the kernels read it through .numpy(), no copy
        self.numpy = isinstance(model, PixelCNNWeights)
        c = model.config
        self.made = model.arch == "pixelcnn-made"
        self.channels, self.levels, self.width = c.channels, c.levels, width
        w0, b0, m0 = src.quantized("first")
        taps0, w0 = _taps(w0)
        n_blocks = c.blocks
        half = c.hidden // 2
        if n_blocks:
            convs = [src.quantized(f"blocks.{k}.conv") for k in range(n_blocks)]
            taps = _taps(convs[0][0])[0]
            wc = np.stack([_taps_as(w, taps) for w, _, _ in convs])
            lin_r = [_linear(src.quantized(f"blocks.{k}.reduce")) for k in range(n_blocks)]
            lin_e = [_linear(src.quantized(f"blocks.{k}.expand")) for k in range(n_blocks)]
            rows = int(-taps[:, 0].min()) + 1
        else:  # no blocks: empty stacks of the right ranks
            taps, wc, rows = np.zeros((1, 2), np.int64), np.zeros((0, 1, half, half)), 1
            convs, lin_r, lin_e = [], [], []
        self.trunk = (src.embedding(), taps0, w0, b0, m0, taps,
                      _stack([w for w, _, _ in lin_r], (0, c.hidden, half)), _stack([b for _, b, _ in lin_r], (0, half)),
                      np.array([m for _, _, m in lin_r]),
                      wc, _stack([b for _, b, _ in convs], (0, half)), np.array([m for _, _, m in convs]),
                      _stack([w for w, _, _ in lin_e], (0, half, c.hidden)), _stack([b for _, b, _ in lin_e], (0, c.hidden)),
                      np.array([m for _, _, m in lin_e]))
        self.rings = np.zeros((n_blocks, batch, rows, width, half))
        self.h = np.zeros((batch, c.hidden))  # the trunk's output at the current position
        if self.made:
            hidden = [_linear(src.quantized(f"made.layers.{k}")) for k in range(c.made_layers)]
            self.head = (*_linear(src.quantized("features")), *hidden[0], *_linear(src.quantized("made.ctx_hidden")),
                         *_hidden_stack(hidden[1:], c.made_hidden), *_linear(src.quantized("made.out")),
                         *_linear(src.quantized("made.ctx_out")))
            self.ctx_h = np.zeros((batch, c.made_hidden))  # ctx_hidden(phi), once a pixel
            self.ctx_o = np.zeros((batch, c.channels * c.levels))  # ctx_out(phi)
        else:
            self.head = (*_linear(src.quantized("head.1")), *_linear(src.quantized("head.3")))
        self.table = np.zeros((batch, c.levels))
        self.logits = np.zeros((batch, c.levels))  # the table's logits, grid units
        self.done = 0  # raster index: the positions before it hold their final activations

    def begin_row(self, x, r: int) -> None:
        self._catch_up(_array(x), r * self.width)

    def _catch_up(self, x: np.ndarray, upto: int) -> None:
        while self.done < upto:
            r, c = divmod(self.done, self.width)
            self._run(x, r, c, 0, head=False)
            self.done += 1

    def weights(self, x, r: int, c: int, ch: int) -> np.ndarray:
        x = _array(x)
        i = r * self.width + c
        self._catch_up(x, i)
        self._run(x, r, c, ch, head=True)
        if ch == self.channels - 1:
            self.done = max(self.done, i + 1)
        return self.table.copy()

    def step(self, x, r: int, c: int):
        """The logits (B, K, C) of pixel (r, c) from the channels of x decoded so far (a
        sampler's step): float64 tensors on the grid, the PyTorch stepper's values. Channel
        d's logits see x's channels before d at (r, c), as the model's own do."""
        import torch

        x = _array(x)
        i = r * self.width + c
        self._catch_up(x, i)
        out = np.empty((len(x), self.levels, self.channels))
        for ch in range(self.channels):
            self._run(x, r, c, ch, head=True)
            out[:, :, ch] = self.logits
        self.done = max(self.done, i + 1)
        return torch.from_numpy(out * 2.0**-fixed.ACT_FRAC)

    def _run(self, x: np.ndarray, r: int, c: int, ch: int, head: bool) -> None:
        """One kernel call over the batch, in slices on the coder's threads when it pays."""
        trunk = not self.made or ch == 0  # a PixelCNN's position depends on the channels decoded
        args = (r, c, ch, trunk, head, x, *self.trunk, self.rings, self.h, _LIMIT)
        if self.made:
            def call(b0, b1):
                _MADE(b0, b1, *args, *self.head, self.ctx_h, self.ctx_o, self.levels, EXP_WEIGHTS, self.logits,
                      self.table)
        else:
            def call(b0, b1):
                _CATEGORICAL(b0, b1, *args, *self.head, self.levels, EXP_WEIGHTS, self.logits, self.table)
        share_out(call, len(x), 1 if len(x) < KERNEL_SPLIT else coder_threads())


def _taps_as(w: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Weights w (o, i, rows, kw) at the given taps: (T, i, o) (every block has one mask)."""
    rows, kw = w.shape[2], w.shape[3]
    return np.ascontiguousarray(np.stack([w[:, :, rows - 1 + dy, kw // 2 + dx].T for dy, dx in taps]))


def _stack(arrays: list, empty: tuple) -> np.ndarray:
    return np.ascontiguousarray(np.stack(arrays)) if arrays else np.zeros(empty)


def _hidden_stack(layers: list, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The MADE's hidden layers after the first, stacked (L, width, width), (L, width), (L,)."""
    return (_stack([w for w, _, _ in layers], (0, width, width)), _stack([b for _, b, _ in layers], (0, width)),
            np.array([m for _, _, m in layers], dtype=np.float64))


def _array(x) -> np.ndarray:
    """The decoder's images as an int64 numpy array (a view of a CPU tensor)."""
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


# ------------------------------------------------------------------------------ kernels

def _dense_kernel(x, w, bias, lo, mul, limit, relu_in, out):
    """One masked 1x1 layer at one position: out[o] = rint((bias[lo + o] + sum_j x[j] w[j, lo + o])
    mul), clamped to the activation range, for o < len(out) (grid units; ``lo`` picks a channel's
    block of outputs). ``relu_in``: the layer reads ReLU(x), so inputs below zero are skipped;
    zeros are skipped always (the same exact sums)."""
    n = out.shape[0]
    for o in range(n):
        out[o] = bias[lo + o]
    for j in range(x.shape[0]):
        v = x[j]
        if v > 0.0 or (v < 0.0 and not relu_in):
            for o in range(n):
                out[o] += v * w[j, lo + o]
    for o in range(n):
        out[o] = min(max(np.rint(out[o] * mul), -limit), limit)


def _trunk_kernel(b, r, c, x, emb, taps0, w0, b0, m0, taps, wr, br, mr, wc, bc, mc, we, be, me, rings, h, limit):
    """Position (r, c) of every trunk layer for tile b: the first (type A) layer from the
    levels, then each residual block, writing its k x k convolution's input into its ring;
    the last block's output into h (grid units)."""
    hidden = w0.shape[2]
    half = wr.shape[2]
    n_in = w0.shape[1]
    width = x.shape[3]
    slots = rings.shape[2]
    acc = np.empty(hidden)
    u = np.empty(half)
    for o in range(hidden):
        acc[o] = b0[o]
    for t in range(taps0.shape[0]):
        rr, cc = r + taps0[t, 0], c + taps0[t, 1]
        if rr < 0 or cc < 0 or cc >= width:
            continue  # the padding: zeros
        for i in range(n_in):
            v = emb[x[b, i, rr, cc]]
            if v != 0.0:
                for o in range(hidden):
                    acc[o] += v * w0[t, i, o]
    for o in range(hidden):
        h[o] = min(max(np.rint(acc[o] * m0), -limit), limit)
    slot = r % slots
    for k in range(wr.shape[0]):
        ring = rings[k, b, slot, c]  # reduce: ReLU(h) -> 1x1 -> ReLU, into the ring
        _DENSE(h, wr[k], br[k], 0, mr[k], limit, True, ring)
        for o in range(half):
            ring[o] = max(ring[o], 0.0)
        for o in range(half):  # the k x k convolution over the ring, then ReLU
            u[o] = bc[k, o]
        for t in range(taps.shape[0]):
            rr, cc = r + taps[t, 0], c + taps[t, 1]
            if rr < 0 or cc < 0 or cc >= width:
                continue
            s = rr % slots
            for j in range(half):
                v = rings[k, b, s, cc, j]
                if v != 0.0:
                    for o in range(half):
                        u[o] += v * wc[k, t, j, o]
        for o in range(half):
            u[o] = max(min(max(np.rint(u[o] * mc[k]), -limit), limit), 0.0)
        _DENSE(u, we[k], be[k], 0, me[k], limit, False, acc)  # expand, and the residual sum
        for o in range(hidden):
            h[o] = min(max(h[o] + acc[o], -limit), limit)


def _categorical_kernel(b0_, b1_, r, c, ch, trunk, head, x, emb, taps0, w0, b0, m0, taps, wr, br, mr, wc, bc, mc,
                        we, be, me, rings, h, limit, w1, bias1, m1, w2, bias2, m2, levels, exp_weights, out, table):
    """A PixelCNN's step for tiles b0_..b1_-1: the trunk at (r, c), then its head (ReLU, 1x1,
    ReLU, 1x1) for the K logits of channel ch only."""
    hid = np.empty(w1.shape[1])
    for b in range(b0_, b1_):
        if trunk:
            _TRUNK(b, r, c, x, emb, taps0, w0, b0, m0, taps, wr, br, mr, wc, bc, mc, we, be, me, rings, h[b], limit)
        if not head:
            continue
        _DENSE(h[b], w1, bias1, 0, m1, limit, True, hid)
        _DENSE(hid, w2, bias2, ch * levels, m2, limit, True, out[b])  # hid's ReLU
        TABLE_KERNEL(out[b: b + 1], 1.0, exp_weights, table[b: b + 1])


def _made_kernel(b0_, b1_, r, c, ch, trunk, head, x, emb, taps0, w0, b0, m0, taps, wr, br, mr, wc, bc, mc,
                 we, be, me, rings, h, limit, wf, bf, mf, wi, bi, mi, wch, bch, mch, wl, bl, ml, wo, bo, mo,
                 wco, bco, mco, ctx_h, ctx_o, levels, exp_weights, out, table):
    """A PixelCNN-MADE's step for tiles b0_..b1_-1. With ``trunk`` (the pixel's first
    channel): the trunk at (r, c), the context phi = ReLU(1x1(ReLU(h))) and its two parts of
    the MADE (into ctx_h, ctx_o). With ``head``: the MADE on the one-hot of the pixel's
    levels (the channels from ch on are zeros there, which the masks never read) for the K
    logits of channel ch."""
    width_h = wi.shape[1]
    channels = x.shape[1]
    phi = np.empty(wf.shape[1])
    hid = np.empty(width_h)
    nxt = np.empty(width_h)
    one = 4096.0  # the one-hot's 1 in grid units
    for b in range(b0_, b1_):
        if trunk:
            _TRUNK(b, r, c, x, emb, taps0, w0, b0, m0, taps, wr, br, mr, wc, bc, mc, we, be, me, rings, h[b], limit)
            _DENSE(h[b], wf, bf, 0, mf, limit, True, phi)
            _DENSE(phi, wch, bch, 0, mch, limit, True, ctx_h[b])  # phi's ReLU
            _DENSE(phi, wco, bco, 0, mco, limit, True, ctx_o[b])
        if not head:
            continue
        for o in range(width_h):  # the first hidden layer: one-hot rows of the weights
            hid[o] = bi[o]
        for d in range(channels):
            row = d * levels + x[b, d, r, c]
            for o in range(width_h):
                hid[o] += one * wi[row, o]
        for o in range(width_h):
            y = min(max(np.rint(hid[o] * mi), -limit), limit)
            hid[o] = max(min(max(y + ctx_h[b, o], -limit), limit), 0.0)
        for k in range(wl.shape[0]):
            _DENSE(hid, wl[k], bl[k], 0, ml[k], limit, True, nxt)  # hid is ReLU'd already
            for o in range(width_h):
                hid[o] = max(nxt[o], 0.0)
        logits = out[b]
        _DENSE(hid, wo, bo, ch * levels, mo, limit, True, logits)
        for o in range(levels):
            logits[o] = min(max(logits[o] + ctx_o[b, ch * levels + o], -limit), limit)
        TABLE_KERNEL(out[b: b + 1], 1.0, exp_weights, table[b: b + 1])


_DENSE = compile_kernel(_dense_kernel)
_TRUNK = compile_kernel(_trunk_kernel)
_CATEGORICAL = compile_kernel(_categorical_kernel)
_MADE = compile_kernel(_made_kernel)
