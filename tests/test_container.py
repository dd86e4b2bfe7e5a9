import zlib

import numpy as np
import pytest

from arcodec.codec import container
from arcodec.codec.container import Entry, Header
from arcodec.errors import FormatError

FP = b"\x12\x34"


PIXELS = [np.arange(784, dtype=np.uint8).reshape(28, 28, 1)]


def single(h=28, w=28, c=1, payload=b"\x01\x02\x03", **kw):
    return container.write(Header(1, FP, (Entry(h, w, c),), **kw), payload, PIXELS)


def test_single_roundtrip_and_size():
    data = single()
    header, payload, crc = container.read(data)
    assert header.entries == (Entry(28, 28, 1),) and header.model_id == 1 and header.fingerprint == FP
    assert (payload, header.bit_depth, header.tile, header.archive) == (b"\x01\x02\x03", 8, 64, False)
    assert crc == zlib.crc32(PIXELS[0].tobytes(), zlib.crc32(data[:-4]))
    assert container.verify(data, PIXELS)
    assert not container.verify(data, [PIXELS[0] ^ 1])
    for i in range(len(data)):  # any single flipped bit fails the check
        assert not container.verify(data[:i] + bytes([data[i] ^ 4]) + data[i + 1:], PIXELS)
    # the whole overhead of a 28x28 grayscale file: 8 header bytes + 4 CRC bytes
    assert container.header_size(data) == 12


def test_extension_fields_roundtrip():
    data = single(300, 5000, 2, bit_depth=2, tile=32)
    header, _, _ = container.read(data)
    assert header.entries == (Entry(300, 5000, 2),) and header.bit_depth == 2 and header.tile == 32


def test_archive_roundtrip_and_overhead_per_image():
    entries = tuple(Entry(28, 28, 1, f"d/{i}.png") for i in range(1000))
    data = container.write(Header(7, FP, entries, archive=True), b"xyz", [])
    header, payload, crc = container.read(data)
    assert header.entries == entries and header.archive and payload == b"xyz"
    fixed = container.header_size(data) - sum(1 + len(e.name) + 3 for e in entries)
    assert fixed <= 16  # the per-image cost is its name and shape alone


def test_crc_of_pixels():
    a = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert container.crc32_pixels([a, a]) == zlib.crc32(a.tobytes() * 2)
    assert container.crc32_pixels([a], 77) == zlib.crc32(a.tobytes(), 77)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"PK" + d[2:], "magic"),
    (lambda d: d[:2] + bytes([(2 << 4) | (d[2] & 15)]) + d[3:], "version 2"),
    (lambda d: d[:2] + bytes([d[2] | 8]) + d[3:], "reserved"),
    (lambda d: d[:3], "truncated"),
    (lambda d: b"", "magic"),
])
def test_rejects_bad_headers(mutate, message):
    with pytest.raises(FormatError, match=message):
        container.read(mutate(single()))


def test_truncation_inside_header_or_checksum_is_rejected():
    data = single()  # 8 header bytes, 3 payload bytes, 4 CRC bytes
    for n in range(12):  # shorter files cannot hold a header and a CRC (the codec's CRC check
        with pytest.raises(FormatError):  # catches cuts inside the payload: test_codec)
            container.read(data[:n])


def test_rejects_gigantic_image_claims():
    out = bytearray(b"AR\x10\x01\x12\x34")
    container.put_varint(out, 100_000)
    container.put_varint(out, 100_000)
    with pytest.raises(FormatError, match="100000x100000"):
        container.read(bytes(out) + b"\0" * 8)
    out = bytearray(b"AR\x10\x01\x12\x34")
    container.put_varint(out, 60_000)
    container.put_varint(out, 60_000)
    with pytest.raises(FormatError, match="sub-pixels"):
        container.read(bytes(out) + b"\0" * 8)
    with pytest.raises(FormatError, match="overlong"):
        container.read(b"AR\x10" + b"\xff" * 20)


def test_rejects_unknown_extension_and_bad_names():
    out = bytearray(b"AR\x14\x01\x12\x34\x02\x09\x01\x1c\x1c")  # tag 9
    with pytest.raises(FormatError, match="unknown header field"):
        container.read(bytes(out) + b"\0" * 4)
    bad = bytearray(b"AR\x11\x01\x12\x34\x01\x02\xff\xfe\x1c\x1c\x01")
    with pytest.raises(FormatError, match="UTF-8"):
        container.read(bytes(bad) + b"\0" * 4)


