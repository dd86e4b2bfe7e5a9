"""The ``.arc`` file: header, payload, CRC32. Imports no torch. Spec: ``docs/format.md``.

Layout (all integers are LEB128 varints unless a width is given; multi-byte fixed-width
fields are little-endian)::

    magic        2 bytes   b"AR"
    version|flags 1 byte   high nibble: format version (1); low nibble: flags
                           bit 0 archive, bit 1 RGB (single image), bit 2 extension block,
                           bit 3 engine (model-coded files: engine 1, or the engine in tag 9)
    model id     varint    permanent id of the zoo model (never reused)
    fingerprint  2 bytes   first 2 bytes of the sha256 of the model weights
    [extension]  varint length, then (tag varint, value varint) pairs:
                 1 bit depth (default 8), 2 tile size (default 64), 3 channels,
                 4 packed entry table (value 1), 5 scan order (0 raster, the
                 default; 1 wavefront lines t = c + (h+1) r in bands of 64 rows),
                 6 method (0 a model, the default; 1 stored: the raw pixels; 2
                 stored: the pixels deflated), written with model id 0 and
                 fingerprint 0000, 7 level map (a bit mask of the levels the
                 images use, bit v for level v: the model coded each pixel's index
                 among them), 8 metadata (single images: the value is a byte length
                 n, and n bytes of records follow: see :class:`Metadata`), 9 engine
                 (beside flag bit 3, engines 2 and up: the arithmetic of the model's
                 probabilities is engine 0, the float64 fixed point of arcodec.exact,
                 without the flag; engine 1, the integer engine of Gated PixelCNNs,
                 with the flag alone; the coders say which engines a model has),
                 11 sample bits (value 16: the file codes a 16-bit image of C
                 channels as 2C byte channels, channel 2k the high byte and 2k+1 the
                 low byte of channel k's samples).
                 A tag appears at most once, only where it belongs (1, 2, 5, 7, 9:
                 model-coded files; 3, 8, 11: single images; 4: archives)
    single image: height varint, width varint
    archive:      count varint, then the entry table: per image name length varint,
                  UTF-8 name, height varint, width varint, channels varint. With tag 4
                  the table is stored as varint length + raw DEFLATE of it (the writer
                  packs it when that is shorter: names like 00001.png shrink several-fold);
                  at least 4 and at most MAX_TABLE bytes of table in all
    payload      range-coder bytes, up to the last 4 bytes
    crc32        4 bytes   CRC32 of every byte before it, continued over the pixels
                           (uint8, H x W x C, images in order): a flipped bit anywhere in
                           the file or a wrong decoded pixel both fail the check
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field, replace

from arcodec.errors import FormatError

MAGIC = b"AR"
VERSION = 1
DEFAULT_BIT_DEPTH = 8
DEFAULT_TILE = 64
MAX_SIDE = 1 << 16  # 65,536 pixels a side
MAX_SUBPIXELS = 1 << 28  # 268M sub-pixels per image (about 16k x 16k grayscale)
MAX_IMAGES = 1 << 20
MAX_NAME = 4096

_ARCHIVE, _RGB, _EXT, _ENGINE = 1, 2, 4, 8
_TAG_BIT_DEPTH, _TAG_TILE, _TAG_CHANNELS, _TAG_PACKED, _TAG_SCAN, _TAG_METHOD, _TAG_LEVELS = 1, 2, 3, 4, 5, 6, 7
_TAG_METADATA, _TAG_ENGINE, _TAG_STREAM_CRCS, _TAG_SAMPLE_BITS = 8, 9, 10, 11
_TAG_NAMES = {_TAG_BIT_DEPTH: "bit depth", _TAG_TILE: "tile side", _TAG_CHANNELS: "channels",
              _TAG_PACKED: "packed entry table", _TAG_SCAN: "scan order", _TAG_METHOD: "method",
              _TAG_LEVELS: "level map", _TAG_METADATA: "metadata", _TAG_ENGINE: "engine",
              _TAG_STREAM_CRCS: "stream checksums", _TAG_SAMPLE_BITS: "sample bits"}
# the model's settings (and the streams' checksums): not in stored files
_MODEL_ONLY = {_TAG_BIT_DEPTH, _TAG_TILE, _TAG_SCAN, _TAG_LEVELS, _TAG_ENGINE, _TAG_STREAM_CRCS}
_SINGLE_ONLY = {_TAG_CHANNELS, _TAG_METADATA, _TAG_SAMPLE_BITS}  # an archive's entries carry their own channels
_ARCHIVE_ONLY = {_TAG_PACKED, _TAG_STREAM_CRCS}
_ONLY_ONE = {_TAG_PACKED, _TAG_STREAM_CRCS}  # flags: only the value 1 is defined
WIDE_BITS = 16  # tag 11's one value: 16-bit samples, coded as their high and low bytes
SCAN_RASTER, SCAN_WAVEFRONT = 0, 1
METHOD_MODEL, METHOD_RAW, METHOD_DEFLATE = 0, 1, 2
METHOD_NAMES = {METHOD_RAW: "stored (raw pixels)", METHOD_DEFLATE: "stored (deflated pixels)"}
_ENTRY_LIMIT = MAX_NAME + 3 * 10  # most bytes one entry of the table can take
MAX_TABLE = 1 << 27  # 128 MiB: the most bytes an archive's entry table takes (2^20 names of 120 bytes)
_ENTRY_MIN = 4  # fewest bytes one entry of the table can take (a name length and three numbers)
_ENTRIES_KNOWN = 1 << 12  # distinct entries remembered while reading a table (repeats are not read again)
MAX_METADATA = 1 << 24  # 16 MiB: the most metadata one file carries
_META_ICC, _META_EXIF, _META_TEXT, _META_GAMMA, _META_DPI = 1, 2, 3, 4, 5
_META_PALETTE, _META_TRANSPARENCY, _META_BILEVEL = 6, 7, 8
_META_NAMES = {_META_ICC: "ICC profile", _META_EXIF: "EXIF", _META_TEXT: "text", _META_GAMMA: "gamma",
               _META_DPI: "DPI", _META_PALETTE: "palette", _META_TRANSPARENCY: "transparency",
               _META_BILEVEL: "bilevel"}
PALETTE_MODES = ("RGB", "RGBA")  # a palette record's first byte: 0 RGB, 1 RGBA
MAX_PALETTE = 256  # entries


@dataclass(frozen=True)
class Entry:
    """One image: its name (archives only), height, width and channels."""

    height: int
    width: int
    channels: int = 1
    name: str = ""

    @property
    def subpixels(self) -> int:
        return self.height * self.width * self.channels


@dataclass(frozen=True)
class Metadata:
    """What an image file carries beyond its pixels, as Pillow reports it (tag 8,
    ``docs/format.md``): records of (kind varint, length varint, bytes), in this order:
    1 ICC profile, 2 EXIF (as Pillow's ``info["exif"]``), 3 a text chunk (keyword, a NUL,
    text; UTF-8; one record each, in order), 4 gamma (varint: gamma x 100,000, as PNG's
    gAMA chunk), 5 DPI (x and y, two little-endian float64), 6 palette (the image is mode P
    and its pixels are indices: the palette's mode, a byte, 0 RGB or 1 RGBA, then up to 256
    entries of 3 or 4 bytes), 7 transparency (of a palette image, as Pillow's
    ``info["transparency"]``: a byte 0 then per-entry alpha bytes, or a byte 1 then the one
    transparent index, a varint), 8 bilevel (empty: the image is mode 1, its pixels 0/255
    gray). Empty fields are left out."""

    icc_profile: bytes = b""
    exif: bytes = b""
    text: tuple[tuple[str, str], ...] = ()  # (keyword, text) pairs
    gamma: int = 0  # gamma x 100,000; 0: none
    dpi: tuple[float, float] | None = None
    palette: tuple[str, bytes] | None = None  # mode P: (the palette's mode, RGB or RGBA; its bytes)
    transparency: bytes | int | None = None  # mode P: per-entry alpha, or the one transparent index
    bilevel: bool = False  # mode 1

    def __bool__(self) -> bool:
        return bool(self.icc_profile or self.exif or self.text or self.gamma or self.dpi or self.bilevel
                    or self.palette is not None or self.transparency is not None)

    def pack(self) -> bytes:
        """The records; a FormatError when they exceed :data:`MAX_METADATA`."""
        records = [(kind, value) for kind, value in ((_META_ICC, self.icc_profile), (_META_EXIF, self.exif)) if value]
        records += [(_META_TEXT, k.encode("utf-8") + b"\0" + v.encode("utf-8")) for k, v in self.text]
        if self.gamma:
            g = bytearray()
            put_varint(g, self.gamma)
            records.append((_META_GAMMA, bytes(g)))
        if self.dpi is not None:
            records.append((_META_DPI, struct.pack("<2d", *self.dpi)))
        if self.palette is not None:
            records.append((_META_PALETTE, bytes([PALETTE_MODES.index(self.palette[0])]) + self.palette[1]))
        if isinstance(self.transparency, int):
            t = bytearray(b"\1")
            put_varint(t, self.transparency)
            records.append((_META_TRANSPARENCY, bytes(t)))
        elif self.transparency is not None:
            records.append((_META_TRANSPARENCY, b"\0" + self.transparency))
        if self.bilevel:
            records.append((_META_BILEVEL, b""))
        out = bytearray()
        for kind, value in records:
            put_varint(out, kind)
            put_varint(out, len(value))
            out += value
        if len(out) > MAX_METADATA:
            raise FormatError(f"metadata of {len(out)} bytes (ICC profile, EXIF, text): "
                              f"an .arc file holds at most {MAX_METADATA >> 20} MiB")
        return bytes(out)

    @classmethod
    def unpack(cls, data: bytes) -> "Metadata":
        """The records of :meth:`pack`; a FormatError for anything else (an unknown or
        repeated kind, a malformed value, a transparency without a palette, a palette and
        bilevel together)."""
        r, seen, text, fields = Reader(data), set(), [], {}
        while r.pos < len(data):
            kind = r.varint("metadata")
            value = r.take(r.varint("metadata"), "metadata")
            name = _META_NAMES.get(kind)
            if name is None:
                raise FormatError(f"unknown metadata record {kind}: written by a newer arcodec?")
            if kind in seen and kind != _META_TEXT:
                raise FormatError(f"corrupt header (metadata record {kind}, {name}, repeated)")
            seen.add(kind)
            if kind == _META_TEXT:
                key, nul, txt = value.partition(b"\0")
                try:
                    text.append((key.decode("utf-8"), txt.decode("utf-8")))
                except UnicodeDecodeError:
                    nul = b""
                if not nul:
                    raise FormatError("corrupt header (metadata text record is not a UTF-8 keyword, NUL, text)")
            elif kind == _META_GAMMA:
                g = Reader(value)
                fields["gamma"] = g.varint("metadata gamma")
                if g.pos != len(value) or not fields["gamma"]:
                    raise FormatError("corrupt header (metadata gamma record)")
            elif kind == _META_DPI:
                if len(value) != 16:
                    raise FormatError("corrupt header (metadata DPI record is not two float64)")
                fields["dpi"] = struct.unpack("<2d", value)
            elif kind == _META_PALETTE:
                fields["palette"] = _palette(value)
            elif kind == _META_TRANSPARENCY:
                fields["transparency"] = _transparency(value)
            elif kind == _META_BILEVEL:
                if value:
                    raise FormatError("corrupt header (metadata bilevel record is not empty)")
                fields["bilevel"] = True
            else:
                fields["icc_profile" if kind == _META_ICC else "exif"] = value
        if "transparency" in fields and "palette" not in fields:
            raise FormatError("corrupt header (metadata transparency record without a palette)")
        if "palette" in fields and "bilevel" in fields:
            raise FormatError("corrupt header (metadata palette and bilevel records together)")
        return cls(text=tuple(text), **fields)


def _indexed(metadata: Metadata) -> bool:
    """Whether metadata makes its image's one channel palette indices or bilevel pixels."""
    return metadata.palette is not None or metadata.bilevel


