"""``arcodec compress``, ``decompress``, ``info`` and ``models``: gzip-like manners."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from arcodec.cli.main import main
from arcodec.cli.progress import progress_bar
from arcodec.errors import ArcodecError


JOBS_HELP = ("Worker processes sharing the files [default: one per core, or this process alone for files "
             "of under 2^21 sub-pixels in all]; -j 1 works in this process. The bytes written are the same "
             "whatever the number.")


def _report_failures(failed, single: bool) -> None:
    """One line on stderr per input that failed, ``arcodec: error: FILE: reason``, then exit
    status 1; a single input's failure is an error as any other (its message alone)."""
    if not failed:
        return
    if single:
        raise ArcodecError(failed[0].reason)
    for f in failed:
        click.echo(f"arcodec: error: {f.message}", err=True)
    sys.exit(1)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file ('-' for stdout). With several inputs: an archive.")
@click.option("-m", "--model", default=None,
              help="Zoo model name or checkpoint path [default: auto: every shipped model that applies, "
                   "and the stored pixels; the smallest file wins].")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("-k", "--keep", is_flag=True, help="Keep the input files (always kept for archives and stdin).")
@click.option("--tile", type=click.IntRange(8, 4096), default=None,
              help="Tile side: tiles are decoded together as one batch [default: 64, whole images "
                   "for the local photo models].")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help=JOBS_HELP)
@click.option("-v", "--verbose", is_flag=True, help="Print sizes and bits/dim.")
@click.option("--explain", is_flag=True,
              help="Also draw IMG.bits.png: each pixel's code length beside the image (as arcodec viz bits).")
def compress(inputs, output, model, force, keep, tile, jobs, verbose, explain):
    """Compress images to .arc files.

    Without -o each IMG becomes IMG.arc and, as with gzip, IMG is removed unless -k is
    given. The .arc file keeps an ICC profile, EXIF, PNG text chunks, gamma and DPI, and
    decompressing writes them back; an image whose .arc file would not give everything back
    (other metadata, another mode or format) is kept, with a note saying why; palette and
    1-bit images come back in their mode, palette and transparency included. 16-bit images
    (gray PNG, TIFF, PGM; LA, RGB, RGBA PNG) come back as 16-bit images of their mode; other
    depths are refused, and so are 16-bit images in an archive. A bad image is reported and the others go on. With -o and several images or directories: one archive.

    \b
    Examples:
      arcodec compress digit.png               # digit.png -> digit.png.arc
      arcodec compress -k a.png b.png          # a.png.arc, b.png.arc; keeps the PNGs
      arcodec compress -j 4 photos/*.png       # four worker processes
      arcodec compress a.png b.png dir/ -o set.arc
      cat digit.png | arcodec compress - > digit.arc
    """
    from arcodec.codec.files import check_outputs, compress_paths, plan_compress, remove_inputs

    plan = plan_compress(inputs, output)
    explained = [path + ".bits.png" for path in plan.paths if path != "-"] if explain else []
    check_outputs(plan.targets + tuple(explained), force)  # refuse before doing any work
    done = compress_paths(plan, model=model, tile=tile, force=force, jobs=jobs,
                          progress=lambda total: progress_bar(total, "compress"))
    for target, enc in done.files:
        if verbose or (plan.archive and target != "-"):
            click.echo(f"{target}: {enc.subpixels} sub-pixels, {len(enc.data)} bytes, "
                       f"{8 * len(enc.data) / enc.subpixels:.4f} bits/dim "
                       f"(model NLL {enc.nll_bits / enc.subpixels:.4f})", err=True)
    if explain:
        from arcodec.codec.files import read_input
        from arcodec.explore.bitsmap import bits_map
        from arcodec.explore.figures import bits_figure
        from arcodec.imageio import read_image

        for path in done.coded:
            if path != "-":
                bm = bits_map(read_image(read_input(path), path), model, tile)
                bits_figure(bm, path + ".bits.png", f"where the bits go: {Path(path).name}", force=force)
                click.echo(f"{path}.bits.png: {bm.total_bits:.1f} bits of code length, "
                           f"payload {8 * bm.payload_bytes} bits", err=True)
    if plan.in_place and not keep:
        for path, lost in remove_inputs(done.coded):
            click.echo(f"arcodec: kept {path}: its {_and(lost)} {'is' if len(lost) == 1 else 'are'} "
                       f"not stored in .arc", err=True)
    _report_failures(done.failed, len(plan.paths) == 1)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--output",
              help="Output image ('-' for stdout), or directory for an archive. With several files: an "
                   "existing directory, where each file's output goes (IMG, or an archive's directory).")
@click.option("-m", "--model", default=None, help="Model, when the file was made with a checkpoint.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("-k", "--keep", is_flag=True, help="Keep the .arc files.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help=JOBS_HELP)
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Refuse files of more sub-pixels than this (an archive's images summed; default 2^29, "
                   "about 2 GiB of memory to decode). Raise it for larger files you trust.")
