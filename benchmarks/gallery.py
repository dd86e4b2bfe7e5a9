"""Regenerate every figure of docs/gallery.md from the shipped models (`make gallery`).

    python benchmarks/gallery.py          # a few minutes on one CPU core

Samples (unconditional; class-conditional from a small model trained here with `arcodec
train` on MNIST's labels, or scikit-learn's digits without MNIST, since no class-conditional
model is shipped), the course's queries a..g with bar
charts and sample rows, inpainting, where the bits go, receptive fields at initialisation
and after training, and the flow figures when a flow model (mnist-coupling) is shipped.
Writes docs/gallery/*.png and docs/gallery.md; every number in the page is measured here.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from arcodec.explore.bitsmap import bits_map
from arcodec.explore.model import as_model, initialised_like
from arcodec.explore.queries import course_queries
from arcodec.explore.sampling import class_samples, sample
import arcodec.explore.figures as viz
from arcodec.zoo import ZOO_DIR

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "gallery"
PAGE = ROOT / "docs" / "gallery.md"
FAMILY_RUNS = ROOT / "runs" / "family"  # python benchmarks/pixelcnn_family.py (not in git)


class Page:
    """The Markdown page, built section by section, with the time each figure took."""

    def __init__(self):
        self.lines: list[str] = []
        self.t = time.perf_counter()

    def add(self, *lines: str) -> None:
        self.lines += lines

    def figure(self, path: Path, caption: str, command: str | None = None) -> None:
        took = time.perf_counter() - self.t
        self.t = time.perf_counter()
        self.add(f"![{caption}](gallery/{path.name})", "",
                 f"*{caption}* ({took:.0f} s)" + (f" — `{command}`" if command else ""), "")
        print(f"{path.name}: {took:.1f} s", flush=True)


def test_digits(count: int) -> list[torch.Tensor]:
    """MNIST test digits (1, 28, 28) whose middle pixel is on the stroke, and one where it is
    not: the queries differ most there."""
    from arcodec.training.data import load_mnist

    x = load_mnist("test")
    on = [i for i in range(200) if int(x[i, 0, 14, 14]) > 128]
    off = [i for i in range(200) if int(x[i, 0, 14, 14]) == 0 and int(x[i, 0, 13:16, 13:16].max()) > 0]
    idx = (on[: count - 1] + off[:1])[:count]
    return [(i, x[i].long()) for i in idx]


def samples(page: Page, args) -> None:
    page.add("## Samples", "", "Ancestral sampling in raster order, seed 0, values scaled to 0..255 for display.", "")
    x = sample("mnist-gated", args.samples, seed=0)
    p = viz.samples_figure(x, 256, OUT / "samples-mnist-gated.png", f"mnist-gated: {len(x)} samples (seed 0)",
                           force=True)
    page.figure(p, "mnist-gated", f"arcodec sample -m mnist-gated -n {args.samples} -o samples.png")
    x = sample("colour-mnist-made", args.colour_samples, seed=0)
    p = viz.samples_figure(x, 4, OUT / "samples-colour-mnist-made.png",
                           f"colour-mnist-made: {len(x)} samples (seed 0)", force=True)
    page.figure(p, "colour-mnist-made (2 bits per channel)",
                f"arcodec sample -m colour-mnist-made -n {args.colour_samples} -o samples.png")


def class_conditional(page: Page, args) -> None:
    """Train a class-conditional Gated PixelCNN through the training loop (MNIST's labels when
    MNIST is there, else scikit-learn's digits), then sample one row per label."""
    import shutil

    from arcodec.training.data import DEFAULT_ROOT, load_dataset, load_labels
    from arcodec.training.train import TrainConfig, evaluate_nll, train

    data = "mnist" if (Path(DEFAULT_ROOT) / "MNIST").is_dir() else "digits"
    settings = {"classes": 10, "hidden": 32, "layers": 5, "head": 64}
    cfg = TrainConfig(arch="gated-pixelcnn", data=data, steps=args.cond_steps, batch=64, lr=3e-3,
                      warmup=max(1, args.cond_steps // 10), val_every=args.cond_steps, threads=args.threads)
    run = ROOT / "runs" / "gallery" / "class-conditional"
    shutil.rmtree(run, ignore_errors=True)  # a fresh run, not appended to the last one's log
    command = ("arcodec train --model gated-pixelcnn --data " + data
               + "".join(f" --set {k}={v}" for k, v in settings.items())
               + f" --set steps={cfg.steps} --set lr={cfg.lr} --set warmup={cfg.warmup} --set val_every={cfg.val_every}"
               + " --out runs/gallery/class-conditional")
    t = time.perf_counter()
    train(cfg, settings, run, progress=False)
    seconds = time.perf_counter() - t
    ckpt = run / "best.pt"
    m = as_model(str(ckpt))
    xt = load_dataset(data, "test")
    bpd = evaluate_nll(m.net, xt, labels=load_labels(data, "test"))
    size = tuple(xt.shape[2:])
    s = class_samples(m, 10, size, seed=0)
    what = "MNIST's digits" if data == "mnist" else "scikit-learn's 8x8 digits"
    p = viz.samples_figure(s, 256, OUT / "samples-class-conditional.png",
                           f"class-conditional Gated PixelCNN on {what}: one row per label", rows=10,
                           row_labels=[str(k) for k in range(10)], force=True)
    sample_command = (f"arcodec sample -m runs/gallery/class-conditional/best.pt --size {size[0]}x{size[1]} "
                      "-n 10 -o classes.png")
    page.add("### Class-conditional", "",
             "No class-conditional model is shipped (an .arc file carries no label), so this page trains a small "
             f"one: a Gated PixelCNN with `classes=10` (hidden 32, 5 layers) on {what} and their labels, "
             f"{cfg.steps} steps of {cfg.batch} images with the training loop, `{command}` ({seconds:.0f} s; test NLL "
             f"{bpd:.3f} bits/dim with the true labels). Its checkpoint works with every command: "
             f"`{sample_command}` gives one row per digit.", "")
    page.figure(p, "one row per label 0..9, ten samples each (seed 0)", sample_command)

def queries(page: Page, args) -> list:
    page.add("## The course's queries", "",
             "Pixel (14, 14) is the middle one. Bars on a log scale (the distributions are peaked); "
             "[exact] or [approx.] in every title; see [inference.md](inference.md) for why each one is easy or "
             "hard and how far the approximations are from the truth on a model small enough to enumerate. "
             f"Settings: b) {args.b_samples} prefixes, d) {args.d_samples} prior prefixes x 256 values, "
             f"f, g) {args.n} samples, g) {args.proposals} prior draws per sample.", "")
    rows = []
    m = as_model("mnist-gated")
    for i, x in test_digits(args.images):
        ans = course_queries(m, x[0], (14, 14), samples=args.b_samples, future_samples=args.d_samples,
                             n=args.n, proposals=args.proposals, seed=0)
        p = viz.query_figure(ans, x, 256, OUT / f"queries-mnist-{i}.png",
                             f"mnist-gated, MNIST test image {i}", force=True)
        d = next(a for a in ans if a.key == "d")
        g = next(a for a in ans if a.key == "g")
        page.figure(p, f"MNIST test image {i}: d) effective sample size {d.info['ess']:.2f} of {args.d_samples}; "
                    f"g) mean effective sample size {g.info['ess_mean']:.2f} of {args.proposals}",
                    f"arcodec query test{i}.png -o queries.png --future-samples {args.d_samples} "
                    f"-n {args.n} --proposals {args.proposals}")
        rows += [a for a in ans if a.key in "fg"]
    from arcodec.training.data import load_dataset

    xc = load_dataset("colour-mnist", "test")[0].long()
    mc = as_model("colour-mnist-made")
    ans = course_queries(mc, xc, (14, 14), samples=args.b_samples, future_samples=args.d_samples,
                         n=args.n, proposals=args.proposals, seed=0)
    p = viz.query_figure(ans, xc, 4, OUT / "queries-colour-0.png", "colour-mnist-made, colour-MNIST test image 0",
                         force=True)
    page.figure(p, "colour-mnist-made: a pixel has 4^3 = 64 values; the bars show each channel's marginal",
                f"arcodec query colour0.png -m colour-mnist-made -o queries.png --future-samples {args.d_samples}")
    rows += [a for a in ans if a.key in "fg"]
    return rows


def inpainting(page: Page, rows: list) -> None:
    p = viz.inpainting_figure([r for r in rows if r.image.shape[0] == 1], 256, OUT / "inpainting-mnist.png",
                              "mnist-gated: f) bottom | top (exact), g) top | bottom (importance resampling)",
                              force=True)
    page.add("## Inpainting", "",
             "f) is exact: the raster order continues from the middle row. g) is not a raster conditional: every "
             "sample is the one of its prior draws that best explains the bottom half, kept with probability "
             "proportional to p(bottom | top). The effective sample sizes above say how few of the draws matter; "
             "`--sweeps` adds Metropolis-within-Gibbs moves (one forward pass per pixel and sweep).", "")
    page.figure(p, "given half in grey, the original, then samples", "arcodec viz inpaint a.png b.png -o inpaint.png")


def bits(page: Page) -> None:
    from arcodec.training.data import load_dataset, load_mnist

    page.add("## Where the bits go", "",
             "Code length -log2 p of every pixel from the exact tables the encoder hands the range coder; the "
             "title compares their sum with the payload of the file `arcodec compress` writes.", "")
    x = load_mnist("test")
    for i in (0, 1):
        bm = bits_map(x[i, 0].numpy(), "mnist-gated")
        p = viz.bits_figure(bm, OUT / f"bits-mnist-{i}.png", f"MNIST test image {i}, mnist-gated", force=True)
        page.figure(p, f"MNIST test image {i}: {bm.total_bits:.1f} bits of code length, payload "
                    f"{8 * bm.payload_bytes} bits, file {bm.file_bytes} bytes", "arcodec viz bits digit.png")
    xc = load_dataset("colour-mnist", "test")[0].permute(1, 2, 0).numpy()
    bm = bits_map(xc, "colour-mnist-made")
    p = viz.bits_figure(bm, OUT / "bits-colour-0.png", "colour-MNIST test image 0, colour-mnist-made", force=True)
    page.figure(p, f"colour-MNIST test image 0 (channels summed): {bm.total_bits:.1f} bits, payload "
                f"{8 * bm.payload_bytes} bits", "arcodec viz bits colour.png")


def receptive_fields(page: Page) -> None:
    from arcodec.registry import build_model, make_config
    from arcodec.registry import load_checkpoint

    page.add("## Receptive fields", "",
             "|d log p(x_(14,14)) / d x|, maximum over channels, on a random image; white: no dependence. The plain "
             "PixelCNN's stacked 3x3 masks leave a blind spot above right of the pixel (PixelCNN-MADE has the same "
             "features); the Gated PixelCNN's vertical and horizontal stacks have none.", "")
    entries, sources = [], []
    for arch, run, zoo in (("pixelcnn", "pixelcnn-mnist", None),
                           ("stack-pixelcnn", "stack-pixelcnn--no-gates--mnist", None),
                           ("gated-pixelcnn", None, "mnist-gated"), ("pixelcnn-made", None, "colour-mnist-made")):
        if zoo:
            trained = as_model(zoo).net
            sources.append(f"{arch}: shipped `{zoo}`")
        elif (FAMILY_RUNS / run / "last.pt").is_file():
            trained = as_model(load_checkpoint(FAMILY_RUNS / run / "last.pt")[0]).net
            sources.append(f"{arch}: `runs/family/{run}` (150 steps, `python benchmarks/pixelcnn_family.py`)")
        else:
            trained = None
            sources.append(f"{arch}: initialisation only (`python benchmarks/pixelcnn_family.py` trains one)")
        init = initialised_like(trained if trained is not None else build_model(arch, make_config(arch, {})))
        nets = [("initialisation", init)] + ([("trained", trained)] if trained is not None else [])
        entries.append((arch, nets))
    p = viz.receptive_field_figure(entries, OUT / "receptive-fields.png", force=True)
    page.add("Trained models: " + "; ".join(sources) + ".", "")
    page.figure(p, "one row per architecture: at initialisation (seed 0) and after training",
                "arcodec viz receptive-field -m mnist-gated -m runs/family/pixelcnn-mnist/last.pt -o rf.png")


def flows(page: Page) -> None:
    page.add("## Flows", "")
    if not (ZOO_DIR / "mnist-coupling.json").is_file():
        page.add("No flow model is shipped yet (`mnist-coupling`): `arcodec sample`, `arcodec viz flow-layers` and "
                 "`arcodec viz interpolate` draw its figures once it is.", "")
        return
    import arcodec.explore.flowviz as fv
    from arcodec.training.data import load_mnist

    m = as_model("mnist-coupling")
    p = fv.flow_sample_grid(m.net, OUT / "flow-samples.png", n=100, seed=0)
    page.figure(Path(p), "mnist-coupling: samples (seed 0)", "arcodec sample -m mnist-coupling -o samples.png")
    p = fv.flow_layers_figure(m.net, OUT / "flow-layers.png", n=10, seed=0)
    page.figure(Path(p), "mnist-coupling: layer by layer", "arcodec viz flow-layers -o layers.png")
    x = load_mnist("test")
    pairs = [(x[0], x[1]), (x[2], x[3]), (x[4], x[5])]
    p = fv.interpolation_figure(m.net, pairs, OUT / "flow-interpolation.png", points=10)
    page.figure(Path(p), "mnist-coupling: interpolations between test digits in latent space",
                "arcodec viz interpolate a.png b.png -o interp.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--colour-samples", type=int, default=64)
    ap.add_argument("--cond-steps", type=int, default=400)
    ap.add_argument("--images", type=int, default=2, help="MNIST conditioning images for the queries")
    ap.add_argument("--b-samples", type=int, default=32)
    ap.add_argument("--d-samples", type=int, default=4)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--proposals", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    page = Page()
    body = Page()
    for section in (samples, class_conditional):
        section(body, args)
    rows = queries(body, args)
    inpainting(body, rows)
    bits(body)
    receptive_fields(body)
    flows(body)
    page.add("# Gallery", "",
             f"Every figure below is drawn by `python benchmarks/gallery.py` (`make gallery`) from the shipped models "
             f"({time.perf_counter() - t0:.0f} s on {args.threads} CPU thread; the time of each figure is in its "
             "caption). The command under each figure draws the same kind of figure for any model or checkpoint. "
             "What is exact and what is approximated, and how well: [inference.md](inference.md).", "")
    PAGE.write_text("\n".join(page.lines + body.lines).rstrip() + "\n")
    print(f"{PAGE}: written ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
