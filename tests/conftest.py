"""Shared fixtures: a tiny trained model (fast), the shipped model, real or made-up digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from arcodec.training.data import DEFAULT_ROOT

SHARED_MNIST = Path(DEFAULT_ROOT) / "MNIST" / "raw" / "t10k-images-idx3-ubyte"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A 3-layer Gated PixelCNN trained for a few steps on scikit-learn's digits."""
    from arcodec.training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny")
    cfg = TrainConfig(data="digits", steps=12, batch=32, val_every=6, warmup=2, lr=3e-3, threads=1)
    train(cfg, {"hidden": 8, "layers": 3, "head": 16}, out, progress=False)
    return out / "best.pt"


@pytest.fixture(scope="session")
def tiny(tiny_checkpoint):
    from arcodec.zoo import load_model

    return load_model(str(tiny_checkpoint))


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    """Real handwritten digits: MNIST test images when ../shared is there, else all 1,797
    of scikit-learn's digits (test split first) upscaled to 28x28 (both uint8, (N, 28, 28))."""
    if SHARED_MNIST.exists():
        from arcodec.training.data import load_mnist

        return load_mnist("test").numpy()[:, 0]
    from arcodec.training.data import load_digits

    small = torch.cat([load_digits(split) for split in ("test", "val", "train")])[:, 0].float()
    return torch.nn.functional.interpolate(small[:, None], size=(28, 28), mode="bilinear")[:, 0].round().byte().numpy()


@pytest.fixture(scope="session")
def shipped():
    from arcodec.zoo import load_model

    return load_model()
