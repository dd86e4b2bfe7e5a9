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
``CODER_MODULES``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from arcodec.codec.container import DEFAULT_TILE, SCAN_RASTER
from arcodec.errors import ArcodecError

CODER_MODULES = ("arcodec.codec.autoregressive", "arcodec.codec.wavefront", "arcodec.codec.flow")


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


CODERS: dict[str, Coder] = {}


def register_coder(kind: str, encode: Callable, decode: Callable, **settings) -> Coder:
    """Make (encode, decode) the coder of models of ``kind`` (see :func:`kind_of`);
    ``settings`` are :class:`Coder`'s other fields."""
    if kind in CODERS:
        raise ValueError(f"a coder for {kind!r} models is already registered")
    CODERS[kind] = coder = Coder(kind, encode, decode, **settings)
    return coder


def kind_of(net) -> str:
    """A model's kind of coding: its ``coding`` attribute ("autoregressive" when it has none;
    "flow"; "continuous"), or for an autoregressive model whose ``scan`` is not "raster"
    that scan ("wavefront")."""
    coding = getattr(net, "coding", "autoregressive")
    scan = getattr(net, "scan", "raster")
    return scan if coding == "autoregressive" and scan != "raster" else coding


def coder_for(net, name: str) -> Coder:
    """The coder of model ``name`` (its network ``net``), or a clear error when none codes it:
    a continuous flow is a density over real vectors and cannot code integers losslessly."""
    for module in CODER_MODULES:  # each registers its coder when first imported
        importlib.import_module(module)
    kind = kind_of(net)
    if kind in CODERS:
        return CODERS[kind]
    if kind == "continuous":
        raise ArcodecError(f"model {name!r} is a {kind} flow (a density over real vectors, see docs/flows.md): "
                           "it cannot code images losslessly; use an autoregressive model or the integer flow "
                           "mnist-idf")
    raise ArcodecError(f"model {name!r} is of kind {kind!r}, which no coder codes (coders: {', '.join(CODERS)})")
