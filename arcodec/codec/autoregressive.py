"""Autoregressive coding: teacher-forced encode, raster-order decode, same numbers both ways.

The coder of the streams of :mod:`arcodec.codec.plan` for models that give logits of every
sub-pixel given the ones before it in raster order. Inside a stream the symbols follow the
decoder's order: row, column, channel, then tile, so that the decoder pushes every tile of
the stream through each step as one batch.

Both sides evaluate the model in exact mode (:mod:`arcodec.exact`): the encoder
runs the full network on bands of rows, the decoder runs a stepper (cached activations,
or the naive full pass) one pixel at a time. Exact arithmetic makes them agree bit for
bit, whatever the batch size, the crop or the thread count.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterator, Protocol

import numpy as np

from arcodec import fixed
from arcodec.codec.coders import coder_threads, pool_map, register_coder
from arcodec.codec.entropy import Decoders
from arcodec.codec.entropy import Encoder as StreamEncoder
from arcodec.codec.entropy import check_room
from arcodec.codec.mixture import compile_kernel

# torch is imported when a model is evaluated, not with the coder: the Gated PixelCNN's
# numpy engine decodes a few tiles through this loop without it

ENCODE_POSITIONS = 1 << 18  # pixels (tiles x rows x columns) the encoder evaluates at a time
TABLE_POSITIONS = 1 << 14  # pixels whose coder tables (and their temporaries) the encoder holds at a time
# for a model that splits into features and a head (the integer engine): the pixels whose
# features the encoder holds, and those one forward pass sees (rows above a band included)
FEATURE_POSITIONS = 1 << 21
FORWARD_POSITIONS = 1 << 16


def no_grad(fn: Callable) -> Callable:
    """``fn`` under ``torch.no_grad()``, torch imported at the call."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)
    return run


def table(logits) -> np.ndarray:
    """Coder weights (n, K) from exact logits (n, K): the one place logits become numbers
    the coder sees. :func:`arcodec.exact.softmax_weights`, or the same look-ups in one
    compiled pass (:func:`_table_kernel`) for float64 logits on the CPU."""
    if TABLE_KERNEL is not None and str(logits.dtype) == "torch.float64" and logits.device.type == "cpu" \
            and logits.dim() == 2 and logits.shape[1]:
        out = np.empty(tuple(logits.shape))
        TABLE_KERNEL(logits.numpy(), float(fixed.ONE), EXP_WEIGHTS, out)
        return out
    from arcodec.exact import softmax_weights

    return softmax_weights(logits, dim=1).numpy()


def _table_kernel(logits, one, exp_weights, out):
    """exp(logit - max) per row from the exact table, as :func:`arcodec.exact.softmax_weights`
    computes it: logits on the grid (``one`` grid units to 1; 1.0 for logits already in grid
    units), so (max - logit) * one is an exact integer, clamped to the table's last entry."""
    n_exp = len(exp_weights) - 1
    for i in range(logits.shape[0]):
        top = logits[i, 0]
        for k in range(1, logits.shape[1]):
            top = max(top, logits[i, k])
        for k in range(logits.shape[1]):
            out[i, k] = exp_weights[min(np.int64(np.rint((top - logits[i, k]) * one)), n_exp)]


# the coder's tables from exact logits (n, K), in grid units with ``one`` = 1 (the compiled
# decoders' logits): for :func:`table` and the kernels of arcodec.codec.pixelcnn_step
TABLE_KERNEL = compile_kernel(_table_kernel)
EXP_WEIGHTS = fixed.exp_table()


class Stepper(Protocol):
    """Raster-order evaluation of a model: ``begin_row(x, r)`` then ``step(x, r, c)`` for
    every column, returning logits (n, K, C) of pixel (r, c) given x's pixels before it."""

    def begin_row(self, x, r: int) -> None: ...

    def step(self, x, r: int, c: int): ...

    # optional: weights(x, r, c, ch) -> the coder's table (n, K) of channel ch, when the
    # stepper computes it itself (the same numbers as table(step(x, r, c)[:, :, ch]); it
    # may be the stepper's buffer, valid until its next call); close() -> stops its threads


