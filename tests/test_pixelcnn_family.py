"""The PixelCNN family (pixelcnn, stack-pixelcnn, gated-pixelcnn and their options): causal
at init and after training, non-causal ablations caught and refused, exact mode close to
float and independent of batch and crop, decoder steppers equal to the full pass bit for bit,
round trips through the codec. Tiny models only."""

import copy

import numpy as np
import pytest
import torch

from arcodec.models import causality
from arcodec.explore import figures
from arcodec.codec.api import decode_file, encode_images
from arcodec.codec import autoregressive as ar
from arcodec.errors import ModelError
from arcodec import exact
from arcodec.models.heads import nll_bits
from arcodec.models.layers import ChannelNorm, MaskedConv2d, conv_mask, set_exact
from arcodec.registry import architectures, build_model, make_config
from arcodec.training.train import TrainConfig, checkpoint

SMALL = {
    "histogram": {"levels": 20},
    "ar-mlp-2d": {"levels": 20, "hidden": 16},
    "made-2d": {"levels": 20, "hidden": 16},
    "pixelcnn": {"hidden": 4, "blocks": 2, "head": 4, "levels": 4},
    "stack-pixelcnn": {"hidden": 4, "layers": 3, "levels": 4},
    "gated-pixelcnn": {"hidden": 4, "layers": 3, "head": 8, "levels": 4},
    "pixelcnn-made": {"hidden": 4, "blocks": 2, "features": 4, "made_hidden": 8, "levels": 4},
}
VARIANTS = {  # the options of the family, each tiny
    "pixelcnn": ("pixelcnn", SMALL["pixelcnn"]),
    "pixelcnn-rgb-norm": ("pixelcnn", {"channels": 3, "levels": 4, "hidden": 6, "blocks": 2, "head": 6,
                                       "norm": True}),
    "stack-pixelcnn": ("stack-pixelcnn", SMALL["stack-pixelcnn"]),
    "gated-dilated": ("gated-pixelcnn", {**SMALL["gated-pixelcnn"], "layers": 4, "dilation": "1,2"}),
}
CONDITIONAL = ("gated-pixelcnn", {**SMALL["gated-pixelcnn"], "classes": 3})
NON_CAUSAL = {
    "pixelcnn": ("pixelcnn", {**SMALL["pixelcnn"], "causal": False}),
    "pixelcnn-rgb": ("pixelcnn", {**VARIANTS["pixelcnn-rgb-norm"][1], "causal": False}),
    "stack-pixelcnn": ("stack-pixelcnn", {**SMALL["stack-pixelcnn"], "causal": False}),
    "gated-pixelcnn": ("gated-pixelcnn", {**SMALL["gated-pixelcnn"], "causal": False}),
}


def build(arch, settings):
    torch.manual_seed(0)
    return build_model(arch, make_config(arch, settings))


def labels(model, n):
    return torch.arange(n) % model.config.classes if getattr(model.config, "classes", 0) else None


def call(model, x):
    y = labels(model, len(x))
    return model(x) if y is None else model(x, y)


