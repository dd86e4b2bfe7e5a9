"""Figures of generation and inference (matplotlib, Agg backend): sample grids, class
grids, the course's query bar charts, inpainting grids, where the bits go, receptive fields.

Every function draws one PNG and writes it through a temporary file and a rename
(:func:`arcodec.imageio.write_atomic`): an existing file is replaced only with
``force=True`` (:func:`save_grid`, the plain PIL grid of the benchmarks, always replaces
it), a failure leaves no partial file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from arcodec.errors import ArcodecError
from arcodec.explore.plots import pyplot

CHANNEL_COLOURS = ("tab:red", "tab:green", "tab:blue")


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
    """A sample grid (:func:`grid_image`) as a PNG, magnified ``scale`` times (nearest
    neighbour), without matplotlib; replaces an existing file."""
    from PIL import Image

    from arcodec.imageio import write_atomic

    img = Image.fromarray(grid_image(x, levels, rows))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path = Path(path)
    write_atomic(path, buf.getvalue(), force=True)
    return path


def check_output(path: str | Path, force: bool) -> Path:
    """Refuse an existing output before any work is done (unless ``force``)."""
    path = Path(path)
    if path.exists() and not force:
        raise ArcodecError(f"{path} already exists (use -f to overwrite)")
    return path


def _save(fig, path: str | Path, force: bool) -> Path:
    from arcodec.imageio import write_atomic

    plt = pyplot()
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    path = Path(path)
    write_atomic(path, buf.getvalue(), force)
    return path


def display(x: torch.Tensor, levels: int) -> np.ndarray:
    """One image (C, H, W) of levels 0..levels-1 as (H, W) or (H, W, 3) uint8 for imshow."""
    return grid_image(x[None].cpu(), levels, rows=1, pad=0)


def _show(ax, img: np.ndarray, title: str | None = None, fontsize: int = 8) -> None:
    ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def samples_figure(x: torch.Tensor, levels: int, path: str | Path, title: str = "", rows: int | None = None,
                   row_labels: list[str] | None = None, force: bool = False) -> Path:
    """A grid of images x (n, C, H, W) (values scaled to 0..255), ``rows`` rows (square by
    default); ``row_labels`` name the rows (the classes of a class-conditional grid)."""
    plt = pyplot()
    n, _, h, w = x.shape
    rows = rows or int(np.ceil(np.sqrt(n)))
    cols = int(np.ceil(n / rows))
    pad = 2
    grid = grid_image(x.cpu(), levels, rows=rows, pad=pad)
    inch = max(2.0, grid.shape[1] / 50) / grid.shape[1]  # 50 grid pixels an inch, at least 2 inches wide
    fig, ax = plt.subplots(figsize=(grid.shape[1] * inch + 0.8, grid.shape[0] * inch + 0.5), dpi=150)
    _show(ax, grid)
    if row_labels:
        ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(rows)])
        ax.set_yticklabels(row_labels, fontsize=8)
        ax.tick_params(length=0)
    ax.set_title(title, fontsize=9)
    return _save(fig, path, force)


def _bars(ax, answer, levels: int, channels: int) -> None:
    """The distribution of one answer: bars over the levels (per-channel marginals for a
    colour pixel), standard errors as error bars where there are some."""
    from arcodec.explore.likelihood import pixel_values

    p = np.asarray(answer.probs, dtype=np.float64)
    floor = 1e-6  # log scale: the tails of a peaked distribution stay visible
    if channels == 1:
        err = None if answer.stderr is None else np.minimum(answer.stderr, p - floor * 0.999).clip(0)
        ax.bar(np.arange(levels), p.clip(floor), width=1.0, bottom=0, color="tab:blue", edgecolor="tab:blue",
               linewidth=0.6, log=True, yerr=err, error_kw={"elinewidth": 0.4, "ecolor": "0.5"})
        ax.set_xlim(-1.5, levels + 0.5)
        best = int(np.argmax(p))
        ax.text(0.98, 0.96, f"mode {best}: {p[best]:.3f}\nmean {float((p * np.arange(levels)).sum()):.1f}",
                transform=ax.transAxes, ha="right", va="top", fontsize=6)
    else:
        vals = pixel_values(levels, channels).numpy()
        width = 0.8 / channels
        for ch in range(channels):
            marg = np.bincount(vals[:, ch], weights=p, minlength=levels)
            ax.bar(np.arange(levels) + (ch - (channels - 1) / 2) * width, marg.clip(floor), width=width,
                   color=CHANNEL_COLOURS[ch % 3], label=f"channel {ch}", log=True)
        ax.set_xticks(range(levels))
        ax.legend(fontsize=5, loc="lower right")
    ax.set_ylim(floor, 1.5)
    ax.set_xlabel("level", fontsize=6)
    ax.tick_params(labelsize=6)
    tag = "exact" if answer.exact else "approx."
    extra = f", ESS {answer.info['ess']:.1f}" if "ess" in answer.info else ""
    ax.set_title(f"{answer.key}) {answer.question}\n[{tag}{extra}]", fontsize=7)


def query_figure(answers: list, image: torch.Tensor, levels: int, path: str | Path, title: str = "",
                 force: bool = False) -> Path:
    """The conditioning image (C, H, W) with the queried pixel outlined, then one bar chart
    per pixel answer (queries a..e) and one sample row per inpainting (f, g)."""
    from arcodec.explore.inpainting import Inpainting
    from arcodec.explore.queries import PixelAnswer

    plt = pyplot()
    pix = [a for a in answers if isinstance(a, PixelAnswer)]
    inp = [a for a in answers if isinstance(a, Inpainting)]
    channels = image.shape[0]
    ncols = max(1, len(pix)) + 1
    nrows = 1 + len(inp)
    fig = plt.figure(figsize=(2.3 * ncols, 2.3 * nrows + 0.4), dpi=130)
    gs = fig.add_gridspec(nrows, ncols)
    ax = fig.add_subplot(gs[0, 0])
    _show(ax, display(image, levels), "conditioning image")
    for r, c in {a.pos for a in pix}:  # the queried pixels
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.2))
    for k, a in enumerate(pix):
        _bars(fig.add_subplot(gs[0, k + 1]), a, levels, channels)
    for k, a in enumerate(inp):
        ax = fig.add_subplot(gs[k + 1, :])
        known = _masked(a.image, levels, a.given)
        row = np.concatenate([known] + [np.full((known.shape[0], 3) + known.shape[2:], 255, np.uint8)]
                             + [np.concatenate([display(s, levels), np.full((known.shape[0], 2) + known.shape[2:], 255,
                                                                             np.uint8)], 1) for s in a.samples], 1)
        _show(ax, row, f"{a.key}) {a.question} [{'exact' if a.exact else 'approx.'}]: given half (left), samples")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path, force)


def _masked(image: torch.Tensor, levels: int, given: str) -> np.ndarray:
    """The image with its unknown half shown in mid grey."""
    img = display(image, levels).copy()
    h = img.shape[0]
    if given == "top":
        img[h // 2:] = 128
    else:
        img[: h // 2] = 128
    return img


def inpainting_figure(results: list, levels: int, path: str | Path, title: str = "", force: bool = False) -> Path:
    """One row per :class:`~arcodec.explore.inpainting.Inpainting`: the image with the unknown half in
    grey, the original, then the samples."""
    plt = pyplot()
    n = max(len(r.samples) for r in results)
    fig, axes = plt.subplots(len(results), n + 2, figsize=(1.0 * (n + 2), 1.15 * len(results) + 0.5), dpi=130,
                             squeeze=False)
    for row, r in zip(axes, results):
        _show(row[0], _masked(r.image, levels, r.given), f"given {r.given}", 6)
        _show(row[1], display(r.image, levels), "original", 6)
        for k, ax in enumerate(row[2:]):
            if k < len(r.samples):
                _show(ax, display(r.samples[k], levels))
            else:
                ax.axis("off")
        row[2].set_title(f"{r.key}) {'exact' if r.exact else 'approx.'}", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path, force)


def bits_figure(bm, path: str | Path, title: str = "", force: bool = False) -> Path:
    """The image beside a heat map of its code length per pixel (bits, channels summed)."""
    plt = pyplot()
    img = bm.image[:, :, 0] if bm.image.shape[2] == 1 else bm.image[:, :, :3]
    if bm.image.shape[2] == 3 and int(bm.image.max()) < 4:  # 2-bit colour: scale for display
        img = (img.astype(np.float64) * 85).astype(np.uint8)
    heat = bm.bits.sum(2)
    fig, (a, b) = plt.subplots(1, 2, figsize=(7.2, 3.6), dpi=130)
    _show(a, img, "image")
    im = b.imshow(heat, cmap="magma", interpolation="nearest")
    b.set_xticks([])
    b.set_yticks([])
    fig.colorbar(im, ax=b, fraction=0.046, pad=0.04, label="bits (-log2 p)")
    sub = bm.image.size
    b.set_title(f"code length: {bm.total_bits:.0f} bits ({bm.total_bits / sub:.3f} bits/dim)\n"
                f"file payload {8 * bm.payload_bytes} bits, whole file {bm.file_bytes} bytes", fontsize=8)
    fig.suptitle(title or f"where the bits go ({bm.model})", fontsize=9)
    fig.tight_layout()
    return _save(fig, path, force)


def _receptive_field(fig, ax, model: torch.nn.Module, shape: tuple[int, int], pos: tuple[int, int], title: str,
                     seed: int = 0) -> None:
    """One model's receptive field on ``ax``: log10 |d log p(x_pos) / d x| on a random image
    (:func:`arcodec.models.causality.receptive_field`), white where the pixel's distribution
    does not depend on the input, the pixel outlined in red."""
    from arcodec.models.causality import receptive_field

    plt = pyplot()
    rf = receptive_field(model, shape[0], shape[1], pos[0], pos[1], seed).detach().double().numpy()
    shown = np.ma.masked_equal(rf, 0.0)
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    im = ax.imshow(np.ma.log10(shown) if shown.count() else shown, cmap=cmap, interpolation="nearest")
    if shown.count():
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)
    ax.add_patch(plt.Rectangle((pos[1] - 0.5, pos[0] - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.2))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)


def receptive_field_figure(entries: list[tuple[str, list[tuple[str, torch.nn.Module]]]], path: str | Path,
                           shape: tuple[int, int] = (28, 28), pos: tuple[int, int] = (14, 14),
                           title: str = "", force: bool = False, seed: int = 0) -> Path:
    """|d log p(x_pos) / d x|, maximum over channels (:func:`arcodec.models.causality.receptive_field`):
    one row per architecture (``entries``: (name, [(caption, model), ...])), log10 scale,
    white where the pixel's distribution does not depend on the input, the pixel in red."""
    plt = pyplot()
    cols = max(len(nets) for _, nets in entries)
    fig, axes = plt.subplots(len(entries), cols, figsize=(2.6 * cols + 0.6, 2.5 * len(entries)), dpi=130,
                             squeeze=False)
    for row, (name, nets) in zip(axes, entries):
        for ax, (caption, net) in zip(row, nets):
            _receptive_field(fig, ax, net, shape, pos, f"{name}: {caption}" if caption else name, seed)
        for ax in row[len(nets):]:
            ax.axis("off")
    fig.suptitle(title or f"receptive field of pixel {pos}: log10 |d log p / d x| (white: no dependence)",
                 fontsize=8)
    fig.tight_layout()
    return _save(fig, path, force)


def receptive_field_png(model: torch.nn.Module, path: str | Path, height: int = 28, width: int = 28,
                        row: int = 14, col: int = 14, seed: int = 0) -> Path:
    """:func:`receptive_field_figure` of one model on a random ``height`` x ``width`` image,
    replacing an existing file."""
    name = getattr(model, "arch", type(model).__name__)
    return receptive_field_figure([(name, [("", model)])], path, (height, width), (row, col),
                                  f"{name}: receptive field of pixel ({row}, {col}), log10 |d log p / d x|",
                                  force=True, seed=seed)
