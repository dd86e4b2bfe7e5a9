"""Entropy coding of symbol arrays with per-symbol probability tables (constriction's
range coder). The only module of the project that imports constriction.

Probabilities are given as non-negative float64 weights of shape (n, K); they need not be
normalised. ``Categorical(perfect=False)`` quantises them to fixed point and gives every
symbol at least the smallest representable probability, so any symbol stays codable: an
unlikely image costs more bits but never fails. Encoder and decoder must pass bit-identical
weights (see :mod:`arcodec.exact`).

A batch of streams decodes in one compiled call a step (:class:`Decoders`): constriction's
range decoder and table quantiser written again in numba, used only after it has read back
what this constriction wrote (:func:`compiled_decoder`). A photo encoder, whose tables are
integers summing to 2**24, codes each symbol from its two table edges alone
(:class:`EdgeEncoder`: constriction's range encoder and quantiser in numba, used only after
it has written this constriction's bytes, :func:`compiled_encoder`).
"""

from __future__ import annotations

import math

import numpy as np
import constriction

from arcodec.codec import mixture
from arcodec.codec.mixture import compile_kernel, components_of, q_at
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


def _consume(lower, below, span, point, pos, words, end):  # pragma: no cover - compiled
    """A range decoder's state after a symbol (constriction's ``decode_symbol``): the range
    moved up by ``below`` and cut to ``span`` (both already scaled), then, if the span fell
    under 2**32, the state shifted by a word and the stream's next word (if any: zeros past
    its end) read into the point. Returns (lower, span, point, pos)."""
    word = np.uint64(32)
    lower = lower + below
    if span < (np.uint64(1) << word):
        lower = lower << word
        span = span << word
        point = point << word
        if pos < end:
            point = point | np.uint64(words[pos])
            pos += 1
    return lower, span, point, pos


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
            lo, sp, pt, ps = _consume(lo, scale * left, scale * prob, pt, ps, words, end[i])
        lower[i], span[i], point[i], pos[i] = lo, sp, pt, ps
    return -1


_consume = compile_kernel(_consume) or _consume  # compiled before the kernels that call it
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


