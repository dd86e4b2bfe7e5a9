"""Data sets as uint8 tensors (N, C, H, W): uint8 in, uint8 out.

Splits (seeded, documented in the README):
* ``mnist`` / ``train``: the first 55,000 images of a fixed permutation (seed 0) of the
  60,000 MNIST training images; ``val``: the other 5,000; ``test``: the 10,000 test images.
* ``digits``: scikit-learn's 8x8 digits scaled to 0..255 (1,797 images): 80/10/10 split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

DEFAULT_ROOT = os.environ.get("ARCODEC_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
SPLIT_SEED = 0
MNIST_VAL = 5000


def _split(n: int, fractions: tuple[float, float]) -> dict[str, np.ndarray]:
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    a = int(round(n * fractions[0]))
    b = a + int(round(n * fractions[1]))
    return {"train": perm[:a], "val": perm[a:b], "test": perm[b:]}


def load_mnist(split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    """MNIST as (N, 1, 28, 28) uint8 through torchvision (``download=True`` fetches it)."""
    from torchvision.datasets import MNIST

    root = root or DEFAULT_ROOT
    try:
        ds = MNIST(root=root, train=split != "test", download=download)
    except RuntimeError as e:
        raise FileNotFoundError(f"MNIST not found under {root} (use --download or --data-root): {e}") from None
    data = ds.data.unsqueeze(1).contiguous()
    if split == "test":
        return data
    perm = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(data)))
    return data[perm[MNIST_VAL:]] if split == "train" else data[perm[:MNIST_VAL]]


def load_digits(split: str) -> torch.Tensor:
    """scikit-learn's 8x8 digits (values 0..16) scaled to 0..255, as (N, 1, 8, 8) uint8."""
    from sklearn.datasets import load_digits as sk_digits

    images = sk_digits().images  # float 0..16
    data = torch.from_numpy(np.round(images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    return data[torch.from_numpy(_split(len(data), (0.8, 0.1))[split])]


DATASETS = {"mnist": load_mnist, "digits": load_digits}


def load_dataset(name: str, split: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}")
    if name == "mnist":
        return load_mnist(split, root, download)
    if name == "digits":
        return load_digits(split)
    raise KeyError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
