"""Wavefront coding for local models (:class:`arcodec.models.local.LocalPhotoModel`).

A local model's pixel (r, c) depends on rows r-h..r-1 (columns c-h..c+h) and on row r up
to column c-1. With slope s = h + 1, every pixel on the line t = c + s r depends only on
pixels of earlier lines, so a decoder decodes a whole line, of every tile of the call, in
one step: a W x H tile takes (W - 1) + s (H - 1) + 1 steps instead of W H. The encoder
needs no steps: one teacher-forced pass gives every table.

Symbol order (part of the file format, ``docs/format.md``): a tile's rows are cut into
bands of ``BAND`` rows, each band its own range-coder sub-stream; inside a band the symbols
follow (t, channel, row). A stream's payload is its tiles' sub-streams, tile by tile and
band by band, each but the last preceded by its length (varint). Bands keep the encoder's
memory bounded (it builds one band's tables at a time) without costing the decoder
anything: the bands of a tile are decoded together, on the same lines.

Both sides compute the tables with the model's integer engine
(:class:`arcodec.codec.engine.LocalEngine`: raw parameters of whole bands for the encoder,
of one line's windows for the decoder), its integer colour coupling (``channel_params``)
and :func:`arcodec.codec.mixture.frequencies`: the same integers whatever the batch, the
band, the thread count or the machine.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from arcodec.codec.coders import register_coder
from arcodec.codec.container import SCAN_WAVEFRONT, join_parts, split_parts
from arcodec.codec.engine import LocalEngine
from arcodec.codec.entropy import Decoder as StreamDecoder
from arcodec.codec.entropy import Encoder as StreamEncoder
from arcodec.codec.entropy import check_room
from arcodec.codec.mixture import code_lengths
from arcodec.models.layers import quantized_cached

BAND = 64  # rows per sub-stream
ENCODE_POSITIONS = 1 << 17  # pixels whose raw parameters the encoder holds at a time
TABLE_ROWS = 1 << 15  # sub-pixels whose tables the encoder builds at a time

OnTable = Callable[[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray], None]
# on_table(tiles, rows, cols, channel, freq (N, K)): the tables of N sub-pixels of one channel


def steps(height: int, width: int, slope: int) -> int:
    """Decoder steps for a height x width tile."""
    return (width - 1) + slope * (height - 1) + 1


def line(t: int, height: int, width: int, slope: int) -> np.ndarray:
    """Rows of the pixels on line t (ascending); their columns are t - slope * rows."""
    lo = max(0, -(-(t - (width - 1)) // slope))
    hi = min(height - 1, t // slope)
    return np.arange(lo, hi + 1)


def _band_order(r0: int, r1: int, width: int, slope: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a band's pixels in the order (t, row)."""
    rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(width), indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    order = np.lexsort((rr, cc + slope * rr))
    return rr[order], cc[order]


WORKERS = max(1, min(4, os.cpu_count() or 1))  # threads that build tables (the kernel releases the GIL)
_POOL: list = []


def _pool() -> ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=WORKERS))
    return _POOL[0]


# a decoder line's tables are shared among threads from twice this many rows on; a single
# photo's lines (at most 128 pixels) stay in one thread: measured, the hand-off cost more
SPLIT_ROWS = 256


