"""The local photo model, its integer mixture tables and the wavefront coder: causal,
one NLL, identical tables on both sides for any batch, band, thread count and image size,
exact round trips of odd shapes in gray and colour. Tiny models only."""

import dataclasses
import math
from functools import partial

import numpy as np
import pytest
import torch

from arcodec.models import causality
from arcodec.codec.api import coding, decode_file, encode_images
from arcodec.codec import mixture
from arcodec.codec import wavefront as wf
from arcodec.codec.container import SCAN_WAVEFRONT, read
from arcodec.models.heads import nll_bits
from arcodec.models.layers import set_exact
from arcodec.codec import engine as engine_module
from arcodec.codec.engine import ACT_MAX, LocalEngine
from arcodec.registry import build_model, make_config
from arcodec.training.train import TrainConfig, checkpoint

TINY = {"hidden": 12, "blocks": 1, "components": 3}


def tiny(channels=3, seed=0, steps=6, **kw):
    """A tiny local model after a few Adam steps on smooth random images (so that its
    distributions are peaked, as a trained model's are)."""
    torch.manual_seed(seed)
    m = build_model("local-photo", make_config("local-photo", {**TINY, "channels": channels, **kw}))
    opt = torch.optim.Adam(m.parameters(), lr=2e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        base = torch.rand(8, 1, 1, 1, generator=g) * 200
        x = (base + torch.randn(8, channels, 12, 12, generator=g) * 6).round().clamp(0, 255).long()
        loss, _ = m.objective(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def record(store):
    def on_table(tiles, rows, cols, ch, freq):
        for t, r, c, q in zip(tiles.tolist(), rows.tolist(), cols.tolist(), freq):
            store[(t, r, c, ch)] = q.copy()
    return on_table


@pytest.mark.parametrize("channels", [1, 3])
def test_causal_at_init_and_after_training(channels):
    torch.manual_seed(0)
    m = build_model("local-photo", make_config("local-photo", {**TINY, "channels": channels}))
    assert causality.violations(m) == []
    assert causality.violations(tiny(channels)) == []


def test_window_is_what_the_wavefront_assumes():
    m = tiny(horizon=2)
    rf = causality.receptive_field(m, 12, 13, 7, 6)
    rows, cols = torch.nonzero(rf, as_tuple=True)
    assert int(rows.min()) == 5 and int(rows.max()) <= 7 and int((cols - 6).abs().max()) == 2
    # nothing right of the pixel in its own row (the pixel itself: the colour coupling), nor below
    assert (rf[7, 7:] == 0).all() and (rf[8:] == 0).all()


def test_objective_is_the_nll_of_the_forward_pass_on_the_inner_positions():
    m = tiny()
    x = torch.randint(0, 256, (2, 3, 9, 10))
    with torch.no_grad():
        loss, bits = m.objective(x)
        full = nll_bits(m(x), x)[:, :, 3:, 3:7]  # rows h.., columns h..W-h-1
    assert bits.shape == (2, 3, 6, 4)
    assert torch.allclose(bits, full, atol=1e-3)
    logp = m(x)
    assert torch.allclose(logp.exp().sum(1), torch.ones(2, 3, 9, 10), atol=1e-4)
    assert logp.min() >= -mixture.TABLE_BITS * math.log(2.0) - 1e-3  # the floor: 1 / 2**24 at least


def test_mixture_tables_numba_and_numpy_agree_and_are_valid():
    rng = np.random.default_rng(0)
    n, m = 3000, 5
    lg = rng.integers(-20 << 12, 20 << 12, (n, m))
    mu = rng.integers(-6 << 12, 6 << 12, (n, m))  # clamped to [-4, 4]
    ls = rng.integers(-9 << 12, 9 << 12, (n, m))  # clamped to [-7, 7]
    ls[:100] = -9 << 12  # near-deterministic
    ls[100:200] = 9 << 12  # near-uniform
    lg[200:300, 1:] = -(30 << 12)  # one component only
    for levels in (2, 5, 256):
        a = mixture.frequencies_numpy(lg, mu, ls, levels)
        b = mixture.frequencies(lg, mu, ls, levels)
        assert np.array_equal(a, b)
        assert a.min() >= 1 and (a.sum(1) == 1 << mixture.TABLE_BITS).all()


def test_mixture_tables_follow_the_float_mixture():
    rng = np.random.default_rng(1)
    K, n = 256, 40
    lg = rng.integers(-3 << 12, 3 << 12, (n, 4))
    mu = rng.integers(-4000, 4000, (n, 4))
    ls = rng.integers(-5 << 12, -1 << 12, (n, 4))
    freq = mixture.frequencies(lg, mu, ls, K) / 2.0**mixture.TABLE_BITS
    edges = (2 * np.arange(K - 1) + 2 - K) / (K - 1)
    for i in range(n):
        w = np.exp((lg[i] - lg[i].max()) / 4096.0)
        w /= w.sum()
        t = (edges[None] - mu[i][:, None] / 4096.0) * np.exp(-ls[i][:, None] / 4096.0)
        cdf = (w[:, None] / (1 + np.exp(-t))).sum(0)
        p = np.diff(np.r_[0.0, cdf, 1.0])
        # broad components are interpolated between every 2nd..8th edge: small absolute
        # errors, and a coding cost (the KL divergence) far below a thousandth of a bit
        assert np.abs(freq[i] - p).max() < 1e-3
        kl = float((p * np.log2(np.maximum(p, 1e-300) / freq[i])).sum())
        assert kl < 1e-3


def surprising(seed=0, **kw):
    """A tiny colour model with the surprise, its gains made large enough to matter."""
    m = tiny(3, seed=seed, surprise=True, **kw)
    with torch.no_grad():
        m.surprise_gain.copy_(torch.randn(m.surprise_gain.shape, generator=torch.Generator().manual_seed(seed)) * 0.5)
    return m


def headed(seed=0):
    """A tiny colour model with the surprise and channel heads, the heads' weights made
    large enough to matter."""
    m = surprising(seed, channel_head=4)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in (m.head_in, m.head_out, m.head_bias):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m


@pytest.mark.parametrize("adapt", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (7, 11), (13, 5)])
@pytest.mark.parametrize("channels", [1, 3, "surprise", "heads"])
def test_wavefront_round_trip_and_identical_tables(shape, channels, adapt, monkeypatch):
    monkeypatch.setattr(wf, "SCALE_MIN_PIXELS", 1)  # tiny tiles search their offsets too
    monkeypatch.setattr(wf, "REGION_MIN_PIXELS", 1)
    monkeypatch.setattr(wf, "REGION_WIDTH", 4)  # several regions a tile
    if channels in ("surprise", "heads"):
        m, channels = set_exact(surprising() if channels == "surprise" else headed(), True), 3
    else:
        m = set_exact(tiny(channels), True)
    rng = np.random.default_rng(sum(shape))
    x = torch.from_numpy(rng.integers(90, 140, (3, channels, *shape)))
    enc, dec1, dec3 = {}, {}, {}
    out = wf.encode_streams(m, x, [2, 1], on_table=record(enc), adapt=adapt)
    got = wf.decode_streams(m, [p for p, _ in out], [2, 1], channels, *shape, on_table=record(dec3), adapt=adapt)
    assert np.array_equal(got, x.numpy())
    one = wf.encode_streams(m, x[2:], [1], adapt=adapt)  # a batch of one tile: the same bytes
    assert one[0][0] == out[1][0]
    wf.decode_streams(m, [out[1][0]], [1], channels, *shape, on_table=record(dec1), adapt=adapt)
    assert enc.keys() == dec3.keys() and len(enc) == 3 * channels * shape[0] * shape[1]
    assert all(np.array_equal(enc[k], dec3[k]) for k in enc)
    assert all(np.array_equal(enc[(2, *k[1:])], v) for k, v in dec1.items())


@pytest.mark.parametrize("surprise, adapt", [(False, 0), (True, 1), (True, 2), (True, 3), (True, 4), (True, 5),
                                             ("heads", 5)])
def test_tables_equal_across_bands_threads_and_numba(surprise, adapt, monkeypatch):
    """A tile taller than a band: the encoder's bands (crops of the rows above) and the
    decoder's windows, at 1 and 2 threads, with and without the compiled kernels (engines 3
    to 5: each band's regions with their own offsets); with the surprise, and with channel
    heads too."""
    m = set_exact(headed() if surprise == "heads" else surprising() if surprise else tiny(3), True)
    monkeypatch.setattr(wf, "SCALE_MIN_PIXELS", 1)
    monkeypatch.setattr(wf, "REGION_MIN_PIXELS", 1)
    monkeypatch.setattr(wf, "REGION_WIDTH", 2)
    monkeypatch.setattr(wf, "_golomb_bits", lambda *a: 0.0)  # engines 4 and 5: corrections free, so regions keep them
    if adapt:
        encode_streams, decode_streams = (partial(f, adapt=adapt) for f in (wf.encode_streams, wf.decode_streams))
    else:
        encode_streams, decode_streams = wf.encode_streams, wf.decode_streams
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.integers(0, 256, (2, 3, wf.BAND + 6, 4)))
    enc, dec = {}, {}
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        out = encode_streams(m, x, [2], on_table=record(enc))
        torch.set_num_threads(2)
        kernel = mixture._KERNEL[:]
        mixture._KERNEL[:] = [None]  # the numpy references
        monkeypatch.setattr(engine_module, "_COUPLE", [None])
        monkeypatch.setattr(engine_module, "_KERNEL", [None])
        try:
            got = decode_streams(m, [out[0][0]], [2], 3, wf.BAND + 6, 4, on_table=record(dec))
        finally:
            mixture._KERNEL[:] = kernel
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(got, x.numpy())
    assert enc.keys() == dec.keys() and all(np.array_equal(enc[k], dec[k]) for k in enc)
    if adapt >= 3:  # the first band's regions took offsets of their own (the second's, 6 x 2, too few pixels)
        steps = wf._split_offsets(out[0][0], adapt, 3, m.config.components, 2, wf.BAND + 6, 4)[0]
        assert steps[:, 0].any() and not np.array_equal(steps[:, 0, 0], steps[:, 0, 1])


