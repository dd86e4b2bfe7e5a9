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
    out = bytearray(b"AR\x14\x01\x12\x34\x02\x0c\x01\x1c\x1c")  # tag 12
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
    (b"\x0a\x01", 0, "header field 10, stream checksums, does not belong in a single-image file"),
    (b"\x0a\x01\x06\x01", 1, "header field 10, stream checksums, does not belong in a stored file"),
    (b"\x0a\x02", 1, "header field 10, stream checksums, is 2: only 1 is defined"),
    (b"\x05\x02", 0, "header field 5, scan order, has value 2, unknown to this arcodec"),
    (b"\x06\x07", 0, "header field 6, method, has value 7, unknown to this arcodec"),
    (b"\x03\x02\x0b\x08", 0, "header field 11, sample bits, is 8: only 16 is defined"),
    (b"\x03\x02\x0b\x0c", 0, "header field 11, sample bits, is 12: only 16 is defined"),
    (b"\x0b\x10", 1, "header field 11, sample bits, does not belong in an archive"),
    (b"\x0b\x10", 0, "header field 11, sample bits, with 1 channels: 16-bit samples take two byte channels"),
    (b"\x0b\x10", 2, "header field 11, sample bits, with 3 channels: 16-bit samples take two byte channels"),
    (b"\x03\x0a\x0b\x10", 0, "header claims 10 channels: 1..8 supported"),
    (b"\x03\x06", 0, "header claims 6 channels: 1..4 supported"),  # byte planes only with tag 11
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
                   Header(1, FP, tuple(Entry(3, 4, 1, f"{i:05d}.png") for i in range(50)), archive=True),
                   Header(1, FP, (Entry(3, 4, 1, "a"), Entry(5, 4, 1, "b")), archive=True, stream_crcs=True),
                   Header(1, FP, (Entry(5, 6, 8),), scan=1, sample_bits=16),
                   Header(0, b"\0\0", (Entry(5, 6, 2),), method=container.METHOD_RAW, sample_bits=16)]:
        assert container.read(container.write(header, b"\x05", []))[0] == header


def test_entry_table_claiming_more_images_than_its_bytes_is_refused_at_once():
    """Every entry takes 4 bytes at least (a name length, height, width, channels), so a
    table claiming 2^20 images in fewer bytes is refused before it is read."""
    out = bytearray(b"AR\x11\x01" + FP)
    container.put_varint(out, 1 << 20)
    with pytest.raises(FormatError, match=r"truncated \(4004 bytes cannot hold the entry table of 1048576 images"):
        container.read(bytes(out) + b"\x00\x01\x01\x01" * 1000 + b"\0" * 4)
    packed = zlib.compress(b"\x00\x01\x01\x01" * 1000, 9, wbits=-15)
    with pytest.raises(FormatError, match=r"entry table of 4000 bytes cannot hold 1048576 images"):
        container.read(_packed_archive(1 << 20, packed))


def test_maximal_entry_table_reads_each_distinct_entry_once():
    """2^20 unnamed 1x1 images: 4 MB of table from 4 KB of DEFLATE; the entries are one
    Entry, read once (reading 2^20 of them one by one took seconds)."""
    count = container.MAX_IMAGES
    header = container.read(_packed_archive(count, zlib.compress(b"\x00\x01\x01\x01" * count, 9, wbits=-15)))[0]
    assert len(header.entries) == count and len({id(e) for e in header.entries}) == 1
    assert header.entries[0] == Entry(1, 1, 1)


@pytest.mark.parametrize("entries", [
    [Entry(1, 1, 1)] * 999 + [Entry(1, 1, 2)],  # a run, then another entry
    [Entry(28, 28, 1, "a"), Entry(300, 70, 3)] * 300,  # no runs
    [Entry(1, 1, 1)] * 5 + [Entry(2, 2, 4, "x" * 200)] * 3 + [Entry(65536, 4096, 1, "é")] * 7,  # long name, numbers
    [Entry(5, 6, 1, f"{i % 5000}") for i in range(6000)],  # more distinct entries than are remembered
])
def test_entry_tables_of_repeats_read_back_exactly(entries):
    for packed in (True, False):
        data = container.write(Header(1, FP, tuple(entries), archive=True), b"\x05", [])
        if not packed:  # the same table stored as is
            raw = bytearray()
            for e in entries:
                name = e.name.encode("utf-8")
                container.put_varint(raw, len(name))
                raw += name
                for v in (e.height, e.width, e.channels):
                    container.put_varint(raw, v)
            out = bytearray(b"AR\x11\x01" + FP)
            container.put_varint(out, len(entries))
            data = bytes(out + raw) + b"\x05" + b"\0" * 4
        header, payload, _ = container.read(data)
        assert header.entries == tuple(entries) and payload == b"\x05"


def test_bad_entries_among_repeats_are_refused_by_name():
    good = b"\x00\x01\x01\x01"
    for bad, message in [(b"\x00\x00\x01\x01", "header claims a 0x1 image"),
                         (b"\x00\x01\x01\x05", "header claims 5 channels"),
                         (b"\x02..\x01\x01\x01", r"archive entry '\.\.' is unsafe"),
                         (b"\x81\x01" + b"a" * 4, r"truncated \(in name\)"),  # 129 bytes claimed
                         (b"\x81\x20" + b"a" * 4, r"name too long")]:
        with pytest.raises(FormatError, match=message):
            container.read(_packed_archive(2001, zlib.compress(good * 2000 + bad, 9, wbits=-15)))


def test_entry_table_of_more_than_128_mib_is_refused():
    """2^20 names of 4,096 bytes deflate to 5.6 MB and would inflate to 4.3 GB (decoding took
    40 s and that much memory): an entry table holds at most MAX_TABLE bytes, written or read."""
    entry = b"\x80\x20" + b"x" * 4096 + b"\x01\x01\x01"  # a name of 4,096 bytes, a 1 x 1 image
    count = container.MAX_TABLE // len(entry) + 1
    d = zlib.compressobj(1, zlib.DEFLATED, -15)
    table = b"".join(d.compress(entry * 1024) for _ in range(count // 1024)) + d.compress(entry * (count % 1024))
    with pytest.raises(FormatError, match=r"entry table inflates to more than 134217728 bytes"):
        container.read(_packed_archive(count, table + d.flush()))
    with pytest.raises(FormatError, match=r"at most 128 MiB; use shorter names or fewer images"):
        container.write(Header(1, FP, (Entry(1, 1, 1, "x" * 4096),) * count, archive=True), b"", [])
