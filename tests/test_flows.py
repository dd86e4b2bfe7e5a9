"""Flows: the coupling flow's change of variables and pictures; the integer flow's exact
bijection, its translations at encode and decode, and lossless coding through the codec."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arcodec.codec import api as codec
from arcodec.codec.flow import dense_table, window_table
from arcodec.errors import ArcodecError
from arcodec import exact
from arcodec.models.flows import IDF, DiscretizedLogistic, IntegerCoupling
from arcodec.models.layers import set_exact
from arcodec.registry import build_model, make_config
from arcodec.training.train import TrainConfig, checkpoint


def _coupling(**kw):
    torch.manual_seed(0)
    m = build_model("coupling-flow", make_config("coupling-flow", {"hidden": 16, **kw}))
    for p in m.parameters():  # away from the identity start, so the test sees a real transform
        p.data.add_(0.1 * torch.randn_like(p))
    return m.eval()


def _trained_idf(images: np.ndarray, steps: int = 15, **kw) -> IDF:
    """A tiny integer flow trained for a few steps on (N, H, W) uint8 images."""
    torch.manual_seed(0)
    h, w = images.shape[1:]
    m = build_model("idf", make_config("idf", {"hidden": 8, "couplings": 2, "height": h, "width": w, **kw}))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    x = torch.from_numpy(images[:, None]).long()
    for i in range(steps):
        loss, _ = m.objective(x[(i * 16) % len(x):][:16])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def idf_model(digits, tmp_path_factory):
    """(checkpoint path, loaded model) of a tiny integer flow trained on real 28x28 digits."""
    from arcodec.zoo import load_model

    m = _trained_idf(digits[:400], steps=40)
    path = tmp_path_factory.mktemp("idf") / "idf.pt"
    torch.save(checkpoint(m, TrainConfig(arch="idf", data="digits"), step=40), path)
    return path, load_model(str(path))


# ------------------------------------------------------------------- coupling flow


def test_coupling_flow_log_det_is_the_jacobians():
    m = _coupling(height=2, width=3, couplings=3)
    x = torch.rand(1, 1, 2, 3)
    z, logdet = m(x)
    jac = torch.autograd.functional.jacobian(lambda v: m(v.view(1, 1, 2, 3))[0][0], x.view(-1))
    assert torch.allclose(logdet[0], torch.linalg.slogdet(jac)[1], atol=1e-4)
    assert torch.allclose(m.inverse(z), x, atol=1e-5)


def test_coupling_flow_spec_and_bits_per_dim():
    m = _coupling()
    assert len(m.layers) == 4
    for layer in m.layers:
        linears = [mod for mod in layer.mlp if isinstance(mod, torch.nn.Linear)]
        assert len(linears) == 5 and linears[0].in_features == 392 and layer.scale.shape == (784,)
    assert [layer.keep for layer in m.layers] == [0, 1, 0, 1]  # the halves' roles alternate
    k = torch.randint(0, 256, (3, 1, 28, 28))
    x = torch.rand(3, 1, 28, 28)
    stages = m.intermediates(x)
    assert len(stages) == 5 and torch.allclose(stages[-1], m(x)[0])
    assert torch.allclose(m.inverse_intermediates(stages[-1])[-1], stages[0], atol=1e-4)
    # bits/dim = -log2 p(x) / D + log2 256, with x = (k + u) / 256 and u from the fixed eval seed
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        expected = -m.calc_likelihood(m.dequantize(k, g)) / math.log(2) / 784 + 8
        mean, per_dim = m.objective(k)
    assert torch.allclose(per_dim.sum(dim=(1, 2, 3)) / 784, expected, atol=1e-4)
    assert math.isclose(float(mean), float(expected.mean()), rel_tol=1e-5)
    s = m.sample(4, seed=1)
    assert s.shape == (4, 1, 28, 28) and torch.equal(s, m.sample(4, seed=1)) and 0 <= s.min() and s.max() <= 1


def test_flow_pictures(tmp_path, digits):
    from PIL import Image

    from arcodec.explore import flowviz

    m = _coupling()
    a = torch.from_numpy(digits[:6]).unsqueeze(1)
    for path in (flowviz.flow_sample_grid(m, tmp_path / "s.png", n=16),
                 flowviz.flow_layers_figure(m, tmp_path / "l.png"),
                 flowviz.interpolation_figure(m, [(a[0], a[1]), (a[2], a[3]), (a[4], a[5])], tmp_path / "i.png")):
        with Image.open(path) as img:
            assert img.width > 50 and img.height > 50


def test_codec_refuses_the_continuous_flow(tmp_path, digits):
    from arcodec.zoo import load_model

    path = tmp_path / "cf.pt"
    torch.save(checkpoint(_coupling(), TrainConfig(arch="coupling-flow", data="digits"), step=1), path)
    with pytest.raises(ArcodecError, match="continuous flow"):
        codec.compress(digits[0], model=load_model(str(path)))


# ------------------------------------------------------------------- integer flow


def test_idf_is_an_exact_bijection_in_both_modes(digits):
    m = _trained_idf(digits[:64], steps=3)
    x = torch.from_numpy(digits[64:72, None]).long()
    x[0] = torch.randint(0, 256, (1, 28, 28))  # noise: far from what it learned
    x[1] = 255
    for flag in (False, True):
        set_exact(m, flag)
        with torch.no_grad():
            groups = m(x)
            it = iter(groups)
            back = m.inverse(lambda pi, mu, log_s, bound: next(it).z, len(x))
        assert torch.equal(back.long(), x) and all(float(g.z.abs().max()) <= g.bound for g in groups)


def test_alphabet_bounds_hold_for_the_largest_translations():
    cfg = {"hidden": 4, "couplings": 3, "translation": 20, "height": 8, "width": 8}
    m = build_model("idf", make_config("idf", cfg)).eval()
    with torch.no_grad():
        for coupling in m.modules():
            if isinstance(coupling, IntegerCoupling):
                coupling.net.body[-1].conv.bias.fill_(1e3)  # every translation at +20
        x = torch.full((1, 1, 8, 8), 255)
        groups = m(x)
    # 255 is 127 centred; the top latents moved 4 times, the factored-out ones once
    assert m.bounds == [128 + 20 * 4, 128 + 20 * 1]
    assert [int(g.z.max()) for g in groups] == [127 + 20 * 4, 127 + 20 * 1]


def test_window_tables_equal_the_dense_tables():
    g = torch.Generator().manual_seed(0)
    for bound in (3, 50, 384):
        for scale in (0.01, 1.0, 5.0, 100.0, 3000.0):
            for m in (1, 3):
                pi = exact.to_grid(torch.randn(300, m, generator=g).double() * 3)
                mu = exact.to_grid(((torch.rand(300, m, generator=g) * 2 - 1) * bound * 1.3).double())
                log_s = exact.to_grid((torch.randn(300, m, generator=g) + math.log(scale)).double())
                centre, w = window_table(pi, mu, log_s, bound, 47)
                dense = dense_table(pi, mu, log_s, bound)
                h = (w.shape[1] - 2) // 2
                idx = centre.view(-1, 1) + bound - h + torch.arange(2 * h + 1)
                inside = dense.gather(1, idx)
                assert torch.equal(w[:, :-1], inside)
                # the escape bin holds exactly the rest (every bin carries a floor of 1 unit)
                assert torch.equal(w[:, -1] - 1, dense.sum(1) - inside.sum(1) - (dense.shape[1] - 2 * h - 1))
                assert (w > 0).all()
                # and the tables are the float mixture's probabilities, to the tables' precision
                v = torch.arange(-bound, bound + 1, dtype=torch.float64).expand(300, -1)
                p = DiscretizedLogistic.log_prob(v, pi.unsqueeze(2), mu.unsqueeze(2), log_s.unsqueeze(2), bound).exp()
                assert torch.allclose(dense / dense.sum(1, keepdim=True), p, atol=1e-4)


def test_encode_and_decode_see_identical_translations(idf_model, digits, monkeypatch):
    _, m = idf_model
    seen: dict[str, list] = {"encode": [], "decode": []}
    phase = ["encode"]
    original = IntegerCoupling.translation

    def recording(self, a):
        t = original(self, a)
        seen[phase[0]].append((id(self), t.clone()))
        return t

    monkeypatch.setattr(IntegerCoupling, "translation", recording)
    images = list(digits[300:306])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    encs = codec.encode_many(images, model=m)  # one batch of 6
    phase[0] = "decode"
    torch.set_num_threads(2)
    try:
        outs = [codec.decode_many([encs[0].data], model=m)[0]]  # alone,
        outs += codec.decode_many([e.data for e in encs[1:]], model=m, max_tiles=3)  # then batches of 3 and 2
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(imgs[0][:, :, 0], a) for (_, imgs), a in zip(outs, images))
    by_layer: dict[int, list] = {}
    for layer, t in seen["decode"]:
        by_layer.setdefault(layer, []).append(t)
    for layer, t in seen["encode"]:
        decoded = torch.cat(by_layer[layer])
        assert torch.equal(decoded, t)  # the same integers, image for image


def test_digits_round_trip_through_the_codec(idf_model, digits):
    _, m = idf_model
    images = [digits[i] for i in range(400, 440)]
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)  # escapes the windows
    images += [noise, np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)]
    encs = codec.encode_many(images, model=m)
    outs = codec.decode_many([e.data for e in encs], model=m)
    assert all(np.array_equal(imgs[0][:, :, 0], a) for (_, imgs), a in zip(outs, images))
    bpd = sum(8 * len(e.data) for e in encs[:40]) / (40 * 784)
    assert bpd < 8.0  # it compresses real digits, even this barely trained
    data = codec.encode_images(images[:5], names=[f"d{i}" for i in range(5)], model=m).data
    back = codec.decompress_archive(data, model=m)
    assert all(np.array_equal(back[f"d{i}"], images[i]) for i in range(5))
    rgb = np.stack([digits[0], digits[1], noise], axis=2)  # colour: plane by plane
    assert np.array_equal(codec.decompress(codec.compress(rgb, model=m), model=m), rgb)


def test_escape_counts_cover_every_latent_once(idf_model, digits):
    from arcodec.codec import flow as flow_coding

    _, m = idf_model

    def count(images: np.ndarray) -> tuple[int, int]:
        seen = []
        x = torch.from_numpy(images[:, None].astype(np.int64))
        flow_coding.encode_streams(m.net, x, [len(x)], on_escape=lambda g, e, n: seen.append((e, n)))
        return sum(e for e, _ in seen), sum(n for _, n in seen)

    esc_digits, n = count(digits[400:410])
    assert n == 10 * 28 * 28  # every latent of every group, once
    noise = np.random.default_rng(1).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    esc_noise, _ = count(noise)
    assert esc_noise > esc_digits  # the window fits the data the flow saw, not noise


def test_bad_input_and_corrupt_files_are_rejected(idf_model, digits):
    from arcodec.errors import IntegrityError

    _, m = idf_model
    with pytest.raises(ArcodecError, match="whole 28x28 images"):
        codec.compress(np.zeros((30, 28), np.uint8), model=m)
    with pytest.raises(ArcodecError, match="whole 28x28 images"):
        codec.encode_images([digits[0]], model=m, tile=16)
    data = bytearray(codec.compress(digits[5], model=m))
    data[len(data) // 2] ^= 0x5A
    with pytest.raises(ArcodecError):
        codec.decompress(bytes(data), model=m)
    good = codec.compress(digits[5], model=m)
    assert np.array_equal(codec.decompress(good, model=m), digits[5])
    assert issubclass(IntegrityError, ArcodecError)


def test_train_loop_runs_the_flows_objective(tmp_path):
    from arcodec.training.train import train
    from arcodec.zoo import load_model

    cfg = TrainConfig(arch="idf", data="digits", steps=6, batch=32, val_every=3, warmup=1, lr=5e-3, threads=1)
    run = train(cfg, {"hidden": 4, "couplings": 2, "height": 8, "width": 8}, tmp_path / "run", progress=False)
    m = load_model(str(run / "best.pt"))
    from arcodec.training.data import load_digits

    imgs = list(load_digits("test")[:20, 0].numpy())
    outs = codec.decode_many([e.data for e in codec.encode_many(imgs, model=m)], model=m)
    assert all(np.array_equal(o[0][:, :, 0], a) for (_, o), a in zip(outs, imgs))


def test_shipped_integer_flow_round_trips_the_sample_digits():
    from arcodec.evaluation.demo import SAMPLES
    from arcodec.imageio import read_image
    from arcodec.zoo import load_model

    m = load_model("mnist-idf")
    assert m.model_id == 3 and m.net.coding == "flow" and m.net.exact
    samples = sorted(SAMPLES.glob("digit*.png"))
    images = [read_image(p.read_bytes(), str(p))[:, :, 0] for p in samples]
    files = [codec.compress(a, model="mnist-idf") for a in images]
    for a, data in zip(images, files):
        assert np.array_equal(codec.decompress(data), a)  # the header names the model: no --model needed
    png = [_png_bytes(a) for a in images]
    assert sum(len(f) for f in files) < sum(png)  # smaller than PNG, header and CRC included


def _png_bytes(a: np.ndarray) -> int:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", optimize=True)
    return len(buf.getvalue())