def _palette(value: bytes) -> tuple[str, bytes]:
    """A palette record's (mode, bytes), or a FormatError."""
    mode = PALETTE_MODES[value[0]] if value and value[0] < len(PALETTE_MODES) else None
    if mode is None or (len(value) - 1) % len(mode) or (len(value) - 1) // len(mode) > MAX_PALETTE:
        raise FormatError(f"corrupt header (metadata palette record: a mode byte 0 or 1, then at most {MAX_PALETTE} "
                          "entries of 3 or 4 bytes)")
    return mode, value[1:]


def _transparency(value: bytes) -> bytes | int:
    """A transparency record's per-entry alpha (bytes) or transparent index (int), or a FormatError."""
    if value[:1] == b"\0" and len(value) <= 1 + MAX_PALETTE:
        return value[1:]
    if value[:1] == b"\1":
        t = Reader(value)
        t.pos = 1
        index = t.varint("metadata transparency")
        if t.pos == len(value) and index < MAX_PALETTE:
            return index
    raise FormatError("corrupt header (metadata transparency record: a byte 0 and per-entry alpha, or a byte 1 "
                      "and an index below 256)")


@dataclass(frozen=True)
class Header:
    model_id: int
    fingerprint: bytes
    entries: tuple[Entry, ...]
    archive: bool = False
    bit_depth: int = DEFAULT_BIT_DEPTH
    tile: int = DEFAULT_TILE
    version: int = VERSION
    scan: int = SCAN_RASTER  # the order of the symbols (docs/format.md)
    method: int = METHOD_MODEL  # or a stored method: no model, the pixels as they are
    levels: tuple[int, ...] = ()  # level map: the model coded indices into these values
    metadata: Metadata = Metadata()  # single images: what the image file carried beyond pixels
    engine: int = 0  # the arithmetic of the model's probabilities (docs/format.md)
    # archives: the payload starts with a CRC32 of each stream's symbols, so that a stream
    # decoded alone is verified (random access: arcodec.codec.api.Archive)
    stream_crcs: bool = False
    # 8, or 16 (tag 11): the entry's channels are 2C byte channels of a 16-bit image of C
    # channels, channel 2k the high byte and 2k+1 the low byte of channel k
    sample_bits: int = DEFAULT_BIT_DEPTH
    extra: dict = field(default_factory=dict, compare=False)


