"""Image files of every mode through ``arcodec compress``: coded losslessly (the input removed
only when its .arc file gives everything back) or refused with one line and exit status 1,
never a traceback and never silently fewer bits. Pillow loads 16-bit RGB, RGBA and LA PNGs
and PPMs of more than 8 bits as 8 bits without a word: those are refused from the file's
header (:func:`arcodec.imageio.sample_bits`)."""

import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from arcodec.cli import main

RNG = np.random.default_rng(7)
GRAY = RNG.integers(0, 256, (6, 7), dtype=np.uint8)
COLOUR = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def png16(path, samples: np.ndarray, colour_type: int) -> None:
    """A 16-bit PNG (Pillow writes none but grayscale): ``samples`` (H, W, C) uint16,
    colour type 0 gray, 2 RGB, 4 gray and alpha, 6 RGBA."""
    h, w = samples.shape[:2]
    rows = b"".join(b"\0" + samples[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def wide(path, kind: str) -> None:
    """An image file of more than 8 bits a sample, of the given kind."""
    if kind == "gray16":  # mode I;16
        Image.fromarray(RNG.integers(0, 65536, (6, 7), dtype=np.uint16)).save(path)
    elif kind in ("rgb16", "la16", "rgba16"):
        channels, colour_type = {"rgb16": (3, 2), "la16": (2, 4), "rgba16": (4, 6)}[kind]
        png16(path, RNG.integers(0, 65536, (6, 7, channels), dtype=np.uint16), colour_type)
    else:  # ppm10: a PPM whose maxval is 1023
        path.write_bytes(b"P6 7 6 1023\n" + RNG.integers(0, 1024, (6, 7, 3)).astype(">u2").tobytes())


@pytest.mark.parametrize("kind, suffix, bits", [("gray16", ".png", 16), ("rgb16", ".png", 16), ("la16", ".png", 16),
                                                ("rgba16", ".png", 16), ("ppm10", ".ppm", 10)])
def test_more_than_8_bits_a_sample_is_refused_in_one_line(tiny, tmp_path, kind, suffix, bits):
    path = tmp_path / f"{kind}{suffix}"
    wide(path, kind)
    r = run("compress", "-j", 1, "-m", tiny.name, path)
    assert r.exit_code == 1
    assert r.output == (f"arcodec: error: {path}: {bits}-bit samples are not supported "
                        "(an .arc file holds 8 bits a channel)\n")
    assert path.exists() and not (tmp_path / f"{kind}{suffix}.arc").exists()


def test_a_wide_image_among_others_is_reported_and_the_others_go_on(tiny, tmp_path):
    wide(tmp_path / "deep.png", "rgb16")
    Image.fromarray(GRAY).save(tmp_path / "plain.png")
    r = run("compress", "-j", 1, "-m", tiny.name, tmp_path / "deep.png", tmp_path / "plain.png")
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "deep.png: 16-bit samples" in r.output
    assert (tmp_path / "plain.png.arc").exists() and not (tmp_path / "plain.png").exists()
    assert (tmp_path / "deep.png").exists()


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


def test_palette_comes_back_as_rgb_pixels_and_the_input_is_kept(tiny, tmp_path):
    r, before, after = roundtrip(tiny, tmp_path, Image.fromarray(COLOUR).convert("P"))
    assert before.mode == "P" and after.mode == "RGB"
    assert np.array_equal(np.asarray(after), np.asarray(before.convert("RGB")))
    assert r.output == f"arcodec: kept {tmp_path / 'in.png'}: its palette (mode P) is not stored in .arc\n"
    assert (tmp_path / "in.png").exists()


def test_palette_with_transparency_comes_back_as_rgba_and_the_input_is_kept(tiny, tmp_path):
    im = Image.fromarray(COLOUR).convert("P")
    r, before, after = roundtrip(tiny, tmp_path, im, transparency=im.getpixel((0, 0)))  # one colour transparent
    assert before.mode == "P" and "transparency" in before.info and after.mode == "RGBA"
    rgba = np.asarray(before.convert("RGBA"))
    assert np.array_equal(np.asarray(after), rgba) and (rgba[..., 3] == 0).any()  # the transparency is the alpha
    assert r.output == f"arcodec: kept {tmp_path / 'in.png'}: its palette (mode P) is not stored in .arc\n"


def test_one_bit_comes_back_as_gray_and_the_input_is_kept(tiny, tmp_path):
    r, before, after = roundtrip(tiny, tmp_path, Image.fromarray(GRAY).convert("1"))
    assert before.mode == "1" and after.mode == "L"
    assert np.array_equal(np.asarray(after), np.asarray(before.convert("L")))
    assert "its 1-bit mode (mode 1) is not stored" in r.output and (tmp_path / "in.png").exists()


@pytest.mark.parametrize("mode, pixels", [("LA", np.dstack([GRAY, GRAY[::-1]])), ("RGBA", np.dstack([COLOUR, GRAY])),
                                          ("L", GRAY), ("RGB", COLOUR)])
def test_eight_bit_modes_round_trip_exactly_and_the_input_is_removed(tiny, tmp_path, mode, pixels):
    r, before, after = roundtrip(tiny, tmp_path, Image.fromarray(pixels, mode))
    assert before.mode == after.mode == mode and np.array_equal(np.asarray(after), pixels)
    assert r.output == "" and not (tmp_path / "in.png").exists()