def _split_tables(eng: LocalEngine, raw: np.ndarray, prev: np.ndarray, ch: int) -> np.ndarray:
    """eng.tables(raw, prev, ch), the rows shared among the pool's threads (every row is
    computed on its own: the same integers however they are split)."""
    parts = min(WORKERS, len(raw) // SPLIT_ROWS)
    if parts < 2:
        return eng.tables(raw, prev, ch)
    cuts = np.linspace(0, len(raw), parts + 1).astype(int)
    pieces = _pool().map(lambda k: eng.tables(raw[cuts[k]: cuts[k + 1]], prev[cuts[k]: cuts[k + 1]], ch), range(parts))
    return np.concatenate(list(pieces))


def engine(model) -> LocalEngine:
    """The model's integer engine, built once (again only if its weights change)."""
    return quantized_cached(model, tuple(model.state_dict().values()), lambda: LocalEngine(model))


@torch.no_grad()
def encode_streams(model, x: torch.Tensor, counts: list[int], on_table: OnTable | None = None
                   ) -> list[tuple[bytes, float]]:
    """Encode tiles x (n, C, H, W) as consecutive streams of ``counts[i]`` tiles; returns
    (payload, code length in bits of the exact tables) per stream."""
    if sum(counts) != len(x):
        raise ValueError(f"stream sizes {counts} do not add up to {len(x)} tiles")
    n, C, H, W = x.shape
    slope = model.horizon + 1
    eng = engine(model)
    bands = range(0, H, BAND)
    encs = [[StreamEncoder() for _ in bands] for _ in range(n)]
    bits = np.zeros(n)
    group = max(1, ENCODE_POSITIONS // (min(BAND, H) * W))  # tiles whose band parameters fit at once
    for bi, r0 in enumerate(bands):
        r1 = min(H, r0 + BAND)
        rows, cols = _band_order(r0, r1, W, slope)
        t_of = cols + slope * rows
        # symbol order inside the band: (t, channel, row)
        starts = np.flatnonzero(np.r_[True, t_of[1:] != t_of[:-1]])
        for g0 in range(0, n, group):
            g1 = min(n, g0 + group)
            xg = x[g0:g1]
            raw = eng.params(xg, r0, r1)  # (g, P, rows, W)
            ends = np.r_[starts[1:], len(rows)]  # line k holds rows[starts[k]:ends[k]]
            per = max(1, TABLE_ROWS // ((g1 - g0) * C))  # pixels whose tables a chunk builds
            s0 = 0
            while s0 < len(starts):  # chunks of whole lines
                s1 = max(s0 + 1, int(np.searchsorted(ends, starts[s0] + per, side="right")))
                a, b = starts[s0], ends[s1 - 1]
                s0 = s1
                r, c = rows[a:b], cols[a:b]
                praw = raw[:, :, r - r0, c].permute(0, 2, 1).reshape(-1, raw.shape[1]).numpy()
                prev = xg[:, :, r, c].permute(0, 2, 1).reshape(-1, C).numpy()
                # the channels' tables side by side, in threads
                freqs = list(_pool().map(lambda ch: eng.tables(praw, prev, ch), range(C)))
                if on_table is not None:
                    tiles = np.repeat(np.arange(g0, g1), b - a)
                    for ch in range(C):
                        on_table(tiles, np.tile(r, g1 - g0), np.tile(c, g1 - g0), ch, freqs[ch])
                freqs = [f.reshape(g1 - g0, b - a, -1) for f in freqs]
                # interleave the channels line by line, (t, channel, row): where each
                # channel's table of pixel k goes in the stream
                L = b - a
                lt = t_of[a:b]
                seg = np.flatnonzero(np.r_[True, lt[1:] != lt[:-1], True])
                lengths = np.diff(seg)
                first = np.repeat(seg[:-1], lengths)
                size = np.repeat(lengths, lengths)
                dest = [first * C + ch * size + (np.arange(L) - first) for ch in range(C)]
                sym = xg[:, :, r, c].numpy()  # (g, C, L)
                table = np.empty((L * C, freqs[0].shape[-1]), dtype=np.float64)
                symbols = np.empty(L * C, dtype=np.int64)
                for i in range(g1 - g0):
                    for ch in range(C):
                        table[dest[ch]] = freqs[ch][i]
                        symbols[dest[ch]] = sym[i, ch]
                        bits[g0 + i] += float(code_lengths(freqs[ch][i], sym[i, ch]).sum())
                    encs[g0 + i][bi].encode(symbols, table)
    bounds = np.cumsum([0, *counts]).tolist()
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        parts = [e.finish() for i in range(a, b) for e in encs[i]]
        out.append((join_parts(parts), float(bits[a:b].sum())))
    return out


class _OneThread:
    """torch at one thread inside a decoder loop: a line's matrix products are too small to
    share, and waking a pool for each costs more than it saves."""

    def __enter__(self):
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)


@torch.no_grad()
def decode_streams(model, payloads: list[bytes], counts: list[int], channels: int, h: int, w: int,
                   naive: bool = False, on_table: OnTable | None = None,
                   progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Decode consecutive streams of ``counts[i]`` tiles of (channels, h, w), line by line,
    every tile of every stream in the same steps; the tiles come back as uint8 levels (5
    bytes a sub-pixel held in all: the levels and the model's float32 input grid). ``naive``
    is accepted for the codec's interface (there is no other decoder to compare with)."""
    n = sum(counts)
    hz = model.horizon
    slope = hz + 1
    nb = -(-h // BAND)
    decs = []
    for p, k in zip(payloads, counts):
        parts = split_parts(p, k * nb, "band")
        decs += [[StreamDecoder(parts[i * nb + b]) for b in range(nb)] for i in range(k)]
    eng = engine(model)
    lut = eng.input_units(torch.arange(model.config.levels)).numpy()
    xpad = np.zeros((n, channels, h + hz, w + 2 * hz), dtype=np.float32)  # input units, 0 outside
    x = np.zeros((n, channels, h, w), dtype=np.uint8)
    with _OneThread():
        _decode_lines(eng, decs, xpad, x, lut, h, w, slope, hz, on_table, progress)
    return torch.from_numpy(x)


def _decode_lines(eng, decs, xpad, x, lut, h, w, slope, hz, on_table, progress) -> None:
    n, channels = x.shape[:2]
    dr = np.arange(hz + 1)[None, :, None]
    dc = np.arange(2 * hz + 1)[None, None, :]
    tiles_all = np.arange(n)
    for t in range(steps(h, w, slope)):
        rows = line(t, h, w, slope)
        cols = t - slope * rows
        P = len(rows)
        if P == 0:  # a tile narrower than the slope leaves lines empty
            continue
        win = xpad[:, :, rows[:, None, None] + dr, cols[:, None, None] + dc]  # (n, C, P, h+1, 2h+1)
        raw = eng.params_at(torch.from_numpy(win.transpose(0, 2, 1, 3, 4).reshape(n * P, -1))).numpy()
        prev = np.zeros((n * P, channels), dtype=np.int64)
        band = rows // BAND
        seg = np.flatnonzero(np.r_[True, band[1:] != band[:-1], True])
        for ch in range(channels):
            freq = _split_tables(eng, raw, prev, ch)
            if on_table is not None:
                on_table(np.repeat(tiles_all, P), np.tile(rows, n), np.tile(cols, n), ch, freq)
            weights = freq.astype(np.float64)
            for i in range(n):
                for k in range(len(seg) - 1):
                    a, b = i * P + seg[k], i * P + seg[k + 1]
                    prev[a:b, ch] = decs[i][band[seg[k]]].decode(weights[a:b])
        got = prev.reshape(n, P, channels).transpose(0, 2, 1)  # (n, C, P)
        x[:, :, rows, cols] = got
        xpad[:, :, rows + hz, cols + hz] = lut[got]
        if progress is not None:
            progress(n * P * channels)


def room(model, payload: bytes, tiles: int, channels: int, h: int, w: int) -> None:
    """Refuse a stream too short for its tiles before decoding it: every sub-pixel is one
    symbol of a table over the model's levels (every level at least 1 of 2^24), in one of
    the tiles' band sub-streams (:func:`arcodec.codec.entropy.check_room`)."""
    check_room(len(payload), tiles * channels * h * w, model.config.levels, tiles * -(-h // BAND))


# local models see across tiles' borders only inside a tile, so they take whole images (up to
# 4096 a side) when the caller names no tile side
register_coder("wavefront", encode_streams, decode_streams, scan=SCAN_WAVEFRONT, tile=4096, room=room)
