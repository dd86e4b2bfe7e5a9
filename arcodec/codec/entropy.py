"""Entropy coding of symbol arrays with per-symbol probability tables (constriction's
range coder). The only module of the project that imports constriction.

Probabilities are given as non-negative float64 weights of shape (n, K); they need not be
normalised. ``Categorical(perfect=False)`` quantises them to fixed point and gives every
symbol at least the smallest representable probability, so any symbol stays codable: an
unlikely image costs more bits but never fails. Encoder and decoder must pass bit-identical
weights (see :mod:`arcodec.exact`).

A batch of streams decodes in one compiled call a step (:class:`Decoders`): constriction's
range decoder and table quantiser written again in numba, used only after it has read back
what this constriction wrote (:func:`compiled_decoder`).
"""

from __future__ import annotations

import math

import numpy as np
import constriction

from arcodec.codec.mixture import compile_kernel
from arcodec.errors import FormatError

Categorical = constriction.stream.model.Categorical
RangeEncoder = constriction.stream.queue.RangeEncoder
RangeDecoder = constriction.stream.queue.RangeDecoder

_FAMILY = Categorical(perfect=False)
PRECISION = 24  # the range coder's probabilities are multiples of 2^-PRECISION
STREAM_SLACK = 88  # bits a stream may hold beyond 8 a byte: 64 of decoder state, 24 of padding


def least_bits(alphabet: int) -> float:
    """Bits that every symbol coded with a table of ``alphabet`` entries costs at least: the
    quantiser gives each entry at least 2^-24, so no symbol is likelier than
    1 - (alphabet - 1) 2^-24, whatever the weights."""
    return -math.log2(1.0 - (alphabet - 1) * 2.0 ** -PRECISION)


