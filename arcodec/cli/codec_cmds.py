"""``arcodec compress``, ``decompress``, ``info`` and ``models``: gzip-like manners."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from arcodec.cli.main import main
from arcodec.errors import ArcodecError

SUFFIX = ".arc"


def _bar(total: int, desc: str):
    from tqdm import tqdm

    # only on a terminal and only for long work (tqdm hides itself when stderr is no tty)
    return tqdm(total=total, desc=desc, unit="px", unit_scale=True, leave=False, disable=None,
                file=sys.stderr, delay=0.5)


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.exists():
        raise ArcodecError(f"{path}: no such file")
    if p.is_dir():
        raise ArcodecError(f"{path} is a directory")
    return p.read_bytes()


def _write_output(target: str, data: bytes, force: bool) -> None:
    from arcodec.imageio import write_atomic

    if target == "-":
        if sys.stdout.isatty() and not force:
            raise ArcodecError("binary data not written to a terminal (use -f to force)")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomic(Path(target), data, force)


def _expand(inputs: tuple[str, ...]) -> list[tuple[str, str]]:
    """(path, archive name) for every input; directories give their images, sorted."""
    from arcodec.imageio import IMAGE_SUFFIXES

    out = []
    for item in inputs:
        p = Path(item)
        if item != "-" and p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ArcodecError(f"{item}: directory holds no images")
            out += [(str(q), q.relative_to(p.parent).as_posix()) for q in found]
        else:
            out.append((item, "stdin.png" if item == "-" else p.name))
    return out


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
@click.option("-v", "--verbose", is_flag=True, help="Print sizes and bits/dim.")
@click.option("--explain", is_flag=True,
              help="Also draw IMG.bits.png: each pixel's code length beside the image (as arcodec viz bits).")
def compress(inputs, output, model, force, keep, tile, verbose, explain):
    """Compress images to .arc files.

    Without -o each IMG becomes IMG.arc and, as with gzip, IMG is removed unless -k is
    given (decompressing restores the pixels exactly, not the original file's bytes or
    metadata). With -o and several images or directories: one archive.

    \b
    Examples:
      arcodec compress digit.png               # digit.png -> digit.png.arc
      arcodec compress -k a.png b.png          # a.png.arc, b.png.arc; keeps the PNGs
      arcodec compress a.png b.png dir/ -o set.arc
      cat digit.png | arcodec compress - > digit.arc
    """
    from arcodec.codec.api import encode_images, encode_many
    from arcodec.imageio import read_image

    items = _expand(inputs)
    archive = output is not None and (len(items) > 1 or any(Path(i).is_dir() for i in inputs if i != "-"))
    if output is None and any(path == "-" for path, _ in items):
        output = "-"
    if output is not None and len(items) > 1 and not archive:
        raise ArcodecError("several inputs need -o ARCHIVE.arc")
    targets = [output] if output is not None else [path + SUFFIX for path, _ in items]
    explained = [path + ".bits.png" for path, _ in items if path != "-"] if explain else []
    for target in targets + explained:  # refuse before doing any work
        if target != "-" and Path(target).exists() and not force:
            raise ArcodecError(f"{target} already exists (use -f to overwrite)")
    images = [read_image(_read_input(path), path) for path, _ in items]
    total = sum(a.size for a in images)
    with _bar(total, "compress") as bar:
        if output is not None:
            encs = [encode_images(images, [n for _, n in items] if archive else None, model=model,
                                  tile=tile, archive=archive, progress=bar.update)]
        else:  # one file per image, all images through the model together
            encs = encode_many(images, model=model, tile=tile, progress=bar.update)
    for target, enc in zip(targets, encs):
        _write_output(target, enc.data, force)
        if verbose or (archive and target != "-"):
            click.echo(f"{target}: {enc.subpixels} sub-pixels, {len(enc.data)} bytes, "
                       f"{8 * len(enc.data) / enc.subpixels:.4f} bits/dim "
                       f"(model NLL {enc.nll_bits / enc.subpixels:.4f})", err=True)
    if explain:
        from arcodec.explore.inference import bits_map
        from arcodec.explore.figures import bits_figure

        for (path, _), image in zip(items, images):
            if path != "-":
                bm = bits_map(image, model, tile)
                bits_figure(bm, path + ".bits.png", f"where the bits go: {Path(path).name}", force=force)
                click.echo(f"{path}.bits.png: {bm.total_bits:.1f} bits of code length, "
                           f"payload {8 * bm.payload_bytes} bits", err=True)
    if output is None and not keep:
        for path, _ in items:
            Path(path).unlink()


def _safe_name(name: str) -> Path:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ArcodecError(f"archive holds an unsafe name {name!r}; refusing to write it")
    return p


@main.command()
@click.argument("file")
@click.option("-o", "--output", help="Output image ('-' for stdout), or directory for an archive.")
@click.option("-m", "--model", default=None, help="Model, when the file was made with a checkpoint.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("-k", "--keep", is_flag=True, help="Keep the .arc file.")
def decompress(file, output, model, force, keep):
    """Decompress an .arc file; the CRC32 of the pixels is verified before anything is written.

    \b
    Examples:
      arcodec decompress digit.png.arc         # -> digit.png, removes digit.png.arc
      arcodec decompress -k set.arc -o outdir/ # restores every image of an archive
      arcodec decompress - < digit.arc > digit.png
    """
    from arcodec.codec import container
    from arcodec.codec.api import decode_file
    from arcodec.imageio import encode_png, write_image

    data = _read_input(file)
    header, _, _ = container.read(data)
    if output is None:
        if file == "-":
            output = "-"
        elif file.endswith(SUFFIX) and len(file) > len(SUFFIX):
            output = file[: -len(SUFFIX)]
        else:
            raise ArcodecError(f"{file}: unknown suffix (expected {SUFFIX}); name the output with -o")
    if header.archive and output == "-":
        raise ArcodecError("an archive cannot go to stdout; name a directory with -o")
    if not header.archive and output != "-" and Path(output).exists() and not force:
        raise ArcodecError(f"{output} already exists (use -f to overwrite)")
    targets = [Path(output) / _safe_name(e.name) for e in header.entries] if header.archive else []
    if len(set(targets)) != len(targets):
        raise ArcodecError("the archive holds a name more than once; refusing to write any of it")
    for t in targets:
        if t.exists() and not force:
            raise ArcodecError(f"{t} already exists (use -f to overwrite)")
    total = sum(e.subpixels for e in header.entries)
    with _bar(total, "decompress") as bar:
        header, images = decode_file(data, model=model, progress=bar.update)
    if header.archive:
        for t, a in zip(targets, images):
            write_image(t, a, force)
        click.echo(f"{output}: {len(images)} image(s) restored", err=True)
    elif output == "-":
        _write_output("-", encode_png(images[0]), force)
    else:
        write_image(Path(output), images[0], force)
    if file != "-" and not keep:
        Path(file).unlink()


@main.command()
@click.argument("files", nargs=-1, required=True)
def info(files):
    """Header fields, sizes and bits/dim of .arc files (nothing is decoded).

    \b
    Example:
      arcodec info digit.png.arc
    """
    from arcodec.codec import container
    from arcodec.zoo import cards

    names = {c["id"]: c["name"] for c in cards()}
    for file in files:
        data = _read_input(file)
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
                       f"{'wavefront' if header.scan == container.SCAN_WAVEFRONT else 'raster'} scan)")
        click.echo(f"  bit depth, tile  {header.bit_depth}, {header.tile}")
        if header.levels:
            shown = ", ".join(map(str, header.levels[:8])) + (", ..." if len(header.levels) > 8 else "")
            click.echo(f"  level map        {len(header.levels)} levels ({shown}): the model coded their indices")
        if header.archive:
            click.echo(f"  images           {len(header.entries)}")
            for e in header.entries[:10]:
                click.echo(f"    {e.name}  {e.height}x{e.width}x{e.channels}")
            if len(header.entries) > 10:
                click.echo(f"    ... {len(header.entries) - 10} more")
        else:
            e = header.entries[0]
            click.echo(f"  shape (H, W, C)  {e.height}, {e.width}, {e.channels}")
        click.echo(f"  size             {len(data)} bytes = {over} header+CRC + {len(payload)} payload")
        if subpx:
            click.echo(f"  bits/dim         {8 * len(data) / subpx:.4f} ({subpx} sub-pixels)")
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
        rows.append((c["name"], str(c["id"]), c["arch"], c.get("data", "?"),
                     f"{c.get('test_nll_bpd', float('nan')):.4f}", f"{c.get('size_bytes', 0) / 1e6:.2f} MB",
                     f"{c['sha256'][:12]}… {ok}"))
    head = ("name", "id", "architecture", "data", "test NLL bpd", "size", "sha256")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


@main.command()
@click.option("-m", "--model", default=None, help="Model [default: the shipped MNIST model].")
def demo(model):
    """Compress the bundled sample images, decompress, verify, print a size table (`make run`)."""
    from arcodec.evaluation.demo import run

    run(model, echo=click.echo)
