"""arcodec: lossless image compression with learned probability models.

>>> import numpy as np, arcodec
>>> img = np.zeros((28, 28), dtype=np.uint8)
>>> data = arcodec.compress(img)            # bytes of a .arc file
>>> bool((arcodec.decompress(data) == img).all())
True
"""

__version__ = "0.1.0"

__all__ = ["compress", "decompress", "decompress_archive", "load_model", "__version__"]


def compress(array, model=None) -> bytes:
    """Compress an (H, W) or (H, W, C) uint8 image to the bytes of a .arc file."""
    from arcodec.codec.api import compress as _compress

    return _compress(array, model)


def decompress(data: bytes, model=None, max_pixels: int | None = None):
    """The image of a .arc file, bit-exact: (H, W) for grayscale, else (H, W, C) uint8. A file
    claiming more than ``max_pixels`` sub-pixels (default: 2^29) is refused before any work."""
    from arcodec.codec.api import DEFAULT_MAX_PIXELS, decompress as _decompress

    return _decompress(data, model, max_pixels or DEFAULT_MAX_PIXELS)


def decompress_archive(data: bytes, model=None, max_pixels: int | None = None) -> dict:
    """Every image of an archive .arc file, by name (``max_pixels`` as for :func:`decompress`,
    summed over the images)."""
    from arcodec.codec.api import DEFAULT_MAX_PIXELS, decompress_archive as _decompress_archive

    return _decompress_archive(data, model, max_pixels or DEFAULT_MAX_PIXELS)


def load_model(name: str = "mnist-gated"):
    """A zoo model (weights sha256-verified) or a training checkpoint path."""
    from arcodec.zoo import load_model as _load

    return _load(name)
