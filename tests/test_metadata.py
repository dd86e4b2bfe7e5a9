"""What an image file carries beyond its pixels (ICC profile, EXIF, PNG text chunks, gamma,
DPI) is kept in the .arc header (tag 8, docs/format.md) and given back by decompressing and
by the Pillow plugin; ``compress`` removes an input only when everything comes back."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms, PngImagePlugin

from arcodec.cli import main
from arcodec.codec import container
from arcodec.codec.container import Entry, Header, Metadata
from arcodec.errors import FormatError
from arcodec.imageio import lossless_for

PIXELS = (np.arange(28 * 28) % 7 * 30).astype(np.uint8).reshape(28, 28)


def _icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "a ring"  # ImageDescription
    return exif.tobytes()


def _text() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "made by a test")
    info.add_itxt("Author", "Zoë ✓")
    return info


def _gamma() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", 45455))
    return info


KINDS = {
    "icc": {"icc_profile": _icc()},
    "exif": {"exif": _exif()},
    "text": {"pnginfo": _text()},
    "gamma": {"pnginfo": _gamma()},
    "dpi": {"dpi": (300, 150)},
}


def _info(path) -> dict:
    with Image.open(path) as im:
        im.load()
        return dict(im.info)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_cli_keeps_metadata_and_removes_the_input(tmp_path, kind):
    src = tmp_path / "x.png"
    Image.fromarray(PIXELS).save(src, **KINDS[kind])
    before = _info(src)
    assert before and lossless_for(src) == []
    r = CliRunner().invoke(main, ["compress", "-m", "auto", str(src)])
    assert r.exit_code == 0, r.output
    assert not src.exists()  # everything comes back: removed, as gzip does
    r = CliRunner().invoke(main, ["decompress", str(src) + ".arc"])
    assert r.exit_code == 0, r.output
    assert _info(src) == before
    with Image.open(src) as im:
        assert np.array_equal(np.asarray(im), PIXELS)


def test_an_input_with_what_is_not_stored_is_kept(tmp_path):
    src = tmp_path / "x.png"
    chunks = _text()
    chunks.add(b"sRGB", b"\x00")  # a rendering intent: not stored
    Image.fromarray(PIXELS).save(src, pnginfo=chunks, dpi=(72, 72))
    assert lossless_for(src) == ["sRGB intent"]
    r = CliRunner().invoke(main, ["compress", str(src)])
    assert r.exit_code == 0 and src.exists() and "sRGB intent" in r.output


def test_files_without_metadata_keep_their_bytes():
    header = Header(1, b"\x12\x34", (Entry(28, 28, 1),))
    plain = container.write(header, b"\x01", [PIXELS[:, :, None]])
    meta = Metadata(icc_profile=b"\x01" * 300, exif=b"Exif\0\0MM", text=(("a", "b"), ("a", "ü")), gamma=45455,
                    dpi=(299.9994, 72.0))
    data = container.with_metadata(plain, meta, [PIXELS[:, :, None]])
    back, payload, _ = container.read(data)
    assert back.metadata == meta and payload == b"\x01" and container.verify(data, [PIXELS[:, :, None]])
    assert container.write(back, payload, [PIXELS[:, :, None]]) == data
    assert container.with_metadata(plain, Metadata(), [PIXELS[:, :, None]]) == plain


def test_metadata_is_bounded_and_checked():
    with pytest.raises(FormatError, match="at most 16 MiB"):
        Metadata(icc_profile=b"\0" * (container.MAX_METADATA + 1)).pack()
    ok = Metadata(exif=b"xy").pack()
    for block, message in [(b"\x09\x01z", "unknown metadata record 9"), (ok + ok, "repeated"),
                           (b"\x03\x02ab", "text record"), (b"\x05\x01z", "DPI")]:
        with pytest.raises(FormatError, match=message):
            Metadata.unpack(block)


@pytest.mark.parametrize("meta", [Metadata(palette=("RGB", bytes(range(48)))),
                                  Metadata(palette=("RGBA", b""), transparency=255),
                                  Metadata(palette=("RGB", bytes(768)), transparency=b"\0\x80", dpi=(72.0, 72.0)),
                                  Metadata(bilevel=True, gamma=45455)])
def test_palette_transparency_and_bilevel_records_round_trip(meta):
    assert meta and Metadata.unpack(meta.pack()) == meta
    header = Header(1, b"\x12\x34", (Entry(28, 28, 1),), metadata=meta)
    data = container.write(header, b"\x01", [PIXELS[:, :, None]])
    assert container.read(data)[0].metadata == meta


def test_palette_records_are_laid_out_as_the_format_says():
    assert Metadata(palette=("RGB", b"\1\2\3"), transparency=b"\0\x80").pack() == b"\6\4\0\1\2\3\7\3\0\0\x80"
    assert Metadata(palette=("RGBA", b"\1\2\3\4"), transparency=200).pack() == b"\6\5\1\1\2\3\4\7\3\1\xc8\1"
    assert Metadata(bilevel=True).pack() == b"\x08\0"


def test_palette_transparency_and_bilevel_records_are_checked():
    palette = Metadata(palette=("RGB", b"abc")).pack()
    for block, message in [(palette + palette, "record 6, palette, repeated"),
                           (b"\x08\x00\x08\x00", "record 8, bilevel, repeated"),
                           (b"\x06\x03\x00ab", "palette record"), (b"\x06\x01\x02", "palette record"),
                           (b"\x06\x01\x00" + b"\x07\x03\x01\x80\x02", "transparency record"),
                           (b"\x06\x01\x00" + b"\x07\x01\x02", "transparency record"),
                           (b"\x07\x02\x01\x05", "transparency record without a palette"),
                           (b"\x08\x01z", "bilevel record is not empty"),
                           (palette + b"\x08\x00", "palette and bilevel records together")]:
        with pytest.raises(FormatError, match=message):
            Metadata.unpack(block)
    data = bytearray(container.write(Header(1, b"\x12\x34", (Entry(28, 28, 1),), metadata=Metadata(bilevel=True)),
                                     b"\x01", [PIXELS[:, :, None]]))
    data[2] |= 2  # the RGB flag: 3 channels
    with pytest.raises(FormatError, match="bilevel record in an image of 3 channels"):
        container.read(bytes(data))
    with pytest.raises(ValueError, match="8-bit image of one channel"):
        container.write(Header(1, b"\x12\x34", (Entry(2, 2, 3),), metadata=Metadata(palette=("RGB", b""))), b"\x01",
                        [np.zeros((2, 2, 3), np.uint8)])