def crc32_pixels(arrays, crc: int = 0) -> int:
    """CRC32 over the uint8 pixel bytes of the images, in order (H x W x C, C order),
    continuing from ``crc``."""
    for a in arrays:
        crc = zlib.crc32(a.tobytes(), crc)
    return crc & 0xFFFFFFFF


def put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varint must be non-negative")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


class Reader:
    """Reads fixed-width fields and varints from ``data``, from ``pos`` on; running out of
    data or an overlong varint is a FormatError that names the field (``what``)."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise FormatError(f"file is truncated (in {what})")
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def varint(self, what: str, bits: int = 64) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= len(self.data):
                raise FormatError(f"file is truncated (in {what})")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift >= bits:
                raise FormatError(f"corrupt header (overlong number in {what})")


def join_parts(parts: list[bytes]) -> bytes:
    """Several byte strings as one: the length of every part but the last (varints), then
    the parts. The payload's streams and a wavefront stream's bands are stored this way."""
    out = bytearray()
    for p in parts[:-1]:
        put_varint(out, len(p))
    return bytes(out) + b"".join(parts)


def split_parts(data: bytes, count: int, what: str) -> list[bytes]:
    """The ``count`` parts of :func:`join_parts`'s output (``what`` names one in errors:
    "stream", "band"), or a FormatError when the lengths do not fit the data."""
    r = Reader(data)
    lengths = [r.varint(f"{what} lengths") for _ in range(count - 1)]
    rest = len(data) - r.pos
    if sum(lengths) > rest:
        raise FormatError(f"file is truncated (payload shorter than its {what}s)")
    lengths.append(rest - sum(lengths))
    out, pos = [], r.pos
    for n in lengths:
        out.append(data[pos: pos + n])
        pos += n
    return out


def unsafe_name(name: str) -> str | None:
    """Why an archive entry's name is unsafe to write under a directory (absolute, a drive,
    a ``..`` part, a NUL), or None when it is a plain relative path ("" is allowed: an
    unnamed image)."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in parts:
        return "a '..' part"
    if "\0" in name:
        return "a NUL character"
    return None


