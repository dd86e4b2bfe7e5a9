"""The warm-up models: toy data sets, causality, SGD training, exact coding round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import arcodec
from arcodec.models import causality
from arcodec.training.data import dataset_levels, load_dataset
from arcodec.models.heads import nll_bits
from arcodec.models.layers import set_exact
from arcodec.models.made import MADE
from arcodec.models.toy import ArMlp2d
from arcodec.registry import build_model, load_checkpoint, make_config
from arcodec.training.toydata import toy1d_pmf, toy2d_density
from arcodec.training.train import TrainConfig, evaluate_nll, train

TOYS = {"histogram": 1, "ar-mlp-2d": 2, "made-2d": 2}  # arch: columns per sample
SMALL = {"histogram": {}, "ar-mlp-2d": {"hidden": 16, "layers": 1}, "made-2d": {"hidden": 16, "layers": 1}}


def small(arch: str, levels: int = 12, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(arch, make_config(arch, {**SMALL[arch], "levels": levels}))


@pytest.mark.parametrize("name, n, levels, width", [("toy1d", 10_000, 100, 1), ("toy2d", 100_000, 200, 2)])
def test_toy_datasets_shapes_levels_splits(name, n, levels, width):
    splits = {s: load_dataset(name, s) for s in ("train", "val", "test")}
    assert dataset_levels(name) == levels
    assert {s: len(x) for s, x in splits.items()} == {"train": n * 72 // 100, "val": n * 8 // 100, "test": n // 5}
    for x in splits.values():
        assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == (1, 1, width)
        assert int(x.max()) < levels
    every = torch.cat(list(splits.values())).view(-1, width)
    assert len(torch.unique(every, dim=0)) > (20 if width == 1 else 5000)  # a spread, not a constant
    assert torch.equal(load_dataset(name, "test"), splits["test"])  # deterministic


def test_toy_data_follows_its_true_distribution():
    x = load_dataset("toy1d", "train")[:, 0, 0, 0].numpy()
    assert np.abs(np.bincount(x, minlength=100) / len(x) - toy1d_pmf()).max() < 0.01
    d = toy2d_density()
    assert d.shape == (200, 200) and abs(d.sum() - 1.0) < 1e-12 and (d >= 0).all()
    pairs = load_dataset("toy2d", "train")[:, 0, 0].long()
    assert (d[pairs[:, 0], pairs[:, 1]] > 0).all()


@pytest.mark.parametrize("arch", TOYS)
def test_toy_models_are_causal_and_give_full_logits(arch):
    m = small(arch)
    assert causality.violations(m) == []
    x = torch.randint(0, 12, (3, 1, 5, TOYS[arch]))
    assert m(x).shape == (3, 12, 1, 5, TOYS[arch])
    assert m.receptive_field()[0] == 0  # rows are independent samples


def test_second_column_depends_on_the_first():
    for arch in ("ar-mlp-2d", "made-2d"):
        rf = causality.receptive_field(small(arch), 2, 2, 1, 1)
        assert rf[1, 0] > 0 and rf[0].abs().sum() == 0 and rf[1, 1] == 0


def test_a_non_causal_model_is_caught():
    m = small("made-2d")
    for layer in (*m.made.layers, m.made.out):  # MADE without its masks: x1's logits see x1 and x2
        layer.mask.fill_(1.0)
    bad = causality.violations(m)
    assert ((0, 0, 0), (0, 0, 0)) in bad and ((0, 0, 0), (0, 1, 0)) in bad

    class Peeking(ArMlp2d):  # p(x2 | x2): conditions on the value it predicts
        def forward(self, x):
            return super().forward(x.flip(-1))

    peek = Peeking(small("ar-mlp-2d").config)
    assert causality.violations(peek)


def test_made_masks_and_ordering_are_in_the_state_dict():
    made = MADE(3, 5, [16], ordering=[2, 0, 1])
    keys = made.state_dict().keys()
    assert "ordering" in keys and "out.mask" in keys and "layers.0.mask" in keys
    x = torch.randint(0, 5, (4, 3)).float().requires_grad_(True)
    logp = torch.log_softmax(made(x), dim=1)
    assert logp.shape == (4, 5, 3)
    for d, seen in ((2, set()), (0, {2}), (1, {0, 2})):  # generated in the order 2, 0, 1
        (g,) = torch.autograd.grad(logp[0, 0, d], x, retain_graph=True)
        assert set(torch.nonzero(g[0]).flatten().tolist()) <= seen
        assert (g[0, list(seen)] != 0).all()  # and it does see them


def test_made_with_context():
    made = MADE(2, 4, [8], context=3)
    x = torch.randint(0, 4, (6, 2)).float().requires_grad_(True)
    ctx = torch.randn(6, 3, requires_grad=True)
    out = made(x, ctx)
    (gx, gc) = torch.autograd.grad(out[:, :, 0].sum(), (x, ctx))
    assert (gx == 0).all() and (gc != 0).any()  # the first variable sees the context only


@pytest.mark.parametrize("arch", TOYS)
def test_exact_mode_is_on_the_grid_and_close_to_float(arch):
    m = small(arch).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randint(0, 12, (4, 1, 3, TOYS[arch]))
    with torch.no_grad():
        f = m(x)
        e = set_exact(m, True)(x)
        e_row = m(x[:, :, 1:2])  # another crop: the same numbers, bit for bit
    assert e.dtype == torch.float64 and torch.equal(torch.round(e * 4096), e * 4096)
    assert (f.double() - e).abs().max() < 2e-3
    assert torch.equal(e_row, e[:, :, :, 1:2])


def test_sgd_lowers_the_histograms_nll(tmp_path):
    cfg = TrainConfig(arch="histogram", data="toy1d", optimizer="sgd", lr=10.0, steps=30, batch=64,
                      warmup=0, val_every=30, threads=1)
    m0 = build_model("histogram", make_config("histogram", {"levels": 100}))
    assert (m0.theta.theta == 0).all()  # SGD starts from theta = 0: the uniform distribution
    test = load_dataset("toy1d", "test")
    before = evaluate_nll(m0, test)
    assert before == pytest.approx(np.log2(100), abs=1e-5)
    out = train(cfg, {}, tmp_path / "hist", progress=False)
    m, _ = load_checkpoint(out / "best.pt")
    assert evaluate_nll(m, test) < before - 0.5


@pytest.fixture(scope="module")
def toy_checkpoints(tmp_path_factory):
    """Tiny trained checkpoints of the three models (a few steps each)."""
    root = tmp_path_factory.mktemp("toys")
    out = {}
    for arch, data, settings in (("histogram", "toy1d", {}), ("ar-mlp-2d", "toy2d", {"hidden": 16, "layers": 1}),
                                 ("made-2d", "toy2d", {"hidden": 16, "layers": 1})):
        cfg = TrainConfig(arch=arch, data=data, optimizer="sgd" if arch == "histogram" else "adamw",
                          lr=10.0 if arch == "histogram" else 1e-2, steps=20, batch=64, warmup=0,
                          val_every=20, val_limit=500, threads=1)
        out[arch] = train(cfg, settings, root / arch, progress=False) / "best.pt"
    return out


@pytest.mark.parametrize("arch", TOYS)
def test_toy_round_trip_through_the_codec(toy_checkpoints, arch):
    from arcodec.codec.api import encode_images

    data = "toy1d" if arch == "histogram" else "toy2d"
    image = load_dataset(data, "test")[:150, 0, 0, :].numpy()  # (150, W): one sample per row
    path = str(toy_checkpoints[arch])
    enc = encode_images([image], model=path)
    assert enc.data == arcodec.compress(image, model=path)  # deterministic
    back = arcodec.decompress(enc.data, model=path)
    assert back.dtype == np.uint8 and np.array_equal(back.reshape(image.shape), image)
    # the file costs the model's code length plus a bounded overhead (header, CRC, coder flush)
    m = arcodec.load_model(path)
    with torch.no_grad():
        x = torch.from_numpy(image).long().view(-1, 1, 1, image.shape[1])
        exact_bits = float(nll_bits(m.net(x), x).sum())
    assert enc.nll_bits == pytest.approx(exact_bits, rel=1e-5)
    assert enc.nll_bits < 8 * len(enc.data) < enc.nll_bits + 8 * 64
