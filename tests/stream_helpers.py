"""One-stream wrappers of the autoregressive coder, for tests: the codec itself always codes
several streams at once (:func:`arcodec.codec.autoregressive.encode_streams`)."""

from __future__ import annotations

from typing import Callable

import torch

from arcodec.codec.autoregressive import decode_streams, encode_streams


def encode_stream(model, x: torch.Tensor, on_table: Callable | None = None) -> tuple[bytes, float]:
    """Encode tiles x (n, C, h, w) as one stream; returns (payload, model NLL in bits)."""
    return encode_streams(model, x, [len(x)], on_table)[0]


def decode_stream(model, payload: bytes, n: int, channels: int, h: int, w: int, naive: bool = False,
                  on_table: Callable | None = None, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Decode one stream of n tiles of (channels, h, w)."""
    return decode_streams(model, [payload], [n], channels, h, w, naive, on_table, progress)