def _check_entry(e: Entry, most: int = 4) -> None:
    why = unsafe_name(e.name)
    if why is not None:
        raise FormatError(f"archive entry {e.name!r} is unsafe ({why})")
    if not (1 <= e.height <= MAX_SIDE and 1 <= e.width <= MAX_SIDE):
        raise FormatError(f"header claims a {e.height}x{e.width} image: sides must be 1..{MAX_SIDE}")
    if not 1 <= e.channels <= most:
        raise FormatError(f"header claims {e.channels} channels: 1..{most} supported")
    if e.subpixels > MAX_SUBPIXELS:
        raise FormatError(f"header claims a {e.height}x{e.width}x{e.channels} image: "
                          f"more than {MAX_SUBPIXELS} sub-pixels")


def write(header: Header, payload: bytes, images) -> bytes:
    """Serialise a header and the coder payload, and append the CRC32 of the file's bytes
    and the images' pixels (uint8 arrays, H x W x C)."""
    if len(header.fingerprint) != 2:
        raise ValueError("fingerprint must be 2 bytes")
    entries = header.entries
    if not header.archive and len(entries) != 1:
        raise ValueError("a single-image file holds exactly one image")
    wide = header.sample_bits == WIDE_BITS
    if header.sample_bits not in (DEFAULT_BIT_DEPTH, WIDE_BITS):
        raise ValueError(f"sample bits are 8 or {WIDE_BITS}")
    if wide and (header.archive or entries[0].channels % 2):
        raise ValueError("16-bit samples belong to single-image files of an even number of byte channels")
    for e in entries:
        _check_entry(e, 8 if wide else 4)
    table = b""
    if header.archive:
        raw = bytearray()
        for e in entries:
            name = e.name.encode("utf-8")
            put_varint(raw, len(name))
            raw += name
            put_varint(raw, e.height)
            put_varint(raw, e.width)
            put_varint(raw, e.channels)
        if len(raw) > MAX_TABLE:
            raise FormatError(f"archive entry table of {len(raw)} bytes (the images' names and shapes): "
                              f"an .arc file holds at most {MAX_TABLE >> 20} MiB; use shorter names or fewer images")
        packed = bytearray()
        body = zlib.compress(bytes(raw), 9, wbits=-15)
        put_varint(packed, len(body))
        packed += body
        table = bytes(packed) if len(packed) + 3 < len(raw) else bytes(raw)  # (+3: the tag)
    if header.levels and (list(header.levels) != sorted(set(header.levels))
                          or not 0 <= header.levels[0] <= header.levels[-1] <= 255):
        raise ValueError("a level map lists distinct values 0..255 in increasing order")
    fields = [(_TAG_BIT_DEPTH, header.bit_depth, DEFAULT_BIT_DEPTH), (_TAG_TILE, header.tile, DEFAULT_TILE),
              (_TAG_SCAN, header.scan, SCAN_RASTER), (_TAG_METHOD, header.method, METHOD_MODEL),
              (_TAG_LEVELS, sum(1 << v for v in header.levels), 0), (_TAG_ENGINE, header.engine if header.engine > 1
                                                                     else 0, 0)]
    ext = bytearray()
    for tag, value, default in fields:  # a field at its default is left out
        if value != default:
            put_varint(ext, tag)
            put_varint(ext, value)
    single = entries[0] if not header.archive else None
    rgb = single is not None and single.channels == 3
    if single is not None and single.channels not in (1, 3):
        put_varint(ext, _TAG_CHANNELS)
        put_varint(ext, single.channels)
    if wide:
        put_varint(ext, _TAG_SAMPLE_BITS)
        put_varint(ext, WIDE_BITS)
    if header.archive and len(table) < len(raw):
        put_varint(ext, _TAG_PACKED)
        put_varint(ext, 1)
    if header.stream_crcs:
        if not header.archive or header.method != METHOD_MODEL:
            raise ValueError("stream checksums belong to model-coded archives")
        put_varint(ext, _TAG_STREAM_CRCS)
        put_varint(ext, 1)
    if header.metadata:
        if header.archive:
            raise ValueError("metadata belongs to single-image files")
        if _indexed(header.metadata) and (single.channels != 1 or wide):
            raise ValueError("a palette or bilevel record belongs to an 8-bit image of one channel")
        block = header.metadata.pack()
        put_varint(ext, _TAG_METADATA)
        put_varint(ext, len(block))
        ext += block
    flags = (_ARCHIVE if header.archive else 0) | (_RGB if rgb else 0) | (_EXT if ext else 0) | (
        _ENGINE if header.engine else 0)
    out = bytearray(MAGIC)
    out.append((header.version << 4) | flags)
    put_varint(out, header.model_id)
    out += header.fingerprint
    if ext:
        put_varint(out, len(ext))
        out += ext
    if header.archive:
        put_varint(out, len(entries))
        out += table
    else:
        put_varint(out, single.height)
        put_varint(out, single.width)
    out += payload
    out += crc32_pixels(images, zlib.crc32(out)).to_bytes(4, "little")
    return bytes(out)