class FullPassStepper:
    """The naive decoder: the whole network on the rows above r that pixel (r, c) can see,
    at every pixel."""

    def __init__(self, model, batch: int, height: int, width: int):
        self.model = model
        # only the rows the receptive field reaches (exact arithmetic: same numbers as the full image)
        self.reach = model.receptive_field()[0] if hasattr(model, "receptive_field") else None
        # the integer engine: the head of this pixel only (the logits of every position, a
        # number per level each, would cost more than the network, and on a GPU the copy back)
        self.head_only = hasattr(model, "features") and hasattr(model, "head_logits")

    def begin_row(self, x, r):
        pass

    @no_grad
    def step(self, x, r, c):
        lo = 0 if self.reach is None else max(0, r - self.reach)
        if self.head_only:
            features = self.model.features(x[:, :, lo: r + 1])
            return self.model.head_logits(features[:, r - lo: r - lo + 1, c: c + 1])[:, :, :, 0, 0]
        return self.model(x[:, :, lo: r + 1])[:, :, :, r - lo, c]


def float_model(model):
    """The torch model behind a torch-free stand-in (:class:`arcodec.codec.gated.GatedWeights`:
    the files of engine 0 code with the float model itself), or the model as given."""
    return model.torch_model() if hasattr(model, "torch_model") else model


def make_stepper(model, batch: int, channels: int, height: int, width: int, naive: bool = False) -> Stepper:
    """The compiled stepper of a PixelCNN or PixelCNN-MADE (:mod:`arcodec.codec.pixelcnn_step`:
    the same numbers), else the model's own stepper where it has one, else the naive one. A
    stepper is called once per channel of a pixel, with the channels before it decoded."""
    if not naive:
        from arcodec.codec.pixelcnn_step import compiled_stepper

        fast = compiled_stepper(model, batch, channels, height, width)  # a torch model or its weights
        if fast is not None:
            return fast
    model = float_model(model)
    if not naive and hasattr(model, "incremental"):
        return model.incremental(batch, height, width)
    return FullPassStepper(model, batch, height, width)


