"""Reading and writing image files (Pillow), and writing any file atomically; the metadata
an .arc file carries beside the pixels (:class:`arcodec.codec.container.Metadata`: ICC
profile, EXIF, PNG text chunks, gamma, DPI, a palette and its transparency, mode 1), taken
from a Pillow image and given back when writing; what of an image file an .arc file cannot
give back (:func:`lossless_for`).

A palette image (mode P, an RGB or RGBA palette) is coded as its indices, (H, W, 1) uint8
(what ``np.asarray`` gives), its palette and transparency in the metadata; a 1-bit image
(mode 1) as 0/255 gray, marked bilevel in the metadata. Writing gives both their mode back;
:func:`shown` gives a palette image's colours.

16-bit images are (H, W, C) uint16: gray ones from PNG, TIFF and PGM files (Pillow's I;16
modes), LA, RGB and RGBA ones from PNG files only, read and written with pypng (Pillow has
no 16-bit colour modes: it loads their samples as 8 bits)."""

from __future__ import annotations

import io
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from arcodec.codec.container import PALETTE_MODES, Metadata
from arcodec.errors import ArcodecError

IMAGE_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm", ".webp", ".gif"}
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_CHANNELS = {**{mode: c for c, mode in _MODES.items()}, "P": 1, "1": 1}
# lossless formats we write by suffix; any other suffix gets PNG
_LOSSLESS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".pgm": "PPM", ".ppm": "PPM", ".pnm": "PPM"}
# the formats a 16-bit image of 1 (gray) or more channels is written in
_WIDE_FORMATS = {1: ("PNG", "TIFF", "PPM"), 2: ("PNG",), 3: ("PNG",), 4: ("PNG",)}
_WIDE_ADVICE = "convert it to a 16-bit PNG"
_PALETTE_FORMATS = {"PNG", "BMP", "TIFF"}  # lossless formats we write that hold mode P (PPM: its colours)


def read_image(data: bytes, name: str = "input") -> np.ndarray:
    """Decode image bytes to (H, W, C) uint8, a palette image as its colours (:func:`shown`);
    a clear error for anything else, 16-bit samples included (``arcodec compress`` codes
    those: :func:`read_image_and_metadata`)."""
    a, meta = read_image_and_metadata(data, name)
    if a.dtype != np.uint8:
        raise ArcodecError(f"{name}: 16-bit samples: this takes 8-bit images (arcodec compress codes 16-bit ones)")
    return shown(a, meta)


def read_image_and_metadata(data: bytes, name: str = "input") -> tuple[np.ndarray, Metadata]:
    """Decode image bytes to (H, W, C) pixels as an .arc file codes them (:func:`pil_pixels`:
    a palette image's indices) and the metadata it keeps (:func:`image_metadata`). The
    pixels are uint8, or uint16 for 16-bit gray (PNG, TIFF, PGM of maxval 65535) and 16-bit
    LA, RGB and RGBA PNG files; a clear error for anything else, and for other samples of
    more than 8 bits (:func:`sample_bits`), which Pillow would load as 8 bits and lose the
    rest."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            bits = sample_bits(im)
            maxval = _maxval(im)
            im.load()
            a = pil_pixels(im, name) if bits <= 8 else _wide_pixels(im, data, bits, maxval, name)
            return a, image_metadata(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ArcodecError(f"{name}: not a readable image ({e.__class__.__name__})") from None


def _maxval(im) -> int | None:
    """A PPM or PGM file's maxval when it is not 255 (None for any other file)."""
    for tile in im.tile:
        args = tile[3] if isinstance(tile[3], tuple) else (tile[3],)
        if tile[0] in ("ppm", "ppm_plain") and len(args) > 1 and isinstance(args[1], int) and args[1] != 255:
            return args[1]
    return None


