"""Pictures of the coupling flow (``coupling-flow``): samples, every layer of a sample from
its latent to the image, and straight lines between the latents of two images.

Every function takes the flow (an ``nn.Module`` with ``sample``, ``inverse``,
``inverse_intermediates`` and ``forward``), draws with matplotlib's Agg backend and returns
the path of the PNG it wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from arcodec.explore.plots import pyplot


def _as_images(v: torch.Tensor, shape: tuple[int, int, int]) -> np.ndarray:
    """(n, D) vectors -> (n, H, W) (grayscale) or (n, H, W, C) arrays for imshow."""
    c, h, w = shape
    a = v.detach().reshape(len(v), c, h, w).double().numpy()
    return a[:, 0] if c == 1 else a.transpose(0, 2, 3, 1)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


@torch.no_grad()
def flow_sample_grid(model, path: str | Path, n: int = 100, seed: int = 0, temperature: float = 1.0) -> Path:
    """``n`` samples (z ~ N(0, temperature^2 I) through the inverse) as a grid PNG, each
    image quantized back to its levels: k = floor(x K) clamped to 0..K-1."""
    from arcodec.explore.figures import save_grid

    was_training = model.training
    model.eval()
    try:
        x = model.sample(n, seed=seed, temperature=temperature)
    finally:
        model.train(was_training)
    levels = model.config.levels
    k = torch.floor(x * levels).clamp(0, levels - 1).long()
    return save_grid(k, levels, path)


@torch.no_grad()
def flow_layers_figure(model, path: str | Path, n: int = 10, seed: int = 0) -> Path:
    """An n x (layers + 1) grid: each row one sample, from its latent z (left) through the
    output of every coupling layer, run backwards, to the image x (right). Intermediate
    panels are scaled to their own range; z is shown on [-3, 3], x on [0, 1]."""
    plt = pyplot()
    was_training = model.training
    model.eval()
    try:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, model.config.dims, generator=g)
        stages = model.inverse_intermediates(z)  # [z, ..., x]
    finally:
        model.train(was_training)
    layers = len(stages) - 1
    titles = [f"z = output\nof layer {layers}"] + [f"output of\nlayer {i}" for i in range(layers - 1, 0, -1)] + ["x"]
    shape = model.image_shape
    fig, axes = plt.subplots(n, len(stages), figsize=(1.3 * len(stages), 1.3 * n), dpi=110, squeeze=False)
    try:
        for j, v in enumerate(stages):
            imgs = _as_images(v, shape)
            for i in range(n):
                ax = axes[i, j]
                if j == 0:
                    ax.imshow(imgs[i], cmap="RdBu_r", vmin=-3, vmax=3)
                elif j == layers:
                    ax.imshow(np.clip(imgs[i], 0, 1), cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(imgs[i], cmap="gray")
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(titles[j], fontsize=8)
        fig.suptitle("coupling flow: samples from z through every layer to x", fontsize=9)
        return _save(fig, path)
    finally:
        plt.close(fig)


@torch.no_grad()
def interpolation_figure(model, pairs: list[tuple[torch.Tensor, torch.Tensor]], path: str | Path,
                         points: int = 10) -> Path:
    """One row per pair of uint8 images (C, H, W): ``points`` images on the straight line
    between their latents, z_t = (1 - t) z_a + t z_b, t = 0..1 (the ends are the two images,
    dequantized at the centres of their bins, x = (k + 1/2) / K)."""
    plt = pyplot()
    was_training = model.training
    model.eval()
    levels = model.config.levels
    try:
        rows = []
        for a, b in pairs:
            x = (torch.stack([a, b]).float() + 0.5) / levels
            z, _ = model(x)
            t = torch.linspace(0, 1, points).view(-1, 1)
            rows.append(model.inverse((1 - t) * z[:1] + t * z[1:]).clamp(0, 1))
    finally:
        model.train(was_training)
    shape = model.image_shape
    fig, axes = plt.subplots(len(rows), points, figsize=(1.1 * points, 1.2 * len(rows)), dpi=110, squeeze=False)
    try:
        for i, row in enumerate(rows):
            imgs = _as_images(row, shape)
            for j in range(points):
                ax = axes[i, j]
                ax.imshow(imgs[j], cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"t = {j / max(1, points - 1):.2f}", fontsize=7)
        fig.suptitle("coupling flow: straight lines between the latents of two test images", fontsize=9)
        return _save(fig, path)
    finally:
        plt.close(fig)