def teacher_forced_logits(model, x, band: int | None = None) -> Iterator[tuple[int, int, object]]:
    """(r0, r1, logits of rows r0..r1-1) for x (n, C, h, w), computed band by band.

    A band needs only the rows its receptive field reaches, so memory stays bounded; bands
    are as tall as ``ENCODE_POSITIONS`` allows (the whole tile when it fits), because every
    band recomputes the rows above it."""
    import torch

    n, _, h, w = x.shape
    band = band or max(1, min(h, ENCODE_POSITIONS // max(1, n * w)))
    above = model.receptive_field()[0] if hasattr(model, "receptive_field") else h
    for r0 in range(0, h, band):
        r1 = min(h, r0 + band)
        lo = max(0, r0 - above)
        with torch.no_grad():
            logits = model(x[:, :, lo:r1])[:, :, :, r0 - lo:]
        yield r0, r1, logits


def teacher_forced(model, x) -> Iterator[tuple[int, int, Callable]]:
    """(r0, r1, logits) for bands of rows r0..r1-1 of x (n, C, h, w), where ``logits(a, b)``
    gives the logits of rows a..b-1 of the band: the encoder's pass in bounded memory.

    A model with ``features(x)`` (B, H, W, f) and ``head_logits(features)`` -> logits (the integer
    engine) keeps a band's features, a few numbers a pixel where the logits are one per level,
    computed a group of tiles at a time (tiles are independent), and makes the logits a few
    rows at a time, so bands are whole tiles and nothing is computed twice. Any other model
    gives a band's logits at once (:func:`teacher_forced_logits`)."""
    if not (hasattr(model, "features") and hasattr(model, "head_logits")):
        for r0, r1, band in teacher_forced_logits(model, x):
            yield r0, r1, lambda a, b, band=band, r0=r0: band[:, :, :, a - r0: b - r0]
        return
    import torch

    n, _, h, w = x.shape
    above = model.receptive_field()[0]
    band = max(1, min(h, FEATURE_POSITIONS // max(1, n * w)))
    for r0 in range(0, h, band):
        r1 = min(h, r0 + band)
        lo = max(0, r0 - above)
        threads = coder_threads()
        group = max(1, min(FORWARD_POSITIONS // ((r1 - lo) * w), -(-n // threads)))
        starts = range(0, n, group)
        feats = torch.cat(_groups(lambda i: model.features(x[i: i + group, :, lo:r1])[:, r0 - lo:], starts, threads))
        yield r0, r1, lambda a, b, feats=feats, r0=r0: model.head_logits(feats[:, a - r0: b - r0])


def _groups(fn: Callable, starts, threads: int) -> list:
    """[fn(i) for i in starts], on the coder's threads when there are several groups: each
    group of tiles on one thread with torch at one thread (its operations release the GIL),
    rather than every operation shared among torch's threads, which wait on each other at
    every step, for long when the machine is busy."""
    if threads < 2 or len(starts) < 2:
        return [fn(i) for i in starts]
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return pool_map(fn, list(starts), threads)
    finally:
        torch.set_num_threads(before)


@no_grad
def encode_streams(model, x, counts: list[int],
                   on_table: Callable | None = None) -> list[tuple[bytes, float]]:
    """Encode tiles x (n, C, h, w) as consecutive streams of ``counts[i]`` tiles each.

    One teacher-forced pass over the whole batch; returns (payload, model NLL in bits of
    its symbols) per stream. ``on_table(r0, r1, weights)`` sees the batch's table in
    decoder order (row, column, channel, tile), a few rows at a time."""
    if sum(counts) != len(x):
        raise ValueError(f"stream sizes {counts} do not add up to {len(x)} tiles")
    import torch

    from arcodec.models.heads import nll_bits

    x = torch.as_tensor(x)  # the codec gives numpy tiles
    model = float_model(model)
    bounds = np.cumsum([0, *counts]).tolist()
    encs = [StreamEncoder() for _ in counts]
    bits = [0.0] * len(counts)
    n = len(x)
    rows = max(1, TABLE_POSITIONS // max(1, n * x.shape[3]))
    for r0, r1, band in teacher_forced(model, x):
        # tables, log-softmax and their copies take several float64 numbers a level and
        # pixel, so they are made a few rows at a time (bounded memory, the same symbols)
        for a in range(r0, r1, rows):
            b = min(r1, a + rows)
            logits = band(a, b)
            xs = x[:, :, a:b]
            nb = nll_bits(logits, xs).flatten(1).sum(1)
            K = logits.shape[1]
            weights = table(logits.permute(3, 4, 2, 0, 1).reshape(-1, K))  # row, column, channel, tile
            if on_table is not None:
                on_table(a, b, weights)
            weights = weights.reshape(-1, n, K)
            symbols = xs.permute(2, 3, 1, 0).reshape(-1, n).numpy()
            for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
                bits[i] += float(nb[lo:hi].sum())
                encs[i].encode(symbols[:, lo:hi], weights[:, lo:hi].reshape(-1, K))
    return [(e.finish(), b) for e, b in zip(encs, bits)]


def decode_streams(model, payloads: list[bytes], counts: list[int], channels: int, h: int, w: int,
                   naive: bool = False, on_table: Callable | None = None,
                   progress: Callable[[int], None] | None = None):
    """Decode consecutive streams of ``counts[i]`` tiles of (channels, h, w) in raster order,
    every tile of every stream in one batch: one model step and one call of the streams'
    decoder (:class:`arcodec.codec.entropy.Decoders`) per pixel and channel. The tiles come back as an int64 tensor, or as a numpy array from a
    stepper that works on numpy images (its ``numpy``: the Gated PixelCNN's kernels, which
    need no torch)."""
    decs = Decoders(payloads, counts)
    n = sum(counts)
    stepper = make_stepper(model, n, channels, h, w, naive)
    if getattr(stepper, "numpy", False):
        x = np.zeros((n, channels, h, w), dtype=np.int64)
        _decode_rows(stepper, x, decs, on_table, progress, lambda a: a)
        return x
    import torch

    x = torch.zeros(n, channels, h, w, dtype=torch.long)
    with torch.no_grad():
        _decode_rows(stepper, x, decs, on_table, progress, torch.from_numpy)
    return x


def _decode_rows(stepper, x, decs, on_table, progress, convert) -> None:
    """Every row of x (n, C, h, w) in turn, pixel after pixel, channel after channel:
    ``convert`` turns a decoded numpy column into x's kind."""
    n, channels, h, w = x.shape
    # a stepper that makes the coder's tables itself (a compiled kernel) gives them directly
    tables = getattr(stepper, "weights", None) or (lambda x, r, c, ch: table(stepper.step(x, r, c)[:, :, ch]))
    try:
        for r in range(h):
            stepper.begin_row(x, r)
            for c in range(w):
                for ch in range(channels):
                    weights = tables(x, r, c, ch)
                    if on_table is not None:  # a copy: a compiled stepper reuses its table's buffer
                        on_table(r, c, ch, weights.copy())
                    x[:, ch, r, c] = convert(decs.decode(weights))
            if progress is not None:
                progress(w * n * channels)
    finally:
        if hasattr(stepper, "close"):  # a stepper's threads (the Gated PixelCNN's crew)
            stepper.close()


def room(model, payload: bytes, tiles: int, channels: int, h: int, w: int) -> None:
    """Refuse a stream too short for its tiles before decoding it: every sub-pixel is one
    symbol of a table over the model's levels (:func:`arcodec.codec.entropy.check_room`)."""
    check_room(len(payload), tiles * channels * h * w, model.config.levels)


register_coder("autoregressive", encode_streams, decode_streams, room=room)
