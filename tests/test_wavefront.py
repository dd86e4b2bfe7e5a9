"""The fast paths of the photo coder: the mixture kernel's reads and writes, the compiled
colour coupling, the encoder's stream order, and the threads that share out both coders'
work. Every variant must give the integers (and bytes) of the plain one. Tiny models only."""

import numpy as np
import pytest
import torch

from arcodec.codec import engine as engine_module
from arcodec.codec import mixture
from arcodec.codec import wavefront as wf
from arcodec.codec.engine import LocalEngine
from arcodec.registry import build_model, make_config


def tiny(channels=3, seed=0):
    """A tiny local model with calibrated scales and peaked distributions (a few Adam steps)."""
    torch.manual_seed(seed)
    m = build_model("local-photo", make_config("local-photo", {"hidden": 12, "blocks": 1, "components": 3,
                                                                "channels": channels}))
    opt = torch.optim.Adam(m.parameters(), lr=2e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(6):
        x = (torch.rand(8, 1, 1, 1, generator=g) * 200 + torch.randn(8, channels, 12, 12, generator=g) * 6)
        loss, _ = m.objective(x.round().clamp(0, 255).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    m.calibrate(torch.randint(0, 256, (2, channels, 12, 12)))
    return m


def random_mixtures(rng, n, m):
    lg = rng.integers(-20 << 12, 20 << 12, (n, m))
    mu = rng.integers(-6 << 12, 6 << 12, (n, m))
    ls = rng.integers(-9 << 12, 9 << 12, (n, m))
    ls[: n // 4] = rng.integers(0, 3 << 12, (n // 4, m))  # broad components: sampled, and saturated at the ends
    lg[n // 4: n // 3, 1:] = -(30 << 12)  # one component only
    return lg, mu, ls


@pytest.mark.parametrize("levels", [2, 3, 17, 256, 1024])
def test_kernel_equals_the_numpy_reference_for_broad_narrow_and_extreme_components(levels):
    lg, mu, ls = random_mixtures(np.random.default_rng(levels), 1500, 7)
    ref = mixture.frequencies_numpy(lg, mu, ls, levels)
    assert np.array_equal(mixture.frequencies(lg, mu, ls, levels), ref)
    assert ref.min() >= 1 and (ref.sum(axis=1) == 1 << mixture.TABLE_BITS).all()


@pytest.mark.parametrize("levels", [2, 3, 17, 256, 1024])
def test_edges_are_the_tables_sum_before_each_symbol_and_its_frequency(levels):
    """mixture.edges, for symbols at both ends, the likeliest and any other, written to
    scattered places: the sums of the table's frequencies before the symbol and its own
    frequency, exactly, also for broad components (sampled strides) and saturated ones."""
    if not mixture.edges_compiled():
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(levels + 1)
    lg, mu, ls = random_mixtures(rng, 3000, 7)
    tables = mixture.frequencies_numpy(lg, mu, ls, levels)
    symbols = rng.integers(0, levels, len(tables))
    symbols[::5], symbols[1::5], symbols[2::5] = 0, levels - 1, tables[2::5].argmax(axis=1)
    dest = rng.permutation(len(tables) + 9)[: len(tables)]
    left, own = np.full(len(tables) + 9, -1), np.full(len(tables) + 9, -1)
    mixture.edges(lg, mu, ls, levels, symbols, left, own, dest)
    rows = np.arange(len(tables))
    assert np.array_equal(own[dest], tables[rows, symbols])
    assert np.array_equal(left[dest], np.cumsum(tables, axis=1)[rows, symbols] - tables[rows, symbols])
    assert (np.delete(own, dest) == -1).all() and (np.delete(left, dest) == -1).all()
    with pytest.raises(ValueError):
        mixture.edges(lg, mu, ls, levels, np.full(len(tables), levels), left, own, dest)
    with pytest.raises(ValueError):
        mixture.edges(lg, mu, ls, levels, symbols, left[:10], own, dest)



def test_the_decoder_searching_the_mixtures_reads_the_symbols_of_their_tables():
    """MixtureDecoders (the symbols found on the mixtures by bisection, no tables) against
    constriction's decoder given the tables, for broad, narrow, one-component and extreme
    mixtures, two streams read in interleaved pieces: the same symbols and frequencies; a
    stream cut short or of random bytes: the same refusal, or the same symbols as far as
    constriction reads them."""
    from arcodec.codec import entropy
    from arcodec.errors import FormatError

    if entropy._RANGE_DECODE_MIXTURES is None:
        pytest.skip("numba is not installed")
    assert entropy.compiled_mixture_decoder()  # with numba, the search passes its own check
    rng = np.random.default_rng(11)
    lg, mu, ls = random_mixtures(rng, 2000, 6)
    tables = mixture.frequencies_numpy(lg, mu, ls, 256)
    symbols = np.where(rng.random(2000) < 0.5, tables.argmax(axis=1), rng.integers(0, 256, 2000))
    symbols[:7] = [0, 255, 0, 255, 1, 254, 128]
    payloads = [entropy.encode(symbols[:900], tables[:900]), entropy.encode(symbols[900:], tables[900:])]
    decs = entropy.MixtureDecoders(payloads, 256)
    out, own = np.full(2000, -1), np.full(2000, -1)
    for a, b in [(0, 5), (900, 1300), (5, 900), (1300, 2000)]:
        decs.decode(np.array([[int(a >= 900), a, b]]), lg, mu, ls, out, own)
    assert np.array_equal(out, symbols) and np.array_equal(own, tables[np.arange(2000), symbols])
    for trial in range(12):
        junk = payloads[0][: int(rng.integers(0, 40))] if trial % 2 else rng.bytes(int(rng.integers(0, 30)))
        theirs = entropy.Decoder(junk)
        ours = entropy.MixtureDecoders([junk], 256)
        for a in range(0, 900, 60):
            try:
                want = theirs.decode(tables[a: a + 60], 2.0 ** 24)
            except FormatError:
                with pytest.raises(FormatError):
                    ours.decode(np.array([[0, a, a + 60]]), lg, mu, ls, out, own)
                break
            ours.decode(np.array([[0, a, a + 60]]), lg, mu, ls, out, own)
            assert np.array_equal(out[a: a + 60], want), trial


@pytest.mark.parametrize("surprise", [False, True])
def test_the_decoder_searching_the_mixtures_decodes_the_pixels_of_the_decoder_with_tables(surprise, monkeypatch):
    """decode_streams without tables (the symbols searched on the mixtures) and with them
    (what it does when the caller watches the tables): the same pixels, for tiles of several
    bands on two threads, with offsets and the surprise; a cut payload is refused by both."""
    from arcodec.codec import entropy
    from arcodec.errors import FormatError

    if entropy._RANGE_DECODE_MIXTURES is None:
        pytest.skip("numba is not installed")
    assert entropy.compiled_mixture_decoder()  # with numba, the search passes its own check
    monkeypatch.setattr(wf, "SCALE_MIN_PIXELS", 1)
    monkeypatch.setattr(wf, "WORKERS", 2)
    monkeypatch.setattr(wf, "DECODE_SHARE", 1)
    m = surprising(tiny()) if surprise else tiny()
    h, w = wf.BAND + 9, 14
    x = torch.from_numpy(np.random.default_rng(12).integers(30, 230, (3, 3, h, w)))
    payloads = [p for p, _ in wf.encode_streams(m, x, [2, 1], adapt=5)]
    seen = []
    searched = wf.decode_streams(m, payloads, [2, 1], 3, h, w, adapt=5)
    tabled = wf.decode_streams(m, payloads, [2, 1], 3, h, w, adapt=5, on_table=lambda *a: seen.append(1))
    assert seen and np.array_equal(searched, x.numpy()) and np.array_equal(tabled, searched)
    cut = [payloads[0][: len(payloads[0]) // 2], payloads[1]]
    for watch in (None, lambda *a: None):
        with pytest.raises(FormatError):
            wf.decode_streams(m, cut, [2, 1], 3, h, w, adapt=5, on_table=watch)


def test_a_compiled_mixture_decoder_that_reads_other_symbols_is_not_used(monkeypatch):
    """compiled_mixture_decoder() checks the search against constriction first: one that
    reads otherwise (here: every symbol one too high) is never used, and the photo decoder
    builds the tables for constriction instead, with the same pixels."""
    from arcodec.codec import entropy

    if entropy._RANGE_DECODE_MIXTURES is None:
        pytest.skip("numba is not installed")
    assert entropy.compiled_mixture_decoder()  # with numba, the search passes its own check
    real = entropy._RANGE_DECODE_MIXTURES

    def off(*args):
        code = real(*args)
        args[-3][:] += 1
        return code

    monkeypatch.setattr(entropy, "_RANGE_DECODE_MIXTURES", off)
    monkeypatch.setattr(entropy, "_MIXTURES_CHECKED", None)
    assert not entropy.compiled_mixture_decoder()
    monkeypatch.setattr(wf, "compiled_mixture_decoder", entropy.compiled_mixture_decoder)
    m = tiny(1)
    x = np.random.default_rng(13).integers(0, 256, (1, 1, 10, 9))
    payloads = [p for p, _ in wf.encode_streams(m, x, [1])]
    assert np.array_equal(wf.decode_streams(m, payloads, [1], 1, 10, 9), x)

def test_kernel_tables_hold_the_same_numbers_in_fewer_bytes():
    sig = mixture.sigmoid_table()
    upper, wt, inv_t = mixture.kernel_tables()
    half = 1 << (mixture.SIG_BITS - 1)
    assert upper.dtype == np.uint16 and np.array_equal(upper.astype(np.int64) + half, sig[len(sig) // 2:])
    assert np.array_equal(sig[: len(sig) // 2 + 1][::-1], half - upper.astype(np.int64))  # the mirror image
    assert np.array_equal(wt, mixture.weight_table()) and np.array_equal(inv_t, mixture.inverse_scale_table())


@pytest.mark.parametrize("numba", [True, False])
def test_tables_go_to_the_named_rows_of_a_float_or_integer_array(numba, monkeypatch):
    if not numba:
        monkeypatch.setattr(mixture, "_KERNEL", [None])
    lg, mu, ls = random_mixtures(np.random.default_rng(1), 40, 4)
    ref = mixture.frequencies_numpy(lg, mu, ls, 256)
    dest = np.random.default_rng(2).permutation(50)[:40]
    out = np.full((50, 256), -1.0)
    assert mixture.frequencies(lg, mu, ls, 256, out=out, dest=dest) is out
    assert np.array_equal(out[dest], ref)
    assert (np.delete(out, dest, axis=0) == -1).all()  # the other rows untouched
    whole = np.zeros((40, 256), dtype=np.int64)
    assert np.array_equal(mixture.frequencies(lg, mu, ls, 256, out=whole), ref)


@pytest.mark.parametrize("numba", [True, False])
def test_tables_refuse_an_array_without_room(numba, monkeypatch):
    if not numba:
        monkeypatch.setattr(mixture, "_KERNEL", [None])
    lg, mu, ls = random_mixtures(np.random.default_rng(3), 10, 3)
    for out, dest in [(np.empty((9, 256)), None), (np.empty((10, 255)), None), (np.empty((10, 256)), np.arange(1, 11)),
                      (np.empty((10, 256), dtype=np.int32), None)]:
        with pytest.raises(ValueError):
            mixture.frequencies(lg, mu, ls, 256, out=out, dest=dest)


def test_compiled_colour_coupling_equals_numpy_on_any_rows():
    m = tiny()
    eng = LocalEngine(m)
    rng = np.random.default_rng(4)
    raw = rng.integers(-(20 << 12), 20 << 12, (300, m.n_params))  # coefficients beyond the tanh table's range too
    prev = rng.integers(0, 256, (300, 3))
    rows = rng.integers(0, 300, 120)
    for ch in range(3):
        want = eng._channel_params_numpy(raw[rows], prev[rows], ch, None)
        got = eng.channel_params(raw, prev, ch, rows)
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
        assert all(np.array_equal(a, b) for a, b in zip(eng.channel_params(raw, prev, ch),
                                                         eng._channel_params_numpy(raw, prev, ch, None)))
    with pytest.raises(ValueError):
        eng.channel_params(raw, prev, 1, np.array([300]))


def test_stream_places_follow_line_channel_row():
    slope, width, channels, tiles = 4, 9, 3, 2
    rows, cols = wf._band_order(0, 6, width, slope)
    t_of = (cols + slope * rows)[5:31]  # a chunk (the cut need not fall between lines here)
    places = wf._stream_places(t_of, tiles, channels)
    L = len(t_of)
    assert sorted(places.ravel()) == list(range(tiles * L * channels))
    for i in range(tiles):
        keys = [(t_of[k], ch, rows[5 + k]) for ch in range(channels) for k in range(L)]
        pos = [places[ch, i * L + k] for ch in range(channels) for k in range(L)]
        assert [key for _, key in sorted(zip(pos, keys))] == sorted(keys)
        assert min(pos) == i * L * channels


def test_balanced_groups_cover_every_piece_once():
    assert wf._balanced([5, 5, 5, 5], 2) == [[0, 2], [1, 3]]
    groups = wf._balanced([10, 64, 64, 54, 3], 3)
    assert sorted(k for g in groups for k in g) == list(range(5)) and all(g == sorted(g) for g in groups)
    assert wf._balanced([7], 4) == [[0]]


def test_threads_give_the_same_bytes_and_pixels(monkeypatch):
    """Tiles taller than two bands: lines of several pieces, shared among up to three threads
    in pieces of any size, against one thread."""
    m = tiny()
    x = torch.from_numpy(np.random.default_rng(5).integers(60, 200, (2, 3, 2 * wf.BAND + 5, 12)))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [p for p, _ in wf.encode_streams(m, x, [1, 1])]
        torch.set_num_threads(3)
        monkeypatch.setattr(wf, "WORKERS", 3)
        monkeypatch.setattr(wf, "SHARE_ROWS", 1)
        monkeypatch.setattr(wf, "DECODE_SHARE", 1)
        monkeypatch.setattr(wf, "TRUNK_WINDOWS", 16)
        monkeypatch.setattr(wf, "TABLE_ROWS", 200)
        assert [p for p, _ in wf.encode_streams(m, x, [1, 1])] == one
        got = wf.decode_streams(m, one, [1, 1], 3, 2 * wf.BAND + 5, 12)
        assert torch.get_num_threads() == 3  # given back
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(got, x.numpy())


def surprising(m):
    """The tiny model ``m`` grown a surprise (each channel's mixture moved by the earlier
    channels' code lengths), its gains drawn at random."""
    torch.manual_seed(1)
    grown = build_model("local-photo", make_config("local-photo", {**vars(m.config), "surprise": True}))
    grown.load_state_dict(m.state_dict(), strict=False)
    with torch.no_grad():
        grown.surprise_gain.normal_(0, 0.3)
    grown.eval().calibrate(torch.randint(0, 256, (2, m.config.channels, 12, 12)))
    return grown


@pytest.mark.parametrize("adapt,surprise", [(0, False), (5, True)])
def test_the_encoder_fed_edges_writes_the_bytes_of_the_encoder_fed_tables(adapt, surprise, monkeypatch):
    """The encoder gives the range coder each symbol's two table edges (mixture.edges, the
    compiled range encoder), not its table: the same payloads and code lengths as with whole
    tables for constriction (what it does when the caller watches the tables), for tiles
    of several bands and chunks, two threads, offsets and the surprise."""
    from arcodec.codec import entropy

    if entropy._RANGE_ENCODE is None:
        pytest.skip("numba is not installed")
    assert entropy.compiled_encoder()  # with numba, the compiled encoder passes its own check
    monkeypatch.setattr(wf, "SCALE_MIN_PIXELS", 1)
    monkeypatch.setattr(wf, "TABLE_ROWS", 300)
    monkeypatch.setattr(wf, "WORKERS", 2)
    m = surprising(tiny()) if surprise else tiny()
    x = torch.from_numpy(np.random.default_rng(8).integers(30, 230, (3, 3, wf.BAND + 9, 14)))
    by_edges = wf.encode_streams(m, x, [2, 1], adapt=adapt)
    seen = []
    by_tables = wf.encode_streams(m, x, [2, 1], adapt=adapt, on_table=lambda *a: seen.append(1))
    assert seen and [p for p, _ in by_edges] == [p for p, _ in by_tables]
    assert [b for _, b in by_edges] == pytest.approx([b for _, b in by_tables], rel=1e-12)
    assert np.array_equal(wf.decode_streams(m, [p for p, _ in by_edges], [2, 1], 3, wf.BAND + 9, 14,
                                            adapt=adapt), x.numpy())


def test_a_compiled_encoder_that_writes_other_bytes_is_not_used(monkeypatch):
    """compiled_encoder() checks the compiled encoder against constriction first: one that
    writes otherwise (here: its last word one higher) is never used, and the photo encoder
    builds whole tables for constriction instead, with the same payload."""
    from arcodec.codec import entropy

    if entropy._RANGE_ENCODE is None:
        pytest.skip("numba is not installed")
    assert entropy.compiled_encoder()  # with numba, the compiled encoder passes its own check
    m = tiny(1)
    x = np.random.default_rng(9).integers(0, 256, (1, 1, 10, 9))
    right = wf.encode_streams(m, x, [1])
    real = entropy._RANGE_ENCODE

    def off(*args):
        at = real(*args)
        if at:
            args[5][at - 1] += 1
        return at

    monkeypatch.setattr(entropy, "_RANGE_ENCODE", off)
    monkeypatch.setattr(entropy, "_ENCODER_CHECKED", None)
    assert not entropy.compiled_encoder()
    monkeypatch.setattr(wf, "compiled_encoder", entropy.compiled_encoder)
    assert wf.encode_streams(m, x, [1]) == right

def test_numpy_fallbacks_give_the_same_bytes(monkeypatch):
    m = tiny(1, seed=1)
    x = torch.from_numpy(np.random.default_rng(6).integers(0, 256, (1, 1, 9, 11)))
    fast = wf.encode_streams(m, x, [1])[0][0]
    monkeypatch.setattr(mixture, "_KERNEL", [None])
    monkeypatch.setattr(mixture, "_EDGE_KERNEL", [None])
    monkeypatch.setattr(wf, "compiled_mixture_decoder", lambda: False)
    monkeypatch.setattr(engine_module, "_COUPLE", [None])
    monkeypatch.setattr(engine_module, "_KERNEL", [None])
    assert wf.encode_streams(m, x, [1])[0][0] == fast
    assert np.array_equal(wf.decode_streams(m, [fast], [1], 1, 9, 11), x.numpy())


@pytest.mark.parametrize("channels,surprise", [(1, False), (3, False), (3, True)])
def test_sampled_bits_are_the_exact_tables_code_length_of_the_pixels_drawn(channels, surprise, monkeypatch):
    """With a draw as large as the tiles, sampled_bits is the code length the encoder's exact
    tables give them, without offsets (engine 0) or with those it fits (engine 2, one
    stream), with or without the surprise; a smaller draw comes near it in proportion."""
    m = surprising(tiny(channels)) if surprise else tiny(channels)
    x = torch.from_numpy(np.random.default_rng(2).integers(40, 220, (2, channels, 17, 23)))
    exact = sum(b for _, b in wf.encode_streams(m, x, [1, 1], adapt=0))
    assert wf.sampled_bits(m, x, count=10 ** 6, offsets=False) == pytest.approx(exact, rel=1e-9)
    part = wf.sampled_bits(m, x, count=400, offsets=False)
    assert part == pytest.approx(exact * 400 / (2 * 17 * 23), rel=0.1)
    assert part != wf.sampled_bits(m, x, 401, offsets=False)
    # with the offsets the encoder fits (engine 2, searched here whatever the size): its code length
    monkeypatch.setattr(wf, "SCALE_MIN_PIXELS", 1)
    fitted = sum(b for _, b in wf.encode_streams(m, x, [2], adapt=2))
    assert fitted < exact
    assert wf.sampled_bits(m, x, count=10 ** 6) == pytest.approx(fitted, rel=1e-9)


def test_the_stream_fit_of_the_models_choice_is_not_made_twice_and_gives_the_same_bytes(monkeypatch):
    """sampled_bits fits a stream's mixture offsets on the draw the encoder fits them on; the
    encoder then takes them from the fits it remembers instead of fitting again (one fit
    fewer), and writes the same bytes."""
    monkeypatch.setattr(wf, "SCALE_MIN_PIXELS", 1)
    m = tiny()
    x = torch.from_numpy(np.random.default_rng(4).integers(50, 210, (1, 3, 40, 37)))
    calls = []
    fit = wf._fit_steps
    monkeypatch.setattr(wf, "_fit_steps", lambda *a, **k: calls.append(1) or fit(*a, **k))
    wf._fits.clear()
    fresh = wf.encode_streams(m, x, [1], adapt=5)
    cold = len(calls)
    wf._fits.clear()
    wf.sampled_bits(m, x)
    calls.clear()
    assert wf.encode_streams(m, x, [1], adapt=5) == fresh
    assert len(calls) == cold - 1
    other = x.clone()
    other[0, 0, 5, 5] ^= 1  # other pixels: fitted again
    calls.clear()
    wf.encode_streams(m, other, [1], adapt=5)
    assert len(calls) == cold
