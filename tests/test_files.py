"""Many files (gzip's manners: go on past a bad one), many processes (the same bytes), and
never removing an input whose .arc file cannot give everything back."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, PngImagePlugin

from arcodec.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def rgb(seed: int = 0, size: int = 8) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture
def made(tmp_path):
    """Small PNGs: one plain RGB, three with metadata an .arc file stores (ICC profile, text,
    EXIF), a palette and a 1-bit one (stored too), and one with what it does not store (an
    sRGB intent)."""
    im = rgb()
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "made by hand")
    exif = Image.Exif()
    exif[0x010F] = "camera"
    im.save(tmp_path / "plain.png")
    im.save(tmp_path / "icc.png", icc_profile=b"\0" * 128)
    im.save(tmp_path / "text.png", pnginfo=text)
    im.save(tmp_path / "exif.png", exif=exif)
    srgb = PngImagePlugin.PngInfo()
    srgb.add(b"sRGB", b"\x00")
    im.save(tmp_path / "srgb.png", pnginfo=srgb)
    im.convert("P").save(tmp_path / "palette.png")
    im.convert("1").save(tmp_path / "bilevel.png")
    return tmp_path


def test_lossless_for_names_what_an_arc_file_would_lose(made):
    from arcodec.imageio import lossless_for

    assert lossless_for(made / "plain.png") == []
    for stored in ("icc.png", "text.png", "exif.png", "palette.png", "bilevel.png"):  # the .arc file keeps them
        assert lossless_for(made / stored) == []
    assert lossless_for(made / "srgb.png") == ["sRGB intent"]
    rgb().convert("LA").save(made / "gray-alpha.png")  # LA is stored and written back as LA
    assert lossless_for(made / "gray-alpha.png") == []
    rgb().save(made / "photo.jpg")
    assert lossless_for(made / "photo.jpg") == ["JPEG format (it would come back as PNG)"]


def test_compress_keeps_the_inputs_it_cannot_give_back(tiny, made):
    r = run("compress", "-j", 1, "-m", tiny.name, *sorted(made.glob("*.png")))
    assert r.exit_code == 0, r.output
    for name in ("plain.png", "icc.png", "text.png", "exif.png", "palette.png", "bilevel.png"):
        assert not (made / name).exists() and (made / (name + ".arc")).exists()
    assert r.output == f"arcodec: kept {made / 'srgb.png'}: its sRGB intent is not stored in .arc\n"
    assert (made / "srgb.png").exists() and (made / "srgb.png.arc").exists()


def test_several_processes_write_the_same_bytes_and_go_on_past_a_bad_file(tiny, digits, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for d in (one, two):
        d.mkdir()
        for i in range(3):
            Image.fromarray(digits[i]).save(d / f"d{i}.png")
    assert run("compress", "-j", 1, "-m", tiny.name, *sorted(one.glob("*.png"))).exit_code == 0
    r = run("compress", "-j", 2, "-m", tiny.name, *sorted(two.glob("*.png")))
    assert r.exit_code == 0, r.output
    for i in range(3):
        assert (one / f"d{i}.png.arc").read_bytes() == (two / f"d{i}.png.arc").read_bytes()
    assert not list(two.glob("*.png"))

    (two / "bad.png.arc").write_bytes(b"garbage")
    files = sorted(two.glob("*.arc"))
    r = run("decompress", "-j", 2, "-m", tiny.name, *files)
    assert r.exit_code == 1
    assert r.output.strip() == f"arcodec: error: {two / 'bad.png.arc'}: not an arcodec file (wrong magic bytes)"
    assert sorted(p.name for p in two.iterdir()) == ["bad.png.arc", "d0.png", "d1.png", "d2.png"]
    for i in range(3):
        assert np.array_equal(np.asarray(Image.open(two / f"d{i}.png")), digits[i])


def test_decompress_several_files_into_a_directory(tiny, digits, tmp_path):
    for i in range(2):
        Image.fromarray(digits[i]).save(tmp_path / f"d{i}.png")
    assert run("compress", "-j", 1, "-m", tiny.name, tmp_path / "d0.png", tmp_path / "d1.png").exit_code == 0
    arcs = [tmp_path / "d0.png.arc", tmp_path / "d1.png.arc"]
    r = run("decompress", "-k", "-j", 1, "-m", tiny.name, *arcs, "-o", tmp_path / "nowhere")
    assert r.exit_code == 1 and "-o must name an existing directory" in r.output
    r = run("decompress", "-k", "-j", 1, "-m", tiny.name, arcs[0], "-", "-o", tmp_path)
    assert r.exit_code == 1 and "standard input ('-') cannot be one of several inputs" in r.output
    out = tmp_path / "out"
    out.mkdir()
    r = run("decompress", "-k", "-j", 1, "-m", tiny.name, *arcs, "-o", out)
    assert r.exit_code == 0, r.output
    for i in range(2):
        assert np.array_equal(np.asarray(Image.open(out / f"d{i}.png")), digits[i])
    # the outputs exist now: each file fails alone, the inputs stay
    r = run("decompress", "-j", 1, "-m", tiny.name, *arcs, "-o", out)
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 2 and "already exists" in r.output
    assert all(a.exists() for a in arcs)


def test_the_library_reports_each_failure_in_order(tiny, digits, tmp_path):
    from arcodec.codec.api import encode_images
    from arcodec.codec.files import Failed, decompress_paths

    good = tmp_path / "g.png.arc"
    good.write_bytes(encode_images([digits[0]], model=tiny).data)
    (tmp_path / "t.png.arc").write_bytes(good.read_bytes()[:-6])
    done = decompress_paths([str(tmp_path / "missing.arc"), str(good), str(tmp_path / "t.png.arc")], model=tiny)
    assert isinstance(done[0], Failed) and done[0].message == f"{tmp_path / 'missing.arc'}: no such file"
    assert done[1].output == str(tmp_path / "g.png") and not done[1].header.archive
    assert isinstance(done[2], Failed) and not (tmp_path / "t.png").exists()


def test_small_files_are_coded_in_this_process_unless_workers_are_asked_for(tiny, tmp_path, monkeypatch):
    """Starting a worker (torch, the models) costs seconds: without -j, files of fewer than
    IN_PROCESS_SUBPIXELS sub-pixels in all are coded here; -j N is obeyed as given."""
    from arcodec.codec import files

    pools = []  # the processes of each pool started

    def in_this_process(work, shares, args, update):  # files._in_pool, with the shares run here
        pools.append(len(shares))
        return [r for share in shares for r in work(share, *args, update)]

    monkeypatch.setattr(files, "_in_pool", in_this_process)
    pngs = [tmp_path / f"d{i}.png" for i in range(2)]
    images = np.random.default_rng(0).integers(0, 256, (2, 6, 6), dtype=np.uint8)
    for a, p in zip(images, pngs):
        Image.fromarray(a).save(p)
    arcs = [str(p) + ".arc" for p in pngs]
    out = tmp_path / "out"
    out.mkdir()
    assert run("compress", "-k", "-m", tiny.name, *pngs).exit_code == 0 and pools == []
    assert run("decompress", "-k", "-m", tiny.name, *arcs, "-o", out).exit_code == 0 and pools == []
    assert run("compress", "-k", "-f", "-j", 2, "-m", tiny.name, *pngs).exit_code == 0 and pools == [2]
    assert run("decompress", "-k", "-f", "-j", 2, "-m", tiny.name, *arcs, "-o", out).exit_code == 0
    assert pools == [2, 2]
    monkeypatch.setattr(files, "IN_PROCESS_SUBPIXELS", 2 * 36)  # two 6 x 6 images are large files now
    monkeypatch.setattr(files, "default_jobs", lambda: 4)  # four cores: a worker for each file
    assert run("compress", "-k", "-f", "-m", tiny.name, *pngs).exit_code == 0
    assert run("decompress", "-k", "-f", "-m", tiny.name, *arcs, "-o", out).exit_code == 0
    assert pools == [2, 2, 2, 2]
    for a, p in zip(images, pngs):
        assert np.array_equal(np.asarray(Image.open(out / p.name)), a)


def test_with_workers_the_parent_reads_only_the_headers(tmp_path, monkeypatch):
    """decompress_paths with workers sizes the progress bar from each file's first bytes
    (files.HEADER_PREFIX, all of it when the header is longer) and leaves the reading to the
    workers: each file is read once."""
    from arcodec.codec import container, files

    big = tmp_path / "big.png.arc"  # a stored 300 x 300 image: 90 KB, a header of a few bytes
    stored = container.Header(0, b"\0\0", (container.Entry(300, 300, 1),), method=container.METHOD_RAW)
    big.write_bytes(container.write(stored, bytes(90_000), [np.zeros((300, 300, 1), np.uint8)]))
    rng = np.random.default_rng(0)
    entries = tuple(container.Entry(28, 28, 1, f"{rng.bytes(32).hex()}.png") for _ in range(3000))
    archive = tmp_path / "set.arc"  # a stored archive whose entry table is longer than the prefix
    pixels = [np.zeros((28, 28, 1), np.uint8)] * len(entries)
    header = container.Header(0, b"\0\0", entries, archive=True, method=container.METHOD_RAW)
    archive.write_bytes(container.write(header, bytes(784 * len(entries)), pixels))
    assert container.read_header(archive.read_bytes())[1] > files.HEADER_PREFIX
    prefixes = []
    read_header = container.read_header
    monkeypatch.setattr(container, "read_header", lambda data: (prefixes.append(len(data)), read_header(data))[1])
    assert files.peek_header(str(big)).entries == (container.Entry(300, 300, 1),)
    assert files.peek_header(str(archive)).entries == entries
    assert prefixes == [files.HEADER_PREFIX, files.HEADER_PREFIX, archive.stat().st_size]

    shared = {}

    def spread(work, items, jobs, total, progress, *args):  # files.spread: what the workers are given
        shared.update(items=items, jobs=jobs, total=total)
        return []

    def read_input(path):
        raise AssertionError(f"{path} read whole in the parent")

    monkeypatch.setattr(files, "spread", spread)
    monkeypatch.setattr(files, "read_input", read_input)
    files.decompress_paths([str(big), str(archive), str(tmp_path / "missing.arc")], jobs=2)
    assert [data for _, _, data in shared["items"]] == [None] * 3  # each worker reads its own files
    assert shared["jobs"] == 2 and shared["total"] == 90_000 + 784 * len(entries)