def _range_decode_mixtures(words, pos, end, lower, span, point, pieces, lg, mu, ls, K, sig, wt, inv_t, n_sig, t_first,
                           t_full, r_scale, mu_limit, table_bits, sig_bits, out, own,
                           spent):  # pragma: no cover - compiled
    """numba: :func:`_range_decode` for symbols of :func:`arcodec.codec.mixture.frequencies`'
    tables given by their mixtures (lg, mu, ls: (N, M)), without building the tables: the
    symbol whose right cumulative first exceeds the coder's quantile, found by bisection,
    each cumulative from the table's q at one edge (:func:`arcodec.codec.mixture.q_at`,
    O(M)), quantised as constriction's ``Categorical(perfect=False)`` quantises a table of
    integers that sum to 2**24. pieces (P, 3): (stream, first row, end row); out[j] the
    symbol of row j, own[j] its frequency in the table. Returns -1, or the first stream whose
    data is invalid."""
    m = lg.shape[1]
    ws = np.empty(m, dtype=np.int64)
    geo = np.empty((m, 3), dtype=np.int64)
    top = np.uint64(1) << np.uint64(24)
    scale_f = float(16777216 - K) / 16777216.0
    for k in range(len(pieces)):
        i = pieces[k, 0]
        lo, sp, pt, ps = lower[i], span[i], point[i], pos[i]
        for j in range(pieces[k, 1], pieces[k, 2]):
            components_of(lg, mu, ls, j, K, wt, inv_t, n_sig, r_scale, mu_limit, ws, geo)
            scale = sp >> np.uint64(24)
            quantile = (pt - lo) // scale
            if quantile >= top:
                return i
            # the symbol: the first whose right cumulative exceeds the quantile, between a
            # and b; below: q of the edge below a, upto: q at b (q_{-1} = 0, q_{K-1} = 2**24).
            # First a bracket, in steps doubling away from the heaviest component's mean
            # (most symbols lie a level or two from it), then bisection inside it.
            a, b, below, upto = 0, K - 1, np.int64(0), np.int64(1) << table_bits
            heavy = 0
            for c in range(1, m):
                if ws[c] > ws[heavy]:
                    heavy = c
            mean = min(max(mu[j, heavy], -4096), 4096)  # 2**-12 units: levels 0..K-1 at -1..1
            c = min(max(((mean + 4096) * (K - 1) + 4096) >> 13, 0), K - 2)  # its level, rounded
            step = 1
            q = q_at(c, ws, geo, K, sig, t_first, t_full, sig_bits, table_bits)
            if np.uint64(np.int64(float(q) * scale_f)) + np.uint64(c + 1) > quantile:
                b, upto = c, q
                while b > 0:  # down: the bracket's lower end
                    c = max(b - step, 0)
                    q = q_at(c - 1, ws, geo, K, sig, t_first, t_full, sig_bits, table_bits)
                    if c == 0 or np.uint64(np.int64(float(q) * scale_f)) + np.uint64(c) <= quantile:
                        a, below = c, q
                        break
                    b, upto = c - 1, q
                    step *= 2
            else:
                a, below = c + 1, q
                while a < K - 1:  # up: the bracket's upper end
                    c = min(a + step - 1, K - 1)
                    q = q_at(c, ws, geo, K, sig, t_first, t_full, sig_bits, table_bits)
                    if c == K - 1 or np.uint64(np.int64(float(q) * scale_f)) + np.uint64(c + 1) > quantile:
                        b, upto = c, q
                        break
                    a, below = c + 1, q
                    step *= 2
            while a < b:
                c = (a + b) >> 1
                q = q_at(c, ws, geo, K, sig, t_first, t_full, sig_bits, table_bits)
                if np.uint64(np.int64(float(q) * scale_f)) + np.uint64(c + 1) > quantile:
                    b, upto = c, q
                else:
                    a, below = c + 1, q
            left = np.uint64(np.int64(float(below) * scale_f)) + np.uint64(a)
            right = top if a == K - 1 else np.uint64(np.int64(float(upto) * scale_f)) + np.uint64(a + 1)
            out[j] = a
            own[j] = upto - below
            spent[i] -= np.log2(min(1.0, (upto - below) / 16777216.0 + 2.0 ** -22))
            lo, sp, pt, ps = _consume(lo, scale * left, scale * (right - left), pt, ps, words, end[i])
        lower[i], span[i], point[i], pos[i] = lo, sp, pt, ps
    return -1


_RANGE_DECODE_MIXTURES = compile_kernel(_range_decode_mixtures)
_MIXTURES_CHECKED: bool | None = None  # whether it reads this constriction's streams (None: not yet tried)


class MixtureDecoders:
    """Streams of symbols coded with :func:`arcodec.codec.mixture.frequencies`' tables,
    decoded from the mixtures' parameters instead of their tables (the photo decoder): the
    same symbols and refusals as a :class:`Decoder` a stream given the tables (its
    information count included). Several threads may decode at once, each its own streams.
    Use it only where :func:`compiled_mixture_decoder` says so."""

    def __init__(self, payloads: list[bytes], levels: int):
        self._levels = levels
        self._state = _start(payloads)
        self._budget = np.array([capacity_bits(len(p)) for p in payloads])  # as Decoder's, see its docstring
        self._spent = np.zeros(len(payloads))

    def decode(self, pieces: np.ndarray, logits, mu, log_s, out: np.ndarray, own: np.ndarray) -> None:
        """Rows pieces[k, 1]..pieces[k, 2]-1 of the mixtures (N, M) from stream pieces[k, 0],
        piece after piece: their symbols into ``out``, their frequencies into ``own`` (N,)."""
        lg, mu, ls = (np.ascontiguousarray(a, dtype=np.int64) for a in (logits, mu, log_s))  # one compiled type
        code = _RANGE_DECODE_MIXTURES(*self._state, np.ascontiguousarray(pieces, dtype=np.int64), lg, mu, ls,
                                      *mixture.kernel_constants(self._levels), out, own, self._spent)
        if code >= 0:
            raise FormatError("corrupt payload (invalid data)")
        streams = pieces[:, 0]
        if (self._spent[streams] > self._budget[streams]).any():
            raise FormatError("corrupt payload (more symbols than its bytes can hold: truncated, "
                              "or a header that claims too many pixels)")