def with_metadata(data: bytes, metadata: Metadata, images) -> bytes:
    """A single-image file's bytes with ``metadata`` in its header: the same payload, the
    CRC32 computed again over the new bytes and the image's pixels (``images``)."""
    header, payload, _ = read(data)
    return write(replace(header, metadata=metadata), payload, images)


def verify(data: bytes, images) -> bool:
    """True when the file's CRC32 matches its bytes and these decoded pixels."""
    return crc32_pixels(images, zlib.crc32(data[:-4])) == int.from_bytes(data[-4:], "little")


def read(data: bytes) -> tuple[Header, bytes, int]:
    """Parse a file into (header, payload, crc); raises FormatError on anything invalid."""
    data = bytes(data)
    header, pos = read_header(data)
    if len(data) - pos < 4:
        raise FormatError("file is truncated (no checksum)")
    return header, data[pos: len(data) - 4], int.from_bytes(data[-4:], "little")


def read_header(data: bytes) -> tuple[Header, int]:
    """Parse the header at the start of ``data`` (a whole file, or only its first bytes) into
    (header, its length in bytes); raises FormatError on anything invalid, and when ``data``
    ends inside the header ("file is truncated")."""
    data = bytes(data)
    if len(data) < 2 or data[:2] != MAGIC:
        raise FormatError("not an arcodec file (wrong magic bytes)")
    r = Reader(data)
    r.pos = 2
    vf = r.take(1, "version")[0]
    version, flags = vf >> 4, vf & 0x0F
    if version == 0:
        raise FormatError("corrupt header (format version 0)")
    if version > VERSION:
        raise FormatError(f"file uses format version {version}; this arcodec reads up to version "
                          f"{VERSION}: upgrade arcodec")
    archive = bool(flags & _ARCHIVE)
    if archive and flags & _RGB:
        raise FormatError("corrupt header (RGB flag set in an archive)")
    model_id = r.varint("model id")
    fingerprint = r.take(2, "fingerprint")
    fields = _extension(r) if flags & _EXT else {}
    method = fields.get(_TAG_METHOD, METHOD_MODEL)
    for tag in fields:
        where = ("a stored file" if tag in _MODEL_ONLY and method != METHOD_MODEL else
                 "an archive" if tag in _SINGLE_ONLY and archive else
                 "a single-image file" if tag in _ARCHIVE_ONLY and not archive else
                 "a file with the RGB flag" if tag == _TAG_CHANNELS and flags & _RGB else None)
        if where is not None:
            raise FormatError(f"corrupt header (header field {tag}, {_TAG_NAMES[tag]}, does not belong in {where})")
    bit_depth = fields.get(_TAG_BIT_DEPTH, DEFAULT_BIT_DEPTH)
    tile = fields.get(_TAG_TILE, DEFAULT_TILE)
    channels = fields.get(_TAG_CHANNELS, 3 if flags & _RGB else 1)
    packed = _TAG_PACKED in fields
    scan = fields.get(_TAG_SCAN, SCAN_RASTER)
    mask = fields.get(_TAG_LEVELS, 0)
    levels = tuple(v for v in range(256) if mask >> v & 1)
    metadata = fields.get(_TAG_METADATA, Metadata())
    engine = fields.get(_TAG_ENGINE, 1) if flags & _ENGINE else 0
    sample_bits = fields.get(_TAG_SAMPLE_BITS, DEFAULT_BIT_DEPTH)
    if flags & _ENGINE and method != METHOD_MODEL:
        raise FormatError("corrupt header (engine flag set in a stored file)")
    if _TAG_ENGINE in fields and not (flags & _ENGINE and engine > 1):
        raise FormatError(f"corrupt header (header field 9, engine, is {fields[_TAG_ENGINE]}: it names engines 2 "
                          "and up, beside the engine flag)")
    if not 1 <= bit_depth <= 8:
        raise FormatError(f"header claims bit depth {bit_depth}: 1..8 supported")
    if not 8 <= tile <= 4096:
        raise FormatError(f"header claims tile size {tile}: 8..4096 supported")
    if archive:
        count = r.varint("image count")
        if count > MAX_IMAGES:
            raise FormatError(f"header claims {count} images: at most {MAX_IMAGES}")
        if packed:
            body = r.take(r.varint("entry table length"), "entry table")
            table = _inflate(body, min(count * _ENTRY_LIMIT, MAX_TABLE))
            if len(table) < _ENTRY_MIN * count:
                raise FormatError(f"corrupt header (entry table of {len(table)} bytes cannot hold "
                                  f"{count} images: {_ENTRY_MIN} bytes each at least)")
            entries, end = _entry_table(table, 0, count)
            if end != len(table):
                raise FormatError("corrupt header (entry table longer than its images)")
        else:
            if len(data) - r.pos < _ENTRY_MIN * count:
                raise FormatError(f"file is truncated ({len(data) - r.pos} bytes cannot hold the entry table of "
                                  f"{count} images, {_ENTRY_MIN} bytes each at least)")
            entries, end = _entry_table(data, r.pos, count)
            if end - r.pos > MAX_TABLE:
                raise FormatError(f"corrupt header (entry table of {end - r.pos} bytes: at most {MAX_TABLE >> 20} MiB)")
            r.pos = end
    else:
        entries = [Entry(r.varint("height"), r.varint("width"), channels)]
        if sample_bits == WIDE_BITS and channels % 2:
            raise FormatError(f"corrupt header (header field 11, sample bits, with {channels} channels: "
                              "16-bit samples take two byte channels each)")
        _check_entry(entries[0], 8 if sample_bits == WIDE_BITS else 4)
        if _indexed(metadata) and (channels != 1 or sample_bits == WIDE_BITS):
            raise FormatError(f"corrupt header (metadata {'bilevel' if metadata.bilevel else 'palette'} record in "
                              f"an image of {channels} {'byte ' if sample_bits == WIDE_BITS else ''}channels: it "
                              "belongs to an 8-bit image of one)")
    header = Header(model_id, fingerprint, tuple(entries), archive, bit_depth, tile, version, scan, method, levels,
                    metadata, engine, _TAG_STREAM_CRCS in fields, sample_bits)
    return header, r.pos