def _wide_pixels(im, data: bytes, bits: int, maxval: int | None, name: str) -> np.ndarray:
    """The (H, W, C) uint16 pixels of a loaded Pillow image of ``bits`` > 8 bits a sample
    (``maxval``: a PPM's, when it has one but 255) whose file is ``data``: a 16-bit gray
    image from Pillow, a 16-bit colour PNG from pypng; a one-line refusal for anything else."""
    if bits != 16 or maxval not in (None, 65535):
        detail = f"maxval {maxval}" if maxval else f"mode {im.mode}"
        raise ArcodecError(f"{name}: {bits}-bit samples ({detail}) are not supported (an .arc file holds 8 or 16 "
                           f"bits a sample): {_WIDE_ADVICE}")
    mode = coded_mode(im)
    if mode == "L":  # I;16, I;16B (PNG, TIFF), or I (a PGM of maxval 65535)
        return np.asarray(im).astype(np.uint16)[:, :, None]
    if im.format != "PNG":
        raise ArcodecError(f"{name}: 16-bit {mode} is read from PNG files only, not {im.format}: {_WIDE_ADVICE}")
    import png

    width, height, rows, info = png.Reader(bytes=data).read()  # the samples as stored (no tRNS, sBIT applied)
    planes = np.vstack([np.frombuffer(row, dtype=np.uint16) for row in rows])
    return planes.reshape(height, width, info["planes"])


def image_metadata(im, options: dict | None = None) -> Metadata:
    """The metadata of a Pillow image that an .arc file keeps: its ICC profile, EXIF, PNG text
    chunks (``im.text``), gamma and DPI, from ``im.info``, and ``options`` (a save call's
    keyword arguments: ``icc_profile``, ``exif``, ``dpi``), which take precedence; the palette
    and transparency of a palette image coded as its indices (:func:`coded_mode`), and
    whether it is mode 1."""
    info = {**im.info, **{k: v for k, v in (options or {}).items() if k in ("icc_profile", "exif", "dpi")}}
    indexed = coded_mode(im) == "P"
    exif = info.get("exif") or b""
    if not isinstance(exif, bytes):  # an Image.Exif
        exif = exif.tobytes()
    dpi = info.get("dpi")
    gamma = info.get("gamma")
    text = getattr(im, "text", None) if im.format in ("PNG", "ARC") else None  # ARC: arcodec.pillow
    return Metadata(icc_profile=info.get("icc_profile") or b"", exif=exif,
                    text=tuple((str(k), str(v)) for k, v in (text or {}).items()),
                    gamma=round(float(gamma) * 100_000) if gamma else 0,
                    dpi=(float(dpi[0]), float(dpi[1])) if dpi else None,
                    palette=(im.palette.mode, bytes(im.getpalette(im.palette.mode))) if indexed else None,
                    transparency=info.get("transparency") if indexed else None, bilevel=im.mode == "1")


def metadata_info(meta: Metadata) -> dict:
    """Pillow's ``info`` entries for metadata, as reading a PNG that carries it gives them:
    ``icc_profile``, ``exif``, ``gamma``, ``dpi``, ``transparency`` and one entry per text
    chunk."""
    info = dict(meta.text)
    if meta.icc_profile:
        info["icc_profile"] = meta.icc_profile
    if meta.exif:
        info["exif"] = meta.exif
    if meta.gamma:
        info["gamma"] = meta.gamma / 100_000.0
    if meta.dpi is not None:
        info["dpi"] = meta.dpi
    if meta.transparency is not None:
        info["transparency"] = meta.transparency
    return info