def train_steps(model, steps=4):
    """A few Adam steps on random images: the weights move away from their init."""
    cfg = model.config
    h, w = getattr(model, "causality_shape", (8, 8))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randint(0, cfg.levels, (4, cfg.channels, h, w), generator=g)
        loss = nll_bits(call(model, x), x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def save_checkpoint(model, arch, path):
    torch.save(checkpoint(model, TrainConfig(arch=arch, data="random"), step=4), path)
    return path


CASES = {**{a: (a, SMALL.get(a, {})) for a in architectures("autoregressive")},
         **{f"variant:{k}": v for k, v in VARIANTS.items()},
         "gated-classes": CONDITIONAL}


@pytest.mark.parametrize("case", sorted(CASES))
def test_causal_at_init_and_after_training(case):
    arch, settings = CASES[case]
    m = build(arch, settings)
    assert causality.violations(m) == []
    assert causality.violations(train_steps(m)) == []


@pytest.mark.parametrize("case", sorted(NON_CAUSAL))
def test_non_causal_ablations_are_caught_and_refused(case, tmp_path):
    from arcodec.zoo import load_model

    arch, settings = NON_CAUSAL[case]
    m = train_steps(build(arch, settings), steps=2)
    bad = causality.violations(m)
    assert bad and all(out == inp for out, inp in bad[:3])  # pixel i sees pixel i
    path = save_checkpoint(m, arch, tmp_path / "leaky.pt")
    with pytest.raises(ModelError, match="not causal"):
        load_model(str(path))


@pytest.fixture(scope="module")
def trained():
    return {k: train_steps(build(a, s)) for k, (a, s) in VARIANTS.items()}


@pytest.mark.parametrize("case", sorted(VARIANTS))
def test_exact_mode_close_to_float_and_independent_of_batch_and_crop(case, trained):
    m = trained[case]
    cfg = m.config
    x = torch.randint(0, cfg.levels, (5, cfg.channels, 11, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        f = m(x)
        set_exact(m, True)
        try:
            e = m(x)
            one = torch.cat([m(x[i: i + 1]) for i in range(len(x))])
            bands = {b: torch.cat([lg for _, _, lg in ar.teacher_forced_logits(m, x, band=b)], dim=3)
                     for b in (1, 4)}
        finally:
            set_exact(m, False)
    assert e.dtype == torch.float64 and e.shape == (5, cfg.levels, cfg.channels, 11, 9)
    assert (f.double() - e).abs().max() < 1e-2
    assert torch.equal(torch.round(e * 4096), e * 4096)  # on the grid
    assert torch.equal(e, one)
    for b, got in bands.items():  # the encoder's bands, each from a crop of the rows above
        assert torch.equal(e, got), f"band {b}"


@pytest.mark.parametrize("case", sorted(VARIANTS) + ["gated-classes"])
def test_receptive_field_claim_holds(case, trained):
    m = trained[case] if case in trained else train_steps(build(*CONDITIONAL))
    above, side = m.receptive_field()
    rf = causality.receptive_field(m, 16, 17, 13, 8)
    rows, cols = torch.nonzero(rf, as_tuple=True)
    assert len(rows) and int(rows.min()) >= 13 - above and int((cols - 8).abs().max()) <= side


def test_dilated_gated_model_reaches_as_far_as_it_claims(trained):
    m = trained["gated-dilated"]
    assert m.config.dilations() == (1, 1, 2, 1) and m.receptive_field() == (3 + 1 + 2 + 1,) * 2
    rf = causality.receptive_field(m, 16, 17, 13, 8)
    assert (rf[13 - 7] > 0).any() and (rf[13, 8 - 7] > 0)


@pytest.mark.parametrize("settings", [{"dilation": "1,2,3", "layers": 4}, {"classes": 3}, {"causal": False}])
def test_gated_stepper_equals_full_pass_with_every_option(settings):
    m = set_exact(train_steps(build("gated-pixelcnn", {**SMALL["gated-pixelcnn"], **settings})), True)
    x = torch.randint(0, 4, (3, 1, 8, 9), generator=torch.Generator().manual_seed(3))
    y = labels(m, 3)
    with torch.no_grad():
        full = m(x, y) if y is not None else m(x)
    inc = m.incremental(3, 8, 9, y) if y is not None else m.incremental(3, 8, 9)
    for r in range(8):
        inc.begin_row(x, r)
        for c in range(9):
            assert torch.equal(inc.step(x, r, c), full[:, :, :, r, c])


STEPPED = {  # pixelcnn and stack-pixelcnn options, each tiny, for their own steppers
    "pixelcnn": ("pixelcnn", SMALL["pixelcnn"]),
    "pixelcnn-rgb-norm": VARIANTS["pixelcnn-rgb-norm"],
    "pixelcnn-rgb-mixture": ("pixelcnn", {"channels": 3, "levels": 4, "hidden": 6, "blocks": 1, "head": 6,
                                          "first_kernel": 3, "kernel": 5, "mixture": 2}),
    "pixelcnn-non-causal": NON_CAUSAL["pixelcnn"],
    "stack-pixelcnn": ("stack-pixelcnn", SMALL["stack-pixelcnn"]),
    "stack-pixelcnn-5x5": ("stack-pixelcnn", {**SMALL["stack-pixelcnn"], "first_kernel": 5, "kernel": 5}),
    "stack-pixelcnn-non-causal": NON_CAUSAL["stack-pixelcnn"],
}


def decode_steps(m, x, decoded, full=None, rows=range(0)):
    """Drive m's stepper as the decoder does (begin_row, then one step per channel, the
    channel written after its step) over ``decoded``, whose undecoded sub-pixels are
    anything; assert each channel's logits equal ``full``'s, or (``full`` None: a
    non-causal model, which reads the undecoded pixel) the full pass's on ``decoded`` as
    it is at that step. ``rows``: rows given up front, begin_row only (as the sampler does)."""
    n, C, H, W = x.shape
    inc = m.incremental(n, H, W)
    for r in range(H):
        inc.begin_row(decoded, r)
        if r in rows:
            continue
        for c in range(W):
            for ch in range(C):
                got = inc.step(decoded, r, c)
                with torch.no_grad():
                    want = (m(decoded) if full is None else full)[:, :, ch, r, c]
                assert got.shape == (n, m.config.levels, C)
                assert torch.equal(got[:, :, ch], want), (r, c, ch)
                decoded[:, ch, r, c] = x[:, ch, r, c]


@pytest.mark.parametrize("case", sorted(STEPPED))
def test_pixelcnn_and_stack_steppers_equal_the_full_pass(case):
    m = set_exact(train_steps(build(*STEPPED[case])), True)
    C, K = m.config.channels, m.config.levels
    g = torch.Generator().manual_seed(3)
    for n in (1, 3):
        for h, w in ((4, 6), (1, 7), (6, 1)):
            x = torch.randint(0, K, (n, C, h, w), generator=g)
            with torch.no_grad():
                full = m(x)
            # the decoder's x holds noise where nothing is decoded yet: a causal model never
            # reads it; a non-causal one reads pixel (r, c) at its own step, and must read
            # the decoded pixel at the next
            decoded = torch.randint(0, K, x.shape, generator=g)
            decode_steps(m, x, decoded, full if m.config.causal else None)
            assert torch.equal(decoded, x)


@pytest.mark.parametrize("case", ["pixelcnn", "pixelcnn-rgb-norm", "stack-pixelcnn"])
def test_pixelcnn_and_stack_steppers_start_after_given_rows(case):
    m = set_exact(train_steps(build(*STEPPED[case])), True)
    x = torch.randint(0, 4, (2, m.config.channels, 7, 6), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        full = m(x)
    decoded = x.clone()
    decoded[:, :, 3:] = 0
    decode_steps(m, x, decoded, full, rows=range(3))
    assert torch.equal(decoded, x)


@pytest.mark.parametrize("case", ["pixelcnn", "pixelcnn-rgb-norm", "stack-pixelcnn"])
def test_pixelcnn_and_stack_steppers_decode_like_the_full_pass(case, trained, tmp_path):
    m = trained[case]
    assert hasattr(m, "incremental")
    C = m.config.channels
    x = torch.randint(0, 4, (3, C, 6, 5), generator=torch.Generator().manual_seed(7))
    em = set_exact(copy.deepcopy(m), True)
    seen = {"encoder": []}
    streams = ar.encode_streams(em, x, [2, 1], on_table=lambda a, b, t: seen["encoder"].append(t))
    payloads = [p for p, _ in streams]
    for naive in (False, True):
        tables = seen.setdefault(naive, [])
        out = ar.decode_streams(em, payloads, [2, 1], C, 6, 5, naive=naive,
                                on_table=lambda r, c, ch, t, tables=tables: tables.append(t))
        assert torch.equal(out, x)
    assert np.array_equal(np.concatenate(seen[False]), np.concatenate(seen[True]))
    assert np.array_equal(np.concatenate(seen[False]), np.concatenate(seen["encoder"]))
    path = str(save_checkpoint(m, STEPPED[case][0], tmp_path / f"{case}.pt"))
    img = np.random.default_rng(8).integers(0, 4, (5, 6, 3) if C == 3 else (5, 6), dtype=np.uint8)
    enc = encode_images([img], model=path)
    for naive in (False, True):
        _, (out,) = decode_file(enc.data, model=path, naive=naive)
        assert np.array_equal(out.reshape(img.shape), img)


def test_class_conditional_gated_model():
    arch, settings = CONDITIONAL
    m = build(arch, settings)
    x = torch.randint(0, 4, (2, 1, 6, 5))
    out = m(x, torch.tensor([0, 2]))
    assert out.shape == (2, 4, 1, 6, 5)
    assert torch.equal(out, m(x, torch.eye(3)[[0, 2]]))  # labels or one-hot
    assert not torch.allclose(out, m(x, torch.tensor([1, 2])))  # the label matters
    with pytest.raises(ValueError, match="needs the labels"):
        m(x)
    with pytest.raises(ValueError, match="takes no labels"):
        build(arch, SMALL["gated-pixelcnn"])(x, torch.tensor([0, 1]))
    assert causality.violations(train_steps(m)) == []


@pytest.mark.parametrize("case", sorted(VARIANTS))
def test_codec_round_trip_with_a_tiny_checkpoint(case, trained, tmp_path):
    arch, _ = VARIANTS[case]
    m = trained[case]
    path = str(save_checkpoint(m, arch, tmp_path / f"{case}.pt"))
    rng = np.random.default_rng(4)
    shape = (7, 6, 3) if m.config.channels == 3 else (7, 6)
    img = rng.integers(0, 4, shape, dtype=np.uint8)  # 2-bit pixels: levels=4
    enc = encode_images([img], model=path)
    header, (out,) = decode_file(enc.data, model=path)
    assert header.bit_depth == 2 and 0 < enc.nll_bits
    assert np.array_equal(out.reshape(img.shape), img)


def test_masked_conv_masks_and_buffer():
    a = conv_mask(3, 6, (3, 3), "A", colours=3)
    b = conv_mask(3, 6, (3, 3), "B", colours=3)
    assert a.shape == (6, 3, 2, 3)  # rows below the centre are not stored
    assert (a[:, :, 0] == 1).all() and (a[:, :, 1, 0] == 1).all() and (a[:, :, 1, 2] == 0).all()
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.equal(a[:, :, 1, 1], (groups[:, None] > torch.arange(3)).float())
    assert torch.equal(b[:, :, 1, 1], (groups[:, None] >= torch.arange(3)).float())
    assert (conv_mask(2, 2, (1, 1), "A")[:, :, 0, 0] == 0).all()
    conv = MaskedConv2d(3, 6, 5, "A", colours=3, dilation=2)
    assert torch.equal(conv.state_dict()["mask"], conv_mask(3, 6, (5, 5), "A", colours=3))


def test_dilated_masked_conv_is_causal_and_exact_on_crops():
    torch.manual_seed(0)
    conv = MaskedConv2d(3, 6, 3, "B", colours=3, dilation=2)
    x = torch.randn(1, 3, 9, 9, requires_grad=True)
    out = conv(x)
    assert out.shape == (1, 6, 9, 9)
    (g,) = torch.autograd.grad(out[0, 2, 5, 4], x)  # group 1 at (5, 4): rows 3..5, columns 2..6
    assert torch.nonzero(g[0]).tolist() and all(
        (r, c) < (5, 4) or ((r, c) == (5, 4) and ch <= 1) for ch, r, c in torch.nonzero(g[0]).tolist())
    assert g[0, :, 3, [2, 4, 6]].ne(0).all() and g[0, :, 5, 2].ne(0).all()
    xe = exact.to_grid(torch.randn(2, 3, 9, 9, dtype=torch.float64))
    set_exact(conv, True)
    with torch.no_grad():
        full = conv(xe)
        crop = conv(xe[:, :, 6 - 4: 7])  # row 6 from the 4 rows above it reaches
    assert torch.equal(full[:, :, 6], crop[:, :, -1])


def test_exact_group_norm_is_close_integer_and_crop_free():
    g = torch.Generator().manual_seed(5)
    x = exact.to_grid(torch.randn(3, 12, 4, 5, dtype=torch.float64, generator=g) * 40)
    x[0, :4, 0, 0] = 7.25  # a constant group: (x - mean) = 0
    norm = ChannelNorm(12, colours=3)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0, generator=g)
        norm.bias.uniform_(-1.0, 1.0, generator=g)
        f = norm(x.float()).double()
        set_exact(norm, True)
        e = norm(x)
        part = norm(x[1:, :, 2:, 1:3])
    assert torch.equal(torch.round(e * 4096), e * 4096)
    assert (e - f).abs().max() < 2e-3
    assert torch.equal(e[1:, :, 2:, 1:3], part)
    assert torch.allclose(e[0, :4, 0, 0], norm.bias[:4].double(), atol=1e-3)
    big = exact.to_grid(torch.randn(1, 6, 3, 3, dtype=torch.float64, generator=g) * 500)  # near ACT_LIMIT
    y = exact.group_norm(big, 2, 1e-5)
    ref = ((big.view(1, 2, 3, 3, 3) - big.view(1, 2, 3, 3, 3).mean(2, keepdim=True))
           / torch.sqrt(big.view(1, 2, 3, 3, 3).var(2, unbiased=False, keepdim=True) + 1e-5)).view(1, 6, 3, 3)
    assert (y - ref).abs().max() < 2e-3


def test_boolean_settings_parse_from_strings():
    assert make_config("pixelcnn", {"norm": "true", "causal": "no"}) == make_config("pixelcnn", {"norm": True,
                                                                                                   "causal": False})
    with pytest.raises(ValueError, match="yes/no"):
        make_config("pixelcnn", {"norm": "maybe"})
    assert make_config("gated-pixelcnn", {"dilation": "1, 2"}).dilation == "1,2"
    with pytest.raises(ValueError, match="dilation"):
        make_config("gated-pixelcnn", {"dilation": "0"})
    with pytest.raises(ValueError, match="one channel"):
        make_config("stack-pixelcnn", {"channels": 3})


def test_shipped_gated_model_still_loads():
    from arcodec.zoo import load_model

    m = load_model()
    assert m.net.config.dilation == "1" and m.net.config.classes == 0 and m.net.config.causal
    with torch.no_grad():
        out = m.net(torch.zeros(1, 1, 5, 5, dtype=torch.long))
    assert out.shape == (1, 256, 1, 5, 5) and out.dtype == torch.float64


def test_receptive_field_png(tmp_path, trained):
    m = trained["pixelcnn"]
    path = figures.receptive_field_png(m, tmp_path / "rf.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rf = causality.receptive_field(m, 28, 28, 14, 14).flatten()
    assert (rf[14 * 28 + 14:] == 0).all() and (rf[: 14 * 28 + 14] > 0).any()
