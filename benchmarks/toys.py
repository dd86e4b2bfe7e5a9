"""The course's warm-up exercise end to end: train the toy models with arcodec's own loop,
measure test NLL, sample, plot, and code the test sets with arcodec's coder.

Every run here goes through the same functions as the rest of the project: training is
:func:`arcodec.training.train.train` (loss :func:`arcodec.models.heads.nll_bits`), the codec is
:func:`arcodec.codec.api.encode_images` / :func:`arcodec.decompress` on the checkpoint file.
A 1-D data set of N values is coded as an (N, 1) grayscale image, the 2-D one as (N, 2).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from arcodec.training.data import load_dataset
from arcodec.registry import load_checkpoint
from arcodec.training.train import TrainConfig, evaluate_nll, train


@dataclass(frozen=True)
class ToyRun:
    name: str  # run directory under the output root
    arch: str
    data: str
    train: dict  # TrainConfig settings
    model: dict = field(default_factory=dict)  # model settings (levels come from the data)

    def config(self) -> TrainConfig:
        return TrainConfig(arch=self.arch, data=self.data, **self.train)

    def command(self, root: str = "runs") -> str:
        """The equivalent ``arcodec train`` command line."""
        sets = " ".join(f"--set {k}={v}" for k, v in {**self.train, **self.model}.items())
        return f"arcodec train --model {self.arch} --data {self.data} {sets} --out {root}/{self.name}"


# The histogram is trained by plain SGD from theta = 0, as the course specifies.
RUNS = (
    ToyRun("toy-hist", "histogram", "toy1d",
           {"optimizer": "sgd", "lr": 10.0, "steps": 1000, "batch": 64, "warmup": 0, "val_every": 250}),
    ToyRun("toy-ar-mlp", "ar-mlp-2d", "toy2d",
           {"optimizer": "adamw", "lr": 3e-3, "steps": 3000, "batch": 256, "warmup": 100, "val_every": 500}),
    ToyRun("toy-made", "made-2d", "toy2d",
           {"optimizer": "adamw", "lr": 3e-3, "steps": 3000, "batch": 256, "warmup": 100, "val_every": 500}),
)


def train_run(run: ToyRun, root: str | Path = "runs", threads: int = 0, progress: bool = False) -> dict:
    """Train one toy model; returns {"checkpoint", "train_seconds"}."""
    cfg = run.config()
    if threads:
        cfg = dataclasses.replace(cfg, threads=threads)
    t0 = time.perf_counter()
    out = train(cfg, run.model, Path(root) / run.name, progress=progress)
    return {"checkpoint": str(out / "best.pt"), "train_seconds": time.perf_counter() - t0}


def load_float(checkpoint: str | Path) -> torch.nn.Module:
    """The model of a checkpoint in float mode (training arithmetic), eval mode."""
    model, _ = load_checkpoint(checkpoint)
    return model.eval()


def test_nll(model: torch.nn.Module, data: str) -> dict:
    """Test NLL of the float model: bits per sample and bits per dimension."""
    x = load_dataset(data, "test")
    bpd = evaluate_nll(model, x)
    dims = x[0].numel()
    return {"test_samples": len(x), "dims": dims, "test_nll_bpd": bpd, "test_nll_bits_per_sample": bpd * dims}


@torch.no_grad()
def sample(model: torch.nn.Module, n: int, seed: int = 0, chunk: int = 20_000) -> np.ndarray:
    """n samples (n, W) by ancestral sampling with the float forward pass; W = 1 for the
    histogram, 2 for the 2-D models. Seeded: the same n and seed give the same samples."""
    width = getattr(model, "width", 1)
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, chunk):
        x = torch.zeros(min(chunk, n - i), 1, 1, width, dtype=torch.long)
        for c in range(width):  # column c's distribution only depends on the columns before it
            probs = torch.softmax(model(x)[:, :, 0, 0, c].double(), dim=1)
            x[:, 0, 0, c] = torch.multinomial(probs, 1, generator=g)[:, 0]
        out.append(x[:, 0, 0].numpy())
    return np.concatenate(out).astype(np.uint8)


@torch.no_grad()
def model_pmf_1d(model: torch.nn.Module) -> np.ndarray:
    """p(x) (K,) of a 1-D model."""
    return torch.softmax(model(torch.zeros(1, 1, 1, 1, dtype=torch.long))[0, :, 0, 0, 0].double(), 0).numpy()


@torch.no_grad()
def model_density_2d(model: torch.nn.Module) -> np.ndarray:
    """p(x1, x2) (K, K) of a 2-D model, from p(x1) p(x2 | x1) at every pair."""
    k = model.config.levels
    grid = torch.stack(torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij"), dim=-1).reshape(-1, 1, 1, 2)
    logp = torch.log_softmax(model(grid).double(), dim=1)[:, :, 0, 0, :]  # (K*K, K, 2)
    joint = logp.gather(1, grid[:, 0, 0, :].unsqueeze(1)).squeeze(1).sum(dim=1)  # (K*K,)
    return joint.exp().reshape(k, k).numpy()


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_1d(model: torch.nn.Module, path: str | Path, n: int = 1000, seed: int = 0, title: str = "") -> Path:
    """Model probabilities, the true pmf and the histogram of n model samples, in one PNG."""
    from arcodec.training.toydata import toy1d_pmf

    pmf = model_pmf_1d(model)
    k = len(pmf)
    s = sample(model, n, seed)[:, 0]
    fig = _figure(8, 4)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(np.arange(k), np.bincount(s, minlength=k) / n, width=1.0, alpha=0.4,
           label=f"histogram of {n} model samples")
    ax.plot(np.arange(k), pmf, "C1-", lw=2, label="model p(x)")
    ax.plot(np.arange(k), toy1d_pmf(), "k--", lw=1, label="true p(x)")
    ax.set_xlabel("x")
    ax.set_ylabel("probability")
    ax.set_title(title or "histogram model on toy1d")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_2d(model: torch.nn.Module, path: str | Path, n: int = 100_000, seed: int = 0, title: str = "") -> Path:
    """True density, model density and a 200x200-bin histogram of n model samples."""
    from arcodec.training.toydata import toy2d_density

    true = toy2d_density()
    dens = model_density_2d(model)
    k = dens.shape[0]
    s = sample(model, n, seed).astype(np.int64)
    hist = np.bincount(s[:, 0] * k + s[:, 1], minlength=k * k).reshape(k, k) / n
    fig = _figure(15, 5.2)
    vmax = float(true.max()) * 1.5
    for i, (img, name) in enumerate(((true, "true p(x1, x2)"), (dens, "model p(x1, x2)"),
                                     (hist, f"histogram of {n:,} model samples"))):
        ax = fig.add_subplot(1, 3, i + 1)
        im = ax.imshow(img, vmin=0.0, vmax=vmax, cmap="viridis")
        ax.set_title(name)
        ax.set_xlabel("x2")
        ax.set_ylabel("x1")
        fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def compress_test(checkpoint: str | Path, data: str) -> dict:
    """Code the whole test set of ``data`` as one image with the checkpoint's model; decode
    it and compare. Returns file bits next to the codec's (exact) NLL of the same values."""
    from arcodec import decompress
    from arcodec.codec.api import encode_images

    x = load_dataset(data, "test")
    image = x[:, 0, 0, :].numpy()  # (N, W): one sample per row
    enc = encode_images([image], model=str(checkpoint))
    t0 = time.perf_counter()
    back = decompress(enc.data, model=str(checkpoint)).reshape(image.shape)
    decode_s = time.perf_counter() - t0
    file_bits = 8 * len(enc.data)
    return {
        "image_shape": list(image.shape),
        "file_bytes": len(enc.data),
        "file_bits": file_bits,
        "codec_nll_bits": enc.nll_bits,  # exact arithmetic: what the coder was given
        "file_bpd": file_bits / image.size,
        "codec_nll_bpd": enc.nll_bits / image.size,
        "overhead_pct": 100.0 * (file_bits / enc.nll_bits - 1.0),
        "round_trip_exact": bool(np.array_equal(back, image)),
        "encode_s": enc.seconds,
        "decode_s": decode_s,
    }