def _save_options(meta: Metadata | None, fmt: str) -> dict:
    """Pillow ``save`` keyword arguments that write ``meta`` in a file of format ``fmt``: every
    kind in PNG (text as tEXt/iTXt chunks, gamma as a gAMA chunk, a palette image's
    transparency as a tRNS chunk); ICC profile, EXIF and DPI elsewhere (a format that cannot
    hold one drops it: :func:`lossless_for` says so). The palette and mode 1 are the image's
    own (:func:`_encode`)."""
    if not meta:
        return {}
    out = {k: v for k, v in (("icc_profile", meta.icc_profile), ("exif", meta.exif), ("dpi", meta.dpi)) if v}
    if meta.transparency is not None and fmt in _PALETTE_FORMATS:
        out["transparency"] = meta.transparency
    if fmt == "PNG" and (meta.text or meta.gamma):
        import struct

        from PIL.PngImagePlugin import PngInfo

        chunks = PngInfo()
        for key, value in meta.text:
            chunks.add_text(key, value)
        if meta.gamma:
            chunks.add(b"gAMA", struct.pack(">I", meta.gamma))
        out["pnginfo"] = chunks
    return out


def sample_bits(im) -> int:
    """Bits a sample of an image file as Pillow opened it, before it is loaded: 16 for 16-bit
    PNG, TIFF and PGM files, the bits of the largest value of a PPM or PGM file (its maxval),
    otherwise 32 for modes I and F and 8 for the rest (8 or fewer: Pillow scales fewer to 8).
    Pillow loads 16-bit RGB, RGBA and LA samples as 8 bits, dropping the low ones: this tells
    them apart."""
    for tile in im.tile:
        codec, args = tile[0], tile[3]
        args = args if isinstance(args, tuple) else (args,)
        if args and isinstance(args[0], str) and re.fullmatch(r"(L|LA|I|RGB|RGBA|RGBX|CMYK);16[BLNS]?", args[0]):
            return 16
        if codec in ("ppm", "ppm_plain") and len(args) > 1 and isinstance(args[1], int) and args[1] > 255:
            return args[1].bit_length()  # maxval
    return 32 if im.mode in ("I", "F") else 16 if im.mode.startswith("I;16") else 8


