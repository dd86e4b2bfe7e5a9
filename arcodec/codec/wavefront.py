"""Wavefront coding for local models (:class:`arcodec.models.local.LocalPhotoModel`).

A local model's pixel (r, c) depends on rows r-h..r-1 (columns c-h..c+h) and on row r up
to column c-1. With slope s = h + 1, every pixel on the line t = c + s r depends only on
pixels of earlier lines, so a decoder decodes a whole line, of every tile of the call, in
one step: a W x H tile takes (W - 1) + s (H - 1) + 1 steps instead of W H. The encoder
needs no steps: one teacher-forced pass gives every table, and of each table it computes only
the coded level's two edges (:func:`arcodec.codec.mixture.edges`), all the range coder needs
(:class:`arcodec.codec.entropy.EdgeEncoder`; whole tables for constriction without numba).

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
band, the thread count or the machine. A model with ``surprise`` builds a pixel's channels
in order on both sides: each channel's tables take the frequencies of the levels the
earlier channels took in theirs.

Engines (a header field): the model's mixtures were learnt on other photos, and an image
sharper, noisier or smoother than those wants its own, so each stream carries offsets of its
own at the start of its payload, in steps of SCALE_UNIT, that both sides add to the raw
parameters as integers. Engine 5, what the encoder writes, starts with the stream's
offsets, as engine 2 stores them, and corrects them in each region of a tile (a band's
rows, REGION_WIDTH columns) of REGION_MIN_PIXELS or more, since a photo is not the same
everywhere: region by region, channel by channel, a bit 0 (none) or 1 and the changes of
the channel's 2 M corrections from those of the region above (none in a tile's first
band), in signed exp-Golomb codes of orders GOLOMB_ORDERS (:func:`_corrections_header`),
so that a region like the one above costs a few bits. The encoder fits them once it has a
band's parameters (:func:`_region_jobs`). Engine 4 (files from before engine 5) stored
the corrections themselves, at order 0. Engine 3 (files from before engine 4) gave
each region offsets of its own, with no stream-wide set: a byte 0 (no offsets anywhere),
or 1 and each region's, tile by tile, band by band, block by block, as engine 2 stores a
stream's. Engine 2 (files from before engine 3) moves each
component's logit and log scale, channel by channel, the same for the whole stream: a byte
0 (no offsets), or 1 and 2 C M signed bytes (each channel's M logit steps, then its M
log-scale steps); the encoder chose them by :func:`choose_mixture_offsets` (channel after
channel, the float offsets that minimise the code length of a sample of the stream's
pixels, :mod:`arcodec.codec.adapt`, rounded, kept where they save bits; none for streams
under SCALE_MIN_PIXELS). Engine 1 moves all of a channel's log scales by one signed byte a
channel (:func:`choose_scale_offsets`: a search on the exact tables); engine 0 has no
offsets.

The coder runs without torch: the engine computes in numpy (and numba), from the weights
alone (:class:`arcodec.codec.engine.LocalWeights`), so decoding a photo never imports it.

Threads: as many threads as the coder may use (:func:`arcodec.codec.coders.coder_threads`, at
most :data:`WORKERS`; the BLAS and torch, when loaded, run one thread inside the coders)
share out what is independent (the matrix products and the table kernels release the GIL):
the encoder's matrix products, in pieces of a band's rows small enough to stay in the cores'
caches, and its tables' edges, each written straight to its place in the
stream order; the decoder's lines, in groups of pieces (a piece: the pixels of one tile in
one band, a sub-stream of its own), each group's windows, parameters and symbols (searched
on the mixtures, :class:`arcodec.codec.entropy.MixtureDecoders`) in a thread.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable

import numpy as np

from arcodec.codec.coders import coder_threads, register_coder
from arcodec.codec.container import SCAN_WAVEFRONT, join_parts, split_parts
from arcodec.codec.engine import LocalEngine, LocalWeights
from arcodec.codec.entropy import Decoder as StreamDecoder
from arcodec.codec.entropy import EdgeEncoder, MixtureDecoders
from arcodec.codec.entropy import Encoder as StreamEncoder
from arcodec.codec.entropy import check_room, compiled_encoder, compiled_mixture_decoder
from arcodec.codec.mixture import TABLE_BITS, code_lengths, edges_compiled
from arcodec.errors import FormatError
from arcodec.fixed import ACT_FRAC

BAND = 64  # rows per sub-stream
ENCODE_POSITIONS = 1 << 17  # pixels whose raw parameters the encoder holds at a time
TABLE_ROWS = 1 << 15  # sub-pixels whose tables the encoder builds at a time
TABLE_TOTAL = float(1 << TABLE_BITS)  # what every table of the engine sums to (arcodec.codec.mixture)
TRUNK_WINDOWS = 2048  # windows per piece of the encoder's matrix products: measured, 2x faster than whole bands
SCALE_SAMPLES = 2048  # pixels of a stream on which the encoder tries its log-scale offsets
# streams of fewer pixels keep zero offsets: their search (about 0.3 s) would cost more than
# coding them, for a few bytes
SCALE_MIN_PIXELS = 1 << 16
SCALE_UNIT = 205  # the offsets' step in 2**-12 units of log scale (0.05005), stored as signed bytes
MIXTURE_SAMPLES = 8192  # pixels of a stream on which the encoder fits its mixture offsets (engine 2)
OFFSET_STEPS = 127  # the most steps of SCALE_UNIT an engine-2 offset moves either way (a signed byte)
REGION_WIDTH = 256  # columns of an engine-3 region (its rows: a band's); part of the format
REGION_MIN_PIXELS = 8192  # regions of fewer pixels take no offsets (engine 3): half a whole region; an archive
# of small images (90 x 90 or less) spends no time on fits that could not pay for their bytes
REGION_SAMPLES = 4096  # pixels of a region on which the encoder fits its offsets (engine 3)
REGION_EVALUATIONS = 15  # code-length evaluations of a region's fit that starts from the region above's
SCALE_REACH = 48  # steps the encoder tries either side of 0 (2.4): a held-out training photo took
# 1.05 (benchmarks/scale_offsets.py)

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


WORKERS = max(1, min(4, os.cpu_count() or 1))  # the most threads that share out a coder's work
SHARE_ROWS = 64  # pixels a thread gets at least: below, the hand-off costs more than it saves
# pixels of a line a decoding thread gets at least: a line's work is small and partly holds
# the GIL, so a second thread gains only on long lines or many tiles and costs on short ones
# (`python benchmarks/photo_threads.py`: a 512-wide photo, lines of up to 128 pixels, decoded
# slower on two threads sharing every line than on one; a 1404-wide one faster)
DECODE_SHARE = 128
# a decode none of whose lines is shared (no line of 2 DECODE_SHARE pixels or more: with a
# horizon of 3, one photo up to 1,020 columns wide or 255 rows tall) leaves the other threads
# idle: its matrix products take them instead, through the BLAS (their sums are integers,
# exact in any order). Measured on a noisy machine: 1-3 % off Kodak photos in `python
# benchmarks/photo_threads.py`, 0.79 to 1.02 of the time (4 pairs, median 0.90) on a
# 768 x 512 crop decoded in turn with and without
DECODE_BLAS = True
_POOL: list = []


def _pool() -> ThreadPoolExecutor:
    """The threads that work beside the caller's (WORKERS - 1 of them)."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=max(1, WORKERS - 1)))
    return _POOL[0]


