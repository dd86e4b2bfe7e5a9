"""The coder of each kind of model: a registry from a model's kind to its coder.

A coder codes the tiles of a stream plan (:mod:`arcodec.codec.plan`) with a model: its
``encode(net, x, counts)`` returns (payload, code length in bits) per stream, its
``decode(net, payloads, counts, channels, h, w, naive=..., progress=...)`` gives the tiles
back (the signatures of :func:`arcodec.codec.autoregressive.encode_streams` and
:func:`~arcodec.codec.autoregressive.decode_streams`). It also fixes what the header records
about it (the scan order) and the tile side used when the caller names none.

Each coder module registers its coder with :func:`register_coder` where the coder is
defined (``autoregressive``: raster order; ``wavefront``: the local models; ``flow``: integer
discrete flows); adding a kind of model is one registration there, and one entry in
``CODER_MODULES`` (only the modules of a model's kind are imported).

A kind can have several coders, one per *engine* (the arithmetic that computes the
probabilities, a header field): engine 0 is the float64 fixed-point arithmetic of
:mod:`arcodec.exact` that every model has; a later engine (the integer engine of Gated
PixelCNNs, :mod:`arcodec.codec.gated`) codes the models its ``codes`` predicate accepts.
Encoding uses the newest engine that codes the model; decoding uses the engine the file
names, so files of an older engine still decode.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from arcodec.codec.container import DEFAULT_TILE, SCAN_RASTER
from arcodec.errors import ArcodecError, FormatError

# the modules that register each kind's coders: only those of a model's kind are imported
# (the wavefront coder's needs no torch)
CODER_MODULES = {"autoregressive": ("arcodec.codec.autoregressive", "arcodec.codec.gated"),
                 "wavefront": ("arcodec.codec.wavefront",),
                 "flow": ("arcodec.codec.flow",)}


@dataclass(frozen=True)
class Coder:
    """The encode and decode functions of a kind of model and what the file records of it."""

    kind: str
    encode: Callable  # (net, x (n, C, h, w), counts, ...) -> [(payload, bits)] per stream
    decode: Callable  # (net, payloads, counts, channels, h, w, naive=, progress=) -> x (n, C, h, w)
    scan: int = SCAN_RASTER  # the symbol order, a header field (container.SCAN_*)
    tile: int = DEFAULT_TILE  # tile side when the caller names none
    check: Callable | None = None  # check(net, h, w): a clear error for tiles the coder cannot code
    room: Callable | None = None  # room(net, payload, tiles, channels, h, w): refuse a stream too short for its tiles
    engine: int = 0  # the arithmetic of its probabilities, a header field (0: arcodec.exact)
    codes: Callable | None = None  # codes(net): whether this engine codes the model (None: every model of the kind)
    network: Callable | None = None  # network(net): what computes the logits it codes with (None: net itself)


CODERS: dict[tuple[str, int], Coder] = {}
_THREADS: list[int] = []  # set_threads's count, once set


def set_threads(n: int) -> None:
    """The threads the coders may use (a worker process's share of the cores); torch takes
    the same count, now if it is loaded, when it loads otherwise (``OMP_NUM_THREADS``): a
    process that codes only photos never imports it."""
    _THREADS[:] = [max(1, int(n))]
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(_THREADS[0])
    else:
        os.environ["OMP_NUM_THREADS"] = str(_THREADS[0])


def coder_threads() -> int:
    """The threads a coder may use: :func:`set_threads`'s count, else torch's when it is
    loaded (what a caller set with ``torch.set_num_threads``), else the machine's cores."""
    if _THREADS:
        return _THREADS[0]
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else cores()


def share_out(fn: Callable, n: int, threads: int) -> None:
    """fn(a, b) over 0..n-1: in one call, or in ``threads`` contiguous slices at once on a
    shared pool (work that releases the GIL: compiled kernels, matrix products); in one call
    too on a pool's own thread (see :func:`pool_map`)."""
    if threads < 2 or n < 2 or getattr(_WORKER, "busy", False):
        fn(0, n)
        return
    cuts = [round(i * n / threads) for i in range(threads + 1)]
    pool_map(lambda ab: fn(*ab), list(zip(cuts[:-1], cuts[1:])), threads)


def pool_map(fn: Callable, items: list, threads: int) -> list:
    """[fn(item) for item in items], on the shared pool of ``threads`` threads. Work already
    running on a pool's thread runs its own share inline: a worker that waited for tasks
    queued behind it on the same pool would wait for ever (the encoder's groups of tiles,
    each on a worker, share out their gates; two threads deadlocked there)."""
    if threads < 2 or len(items) < 2 or getattr(_WORKER, "busy", False):
        return [fn(item) for item in items]

    def run(item):
        _WORKER.busy = True
        try:
            return fn(item)
        finally:
            _WORKER.busy = False
    return list(thread_pool(threads).map(run, items))


_WORKER = threading.local()  # busy: this thread is running a pool's task


@lru_cache(maxsize=None)
def thread_pool(threads: int):
    """One pool of ``threads`` threads for the coders, kept for the process (through
    :func:`pool_map`, which keeps its tasks from waiting on it)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(threads)


@lru_cache(maxsize=None)
def cores() -> int:
    """The CPUs this process may run on (its affinity: a container's or taskset's share, not
    the machine's count where the system says), cached: a decoder asks at every pixel."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity on this system
        return os.cpu_count() or 1


def register_coder(kind: str, encode: Callable, decode: Callable, **settings) -> Coder:
    """Make (encode, decode) the coder of models of ``kind`` (see :func:`kind_of`) with
    engine ``settings["engine"]`` (0 when not given); ``settings`` are :class:`Coder`'s
    other fields."""
    coder = Coder(kind, encode, decode, **settings)
    if (kind, coder.engine) in CODERS:
        raise ValueError(f"a coder for {kind!r} models with engine {coder.engine} is already registered")
    CODERS[kind, coder.engine] = coder
    return coder


def kind_of(net) -> str:
    """A model's kind of coding: its ``coding`` attribute ("autoregressive" when it has none;
    "flow"; "continuous"), or for an autoregressive model whose ``scan`` is not "raster"
    that scan ("wavefront")."""
    coding = getattr(net, "coding", "autoregressive")
    scan = getattr(net, "scan", "raster")
    return scan if coding == "autoregressive" and scan != "raster" else coding


def coder_for(net, name: str, engine: int | None = None) -> Coder:
    """The coder of model ``name`` (its network ``net``): with the newest engine that codes it
    (``engine=None``: for encoding), or with the given engine (a file's), or a clear error when
    none codes it: a continuous flow is a density over real vectors and cannot code integers
    losslessly."""
    kind = kind_of(net)
    for module in CODER_MODULES.get(kind, [m for ms in CODER_MODULES.values() for m in ms]):
        importlib.import_module(module)  # each registers its coders when first imported
    mine = sorted((c for (k, _), c in CODERS.items() if k == kind and (c.codes is None or c.codes(net))),
                  key=lambda c: c.engine)
    if mine and engine is None:
        return mine[-1]
    for coder in mine:
        if coder.engine == engine:
            return coder
    if mine:
        raise FormatError(f"file was coded with engine {engine}, which this arcodec does not have for model "
                          f"{name!r} (engines {', '.join(str(c.engine) for c in mine)}): a newer arcodec wrote it?")
    if kind == "continuous":
        raise ArcodecError(f"model {name!r} is a {kind} flow (a density over real vectors, see docs/flows.md): "
                           "it cannot code images losslessly; use an autoregressive model or the integer flow "
                           "mnist-idf")
    raise ArcodecError(f"model {name!r} is of kind {kind!r}, which no coder codes (coders: {', '.join(sorted({k for k, _ in CODERS}))})")
