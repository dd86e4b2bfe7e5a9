"""The zoo's cached model is the codec's exact model: float work (the causality check, the
receptive field, the float NLL of an evaluation) runs on its own copy and never switches the
cached model, so a compress call meanwhile codes with the same numbers (issue 16)."""

from __future__ import annotations

import torch
from test_golden import GOLDEN, _digit

import arcodec
from arcodec.evaluation import evaluate
from arcodec.models.causality import receptive_field, violations
from arcodec.models.layers import ExactModule
from arcodec.zoo import load_model


def _exact(net: torch.nn.Module) -> bool:
    return all(m.exact for m in net.modules() if isinstance(m, ExactModule))


def test_float_work_leaves_the_cached_exact_model_alone(monkeypatch):
    img = _digit()
    m = load_model("mnist-gated")
    seen = []  # (forward of the cached net itself?, is the cached net exact at that moment?)
    hook = m.net.register_forward_pre_hook(lambda net, args: seen.append((net is m.net, _exact(m.net))))
    monkeypatch.setattr(evaluate, "load_dataset", lambda *args: torch.from_numpy(img).view(1, 1, 28, 28))
    try:
        assert violations(m.net, 5, 5) == []
        assert receptive_field(m.net, 6, 6, 3, 3).shape == (6, 6)
        record = evaluate.test_nll("mnist-gated", "mnist")
    finally:
        hook.remove()
    assert record["test_images"] == 1 and record["test_nll_bpd"] > 0 and record["test_nll_bpd_float"] > 0
    # the exact NLL comes from the integer engine (built from the weights, never a forward of
    # the cached net), and the float work ran on copies
    assert [own for own, _ in seen].count(True) == 0
    assert all(exact for _, exact in seen)  # never switched, not even meanwhile
    assert load_model("mnist-gated") is m and _exact(m.net)
    assert arcodec.compress(img, "mnist-gated") == (GOLDEN / "mnist-gated.arc").read_bytes()
