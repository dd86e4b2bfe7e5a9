"""Ancestral sampling from autoregressive models, and sample grids as PNG.

Sampling draws every sub-pixel in raster order (row, column, channel) from the model's
distribution given the sub-pixels drawn so far: exact for a causal model. A non-causal
model (the ablation) has learned to read the pixel it predicts, which sampling cannot give
it, so its samples show what its excellent training NLL is worth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


@torch.no_grad()
def sample(model: torch.nn.Module, n: int, height: int, width: int, seed: int = 0,
           y: torch.Tensor | None = None) -> torch.Tensor:
    """n images (n, C, H, W) of integer levels drawn from ``model`` (float path, eval mode).

    Each step runs the model on the rows its receptive field reaches (all rows when the
    model does not say). ``y``: labels for a class-conditional model."""
    cfg = model.config
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, cfg.channels, height, width, dtype=torch.long)
    above = model.receptive_field()[0] if hasattr(model, "receptive_field") else height
    try:
        for r in range(height):
            lo = max(0, r - above)
            for c in range(width):
                for ch in range(cfg.channels):
                    crop = x[:, :, lo: r + 1]
                    logits = model(crop, y) if y is not None else model(crop)
                    p = torch.softmax(logits[:, :, ch, r - lo, c].double(), dim=1)
                    x[:, ch, r, c] = torch.multinomial(p, 1, generator=g)[:, 0]
    finally:
        model.train(was_training)
    return x


def grid_image(x: torch.Tensor, levels: int, rows: int | None = None, pad: int = 2) -> np.ndarray:
    """Images (n, C, H, W) of levels 0..levels-1 tiled into one uint8 picture, values scaled
    to 0..255 for display."""
    n, c, h, w = x.shape
    rows = rows or int(np.ceil(np.sqrt(n)))
    cols = int(np.ceil(n / rows))
    scaled = np.round(x.numpy().astype(np.float64) * (255.0 / (levels - 1))).astype(np.uint8)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = \
            scaled[i].transpose(1, 2, 0)
    return out[:, :, 0] if c == 1 else out


def save_grid(x: torch.Tensor, levels: int, path: str | Path, rows: int | None = None, scale: int = 3) -> Path:
    """A sample grid as a PNG, magnified ``scale`` times (nearest neighbour)."""
    from PIL import Image

    img = Image.fromarray(grid_image(x, levels, rows))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
