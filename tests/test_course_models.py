"""The course's other models: FVSBN, NADE, MADE and the Row LSTM (causal, exact, round trips
through the codec), the gray-conditioned colour PixelCNN-MADE (depends on the gray image and
the causal past only; the two-part code round-trips) and the quantile model (trains, samples,
and is refused by the codec and by NLL evaluation). Tiny models only."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from arcodec.models import causality
from arcodec.codec.api import decode_file, encode_images
from arcodec.codec import autoregressive as ar
from arcodec.errors import ModelError
from arcodec.models.conditioned import bind_gray, to_gray
from arcodec.models.heads import nll_bits
from arcodec.models.layers import set_exact
from arcodec.registry import build_model, make_config
from arcodec.training.train import TrainConfig, checkpoint, evaluate_nll, objective
from stream_helpers import decode_stream, encode_stream

SEQUENCE = {  # raster-sequence models over at most 64 pixels, the Row LSTM on any size
    "fvsbn": {"pixels": 64},
    "nade": {"pixels": 64, "hidden": 12},
    "made": {"pixels": 64, "hidden": 24},
    "row-lstm": {"hidden": 6, "head": 8},
}
MADE_DEEP = {"pixels": 64, "hidden": 40, "layers": 2}  # a hidden-to-hidden layer for the MADE stepper
GRAY = {"hidden": 6, "blocks": 1, "features": 6, "made_hidden": 12, "gray_hidden": 6, "gray_kernel": 3}
QUANTILE = {"hidden": 6, "blocks": 1, "features": 6, "head_hidden": 8, "cosines": 4, "taus": 3}


def build(arch, settings):
    torch.manual_seed(0)
    return build_model(arch, make_config(arch, settings))


def train_steps(model, steps=6, shape=(8, 8)):
    """A few Adam steps of the model's own objective on random images."""
    cfg = model.config
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        x = torch.randint(0, cfg.levels, (4, cfg.channels, *shape), generator=g)
        loss = objective(model, x)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def save(model, path):
    torch.save(checkpoint(model, TrainConfig(arch=model.arch, data="random"), step=6), path)
    return str(path)


@pytest.fixture(scope="module")
def trained():
    return {a: train_steps(build(a, s)) for a, s in SEQUENCE.items()}


@pytest.mark.parametrize("arch", sorted(SEQUENCE) + ["gray-pixelcnn-made", "quantile-pixelcnn"])
def test_causal_at_init_and_after_training(arch):
    settings = {"gray-pixelcnn-made": GRAY, "quantile-pixelcnn": QUANTILE}.get(arch, SEQUENCE.get(arch))
    m = build(arch, settings)
    assert causality.violations(m, 5, 6) == []
    assert causality.violations(train_steps(m), 5, 6) == []


def test_a_leak_in_fvsbn_is_caught():
    m = build("fvsbn", SEQUENCE["fvsbn"])
    m.linear.mask.fill_(1.0)  # every pixel's regression now reads the pixel itself
    bad = causality.violations(m, 4, 4)
    assert bad and ((0, 0, 0), (0, 0, 0)) in bad