def test_scale_offsets_follow_the_models_scales(monkeypatch):
    """Engine 1: the encoder's offsets undo a change of the model's log scales (0.4 smaller
    log scales, 0.4 larger offsets, to the grid's 0.05 and the sample's noise), give a smaller
    stream than engine 0's, sit at the stream's start, and both sides see the same tables
    and the pixels come back; a stream cut inside its offsets is refused."""
    from arcodec.errors import FormatError

    x = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (2, 3, 9, 12)))
    small = tiny(3)
    assert not wf.choose_scale_offsets(wf.engine(small), x.numpy()).any()  # too few pixels to search
    monkeypatch.setattr(wf, "SCALE_MIN_PIXELS", 1)

    def moved(shift):
        m = tiny(3)
        with torch.no_grad():
            for lay in m.head_layout():
                m.out.conv.bias[slice(*lay["log_scales"])] += shift
        return set_exact(m, True)

    m = moved(-1.3)  # far sharper than these pixels want
    steps = wf.choose_scale_offsets(wf.engine(m), x[:1].numpy())
    chosen = steps * wf.SCALE_UNIT / 4096.0
    other = moved(-0.9)
    other_chosen = wf.choose_scale_offsets(wf.engine(other), x[:1].numpy()) * wf.SCALE_UNIT / 4096.0
    assert np.abs(chosen - other_chosen - 0.4).max() <= 0.1
    plain = [p for p, _ in wf.encode_streams(m, x, [1, 1])]
    enc, dec = {}, {}
    adapted = [p for p, _ in wf.encode_streams(m, x, [1, 1], on_table=record(enc), adapt=True)]
    assert sum(map(len, adapted)) < sum(map(len, plain))
    assert np.frombuffer(adapted[0][:3], dtype=np.int8).tolist() == steps.tolist()
    got = wf.decode_streams(m, adapted, [1, 1], 3, 9, 12, on_table=record(dec), adapt=True)
    assert np.array_equal(got, x.numpy())
    assert enc.keys() == dec.keys() and all(np.array_equal(enc[k], dec[k]) for k in enc)
    with pytest.raises(FormatError, match="shorter than its scale offsets"):
        wf.decode_streams(m, [adapted[0][:2]], [1], 3, 9, 12, adapt=True)


