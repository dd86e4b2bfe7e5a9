"""The Pillow plugin (arcodec.pillow), through Pillow's own API only."""

from __future__ import annotations

import io
import traceback

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import arcodec
import arcodec.codec.api
import arcodec.pillow  # noqa: F401  (registers the format)

RNG = np.random.default_rng(18)
GRAY = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
RGB = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
DIGIT = np.zeros((8, 8), dtype=np.uint8)  # a stroke: the shipped gray model codes it
DIGIT[1:7, 3:5] = 250


@pytest.fixture
def decodes(monkeypatch) -> list:
    """Counts the calls of arcodec.codec.api.decode_file (each call still decodes)."""
    calls = []
    real = arcodec.codec.api.decode_file

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(arcodec.codec.api, "decode_file", counting)
    return calls


@pytest.mark.parametrize("array, mode", [(GRAY, "L"), (RGB, "RGB"), (DIGIT, "L"),
                                         (RNG.integers(0, 256, (5, 6, 2), dtype=np.uint8), "LA"),
                                         (RNG.integers(0, 256, (5, 6, 4), dtype=np.uint8), "RGBA")])
def test_open_reads_the_header_then_decodes_on_load(tmp_path, decodes, array, mode):
    path = tmp_path / "x.arc"
    path.write_bytes(arcodec.compress(array))
    with Image.open(path) as im:
        assert (im.format, im.size, im.mode, im.n_frames, im.is_animated) == ("ARC", (6, 5) if array is not DIGIT
                                                                              else (8, 8), mode, 1, False)
        assert decodes == []
        im.load()
        assert np.array_equal(np.asarray(im), array)
        assert np.array_equal(np.asarray(im), array)  # decoded once
    assert len(decodes) == 1


def test_open_a_file_object(decodes):
    with Image.open(io.BytesIO(arcodec.compress(DIGIT))) as im:
        assert im.size == (8, 8) and decodes == []
        assert np.array_equal(np.asarray(im), DIGIT)


@pytest.mark.parametrize("array", [GRAY, RGB, DIGIT])
def test_save_then_decompress(tmp_path, array):
    path = tmp_path / "y.arc"
    Image.fromarray(array).save(path)
    assert path.read_bytes()[:2] == b"AR"
    assert np.array_equal(arcodec.decompress(path.read_bytes()), array)


def test_save_names_a_model_and_converts_modes(tmp_path):
    Image.fromarray(DIGIT).save(tmp_path / "m.arc", model="mnist-gated")
    from arcodec.codec.container import read

    assert read((tmp_path / "m.arc").read_bytes())[0].method == 0  # coded by the model, not stored
    assert np.array_equal(arcodec.decompress((tmp_path / "m.arc").read_bytes()), DIGIT)
    Image.fromarray(DIGIT > 100).save(tmp_path / "b.arc")  # mode "1": coded as L (0/255)
    assert np.array_equal(arcodec.decompress((tmp_path / "b.arc").read_bytes()), np.where(DIGIT > 100, 255, 0))
    p = Image.fromarray(RGB).convert("P")
    p.save(tmp_path / "p.arc")  # mode "P": coded as its indices
    assert np.array_equal(arcodec.decompress((tmp_path / "p.arc").read_bytes()), np.asarray(p))
    Image.fromarray(RGB).convert("PA").save(tmp_path / "pa.arc")  # another mode: RGB
    assert arcodec.decompress((tmp_path / "pa.arc").read_bytes()).shape == (5, 6, 3)
    with pytest.raises(OSError, match="mode I images .32-bit samples. are not supported"):
        Image.new("I", (4, 4)).save(tmp_path / "i.arc")
    with pytest.raises(OSError, match="cannot write ARC: .*levels"):
        Image.fromarray(DIGIT).save(tmp_path / "k.arc", model="colour-mnist-made")
    assert not (tmp_path / "k.arc").exists()  # Pillow removes what a failed save began