def decompress(files, output, model, force, keep, jobs, max_pixels):
    """Decompress .arc files; the CRC32 of the pixels is verified before anything is written.

    As with gzip each IMG.arc becomes IMG and is removed unless -k is given. A bad file is
    reported (nothing is written for it) and the others go on; the exit status is 1 if any
    failed.

    \b
    Examples:
      arcodec decompress digit.png.arc         # -> digit.png, removes digit.png.arc
      arcodec decompress -k set.arc -o outdir/ # restores every image of an archive
      arcodec decompress *.arc -o outdir/      # outdir/ must exist: outdir/IMG for each IMG.arc
      arcodec decompress - < digit.arc > digit.png
    """
    from arcodec.codec.api import DEFAULT_MAX_PIXELS
    from arcodec.codec.files import Failed, decompress_paths

    done = decompress_paths(files, output, model=model, force=force, jobs=jobs,
                            progress=lambda total: progress_bar(total, "decompress"),
                            max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    for file, r in zip(files, done):
        if isinstance(r, Failed):
            continue
        if r.header.archive:
            click.echo(f"{r.output}: {len(r.header.entries)} image(s) restored", err=True)
        if file != "-" and not keep:
            Path(file).unlink()
    _report_failures([r for r in done if isinstance(r, Failed)], len(files) == 1)


@main.command()
@click.argument("files", nargs=-1, required=True)
def info(files):
    """Header fields, sizes and bits/dim of .arc files (nothing is decoded).

    \b
    Example:
      arcodec info digit.png.arc
    """
    from arcodec.codec import container
    from arcodec.codec.files import read_input
    from arcodec.zoo import cards

    names = {c["id"]: c["name"] for c in cards()}
    for file in files:
        data = read_input(file)
        header, payload, crc = container.read(data)
        subpx = sum(e.subpixels for e in header.entries)
        over = len(data) - len(payload)
        click.echo(f"{file}:")
        click.echo(f"  format version   {header.version}{' (archive)' if header.archive else ''}")
        if header.method != container.METHOD_MODEL:
            click.echo(f"  method           {container.METHOD_NAMES[header.method]} (no model)")
        else:
            click.echo(f"  model            {names.get(header.model_id, '?')} (id {header.model_id}, "
                       f"fingerprint {header.fingerprint.hex()}, "
                       f"{'wavefront' if header.scan == container.SCAN_WAVEFRONT else 'raster'} scan, "
                       f"engine {header.engine})")
        click.echo(f"  bit depth, tile  {header.bit_depth}, {header.tile}")
        if header.levels:
            shown = ", ".join(map(str, header.levels[:8])) + (", ..." if len(header.levels) > 8 else "")
            click.echo(f"  level map        {len(header.levels)} levels ({shown}): the model coded their indices")
        if header.archive:
            click.echo(f"  images           {len(header.entries)}")
            if header.stream_crcs:
                click.echo("  stream CRC32s    yes: a stream decoded alone is verified (random access)")
            for e in header.entries[:10]:
                click.echo(f"    {e.name}  {e.height}x{e.width}x{e.channels}")
            if len(header.entries) > 10:
                click.echo(f"    ... {len(header.entries) - 10} more")
        else:
            e = header.entries[0]
            if header.sample_bits == container.WIDE_BITS:
                click.echo(f"  shape (H, W, C)  {e.height}, {e.width}, {e.channels // 2}")
                click.echo(f"  samples          16-bit samples (coded as {e.channels} byte planes: high, low)")
            else:
                click.echo(f"  shape (H, W, C)  {e.height}, {e.width}, {e.channels}")
        click.echo(f"  size             {len(data)} bytes = {over} header+CRC + {len(payload)} payload")
        if subpx:
            click.echo(f"  bits/dim         {8 * len(data) / subpx:.4f} ({subpx} sub-pixels)")
            if header.sample_bits == container.WIDE_BITS:
                click.echo(f"  bits/sample      {16 * len(data) / subpx:.4f} ({subpx // 2} 16-bit samples)")
        click.echo(f"  pixels CRC32     {crc:08x}")


@main.command()
def models():
    """List the shipped models, verifying each one's sha256."""
    from arcodec.zoo import cards, load_model

    rows = []
    for c in cards():
        try:
            load_model(c["name"])
            ok = "verified"
        except ArcodecError as e:
            ok = f"FAILED: {e}"
        if c.get("superseded_by"):
            ok += f", superseded by {c['superseded_by']} (decodes its files)"
        elif "applies" not in c:
            ok += ", by name only (no applies rule: --model auto never picks it)"
        data = c.get("data") or c.get("train_config", {}).get("data", "?")
        nll = (f"{c['test_nll_bpd']:.4f} test" if "test_nll_bpd" in c
               else f"{c['val_bpd']:.4f} val" if c.get("val_bpd") is not None else "?")
        rows.append((c["name"], str(c["id"]), c["arch"], data, nll, f"{c.get('size_bytes', 0) / 1e6:.2f} MB",
                     f"{c['sha256'][:12]}… {ok}"))
    head = ("name", "id", "architecture", "data", "NLL bits/dim", "size", "sha256")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


@main.command()
@click.option("-m", "--model", default=None, help="Model [default: the shipped MNIST model].")
def demo(model):
    """Compress the bundled sample images, decompress, verify, print a size table (`make run`)."""
    from arcodec.evaluation.demo import run

    run(model, echo=click.echo)