def test_archive_entry_table_is_packed_when_that_is_shorter():
    entries = tuple(Entry(28, 28, 1, f"mnist/{i:05d}.png") for i in range(300))
    data = container.write(Header(1, FP, entries, archive=True), b"\x07", [])
    header, payload, _ = container.read(data)
    assert header.entries == entries and payload == b"\x07"
    raw = sum(1 + len(e.name) + 3 for e in entries)
    assert container.header_size(data) < raw / 3  # sequential names shrink several-fold
    few = (Entry(3, 4, 1, "a"),)  # too small to gain: stored as is
    data = container.write(Header(1, FP, few, archive=True), b"", [])
    assert container.read(data)[0].entries == few and container.header_size(data) < 20


def _packed_archive(count: int, table: bytes) -> bytes:
    out = bytearray(b"AR" + bytes([(1 << 4) | 1 | 4]) + b"\x01" + FP)
    out += bytes([2, 4, 1])  # extension block: tag 4 (packed entry table) = 1
    container.put_varint(out, count)
    container.put_varint(out, len(table))
    return bytes(out + table + b"\0\0\0\0")


def test_packed_entry_table_rejects_bombs_and_garbage():
    bomb = zlib.compress(b"\x00" * 10_000_000, 9, wbits=-15)  # far more than one entry can take
    with pytest.raises(FormatError, match="entry table"):
        container.read(_packed_archive(1, bomb))
    with pytest.raises(FormatError, match="entry table"):
        container.read(_packed_archive(1, b"\xff\xfe garbage"))
    ok = zlib.compress(b"\x01a\x03\x04\x01", 9, wbits=-15)
    assert container.read(_packed_archive(1, ok))[0].entries == (Entry(3, 4, 1, "a"),)
    with pytest.raises(FormatError):
        container.read(_packed_archive(2, ok))  # the table holds fewer entries than claimed


def _with_extension(ext: bytes, flags: int = 0, tail: bytes = b"\x1c\x1c") -> bytes:
    """A file whose extension block is ``ext`` (a single 28x28 image unless ``flags`` says)."""
    out = bytearray(b"AR" + bytes([(1 << 4) | 4 | flags]) + b"\x01" + FP)
    container.put_varint(out, len(ext))
    return bytes(out + ext + tail + b"\0" * 4)


@pytest.mark.parametrize("ext, flags, message", [
    (b"\x02\x20\x02\x20", 0, "header field 2, tile side, repeated"),
    (b"\x04\x01", 0, "header field 4, packed entry table, does not belong in a single-image file"),
    (b"\x03\x02", 1, "header field 3, channels, does not belong in an archive"),
    (b"\x03\x04", 2, "header field 3, channels, does not belong in a file with the RGB flag"),
    (b"\x05\x01\x06\x01", 0, "header field 5, scan order, does not belong in a stored file"),
    (b"\x01\x04\x06\x02", 0, "header field 1, bit depth, does not belong in a stored file"),
    (b"\x08\x00", 1, "header field 8, metadata, does not belong in an archive"),
    (b"\x04\x00", 1, "header field 4, packed entry table, is 0: only 1 is defined"),
    (b"\x04\x02", 1, "header field 4, packed entry table, is 2: only 1 is defined"),
    (b"\x05\x02", 0, "header field 5, scan order, has value 2, unknown to this arcodec"),
    (b"\x06\x07", 0, "header field 6, method, has value 7, unknown to this arcodec"),
])
def test_header_fields_appear_once_and_only_where_they_belong(ext, flags, message):
    with pytest.raises(FormatError, match=message):
        container.read(_with_extension(ext, flags, b"\x00" if flags & 1 else b"\x1c\x1c"))


def test_rgb_flag_in_an_archive_is_rejected():
    with pytest.raises(FormatError, match="RGB flag set in an archive"):
        container.read(b"AR" + bytes([(1 << 4) | 1 | 2]) + b"\x01" + FP + b"\x00" + b"\0" * 4)


def test_every_field_where_it_belongs_still_reads():
    for header in [Header(1, FP, (Entry(28, 28, 2),), bit_depth=2, tile=32, scan=1, levels=(0, 9)),
                   Header(0, b"\0\0", (Entry(5, 6, 4),), method=container.METHOD_DEFLATE),
                   Header(1, FP, tuple(Entry(3, 4, 1, f"{i:05d}.png") for i in range(50)), archive=True)]:
        assert container.read(container.write(header, b"\x05", []))[0] == header
