"""Training loop: seeded, logs train/val NLL in bits/dim, keeps the best checkpoint.

A run directory holds ``config.json``, ``log.jsonl`` (one record per step and per
validation), ``last.pt`` (weights, optimiser, step: for ``--resume``) and ``best.pt``
(weights of the best validation NLL). Checkpoints are plain dicts of tensors and
JSON-able values, loaded with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from arcodec import __version__
from arcodec.data import load_dataset
from arcodec.models.heads import nll_bits
from arcodec.registry import build_model, make_config


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "gated-pixelcnn"
    data: str = "mnist"
    steps: int = 4000
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.0
    clip: float = 1.0
    val_every: int = 500
    val_limit: int = 0  # 0: the whole validation set
    seed: int = 0
    threads: int = 0  # 0: torch's default


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate_nll(model: torch.nn.Module, data: torch.Tensor, batch: int = 256) -> float:
    """Mean NLL in bits/dim of ``model`` on ``data`` (N, C, H, W) uint8."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(data), batch):
        x = data[i: i + batch]
        total += float(nll_bits(model(x), x).sum())
        count += x.numel()
    model.train(was_training)
    return total / count


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def checkpoint(model, cfg: TrainConfig, step: int, optimizer=None, val_bpd: float | None = None) -> dict:
    ckpt = {
        "arcodec_version": __version__,
        "arch": cfg.arch,
        "config": json.dumps(dataclasses.asdict(model.config)),
        "train_config": json.dumps(dataclasses.asdict(cfg)),
        "step": step,
        "val_bpd": val_bpd,
        "model": model.state_dict(),
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    return ckpt


def load_checkpoint(path: str | Path):
    """(model, checkpoint dict) from a file written by :func:`checkpoint` (no pickled code)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(ckpt["arch"], make_config(ckpt["arch"], json.loads(ckpt["config"])))
    model.load_state_dict(ckpt["model"])
    return model, ckpt


def _save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train(cfg: TrainConfig, model_settings: dict, out: str | Path, resume: bool = False,
          data_root: str | None = None, progress: bool = True, download: bool = False) -> Path:
    """Train ``cfg.arch`` on ``cfg.data``; returns the run directory."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _seed(cfg.seed)
    model = build_model(cfg.arch, make_config(cfg.arch, model_settings))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, best = 0, float("inf")
    if resume and (out / "last.pt").exists():
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = ckpt["step"]
        best = ckpt.get("best_val_bpd") or float("inf")
        log_path = out / "log.jsonl"
        if log_path.exists():  # drop what was logged after the checkpoint
            kept = [ln for ln in log_path.read_text().splitlines() if json.loads(ln)["step"] <= step]
            log_path.write_text("".join(ln + "\n" for ln in kept))
    (out / "config.json").write_text(json.dumps(
        {"train": dataclasses.asdict(cfg), "model": dataclasses.asdict(model.config)}, indent=2))

    train_x = load_dataset(cfg.data, "train", data_root, download)
    val_x = load_dataset(cfg.data, "val", data_root)
    if cfg.val_limit:
        val_x = val_x[: cfg.val_limit]
    gen = torch.Generator().manual_seed(cfg.seed + step)
    log = (out / "log.jsonl").open("a")
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
    order = torch.randperm(len(train_x), generator=gen)
    pos, start_step, t0 = 0, step, time.time()
    while step < cfg.steps:
        if pos + cfg.batch > len(order):
            order, pos = torch.randperm(len(train_x), generator=gen), 0
        x = train_x[order[pos: pos + cfg.batch]]
        pos += cfg.batch
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = nll_bits(model(x), x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        step += 1
        ips = cfg.batch * (step - start_step) / max(1e-9, time.time() - t0)
        record = {"step": step, "train_bpd": round(loss.item(), 5), "lr": opt.param_groups[0]["lr"]}
        if step % cfg.val_every == 0 or step == cfg.steps:
            val = evaluate_nll(model, val_x)
            record["val_bpd"] = round(val, 5)
            if val < best:
                best = val
                _save(checkpoint(model, cfg, step, val_bpd=val), out / "best.pt")
            last = checkpoint(model, cfg, step, opt, val)
            last["best_val_bpd"] = best
            _save(last, out / "last.pt")
        log.write(json.dumps(record) + "\n")
        log.flush()
        bar.set_postfix(bpd=f"{loss.item():.4f}", val=f"{best:.4f}", img_s=f"{ips:.0f}")
        bar.update(1)
    bar.close()
    log.close()
    return out