def run_all(root: str | Path = "runs", results: str | Path = "benchmarks/results", threads: int = 0,
            samples_2d: int = 100_000, progress: bool = False) -> list[dict]:
    """Train, evaluate, sample, plot and compress every toy model; one record per model."""
    from arcodec.training.toydata import toy1d_pmf, toy2d_density

    entropy = {"toy1d": float(-(toy1d_pmf() * np.log2(toy1d_pmf())).sum()),
               "toy2d": float(-(toy2d_density() * np.log2(toy2d_density())).sum() / 2)}
    records = []
    for run in RUNS:
        rec = {"model": run.arch, "data": run.data, "command": run.command(str(root)),
               **train_run(run, root, threads, progress)}
        model = load_float(rec["checkpoint"])
        rec.update(test_nll(model, run.data))
        rec["true_entropy_bpd"] = entropy[run.data]
        png = Path(results) / f"toy_{run.arch}.png"
        if run.data == "toy1d":
            plot_1d(model, png, 1000, seed=0, title=f"{run.arch} on toy1d (SGD from theta = 0)")
        else:
            plot_2d(model, png, samples_2d, seed=0, title=f"{run.arch} on toy2d")
        rec["plot"] = str(png)
        rec.update(compress_test(rec["checkpoint"], run.data))
        records.append(rec)
    return records