def _entry_table(data: bytes, pos: int, count: int) -> tuple[list[Entry], int]:
    """The ``count`` entries of an archive's entry table in ``data`` from ``pos`` on, and the
    position after them. A table of 2^20 entries can inflate from 4 KB, so repeats are cheap:
    an entry whose bytes repeat those of one read before is that same :class:`Entry`, read and
    checked once (the first :data:`_ENTRIES_KNOWN` distinct entries are remembered), and a run
    of one entry (unnamed images of one shape) is compared with the table a block at a time."""
    entries, known, previous = [], {}, None
    while len(entries) < count:
        start = pos
        try:  # find the entry's end (a name length of one or two bytes, numbers of any size), then read it
            n = data[pos]
            if n & 0x80:  # a name of 128 bytes or more (MAX_NAME takes two bytes)
                pos += 1
                if data[pos] & 0x80:
                    raise IndexError  # a longer length: read by _read_entry, which says what is wrong
                n = n & 0x7F | data[pos] << 7
            pos += 1 + n
            for _field in range(3):  # height, width, channels
                while data[pos] & 0x80:
                    pos += 1
                pos += 1
        except IndexError:
            e, pos = _read_entry(data, start)
            entries.append(e)
            continue
        raw = data[start:pos]
        e = known.get(raw)
        if e is None:
            e = _read_entry(raw, 0)[0]
            if len(known) < _ENTRIES_KNOWN:
                known[raw] = e
        entries.append(e)
        if raw == previous:  # a run: the next 1, 2, 4, ... entries compared at once while they match
            step = 1
            while step:
                step = min(step, count - len(entries))
                if step and data.startswith(raw * step, pos):
                    pos += step * len(raw)
                    entries += [e] * step
                    step *= 2
                else:
                    step //= 2
        previous = raw
    return entries, pos