@pytest.mark.parametrize("palette_mode, transparency", [("RGB", None), ("RGB", 3), ("RGBA", bytes(range(0, 160, 10)))])
def test_palette_images_open_in_mode_p_with_their_palette(tmp_path, palette_mode, transparency):
    p = Image.fromarray(RNG.integers(0, 16, (5, 6), dtype=np.uint8), "P")
    p.putpalette(RNG.integers(0, 256, 16 * len(palette_mode), dtype=np.uint8).tobytes(), palette_mode)
    if transparency is not None:
        p.info["transparency"] = transparency
    p.save(tmp_path / "p.arc")
    with Image.open(tmp_path / "p.arc") as im:
        assert im.mode == "P" and im.info == ({} if transparency is None else {"transparency": transparency})
        assert np.array_equal(np.asarray(im), np.asarray(p))
        assert im.palette.mode == palette_mode and im.getpalette(palette_mode) == p.getpalette(palette_mode)
        assert np.array_equal(np.asarray(im.convert("RGBA")), np.asarray(p.convert("RGBA")))


def test_one_bit_images_open_in_mode_1(tmp_path):
    one = Image.fromarray(GRAY).convert("1")
    one.save(tmp_path / "b.arc")
    with Image.open(tmp_path / "b.arc") as im:
        assert im.mode == "1" and im.tobytes() == one.tobytes()


def test_archive_frames(tmp_path, decodes):
    small = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    images, names = [GRAY, small, DIGIT], ["a/first.png", "b/second.png", "third.png"]
    path = tmp_path / "set.arc"
    path.write_bytes(arcodec.codec.api.encode_images(images, names=names).data)
    with Image.open(path) as im:
        assert (im.n_frames, im.is_animated) == (3, True)
        seen = []
        for i in range(im.n_frames):
            im.seek(i)
            assert im.tell() == i
            seen.append((im.size, im.mode, im.info["name"]))
        assert seen == [((6, 5), "L", names[0]), ((4, 3), "RGB", names[1]), ((8, 8), "L", names[2])]
        assert decodes == []
        for i in (2, 0, 1, 2):
            im.seek(i)
            assert np.array_equal(np.asarray(im), images[i])
        with pytest.raises(EOFError):
            im.seek(3)
    assert len(decodes) == 1


@pytest.mark.parametrize("data", [arcodec.compress(DIGIT)[:5], b"AR\x10", b"garbage, not an image",
                                  b"AR\x30" + bytes(20)])
def test_bad_files_fail_on_open_with_one_line(tmp_path, data):
    path = tmp_path / "bad.arc"
    path.write_bytes(data)
    with pytest.raises(UnidentifiedImageError) as info:
        Image.open(path)
    assert "\n" not in str(info.value)
    shown = "".join(traceback.format_exception(info.value))
    assert "container.py" not in shown and "FormatError" not in shown  # nothing from deep inside


def test_a_corrupt_payload_fails_on_load():
    data = bytearray(arcodec.compress(DIGIT))
    data[-1] ^= 1
    with Image.open(io.BytesIO(bytes(data))) as im:
        assert im.size == (8, 8)
        with pytest.raises(OSError, match="cannot decode .arc file: the CRC32 check fails"):
            im.load()


def test_metadata_goes_through_the_plugin(tmp_path):
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "kept")
    png = tmp_path / "m.png"
    Image.new("L", (9, 7), 40).save(png, pnginfo=text, dpi=(300, 300), icc_profile=b"icc bytes", exif=b"Exif\0\0MM")
    with Image.open(png) as im:
        expected = dict(im.info)
        im.save(tmp_path / "m.arc")
    with Image.open(tmp_path / "m.arc") as back:
        assert back.info == expected and back.text == {"Comment": "kept"}
        back.save(tmp_path / "again.arc", dpi=(72, 72))  # a save option overrides
    with Image.open(tmp_path / "again.arc") as again:
        assert again.info == {**expected, "dpi": (72.0, 72.0)}