def compiled_mixture_decoder() -> bool:
    """Whether :class:`MixtureDecoders` reads back what this constriction wrote with the
    tables of a fixed sample of mixtures (broad, narrow and near-certain ones, two streams);
    False without numba: then the decoders build the tables."""
    global _MIXTURES_CHECKED
    if _MIXTURES_CHECKED is None:
        _MIXTURES_CHECKED = False
        if _RANGE_DECODE_MIXTURES is not None and mixture.edges_compiled():
            rng = np.random.default_rng(0)
            n, m = 600, 5
            lg = rng.integers(-12 << 12, 12 << 12, (n, m))
            mu = rng.integers(-2 << 12, 2 << 12, (n, m))
            ls = rng.integers(-9 << 12, 2 << 12, (n, m))
            tables = mixture.frequencies(lg, mu, ls, 256)
            symbols = np.where(rng.random(n) < 0.5, tables.argmax(axis=1), rng.integers(0, 256, n))
            decs = MixtureDecoders([encode(symbols[:250], tables[:250]), encode(symbols[250:], tables[250:])], 256)
            out, own = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
            try:
                decs.decode(np.array([[0, 0, 100], [1, 250, 400], [0, 100, 250], [1, 400, 600]]), lg, mu, ls,
                            out, own)
            except FormatError:
                return False
            _MIXTURES_CHECKED = bool(np.array_equal(out, symbols))
    return _MIXTURES_CHECKED


def _range_encode(symbols, left, freq, K, state, words, at):  # pragma: no cover - compiled
    """numba: constriction's range encoder (``queue::RangeEncoder::encode_symbol``, 64-bit
    state, 32-bit words) and its ``Categorical(perfect=False)`` model, for symbols of integer
    tables that sum to 2**24, each given by its edges alone: left[j] the sum of the table's
    frequencies before symbols[j], freq[j] its own (:func:`arcodec.codec.mixture.edges`).
    The model's cumulatives: floor(sum before k x (2^24 - K) / 2^24) + k, the last symbol's
    right edge 2^24, in float64 as constriction computes them from such a table (its sums
    of integers are exact). state (uint64): lower, range, words held back (the "inverted"
    situation: a carry still undecided) and the first of them, how often that happened;
    writes words from ``at`` on and returns where it stopped (at most one word a symbol)."""
    word = np.uint64(32)
    low_span = np.uint64(1) << word
    mask = np.uint64(0xFFFFFFFF)
    top = np.uint64(1) << np.uint64(24)
    scale_f = float(16777216 - K) / 16777216.0
    lower, span, held, first = state[0], state[1], state[2], state[3]
    for j in range(len(symbols)):
        s = symbols[j]
        below = float(left[j])
        lo = np.uint64(np.int64(below * scale_f)) + np.uint64(s)
        if s == K - 1:
            hi = top
        else:
            hi = np.uint64(np.int64((below + float(freq[j])) * scale_f)) + np.uint64(s + 1)
        scale = span >> np.uint64(24)
        span = scale * (hi - lo)
        new_lower = lower + scale * lo  # wraps, as constriction's wrapping_add
        if held > 0 and new_lower + span > new_lower:  # the carry is decided: the held words go out
            if new_lower < lower:
                words[at] = np.uint32((first + np.uint64(1)) & mask)
                rest = np.uint32(0)
            else:
                words[at] = np.uint32(first)
                rest = np.uint32(0xFFFFFFFF)
            at += 1
            for _ in range(1, held):
                words[at] = rest
                at += 1
            held = np.uint64(0)
        lower = new_lower
        if span < low_span:
            span = span << word
            lower_word = lower >> word
            lower = lower << word
            if held > 0:
                held += np.uint64(1)
            elif lower + span > lower:
                words[at] = np.uint32(lower_word)
                at += 1
            else:
                held = np.uint64(1)
                first = lower_word
                state[4] += np.uint64(1)
    state[0], state[1], state[2], state[3] = lower, span, held, first
    return at


_RANGE_ENCODE = compile_kernel(_range_encode)
_ENCODER_CHECKED: bool | None = None  # whether _RANGE_ENCODE writes this constriction's bytes (None: not yet tried)


