"""``arcodec eval`` and ``arcodec plot``."""

from __future__ import annotations

import re
from pathlib import Path

import click

from arcodec.cli.main import main
from arcodec.cli.progress import progress_bar
from arcodec.errors import ArcodecError


@main.command("eval")
@click.option("-m", "--model", default=None,
              help="Zoo model name or checkpoint path [default: the best-ranked shipped model whose card applies].")
@click.option("--data", required=True, help="Data set name (its test split) or a folder of images.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--limit", type=click.IntRange(0), default=0, help="First N images only (0: all).")
@click.option("--batch", type=click.IntRange(1), default=None,
              help="Tiles coded together [default: 512]; 1 times every image alone.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="Per-image records [default: eval-MODEL-DATA.csv].")
@click.option("--data-root", default=None, help="Root of the torchvision data sets.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Also write an HTML page (REPORT/index.html, figures inline): summary, per-image histogram, "
                   "NLL against file bits, the worst images with their bit maps, training curves.")
@click.option("-f", "--force", is_flag=True, help="Overwrite the CSV (and the report).")
def eval_(model, data, split, limit, batch, csv_path, data_root, report_dir, force):
    """Compress every image to its own .arc file, decompress it, and report per image the
    model's NLL next to the real file's bits/dim (header included), the overhead, the
    encode/decode seconds and whether the round trip was exact.

    \b
    Examples:
      arcodec eval --data mnist --limit 500
      arcodec eval -m runs/x/best.pt --data digits
      arcodec eval --data ../shared/data/kodak --limit 2
      arcodec eval --data digits --limit 200 --report eval-digits/
    """
    from arcodec.codec.api import resolve
    from arcodec.evaluation.evaluate import evaluate_codec, evaluation_images, summarize, write_csv
    from arcodec.imageio import refuse_existing
    from arcodec.zoo import default_model

    images, names = evaluation_images(data, split, limit, data_root)
    m = resolve(model if model is not None else default_model(images))
    if csv_path is None:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(m.name).stem}-{Path(data).name or data}")
        csv_path = f"eval-{slug}.csv"
    refuse_existing(csv_path, force)
    if report_dir is not None:
        refuse_existing(Path(report_dir) / "index.html", force)
    with progress_bar(len(images), "eval", unit="img", unit_scale=False) as bar:
        records = evaluate_codec(m, images, names, batch, progress=bar.update)
    write_csv(records, csv_path)
    s = summarize(records)
    rows = [
        ("model", f"{m.name} (sha256 {m.sha256[:12]}…)"),
        ("data", f"{data} ({split if not Path(data).is_dir() else 'folder'}), {s['images']} images"),
        ("NLL (model)", f"{s['nll_bpd']:.4f} bits/dim"),
        ("achieved (real files)", f"{s['file_bpd']:.4f} bits/dim, header and CRC included"),
        ("overhead", f"{s['overhead_pct']:.2f} % ({s['overhead_bytes_per_file']:.1f} bytes per file)"),
        ("encode", f"{s['encode_img_s']:.2f} images/s"),
        ("decode", f"{s['decode_img_s']:.2f} images/s"),
        ("round trips exact", f"{s['roundtrips_ok']}/{s['images']}"),
        ("records", csv_path),
    ]
    if report_dir is not None:
        from arcodec.evaluation.report import write_report

        rows.append(("report", str(write_report(report_dir, records, s, m, images, data, force=True))))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k.ljust(width)}  {v}")
    if s["roundtrips_ok"] != s["images"]:
        raise ArcodecError(f"{s['images'] - s['roundtrips_ok']} round trip(s) failed: see {csv_path}")


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="[default: RUN/curves.png]")
def plot(run, output):
    """Draw the train and validation NLL (bits/dim) of a training run against steps.

    \b
    Example:
      arcodec plot runs/mnist-gated        # -> runs/mnist-gated/curves.png
    """
    from arcodec.explore.plots import plot_curves

    click.echo(f"wrote {plot_curves(run, output)}")
