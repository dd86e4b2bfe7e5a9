"""Generation and inference: exact queries equal exact enumeration, approximations get close
to it, inpainting keeps the given half, per-pixel code lengths add up to the file, and the
commands' manners (refusals, no partial outputs)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from arcodec.errors import ArcodecError
from arcodec.explore.bitsmap import bits_map
from arcodec.explore.enumeration import empirical_tv, enumerate_tiny, tv
from arcodec.explore.inpainting import inpaint_bottom, inpaint_top
from arcodec.explore.likelihood import log_joint, raster
from arcodec.explore.model import as_model
from arcodec.explore.queries import first_pixel, given_future, given_past, given_rest, middle_marginal
from arcodec.explore.sampling import ancestral, class_samples, sample
from arcodec.cli import main


@pytest.fixture(scope="module")
def tiny4(tmp_path_factory):
    """A Gated PixelCNN on 4x4 binary digits: 2^16 images, small enough to enumerate."""
    from arcodec.training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny4")
    cfg = TrainConfig(arch="gated-pixelcnn", data="digits-4x4-binary", steps=120, batch=64, val_every=60,
                      warmup=10, lr=5e-3, threads=1)
    train(cfg, {"hidden": 8, "layers": 2, "head": 16, "first_kernel": 3}, out, progress=False)
    return out / "best.pt"


@pytest.fixture(scope="module")
def model4(tiny4):
    return as_model(str(tiny4))


@pytest.fixture(scope="module")
def exact4(model4):
    return enumerate_tiny(model4, 4, 4)


@pytest.fixture(scope="module")
def images4():
    from arcodec.training.data import load_dataset

    return load_dataset("digits-4x4-binary", "test")[:3].long()


def _masks(pos):
    past = np.zeros((4, 4), dtype=bool)
    past.flat[: pos[0] * 4 + pos[1]] = True
    future = np.zeros((4, 4), dtype=bool)
    future.flat[pos[0] * 4 + pos[1] + 1:] = True
    rest = np.ones((4, 4), dtype=bool)
    rest[pos] = False
    return past, future, rest


def test_enumeration_is_a_distribution(exact4):
    assert len(exact4.prob) == 2 ** 16
    assert abs(exact4.log_total) < 1e-6  # the model's probabilities of all images add up to 1
    assert abs(exact4.prob.sum() - 1) < 1e-9


def test_exact_queries_equal_enumeration(model4, exact4, images4):
    pos = (2, 2)
    past, future, rest = _masks(pos)
    none = np.zeros((4, 4), dtype=bool)
    a = first_pixel(model4, (4, 4))
    assert a.exact and tv(a.probs, exact4.conditional((0, 0), none, images4[0])) < 1e-6
    for img in images4:
        c, e = given_past(model4, img, pos), given_rest(model4, img, pos)
        assert c.exact and e.exact
        assert tv(c.probs, exact4.conditional(pos, past, img)) < 1e-6
        assert tv(e.probs, exact4.conditional(pos, rest, img)) < 1e-6
        # the past and the rest are different evidence: the answers differ
        assert tv(exact4.conditional(pos, past, img), exact4.conditional(pos, rest, img)) > 1e-4


def test_approximations_approach_enumeration(model4, exact4, images4):
    pos = (2, 2)
    _, future, _ = _masks(pos)
    b = middle_marginal(model4, pos, (4, 4), samples=512, seed=1)
    assert not b.exact and tv(b.probs, exact4.conditional(pos, np.zeros((4, 4), bool), images4[0])) < 0.04
    for img in images4[:2]:
        d = given_future(model4, img, pos, samples=128, seed=2)
        assert not d.exact and tv(d.probs, exact4.conditional(pos, future, img)) < 0.04
        assert 1 <= d.info["ess"] <= 128


def test_inpainting_keeps_the_given_half_and_follows_the_posterior(model4, exact4, images4):
    img = images4[1]
    f = inpaint_bottom(model4, img, n=600, seed=0)
    assert f.exact and torch.equal(f.samples[:, :, :2], img[None, :, :2].expand(600, -1, -1, -1))
    keys, probs = exact4.half_posterior(img, "top")
    assert empirical_tv(keys, probs, exact4.half_key(f.samples, "bottom")) < 0.12
    keys, probs = exact4.half_posterior(img, "bottom")
    prior = inpaint_top(model4, img, n=600, seed=0, proposals=1)  # ignores the bottom
    sir = inpaint_top(model4, img, n=600, seed=0, proposals=32)
    mh = inpaint_top(model4, img, n=600, seed=0, proposals=1, sweeps=3)
    for r in (prior, sir, mh):
        assert not r.exact and torch.equal(r.samples[:, :, 2:], img[None, :, 2:].expand(600, -1, -1, -1))
    err = {k: empirical_tv(keys, probs, exact4.half_key(r.samples, "top"))
           for k, r in (("prior", prior), ("sir", sir), ("mh", mh))}
    assert err["sir"] < err["prior"] and err["mh"] < err["prior"], err
    assert err["sir"] < 0.15 and 0 < mh.info["acceptance"] <= 1


def test_bits_map_adds_up_to_the_payload(shipped, digits):
    from arcodec.codec import container
    from arcodec.codec.api import encode_images

    bm = bits_map(digits[0], shipped)
    assert bm.bits.shape == (28, 28, 1) and (bm.bits >= 0).all()
    data = encode_images([digits[0]], model=shipped).data  # the codec's file: the same size, the same payload
    assert bm.file_bytes == len(data) and bm.payload_bytes == len(container.read(data)[1])
    assert abs(8 * bm.payload_bytes - bm.total_bits) < 64  # one stream: the coder's overhead only
    # the digit's strokes cost more than the empty border
    assert bm.bits[digits[0] > 0].mean() > 10 * bm.bits[digits[0] == 0].mean()


def test_bits_map_of_a_tiled_image(tiny):
    from arcodec.codec.api import encode_images

    img = np.random.default_rng(0).integers(0, 256, (70, 20), dtype=np.uint8)
    bm = bits_map(img, tiny)  # two tiles of different shape: two streams
    assert abs(8 * bm.payload_bytes - bm.total_bits) < 2 * 64 + 16
    assert bm.file_bytes == len(encode_images([img], model=tiny).data)
    assert bm.total_bits > 6 * img.size  # noise costs nearly 8 bits a pixel


def test_class_conditional_samples_follow_the_label(tmp_path):
    from arcodec.training.train import TrainConfig, train

    cfg = TrainConfig(arch="gated-pixelcnn", data="digits", steps=5, batch=64, val_every=5, warmup=1, lr=3e-3,
                      threads=1)
    run = train(cfg, {"hidden": 8, "layers": 2, "head": 16, "classes": 10}, tmp_path / "run", progress=False)
    ckpt = run / "best.pt"
    m = as_model(str(ckpt))
    assert m.classes == 10
    s = class_samples(m, 2, (8, 8), seed=0)
    assert s.shape == (20, 1, 8, 8)
    a = sample(m, 3, (8, 8), seed=0, y=0)
    assert torch.equal(a, sample(m, 3, (8, 8), seed=0, y=0))
    zeros = torch.zeros(3, dtype=torch.long)  # the labels reach the cached stepper as they reach the full pass
    assert torch.equal(a, ancestral(m, torch.zeros(3, 1, 8, 8, dtype=torch.long), y=zeros, naive=True))
    lab = torch.zeros(3, dtype=torch.long)
    assert not torch.allclose(log_joint(m, a, lab), log_joint(m, a, lab + 7))  # the label reaches the model
    with pytest.raises(ArcodecError, match="give a label"):
        sample(m, 2, (8, 8))
    r = CliRunner().invoke(main, ["sample", "-m", str(ckpt), "-n", "2", "--size", "8x8", "-o", str(tmp_path / "c.png")])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "c.png").size[1] > 0


def test_blind_spot_of_the_plain_pixelcnn_and_none_in_the_gated_one():
    from arcodec.models.causality import receptive_field
    from arcodec.registry import build_model, make_config

    torch.manual_seed(0)
    plain = build_model("pixelcnn", make_config("pixelcnn", {"hidden": 8, "blocks": 3, "head": 8, "levels": 4}))
    gated = build_model("gated-pixelcnn", make_config("gated-pixelcnn", {"hidden": 8, "layers": 4, "head": 8,
                                                                         "levels": 4}))
    rp, rg = receptive_field(plain, 11, 11, 6, 5), receptive_field(gated, 11, 11, 6, 5)
    # above right of the pixel, within reach of both stacks: the plain PixelCNN cannot see it
    assert float(rp[5, 9]) == 0 and float(rp[4, 10]) == 0 and float(rg[5, 9]) > 0 and float(rg[4, 10]) > 0
    assert float(rp[5, 4]) > 0 and float(rg[5, 4]) > 0


def test_commands(model4, tiny4, tmp_path):
    run = CliRunner()
    img = tmp_path / "t.png"
    Image.fromarray(np.array([[0, 1, 1, 0]] * 4, dtype=np.uint8)).save(img)
    out = tmp_path / "q.png"
    r = run.invoke(main, ["query", str(img), "-m", str(tiny4), "-q", "acef", "-n", "3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("a)") and "[exact" in lines[0] and "[exact" in lines[2]
    assert out.read_bytes()[:4] == b"\x89PNG"
    before = out.read_bytes()
    r = run.invoke(main, ["query", str(img), "-m", str(tiny4), "-q", "c", "-o", str(out)])
    assert r.exit_code == 1 and "already exists" in r.output and out.read_bytes() == before
    r = run.invoke(main, ["query", str(img), "-m", str(tiny4), "--pixel", "7,1", "-o", str(tmp_path / "no.png")])
    assert r.exit_code == 1 and "outside" in r.output and not (tmp_path / "no.png").exists()
    r = run.invoke(main, ["query", str(img), "-m", str(tiny4), "-q", "z"])
    assert r.exit_code == 1 and r.output.count("\n") == 1
    r = run.invoke(main, ["sample", "-m", str(tiny4), "--label", "3", "-o", str(tmp_path / "s.png")])
    assert r.exit_code == 1 and "not class-conditional" in r.output and not (tmp_path / "s.png").exists()
    r = run.invoke(main, ["viz", "flow-layers", "-m", str(tiny4), "-o", str(tmp_path / "f.png")])
    assert r.exit_code == 1 and "not a flow" in r.output
    r = run.invoke(main, ["viz", "receptive-field", "-m", str(tiny4), "--size", "6x6", "--pixel", "3,3",
                          "-o", str(tmp_path / "rf.png")])
    assert r.exit_code == 0 and (tmp_path / "rf.png").exists()
    r = run.invoke(main, ["viz", "inpaint", str(img), "-m", str(tiny4), "-n", "2", "-o", str(tmp_path / "i.png")])
    assert r.exit_code == 0 and "ESS" in r.output


@pytest.mark.parametrize("arch, settings", [
    ("gated-pixelcnn", {"hidden": 8, "layers": 3, "head": 8, "levels": 8}),
    ("pixelcnn-made", {"channels": 3, "levels": 4, "hidden": 8, "blocks": 1, "features": 8, "made_hidden": 8}),
])
def test_cached_ancestral_sampling_draws_what_full_passes_draw(arch, settings):
    """The models' cached steppers and the codec's full-pass stepper: same seed, same images."""
    from arcodec.registry import build_model, make_config

    torch.manual_seed(0)
    m = as_model(build_model(arch, make_config(arch, settings)))
    C = m.channels
    drawn = ancestral(m, torch.zeros(6, C, 5, 5, dtype=torch.long), seed=3)
    assert torch.equal(drawn, ancestral(m, torch.zeros(6, C, 5, 5, dtype=torch.long), seed=3, naive=True))
    assert torch.equal(drawn, sample(m.net, 6, (5, 5), seed=3))
    # a prefix is kept, the rest redrawn
    x = torch.full((2, C, 5, 5), 1, dtype=torch.long)
    y = ancestral(m, x, start=7, seed=0)
    assert torch.equal(raster(y)[:, : 7 * C], raster(x)[:, : 7 * C])
    assert not torch.equal(raster(y)[:, 7 * C:], raster(x)[:, 7 * C:])


def test_flow_commands(tmp_path):
    from arcodec.registry import build_model, make_config
    from arcodec.training.train import TrainConfig, checkpoint

    torch.manual_seed(0)
    net = build_model("coupling-flow", make_config("coupling-flow", {"height": 4, "width": 4, "couplings": 2,
                                                                     "hidden": 8, "mlp_layers": 2}))
    ckpt = tmp_path / "flow.pt"
    torch.save(checkpoint(net, TrainConfig(arch="coupling-flow", data="digits"), 0), ckpt)
    run = CliRunner()
    for args in (["sample", "-m", str(ckpt), "-n", "4", "-o", str(tmp_path / "s.png")],
                 ["viz", "flow-layers", "-m", str(ckpt), "-n", "2", "-o", str(tmp_path / "l.png")]):
        r = run.invoke(main, args)
        assert r.exit_code == 0, r.output
        assert Path(args[-1]).read_bytes()[:4] == b"\x89PNG"
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(a)
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(b)
    r = run.invoke(main, ["viz", "interpolate", str(a), str(b), "-m", str(ckpt), "--points", "3",
                          "-o", str(tmp_path / "i.png")])
    assert r.exit_code == 0, r.output
    r = run.invoke(main, ["viz", "interpolate", str(a), "-m", str(ckpt), "-o", str(tmp_path / "j.png")])
    assert r.exit_code == 1 and "pairs" in r.output and not (tmp_path / "j.png").exists()
    r = run.invoke(main, ["query", str(a), "-m", str(ckpt)])
    assert r.exit_code == 1 and "flow" in r.output


def test_compress_explain_draws_the_bits_beside_the_file(tiny, digits, tmp_path):
    src = tmp_path / "d.png"
    Image.fromarray(digits[3]).save(src)
    (tmp_path / "d.png.bits.png").write_bytes(b"old")
    r = CliRunner().invoke(main, ["compress", "-k", "--explain", "-m", tiny.name, str(src)])
    assert r.exit_code == 1 and "already exists" in r.output and not (tmp_path / "d.png.arc").exists()
    r = CliRunner().invoke(main, ["compress", "-k", "-f", "--explain", "-m", tiny.name, str(src)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d.png.bits.png").read_bytes()[:4] == b"\x89PNG"
    from arcodec.codec import container

    payload = len(container.read((tmp_path / "d.png.arc").read_bytes())[1])
    assert f"payload {8 * payload} bits" in r.output