def stream_offsets(payload: bytes, components: int) -> np.ndarray:
    """The stream's mixture offsets (3, 2, M) that a colour payload of engine 2, 4 or 5 starts
    with (after its byte 1)."""
    return np.frombuffer(payload[1: 1 + 6 * components], dtype=np.int8).astype(np.int64).reshape(3, 2, components)


def moved_mixtures():
    """A tiny colour model whose mixtures were moved (one component's logit up, every log
    scale down), in the exact engine: what offsets have to undo."""
    m = tiny(3)
    with torch.no_grad():
        for lay in m.head_layout():
            m.out.conv.bias[slice(*lay["log_scales"])] -= 1.3
            m.out.conv.bias[lay["logits"][0]] += 3.0
    return set_exact(m, True)


def test_mixture_offsets_beat_scale_offsets_and_decode(monkeypatch):
    """Engine 2: on a model whose mixtures were moved (one component's logit up, every log
    scale down), the encoder's per-component offsets give a smaller stream than engine 1's
    per-channel scale offsets and than none; the stream starts with 1 and its 2 C M signed
    bytes, both sides see the same tables and the pixels come back; a stream too small to
    search starts with 0 alone; cut or unknown offsets are refused with a clear error."""
    from arcodec.errors import FormatError

    rng = np.random.default_rng(5)
    x = torch.from_numpy((rng.uniform(40, 200, (2, 1, 1, 1)) + rng.normal(0, 8, (2, 3, 30, 32))).round().clip(0, 255))
    x = x.long()
    m = moved_mixtures()
    small = wf.encode_streams(m, x[:1], [1], adapt=2)[0][0]
    assert small[:1] == b"\x00"  # too few pixels to search: no offsets
    assert np.array_equal(wf.decode_streams(m, [small], [1], 3, 30, 32, adapt=2), x[:1].numpy())
    monkeypatch.setattr(wf, "SCALE_MIN_PIXELS", 1)
    steps = wf.choose_mixture_offsets(wf.engine(m), x[:1].numpy())
    assert steps.shape == (3, 2, 3) and steps.any()
    sizes = {a: sum(len(p) for p, _ in wf.encode_streams(m, x, [1, 1], adapt=a)) for a in (0, 1)}
    enc, dec = {}, {}
    adapted = [p for p, _ in wf.encode_streams(m, x, [1, 1], on_table=record(enc), adapt=2)]
    assert sum(map(len, adapted)) < sizes[1] < sizes[0]
    assert adapted[0][:1] == b"\x01"
    assert np.frombuffer(adapted[0][1:19], dtype=np.int8).tolist() == steps.ravel().tolist()
    got = wf.decode_streams(m, adapted, [1, 1], 3, 30, 32, on_table=record(dec), adapt=2)
    assert np.array_equal(got, x.numpy())
    assert enc.keys() == dec.keys() and all(np.array_equal(enc[k], dec[k]) for k in enc)
    for bad, message in ((b"", "without its mixture offsets"), (adapted[0][:10], "shorter than its mixture offsets"),
                         (b"\x02" + adapted[0][1:], "of kind 2")):
        with pytest.raises(FormatError, match=message):
            wf.decode_streams(m, [bad], [1], 3, 30, 32, adapt=2)
        with pytest.raises(FormatError, match=message):
            wf.room(m, bad, 1, 3, 30, 32, adapt=2)


def smooth_and_noisy(monkeypatch):
    """(x (1, 3, h, w), h, w): a tile whose left 16 columns are smooth and the rest noisy, with
    regions of 16 columns (24 x 16, 24 x 16 and 24 x 8, the last under REGION_MIN_PIXELS) and
    offsets searched on streams of any size."""
    monkeypatch.setattr(wf, "REGION_WIDTH", 16)
    monkeypatch.setattr(wf, "REGION_MIN_PIXELS", 300)
    monkeypatch.setattr(wf, "SCALE_MIN_PIXELS", 1)
    rng = np.random.default_rng(6)
    h, w = 24, 40
    x = rng.uniform(60, 190, (1, 3, 1, 1)) + rng.normal(0, 1.5, (1, 3, h, w))
    x[..., 16:] += rng.normal(0, 25, (1, 3, h, w - 16))
    return torch.from_numpy(x.round().clip(0, 255)).long(), h, w