def pil_pixels(im, name: str = "input") -> np.ndarray:
    """A Pillow image's pixels as an .arc file codes them, (H, W, C) uint8: modes 1 (0/255)
    and L as gray, P as its indices (H, W, 1) when :func:`coded_mode` says so, otherwise as RGB
    (RGBA with transparency), other 8-bit modes as RGB; the I;16 modes as (H, W, 1) uint16;
    modes I and F (32 bits) are refused."""
    if im.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(im).astype(np.uint16)[:, :, None]
    if im.mode in ("I", "F"):
        raise ArcodecError(f"{name}: mode {im.mode} images (32-bit samples) are not supported: "
                           "convert it to I;16 (16 bits) or L")
    mode = coded_mode(im)
    if mode == "1":
        im = im.convert("L")  # 0/255
    elif im.mode != mode:
        im = im.convert(mode)
    a = np.asarray(im, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


def coded_mode(im) -> str:
    """The mode of the image an .arc file stores for a Pillow image (and decompressing writes
    back): L, LA, RGB or RGBA (of 16-bit samples too); 1 (coded as 0/255 gray); P for a
    palette image of an RGB or RGBA palette (its transparency, if any, per-entry alpha bytes or
    one index, as Pillow reads them from PNG and GIF files), coded as its indices; any other
    palette image is coded as RGB (RGBA with transparency)."""
    if im.mode == "1":
        return "1"
    if im.mode in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
        return "L"
    if im.mode == "P":
        t = im.info.get("transparency")
        kept = t is None or (isinstance(t, bytes) and len(t) <= 256) or (isinstance(t, int) and 0 <= t < 256)
        if kept and im.palette is not None and im.palette.mode in PALETTE_MODES:
            return "P"
        return "RGBA" if t is not None else "RGB"
    return im.mode if im.mode in ("LA", "RGB", "RGBA") else "RGB"


def shown(a: np.ndarray, metadata: Metadata) -> np.ndarray:
    """The colours of pixels an .arc file codes: a palette image's indices (H, W, 1) looked up
    in the palette of its ``metadata``, (H, W, 3) RGB, or (H, W, 4) RGBA when the palette or
    the transparency gives alpha; any other image as it is."""
    if metadata.palette is None:
        return a
    alpha = metadata.palette[0] == "RGBA" or metadata.transparency is not None
    return np.asarray(_palette_image(a, metadata).convert("RGBA" if alpha else "RGB"))


def _palette_image(a: np.ndarray, metadata: Metadata):
    """The Pillow image (mode P) of a palette image's indices (H, W, 1) and its metadata."""
    from PIL import Image

    im = Image.fromarray(a[:, :, 0], "P")
    im.putpalette(metadata.palette[1], metadata.palette[0])
    if metadata.transparency is not None:
        im.info["transparency"] = metadata.transparency
    return im


def peek_subpixels(path: str | Path) -> int:
    """Sub-pixels an .arc file codes for the image file (height x width x channels, twice
    that for 16-bit samples: their high and low bytes), from its header alone; 0 for a file
    Pillow cannot open (reading it will say why)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.width * im.height * _CHANNELS[coded_mode(im)] * (2 if sample_bits(im) == 16 else 1)
    except Exception:  # noqa: BLE001 (only a progress estimate: read_image reports the error)
        return 0


def encode_png(a: np.ndarray, metadata: Metadata | None = None) -> bytes:
    """Pixels (H, W, C) uint8 or uint16 as PNG bytes, with ``metadata`` when given."""
    return _encode(a, "PNG", metadata)


def check_wide_format(path: str | Path, channels: int) -> None:
    """Refuse to write a 16-bit image of ``channels`` channels to ``path`` when the format
    its suffix names cannot hold it (gray: PNG, TIFF, PGM; colour: PNG): before decoding."""
    try:
        _check_wide(written_format(path), channels)
    except ArcodecError as e:
        raise ArcodecError(f"{path}: {e}: name a .png output (-o)") from None


def _check_wide(fmt: str, channels: int) -> None:
    if fmt not in _WIDE_FORMATS[channels]:
        names = " or ".join("PGM" if f == "PPM" else f for f in _WIDE_FORMATS[channels])
        raise ArcodecError(f"a 16-bit {_MODES[channels]} image is written as {names}, not {fmt}")


def _encode(a: np.ndarray, fmt: str, metadata: Metadata | None) -> bytes:
    """Pixels (H, W, C) as the bytes of a file of format ``fmt``, with ``metadata``: a palette
    image in mode P (its colours where ``fmt`` holds no palette), a bilevel one in mode 1."""
    from PIL import Image

    meta = metadata or Metadata()
    if meta.palette is not None and fmt in _PALETTE_FORMATS:
        im = _palette_image(a, meta)
    else:
        a = shown(a, meta)
        channels = a.shape[2] if a.ndim == 3 else 1
        a = a[:, :, 0] if a.ndim == 3 and channels == 1 else a
        if a.dtype == np.uint16:
            _check_wide(fmt, channels)
            if channels > 1:
                return _png16(a, metadata)
            im = Image.fromarray(a)  # I;16
        elif meta.bilevel:
            im = Image.fromarray(a != 0)  # mode 1: 0 black, any other value white
        else:
            im = Image.fromarray(a, mode=_MODES[channels])
    buf = io.BytesIO()
    im.save(buf, format=fmt, **_save_options(metadata, fmt))
    return buf.getvalue()


def _png16(a: np.ndarray, metadata: Metadata | None) -> bytes:
    """A 16-bit LA, RGB or RGBA image, (H, W, C) uint16, as PNG bytes written by pypng, with
    the metadata chunks (before the first IDAT) of the 1x1 PNG Pillow writes with
    ``metadata``: the chunks :func:`_save_options` gives any PNG."""
    import png

    h, w, c = a.shape
    buf = io.BytesIO()
    png.Writer(w, h, greyscale=c <= 2, alpha=c in (2, 4), bitdepth=16).write(buf, a.reshape(h, w * c))
    out = buf.getvalue()
    if not metadata:
        return out
    one = _encode(np.zeros((1, 1, c), dtype=np.uint8), "PNG", metadata)
    chunks, pos = bytearray(), 8
    while pos < len(one):  # Pillow's chunks but the image's own: its metadata
        end = pos + 12 + int.from_bytes(one[pos: pos + 4], "big")
        if one[pos + 4: pos + 8] not in (b"IHDR", b"IDAT", b"IEND"):
            chunks += one[pos:end]
        pos = end
    at = out.index(b"IDAT") - 4
    return out[:at] + bytes(chunks) + out[at:]


def written_format(path: str | Path) -> str:
    """The Pillow format :func:`write_image` writes for a file name: the one its suffix
    names, PNG when it names no lossless format."""
    return _LOSSLESS.get(Path(path).suffix.lower(), "PNG")


def write_image(path: Path, a: np.ndarray, force: bool = False, metadata: Metadata | None = None) -> None:
    """Write pixels (uint8, or uint16: :func:`check_wide_format`) in the format the suffix
    names (PNG when it names none), with ``metadata`` as far as the format holds it."""
    write_atomic(path, _encode(a, written_format(path), metadata), force)


def refuse_existing(path: str | Path, force: bool = False) -> Path:
    """``path`` as a Path, or an error (naming ``path`` as given) when it exists and ``force``
    is not given: call it before any work is done, so that nothing is computed for an output
    that is refused."""
    if Path(path).exists() and not force:
        raise ArcodecError(f"{path} already exists (use -f to overwrite)")
    return Path(path)


def write_atomic(path: Path, data: bytes, force: bool = False) -> None:
    """Write via a temporary file and a rename: never a partial file, never an unasked
    overwrite."""
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(data)


@contextmanager
def atomic_path(path: str | Path, force: bool = False, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write, renamed to ``path`` when the
    block ends and removed when it fails: never a partial file. An existing ``path`` is
    refused before the block runs, unless ``force``. For writers that take a file name
    (matplotlib's ``savefig``); ``suffix`` ends the temporary name, for writers that choose
    the format by it."""
    path = refuse_existing(Path(path), force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# metadata Pillow reports that says how a file is encoded, not what the image is
_ENCODING_KEYS = {"compression", "interlace", "progressive", "progression", "optimize", "quality", "jfif",
                  "jfif_version", "jfif_unit", "jfif_density", "adobe", "adobe_transform", "version",
                  "loop", "duration", "timestamp"}
# TIFF tags that lay out the pixels (or that Pillow reports in ``info``, compared there)
_TIFF_LAYOUT = {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 282, 283, 284, 292, 293, 296, 317,
                322, 323, 324, 325, 338, 339, 34675}
_INFO_NAMES = {"icc_profile": "ICC profile", "exif": "EXIF", "dpi": "DPI", "resolution": "DPI", "gamma": "gamma",
               "transparency": "transparency", "srgb": "sRGB intent", "chromaticity": "chromaticities",
               "xmp": "XMP", "XML:com.adobe.xmp": "XMP", "aspect": "aspect ratio", "background": "background colour",
               "comment": "comment"}


def _written_back(mode: str, fmt: str, metadata: Metadata | None = None, bits: int = 8):
    """A 1x1 image of ``mode`` written as ``fmt`` and read back: what Pillow sees in any file
    of that mode and format; with ``metadata``, in the file decompressing writes
    (:func:`write_image`: ``mode`` is a :func:`coded_mode`, ``bits`` 16 a 16-bit image of its
    channels, and a palette image has the palette and transparency of ``metadata``). None
    when the format cannot hold the mode, or its samples come back of other bits."""
    from PIL import Image

    try:
        if metadata is not None:
            dtype = np.uint16 if bits == 16 else np.uint8
            data = _encode(np.zeros((1, 1, _CHANNELS[mode]), dtype=dtype), fmt, metadata)
        else:
            buf = io.BytesIO()
            Image.new(mode, (1, 1)).save(buf, format=fmt)
            data = buf.getvalue()
        im = Image.open(io.BytesIO(data))
        if bits == 16 and sample_bits(im) != 16:
            return None
        im.load()
        return im
    except (OSError, ValueError, KeyError, ArcodecError):
        return None


def lossless_for(path: str | Path) -> list[str]:
    """What of the image file ``path`` its .arc file would not give back, as Pillow sees the
    file: an empty list when decompressing (which writes the stored pixels to ``path`` in the
    format its suffix names, :func:`write_image`) gives back the same pixels, mode, format,
    frames and metadata (the .arc file keeps an ICC profile, EXIF, PNG text chunks, gamma,
    DPI, a palette and its transparency: :func:`image_metadata`), so that the file may be
    removed. Otherwise short phrases, e.g. ``["GIF format (it would come back as PNG)",
    "sRGB intent", "text chunks (Comment)"]``.

    The metadata compared is the file's Pillow ``info`` (and its TIFF tags, those that do not
    lay out the pixels); a value that any file of the format carries (a BMP's default DPI) is
    no loss, and neither is how the file is encoded (compression, interlacing)."""
    from PIL import Image, TiffTags

    lost = []
    with Image.open(path) as im:
        bits = 16 if sample_bits(im) == 16 else 8  # what an .arc file codes (it refuses other depths)
        im.load()
        mode, fmt = coded_mode(im), written_format(path)
        ours = _written_back(mode, fmt, image_metadata(im), bits)
        if bits == 16:  # 16 bits of the same mode come back
            if ours is None or ours.mode != im.mode:
                lost.append(f"mode {im.mode} (written back as {ours.mode} in {fmt})" if ours is not None
                            else f"16-bit {mode} mode ({fmt} cannot hold it)")
        else:
            if im.mode != mode:
                lost.append("palette (mode P)" if im.mode == "P" else f"mode {im.mode}")
            if ours is None or ours.mode != mode:
                lost.append(f"{mode} mode (written back as {ours.mode} in {fmt})" if ours is not None
                            else f"{mode} mode ({fmt} cannot hold it)")
        if im.format != fmt:
            lost.append(f"{im.format} format (it would come back as {fmt})")
        if getattr(im, "n_frames", 1) > 1:
            lost.append(f"{im.n_frames - 1} more frame(s)")
        theirs = _written_back(im.mode, im.format) if im.format else None
        defaults = [b.info for b in (ours, theirs) if b is not None]
        text = getattr(im, "text", {}) if im.format == "PNG" else {}
        names, chunks = [], []
        for key, value in im.info.items():
            if key in _ENCODING_KEYS or any(d.get(key, object()) == value for d in defaults):
                continue
            if key == "transparency" and im.mode == "P" and mode != "P":  # stored: the RGBA pixels' alpha
                continue
            if key in text:
                chunks.append(key)
            else:
                names.append(_INFO_NAMES.get(key, str(key)))
        if im.format == "TIFF":
            written = dict(getattr(ours, "tag_v2", {}) if ours is not None else {})
            names += [TiffTags.lookup(tag).name for tag, value in im.tag_v2.items()
                      if tag not in _TIFF_LAYOUT and written.get(tag, object()) != value]
        if chunks:
            names.append(f"text chunks ({', '.join(chunks)})")
        lost += list(dict.fromkeys(names))  # once each (dpi and resolution are one DPI)
    return lost


def to_luma(img: np.ndarray) -> np.ndarray:
    """(H, W, C >= 3) uint8 -> (H, W, 1) uint8 gray: round(0.299 R + 0.587 G + 0.114 B)."""
    return np.round(img[:, :, :3] @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[:, :, None]
