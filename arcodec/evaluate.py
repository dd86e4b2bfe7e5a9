"""Evaluation: NLL bits/dim next to the real size of real files."""

from __future__ import annotations

import time

import torch

from arcodec.data import load_dataset
from arcodec.models.heads import nll_bits
from arcodec.models.layers import set_exact


@torch.no_grad()
def nll_bpd(net: torch.nn.Module, data: torch.Tensor, batch: int = 256) -> float:
    """Mean NLL in bits/dim of ``net`` (its current mode, float or exact) on uint8 data."""
    total = 0.0
    for i in range(0, len(data), batch):
        x = data[i: i + batch]
        total += float(nll_bits(net(x), x).sum())
    return total / data.numel()


def test_nll(name: str, data: str, data_root: str | None = None) -> dict:
    """Test NLL of a zoo model in float and in exact (codec) arithmetic, for its card."""
    from arcodec.zoo import load_model

    m = load_model(name)
    x = load_dataset(data, "test", data_root)
    t = time.perf_counter()
    exact = nll_bpd(m.net, x)
    set_exact(m.net, False)
    try:
        flt = nll_bpd(m.net, x)
    finally:
        set_exact(m.net, True)
    return {"data": data, "test_images": len(x), "test_nll_bpd": round(exact, 5),
            "test_nll_bpd_float": round(flt, 5), "eval_seconds": round(time.perf_counter() - t, 1)}