def test_regions_take_their_own_offsets_and_decode(monkeypatch):
    """Engine 3: on a model whose mixtures were moved, a tile whose left half is smooth and
    right half noisy gets offsets a region (REGION_WIDTH columns of a band) that differ
    between the halves, a smaller stream than engine 2's one set for the tile, and both sides
    see the same tables; a region of fewer than REGION_MIN_PIXELS pixels takes none (its byte
    0), as does a stream whose regions all save too little to pay for their bytes (a byte 0
    alone); cut or unknown offsets are refused by the decoder and by ``room``."""
    from arcodec.errors import FormatError

    x, h, w = smooth_and_noisy(monkeypatch)
    m = moved_mixtures()
    M = m.config.components
    two = wf.encode_streams(m, x, [1], adapt=2)[0][0]
    enc, dec = {}, {}
    three = wf.encode_streams(m, x, [1], on_table=record(enc), adapt=3)[0][0]
    assert len(three) < len(two)
    steps, rest = wf._split_offsets(three, 3, 3, M, 1, h, w)
    assert steps.shape == (1, 1, 3, 3, 2, M)
    assert steps[0, 0, 0].any() and steps[0, 0, 1].any() and not steps[0, 0, 2].any()
    assert not np.array_equal(steps[0, 0, 0], steps[0, 0, 1])
    assert three[:2] == b"\x01\x01" and three[2 + 2 * 3 * M] == 1 and three[3 + 4 * 3 * M] == 0
    assert len(three) - len(rest) == 1 + 2 * (1 + 2 * 3 * M) + 1
    got = wf.decode_streams(m, [three], [1], 3, h, w, on_table=record(dec), adapt=3)
    assert np.array_equal(got, x.numpy())
    monkeypatch.setattr(wf, "REGION_SAMPLES", 200)  # sampled regions: the same draws for the tile in a batch
    alone = wf.encode_streams(m, x, [1], adapt=3)[0][0]
    assert [p for p, _ in wf.encode_streams(m, torch.cat([x.flip(3), x]), [1, 1], adapt=3)][1] == alone
    monkeypatch.setattr(wf, "REGION_SAMPLES", 4096)
    assert enc.keys() == dec.keys() and all(np.array_equal(enc[k], dec[k]) for k in enc)
    monkeypatch.setattr(wf, "REGION_MIN_PIXELS", 10**6)
    none = wf.encode_streams(m, x, [1], adapt=3)[0][0]
    assert none[:1] == b"\x00" and np.array_equal(wf.decode_streams(m, [none], [1], 3, h, w, adapt=3), x.numpy())
    for bad, message in ((b"", "without its mixture offsets"), (three[:30], "shorter than its mixture offsets"),
                         (three[:1 + 2 * (1 + 2 * 3 * M)], "without its mixture offsets"),
                         (b"\x02" + three[1:], "regions' offsets are of kind 2"),
                         (three[:1] + b"\x03" + three[2:], "mixture offsets are of kind 3")):
        with pytest.raises(FormatError, match=message):
            wf.decode_streams(m, [bad], [1], 3, h, w, adapt=3)
        with pytest.raises(FormatError, match=message):
            wf.room(m, bad, 1, 3, h, w, adapt=3)


def test_engine_parameters_from_windows_equal_the_full_pass_in_any_precision():
    m = tiny(3)
    x = torch.randint(0, 256, (2, 3, 8, 9))
    m.calibrate(x)
    eng = LocalEngine(m)
    x = x.numpy()
    full = eng.params(x, 0, 8)
    assert full.dtype == np.int64 and full.shape == (2, 8, 9, m.n_params)
    assert np.array_equal(full, np.concatenate([eng.params(x, 0, 5), eng.params(x, 5, 8)], axis=1))
    h = m.horizon
    xpad = np.pad(eng.input_units(x), ((0, 0), (0, 0), (h, 0), (h, h)))
    r, c = 6, 2
    win = xpad[:, :, r: r + h + 1, c: c + 2 * h + 1].copy()
    win[:, :, h, h:] = 77.0  # what the mask hides does not matter
    assert np.array_equal(eng.params_at(win), full[:, r, c])
    for layer in [eng.first, eng.head, *[l for b in eng.blocks for l in b]]:  # exact in the product's type
        bound = np.abs(layer.wt).sum(0).max() * (255 if layer is eng.first else ACT_MAX)
        assert bound < (2**24 if layer.dtype == np.float32 else 2**53)


def test_fused_requantisation_equals_numpys_steps(monkeypatch):
    """The compiled requantisation (one pass: + bias, times the multiplier, rounded half up,
    clamped; a residual block's sum too) gives numpy's integers: on halves, where rounding
    half up decides, and through the shipped photo model's whole network on a photo-like
    image, element for element."""
    from arcodec.zoo import load_model

    layer = engine_module.IntLayer(np.eye(4), np.zeros(4), 1.0, 1.0, 10, -3, 3)
    layer.wt, layer.mul = np.eye(4), np.full(4, 0.5)  # identity weights, multiplier 0.5
    acc = np.arange(-9.0, 11.0).reshape(5, 4)  # odd sums land on halves
    want = np.clip(np.floor(acc * 0.5 + 0.5), -3, 3)
    assert np.array_equal(layer.requantize(acc.copy()), want)
    t = np.full((5, 4), 2.0)
    layer.lo = layer.hi = None
    x = np.eye(4)[[0, 1, 2, 3, 0]] * np.array([5, -5, 7, -7, 1])[:, None]  # 2.5, -2.5, 3.5, -3.5, 0.5
    assert np.array_equal(layer.add_into(t, x, 0, 6), [[5, 2, 2, 2], [2, 0, 2, 2], [2, 2, 6, 2], [2, 2, 2, 0],
                                                      [3, 2, 2, 2]])  # 2 + 3, 2 - 2, 2 + 4, 2 - 3 -> 0, 2 + 1
    eng = LocalEngine(load_model("photo-rgb").net)
    yy, xx = np.mgrid[0:12, 0:40]
    rng = np.random.default_rng(0)
    x = np.stack([(yy * 9 + xx * 5 + c * 40) % 256 for c in range(3)])[None] + rng.integers(-6, 7, (1, 3, 12, 40))
    x = np.clip(x, 0, 255)
    fast = eng.params(x, 0, 12)
    assert engine_module._KERNEL[0] is not None
    monkeypatch.setattr(engine_module, "_KERNEL", [None])
    assert np.array_equal(eng.params(x, 0, 12), fast)


def test_float32_products_are_exact_when_the_sums_stay_below_2_24(monkeypatch):
    """With int8 weights and 10-bit activations every partial sum stays below 2**24: the
    engine then multiplies in float32, and gets float64's integers whatever the order."""
    import arcodec.codec.engine as engine_module

    monkeypatch.setattr(engine_module, "WEIGHT_MAX", 127)
    monkeypatch.setattr(engine_module, "ACT_MAX", 1023)
    m = tiny(3)
    m.calibrate(torch.randint(0, 256, (2, 3, 8, 9)))
    eng = LocalEngine(m)
    g = np.random.default_rng(0)
    for layer, lo, hi in [(eng.first, -255, 256), *[(l, 0, 1024) for b in eng.blocks for l in b], (eng.head, 0, 1024)]:
        assert layer.dtype == np.float32
        x = g.integers(lo, hi, (400, layer.wt.shape[0]))
        x[0] = hi - 1  # the largest input everywhere
        wide = x.astype(np.float64) @ layer.wt.astype(np.float64)
        assert np.array_equal((x.astype(np.float32) @ layer.wt).astype(np.float64), wide)


