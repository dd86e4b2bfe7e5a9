"""Reading and writing image files (Pillow), and writing any file atomically."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np

from arcodec.errors import ArcodecError

IMAGE_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm", ".webp", ".gif"}
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
# lossless formats we write by suffix; any other suffix gets PNG
_LOSSLESS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".pgm": "PPM", ".ppm": "PPM", ".pnm": "PPM"}


def read_image(data: bytes, name: str = "input") -> np.ndarray:
    """Decode image bytes to (H, W, C) uint8; a clear error for anything else."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return pil_pixels(im, name)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ArcodecError(f"{name}: not a readable image ({e.__class__.__name__})") from None


def pil_pixels(im, name: str = "input") -> np.ndarray:
    """A Pillow image's pixels as (H, W, C) uint8: modes 1 and L as gray, P as RGB (RGBA with
    transparency), other 8-bit modes as RGB; more than 8 bits a channel is refused."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise ArcodecError(f"{name}: {im.mode} images (more than 8 bits) are not supported")
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")
    a = np.asarray(im, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


def encode_png(a: np.ndarray) -> bytes:
    from PIL import Image

    a = a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a
    buf = io.BytesIO()
    Image.fromarray(a, mode=_MODES[1 if a.ndim == 2 else a.shape[2]]).save(buf, format="PNG")
    return buf.getvalue()


def write_image(path: Path, a: np.ndarray, force: bool = False) -> None:
    """Write pixels in the format the suffix names (PNG when it names none)."""
    from PIL import Image

    a = a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a
    fmt = _LOSSLESS.get(Path(path).suffix.lower(), "PNG")
    buf = io.BytesIO()
    Image.fromarray(a, mode=_MODES[1 if a.ndim == 2 else a.shape[2]]).save(buf, format=fmt)
    write_atomic(path, buf.getvalue(), force)


def write_atomic(path: Path, data: bytes, force: bool = False) -> None:
    """Write via a temporary file and a rename: never a partial file, never an unasked
    overwrite."""
    path = Path(path)
    if path.exists() and not force:
        raise ArcodecError(f"{path} already exists (use -f to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
