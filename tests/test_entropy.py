import numpy as np
import pytest

from arcodec.codec.entropy import Decoder, Decoders, Encoder, decode, encode
from arcodec.errors import FormatError

RNG = np.random.default_rng(1)


def roundtrip(symbols, weights):
    data = encode(symbols, weights)
    assert np.array_equal(decode(data, weights), symbols)
    return data


@pytest.mark.parametrize("k", [2, 4, 256])
def test_uniform_costs_log2_k_bits(k):
    n = 4000
    s = RNG.integers(0, k, n)
    data = roundtrip(s, np.ones((n, k)))
    assert abs(8 * len(data) - n * np.log2(k)) <= 64 + 0.001 * n * np.log2(k)


def test_near_deterministic_costs_almost_nothing():
    n, k = 10000, 256
    w = np.full((n, k), 1e-12)
    s = RNG.integers(0, k, n)
    w[np.arange(n), s] = 1.0
    data = roundtrip(s, w)
    assert len(data) < 64  # ~0 bits per symbol plus the coder's flush


def test_zero_probability_symbols_stay_codable():
    n, k = 500, 256
    w = np.zeros((n, k))
    w[:, 0] = 1.0  # the model is sure of 0, and is always wrong
    s = RNG.integers(1, k, n)
    data = roundtrip(s, w)
    assert len(data) > n  # expensive, but it round-trips


def test_extreme_dynamic_range_and_unnormalised_rows():
    n, k = 2000, 256
    w = RNG.random((n, k)) ** 40 * 10.0 ** RNG.integers(-30, 30, (n, 1))
    s = RNG.integers(0, k, n)
    roundtrip(s, w)


def test_batches_decode_in_encoding_order():
    k = 16
    parts = [(RNG.integers(0, k, n), RNG.random((n, k))) for n in (1, 7, 300, 0, 5)]
    enc = Encoder()
    for s, w in parts:
        enc.encode(s, w)
    dec = Decoder(enc.finish())
    for s, w in parts:
        assert np.array_equal(dec.decode(w), s)


def test_empty_and_bad_arguments():
    assert encode(np.zeros(0, int), np.ones((0, 4))) == b""
    with pytest.raises(ValueError):
        encode(np.array([4]), np.ones((1, 4)))
    with pytest.raises(ValueError):
        encode(np.array([1, 2]), np.ones((1, 4)))


def _streams(symbols, tables, counts):
    """Streams of counts[i] rows of every step, each written by constriction's encoder: the
    payloads, and the rows' bounds."""
    bounds = np.cumsum([0, *counts])
    payloads = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        enc = Encoder()
        for s, w in zip(symbols, tables):
            enc.encode(s[a:b], w[a:b])
        payloads.append(enc.finish())
    return payloads, bounds


def test_streams_read_side_by_side_give_each_stream_its_symbols_and_refuse_a_cut_one():
    """Decoders: a batch of streams of 1, 3 and 2 rows a step, decoded step after step in
    one call each, gives what each stream's own Decoder gives; a cut stream among whole
    ones is refused once it has given more information than its bytes hold."""
    k, steps, counts = 256, 40, [1, 3, 2]
    tables = [RNG.random((sum(counts), k)) ** 8 for _ in range(steps)]
    symbols = [RNG.integers(0, k, sum(counts)) for _ in range(steps)]
    payloads, bounds = _streams(symbols, tables, counts)
    decs = Decoders(payloads, counts)
    alone = [Decoder(p) for p in payloads]
    for s, w in zip(symbols, tables):
        out = decs.decode(w)
        assert np.array_equal(out, s)
        assert np.array_equal(np.concatenate([d.decode(w[a:b]) for d, a, b in zip(alone, bounds[:-1], bounds[1:])]), s)
    one = Decoders([payloads[1]], [3])  # a single stream: its own decoder's path
    assert all(np.array_equal(one.decode(w[1:4]), s[1:4]) for s, w in zip(symbols, tables))
    cut = Decoders([payloads[0], payloads[1][:8], payloads[2]], counts)
    with pytest.raises(FormatError, match="more symbols than its bytes"):
        for w in tables:
            cut.decode(w)
    with pytest.raises(ValueError):
        Decoders(payloads, [1, 3])
    with pytest.raises(ValueError):
        decs.decode(tables[0][:5])