def test_engine_follows_the_float_model():
    """Post-training int16 weights and 12-bit activations stay close to the float network."""
    m = tiny(3, steps=20)
    x = torch.randint(60, 200, (4, 3, 10, 12))
    m.calibrate(x)
    eng = LocalEngine(m)
    with torch.no_grad():
        ref = m.raw(x) * 4096.0
    got = torch.from_numpy(eng.params(x.numpy(), 0, 10)).permute(0, 3, 1, 2).double()
    assert (got - ref).abs().mean() < 0.02 * ref.abs().mean()


def test_codec_round_trip_with_a_checkpoint_and_the_scan_in_the_header(tmp_path):
    m = tiny(3)
    path = tmp_path / "local.pt"
    torch.save(checkpoint(m, TrainConfig(arch="local-photo", data="random"), step=6), path)
    rng = np.random.default_rng(5)
    imgs = [rng.integers(0, 256, (11, 7, 3), dtype=np.uint8), rng.integers(0, 256, (5, 3, 3), dtype=np.uint8)]
    enc = encode_images(imgs, names=["a.png", "b.png"], model=str(path))
    header, out = decode_file(enc.data, model=str(path))
    assert header.scan == SCAN_WAVEFRONT and read(enc.data)[0].scan == SCAN_WAVEFRONT
    assert all(np.array_equal(a, b) for a, b in zip(imgs, out))


def test_bits_map_of_a_local_model_adds_up_to_the_payload(tmp_path):
    from arcodec.explore.bitsmap import bits_map

    m = tiny(3)
    path = tmp_path / "local.pt"
    torch.save(checkpoint(m, TrainConfig(arch="local-photo", data="random"), step=6), path)
    img = np.random.default_rng(6).integers(100, 130, (9, 10, 3), dtype=np.uint8)
    bm = bits_map(img, str(path))
    assert bm.bits.shape == img.shape and (bm.bits > 0).all()
    assert abs(bm.total_bits - 8 * bm.payload_bytes) < 8 * 12  # the coder's flush and the band lengths


def test_surprise_grows_from_a_model_without_it_and_moves_the_later_channels():
    """Zero gains: the model it grew from, to the bit; gains: G and B change, R does not;
    causal either way."""
    from arcodec.training.train import load_grown

    base = tiny(3)
    grown = build_model("local-photo", make_config("local-photo", {**TINY, "channels": 3, "surprise": True}))
    load_grown(grown, base.state_dict())
    x = torch.randint(0, 256, (2, 3, 9, 10))
    with torch.no_grad():
        assert torch.equal(grown.objective(x)[1], base.objective(x)[1])
        grown.surprise_gain.fill_(0.3)
        moved = (grown.objective(x)[1] - base.objective(x)[1]).abs().flatten(2).amax(2)  # (B, C)
    assert (moved[:, 0] == 0).all() and (moved[:, 1:] > 1e-3).all()
    assert causality.violations(grown) == []


def test_a_wider_and_deeper_model_grows_from_a_smaller_one_and_starts_as_it():
    """Fine-tuning may enlarge hidden and blocks (and switch on the surprise): the grown
    model computes the smaller one's bits to the bit, the zeros that keep it so learn (their
    gradients are not zero: the new units follow a step later), it stays causal, and its
    engine scales are reset for calibration."""
    from arcodec.training.train import load_grown

    base = tiny(3)
    base.calibrate(torch.randint(0, 256, (4, 3, 9, 10)))
    grown = build_model("local-photo", make_config("local-photo", {**TINY, "channels": 3, "hidden": 20, "blocks": 3,
                                                                   "surprise": True}))
    load_grown(grown, base.state_dict())
    assert (grown.act_max == 0).all()
    x = torch.randint(0, 256, (2, 3, 9, 10))
    with torch.no_grad():
        assert torch.equal(grown.objective(x)[1], base.objective(x)[1])
    grown.objective(x)[0].backward()
    zeros = [grown.blocks[0][0].conv.weight.grad[:12, 12:], grown.out.conv.weight.grad[:, 12:],
             grown.blocks[2][1].conv.weight.grad]
    assert all(float(g.abs().max()) > 0 for g in zeros)
    assert causality.violations(grown) == []
    smaller = build_model("local-photo", make_config("local-photo", {**TINY, "channels": 3, "hidden": 8}))
    with pytest.raises(Exception, match="in the smaller model"):
        load_grown(smaller, base.state_dict())


def test_a_wider_window_grows_from_a_smaller_one_starts_as_it_and_codes():
    """Fine-tuning may widen the window (horizon 3 to 5): the old taps sit in the new
    kernel's bottom rows, centred, the new ones at zero, so the grown model gives every pixel
    the smaller one's probabilities to the bit; the new taps learn, it stays causal, and the
    wavefront coder codes it (its slope grows with the horizon)."""
    from arcodec.training.train import load_grown

    base = tiny(3)
    grown = build_model("local-photo", make_config("local-photo", {**TINY, "channels": 3, "horizon": 5}))
    load_grown(grown, base.state_dict())
    x = torch.randint(0, 256, (2, 3, 9, 13))
    with torch.no_grad():
        assert torch.equal(grown.log_prob_at(grown.raw(x), x), base.log_prob_at(base.raw(x), x))
    (-grown.log_prob_at(grown.raw(x), x).sum()).backward()
    new_taps = (grown.inp.conv.weight.grad * grown.inp.mask)[:, :, :2]  # the two rows above the old window
    assert float(new_taps.abs().max()) > 0
    assert causality.violations(grown) == []
    grown.calibrate(x)
    m = set_exact(grown, True)
    y = torch.from_numpy(np.random.default_rng(3).integers(90, 140, (1, 3, 11, 14)))
    (payload, _), = wf.encode_streams(m, y, [1], adapt=5)
    assert np.array_equal(wf.decode_streams(m, [payload], [1], 3, 11, 14, adapt=5), y.numpy())