def capacity_bits(nbytes: int) -> float:
    """The most information one stream of ``nbytes`` bytes holds: 32 bits a (padded) word,
    plus two words of decoder state (at most 8 nbytes + STREAM_SLACK)."""
    return 32.0 * (-(-nbytes // 4) + 2)


def check_room(nbytes: int, symbols: int, alphabet: int, streams: int = 1) -> None:
    """Refuse, before any decoding, ``nbytes`` of payload (``streams`` range-coder streams
    together) that cannot hold ``symbols`` symbols coded with tables of ``alphabet`` entries
    or more: a truncated payload, or a header that claims more pixels than were coded."""
    if 8.0 * nbytes + STREAM_SLACK * streams < symbols * least_bits(alphabet):
        raise FormatError(f"corrupt payload (truncated: {nbytes} bytes cannot hold {symbols} coded sub-pixels)")


def _table(weights) -> np.ndarray:
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"probability table must be (n, K), got shape {w.shape}")
    return w


class Encoder:
    """Appends symbols; ``finish()`` returns the payload bytes."""

    def __init__(self):
        self._enc = RangeEncoder()

    def encode(self, symbols, weights) -> None:
        """Encode ``symbols`` (n,) with one table row each (n, K), in one call."""
        s = np.ascontiguousarray(symbols, dtype=np.int32).reshape(-1)
        w = _table(weights)
        if len(s) != len(w):
            raise ValueError(f"{len(s)} symbols but {len(w)} probability rows")
        if len(s):
            if s.min() < 0 or s.max() >= w.shape[1]:
                raise ValueError(f"symbol out of range 0..{w.shape[1] - 1}")
            self._enc.encode(s, _FAMILY, w)

    def finish(self) -> bytes:
        """Compressed bytes: little-endian 32-bit words, the last word's trailing zero bytes
        (at most 3) dropped; :class:`Decoder` pads them back."""
        data = self._enc.get_compressed().astype("<u4").tobytes()
        cut = 0
        while cut < 3 and cut < len(data) and data[-1 - cut] == 0:
            cut += 1
        return data[: len(data) - cut]


class Decoder:
    """Reads symbols back in the order they were encoded.

    constriction's decoder reads zeros past the end of its data without complaint, so a
    payload too short for its symbols (a cut file, a header claiming a larger image) would
    decode garbage for as long as the header asks. The decoder therefore counts the
    information of the symbols it returns, a lower bound of what the coder consumed (each
    symbol's probability raised by the quantiser's most, 2^-22): a valid stream of W 32-bit
    words never holds more than 32 W bits, so past 32 (W + 2) the payload is refused."""

    def __init__(self, payload: bytes):
        padded = payload + b"\0" * (-len(payload) % 4)
        try:
            self._dec = RangeDecoder(np.frombuffer(padded, dtype="<u4").astype(np.uint32))
        except Exception as e:
            raise FormatError(f"corrupt payload ({e})") from None
        self._budget = capacity_bits(len(payload))  # see the class docstring
        self._spent = 0.0

    def decode(self, weights, total: float | None = None) -> np.ndarray:
        """Decode one symbol per table row (n, K), in one call. ``total``: the sum of every
        row, when the caller knows it (the photo coder's integer tables: 2**24), saving its
        computation."""
        w = _table(weights)
        if not len(w):
            return np.zeros(0, dtype=np.int64)
        try:
            out = np.asarray(self._dec.decode(_FAMILY, w), dtype=np.int64)
        except Exception as e:  # constriction reports invalid data with various types
            raise FormatError(f"corrupt payload ({e})") from None
        if len(w) == 1:  # one symbol (a raster decoder at batch 1, every pixel): scalar arithmetic
            p = float(w[0, out[0]]) / (float(w[0].sum()) if total is None else total)
            self._spent -= math.log2(min(1.0, p + 2.0 ** -22))
        else:
            p = w[np.arange(len(w)), out] / (w.sum(axis=1) if total is None else total)
            self._spent += float(-np.log2(np.minimum(1.0, p + 2.0 ** -22)).sum())
        if self._spent > self._budget:
            raise FormatError("corrupt payload (more symbols than its bytes can hold: truncated, "
                              "or a header that claims too many pixels)")
        return out


def _range_decode(words, pos, end, lower, span, point, bounds, w, out, spent):  # pragma: no cover - compiled
    """numba: constriction's range decoder and its ``Categorical(perfect=False)`` model, for
    several streams at once. Stream i decodes rows bounds[i]..bounds[i+1]-1 of the table w
    (n, K) into out, reading its 32-bit words[pos[i]:end[i]]; (lower, span, point, pos) is
    its state, kept between calls. The same integer and float64 operations in the same order
    as constriction 0.5 (``queue::RangeDecoder::decode_symbol``, 64-bit state, 32-bit words,
    24-bit probabilities; ``LazyContiguousCategoricalEntropyModel``: the row's sum from the
    left, scale (2^24 - K) / sum, cumulative k = floor(sum of the first k weights x scale) + k,
    the last symbol's right edge 2^24), so the same symbols: tests/test_entropy.py compares
    them with constriction's. Adds to spent[i] the information stream i's symbols carry, as
    :meth:`Decoder.decode` counts it. Returns -1, or the first stream whose data is invalid."""
    K = w.shape[1]
    top = np.uint64(1) << np.uint64(24)
    word = np.uint64(32)
    low_span = np.uint64(1) << word
    free = float(16777216 - K)
    for i in range(len(bounds) - 1):
        lo, sp, pt, ps = lower[i], span[i], point[i], pos[i]
        for j in range(bounds[i], bounds[i + 1]):
            total = 0.0
            for k in range(K):
                total += w[j, k]
            if not (total >= 2.2250738585072014e-308 and total < np.inf):  # a normal float, as constriction asks
                return i
            scale_f = free / total
            scale = sp >> np.uint64(24)
            quantile = (pt - lo) // scale
            if quantile >= top:
                return i
            cum = 0.0
            left = np.uint64(0)
            prob = np.uint64(0)
            symbol = K - 1
            for k in range(K - 1):
                cum += w[j, k]
                right = np.uint64(np.int64(cum * scale_f)) + np.uint64(k + 1)
                if right > quantile:
                    symbol = k
                    prob = right - left
                    break
                left = right
            if symbol == K - 1:
                prob = top - left
            out[j] = symbol
            spent[i] -= np.log2(min(1.0, w[j, symbol] / total + 2.0 ** -22))
            lo = lo + scale * left
            sp = scale * prob
            if sp < low_span:
                lo = lo << word
                sp = sp << word
                pt = pt << word
                if ps < end[i]:
                    pt = pt | np.uint64(words[ps])
                    ps += 1
        lower[i], span[i], point[i], pos[i] = lo, sp, pt, ps
    return -1


_RANGE_DECODE = compile_kernel(_range_decode)
_CHECKED: bool | None = None  # whether _RANGE_DECODE reads this constriction's streams (None: not yet tried)


def _start(payloads: list[bytes]) -> tuple[np.ndarray, ...]:
    """The compiled decoder's arguments for these streams before their first symbol: their
    words one after the other, and each stream's (pos, end, lower, span, point) as
    constriction starts them (the first two words read into the point)."""
    padded = [p + b"\0" * (-len(p) % 4) for p in payloads]
    words = np.frombuffer(b"".join(padded), dtype="<u4").astype(np.uint32)
    sizes = [len(p) // 4 for p in padded]
    end = np.cumsum(sizes, dtype=np.int64)
    pos = end - sizes
    point = np.zeros(len(payloads), dtype=np.uint64)
    for i, size in enumerate(sizes):
        for _ in range(min(2, size)):
            point[i] = (point[i] << np.uint64(32)) | np.uint64(words[pos[i]])
            pos[i] += 1
        if size == 1:
            point[i] <<= np.uint64(32)
    lower = np.zeros(len(payloads), dtype=np.uint64)
    span = np.full(len(payloads), np.iinfo(np.uint64).max, dtype=np.uint64)
    return words, pos, end, lower, span, point


def compiled_decoder():
    """The compiled range decoder, once it has read back what this constriction wrote on a
    fixed sample (tables of an extreme dynamic range); None without numba, or where it reads
    something else (a constriction that quantises its tables otherwise): then the decoders
    call constriction itself."""
    global _CHECKED
    if _CHECKED is None:
        _CHECKED = False
        if _RANGE_DECODE is not None:
            rng = np.random.default_rng(0)
            w = rng.random((400, 256)) ** 20 * 10.0 ** rng.integers(-20, 20, (400, 1))
            w[::7, 3] = 1e300  # near-certain symbols, 3 or not
            s = np.where(rng.random(400) < 0.5, 3, rng.integers(0, 256, 400))
            payloads = [encode(s[:150], w[:150]), encode(s[150:], w[150:])]
            out = np.empty(400, dtype=np.int64)
            code = _RANGE_DECODE(*_start(payloads), np.array([0, 150, 400]), w, out, np.zeros(2))
            _CHECKED = code < 0 and bool(np.array_equal(out, s))
    return _RANGE_DECODE if _CHECKED else None


class Decoders:
    """Several streams read side by side, one symbol run of each per call: the decoder of a
    batch of files, where every stream (file) holds ``counts[i]`` consecutive table rows of
    each step. The same symbols and the same refusals as a :class:`Decoder` per stream, in
    one compiled call a step (:func:`compiled_decoder`: constriction's decoder and model in
    numba, the information spent counted in the same loop) or, without it, one constriction
    call a stream and the counting for all streams in one numpy pass. With one digit a file,
    a batch of 512 would otherwise pay 512 rounds of Python a pixel."""

    def __init__(self, payloads: list[bytes], counts: list[int]):
        if len(payloads) != len(counts) or min(counts, default=1) < 1:
            raise ValueError(f"{len(payloads)} streams but counts {counts}")
        self._one = Decoder(payloads[0]) if len(payloads) == 1 else None  # one file: its decoder's scalar path
        self._budget = np.array([capacity_bits(len(p)) for p in payloads])  # as Decoder's, see its docstring
        self._spent = np.zeros(len(payloads))
        self._bounds = np.cumsum([0, *counts]).tolist()
        self._compiled = compiled_decoder() if self._one is None else None
        if self._compiled is not None:
            self._state = _start(payloads)
            self._rows = np.array(self._bounds, dtype=np.int64)
        elif self._one is None:
            self._decs = [Decoder(p)._dec for p in payloads]
            self._stream_of_row = np.repeat(np.arange(len(counts)), counts)

    def decode(self, weights) -> np.ndarray:
        """One symbol per table row (n, K), the rows of stream i being ``counts[i]`` long in
        turn."""
        w = _table(weights)
        b = self._bounds
        if len(w) != b[-1]:
            raise ValueError(f"{len(w)} table rows for streams of {b[-1]}")
        if self._one is not None:
            return self._one.decode(w)
        if self._compiled is not None:
            out = np.empty(len(w), dtype=np.int64)
            if self._compiled(*self._state, self._rows, w, out, self._spent) >= 0:
                raise FormatError("corrupt payload (invalid data)")
        else:
            try:
                out = np.concatenate([d.decode(_FAMILY, w[lo:hi]) for d, lo, hi in zip(self._decs, b[:-1], b[1:])])
            except Exception as e:  # constriction reports invalid data with various types
                raise FormatError(f"corrupt payload ({e})") from None
            out = out.astype(np.int64, copy=False)
            p = w[np.arange(len(w)), out] / w.sum(axis=1)
            bits = -np.log2(np.minimum(1.0, p + 2.0 ** -22))
            self._spent += np.bincount(self._stream_of_row, weights=bits, minlength=len(self._spent))
        if (self._spent > self._budget).any():
            raise FormatError("corrupt payload (more symbols than its bytes can hold: truncated, "
                              "or a header that claims too many pixels)")
        return out


def encode(symbols, weights) -> bytes:
    enc = Encoder()
    enc.encode(symbols, weights)
    return enc.finish()


def decode(payload: bytes, weights) -> np.ndarray:
    return Decoder(payload).decode(weights)