def _read_entry(data: bytes, pos: int) -> tuple[Entry, int]:
    """One entry of an archive's table at ``pos``, checked, and the position after it."""
    t = Reader(data)
    t.pos = pos
    n = t.varint("name")
    if n > MAX_NAME:
        raise FormatError("corrupt header (name too long)")
    try:
        name = t.take(n, "name").decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("corrupt header (name is not UTF-8)") from None
    e = Entry(t.varint("height"), t.varint("width"), t.varint("channels"), name)
    _check_entry(e)
    return e, t.pos


def _extension(r: Reader) -> dict:
    """The extension block's fields, {tag: value}: each tag once, each value one this arcodec
    knows (the metadata as a :class:`Metadata`); where a tag belongs is checked by the caller."""
    ext = Reader(r.take(r.varint("extension length"), "extension"))
    fields = {}
    while ext.pos < len(ext.data):
        tag = ext.varint("extension")
        value = ext.varint("extension", bits=256 + 7 if tag == _TAG_LEVELS else 64)
        name = _TAG_NAMES.get(tag)
        if name is None:
            raise FormatError(f"unknown header field {tag}: written by a newer arcodec?")
        if tag in fields:
            raise FormatError(f"corrupt header (header field {tag}, {name}, repeated)")
        if tag in _ONLY_ONE and value != 1:
            raise FormatError(f"corrupt header (header field {tag}, {name}, is {value}: only 1 is defined)")
        if tag == _TAG_SAMPLE_BITS and value != WIDE_BITS:
            raise FormatError(f"corrupt header (header field {tag}, {name}, is {value}: only {WIDE_BITS} is defined)")
        if tag == _TAG_METADATA:
            if value > MAX_METADATA:
                raise FormatError(f"corrupt header (metadata of {value} bytes: at most {MAX_METADATA >> 20} MiB)")
            value = Metadata.unpack(ext.take(value, "metadata"))
        known = {_TAG_SCAN: (SCAN_RASTER, SCAN_WAVEFRONT), _TAG_METHOD: (METHOD_MODEL, METHOD_RAW, METHOD_DEFLATE)}
        if (tag in known and value not in known[tag]) or (tag == _TAG_LEVELS and not 0 < value < 1 << 256):
            raise FormatError(f"header field {tag}, {name}, has value {value}, unknown to this arcodec: "
                              "written by a newer arcodec?")
        fields[tag] = value
    return fields


def _inflate(data: bytes, limit: int) -> bytes:
    """Raw DEFLATE data, refusing more than ``limit`` bytes of output (no zip bombs)."""
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(data, limit)
    except zlib.error:
        raise FormatError("corrupt header (entry table does not inflate)") from None
    if d.unconsumed_tail:
        raise FormatError(f"corrupt header (entry table inflates to more than {limit} bytes)")
    if not d.eof:
        raise FormatError("corrupt header (entry table cut short)")
    return out


def header_size(data: bytes) -> int:
    """Bytes of the file that are not payload (header and checksum)."""
    _, payload, _ = read(data)
    return len(data) - len(payload)