def test_surprise_in_integers_follows_the_float_model_and_the_kernel_equals_numpy():
    m = surprising(steps=20)
    x = torch.from_numpy(np.random.default_rng(7).integers(80, 170, (2, 3, 10, 12)))
    m.calibrate(x)
    with torch.no_grad():
        float_bits = float(-m.log_prob_at(m.raw(x), x).sum()) / math.log(2.0)
    (payload, bits), = wf.encode_streams(set_exact(m, True), x, [2])
    assert abs(bits - float_bits) < 0.01 * float_bits
    eng = LocalEngine(m)
    rng = np.random.default_rng(8)
    raw = rng.integers(-(20 << 12), 20 << 12, (300, m.n_params))
    prev = rng.integers(0, 256, (300, 3))
    freq = rng.integers(1, (1 << 24) + 1, (300, 3))
    freq[:6, 0] = [1, 2, (1 << 15) - 1, 1 << 15, (1 << 24) - 255, 1 << 24]  # the logarithm's edges
    rows = rng.integers(0, 300, 120)
    for ch in range(3):
        got = eng.channel_params(raw, prev, ch, rows, freq[rows])
        want = eng._channel_params_numpy(raw[rows], prev[rows], ch, freq[rows])
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
    u = eng.surprise_units(np.array([1 << 24, 1 << 23, 1]))  # 0, ln 2, ln 2**24 nats (clamped to 16)
    assert u.tolist() == [-10240, 2839 - 10240, 16 * 4096 - 10240]
    with pytest.raises(ValueError, match="frequencies"):
        eng.channel_params(raw, prev, 1)


def test_channel_heads_grow_from_a_model_without_them_and_move_only_the_later_channels():
    """Heads added to a trained model: its bits to the bit; heads that learnt something move
    G and B (and B through G's code length), never R; causal; enlarging a model's heads is
    refused (their inputs sit per channel in the trunk's outputs)."""
    from arcodec.training.train import load_grown

    base = tiny(3, surprise=True)
    grown = build_model("local-photo", make_config("local-photo", {**TINY, "surprise": True, "channel_head": 4}))
    load_grown(grown, base.state_dict())
    x = torch.randint(0, 256, (2, 3, 9, 10))
    with torch.no_grad():
        assert torch.equal(grown.objective(x)[1], base.objective(x)[1])
        assert torch.equal(grown(x), base(x))
    grown.objective(x)[0].backward()
    assert float(grown.head_out.grad.abs().max()) > 0  # the zeros learn
    with torch.no_grad():
        grown.head_out.normal_()
        moved = (grown.objective(x)[1] - base.objective(x)[1]).abs().flatten(2).amax(2)  # (B, C)
        assert (moved[:, 0] == 0).all() and (moved[:, 1:] > 1e-3).all()
        y = x.clone()
        y[:, 1, -1, 6] = 255 - y[:, 1, -1, 6]  # the objective's last pixel's G: its B's head reads it, its R not
        changed = (grown.objective(y)[1] - grown.objective(x)[1])[:, :, -1, -1].abs()  # (B, C)
        assert (changed[:, 0] == 0).all() and (changed[:, 2] > 1e-3).all()
    assert causality.violations(grown) == []
    wider = build_model("local-photo", make_config("local-photo", {**TINY, "surprise": True, "channel_head": 6}))
    with pytest.raises(Exception, match="added to a model without them, not enlarged"):
        load_grown(wider, grown.state_dict())
    with pytest.raises(ValueError, match="0 for one channel"):
        make_config("local-photo", {**TINY, "channels": 1, "channel_head": 4})


def test_channel_heads_in_integers_follow_the_float_model_and_the_kernel_equals_numpy():
    """The engine's heads: its code length within 0.1 % of the float model's (whose heads move
    it by more than 0.4 %), and the coupling kernel's parameters equal numpy's to the
    integer, saturated units and negative sums included; weights whose sums could overflow
    int64 are refused."""
    from arcodec.errors import ModelError

    m = headed()
    x = torch.from_numpy(np.random.default_rng(7).integers(80, 170, (2, 3, 10, 12)))
    m.calibrate(x)
    with torch.no_grad():
        float_bits = float(-m.log_prob_at(m.raw(x), x).sum()) / math.log(2.0)
        out = m.head_out.clone()
        m.head_out.zero_()
        without = float(-m.log_prob_at(m.raw(x), x).sum()) / math.log(2.0)
        m.head_out.copy_(out)
    (payload, bits), = wf.encode_streams(set_exact(m, True), x, [2])
    assert abs(bits - float_bits) < 0.001 * float_bits and abs(without - float_bits) > 0.004 * float_bits
    eng = LocalEngine(m)
    rng = np.random.default_rng(8)
    raw = rng.integers(-(20 << 12), 20 << 12, (300, m.n_params))
    a, b = eng.layout[2]["head"]
    raw[:40, a:b] = 300 << 12  # beyond the units' saturation
    prev = rng.integers(0, 256, (300, 3))
    freq = rng.integers(1, (1 << 24) + 1, (300, 3))
    rows = rng.integers(0, 300, 120)
    rows[:10] = np.arange(10)
    for ch in range(3):
        got = eng.channel_params(raw, prev, ch, rows, freq[rows])
        want = eng._channel_params_numpy(raw[rows], prev[rows], ch, freq[rows])
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
    with torch.no_grad():
        m.head_out[1, 0, 0] = 2.0**20  # a sum that could pass 2**62: refused, not wrapped
    with pytest.raises(ModelError, match="channel 2's head has weights too large"):
        LocalEngine(m)


