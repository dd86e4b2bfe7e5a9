"""``arcodec sample``, ``arcodec query`` and ``arcodec viz ...``: generation and inference
figures for any shipped model or training checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from arcodec.cli.main import main
from arcodec.cli.progress import progress_bar
from arcodec.errors import ArcodecError

MODEL_HELP = "Zoo model name or checkpoint path (runs/x/best.pt)."


def _pixel(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.split(","))
    except ValueError:
        raise ArcodecError(f"--pixel takes ROW,COL (e.g. 14,14), got {text!r}") from None
    return r, c


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ArcodecError(f"--size takes HxW (e.g. 28x28), got {text!r}") from None
    if h < 1 or w < 1:
        raise ArcodecError("--size needs positive sides")
    return h, w


def _read(path: str):
    """An image file as (H, W, C) uint8."""
    from arcodec.imageio import read_image

    p = Path(path)
    if not p.is_file():
        raise ArcodecError(f"{path}: no such file")
    return read_image(p.read_bytes(), path)


def _check_inside(pos: tuple[int, int], shape: tuple[int, int]) -> None:
    if not (0 <= pos[0] < shape[0] and 0 <= pos[1] < shape[1]):
        raise ArcodecError(f"pixel {pos} is outside the {shape[0]}x{shape[1]} image")


def _flowviz(m, what: str):
    """arcodec.explore.flowviz, imported only for flow models."""
    if not m.is_flow:
        raise ArcodecError(f"{m.name} is not a flow: {what} needs a flow model (e.g. mnist-coupling)")
    if not all(hasattr(m.net, f) for f in ("sample", "inverse", "inverse_intermediates")):
        raise ArcodecError(f"{m.name} is a flow without a continuous sampler and inverse (an integer flow?): "
                           f"{what} needs a coupling flow such as mnist-coupling")
    try:
        import arcodec.explore.flowviz as flowviz
    except ImportError:
        raise ArcodecError(f"{what} needs arcodec.explore.flowviz, which this installation lacks") from None
    return flowviz


@main.command()
@click.option("-m", "--model", default="mnist-gated", show_default=True, help=MODEL_HELP)
@click.option("-o", "--output", required=True, help="PNG to write.")
@click.option("-n", "--number", type=click.IntRange(1, 1024), default=100, show_default=True,
              help="Samples (per class for a class-conditional model).")
@click.option("--label", type=int, default=None, help="Class-conditional model: one class only.")
@click.option("--size", default="28x28", show_default=True, help="Image size HxW (autoregressive models).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite the output.")
def sample(model, output, number, label, size, seed, force):
    """Draw samples from a model into a grid (values scaled to 0..255).

    Autoregressive models: ancestral sampling in raster order; a class-conditional model
    (config.classes > 0) gives one row per class unless --label picks one. Flows: z ~ prior,
    x = f^-1(z).

    \b
    Examples:
      arcodec sample -m mnist-gated -n 100 -o samples.png
      arcodec sample -m runs/cond/best.pt -n 10 -o classes.png     # one row per digit
      arcodec sample -m mnist-coupling -o flow.png
    """
    from arcodec.explore.model import as_model
    from arcodec.explore.sampling import class_samples, sample
    from arcodec.explore.figures import check_output, samples_figure
    from arcodec.imageio import atomic_path

    check_output(output, force)
    m = as_model(model)
    if m.is_flow:
        fv = _flowviz(m, "sampling a flow")
        with atomic_path(output, force, suffix=".png") as tmp:
            fv.flow_sample_grid(m.net, tmp, n=number, seed=seed)
        click.echo(f"{output}: {number} samples of {m.name} (seed {seed})", err=True)
        return
    h, w = _size(size)
    per_class = bool(m.classes) and label is None  # one row per class
    with progress_bar((m.classes if per_class else 1) * number * h * w * m.channels, "sample") as bar:
        if per_class:
            x = class_samples(m, number, (h, w), seed=seed, progress=bar.update)
        else:
            x = sample(m, number, (h, w), seed=seed, y=label, progress=bar.update)
    rows, row_labels = (m.classes, [str(k) for k in range(m.classes)]) if per_class else (None, None)
    what = f"class {label}" if label is not None else ("one row per class" if rows else "")
    samples_figure(x, m.levels, output, f"{m.name}: {len(x)} samples{', ' + what if what else ''} (seed {seed})",
                   rows=rows, row_labels=row_labels, force=force)
    click.echo(f"{output}: {len(x)} samples of {m.name} (seed {seed})", err=True)


@main.command()
@click.argument("image")
@click.option("-m", "--model", default="mnist-gated", show_default=True, help=MODEL_HELP)
@click.option("-o", "--output", default=None, help="PNG of the answers (bar charts, sample rows).")
@click.option("-q", "--queries", default="abcdefg", show_default=True,
              help="Which of the course's queries: a first pixel, b middle, c | past, d | future, e | rest, "
                   "f bottom | top, g top | bottom.")
@click.option("--pixel", default=None, help="ROW,COL of the queried pixel [default: the middle one].")
@click.option("--samples", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="b: prefixes sampled for the Monte Carlo marginal.")
@click.option("--future-samples", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="d: prior prefixes of the importance sampler (each costs one pass per pixel value).")
@click.option("-n", "--number", type=click.IntRange(1, 256), default=8, show_default=True,
              help="f, g: samples of the missing half.")
@click.option("--proposals", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="g: prior draws per sample (importance resampling).")
@click.option("--sweeps", type=click.IntRange(0, 100), default=0, show_default=True,
              help="g: Metropolis-within-Gibbs sweeps after resampling (one forward pass per pixel per sweep).")
@click.option("--label", type=int, default=None, help="The class, for a class-conditional model.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite the output.")
def query(image, model, output, queries, pixel, samples, future_samples, number, proposals, sweeps, label, seed,
          force):
    """The course's likelihood queries on IMAGE, exact where the raster order makes them easy,
    approximated where it does not; prints each answer (mean, most likely values, exact or
    approximate and how) and draws them with -o.

    \b
    a) p(x_first)                 exact, one pass
    b) p(x_mid)                   Monte Carlo over ancestral prefixes
    c) p(x_mid | above, left)     exact, one pass
    d) p(x_mid | below, right)    importance sampling with prior prefixes
    e) p(x_mid | all others)      exact, one pass per pixel value (Bayes)
    f) bottom half | top half     exact, ancestral sampling
    g) top half | bottom half     importance resampling (+ optional MCMC sweeps)

    \b
    Examples:
      arcodec query digit.png                          # all of them, numbers only
      arcodec query digit.png -q ce -o answers.png     # the exact ones, with bar charts
      arcodec query digit.png -q g --proposals 64 --sweeps 2 -o top.png
    """
    from arcodec.explore.model import as_model, require_causal
    from arcodec.explore.queries import course_queries, describe
    from arcodec.explore.figures import check_output, query_figure

    if output is not None:
        check_output(output, force)
    bad = sorted(set(queries) - set("abcdefg"))
    if bad or not queries:
        raise ArcodecError(f"unknown query {''.join(bad)!r}: choose from a, b, c, d, e, f, g")
    m = as_model(model)
    require_causal(m)
    img = _read(image)
    pos = _pixel(pixel) if pixel else (img.shape[0] // 2, img.shape[1] // 2)
    _check_inside(pos, img.shape[:2])
    answers = []
    with progress_bar(len(queries), "query", unit="query", unit_scale=False) as bar:
        for k in queries:
            a = course_queries(m, img, pos, samples=samples, future_samples=future_samples, n=number,
                               proposals=proposals, sweeps=sweeps, seed=seed, y=label, which=k)[0]
            click.echo(describe(a, m.levels, m.channels))
            answers.append(a)
            bar.update(1)
    if output is not None:
        import torch

        x = torch.from_numpy(img.copy()).permute(2, 0, 1).long()
        query_figure(answers, x, m.levels, output, f"{m.name} on {Path(image).name}", force=force)
        click.echo(f"{output}: written", err=True)


@main.group()
def viz():
    """Figures: where the bits go, receptive fields, inpainting, flow layers and interpolations.

    \b
    Examples:
      arcodec viz bits digit.png -o bits.png
      arcodec viz receptive-field -m mnist-gated -o rf.png
      arcodec viz inpaint digit.png -o inpaint.png
      arcodec viz flow-layers -m mnist-coupling -o layers.png
      arcodec viz interpolate a.png b.png -m mnist-coupling -o interp.png
    """


@viz.command("bits")
@click.argument("image")
@click.option("-m", "--model", default=None,
              help=MODEL_HELP + " [default: the best-ranked shipped model whose card applies]")
@click.option("-o", "--output", default=None, help="PNG to write [default: IMAGE.bits.png].")
@click.option("--tile", type=click.IntRange(8, 4096), default=64, show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite the output.")
def viz_bits(image, model, output, tile, force):
    """Where the bits go: IMAGE beside a heat map of each pixel's code length (-log2 p, bits),
    from the codec's own exact tables; prints their sum next to the file's payload."""
    from arcodec.explore.bitsmap import bits_map
    from arcodec.explore.figures import bits_figure, check_output

    output = output or image + ".bits.png"
    check_output(output, force)
    bm = bits_map(_read(image), model, tile)
    bits_figure(bm, output, f"where the bits go: {Path(image).name} with {bm.model}", force=force)
    click.echo(f"{image}: {bm.total_bits:.1f} bits of code length, payload {8 * bm.payload_bytes} bits, "
               f"file {bm.file_bytes} bytes ({bm.model}); {output} written")


@viz.command("receptive-field")
@click.option("-m", "--model", "models", multiple=True, default=("mnist-gated",), show_default=True,
              help=MODEL_HELP + " Repeat to compare models.")
@click.option("-o", "--output", required=True, help="PNG to write.")
@click.option("--init/--no-init", default=True, show_default=True,
              help="Also draw the same architecture at random initialisation (seed 0).")
@click.option("--pixel", default="14,14", show_default=True, help="ROW,COL of the pixel.")
@click.option("--size", default="28x28", show_default=True, help="Image size HxW.")
@click.option("-f", "--force", is_flag=True, help="Overwrite the output.")
def viz_receptive_field(models, output, init, pixel, size, force):
    """|d log p(x_pixel) / d x|, maximum over channels, of each model (and of its
    architecture at initialisation): the plain PixelCNN's blind spot, the gated one's none."""
    from arcodec.explore.model import as_model, initialised_like
    from arcodec.explore.figures import check_output, receptive_field_figure

    check_output(output, force)
    shape, pos = _size(size), _pixel(pixel)
    _check_inside(pos, shape)
    entries = []
    for name in models:
        m = as_model(name)
        if m.is_flow:
            raise ArcodecError(f"{m.name} is a flow: receptive fields are drawn for autoregressive models")
        nets = [("trained", m.net)]
        if init:
            nets.insert(0, ("initialisation", initialised_like(m.net)))
        entries.append((f"{m.name} ({getattr(m.net, 'arch', type(m.net).__name__)})", nets))
    receptive_field_figure(entries, output, shape, pos, force=force)
    click.echo(f"{output}: written", err=True)


@viz.command("inpaint")
@click.argument("images", nargs=-1, required=True)
@click.option("-m", "--model", default="mnist-gated", show_default=True, help=MODEL_HELP)
@click.option("-o", "--output", required=True, help="PNG to write.")
@click.option("-n", "--number", type=click.IntRange(1, 64), default=6, show_default=True)
@click.option("--proposals", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--sweeps", type=click.IntRange(0, 100), default=0, show_default=True)
@click.option("--label", type=int, default=None, help="The class, for a class-conditional model.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite the output.")
def viz_inpaint(images, model, output, number, proposals, sweeps, label, seed, force):
    """Bottom half given the top (exact) and top half given the bottom (importance
    resampling, optional MCMC sweeps) for each of IMAGES."""
    from arcodec.explore.inpainting import inpaint_bottom, inpaint_top
    from arcodec.explore.model import as_model, require_causal
    from arcodec.explore.figures import check_output, inpainting_figure

    check_output(output, force)
    m = as_model(model)
    require_causal(m)
    rows = []
    for path in images:
        img = _read(path)
        rows.append(inpaint_bottom(m, img, number, seed, label))
        rows.append(inpaint_top(m, img, number, seed, proposals, sweeps, label))
        click.echo(f"{path}: g) {rows[-1].method}; mean ESS {rows[-1].info['ess_mean']:.2f}")
    inpainting_figure(rows, m.levels, output, f"{m.name}: inpainting (seed {seed})", force=force)
    click.echo(f"{output}: written", err=True)


@viz.command("flow-layers")
@click.option("-m", "--model", default="mnist-coupling", show_default=True, help="A flow model.")
@click.option("-o", "--output", required=True, help="PNG to write.")
@click.option("-n", "--number", type=click.IntRange(1, 64), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite the output.")
def viz_flow_layers(model, output, number, seed, force):
    """A flow's samples layer by layer, from the latent to the image."""
    from arcodec.explore.model import as_model
    from arcodec.imageio import atomic_path

    m = as_model(model)
    fv = _flowviz(m, "viz flow-layers")
    with atomic_path(output, force, suffix=".png") as tmp:
        fv.flow_layers_figure(m.net, tmp, n=number, seed=seed)
    click.echo(f"{output}: written", err=True)


@viz.command("interpolate")
@click.argument("images", nargs=-1, required=True)
@click.option("-m", "--model", default="mnist-coupling", show_default=True, help="A flow model.")
@click.option("-o", "--output", required=True, help="PNG to write.")
@click.option("--points", type=click.IntRange(2, 64), default=10, show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite the output.")
def viz_interpolate(images, model, output, points, force):
    """Interpolations in a flow's latent space between pairs of IMAGES (A B [C D ...])."""
    import torch

    from arcodec.explore.model import as_model
    from arcodec.imageio import atomic_path

    if len(images) % 2:
        raise ArcodecError("interpolate takes pairs of images: A B [C D ...]")
    m = as_model(model)
    fv = _flowviz(m, "viz interpolate")
    tens = []
    for path in images:
        a = _read(path)
        if a.shape[2] != 1:
            raise ArcodecError(f"{path}: a grayscale image is needed")
        tens.append(torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous())
    pairs = list(zip(tens[::2], tens[1::2]))
    with atomic_path(output, force, suffix=".png") as tmp:
        fv.interpolation_figure(m.net, pairs, tmp, points=points)
    click.echo(f"{output}: written", err=True)
