"""An evaluation as one HTML page people look at (``arcodec eval ... --report DIR``).

The page is a single file, ``DIR/index.html``, with every figure inline (PNG as base64), so
it can be mailed or attached to an issue. It shows:

- the summary table (model, weights' sha256, data, model NLL beside the real files' bits/dim,
  overhead, speed, round trips);
- a histogram of the images' file bits/dim, with the pooled value marked;
- model NLL against file bits/dim per image (the overhead is the distance to the diagonal);
- the worst images (highest file bits/dim) beside their bit heat maps: where the bits go;
- the model's training curves when its training log is known (a checkpoint whose run folder
  holds ``log.jsonl``), else what its model card says about its training.
"""

from __future__ import annotations

import base64
import html
import io
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from arcodec.errors import ArcodecError

WORST = 4  # worst images shown with their heat maps


@contextmanager
def _figure(plt, *args, **kwargs):
    """``plt.subplots(*args, **kwargs)`` as (figure, axes), closed however the drawing ends."""
    fig, axes = plt.subplots(*args, **kwargs)
    try:
        yield fig, axes
    finally:
        plt.close(fig)


def _png(fig) -> str:
    """A matplotlib figure as an inline <img>."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _histogram(plt, records: list[dict], pooled: float) -> str:
    with _figure(plt, figsize=(5.2, 3.2), dpi=110) as (fig, ax):
        values = [r["file_bpd"] for r in records]
        ax.hist(values, bins=min(40, max(5, len(values) // 3)), color="tab:blue", alpha=0.8)
        ax.axvline(pooled, color="tab:red", linestyle="--", label=f"pooled {pooled:.4f}")
        ax.set_xlabel("file bits/dim (header included)")
        ax.set_ylabel("images")
        ax.legend(fontsize=8)
        return _png(fig)


def _scatter(plt, records: list[dict]) -> str:
    with _figure(plt, figsize=(4.6, 4.2), dpi=110) as (fig, ax):
        x = np.array([r["nll_bpd"] for r in records])
        y = np.array([r["file_bpd"] for r in records])
        ax.scatter(x, y, s=10, alpha=0.7)
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], color="gray", linewidth=0.8, label="file = NLL")
        ax.set_xlabel("model NLL (bits/dim)")
        ax.set_ylabel("file bits/dim")
        ax.legend(fontsize=8)
        return _png(fig)


def _worst(plt, records: list[dict], images: list[np.ndarray], model) -> str:
    """The worst images beside their bit heat maps (bits per pixel, all channels summed)."""
    from arcodec.explore.bitsmap import bits_map

    worst = sorted(records, key=lambda r: -r["file_bpd"])[:WORST]
    if not worst:
        return ""
    with _figure(plt, len(worst), 2, figsize=(6.4, 3.0 * len(worst)), dpi=100, squeeze=False) as (fig, axes):
        for (a1, a2), r in zip(axes, worst):
            img = images[r["index"]]
            img = img if img.ndim == 3 else img[:, :, None]
            bm = bits_map(img, model)
            shown = img[:, :, 0] if img.shape[2] == 1 else img[:, :, :3]
            a1.imshow(shown, cmap="gray" if img.shape[2] == 1 else None, interpolation="nearest")
            a1.set_title(f"{r['name']}: {r['file_bpd']:.3f} bits/dim", fontsize=8)
            im = a2.imshow(bm.bits.sum(axis=-1), cmap="magma", interpolation="nearest")
            a2.set_title("bits per pixel", fontsize=8)
            fig.colorbar(im, ax=a2, fraction=0.046, pad=0.04)
            for a in (a1, a2):
                a.set_xticks([])
                a.set_yticks([])
        fig.tight_layout()
        return _png(fig)


def _training(plt, model) -> str:
    """The run's curves when its log is known, else the card's training facts."""
    source = Path(model.name)  # a checkpoint's path, or a zoo name
    log = source.parent / "log.jsonl" if source.suffix == ".pt" else None
    if log is not None and log.exists():
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        train = [(r["step"], r["train_bpd"]) for r in rows if "train_bpd" in r]
        val = [(r["step"], r["val_bpd"]) for r in rows if "val_bpd" in r]
        with _figure(plt, figsize=(5.6, 3.4), dpi=110) as (fig, ax):
            if train:
                ax.plot(*zip(*train), linewidth=0.6, alpha=0.6, label="train")
            if val:
                ax.plot(*zip(*val), marker="o", markersize=3, label="validation")
            ax.set_xlabel("step")
            ax.set_ylabel("NLL (bits/dim)")
            ax.legend(fontsize=8)
            return f"<p>From <code>{html.escape(str(log))}</code>.</p>" + _png(fig)
    card = model.card or {}
    facts = [(k, str(card[k])) for k in ("command", "step", "val_bpd", "data", "test_nll_bpd") if k in card]
    if not facts:
        return "<p>Unknown: the model has no training log beside it and no card.</p>"
    return "<p>No training log ships with a zoo model; its card says:</p>" + _table(facts)


def write_report(out: str | Path, records: list[dict], summary: dict, model, images: list[np.ndarray],
                 data: str, force: bool = False) -> Path:
    """Write ``out/index.html`` for an evaluation (records of
    :func:`arcodec.evaluation.evaluate.evaluate_codec` on ``images`` with ``model``)."""
    from arcodec.explore.plots import pyplot
    from arcodec.imageio import refuse_existing, write_atomic

    out = Path(out)
    page = refuse_existing(out / "index.html", force)
    if out.exists() and not out.is_dir():
        raise ArcodecError(f"{out} is not a folder")
    if not records:
        raise ArcodecError("nothing to report: no images were evaluated")
    plt = pyplot()
    s = summary
    rows = [
        ("model", f"{model.name} (sha256 {model.sha256})"),
        ("data", f"{data}, {s['images']} images"),
        ("model NLL", f"{s['nll_bpd']:.4f} bits/dim"),
        ("real files", f"{s['file_bpd']:.4f} bits/dim, header and CRC included"),
        ("overhead", f"{s['overhead_pct']:.2f} % ({s['overhead_bytes_per_file']:.1f} bytes per file)"),
        ("encode", f"{s['encode_img_s']:.2f} images/s"),
        ("decode", f"{s['decode_img_s']:.2f} images/s"),
        ("round trips exact", f"{s['roundtrips_ok']}/{s['images']}"),
    ]
    sections = [
        ("Summary", _table(rows)),
        ("File bits/dim per image", _histogram(plt, records, s["file_bpd"])),
        ("Model NLL against file bits/dim", _scatter(plt, records)),
        (f"The {min(WORST, len(records))} worst images and where their bits go", _worst(plt, records, images, model)),
        ("Training", _training(plt, model)),
    ]
    body = "".join(f"<h2>{html.escape(t)}</h2>\n{c}\n" for t, c in sections)
    doc = ("<!doctype html>\n<html><head><meta charset='utf-8'>"
           f"<title>arcodec eval: {html.escape(model.name)} on {html.escape(data)}</title><style>"
           "body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
           "table{border-collapse:collapse}th,td{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}"
           "img{max-width:100%}</style></head><body>"
           f"<h1>arcodec eval: {html.escape(model.name)} on {html.escape(data)}</h1>\n{body}</body></html>\n")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(page, doc.encode(), force=True)
    return page
