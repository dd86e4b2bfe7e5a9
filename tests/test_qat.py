"""Quantisation-aware training (arcodec.training.qat): the emulation's code length is the
integer engine's, gradients reach every weight through it, and a run with qat=true
validates (and keeps its best checkpoint) by the engine's NLL, not the float one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from arcodec.codec import gated
from arcodec.models.heads import nll_bits
from arcodec.models.layers import float_copy
from arcodec.registry import build_model, make_config
from arcodec.training.data import load_dataset
from arcodec.training.qat import EngineEmulation
from arcodec.training.train import TrainConfig, evaluate_nll, train
from arcodec.zoo import load_model


def rough_digits(n: int = 24) -> torch.Tensor:
    """scikit-learn's digits (levels 0..16) spread over 0..255 and upscaled to 16x16."""
    x = load_dataset("digits", "train")[:n].float() * (255 / 16)
    return torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear").round().clamp(0, 255).long()


def model(seed: int = 0, dilation: str = "1,2"):
    torch.manual_seed(seed)
    net = build_model("gated-pixelcnn", make_config("gated-pixelcnn", {
        "hidden": 8, "layers": 4, "head": 16, "dilation": dilation, "levels": 256}))
    net.calibrate(rough_digits())
    return net.eval()


@pytest.mark.parametrize("dilation", ["1", "1,2"])
def test_the_emulation_gives_the_engines_code_length(dilation):
    net, x = model(dilation=dilation), rough_digits()
    with torch.no_grad():
        engine = nll_bits(gated.engine(net)(x), x).flatten(1).sum(1)
        emulated = nll_bits(EngineEmulation(net)(x), x).flatten(1).sum(1)
        flt = nll_bits(net(x), x).flatten(1).sum(1)
    gap = (engine - emulated).abs().sum() / engine.sum()
    assert gap < 1e-3, gap
    assert (engine - emulated).abs().sum() < 0.2 * (engine - flt).abs().sum()  # closer than the float model


def test_the_shipped_digit_model_is_emulated_far_closer_than_its_float_network(digits):
    net = load_model("mnist-gated").net
    x = torch.from_numpy(digits[:32:4]).long()[:, None]
    with torch.no_grad():
        engine = float(nll_bits(gated.engine(net)(x), x).sum())
        emulated = float(nll_bits(EngineEmulation(net)(x), x).sum())
        flt = float(nll_bits(float_copy(net)(x), x).sum())
    assert abs(emulated / engine - 1) < 2e-3, (emulated, engine, flt)
    assert abs(emulated - engine) < 0.5 * abs(flt - engine), (emulated, engine, flt)


def test_gradients_reach_every_weight_through_the_roundings():
    net, x = model(), rough_digits(4)
    net.train()
    nll_bits(EngineEmulation(net)(x), x).mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_other_models_and_uncalibrated_ones_are_refused():
    net = build_model("pixelcnn", make_config("pixelcnn", {"hidden": 8, "blocks": 1, "levels": 256}))
    with pytest.raises(ValueError, match="gated-pixelcnn"):
        EngineEmulation(net)
    torch.manual_seed(0)
    raw = build_model("gated-pixelcnn", make_config("gated-pixelcnn", {"hidden": 8, "layers": 2, "head": 8}))
    with pytest.raises(ValueError, match="calibrated"):
        EngineEmulation(raw)(rough_digits(1))


def test_a_qat_run_validates_by_the_engines_nll(tmp_path):
    cfg = TrainConfig(data="digits", steps=6, batch=16, val_every=3, warmup=1, lr=3e-3, threads=1, qat=True)
    train(cfg, {"hidden": 8, "layers": 2, "head": 16}, tmp_path, progress=False)
    best = load_model(str(tmp_path / "best.pt")).net
    assert bool((best.act_max > 0).all())
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    val = min(r["val_bpd"] for r in logged if "val_bpd" in r)
    x = load_dataset("digits", "val")
    with torch.no_grad():
        engine = float(nll_bits(gated.engine(best)(x), x).mean())
    assert abs(val / engine - 1) < 2e-3, (val, engine)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["qat"] is True
    flt = evaluate_nll(best, x)
    assert np.isfinite(flt) and flt != pytest.approx(val, rel=1e-6)  # validated through the engine, not in float
