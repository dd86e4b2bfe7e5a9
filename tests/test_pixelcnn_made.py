"""PixelCNN-MADE and the discretized logistic mixture head: causal at init and after
training, the head's probabilities right (float and exact) and exact mode independent of
the batch, round trips through the codec. Tiny models only."""

import numpy as np
import pytest
import torch

from arcodec.models import causality
from arcodec.codec.api import decode_file, encode_images
from arcodec.codec import autoregressive as ar
from arcodec.codec import pixelcnn_step
from arcodec import exact
from arcodec.models.heads import DiscretizedLogisticMixture, nll_bits
from arcodec.models.layers import set_exact
from arcodec.registry import build_model, make_config
from arcodec.training.train import TrainConfig, checkpoint
from stream_helpers import decode_stream, encode_stream

MADE_SMALL = {"hidden": 6, "blocks": 1, "first_kernel": 3, "features": 5, "made_hidden": 9, "levels": 4}
MIXTURE_SMALL = {"hidden": 4, "blocks": 1, "head": 4, "first_kernel": 3, "mixture": 2}


def build(arch, settings):
    torch.manual_seed(0)
    return build_model(arch, make_config(arch, settings))


def train_steps(model, steps=4, size=7):
    """A few Adam steps on random images: the weights move away from their init."""
    cfg = model.config
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randint(0, cfg.levels, (2, cfg.channels, size, size), generator=g)
        loss = nll_bits(model(x), x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def round_trip(model, arch, img, tmp_path):
    path = str(tmp_path / f"{arch}.pt")
    torch.save(checkpoint(model, TrainConfig(arch=arch, data="random"), step=4), path)
    enc = encode_images([img], model=path)
    _, (out,) = decode_file(enc.data, model=path)
    assert np.array_equal(out.reshape(img.shape), img)
    return enc


# ----------------------------------------------------------------------------- PixelCNN-MADE

@pytest.mark.parametrize("channels", [1, 3])
def test_pixelcnn_made_is_causal_at_init_and_after_training(channels):
    m = build("pixelcnn-made", {**MADE_SMALL, "channels": channels})
    assert causality.violations(m, 5, 5) == []
    assert causality.violations(train_steps(m), 5, 5) == []


def test_pixelcnn_made_ablation_is_caught():
    m = build("pixelcnn-made", {**MADE_SMALL, "causal": False})
    bad = causality.violations(train_steps(m, steps=2), 4, 4)
    assert bad and any(out[:2] == inp[:2] and inp[2] >= out[2] for out, inp in bad)  # pixel i sees pixel i


def test_pixelcnn_made_shapes_receptive_field_and_exact_mode():
    m = train_steps(build("pixelcnn-made", {**MADE_SMALL, "channels": 3}))
    x = torch.randint(0, 4, (3, 3, 7, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        f = m(x)
        set_exact(m, True)
        try:
            e = m(x)
            one = torch.cat([m(x[i: i + 1]) for i in range(3)])
            bands = torch.cat([lg for _, _, lg in ar.teacher_forced_logits(m, x, band=2)], dim=3)
        finally:
            set_exact(m, False)
    assert f.shape == e.shape == (3, 4, 3, 7, 6) and e.dtype == torch.float64
    assert (f.double() - e).abs().max() < 1e-2
    assert torch.equal(torch.round(e * 4096), e * 4096)
    assert torch.equal(e, one) and torch.equal(e, bands)
    assert m.receptive_field() == (1 + 1, 1 + 1)
    rf = causality.receptive_field(m, 9, 9, 6, 4)
    rows, cols = torch.nonzero(rf, as_tuple=True)
    assert int(rows.min()) >= 6 - 2 and int((cols - 4).abs().max()) <= 2


def test_pixelcnn_made_channel_steps_equal_teacher_forcing():
    """The naive decoder's calls, one per channel with the channels before it filled in and
    the rest zero, give the teacher-forced logits of that channel bit for bit."""
    m = set_exact(train_steps(build("pixelcnn-made", {**MADE_SMALL, "channels": 3})), True)
    x = torch.randint(0, 4, (2, 3, 5, 5), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = m(x)
        step = ar.FullPassStepper(m, 2, 5, 5)
        part = torch.zeros_like(x)
        for r in range(5):
            for c in range(5):
                for ch in range(3):
                    assert torch.equal(step.step(part, r, c)[:, :, ch], full[:, :, ch, r, c])
                    part[:, ch, r, c] = x[:, ch, r, c]


def test_pixelcnn_made_codec_round_trip(tmp_path):
    m = train_steps(build("pixelcnn-made", {**MADE_SMALL, "channels": 3}))
    img = np.random.default_rng(4).integers(0, 4, (6, 5, 3), dtype=np.uint8)  # 2-bit colour
    enc = round_trip(m, "pixelcnn-made", img, tmp_path)
    assert enc.nll_bits > 0


# ------------------------------------------------------------------ logistic mixture head

def params(b, m, c, h, w, seed=0):
    """Mixture parameters on the activation grid, with far tails, tiny and huge scales."""
    g = torch.Generator().manual_seed(seed)
    pi = torch.randn(b, m, c, h, w, generator=g, dtype=torch.float64) * 2
    mu = torch.rand(b, m, c, h, w, generator=g, dtype=torch.float64) * 3 - 1.5
    log_s = torch.rand(b, m, c, h, w, generator=g, dtype=torch.float64) * 14 - 7.5
    return [exact.to_grid(v) for v in (pi, mu, log_s)]


def reference(pi, mu, log_s, levels):
    """p(k) = sum_m pi_m (CDF(upper edge) - CDF(lower edge)) in float64, the tails to +-inf."""
    w = torch.softmax(pi, dim=1).unsqueeze(2)
    s = torch.exp(log_s.clamp(-7, 7)).unsqueeze(2)
    k = torch.arange(levels, dtype=torch.float64).view(1, 1, -1, 1, 1, 1)
    centre = 2 * k / (levels - 1) - 1
    hi = torch.where(k == levels - 1, torch.tensor(1.0, dtype=torch.float64),
                     torch.sigmoid((centre + 1 / (levels - 1) - mu.unsqueeze(2)) / s))
    lo = torch.where(k == 0, torch.tensor(0.0, dtype=torch.float64),
                     torch.sigmoid((centre - 1 / (levels - 1) - mu.unsqueeze(2)) / s))
    return (w * (hi - lo)).sum(1)


@pytest.mark.parametrize("levels", [2, 4, 256])
def test_mixture_head_probabilities(levels):
    head = DiscretizedLogisticMixture(levels, 3)
    p = params(2, 3, 2, 3, 4)
    ref = reference(*p, levels)
    f = head(*p)
    e = set_exact(head, True)(*p)
    assert f.shape == e.shape == (2, levels, 2, 3, 4) and e.dtype == torch.float64
    assert torch.equal(torch.round(e * 4096), e * 4096)  # on the grid
    for out, tol in ((f, 1e-9), (e, 5e-4)):
        assert (out.exp().sum(1) - 1).abs().max() < tol
        assert (out.exp() - ref).abs().max() < tol
        big = ref > 1e-6  # where the probability is not negligible, log p itself is close
        assert (out - ref.log())[big].abs().max() < (1e-6 if out is f else 3e-3)
    assert torch.isfinite(f).all() and (f.exp()[:, [0, -1]] > 0).all()
    assert (e.exp()[:, [0, -1]] > 0).all()  # tails strictly positive (at worst exp(-512))


def test_mixture_head_extreme_parameters():
    """A narrow component far outside [-1, 1] and a very wide one: finite, normalised."""
    head = DiscretizedLogisticMixture(256, 2)
    pi = torch.zeros(1, 2, 1, 1, 2, dtype=torch.float64)
    mu = torch.tensor([[-20.0, 20.0], [0.0, 0.3]], dtype=torch.float64).t().reshape(1, 2, 1, 1, 2)
    log_s = torch.tensor([[-9.0, -9.0], [9.0, -7.0]], dtype=torch.float64).t().reshape(1, 2, 1, 1, 2)
    f = head(pi, mu, log_s)
    e = set_exact(head, True)(pi, mu, log_s)
    for out in (f, e):
        assert torch.isfinite(out).all()
        assert (out.exp().sum(1) - 1).abs().max() < 5e-4
    # the first position: half the mass in each tail
    assert abs(float(e[0, 0, 0, 0, 0].exp()) - 0.5) < 1e-3 and abs(float(e[0, -1, 0, 0, 0].exp()) - 0.5) < 1e-3


def test_mixture_head_exact_is_independent_of_batch_and_gradients_flow():
    head = DiscretizedLogisticMixture(16, 2)
    p = params(5, 2, 3, 2, 3, seed=1)
    exact_head = set_exact(DiscretizedLogisticMixture(16, 2), True)
    full = exact_head(*p)
    one = torch.cat([exact_head(*[v[i: i + 1] for v in p]) for i in range(5)])
    crop = exact_head(*[v[:, :, :, 1:, 1:] for v in p])
    assert torch.equal(full, one) and torch.equal(full[:, :, :, 1:, 1:], crop)
    q = [v.float().requires_grad_(True) for v in p]
    x = torch.randint(0, 16, (5, 3, 2, 3))
    nll_bits(head(*q), x).mean().backward()
    assert all(torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0 for v in q)


def test_pixelcnn_mixture_option():
    cat = build("pixelcnn", {k: v for k, v in MIXTURE_SMALL.items() if k != "mixture"})
    mix = build("pixelcnn", MIXTURE_SMALL)
    assert "mixture" not in dict(cat.named_modules()) and cat.config.mixture == 0
    assert set(cat.state_dict()) == set(mix.state_dict())  # the head adds no weights
    assert mix.head[-1].conv.out_channels == 3 * 2
    x = torch.randint(0, 256, (2, 1, 5, 4))
    out = mix(x)
    assert out.shape == (2, 256, 1, 5, 4) and torch.allclose(out.exp().sum(1), torch.ones(2, 1, 5, 4), atol=1e-4)
    rgb = build("pixelcnn", {**MIXTURE_SMALL, "channels": 3, "hidden": 6, "head": 6, "levels": 4})
    assert causality.violations(rgb, 5, 5) == []
    assert causality.violations(train_steps(rgb), 5, 5) == []
    with pytest.raises(ValueError, match="mixture"):
        make_config("pixelcnn", {"mixture": -1})


def test_pixelcnn_mixture_codec_round_trip(tmp_path):
    m = train_steps(build("pixelcnn", MIXTURE_SMALL))
    x = torch.randint(0, 256, (3, 1, 6, 5), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        f = m(x)
        e = set_exact(m, True)(x)
        one = torch.cat([m(x[i: i + 1]) for i in range(3)])
        set_exact(m, False)
    assert torch.equal(e, one) and (f.double() - e).abs().max() < 2e-2
    img = np.random.default_rng(6).integers(0, 256, (6, 5), dtype=np.uint8)  # 8-bit grayscale
    enc = round_trip(m, "pixelcnn", img, tmp_path)
    assert enc.nll_bits > 0


def test_pixelcnn_made_stepper_sees_the_encoders_tables():
    """The cached stepper (phi once per pixel, the MADE per channel: the compiled one of
    arcodec/codec/pixelcnn_step.py where numba is installed) and the naive decoder both
    reproduce, element for element, the tables of the teacher-forced encoder."""
    m = set_exact(train_steps(build("pixelcnn-made", {**MADE_SMALL, "channels": 3, "levels": 4})), True)
    x = torch.randint(0, 4, (3, 3, 9, 10), generator=torch.Generator().manual_seed(5))
    enc_tables, dec_tables = [], []
    payload, _ = encode_stream(m, x, on_table=lambda r0, r1, w: enc_tables.append(w))
    cached = (type(m.incremental(3, 9, 10)), pixelcnn_step.CompiledStepper)
    assert isinstance(ar.make_stepper(m, 3, 3, 9, 10), cached[pixelcnn_step._TRUNK is not None])
    y = decode_stream(m, payload, 3, 3, 9, 10, on_table=lambda r, c, ch, w: dec_tables.append(w))
    assert torch.equal(x, y)
    assert np.array_equal(np.concatenate(enc_tables), np.concatenate(dec_tables))
    assert torch.equal(decode_stream(m, payload, 3, 3, 9, 10, naive=True), x)
