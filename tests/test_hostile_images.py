"""Image files of every mode through ``arcodec compress``: coded losslessly (the input removed
only when its .arc file gives everything back) or refused with one line and exit status 1,
never a traceback and never silently fewer bits. Pillow loads 16-bit RGB, RGBA and LA PNGs
and PPMs of more than 8 bits as 8 bits without a word: those are told apart from the file's
header (:func:`arcodec.imageio.sample_bits`); 16-bit gray (PNG, TIFF, PGM) and 16-bit colour
PNGs are coded (header tag 11), other depths refused."""

import struct
import zlib

import numpy as np
import png
import pytest
from click.testing import CliRunner
from PIL import Image

import arcodec
import arcodec.pillow  # noqa: F401  (registers the format)
from arcodec.cli import main
from arcodec.codec import container
from arcodec.codec.api import encode_images
from arcodec.errors import ArcodecError
from arcodec.imageio import sample_bits

RNG = np.random.default_rng(7)
GRAY = RNG.integers(0, 256, (6, 7), dtype=np.uint8)
COLOUR = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, kind, body, CRC32."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png16(path, samples: np.ndarray, colour_type: int, extra: tuple[bytes, ...] = ()) -> None:
    """A 16-bit PNG (Pillow writes none but grayscale): ``samples`` (H, W, C) uint16,
    colour type 0 gray, 2 RGB, 4 gray and alpha, 6 RGBA; ``extra`` chunks before the IDAT."""
    h, w = samples.shape[:2]
    rows = b"".join(b"\0" + samples[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
                     + b"".join(extra) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def tiff16(path, samples: np.ndarray) -> None:
    """An uncompressed 16-bit RGB TIFF (Pillow writes none): ``samples`` (H, W, 3) uint16."""
    h, w = samples.shape[:2]
    bits_at = 8 + 2 + 12 * 10 + 4  # after the header and an IFD of 10 entries
    pixels_at = bits_at + 6

    def short(tag: int, value: int) -> bytes:
        return struct.pack("<HHIHH", tag, 3, 1, value, 0)

    def long(tag: int, value: int) -> bytes:
        return struct.pack("<HHII", tag, 4, 1, value)

    ifd = [short(256, w), short(257, h), struct.pack("<HHII", 258, 3, 3, bits_at), short(259, 1), short(262, 2),
           long(273, pixels_at), short(277, 3), short(278, h), long(279, samples.nbytes), short(284, 1)]
    path.write_bytes(b"II*\0" + struct.pack("<IH", 8, len(ifd)) + b"".join(ifd) + b"\0" * 4
                     + struct.pack("<3H", 16, 16, 16) + samples.astype("<u2").tobytes())


def wide(path, kind: str) -> np.ndarray:
    """An image file of more than 8 bits a sample, of the given kind; its samples (H, W, C)."""
    if kind == "gray16":  # mode I;16 (PNG, TIFF), I (PGM)
        samples = RNG.integers(0, 65536, (6, 7, 1), dtype=np.uint16)
        Image.fromarray(samples[:, :, 0]).save(path)
    elif kind in ("rgb16", "la16", "rgba16"):
        channels, colour_type = {"rgb16": (3, 2), "la16": (2, 4), "rgba16": (4, 6)}[kind]
        samples = RNG.integers(0, 65536, (6, 7, channels), dtype=np.uint16)
        png16(path, samples, colour_type)
    elif kind == "tiff16":
        samples = RNG.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
        tiff16(path, samples)
    else:  # ppm10: a PPM whose maxval is 1023
        samples = RNG.integers(0, 1024, (6, 7, 3)).astype(np.uint16)
        path.write_bytes(b"P6 7 6 1023\n" + samples.astype(">u2").tobytes())
    return samples


def samples_of(path) -> tuple[str, int, np.ndarray]:
    """(Pillow's mode, bits a sample, samples (H, W, C)) of an image file; a PNG's samples as
    pypng reads them (Pillow loads 16-bit colour ones as 8 bits)."""
    with Image.open(path) as im:
        mode, bits = im.mode, sample_bits(im)
        a = np.asarray(im)
    if path.suffix == ".png":
        width, height, rows, info = png.Reader(filename=str(path)).read()
        a = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, info["planes"])
    return mode, bits, a.reshape(a.shape[0], a.shape[1], -1)


@pytest.mark.parametrize("kind, suffix", [("gray16", ".png"), ("gray16", ".tif"), ("gray16", ".pgm"),
                                          ("la16", ".png"), ("rgb16", ".png"), ("rgba16", ".png")])
def test_16_bit_images_round_trip_exactly_and_the_input_is_removed(tiny, tmp_path, kind, suffix):
    path = tmp_path / f"{kind}{suffix}"
    samples = wide(path, kind)
    mode, bits, before = samples_of(path)
    assert bits == 16 and np.array_equal(before, samples)
    r = run("compress", "-j", 1, "-m", tiny.name, path)
    assert r.exit_code == 0 and r.output == "" and not path.exists()  # everything comes back: removed
    info = run("info", f"{path}.arc").output
    assert "16-bit samples" in info and f"shape (H, W, C)  6, 7, {samples.shape[2]}\n" in info
    assert run("decompress", "-m", tiny.name, f"{path}.arc").exit_code == 0
    after = samples_of(path)
    assert after[:2] == (mode, 16) and np.array_equal(after[2], samples)


def test_a_16_bit_png_keeps_its_icc_profile_and_text(tiny, tmp_path):
    path = tmp_path / "deep.png"
    samples = RNG.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    profile = bytes(range(256)) * 2  # kept as bytes: no colour management happens
    png16(path, samples, 2, (chunk(b"iCCP", b"scanner\0\0" + zlib.compress(profile)),
                             chunk(b"tEXt", b"Comment\0sixteen bits")))
    before = Image.open(path).info
    assert before == {"icc_profile": profile, "Comment": "sixteen bits"}
    r = run("compress", "-j", 1, "-m", tiny.name, path)
    assert r.exit_code == 0 and r.output == "" and not path.exists()
    assert run("decompress", "-m", tiny.name, f"{path}.arc").exit_code == 0
    assert Image.open(path).info == before and np.array_equal(samples_of(path)[2], samples)


def test_a_16_bit_png_with_what_is_not_stored_is_kept_with_a_note(tiny, tmp_path):
    path = tmp_path / "deep.png"
    samples = RNG.integers(0, 65536, (6, 7, 4), dtype=np.uint16)
    png16(path, samples, 6, (chunk(b"sRGB", b"\0"),))
    r = run("compress", "-j", 1, "-m", tiny.name, path)
    assert r.exit_code == 0 and r.output == f"arcodec: kept {path}: its sRGB intent is not stored in .arc\n"
    assert path.exists()
    assert run("decompress", "-m", tiny.name, "-o", tmp_path / "out.png", f"{path}.arc").exit_code == 0
    assert samples_of(tmp_path / "out.png")[:2] == ("RGBA", 16)
    assert np.array_equal(samples_of(tmp_path / "out.png")[2], samples)


def test_16_bit_colour_is_written_as_png_only(tiny, tmp_path):
    wide(tmp_path / "deep.png", "rgb16")
    assert run("compress", "-j", 1, "-m", tiny.name, tmp_path / "deep.png").exit_code == 0
    r = run("decompress", "-m", tiny.name, "-o", tmp_path / "out.tif", tmp_path / "deep.png.arc")
    assert r.exit_code == 1
    assert r.output == (f"arcodec: error: {tmp_path / 'out.tif'}: a 16-bit RGB image is written as PNG, not TIFF: "
                        "name a .png output (-o)\n")
    assert not (tmp_path / "out.tif").exists() and (tmp_path / "deep.png.arc").exists()


@pytest.mark.parametrize("kind, suffix, message", [
    ("tiff16", ".tif", "16-bit RGB is read from PNG files only, not TIFF: convert it to a 16-bit PNG"),
    ("ppm10", ".ppm", "10-bit samples (maxval 1023) are not supported (an .arc file holds 8 or 16 bits a sample): "
                      "convert it to a 16-bit PNG"),
])
def test_other_depths_are_refused_in_one_line(tiny, tmp_path, kind, suffix, message):
    path = tmp_path / f"{kind}{suffix}"
    wide(path, kind)
    assert samples_of(path)[1] > 8  # Pillow would load 8 bits of each sample
    r = run("compress", "-j", 1, "-m", tiny.name, path)
    assert r.exit_code == 1 and r.output == f"arcodec: error: {path}: {message}\n"
    assert path.exists() and not (tmp_path / f"{kind}{suffix}.arc").exists()


def test_a_refused_image_among_others_is_reported_and_the_others_go_on(tiny, tmp_path):
    wide(tmp_path / "deep.ppm", "ppm10")
    Image.fromarray(GRAY).save(tmp_path / "plain.png")
    r = run("compress", "-j", 1, "-m", tiny.name, tmp_path / "deep.ppm", tmp_path / "plain.png")
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "deep.ppm: 10-bit samples" in r.output
    assert (tmp_path / "plain.png.arc").exists() and not (tmp_path / "plain.png").exists()
    assert (tmp_path / "deep.ppm").exists()


def test_an_archive_refuses_16_bit_images_in_one_line(tiny, tmp_path):
    wide(tmp_path / "deep.png", "gray16")
    Image.fromarray(GRAY).save(tmp_path / "plain.png")
    r = run("compress", "-m", tiny.name, tmp_path / "deep.png", tmp_path / "plain.png", "-o", tmp_path / "set.arc")
    assert r.exit_code == 1
    assert r.output == (f"arcodec: error: {tmp_path / 'deep.png'}: 16-bit samples: an archive holds 8-bit images "
                        "only (its images share one header); compress it to its own .arc file\n")
    assert not (tmp_path / "set.arc").exists() and (tmp_path / "deep.png").exists()
    with pytest.raises(ArcodecError, match="an archive holds 8-bit images only"):
        encode_images([np.zeros((3, 4), np.uint16), GRAY], names=["a.png", "b.png"])


@pytest.mark.parametrize("shape", [(5, 3), (4, 7, 1), (3, 5, 2), (7, 2, 3), (2, 9, 4)])
def test_16_bit_arrays_round_trip_through_the_python_api(shape):
    a = RNG.integers(0, 65536, shape, dtype=np.uint16)
    data = arcodec.compress(a.astype(">u2"))  # any byte order
    b = arcodec.decompress(data)
    assert b.dtype == np.uint16 and b.shape == (shape[:2] if len(shape) == 2 or shape[2] == 1 else shape)
    assert np.array_equal(b, a.reshape(b.shape))
    header = container.read(data)[0]
    channels = 1 if len(shape) == 2 else shape[2]
    assert header.sample_bits == 16 and header.entries[0].channels == 2 * channels


def test_a_smooth_16_bit_gradient_costs_less_than_its_raw_bytes():
    """The high bytes of a smooth image are cheap: auto codes the byte planes with a grayscale
    model (or stores them deflated) in fewer than the 16 bits a sample of the raw samples."""
    y, x = np.mgrid[0:24, 0:32]
    a = (20000 + 60 * x + 37 * y).astype(np.uint16)
    data = arcodec.compress(a)
    header = container.read(data)[0]
    assert header.sample_bits == 16 and np.array_equal(arcodec.decompress(data), a)
    assert 8 * len(data) / a.size < 12
    with pytest.raises(ArcodecError, match="byte planes are coded by a grayscale model"):
        arcodec.compress(np.stack([a] * 3, axis=2), model="photo-rgb")


def test_the_pillow_plugin_codes_16_bit_gray(tmp_path):
    a = RNG.integers(0, 65536, (5, 6), dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g.arc", dpi=(300, 300))  # mode I;16, with metadata
    with Image.open(tmp_path / "g.arc") as im:
        assert im.mode == "I;16" and im.info["dpi"] == (300, 300) and np.array_equal(np.asarray(im), a)
    (tmp_path / "c.arc").write_bytes(arcodec.compress(RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)))
    with Image.open(tmp_path / "c.arc") as im:
        assert im.mode == "RGB" and im.size == (6, 5)
        with pytest.raises(OSError, match="Pillow has no 16-bit colour modes"):
            im.load()


def roundtrip(tiny, tmp_path, im: Image.Image, **save) -> tuple[object, Image.Image, Image.Image]:
    """Compress ``im`` saved as PNG (the input removed when nothing is lost), decompress it:
    (the compress result, the input as Pillow read it, the decompressed image)."""
    path = tmp_path / "in.png"
    im.save(path, **save)
    before = Image.open(path)
    before.load()
    r = run("compress", "-j", 1, "-m", tiny.name, path)
    assert r.exit_code == 0, r.output
    out = tmp_path / "out.png"
    assert run("decompress", "-k", "-m", tiny.name, "-o", out, tmp_path / "in.png.arc").exit_code == 0
    return r, before, Image.open(out)


def palette_image(entries: int = 256) -> Image.Image:
    """Mode P: random indices and a random RGB palette of ``entries`` entries."""
    im = Image.fromarray(RNG.integers(0, entries, (6, 7), dtype=np.uint8), "P")
    im.putpalette(RNG.integers(0, 256, 3 * entries, dtype=np.uint8).tobytes())
    return im


@pytest.mark.parametrize("kind", ["palette", "alpha per entry", "one transparent index", "1-bit"])
def test_palette_and_one_bit_images_round_trip_exactly_and_the_input_is_removed(tiny, tmp_path, kind):
    im = Image.fromarray(GRAY).convert("1") if kind == "1-bit" else palette_image()
    save = {"alpha per entry": {"transparency": bytes(range(0, 250, 10))},  # tRNS shorter than the palette
            "one transparent index": {"transparency": 3}}.get(kind, {})
    r, before, after = roundtrip(tiny, tmp_path, im, **save)
    assert after.mode == before.mode == ("1" if kind == "1-bit" else "P")
    assert np.array_equal(np.asarray(after), np.asarray(before))
    assert after.getpalette() == before.getpalette() and after.info == before.info
    assert ("transparency" in after.info) == (kind in ("alpha per entry", "one transparent index"))
    assert r.output == "" and not (tmp_path / "in.png").exists()  # nothing lost: removed
    header = container.read((tmp_path / "in.png.arc").read_bytes())[0]
    assert header.entries[0].channels == 1  # the indices, not the colours


def test_a_gif_comes_back_in_mode_p_as_png_and_the_input_is_kept(tiny, tmp_path):
    path = tmp_path / "in.gif"
    im = palette_image(16)
    im.putpixel((0, 0), 2)  # used: Pillow writes no transparency for an unused colour
    im.save(path, transparency=2)
    before = Image.open(path)
    before.load()
    assert before.mode == "P" and "transparency" in before.info
    r = run("compress", "-j", 1, "-m", tiny.name, path)
    assert r.exit_code == 0 and path.exists()
    assert r.output.startswith(f"arcodec: kept {path}: its GIF format (it would come back as PNG)")
    assert run("decompress", "-m", tiny.name, "-o", tmp_path / "out.png", f"{path}.arc").exit_code == 0
    after = Image.open(tmp_path / "out.png")
    assert (after.format, after.mode, after.info) == ("PNG", "P", {"transparency": before.info["transparency"]})
    assert np.array_equal(np.asarray(after), np.asarray(before)) and after.getpalette() == before.getpalette()


def test_a_palette_image_in_an_archive_is_coded_as_its_colours(tiny, tmp_path):
    im = palette_image()
    im.save(tmp_path / "p.png", transparency=bytes(range(0, 250, 10)))
    Image.fromarray(COLOUR).save(tmp_path / "c.png")
    assert run("compress", "-m", tiny.name, tmp_path / "p.png", tmp_path / "c.png", "-o",
               tmp_path / "set.arc").exit_code == 0
    images = arcodec.decompress_archive((tmp_path / "set.arc").read_bytes(), model=tiny)
    with Image.open(tmp_path / "p.png") as before:
        assert np.array_equal(images["p.png"], np.asarray(before.convert("RGBA")))


def test_the_python_api_gives_a_palette_images_indices_and_its_palette_in_the_header(tmp_path):
    from arcodec.codec.api import decode_file
    from arcodec.codec.files import with_metadata
    from arcodec.imageio import read_image, read_image_and_metadata

    im = palette_image(16)
    im.save(tmp_path / "p.png", transparency=5)
    a, meta = read_image_and_metadata((tmp_path / "p.png").read_bytes())
    indices = np.asarray(im)
    assert a.shape == (6, 7, 1) and np.array_equal(a[:, :, 0], indices)
    assert (meta.palette, meta.transparency) == (("RGB", bytes(im.getpalette())), 5)
    assert np.array_equal(arcodec.decompress(arcodec.compress(indices)), indices)
    header, (back,) = decode_file(with_metadata(encode_images([a]), meta, a).data)
    assert np.array_equal(back, a) and header.metadata == meta
    rgba = read_image((tmp_path / "p.png").read_bytes())  # the colours, for models and data sets
    assert np.array_equal(rgba, np.asarray(Image.open(tmp_path / "p.png").convert("RGBA")))


@pytest.mark.parametrize("mode, pixels", [("LA", np.dstack([GRAY, GRAY[::-1]])), ("RGBA", np.dstack([COLOUR, GRAY])),
                                          ("L", GRAY), ("RGB", COLOUR)])
def test_eight_bit_modes_round_trip_exactly_and_the_input_is_removed(tiny, tmp_path, mode, pixels):
    r, before, after = roundtrip(tiny, tmp_path, Image.fromarray(pixels, mode))
    assert before.mode == after.mode == mode and np.array_equal(np.asarray(after), pixels)
    assert r.output == "" and not (tmp_path / "in.png").exists()