def test_fine_tuning_may_switch_the_surprise_on_and_enlarge_and_nothing_else(tmp_path):
    from arcodec.errors import ArcodecError
    from arcodec.training.train import _fine_tuned

    path = tmp_path / "local.pt"
    torch.save(checkpoint(tiny(3), TrainConfig(arch="local-photo", data="random"), step=6), path)
    cfg, config, state = _fine_tuned(TrainConfig(arch="", init=str(path)), {"surprise": "true"})
    assert cfg.arch == "local-photo" and config["surprise"] is True and "surprise_gain" not in state
    cfg, config, state = _fine_tuned(TrainConfig(arch="", init=str(path)), {"hidden": 16, "blocks": 2})
    assert (config["hidden"], config["blocks"], config["surprise"]) == (16, 2, False)
    cfg, config, state = _fine_tuned(TrainConfig(arch="", init=str(path)), {"channel_head": 8})
    assert (config["channel_head"], config["hidden"]) == (8, 12)
    with pytest.raises(ArcodecError, match=r"cannot set hidden=8 \(it has 12\) \(fine-tuning may switch on "
                                           r"surprise or enlarge hidden, blocks, channel_head, horizon\)"):
        _fine_tuned(TrainConfig(arch="", init=str(path)), {"hidden": 8, "surprise": True})
    with pytest.raises(ArcodecError, match=r"cannot set components=4 \(it has 3\)"):
        _fine_tuned(TrainConfig(arch="", init=str(path)), {"components": 4})


def test_the_fast_logarithm_table_equals_the_decimal_one():
    """The mantissa table of the integer logarithm (the surprise's, and the exact mixtures'),
    from float64 with decimal at the near-ties, is the correctly rounded decimal table."""
    from arcodec import exact

    assert torch.equal(exact.log_mantissa_table(), exact._log_mantissa_table_decimal())


def test_the_vectorised_gate_tables_equal_their_definition():
    """tanh and sigmoid tables (the gated engines', the coupling's): the array version gives
    the bits of the entry-by-entry definition, signs of zero included."""
    from arcodec import exact

    for fast, ref in zip(exact.gate_tables(), exact._gate_tables_loop()):
        assert torch.equal(fast, ref) and torch.equal(torch.signbit(fast), torch.signbit(ref))


def test_the_integer_logarithm_in_numpy_equals_the_torch_one():
    """:func:`arcodec.fixed.log_q` (the photo coder's surprise, numpy) and
    :func:`arcodec.exact._log_q` (the models' exact mixtures, torch) give the same integers,
    at the mantissa's edges and across the range."""
    from arcodec import exact, fixed

    s = np.random.default_rng(3).integers(1, 2**52, 20000)
    edges = [1, 2, 3, 2**15 - 1, 2**15, 2**15 + 1, 2**16 - 1, 2**16, 2**16 + 1, 2**24, 2**52 - 1]
    s = np.concatenate([s, np.arange(1, 5000), edges])
    for frac in (0, 12, 44):
        assert np.array_equal(fixed.log_q(s, frac), exact._log_q(torch.from_numpy(s), frac).numpy())


def test_engine_from_a_model_file_equals_the_engine_from_the_torch_model(tmp_path):
    """The coder's engine built from the weights file alone (numpy, no torch) and the one
    built from the loaded torch model are the same integers: layers, constants and raw
    parameters, for the shipped photo model and for a model file written by export."""
    from arcodec.codec.engine import LocalWeights
    from arcodec.registry import model_file_bytes
    from arcodec.zoo import ZOO_DIR, load_model

    m = surprising(steps=5)
    m.calibrate(torch.randint(0, 256, (2, 3, 8, 9)))
    path = tmp_path / "m.arcm"
    path.write_bytes(model_file_bytes(m, "m", {}))
    shipped = load_model("photo-rgb")
    pairs = [(LocalWeights.read(path, dataclasses.asdict(m.config)), LocalWeights.of(m)),
             (LocalWeights.read(ZOO_DIR / shipped.card["weights"], shipped.card["config"]),
              LocalWeights.of(shipped.net))]
    assert isinstance(coding(shipped), LocalWeights)
    x = np.random.default_rng(9).integers(0, 256, (2, 3, 11, 13))
    for from_file, from_torch in pairs:
        a, b = from_file.engine, from_torch.engine
        for la, lb in zip([a.first, a.head, *[q for blk in a.blocks for q in blk]],
                          [b.first, b.head, *[q for blk in b.blocks for q in blk]]):
            assert la.dtype == lb.dtype
            assert all(np.array_equal(getattr(la, k), getattr(lb, k)) for k in ("wt", "bias", "mul"))
        assert all(np.array_equal(u, v) for u, v in zip(a._s_gain, b._s_gain))
        assert np.array_equal(a.params(x, 0, 11), b.params(x, 0, 11))