@pytest.mark.parametrize("arch", sorted(SEQUENCE))
def test_exact_mode_close_to_float_and_independent_of_batch_and_rows(arch, trained):
    m = trained[arch]
    x = torch.randint(0, 2, (5, 1, 7, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        f = m(x)
        set_exact(m, True)
        try:
            e = m(x)
            one = torch.cat([m(x[i: i + 1]) for i in range(len(x))])
            top = m(x[:, :, :3])  # the encoder's bands and the naive decoder read the top rows
        finally:
            set_exact(m, False)
    assert e.dtype == torch.float64 and e.shape == (5, 2, 1, 7, 9)
    assert (f.double() - e).abs().max() < 1e-2
    assert torch.equal(torch.round(e * 4096), e * 4096)
    assert torch.equal(e, one) and torch.equal(e[:, :, :, :3], top)


def test_sequence_models_refuse_images_longer_than_their_sequence():
    m = build("fvsbn", SEQUENCE["fvsbn"])
    with pytest.raises(ValueError, match="at most 64 pixels"):
        m(torch.zeros(1, 1, 9, 8, dtype=torch.long))


def test_row_lstm_stepper_equals_full_pass(trained):
    m = set_exact(trained["row-lstm"], True)
    try:
        x = torch.randint(0, 2, (3, 1, 6, 7), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            full = m(x)
        inc = m.incremental(3, 6, 7)
        for r in range(6):
            inc.begin_row(x, r)
            for c in range(7):
                assert torch.equal(inc.step(x, r, c), full[:, :, :, r, c])
        # a sampler given the first rows only starts those rows, and steps from row 3 on:
        # the state of the pixels it skipped comes from x
        inc = m.incremental(3, 6, 7)
        for r in range(6):
            inc.begin_row(x, r)
            for c in range(7) if r >= 3 else ():
                assert torch.equal(inc.step(x, r, c), full[:, :, :, r, c]), (r, c)
    finally:
        set_exact(m, False)


@pytest.mark.parametrize("arch", ["fvsbn", "nade", "made", "made-deep"])
def test_sequence_stepper_equals_full_pass(arch, trained):
    """Exact mode: the stepper's logits are the full pass's, bit for bit, at every pixel, for
    several batch sizes and tiles (shorter than the sequence, non-square, the whole of it);
    one stepper serves them all, starting afresh on a new shape or an earlier pixel. Float
    mode: close."""
    m = trained[arch] if arch in trained else train_steps(build("made", MADE_DEEP))
    g = torch.Generator().manual_seed(9)
    shapes = [(1, 5, 7), (3, 7, 9), (3, 7, 9), (2, 8, 8)]
    for exact_mode in (True, False):
        set_exact(m, exact_mode)
        try:
            inc = m.incremental(*shapes[0])
            for b, h, w in shapes:
                x = torch.randint(0, 2, (b, 1, h, w), generator=g)
                with torch.no_grad():
                    full = m(x)
                for r in range(h):
                    inc.begin_row(x, r)
                    for c in range(w):
                        got, want = inc.step(x, r, c), full[:, :, :, r, c]
                        if exact_mode:
                            assert got.dtype == torch.float64 and torch.equal(got, want), (b, h, w, r, c)
                        else:
                            assert (got - want).abs().max() < 1e-4
        finally:
            set_exact(m, False)


@pytest.mark.parametrize("arch", ["fvsbn", "nade", "made"])
def test_codec_decodes_sequence_models_with_their_stepper(arch, trained):
    """The decoder uses the stepper, not the full pass, and both see the encoder's tables."""
    m = set_exact(trained[arch], True)
    try:
        assert not isinstance(ar.make_stepper(m, 3, 1, 6, 7), ar.FullPassStepper)
        x = torch.randint(0, 2, (3, 1, 6, 7), generator=torch.Generator().manual_seed(10))
        encoded = []
        payload, _ = encode_stream(m, x, on_table=lambda a, b, t: encoded.append(t))
        for naive in (False, True):
            decoded = []
            out = decode_stream(m, payload, 3, 1, 6, 7, naive=naive, on_table=lambda r, c, ch, t: decoded.append(t))
            assert torch.equal(out, x)
            assert np.array_equal(np.concatenate(decoded), np.concatenate(encoded))
    finally:
        set_exact(m, False)


@pytest.mark.parametrize("arch", sorted(SEQUENCE))
def test_codec_round_trip_with_a_tiny_checkpoint(arch, trained, tmp_path):
    path = save(trained[arch], tmp_path / f"{arch}.pt")
    rng = np.random.default_rng(4)
    imgs = [rng.integers(0, 2, (7, 6), dtype=np.uint8), (rng.random((8, 8)) < 0.2).astype(np.uint8)]
    enc = encode_images(imgs, model=path, archive=True)
    header, out = decode_file(enc.data, model=path)
    assert header.bit_depth == 1 and enc.nll_bits > 0
    for a, b in zip(imgs, out):
        assert np.array_equal(b[:, :, 0], a)


def test_nll_evaluation_and_codec_agree_for_nade(trained):
    m = trained["nade"]
    x = torch.randint(0, 2, (4, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        set_exact(m, True)
        try:
            bits = nll_bits(m(x), x).sum()
            coded = encode_stream(m, x)[1]
        finally:
            set_exact(m, False)
    assert abs(float(bits) - coded) < 1e-6 * float(bits)


# ------------------------------------------------------------------ gray-conditioned colour

def test_gray_conditioned_model_sees_the_whole_gray_image_and_only_the_causal_colour_past():
    m = train_steps(build("gray-pixelcnn-made", GRAY), shape=(5, 5))
    g = torch.Generator().manual_seed(6)
    xi = torch.randint(0, 4, (1, 3, 5, 5), generator=g)
    gray = to_gray(xi)
    x = xi.float().requires_grad_(True)
    logp = torch.log_softmax(m(x, gray), dim=1)
    for r, c, ch in [(0, 0, 0), (2, 3, 1), (4, 4, 2)]:
        (grad,) = torch.autograd.grad(logp[0, xi[0, ch, r, c], ch, r, c], x, retain_graph=True)
        for ch2, r2, c2 in torch.nonzero(grad[0]).tolist():
            assert (r2, c2, ch2) < (r, c, ch)
    # a change of the gray image below and to the right reaches the first pixel's distribution
    other = gray.clone()
    other[0, 0, 2, 2] = (other[0, 0, 2, 2] + 5) % 10  # within the gray convolutions' reach
    with torch.no_grad():
        assert not torch.equal(m(xi, gray)[:, :, :, 0, 0], m(xi, other)[:, :, :, 0, 0])
        assert torch.equal(m(xi), m(xi, gray))  # without a gray image: the image's own
        # the gray and the first two channels leave one value for the third: it costs ~0 bits
        assert float(nll_bits(m(xi, gray), xi)[:, 2].max()) < 1e-6
        free = build("gray-pixelcnn-made", {**GRAY, "constrain": False})
        assert float(nll_bits(free(xi, gray), xi)[:, 2].min()) > 0.01


def test_two_part_code_round_trips_and_the_codec_refuses_the_conditional_model(tmp_path):
    m = train_steps(build("gray-pixelcnn-made", GRAY), shape=(5, 5))
    with pytest.raises(ModelError, match="grayscale version"):
        encode_images([np.zeros((5, 5, 3), np.uint8)], model=save(m, tmp_path / "cond.pt"))
    x = torch.randint(0, 4, (3, 3, 5, 6), generator=torch.Generator().manual_seed(7))
    bound = set_exact(bind_gray(m, to_gray(x)), True)
    try:
        (payload, bits), = ar.encode_streams(bound, x, [3])
        out = ar.decode_streams(bound, [payload], [3], 3, 5, 6)
    finally:
        set_exact(m, False)
    assert torch.equal(out, x) and 8 * len(payload) >= bits > 0


# ------------------------------------------------------------------------- quantile model

def test_quantile_model_trains_samples_and_has_no_likelihood():
    m = build("quantile-pixelcnn", QUANTILE)
    x = torch.randint(0, 4, (2, 3, 5, 5), generator=torch.Generator().manual_seed(8))
    m.eval()
    loss, per = objective(m, x)
    assert per.shape == x.shape and torch.equal(objective(m, x)[1], per)  # midpoint taus in eval mode
    q = m(x)
    assert q.shape == (2, 4, 3, 5, 5) and (q[:, 1:] - q[:, :-1]).abs().sum() > 0  # varies with tau
    s = m.sample(2, 4, 5, seed=1)
    assert s.shape == (2, 3, 4, 5) and int(s.min()) >= 0 and int(s.max()) <= 3
    assert torch.equal(s, m.sample(2, 4, 5, seed=1))
    with pytest.raises(ValueError, match="defines no likelihood"):
        evaluate_nll(m, x.to(torch.uint8))


def test_quantile_loss_is_smallest_at_the_true_quantile():
    m = build("quantile-pixelcnn", QUANTILE).eval()
    x = torch.tensor([0, 1, 1, 3]).view(4, 1, 1, 1).expand(4, 3, 2, 2).contiguous()
    y = m.embed(x)  # values -1, -1/3, -1/3, 1; their 0.5-quantile is -1/3

    def loss_at(value):
        u = y - value
        return float((u * (0.5 - (u < 0).float())).mean())

    assert loss_at(-1 / 3) < min(loss_at(-1.0), loss_at(0.0), loss_at(1.0))


def test_codec_and_cli_refuse_the_quantile_model(tmp_path):
    from arcodec.cli import main
    from arcodec.zoo import load_model

    path = save(train_steps(build("quantile-pixelcnn", QUANTILE)), tmp_path / "q.pt")
    with pytest.raises(ModelError, match="quantile regression model: it defines no likelihood and cannot compress"):
        load_model(path)
    img = tmp_path / "img.png"
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(img)
    r = CliRunner().invoke(main, ["compress", "-m", path, str(img)], catch_exceptions=False)
    assert r.exit_code == 1 and "cannot compress" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1 and img.exists() and not (tmp_path / "img.png.arc").exists()