def _shared(fn: Callable, pieces: list, threads: int) -> None:
    """fn(piece) for every piece, the pieces taken in turn by this thread and up to
    ``threads`` - 1 of the pool's."""
    _started(fn, pieces, threads)()


def _started(fn: Callable, pieces: list, threads: int) -> Callable[[], None]:
    """:func:`_shared`, begun by up to ``threads`` - 1 of the pool's threads: returns what
    this thread calls, when it has done its own work, to take the pieces left in turn
    with them and wait for them all."""
    queue = iter(range(len(pieces)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                k = next(queue, None)
            if k is None:
                return
            fn(pieces[k])

    futures = [_pool().submit(work) for _ in range(min(threads, len(pieces)) - 1)]

    def finish() -> None:
        work()
        for f in futures:
            f.result()

    return finish


def _cuts(n: int, threads: int) -> list[tuple[int, int]]:
    """range(n) in up to ``threads`` consecutive (start, end) pieces of SHARE_ROWS or more."""
    cuts = np.linspace(0, n, max(1, min(threads, n // SHARE_ROWS)) + 1).astype(int)
    return list(zip(cuts[:-1].tolist(), cuts[1:].tolist()))


def _balanced(sizes: list[int], parts: int) -> list[list[int]]:
    """The indices of pieces of these sizes in at most ``parts`` groups of nearly equal total
    size (the largest piece first, each to the lightest group), each group in index order."""
    groups: list[list[int]] = [[] for _ in range(parts)]
    load = [0] * parts
    for k in sorted(range(len(sizes)), key=lambda k: -sizes[k]):
        g = load.index(min(load))
        groups[g].append(k)
        load[g] += sizes[k]
    return [sorted(g) for g in groups if g]


def engine(model) -> LocalEngine:
    """The integer engine of :class:`LocalWeights` or of a torch model (built once, again
    only if its weights change)."""
    if isinstance(model, LocalWeights):
        return model.engine
    from arcodec.models.layers import quantized_cached

    return quantized_cached(model, tuple(model.state_dict().values()), lambda: LocalWeights.of(model).engine)


def _levels(x) -> np.ndarray:
    """Tiles of integer levels (n, C, H, W), numpy or torch, as a numpy int64 array."""
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.int64)


def encode_streams(model, x, counts: list[int], on_table: OnTable | None = None,
                   adapt: int = 0) -> list[tuple[bytes, float]]:
    """Encode tiles x (n, C, H, W) as consecutive streams of ``counts[i]`` tiles; returns
    (payload, code length in bits of the exact tables) per stream. ``adapt``: the engine's
    offsets (module docstring): 0 none, 1 log-scale offsets and 2 mixture offsets, each
    stream with its own, 3 mixture offsets each region of each tile with its own, 4 the
    stream's mixture offsets and each region's corrections of them, 5 the same, each
    region's corrections stored as their changes from the region above's."""
    if sum(counts) != len(x):
        raise ValueError(f"stream sizes {counts} do not add up to {len(x)} tiles")
    x = _levels(x)
    n, C, H, W = x.shape
    slope = model.horizon + 1
    eng = engine(model)
    bounds = np.cumsum([0, *counts]).tolist()
    adapt = int(adapt)
    choose = {1: choose_scale_offsets, 2: choose_mixture_offsets, 4: choose_mixture_offsets,
              5: choose_mixture_offsets}.get(adapt)
    regional = adapt >= 3
    M = model.config.components
    blocks = -(-W // REGION_WIDTH)
    if regional:
        regions = np.zeros((n, -(-H // BAND), blocks, C, 2, M), dtype=np.int64)  # chosen band by band
        above = np.zeros((n, blocks, C, 2 * M))  # each block's float offsets (engine 4: corrections) in the band above
    streams = list(zip(bounds[:-1], bounds[1:]))
    bands = range(0, H, BAND)
    # the coder fed each symbol's two table edges, not its table (the same bytes), unless the
    # caller watches the tables or numba is missing
    by_edges = on_table is None and edges_compiled() and compiled_encoder()
    encs = [[EdgeEncoder(model.config.levels) if by_edges else StreamEncoder() for _ in bands] for _ in range(n)]
    bits = np.zeros(n)
    group = max(1, ENCODE_POSITIONS // (min(BAND, H) * W))  # tiles whose band parameters fit at once
    units = [(bi, r0, g0) for bi, r0 in enumerate(bands) for g0 in range(0, n, group)]  # in coding order
    buffer = np.empty((0, model.config.levels))  # one for every chunk: its memory is touched once
    left, own = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)  # the same, coding by edges

    def band_work(unit: int) -> tuple[np.ndarray, list[Callable[[], None]]]:
        _, r0, g0 = units[unit]
        return _band_work(eng, model.n_params, x[g0: min(n, g0 + group)], r0, min(H, r0 + BAND))

    fitted = choose is not None and choose is not choose_scale_offsets  # the streams' search: engines 2, 4, 5
    if fitted or regional:  # adapt's search runs on the pool's threads
        from arcodec.codec.adapt import ready

        ready()  # the search's imports and kernel here, not on the pool's threads (adapt.ready)
    with OneThread() as threads:
        # the streams' offsets, and beside them the first band's network (the searches of
        # engines 2, 4 and 5 share no threads of their own; engine 1's does: before it)
        ahead, jobs = band_work(0)
        chosen = [None] * len(streams)
        if fitted:
            def fit_stream(k: int) -> Callable[[], None]:
                return lambda: chosen.__setitem__(k, _mixture_offsets(eng, x[slice(*streams[k])]))
            jobs = [fit_stream(k) for k in range(len(streams))] + jobs
        elif choose is not None:
            chosen = [choose(eng, x[a:b]) for a, b in streams]
        _shared(_call, jobs, threads)
        offsets = (np.repeat(np.stack([_offset_vector(eng, adapt, d) for d in chosen]), counts, axis=0)
                   if choose else None)  # (n, P): each tile's moves of its raw parameters
        base = np.repeat(np.stack(chosen), counts, axis=0) if adapt >= 4 else None  # (n, C, 2, M): what regions correct

        def prepared(unit: int, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Callable[[], None]]]:
            """(unit's raw parameters (rows, P), moved by its streams' offsets; its levels
            (rows, C); the jobs that fit its regions)."""
            _, r0, g0 = units[unit]
            g1 = min(n, g0 + group)
            raw = raw.reshape(-1, model.n_params)  # (g (r1 - r0) W, P), row-major
            if offsets is not None:
                per_tile = raw.reshape(g1 - g0, -1, raw.shape[1])
                per_tile += offsets[g0:g1, None, :]
            r1 = min(H, r0 + BAND)
            levels = x[g0:g1, :, r0:r1].transpose(0, 2, 3, 1).reshape(-1, C)
            fits = (_region_jobs(eng, raw, levels, g0, g1, units[unit][0], r1 - r0, W, regions, above, base, adapt)
                    if regional else [])
            return raw, levels, fits

        # the first band's region fits, and beside them the second band's network
        raw, levels, fits = prepared(0, ahead)
        ahead, jobs = band_work(1) if len(units) > 1 else (None, [])
        _shared(_call, fits + jobs, threads)
        for unit, (bi, r0, g0) in enumerate(units):
            r1 = min(H, r0 + BAND)
            rows, cols = _band_order(r0, r1, W, slope)
            t_of = cols + slope * rows
            # symbol order inside the band: (t, channel, row)
            starts = np.flatnonzero(np.r_[True, t_of[1:] != t_of[:-1]])
            ends = np.r_[starts[1:], len(rows)]  # line k holds rows[starts[k]:ends[k]]
            g1 = min(n, g0 + group)
            g = g1 - g0
            # while this thread builds this band's tables and codes it, the pool's threads fit
            # the next band's regions and compute the band after's network; then this thread
            # joins them. The last band's tables are shared out instead.
            finish = None
            if unit + 1 < len(units):
                nxt, nxt_levels, fits = prepared(unit + 1, ahead)
                ahead, jobs = band_work(unit + 2) if unit + 2 < len(units) else (None, [])
                if threads > 1 and fits + jobs:
                    finish = _started(_call, fits + jobs, threads)
                else:
                    _shared(_call, fits + jobs, threads)
            per = max(1, TABLE_ROWS // (g * C))  # pixels whose tables a chunk builds
            s0 = 0
            while s0 < len(starts):  # chunks of whole lines
                s1 = max(s0 + 1, int(np.searchsorted(ends, starts[s0] + per, side="right")))
                a, b = starts[s0], ends[s1 - 1]
                s0 = s1
                r, c = rows[a:b], cols[a:b]
                L = b - a
                src = (np.arange(g)[:, None] * ((r1 - r0) * W) + ((r - r0) * W + c)[None, :]).ravel()
                dest = _stream_places(t_of[a:b], g, C)  # (C, g L)
                if by_edges and len(left) < g * L * C:
                    left, own = np.empty(g * L * C, dtype=np.int64), np.empty(g * L * C, dtype=np.int64)
                elif not by_edges and len(buffer) < g * L * C:
                    buffer = np.empty((g * L * C, model.config.levels))
                table = buffer[: g * L * C]  # the chunk's tables in stream order

                def build(piece: tuple[int, int]) -> None:
                    i, j = piece
                    freq = np.zeros((j - i, C), dtype=np.int64) if eng.surprise else None
                    for ch in range(C):
                        if by_edges:
                            eng.edges(raw, levels, ch, src[i:j], left, own, dest[ch, i:j], freq)
                        else:
                            eng.tables(raw, levels, ch, src[i:j], table, dest[ch, i:j], freq)
                        if freq is not None and ch + 1 < C:  # the frequency of each pixel's level: its code length
                            freq[:, ch] = (own[dest[ch, i:j]] if by_edges
                                           else table[dest[ch, i:j], levels[src[i:j], ch]])

                if finish is None:
                    _shared(build, _cuts(len(src), threads), threads)
                else:
                    build((0, len(src)))
                symbols = np.empty(g * L * C, dtype=np.int64)
                for ch in range(C):
                    symbols[dest[ch]] = levels[src, ch]
                    if on_table is not None:
                        on_table(np.repeat(np.arange(g0, g1), L), np.tile(r, g), np.tile(c, g), ch,
                                 table[dest[ch]].astype(np.int64))
                coded = own[: g * L * C] if by_edges else table[np.arange(g * L * C), symbols]  # each level's frequency
                bits[g0:g1] += (TABLE_BITS - np.log2(coded)).reshape(g, -1).sum(axis=1)
                for i in range(g):
                    part = slice(i * L * C, (i + 1) * L * C)
                    if by_edges:
                        encs[g0 + i][bi].encode(symbols[part], left[part], own[part])
                    else:
                        encs[g0 + i][bi].encode(symbols[part], table[part])
            if finish is not None:
                finish()
            if unit + 1 < len(units):
                raw, levels = nxt, nxt_levels
    out = []
    for a, b, d in zip(bounds[:-1], bounds[1:], chosen):
        parts = [e.finish() for i in range(a, b) for e in encs[i]]
        head = (_offsets_header(2, d) + _corrections_header(regions[a:b], H, W, adapt) if adapt >= 4
                else _offsets_header(adapt, regions[a:b] if regional else d))
        out.append((head + join_parts(parts), float(bits[a:b].sum())))
    return out


def _call(job: Callable[[], None]) -> None:
    job()


def _region_jobs(eng: LocalEngine, raw: np.ndarray, levels: np.ndarray, g0: int, g1: int, band: int, rows: int,
                 width: int, regions: np.ndarray, above: np.ndarray, base: np.ndarray | None = None,
                 adapt: int = 4) -> list[Callable[[], None]]:
    """Engines 3 to 5: each region of band ``band`` of tiles g0..g1-1 (``rows`` rows of
    ``width`` columns, their raw parameters ``raw`` and ``levels`` row-major, tile after
    tile) its own mixture offsets, fitted by :func:`_fit_steps` on up to REGION_SAMPLES of
    its pixels (a draw seeded by the region's place in its tile) from the float offsets of
    the region above (into ``regions`` and ``above``), and kept only when the bits they save
    the sample, in proportion to the region's pixels, outweigh the bits that store them;
    then added to ``raw``. Engine 3 (``base`` None): a region's offsets, kept whole or not at
    all. Engine 4: ``raw`` already moved by its stream's offsets ``base`` (n, C, 2, M), a
    region fits corrections of them, each channel's kept on its own, priced in the
    exp-Golomb bits that store them (:func:`_corrections_header`), and within OFFSET_STEPS
    of 0 once added. Engine 5 (``adapt``): as engine 4, but priced in the bits of their
    changes from the corrections of the region above (:func:`_corrections_header`). Regions
    of fewer than REGION_MIN_PIXELS pixels keep none."""
    M = eng.config.components
    cost = 8 * 2 * levels.shape[1] * M  # bits engine 3's offsets take in the stream
    view = raw.reshape(g1 - g0, rows, width, raw.shape[1])
    fits = _eligible(rows, width)[0]  # the band's blocks that take offsets: the rule the decoder reads by
    jobs = [(i, j) for i in range(g0, g1) for j in np.flatnonzero(fits).tolist()]

    def fit(job: tuple[int, int]) -> None:
        i, j = job
        c0, c1 = j * REGION_WIDTH, min(width, (j + 1) * REGION_WIDTH)
        size = rows * (c1 - c0)
        place = (((i - g0) * rows + np.arange(rows)[:, None]) * width + np.arange(c0, c1)[None, :]).ravel()
        if size > REGION_SAMPLES:
            # seeded by the region's place in its tile, whatever the tile's place in the call: a tile
            # codes to the same bytes alone or in a batch (the first tile's draws, as they were)
            place = np.sort(np.random.default_rng([0, band, j]).choice(place, REGION_SAMPLES, replace=False))
        start = above[i, j]
        if base is None:
            steps, floats, saved = _fit_steps(eng, raw[place], levels[place], start,
                                              REGION_EVALUATIONS if start.any() else None)
            keep = saved * size / len(place) > cost
        else:  # the stream's offsets are a warm start already
            # engine 5 stores the changes from the corrections of the region above (none in a tile's first band)
            ref = regions[i, band - 1, j] if adapt == 5 and band else np.zeros_like(regions[i, band, j])
            orders = _golomb_orders(adapt)
            steps, floats, _ = _fit_steps(eng, raw[place], levels[place], start, REGION_EVALUATIONS,
                                          span=(-OFFSET_STEPS - base[i], OFFSET_STEPS - base[i]),
                                          price=lambda ch, q: _golomb_bits(q - ref[ch], orders) * len(place) / size)
            keep = steps.any()
        above[i, j] = floats
        if keep:
            regions[i, band, j] = steps
            view[i - g0, :, c0:c1] += _offset_vector(eng, 2, steps)

    return [partial(fit, job) for job in jobs]


def choose_scale_offsets(eng: LocalEngine, x: np.ndarray) -> np.ndarray:
    """A stream's log-scale offsets (C,) int64, in steps of SCALE_UNIT, for tiles x (n, C, H,
    W) of integer levels: on up to SCALE_SAMPLES of their pixels (a seeded draw), each channel
    in turn takes the offset whose exact tables (the coder's own, the surprise included) give
    the fewest bits (every 8th step up to SCALE_REACH either way, then 4, 2 and 1 steps either
    side of the best; 0 when none does better); zeros for a stream of fewer than
    SCALE_MIN_PIXELS pixels. Only the encoder runs it: the decoder reads the offsets from the
    stream."""
    with OneThread() as threads:
        return _search_offsets(eng, x, threads)


def _search_offsets(eng: LocalEngine, x: np.ndarray, threads: int) -> np.ndarray:
    """:func:`choose_scale_offsets` with ``threads`` threads."""
    C = x.shape[1]
    if not _searched(x):
        return np.zeros(C, dtype=np.int64)
    raw, levels = _sample(eng, x, SCALE_SAMPLES)
    k = len(levels)
    freq = np.zeros((k, C), dtype=np.int64) if eng.surprise else None  # the earlier channels', as chosen

    def tables(ch: int, moves: np.ndarray) -> np.ndarray:
        """The sample's tables of channel ``ch`` (len(moves) k, K), its log scales moved by each
        of ``moves`` (steps beyond the offsets chosen so far), every move at once."""
        a, b = eng.layout[ch]["log_scales"]
        moved = np.tile(raw, (len(moves), 1))
        moved[:, a:b] += np.repeat(moves * SCALE_UNIT, k)[:, None]
        return eng.tables(moved, np.tile(levels, (len(moves), 1)), ch,
                          freq=None if freq is None else np.tile(freq, (len(moves), 1)))

    def bits(ch: int, moves: np.ndarray) -> np.ndarray:
        """The sample's code length (bits) of channel ``ch`` for each of ``moves``, shared
        among the threads a move at a time."""
        out = np.empty(len(moves))

        def one(i: int) -> None:
            out[i] = code_lengths(tables(ch, moves[i: i + 1]), levels[:, ch]).sum()

        _shared(one, list(range(len(moves))), threads)
        return out

    coarse = np.arange(-SCALE_REACH, SCALE_REACH + 1, 8)  # every 8th step, 0 among them
    zero = len(coarse) // 2
    best = np.zeros(C, dtype=np.int64)
    for ch, lay in enumerate(eng.layout):  # channel after channel, each on the choices before it
        costs = bits(ch, coarse)
        g = int(np.argmin(costs)) if costs.min() < costs[zero] else zero
        step, cost = int(coarse[g]), costs[g]
        for half in (4, 2, 1):  # then the points half as far either side, three times
            near = np.clip(step + np.array([-half, half]), -SCALE_REACH, SCALE_REACH)
            got = bits(ch, near)
            if got.min() < cost:
                step, cost = int(near[int(np.argmin(got))]), got.min()
        a, b = lay["log_scales"]
        raw[:, a:b] += step * SCALE_UNIT
        best[ch] = step
        if freq is not None and ch + 1 < C:  # what the later channels' surprise reads
            freq[:, ch] = tables(ch, np.zeros(1, dtype=np.int64))[np.arange(k), levels[:, ch]]
    return best


def _searched(x: np.ndarray) -> bool:
    """Whether the encoder searches offsets for a stream of tiles x (n, C, H, W): one of
    SCALE_MIN_PIXELS pixels or more (and at least one)."""
    n, _, H, W = x.shape
    return n * H * W >= max(1, SCALE_MIN_PIXELS)


def _sample(eng: LocalEngine, x: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw parameters (k, P) int64, levels (k, C) int64) of a seeded draw of ``count``
    pixels of tiles x (n, C, H, W) (all of them when there are no more), in the tiles'
    row-major order: what the encoder's offset searches look at."""
    n, C, H, W = x.shape
    total = n * H * W
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(total, count, replace=False)) if total > count else np.arange(total)
    t, r, c = np.unravel_index(pick, (n, H, W))
    hz = eng.horizon
    hp, wp = H + hz, W + 2 * hz
    xpad = np.zeros((n, C, hp, wp), dtype=np.float32)  # input units, 0 outside, as the decoder's
    xpad[:, :, hz:, hz: hz + W] = eng.input_units(x)
    corner = t * (C * hp * wp) + r * wp + c
    raw = eng.params_at(xpad.reshape(-1)[corner[:, None] + _window_index(C, hp, wp, hz)[None, :]])
    return raw, np.ascontiguousarray(x[t, :, r, c])


def sampled_bits(model, x, count: int = MIXTURE_SAMPLES, offsets: bool = True) -> float:
    """The exact tables' code length in bits of a seeded draw of ``count`` pixels of tiles x
    (n, C, H, W) (all of them when there are no more; :func:`_sample`), with the mixture
    offsets that the encoder would fit on those pixels (engine 2's, :func:`_fit_steps`) or,
    ``offsets`` False, without any: how the encoder weighs local photo models against each
    other on an image without coding it (:func:`arcodec.codec.api._preselect`). The offsets
    matter there: they take back much of what a model gives away on an image it does not
    suit (a held-out photo: 11 % more bits without them, 1.6 % with them)."""
    eng = engine(model)
    x = _levels(x)
    raw, levels = _sample(eng, x, count)
    if offsets:  # the very fit the encoder makes for a stream of these tiles, when the draw is its

        def fit() -> np.ndarray:
            return _fit_steps(eng, raw, levels)[0]

        raw = raw + _offset_vector(eng, 2, _stream_fit(eng, x, fit) if count == MIXTURE_SAMPLES else fit())
    k, C = levels.shape
    freq = np.zeros((k, C), dtype=np.int64)
    for ch in range(C):
        freq[:, ch] = eng.tables(raw, levels, ch, freq=freq if eng.surprise else None)[np.arange(k), levels[:, ch]]
    return float(np.log2(TABLE_TOTAL / freq).sum())


def choose_mixture_offsets(eng: LocalEngine, x: np.ndarray) -> np.ndarray:
    """A stream's mixture offsets (C, 2, M) int64 for engine 2, in steps of SCALE_UNIT (at
    most OFFSET_STEPS either way): each channel's M logit offsets, then its M log-scale
    offsets, fitted on up to MIXTURE_SAMPLES of the tiles' pixels (a seeded draw) by
    :func:`_fit_steps`; zeros for a stream of fewer than SCALE_MIN_PIXELS pixels. Only the
    encoder runs it: the decoder reads the offsets from the stream."""
    with OneThread():
        return _mixture_offsets(eng, x)


def _mixture_offsets(eng: LocalEngine, x: np.ndarray) -> np.ndarray:
    """:func:`choose_mixture_offsets` in the caller's thread (one BLAS thread)."""
    C, M = x.shape[1], eng.config.components
    if not _searched(x):
        return np.zeros((C, 2, M), dtype=np.int64)
    return _stream_fit(eng, x, lambda: _fit_steps(eng, *_sample(eng, x, MIXTURE_SAMPLES))[0])


_WARMING: list[threading.Thread] = []


def warm_up() -> None:
    """Start loading, on a thread of its own, what a process's first photo encode loads on
    its way (once a process): scipy's optimiser and the offset search's kernel
    (:func:`arcodec.codec.adapt.ready`), and numba's compiler with the engine's first kernel
    (the other kernels then load from numba's cache in milliseconds). The caller goes on
    meanwhile (the stored method's DEFLATE, the models' loading and their samples' matrix
    products release the GIL that the imports hold). The same bytes are coded either way."""
    if _WARMING:
        return

    def load() -> None:
        from arcodec.codec.adapt import ready
        from arcodec.codec.engine import requantize_kernel

        try:
            ready()
            kernel = requantize_kernel()
            if kernel is not None:  # a call loads it, and numba's compiler with it
                one = np.zeros((1, 1))
                kernel(one, np.zeros(1), np.ones(1), -np.inf, np.inf, one, False)
        except Exception:  # noqa: BLE001 - the encode itself meets and reports whatever failed here
            pass

    _WARMING.append(threading.Thread(target=load, name="arcodec-warm-up", daemon=True))
    _WARMING[0].start()


FITS_KEPT = 4  # streams whose fitted offsets are remembered (:func:`_stream_fit`)
_fits: list[tuple[LocalEngine, tuple, bytes, np.ndarray]] = []
_fits_lock = threading.Lock()


def _stream_fit(eng: LocalEngine, x: np.ndarray, fit: Callable[[], np.ndarray]) -> np.ndarray:
    """``fit()``, the mixture offsets of engine ``eng`` fitted on the seeded MIXTURE_SAMPLES
    draw of tiles x, remembered for the last FITS_KEPT streams (the engine itself, the tiles'
    shape and a digest of their levels): the encoder's choice among photo models
    (:func:`sampled_bits`) has fitted them already for the model it then codes with."""
    key = (x.shape, hashlib.blake2b(np.ascontiguousarray(x, dtype=np.int64).tobytes(), digest_size=16).digest())
    with _fits_lock:
        for e, shape, digest, steps in _fits:
            if e is eng and (shape, digest) == key:
                return steps.copy()
    steps = fit()
    with _fits_lock:
        _fits.insert(0, (eng, *key, steps.copy()))
        del _fits[FITS_KEPT:]
    return steps


def _fit_steps(eng: LocalEngine, raw: np.ndarray, levels: np.ndarray, start: np.ndarray | None = None,
               evaluations: int | None = None, span: tuple | None = None,
               price: Callable[[np.ndarray], float] | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """(mixture offsets (C, 2, M) int64 in steps of SCALE_UNIT, the float offsets (C, 2 M)
    they were rounded from, the bits they save the sample) for pixels of raw parameters raw
    (k, P) and levels (k, C), channel after channel: the float offsets that minimise the
    sample's code length (:func:`arcodec.codec.adapt.fit_offsets`, from ``start`` (C, 2 M)
    or zeros, with at most ``evaluations``), rounded to the grid (within ``span``, a pair of
    (C, 2, M) bounds, or OFFSET_STEPS either way), kept only when they make the sample's
    float code length smaller by more than ``price(channel, steps)`` bits (0 when not given)
    of the channel's steps (2, M) (the surprise of the later channels follows the exact tables of
    the offsets kept)."""
    from arcodec.codec.adapt import FIT_EVALUATIONS, code_length_of, fit_offsets, sample

    k, C = levels.shape
    M, K = eng.config.components, eng.config.levels
    steps = np.zeros((C, 2, M), dtype=np.int64)
    floats = np.zeros((C, 2 * M))
    saved = 0.0
    freq = np.zeros((k, C), dtype=np.int64) if eng.surprise else None  # the earlier channels', as chosen
    unit = SCALE_UNIT * 2.0 ** -ACT_FRAC
    for ch, lay in enumerate(eng.layout):
        pixels = sample(*(a * 2.0 ** -ACT_FRAC for a in eng.channel_params(raw, levels, ch, freq=freq)), levels[:, ch], K)
        floats[ch] = fit_offsets(pixels, OFFSET_STEPS * unit, None if start is None else start[ch],
                                 evaluations or FIT_EVALUATIONS)
        low, high = (-OFFSET_STEPS, OFFSET_STEPS) if span is None else (span[0][ch], span[1][ch])
        q = np.clip(np.round(floats[ch] / unit).reshape(2, M), low, high).astype(np.int64)
        before, after = (code_length_of(o, pixels)[0] for o in (np.zeros(2 * M), q.ravel() * unit))
        if (before - after) * k / np.log(2) > (price(ch, q) if price else 0.0):
            raw = raw.copy()
            raw[:, slice(*lay["logits"])] += q[0] * SCALE_UNIT
            raw[:, slice(*lay["log_scales"])] += q[1] * SCALE_UNIT
            steps[ch] = q
            saved += (before - after) * k / np.log(2)
        if freq is not None and ch + 1 < C:  # what the later channels' surprise reads
            freq[:, ch] = eng.tables(raw, levels, ch, freq=freq)[np.arange(k), levels[:, ch]]
    return steps, floats, float(saved)


def _offset_vector(eng: LocalEngine, adapt: int, steps: np.ndarray) -> np.ndarray:
    """What stored offsets ``steps`` add to every raw parameter (..., P) int64 (2**-12 units),
    for each of their leading places: engine 1's (..., C), one a channel, to all its log
    scales; engine 2's and 3's (..., C, 2, M), one a component, to its logit and its log
    scale."""
    lead = steps.shape[:-1] if adapt == 1 else steps.shape[:-3]
    out = np.zeros(lead + (eng.n_params,), dtype=np.int64)
    for ch, lay in enumerate(eng.layout):
        if adapt == 1:
            out[..., slice(*lay["log_scales"])] += steps[..., ch, None] * SCALE_UNIT
        else:
            out[..., slice(*lay["logits"])] += steps[..., ch, 0, :] * SCALE_UNIT
            out[..., slice(*lay["log_scales"])] += steps[..., ch, 1, :] * SCALE_UNIT
    return out


def _offsets_header(adapt: int, steps: np.ndarray | None) -> bytes:
    """The bytes a stream's payload starts with (module docstring): none for engine 0; C
    signed bytes for engine 1; for engine 2 a byte 0 (no offsets) or 1 followed by the 2 C M
    signed bytes of ``steps``; for engine 3 (``steps`` (tiles, bands, blocks, C, 2, M)) a
    byte 0 (no offsets) or 1 followed by each region's, tile by tile, band by band, block by
    block, as engine 2's."""
    if not adapt:
        return b""
    if adapt == 1:
        return steps.astype(np.int8).tobytes()
    if adapt == 3:
        if not steps.any():
            return b"\x00"
        return b"\x01" + b"".join(_offsets_header(2, s) for s in steps.reshape(-1, *steps.shape[-3:]))
    return b"\x01" + steps.astype(np.int8).tobytes() if steps.any() else b"\x00"


GOLOMB_ZEROS = 8  # the most leading zeros of a correction's exp-Golomb code: |step| <= 2 OFFSET_STEPS fits
# engine 5's exp-Golomb orders of the logits' and the log scales' corrections (part of the format): a
# region's logit corrections run larger (held-out photos: a mean |step| of 11 to 23, log scales' 4 to 10)
GOLOMB_ORDERS = (2, 1)


def _golomb_orders(adapt: int) -> tuple[int, int]:
    """The exp-Golomb orders of engine ``adapt``'s corrections (logits, log scales): 0 for
    engine 4, GOLOMB_ORDERS for engine 5."""
    return GOLOMB_ORDERS if adapt == 5 else (0, 0)


def _golomb(v: int, order: int = 0) -> str:
    """The signed exp-Golomb code of ``v`` of order ``order`` (of its zigzag z: 0 1 -1 2 -2
    ... -> 0 1 2 3 4 ..., z + 2^order in binary after as many zeros as it has bits beyond
    order + 1) as bits; order 0: 0 -> 1, 1 -> 010, -1 -> 011, 2 -> 00100, ..."""
    z = ((v << 1) - 1 if v > 0 else -v << 1) + (1 << order)
    return "0" * (z.bit_length() - 1 - order) + format(z, "b")


def _golomb_bits(steps: np.ndarray, orders: tuple[int, int] = (0, 0)) -> float:
    """Bits that a channel's corrections ``steps`` (2, M) take in a stream, the logits' at
    exp-Golomb order ``orders[0]``, the log scales' at ``orders[1]``, and its flag."""
    bits = 1.0
    for part, order in zip(steps, orders):
        z = np.where(part > 0, 2 * part - 1, -2 * part).astype(np.int64) + (1 << order)
        bits += float((2 * np.floor(np.log2(z)) + 1 - order).sum())
    return bits


def _eligible(h: int, w: int) -> np.ndarray:
    """(bands, blocks) bool: which regions of an h x w tile may take offsets (engines 3's
    fits and 4's corrections): those of REGION_MIN_PIXELS pixels or more."""
    rows = np.minimum(BAND, h - BAND * np.arange(-(-h // BAND)))
    cols = np.minimum(REGION_WIDTH, w - REGION_WIDTH * np.arange(-(-w // REGION_WIDTH)))
    return rows[:, None] * cols[None, :] >= REGION_MIN_PIXELS


def _corrections_header(steps: np.ndarray, h: int, w: int, adapt: int = 4) -> bytes:
    """The regional corrections of engines 4 and 5 (what follows the stream's offsets): for
    each region of REGION_MIN_PIXELS pixels or more of each tile (tile by tile, band by band,
    block by block), each channel's bit 0 or 1 and 2 M signed exp-Golomb codes
    (:func:`_golomb`), logits then log scales (``steps`` (tiles, bands, blocks, C, 2, M): the
    corrections). Engine 4: a bit 0 for no correction, or 1 and the corrections at order 0.
    Engine 5: the changes from the corrections of the region above (none in a tile's first
    band), a bit 0 for none, or 1 and the changes at GOLOMB_ORDERS. The bits most
    significant first, the last byte filled with zeros."""
    out = []
    orders = _golomb_orders(adapt)
    for place in zip(*np.nonzero(np.broadcast_to(_eligible(h, w), steps.shape[:3]))):
        i, band, j = place
        ref = steps[i, band - 1, j] if adapt == 5 and band else np.zeros_like(steps[place])
        for q, r in zip(steps[place], ref):
            out.append("1" + "".join(_golomb(int(v), order) for part, order in zip(q - r, orders) for v in part)
                       if q.any() else "0")
    bits = "".join(out)
    if not bits:
        return b""
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


class _BitReader:
    """Bits of ``data`` from byte ``at`` on, most significant first; a clear error past the end."""

    def __init__(self, data: bytes, at: int):
        self.data, self.bit = data, 8 * at

    def read(self) -> int:
        byte = self.bit >> 3
        if byte >= len(self.data):
            raise FormatError("file is truncated (a stream shorter than its regions' corrections)")
        self.bit += 1
        return (self.data[byte] >> (7 - (self.bit - 1 & 7))) & 1

    def golomb(self, order: int = 0) -> int:
        """One signed exp-Golomb code of order ``order`` (:func:`_golomb`)."""
        zeros = 0
        while not self.read():
            zeros += 1
            if zeros > GOLOMB_ZEROS:
                raise FormatError("corrupt stream (a region's correction is out of range)")
        z = 1
        for _ in range(zeros + order):
            z = z << 1 | self.read()
        z -= 1 << order  # the zigzag: 0 1 2 3 4 ... <- 0 1 -1 2 -2 ...
        return (z + 1) >> 1 if z & 1 else -(z >> 1)

    def end(self) -> int:
        """The byte after the last bit read."""
        return -(-self.bit // 8)


def _split_offsets(payload: bytes, adapt: int, channels: int, components: int, tiles: int = 1, h: int = 1,
                   w: int = 1) -> tuple[np.ndarray | None, bytes]:
    """(the stream's offsets as stored, or None for engine 0, the rest of its payload);
    engine 3's, for ``tiles`` tiles of h x w, (tiles, bands, blocks, C, 2, M), and engines 4 and 5's
    the same, each region's the stream's and its corrections added; a clear error for a
    stream cut inside them, an unknown kind of offsets or offsets out of range."""
    if not adapt:
        return None, payload
    if adapt == 1:
        if len(payload) < channels:
            raise FormatError("file is truncated (a stream shorter than its scale offsets)")
        return np.frombuffer(payload[:channels], dtype=np.int8).astype(np.int64), payload[channels:]
    size = 2 * channels * components

    def one(at: int) -> tuple[np.ndarray, int]:
        """One set of offsets at payload[at] (a byte 0, or 1 and ``size`` signed bytes), and
        where the payload goes on."""
        if at >= len(payload):
            raise FormatError("file is truncated (a stream without its mixture offsets)")
        if payload[at] == 0:
            return np.zeros((channels, 2, components), dtype=np.int64), at + 1
        if payload[at] != 1:
            raise FormatError(f"corrupt stream (its mixture offsets are of kind {payload[at]}; 0 and 1 exist)")
        if len(payload) < at + 1 + size:
            raise FormatError("file is truncated (a stream shorter than its mixture offsets)")
        steps = np.frombuffer(payload[at + 1: at + 1 + size], dtype=np.int8).astype(np.int64)
        return steps.reshape(channels, 2, components), at + 1 + size

    if adapt == 2:
        steps, at = one(0)
        return steps, payload[at:]
    shape = (tiles, -(-h // BAND), -(-w // REGION_WIDTH))
    if adapt >= 4:  # the stream's offsets, then each region's corrections of them
        stream, at = one(0)
        corrections = np.zeros(shape + stream.shape, dtype=np.int64)
        bits = _BitReader(payload, at)
        orders = _golomb_orders(adapt)
        for place in zip(*np.nonzero(np.broadcast_to(_eligible(h, w), shape))):
            i, band, j = place
            for ch in range(channels):
                if bits.read():  # engine 5: changes from the region above's corrections
                    ref = corrections[i, band - 1, j, ch] if adapt == 5 and band else 0
                    corrections[place + (ch,)] = ref + np.array([[bits.golomb(order) for _ in range(components)]
                                                                 for order in orders])
        steps = stream + corrections
        if np.abs(steps).max(initial=0) > OFFSET_STEPS:
            raise FormatError(f"corrupt stream (a region's offsets move more than {OFFSET_STEPS} steps)")
        return steps, payload[bits.end():]
    steps = np.zeros(shape + (channels, 2, components), dtype=np.int64)
    if not payload:
        raise FormatError("file is truncated (a stream without its mixture offsets)")
    if payload[0] not in (0, 1):
        raise FormatError(f"corrupt stream (its regions' offsets are of kind {payload[0]}; 0 and 1 exist)")
    at = 1
    if payload[0] == 1:
        for place in np.ndindex(shape):
            steps[place], at = one(at)
    return steps, payload[at:]


def _window_index(channels: int, hp: int, wp: int, hz: int) -> np.ndarray:
    """Offsets of a window's sub-pixels in the weights' order (C, h + 1, 2h + 1) from its top
    left corner, in a flattened (tiles, C, hp, wp) array."""
    return (np.arange(channels)[:, None, None] * (hp * wp) + np.arange(hz + 1)[None, :, None] * wp
            + np.arange(2 * hz + 1)[None, None, :]).ravel()


def _band_work(eng: LocalEngine, width: int, x: np.ndarray, r0: int, r1: int
               ) -> tuple[np.ndarray, list[Callable[[], None]]]:
    """(an array (B, r1 - r0, W, P) int64, the jobs that fill it with the raw parameters of
    rows r0..r1-1 of tiles x (B, C, H, W): pieces of about TRUNK_WINDOWS windows, in any
    order, on any threads)."""
    b, _, _, w = x.shape
    out = np.empty((b, r1 - r0, w, width), dtype=np.int64)
    step = max(1, TRUNK_WINDOWS // (b * w))

    def piece(k: int) -> None:
        out[:, k: k + step] = eng.params(x, r0 + k, min(r1, r0 + k + step))

    return out, [partial(piece, k) for k in range(0, r1 - r0, step)]


def _stream_places(t_of: np.ndarray, tiles: int, channels: int) -> np.ndarray:
    """Where each sub-pixel of a chunk of whole lines goes in its tile's stream, (channels,
    tiles L): pixels with line numbers ``t_of`` (L,), ascending, in the order (t, row), and
    each tile's stream (t, channel, row), tile after tile."""
    L = len(t_of)
    seg = np.flatnonzero(np.r_[True, t_of[1:] != t_of[:-1], True])
    lengths = np.diff(seg)
    first = np.repeat(seg[:-1], lengths)  # the first pixel of each pixel's line
    size = np.repeat(lengths, lengths)
    inside = first * channels + (np.arange(L) - first)  # channel 0
    tile = np.arange(tiles)[:, None] * (L * channels)
    return np.stack([(tile + inside + ch * size).ravel() for ch in range(channels)])


class OneThread:
    """The BLAS (numpy's matrix products) and torch, when loaded, at one thread inside the
    coders: the coders share out their pieces among their own threads (a decoder line's
    products are too small to share, and two threads each running a two-thread BLAS cost a
    photo's decode half again as much CPU time); ``as`` gives the threads the coder may use:
    :func:`arcodec.codec.coders.coder_threads`, at most WORKERS."""

    def __enter__(self) -> int:
        from threadpoolctl import threadpool_limits

        self.torch = sys.modules.get("torch")
        n = coder_threads()
        if self.torch is not None:
            self.n = self.torch.get_num_threads()
            self.torch.set_num_threads(1)
        self.blas = threadpool_limits(1, user_api="blas")
        return max(1, min(WORKERS, n))

    def __exit__(self, *exc):
        self.blas.unregister()
        if self.torch is not None:
            self.torch.set_num_threads(self.n)


def decode_streams(model, payloads: list[bytes], counts: list[int], channels: int, h: int, w: int,
                   naive: bool = False, on_table: OnTable | None = None,
                   progress: Callable[[int], None] | None = None, adapt: int = 0) -> np.ndarray:
    """Decode consecutive streams of ``counts[i]`` tiles of (channels, h, w), line by line,
    every tile of every stream in the same steps; the tiles come back as uint8 levels (5
    bytes a sub-pixel held in all: the levels and the model's float32 input grid). ``naive``
    is accepted for the codec's interface (there is no other decoder to compare with).
    ``adapt``: the engine's offsets at the start of each payload (1: log-scale offsets, 2:
    mixture offsets, 3: mixture offsets of each region, 4 and 5: a stream's mixture offsets
    and its regions' corrections; see :func:`encode_streams`)."""
    n = sum(counts)
    hz = model.horizon
    slope = hz + 1
    nb = -(-h // BAND)
    eng = engine(model)
    subs, shifts = [], []  # every tile's band sub-streams, tile after tile
    for p, k in zip(payloads, counts):
        steps, p = _split_offsets(p, adapt, channels, model.config.components, k, h, w)
        if steps is not None:
            vector = _offset_vector(eng, adapt, steps)
            shifts.append(vector if adapt >= 3 else np.tile(vector, (k, 1, 1, 1)))
        subs += split_parts(p, k * nb, "band")
    # the symbols searched on the mixtures, without their tables (the same symbols), unless
    # the caller watches the tables or numba is missing: then a constriction decoder a sub-stream
    decs = (MixtureDecoders(subs, model.config.levels) if on_table is None and compiled_mixture_decoder()
            else [StreamDecoder(part) for part in subs])
    shift = np.concatenate(shifts) if shifts else None  # (n, bands, blocks, P): each region's moves of its raw
    # parameters (one region a tile before engine 3)
    lut = eng.input_units(np.arange(model.config.levels))
    xpad = np.zeros((n, channels, h + hz, w + 2 * hz), dtype=np.float32)  # input units, 0 outside
    x = np.zeros((n, channels, h, w), dtype=np.uint8)
    longest = n * min(h, (w - 1) // slope + 1)  # the most pixels a line holds
    with OneThread() as threads:
        blas = threads if DECODE_BLAS and longest < 2 * DECODE_SHARE else 1  # see DECODE_BLAS
        with _blas_threads(blas):
            _decode_lines(eng, decs, xpad, x, lut, h, w, slope, hz, threads, on_table, progress, shift)
    return x


def _blas_threads(threads: int):
    """The BLAS at ``threads`` threads inside the block (a context manager)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads, user_api="blas")


def _decode_lines(eng, decs, xpad, x, lut, h, w, slope, hz, threads, on_table, progress, shift) -> None:
    """Decode every line of the tiles in turn. A line's pixels fall in pieces, those of one
    tile in one band (one sub-stream each, decs[tile * bands + band]): (tile, band, first,
    end); and the pieces in groups of about equal size, one a thread: a group's windows, raw
    parameters and symbols, channel by channel, the symbols searched on the mixtures
    (``decs`` a :class:`MixtureDecoders`) or read with tables (a list of decoders). With
    ``on_table``, one group (the callback is called from this thread, in order)."""
    n, channels = x.shape[:2]
    hp, wp = xpad.shape[2:]
    nb = -(-h // BAND)  # bands a tile
    flat = xpad.reshape(-1)
    offsets = _window_index(channels, hp, wp, hz)
    searched = isinstance(decs, MixtureDecoders)
    # a line's tables, at most (none when the symbols are searched on the mixtures)
    table = np.empty((0 if searched else n * min(h, (w - 1) // slope + 1), eng.config.levels))
    for t in range(steps(h, w, slope)):
        rows = line(t, h, w, slope)
        cols = t - slope * rows
        P = len(rows)
        if P == 0:  # a tile narrower than the slope leaves lines empty
            continue
        lo = int(rows[0])
        cuts = [0, *(b * BAND - lo for b in range(lo // BAND + 1, (lo + P - 1) // BAND + 1)), P]  # band borders
        pieces = [(i, (lo + a) // BAND, a, b) for i in range(n) for a, b in zip(cuts[:-1], cuts[1:])]
        parts = 1 if on_table is not None else max(1, min(threads, n * P // DECODE_SHARE))
        groups = _balanced([b - a for _, _, a, b in pieces], parts)
        got = np.empty((n, P, channels), dtype=np.int64)

        def decode(group: list[int], first: int) -> None:
            tiles = np.concatenate([np.full(pieces[k][3] - pieces[k][2], pieces[k][0]) for k in group])
            pix = np.concatenate([np.arange(pieces[k][2], pieces[k][3]) for k in group])
            r, c = rows[pix], cols[pix]
            corner = tiles * (channels * hp * wp) + r * wp + c
            win = flat[corner[:, None] + offsets[None, :]]  # (m, C (h+1) (2h+1))
            raw = eng.params_at(win)
            if shift is not None:
                raw += shift[tiles, np.minimum(r // BAND, shift.shape[1] - 1),
                             np.minimum(c // REGION_WIDTH, shift.shape[2] - 1)]
            levels = np.zeros((len(pix), channels), dtype=np.int64)
            freq = np.zeros((len(pix), channels), dtype=np.int64) if eng.surprise else None
            sizes = [pieces[k][3] - pieces[k][2] for k in group]
            ends = np.cumsum(sizes)
            starts = ends - sizes
            subs = [pieces[k][0] * nb + pieces[k][1] for k in group]  # each piece's sub-stream
            if searched:
                runs = np.stack([subs, starts, ends], axis=1)
                own = np.empty(len(pix), dtype=np.int64)
                symbols = np.empty(len(pix), dtype=np.int64)
                for ch in range(channels):
                    decs.decode(runs, *eng.channel_params(raw, levels, ch, freq=freq), symbols, own)
                    levels[:, ch] = symbols
                    if freq is not None and ch + 1 < channels:
                        freq[:, ch] = own
                got[tiles, pix] = levels
                return
            weights = table[first: first + len(pix)]
            for ch in range(channels):
                eng.tables(raw, levels, ch, out=weights, freq=freq)
                if on_table is not None:
                    on_table(tiles, r, c, ch, weights.astype(np.int64))
                for sub, a, b in zip(subs, starts, ends):
                    levels[a:b, ch] = decs[sub].decode(weights[a:b], TABLE_TOTAL)
                if freq is not None and ch + 1 < channels:
                    freq[:, ch] = weights[np.arange(len(pix)), levels[:, ch]]
            got[tiles, pix] = levels

        firsts = [0]  # where each group's tables start in ``table``
        for g in groups:
            firsts.append(firsts[-1] + sum(pieces[k][3] - pieces[k][2] for k in g))
        _shared(lambda g: decode(groups[g], firsts[g]), list(range(len(groups))), threads)
        got = got.transpose(0, 2, 1)  # (n, C, P)
        x[:, :, rows, cols] = got
        xpad[:, :, rows + hz, cols + hz] = lut[got]
        if progress is not None:
            progress(n * P * channels)


def room(model, payload: bytes, tiles: int, channels: int, h: int, w: int, adapt: int = 0) -> None:
    """Refuse a stream too short for its tiles before decoding it: every sub-pixel is one
    symbol of a table over the model's levels (every level at least 1 of 2^24), in one of
    the tiles' band sub-streams (:func:`arcodec.codec.entropy.check_room`), after the
    engine's offsets (``adapt``)."""
    rest = _split_offsets(payload, adapt, channels, model.config.components, tiles, h, w)[1]
    check_room(len(rest), tiles * channels * h * w, model.config.levels, tiles * -(-h // BAND))


# local models see across tiles' borders only inside a tile, so they take whole images (up to
# 4096 a side) when the caller names no tile side; engine 0 decodes the files from before
# the scale offsets, engine 1 those from before the mixture offsets, engine 2 those from
# before the regions' offsets, engine 3 those from before the regions' corrections, engine 4
# those from before the corrections were coded from the region above's
for _engine in (0, 1, 2, 3, 4, 5):
    register_coder("wavefront", partial(encode_streams, adapt=_engine), partial(decode_streams, adapt=_engine),
                   scan=SCAN_WAVEFRONT, tile=4096, room=partial(room, adapt=_engine), engine=_engine)
