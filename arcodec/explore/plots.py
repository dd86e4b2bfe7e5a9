"""Figures of training runs (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_log(run: str | Path) -> list[dict]:
    path = Path(run) / "log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training log (is {run} a run directory?)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def validation_label(cfg: dict | None) -> str:
    """What a run's validation NLL was measured on, from its ``config.json`` (None: unknown):
    the whole validation split, or ``val_limit`` images (crops of a folder's photos) of it, and
    through the integer engine's roundings for a quantisation-aware run."""
    if cfg is None:
        return "validation"
    train = cfg.get("train", {})
    limit = train.get("val_limit") or 0
    kind = "crops" if str(train.get("data", "")).startswith("folder:") else "images"
    what = f"validation ({limit} {kind})" if limit else "validation (whole split)"
    return what + (", through the engine" if train.get("qat") else "")


def plot_curves(run: str | Path, out: str | Path | None = None) -> Path:
    """Train NLL of every minibatch (faint), its running mean and the validation NLL, in
    bits/dim against steps, on one plot: ``RUN/curves.png`` unless ``out`` is given."""
    import numpy as np

    run = Path(run)
    log = read_log(run)
    if not log:
        raise ValueError(f"{run}/log.jsonl is empty")
    steps = np.array([r["step"] for r in log])
    train = np.array([r["train_bpd"] for r in log])
    val = [(r["step"], r["val_bpd"]) for r in log if r.get("val_bpd") is not None]
    cfg_path = run / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(steps, train, color="tab:blue", alpha=0.25, lw=0.7, label="train (minibatch)")
    k = max(1, min(100, len(train) // 20))
    if k > 1:
        smooth = np.convolve(train, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color="tab:blue", lw=1.6, label=f"train (mean of {k})")
    if val:
        vs, vv = zip(*val)
        ax.plot(vs, vv, "o-", color="tab:orange", lw=1.6, ms=4, label=validation_label(cfg))
        best = int(np.argmin(vv))
        ax.annotate(f"best {vv[best]:.4f}", (vs[best], vv[best]), textcoords="offset points",
                    xytext=(0, 10), ha="right" if best == len(vv) - 1 else "center", fontsize=8, color="tab:orange")
    # the first steps start near log2(K) bits; scale to the rest so the end of training shows
    settled = train[len(train) // 10:] if len(train) >= 20 else train
    lo = min(np.percentile(settled, 1), min((v for _, v in val), default=np.inf))
    hi = max(np.percentile(settled, 99), max((v for _, v in val), default=-np.inf))
    ax.set_ylim(lo - 0.1 * (hi - lo + 1e-3), hi + 0.25 * (hi - lo + 1e-3))
    ax.set_xlabel("step")
    ax.set_ylabel("NLL (bits/dim)")
    title = run.name
    if cfg is not None:
        title = f"{run.name}: {cfg['train']['arch']} on {cfg['train']['data']}"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out) if out else run / "curves.png"
    fig.savefig(out)
    plt.close(fig)
    return out