@pytest.mark.parametrize("compiled", [True, False])
def test_the_compiled_range_decoder_reads_what_constriction_wrote(monkeypatch, compiled):
    """Decoders' compiled range decoder (numba) against constriction's own, on tables of an
    extreme dynamic range, near-certain symbols, unnormalised rows, streams of 0 to 3 words
    and streams of random bytes: the same symbols, or the same refusal. Without numba (or
    compiled=False) Decoders runs constriction itself."""
    from arcodec.codec import entropy

    if not compiled:
        monkeypatch.setattr(entropy, "compiled_decoder", lambda: None)
    elif entropy._RANGE_DECODE is None:
        pytest.skip("numba is not installed")
    else:  # with numba, the compiled decoder passes its own check against constriction
        assert entropy.compiled_decoder() is entropy._RANGE_DECODE
    k, steps, counts = 256, 60, [2, 1, 3, 1]
    n = sum(counts)
    tables = [RNG.random((n, k)) ** 40 * 10.0 ** RNG.integers(-30, 30, (n, 1)) for _ in range(steps)]
    tables[3][:, 7] = 1e300  # symbol 7 almost certain
    symbols = [np.array([RNG.choice(k, p=row / row.sum()) if i % 2 else RNG.integers(0, k) for i, row in enumerate(w)])
               for w in tables]
    payloads, bounds = _streams(symbols, tables, counts)
    decs = Decoders(payloads, counts)
    for s, w in zip(symbols, tables):
        assert np.array_equal(decs.decode(w), s)
    # short and random streams: whatever constriction makes of them, the compiled decoder makes too
    for trial in range(20):
        junk = [RNG.bytes(int(RNG.integers(0, 13))) for _ in counts]
        theirs = [Decoder(p) for p in junk]
        ours = Decoders(junk, counts)
        for w in tables[:6]:
            try:
                expected = np.concatenate([d.decode(w[a:b]) for d, a, b in zip(theirs, bounds[:-1], bounds[1:])])
            except FormatError:
                expected = None
            if expected is None:
                with pytest.raises(FormatError):
                    ours.decode(w)
                break
            assert np.array_equal(ours.decode(w), expected), trial


def test_a_compiled_decoder_that_reads_another_constriction_is_not_used(monkeypatch):
    """compiled_decoder() checks the compiled decoder against this constriction's encoder
    first: one that decodes otherwise (here: every symbol one too high) is never used, and
    the decoders fall back to constriction with the same symbols."""
    from arcodec.codec import entropy

    if entropy._RANGE_DECODE is None:
        pytest.skip("numba is not installed")
    right = entropy._RANGE_DECODE

    def off_by_one(*args):
        code = right(*args)
        args[8][:] += 1
        return code

    monkeypatch.setattr(entropy, "_RANGE_DECODE", off_by_one)
    monkeypatch.setattr(entropy, "_CHECKED", None)
    assert entropy.compiled_decoder() is None
    w = RNG.random((4, 16))
    s = RNG.integers(0, 16, 4)
    payloads = [encode(s[:2], w[:2]), encode(s[2:], w[2:])]
    assert np.array_equal(Decoders(payloads, [2, 2]).decode(w), s)


def test_the_compiled_range_encoder_writes_constrictions_bytes():
    """EdgeEncoder (constriction's range encoder in numba, fed each symbol's two table edges)
    against constriction fed the whole integer tables: the same bytes for streams of 0 to
    30,000 symbols in chunks of any size, alphabets of 2 to 1,000 levels, near-certain and
    2**-24 symbols, and carries held back (the rare branch) many times."""
    from arcodec.codec import entropy

    if entropy._RANGE_ENCODE is None:
        pytest.skip("numba is not installed")
    assert entropy.compiled_encoder()  # with numba, the compiled encoder passes its own check
    held = 0
    for trial in range(24):
        n = int(RNG.integers(0, 30000)) if trial else 0
        k = int(RNG.choice([2, 3, 256, 1000]))
        tables, symbols = entropy._sample_tables(RNG, n, k)
        left, own = entropy._edges_of(tables, symbols)
        enc = entropy.EdgeEncoder(k)
        cuts = np.sort(RNG.integers(0, n + 1, 3))
        for a, b in zip([0, *cuts], [*cuts, n]):
            enc.encode(symbols[a:b], left[a:b], own[a:b])
        assert enc.finish() == encode(symbols, tables.astype(np.float64)), trial
        held += enc.held_back
    assert held > 100
    with pytest.raises(ValueError):
        entropy.EdgeEncoder(4).encode(np.array([4]), np.array([0]), np.array([1]))

