"""Training loop: seeded, logs train/val NLL in bits/dim, keeps the best checkpoint.

A run directory holds ``config.json``, ``log.jsonl`` (one record per step and per
validation), ``last.pt`` (weights, optimiser, step: for ``--resume``) and ``best.pt``
(weights of the best validation NLL). Checkpoints are plain dicts of tensors and
JSON-able values, loaded with ``weights_only=True`` (:func:`arcodec.registry.load_checkpoint`).

A class-conditional model (``classes`` > 0, e.g. ``gated-pixelcnn``) trains on the labels of
its data set (:func:`arcodec.training.data.load_labels`) and is validated with the true
labels; the checkpoint is the same as any model's (``classes`` is in its config).

Fine-tuning (``init``: a zoo name, a checkpoint or a ``.arcm`` model file) starts from that
model's weights, with its architecture and config, and a fresh optimiser and schedule; a
model class may let it switch on settings (``growable``) or enlarge sizes (``enlargeable``,
e.g. ``--set hidden=128`` from a 96-channel photo model) whose new parameters start where
they change nothing.
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
from arcodec.errors import ArcodecError, ModelError
from arcodec.imageio import atomic_path
from arcodec.models.heads import nll_bits
from arcodec.registry import build_model, load_checkpoint, make_config, model_class
from arcodec.training.data import dataset_levels, labelled_datasets, load_dataset, load_labels


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "gated-pixelcnn"
    data: str = "mnist"
    steps: int = 4000
    seconds: float = 0.0  # > 0: train for this long (wall clock, after loading), steps only a bound; lr by time
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.0  # decoupled decay (AdamW's); with optimizer=sgd it equals an L2 penalty
    l2: float = 0.0  # explicit penalty (l2 / 2) * ||theta||^2 added to the loss in bits/dim (MAP, docs/theory.md)
    clip: float = 1.0
    val_every: int = 500
    val_limit: int = 0  # 0: the whole validation set; else this many, evenly spaced
    seed: int = 0
    threads: int = 0  # 0: torch's default
    optimizer: str = "adamw"  # or "sgd" (plain SGD, as the course's warm-up models use)
    crop: int = 32  # folder:PATH data: crop size,
    crops: int = 64  # crops per image,
    mode: str = ""  # "L" or "RGB" to force the channels,
    flip: bool = False  # mirror half of the training crops,
    chroma: float = 0.0  # and cut this fraction of every split's crops after a 4:2:0 chroma round trip
    init: str = ""  # fine-tune: start from this model (zoo name, checkpoint or .arcm file)
    qat: bool = False  # train through the integer engine's roundings (arcodec/training/qat.py)
    device: str = "cpu"  # or "cuda" (a GPU: the model, the data and every step there)
    only: str = ""  # train only the parameters named with one of these comma-separated prefixes, the rest frozen

    def data_options(self) -> dict:
        if not self.data.startswith("folder:"):
            return {}
        return {"crop": self.crop, "crops": self.crops, "mode": self.mode, "flip": self.flip,
                "chroma": self.chroma}


def _device(name: str) -> torch.device:
    """The device a run trains on; a one-line error for one this machine lacks."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ArcodecError(f"unknown device {name!r} (cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ArcodecError(f"device={name}: this machine has no CUDA GPU that torch can use")
        torch.backends.cuda.matmul.allow_tf32 = True  # training's float32 products on the tensor cores
        torch.backends.cudnn.allow_tf32 = True
    elif device.type != "cpu":
        raise ArcodecError(f"device={name}: arcodec trains on cpu or cuda")
    return device


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def objective(core: torch.nn.Module, x: torch.Tensor, forward=None,
              y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to minimise, code length in bits of every sub-pixel of ``x``).

    The default is the categorical cross-entropy of the logits, :func:`nll_bits`. A model
    whose loss is something else (a flow's change of variables, a quantile loss) defines
    ``objective(x, forward)``; ``forward`` is the callable to run the network with (the
    DistributedDataParallel wrapper while training), ``core`` itself otherwise. ``y``: the
    labels (B,) of a class-conditional model, ``forward(x, y)``."""
    forward = forward or core
    if hasattr(core, "objective"):
        if y is not None:
            raise ValueError(f"model {getattr(core, 'arch', type(core).__name__)} takes no labels")
        return core.objective(x, forward)
    bits = nll_bits(forward(x) if y is None else forward(x, y), x)
    return bits.mean(), bits


def has_likelihood(model: torch.nn.Module) -> bool:
    """False for a model that defines no likelihood (``likelihood = False``: the quantile
    regression model): its objective's second value is a per-sub-pixel loss, not bits."""
    return getattr(model, "likelihood", True)


def evaluate_nll(model: torch.nn.Module, data: torch.Tensor, batch: int = 256,
                 labels: torch.Tensor | None = None) -> float:
    """Mean NLL in bits/dim of ``model`` on ``data`` (N, C, H, W) uint8; ``labels`` (N,) for
    a class-conditional model."""
    if not has_likelihood(model):
        raise ValueError(f"model {getattr(model, 'arch', type(model).__name__)} defines no likelihood "
                         "(a quantile regression model): it has no NLL to evaluate")
    return evaluate_objective(model, data, batch, labels)


@torch.no_grad()
def evaluate_objective(model: torch.nn.Module, data: torch.Tensor, batch: int = 256,
                       labels: torch.Tensor | None = None) -> float:
    """Mean of the objective's per-sub-pixel value on ``data``: the NLL in bits/dim, or the
    validation loss of a model without a likelihood (what training logs as ``val_bpd`` then).
    ``labels`` (N,): those of the images, for a class-conditional model."""
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    total, count = 0.0, 0
    for i in range(0, len(data), batch):
        x = data[i: i + batch].to(device)
        y = None if labels is None else labels[i: i + batch].to(device)
        bits = objective(model, x, y=y)[1]  # a local model scores only the crop's inner positions
        total += float(bits.sum())
        count += bits.numel()
    model.train(was_training)
    return total / count


def trained_parameters(model: torch.nn.Module, cfg: TrainConfig) -> list[torch.nn.Parameter]:
    """The parameters a run trains: every one, or with ``only`` (e.g. ``head_``: the parts a
    fine-tuning run grew, on a trunk left exactly as it was) those whose names start with one
    of its comma-separated prefixes, the others frozen (no gradients: a cheaper step)."""
    named = list(model.named_parameters())
    if not cfg.only:
        return [p for _, p in named]
    prefixes = tuple(p.strip() for p in cfg.only.split(",") if p.strip())
    chosen = [p for name, p in named if name.startswith(prefixes)]
    if not prefixes or not chosen:
        tops = sorted({name.split(".")[0] for name, _ in named})
        raise ArcodecError(f"only={cfg.only}: no parameter of the model is named so (its parameters: "
                           f"{', '.join(tops[:12])}{', ...' if len(tops) > 12 else ''})")
    for name, p in named:
        p.requires_grad_(name.startswith(prefixes))
    return chosen


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = trained_parameters(model, cfg)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adamw, sgd)")


def check_data(model: torch.nn.Module, x: torch.Tensor, name: str) -> None:
    """A clear error when the data does not fit the model's channels or levels."""
    cfg = model.config
    if x.shape[1] != cfg.channels:
        raise ValueError(f"{name} has {x.shape[1]} channel(s), the model codes {cfg.channels} (set channels=...)")
    if len(x) and int(x.max()) >= cfg.levels:
        raise ValueError(f"{name} has values up to {int(x.max())}, the model has {cfg.levels} levels (set levels=...)")


def class_labels(data: str, split: str, classes: int, root: str | None = None,
                 download: bool = False) -> torch.Tensor:
    """The labels (N,) of split ``split`` of data set ``data`` for a model of ``classes``
    classes; a one-line :class:`ArcodecError` when the data set has none or one is not in
    0..classes-1."""
    if data not in labelled_datasets():
        raise ArcodecError(f"a model with classes={classes} trains on labelled data; {data} has no labels "
                           f"(labelled: {', '.join(labelled_datasets())})")
    y = load_labels(data, split, root, download)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ArcodecError(f"{data} has labels {int(y.min())}..{int(y.max())}, the model has classes={classes} "
                           f"(labels 0..{classes - 1}; set classes=...)")
    return y


def lr_at(step: int, cfg: TrainConfig, elapsed: float = 0.0) -> float:
    """Linear warmup over ``warmup`` steps, then a cosine to 0 at the last step, or with
    ``seconds`` at that many seconds of training (``elapsed``: the seconds so far)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.seconds:
        t = elapsed / cfg.seconds
    else:
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
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    return ckpt


def _save(obj, path: Path) -> None:
    with atomic_path(path, force=True) as tmp:
        torch.save(obj, tmp)


def initial_model(source: str) -> tuple[str, dict, dict]:
    """(architecture, config as a dict, state dict) of the model ``source`` names: a
    checkpoint or ``.arcm`` file when it is a file, else a zoo model (its sha256 verified).
    Its config and weights are where a fine-tuning run starts."""
    path = Path(source)
    if path.is_file():
        try:
            net, ckpt = load_checkpoint(path)
        except Exception as e:  # a user's file: any failure to read it is their input's fault
            raise ArcodecError(f"cannot load {source} to start from: {str(e).splitlines()[0] if str(e) else e!r}") from None
        return ckpt["arch"], dataclasses.asdict(net.config), net.state_dict()
    from arcodec.zoo import load_model

    m = load_model(source)
    return m.card["arch"], dataclasses.asdict(m.net.config), m.net.state_dict()


def _fine_tuned(cfg: TrainConfig, model_settings: dict) -> tuple[TrainConfig, dict, dict]:
    """(training config with the initial model's architecture, its config, its weights) for
    ``cfg.init``; a one-line error when ``--model`` or a model setting asks for another
    architecture."""
    arch, config, state = initial_model(cfg.init)
    if cfg.arch and cfg.arch != arch:
        raise ArcodecError(f"{cfg.init} is a {arch} model, not {cfg.arch}: fine-tuning keeps the architecture")
    base = dataclasses.asdict(make_config(arch, config))
    wanted = dataclasses.asdict(make_config(arch, {**config, **model_settings}))
    growable = getattr(model_class(arch), "growable", ())
    enlargeable = getattr(model_class(arch), "enlargeable", ())
    grown = {k for k in base if wanted[k] != base[k] and k in growable and not base[k] and wanted[k] is True}
    enlarged = {k for k in base if k in enlargeable and wanted[k] > base[k]}
    changed = [f"{k}={wanted[k]} (it has {base[k]})" for k in base
               if wanted[k] != base[k] and k not in grown | enlarged]
    if changed:
        may = [f"switch on {', '.join(sorted(growable))}"] if growable else []
        may += [f"enlarge {', '.join(enlargeable)}"] if enlargeable else []
        raise ArcodecError(f"{cfg.init} fixes the architecture: cannot set {', '.join(changed)}"
                           + (f" (fine-tuning may {' or '.join(may)})" if may else ""))
    grown_config = {**config, **{k: True for k in grown}, **{k: wanted[k] for k in enlarged}}
    return dataclasses.replace(cfg, arch=arch), grown_config, state


def load_grown(model: torch.nn.Module, state: dict) -> None:
    """Load ``state``, a fine-tuning run's initial weights, into ``model``. A model that
    fine-tuning may grow (settings switched on, its ``growable``; sizes enlarged, its
    ``enlargeable``) loads them itself (``grow_from``: the grown model starts as the one it
    grew from); any other must match them exactly. A misfit is a one-line error."""
    try:
        if hasattr(model, "grow_from"):
            model.grow_from(state)
            return
        missing, unexpected = model.load_state_dict(state, strict=False)
    except ModelError as e:
        raise ArcodecError(f"the initial model's weights do not fit: {e}") from None
    bad = list(missing) + list(unexpected)
    if bad:
        raise ArcodecError(f"the initial model's weights do not fit: {', '.join(bad[:4])}")


class _Dist:
    """The process group when run under ``torchrun`` (WORLD_SIZE > 1), else a no-op."""

    def __init__(self):
        import os

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.active = self.world > 1
        if self.active:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            self.dist = dist

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: torch.Tensor) -> float:
        value = value.detach()
        if self.active:
            value = value.clone()
            self.dist.all_reduce(value)
            value /= self.world
        return float(value)

    def elapsed(self, t0: float) -> float:
        """Seconds since t0 by the main process's clock: every process then sets the same
        learning rate and stops at the same step."""
        value = time.time() - t0
        if self.active:
            t = torch.tensor([value], dtype=torch.float64,
                             device="cuda" if self.dist.get_backend() == "nccl" else "cpu")
            self.dist.broadcast(t, 0)
            value = float(t)
        return value

    def barrier(self) -> None:
        if self.active:
            self.dist.barrier()

    def close(self) -> None:
        if self.active:
            self.dist.destroy_process_group()


def _epoch_order(n: int, cfg: TrainConfig, epoch: int, d: _Dist) -> list[int]:
    """This rank's share of epoch ``epoch``'s shuffled order (DistributedSampler: rank r takes
    every world-th index, so the ranks' shares of a step make up the global batch)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=d.world, rank=d.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    sampler.set_epoch(epoch)
    return list(sampler)


def train(cfg: TrainConfig, model_settings: dict, out: str | Path, resume: bool = False,
          data_root: str | None = None, progress: bool = True, download: bool = False) -> Path:
    """Train ``cfg.arch`` on ``cfg.data``; returns the run directory.

    Runs unchanged under ``torchrun --nproc_per_node=N``: DistributedDataParallel, each
    rank takes ``batch / N`` images of every step's global batch, rank 0 logs, validates,
    saves and plots."""
    from tqdm import tqdm

    d = _Dist()
    if cfg.seconds and resume:
        raise ArcodecError("--set seconds=... times one leg, whose learning rate follows its own clock: "
                           "continue such a run with --init RUN/last.pt, not --resume")
    if cfg.seconds < 0:
        raise ArcodecError(f"seconds must be positive (or 0: train for steps), got {cfg.seconds}")
    if cfg.batch % d.world:
        raise ValueError(f"batch {cfg.batch} does not split into {d.world} processes")
    device = _device(cfg.device)
    out = Path(out)  # made once the data have loaded: a run that cannot start leaves nothing
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _seed(cfg.seed)
    if cfg.init:
        if resume:
            raise ArcodecError("--init starts a new run from a model, --resume continues a run: give one of them")
        cfg, settings, start = _fine_tuned(cfg, model_settings)
    else:
        start, settings = None, dict(model_settings)
        if "levels" not in settings and hasattr(make_config(cfg.arch), "levels"):
            settings["levels"] = dataset_levels(cfg.data)  # the data's levels unless told otherwise
    model = build_model(cfg.arch, make_config(cfg.arch, settings))
    if start is not None:
        load_grown(model, start)
    model.to(device)
    opt = make_optimizer(model, cfg)
    step, best = 0, float("inf")
    if resume and (out / "last.pt").exists():
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = ckpt["step"]
        best = ckpt.get("best_val_bpd") or float("inf")
        log_path = out / "log.jsonl"
        if d.main and log_path.exists():  # drop what was logged after the checkpoint
            kept = [ln for ln in log_path.read_text().splitlines() if json.loads(ln)["step"] <= step]
            log_path.write_text("".join(ln + "\n" for ln in kept))
    train_x = load_dataset(cfg.data, "train", data_root, download and d.main, **cfg.data_options())
    val_x = load_dataset(cfg.data, "val", data_root, **cfg.data_options())
    check_data(model, train_x, cfg.data)
    train_x, val_x = train_x.to(device), val_x.to(device)  # the whole data set on the GPU: no copy a step
    train_y = val_y = None  # the labels, for a class-conditional model
    classes = getattr(model.config, "classes", 0)
    if classes:
        train_y = class_labels(cfg.data, "train", classes, data_root).to(device)
        val_y = class_labels(cfg.data, "val", classes, data_root).to(device)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        record = dataclasses.asdict(cfg)
        if resume and not cfg.init and (out / "config.json").is_file():  # a fine-tuning run keeps its origin
            record["init"] = json.loads((out / "config.json").read_text())["train"].get("init", "")
        (out / "config.json").write_text(json.dumps({"train": record, "model": dataclasses.asdict(model.config)},
                                                    indent=2))
    if cfg.val_limit:  # evenly spaced, so that every validation image keeps its share
        kept = torch.arange(0, len(val_x), max(1, len(val_x) // cfg.val_limit))[: cfg.val_limit]
        val_x = val_x[kept]
        val_y = None if val_y is None else val_y[kept]
    core = model
    scored = core  # what the loss and the validation run: the model, or its engine's emulation
    if cfg.qat:
        from arcodec.training.qat import EngineEmulation

        scored = EngineEmulation(core)
        if not bool((core.act_max > 0).all()):
            core.calibrate(train_x[:: max(1, len(train_x) // 256)])
    model = scored
    if d.active:
        model = torch.nn.parallel.DistributedDataParallel(scored)
    per_rank = cfg.batch // d.world
    per_epoch = (len(train_x) // d.world) // per_rank  # steps in an epoch
    if per_epoch == 0:
        raise ValueError(f"{cfg.data} has {len(train_x)} training images, fewer than a batch of {cfg.batch}")
    epoch, k = divmod(step, per_epoch)
    order = _epoch_order(len(train_x), cfg, epoch, d)
    log = (out / "log.jsonl").open("a") if d.main else None
    model.train()
    bar = tqdm(total=None if cfg.seconds else cfg.steps, initial=step, disable=not (progress and d.main), unit="step",
               dynamic_ncols=True)
    start_step, t0, elapsed = step, time.time(), 0.0
    done = step >= cfg.steps
    while not done:
        if k == per_epoch:
            epoch, k = epoch + 1, 0
            order = _epoch_order(len(train_x), cfg, epoch, d)
        idx = order[k * per_rank: (k + 1) * per_rank]
        x, y = train_x[idx], (None if train_y is None else train_y[idx])
        k += 1
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg, elapsed)  # elapsed: at the end of the step before
        loss, _ = objective(scored, x, model, y)
        penalised = loss + 0.5 * cfg.l2 * sum(p.pow(2).sum() for p in core.parameters()) if cfg.l2 else loss
        opt.zero_grad(set_to_none=True)
        penalised.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        step += 1
        train_bpd = d.mean(loss)
        elapsed = d.elapsed(t0) if cfg.seconds else time.time() - t0  # with seconds: the main process's clock
        ips = cfg.batch * (step - start_step) / max(1e-9, elapsed)
        done = step >= cfg.steps or bool(cfg.seconds and elapsed >= cfg.seconds)
        record = {"step": step, "train_bpd": round(train_bpd, 5), "lr": opt.param_groups[0]["lr"],
                  "seconds": round(elapsed, 2)}
        if step % cfg.val_every == 0 or done:
            if d.main:
                if hasattr(core, "calibrate"):  # scales of the integer engine, stored with the weights
                    core.calibrate(train_x[:: max(1, len(train_x) // 256)])
                # the NLL (through the engine's roundings with qat), or the loss of a model without one
                val = evaluate_objective(scored, val_x, labels=val_y)
                record["val_bpd"] = round(val, 5)
                if val < best:
                    best = val
                    _save(checkpoint(core, cfg, step, val_bpd=val), out / "best.pt")
                last = checkpoint(core, cfg, step, opt, val)
                last["best_val_bpd"] = best
                _save(last, out / "last.pt")
            d.barrier()
        if log is not None:
            log.write(json.dumps(record) + "\n")
            log.flush()
        bar.set_postfix(bpd=f"{train_bpd:.4f}", val=f"{best:.4f}", img_s=f"{ips:.0f}")
        bar.update(1)
    bar.close()
    if log is not None:
        log.close()
        from arcodec.explore.plots import plot_curves

        plot_curves(out)
    d.close()
    return out