class EdgeEncoder:
    """An :class:`Encoder` for integer tables that sum to 2**24, fed each symbol's two edges
    instead of its table (:func:`arcodec.codec.mixture.edges`): constriction's range coder
    written again in numba (:func:`_range_encode`), the same bytes. Use it only where
    :func:`compiled_encoder` says so."""

    def __init__(self, levels: int):
        self._levels = levels
        self._state = np.array([0, np.iinfo(np.uint64).max, 0, 0, 0], dtype=np.uint64)
        self._words = np.empty(1024, dtype=np.uint32)
        self._at = 0

    @property
    def held_back(self) -> int:
        """How often a carry held words back (the tests' check that the path ran)."""
        return int(self._state[4])

    def encode(self, symbols, left, freq) -> None:
        """Encode ``symbols`` (n,) given the sums before them and their frequencies (n,)."""
        s = np.ascontiguousarray(symbols, dtype=np.int64)
        if len(s) and (s.min() < 0 or s.max() >= self._levels):
            raise ValueError(f"symbol out of range 0..{self._levels - 1}")
        need = self._at + len(s) + int(self._state[2]) + 4
        if need > len(self._words):
            self._words = np.concatenate([self._words[: self._at], np.empty(max(need, 2 * len(self._words)), np.uint32)])
        self._at = _RANGE_ENCODE(s, np.ascontiguousarray(left, dtype=np.int64),
                                 np.ascontiguousarray(freq, dtype=np.int64), self._levels, self._state,
                                 self._words, self._at)

    def finish(self) -> bytes:
        """The payload, as :meth:`Encoder.finish` gives it: the words written, then those
        constriction's seal adds (the held-back words, a point inside the range and, when the
        range's upper end shares that word, a zero word), the trailing zero bytes dropped."""
        lower, span, held, first = (int(v) for v in self._state[:4])
        out = [self._words[: self._at].astype("<u4").tobytes()]
        if span != (1 << 64) - 1:  # nothing encoded: no words
            point = (lower + (1 << 32) - 1) & ((1 << 64) - 1)
            if held:
                lead, rest = (first, 0xFFFFFFFF) if point >= lower else ((first + 1) & 0xFFFFFFFF, 0)
                out.append(np.array([lead] + [rest] * (held - 1), dtype="<u4").tobytes())
            point_word = point >> 32
            tail = [point_word] + ([0] if ((lower + span) & ((1 << 64) - 1)) >> 32 == point_word else [])
            out.append(np.array(tail, dtype="<u4").tobytes())
        data = b"".join(out)
        cut = 0
        while cut < 3 and cut < len(data) and data[-1 - cut] == 0:
            cut += 1
        return data[: len(data) - cut]


def compiled_encoder() -> bool:
    """Whether :class:`EdgeEncoder` writes what this constriction writes, checked once on a
    fixed sample (integer tables of 256 entries summing to 2**24, from near-certain symbols
    to 2**-24 ones, enough of them that carries are held back); False without numba: then
    the encoders build whole tables for constriction."""
    global _ENCODER_CHECKED
    if _ENCODER_CHECKED is None:
        _ENCODER_CHECKED = False
        if _RANGE_ENCODE is not None:
            tables, symbols = _sample_tables(np.random.default_rng(0), 3000, 256)
            enc = EdgeEncoder(256)
            left, freq = _edges_of(tables, symbols)
            enc.encode(symbols[:1000], left[:1000], freq[:1000])
            enc.encode(symbols[1000:], left[1000:], freq[1000:])
            _ENCODER_CHECKED = enc.finish() == encode(symbols, tables.astype(np.float64))
    return _ENCODER_CHECKED


def _sample_tables(rng, n: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """n integer tables of K entries (each >= 1, summing to 2**24) of a wide dynamic range,
    and a symbol each: the table's likeliest in a third of them, any entry otherwise."""
    w = rng.random((n, K)) ** 30 * 10.0 ** rng.integers(0, 8, (n, 1))
    q = np.floor(np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True) * ((1 << 24) - K)).astype(np.int64)
    q[:, -1] = (1 << 24) - K
    tables = np.diff(np.concatenate([np.zeros((n, 1), np.int64), q], axis=1), axis=1) + 1
    symbols = np.where(rng.random(n) < 1 / 3, tables.argmax(axis=1), rng.integers(0, K, n))
    return tables, symbols


def _edges_of(tables: np.ndarray, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the sum of each table before its symbol, the symbol's frequency)."""
    rows = np.arange(len(tables))
    return np.cumsum(tables, axis=1)[rows, symbols] - tables[rows, symbols], tables[rows, symbols]


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