def test_regions_code_their_corrections_from_the_region_above(monkeypatch):
    """Engine 5: on a model whose mixtures were moved, a tile of two bands, smooth on the left
    and noisy on the right all the way down, corrects the stream's offsets (engine 2's bytes)
    in each region as engine 4 does, but stores a region's corrections as their changes from
    those of the region above it (exp-Golomb at GOLOMB_ORDERS), in a smaller stream than
    engine 4's; the bits are ``_corrections_header(..., 5)``'s, both sides see the same
    tables, and a hand-made header reads back: a correction of the first band repeated in the
    second for a flag 1 and codes of zero, a region without corrections for a flag 0."""
    x, h, w = smooth_and_noisy(monkeypatch)
    monkeypatch.setattr(wf, "BAND", 12)
    monkeypatch.setattr(wf, "REGION_MIN_PIXELS", 150)  # regions of 12 x 16 pixels; the last block's (12 x 8) too small
    m = moved_mixtures()
    M = m.config.components
    size = 2 * 3 * M
    two, four = (wf.encode_streams(m, x, [1], adapt=a)[0][0] for a in (2, 4))
    enc, dec = {}, {}
    five = wf.encode_streams(m, x, [1], on_table=record(enc), adapt=5)[0][0]
    assert len(five) < len(four) < len(two) and five[: 1 + size] == two[: 1 + size]
    stream = stream_offsets(five, M)
    steps, rest = wf._split_offsets(five, 5, 3, M, 1, h, w)
    fixes = steps - stream  # (1, 2 bands, 3 blocks, 3, 2, M)
    assert fixes[0, 1].any() and five[1 + size: len(five) - len(rest)] == wf._corrections_header(fixes, h, w, 5)
    got = wf.decode_streams(m, [five], [1], 3, h, w, on_table=record(dec), adapt=5)
    assert np.array_equal(got, x.numpy())
    assert enc.keys() == dec.keys() and all(np.array_equal(enc[k], dec[k]) for k in enc)
    made = np.zeros_like(fixes)
    made[0, :, 1, 2, 1, 0] = -3  # one log scale of the middle region's B, in both bands
    one = "1" + "100" * M + "001000" + "10" * (M - 1)  # the first band's: -3 at order 1 is 001000
    same = "1" + "100" * M + "10" * M  # the second band's: no change
    bits = "0" * 5 + one + "0" * 5 + same
    head = int(bits + "0" * (-len(bits) % 8), 2).to_bytes(-(-len(bits) // 8), "big")
    assert wf._corrections_header(made, h, w, 5) == head
    assert np.array_equal(wf._split_offsets(two[: 1 + size] + head, 5, 3, M, 1, h, w)[0] - stream, made)


def test_exp_golomb_codes_read_back():
    """The signed exp-Golomb codes of engines 4 (order 0) and 5 (orders 1 and 2): order 0 the
    shortest for 0, then 1, -1, 2, ...; a higher order k at least k + 1 bits and its first
    2^k steps of the zigzag all as short; every step a correction can take reads back from
    one run of bits, and ``_golomb_bits`` counts them."""
    assert [wf._golomb(v) for v in (0, 1, -1, 2, -2)] == ["1", "010", "011", "00100", "00101"]
    assert [wf._golomb(v, 2) for v in (0, 1, -1, 2, -2)] == ["100", "101", "110", "111", "01000"]
    values = list(range(-2 * wf.OFFSET_STEPS, 2 * wf.OFFSET_STEPS + 1))
    for order in (0, 1, 2):
        bits = "".join(wf._golomb(v, order) for v in values)
        assert wf._golomb_bits(np.array([values, values]), (order, order)) == 1 + 2 * len(bits)
        bits += "0" * (-len(bits) % 8)
        reader = wf._BitReader(b"\x07" + int(bits, 2).to_bytes(len(bits) // 8, "big"), 1)
        assert [reader.golomb(order) for _ in values] == values and reader.end() == 1 + len(bits) // 8


def test_regions_correct_the_streams_offsets_and_decode(monkeypatch):
    """Engine 4: on a model whose mixtures were moved, a tile whose left half is smooth and
    right half noisy keeps the stream's offsets (engine 2's bytes) and corrects them region
    by region, the halves differently, in a smaller stream than engines 2 and 3 give; the
    corrections are the exp-Golomb bits of ``_corrections_header``; a region of fewer than
    REGION_MIN_PIXELS pixels keeps the stream's offsets and costs no bit, so a stream of small
    tiles is engine 2's bytes; both sides see the same tables; cut, out-of-range or unknown
    offsets are refused by the decoder and by ``room``."""
    from arcodec.errors import FormatError

    x, h, w = smooth_and_noisy(monkeypatch)
    m = moved_mixtures()
    M = m.config.components
    size = 2 * 3 * M
    two, three = (wf.encode_streams(m, x, [1], adapt=a)[0][0] for a in (2, 3))
    enc, dec = {}, {}
    four = wf.encode_streams(m, x, [1], on_table=record(enc), adapt=4)[0][0]
    assert len(four) < len(three) and len(four) < len(two)
    assert four[: 1 + size] == two[: 1 + size] and four[0] == 1  # the stream's offsets, as engine 2's
    stream = stream_offsets(four, M)
    steps, rest = wf._split_offsets(four, 4, 3, M, 1, h, w)
    assert steps.shape == (1, 1, 3, 3, 2, M)
    fixes = steps - stream
    assert fixes[0, 0, 0].any() and fixes[0, 0, 1].any() and not fixes[0, 0, 2].any()
    assert not np.array_equal(steps[0, 0, 0], steps[0, 0, 1])
    assert four[1 + size: len(four) - len(rest)] == wf._corrections_header(fixes, h, w)
    got = wf.decode_streams(m, [four], [1], 3, h, w, on_table=record(dec), adapt=4)
    assert np.array_equal(got, x.numpy())
    assert enc.keys() == dec.keys() and all(np.array_equal(enc[k], dec[k]) for k in enc)
    monkeypatch.setattr(wf, "REGION_MIN_PIXELS", 10**6)
    assert wf.encode_streams(m, x, [1], adapt=4)[0][0] == two
    assert np.array_equal(wf.decode_streams(m, [two], [1], 3, h, w, adapt=4), x.numpy())
    monkeypatch.setattr(wf, "REGION_MIN_PIXELS", 300)
    up = np.zeros((1, 1, 3, 3, 2, M), dtype=np.int64)
    up[0, 0, 0, 0, 0, 0] = 1  # the first region's first logit one step up, nothing else
    bits = "1" + "010" + "1" * (2 * M - 1) + "0" * 5  # its flag and steps, the other channels' flags
    assert wf._corrections_header(up, h, w) == int(bits + "0" * (-len(bits) % 8), 2).to_bytes(-(-len(bits) // 8), "big")
    top = b"\x01" + bytes([127]) * size + wf._corrections_header(up, h, w)  # from the stream's top: past it
    for bad, message in ((b"", "without its mixture offsets"), (four[:1 + size], "shorter than its regions' corrections"),
                         (b"\x02" + four[1:], "mixture offsets are of kind 2"),
                         (top, "move more than 127 steps"),
                         (four[: 1 + size] + b"\x80\x00\x00", "correction is out of range")):
        with pytest.raises(FormatError, match=message):
            wf.decode_streams(m, [bad], [1], 3, h, w, adapt=4)
        with pytest.raises(FormatError, match=message):
            wf.room(m, bad, 1, 3, h, w, adapt=4)
