"""A Pillow plugin for .arc files: ``import arcodec.pillow`` and Pillow opens and saves them.

>>> import arcodec.pillow
>>> from PIL import Image
>>> Image.new("L", (6, 5), 7).save("x.arc")          # doctest: +SKIP
>>> im = Image.open("x.arc"); im.size, im.mode        # doctest: +SKIP
((6, 5), 'L')

Opening reads only the header (``arcodec.codec.container.read``): size and mode come from it and
nothing is decoded. The first ``load()`` (any access to the pixels) decodes the whole file
once and keeps the images; the images of an archive are its frames (``n_frames``,
``seek(i)``; ``info["name"]`` is the entry's name). ``save`` writes a single-image file
with ``arcodec.codec.api.encode_images``; ``model="mnist-gated"`` names a model, the default is
auto (the smallest of every applicable shipped model and the stored method). Metadata travels
both ways (``arcodec.imageio.image_metadata``): ``save`` keeps the image's ICC profile, EXIF,
PNG text chunks, gamma and DPI (``icc_profile=``, ``exif=``, ``dpi=`` override them), and
opening puts them in ``info`` as reading a PNG does. A palette image (mode P) is saved as its
indices with its palette and transparency, a 1-bit one (mode 1) as 0/255 gray; both open in
their mode again, with their palette and ``info["transparency"]``. Needs Pillow >= 10.1.

16-bit samples (header tag 11): a 16-bit gray .arc file opens as mode I;16, and saving an
I;16 image writes one. Pillow has no 16-bit colour modes: a 16-bit LA, RGB or RGBA .arc file
opens with the mode of its channels (size and ``info`` are there), and ``load()`` raises
OSError; ``arcodec.codec.api.decompress`` gives its pixels as uint16.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFile, ImagePalette, UnidentifiedImageError

from arcodec.codec import container
from arcodec.errors import ArcodecError
from arcodec.imageio import image_metadata, metadata_info, pil_pixels

FORMAT = "ARC"
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _accept(prefix: bytes) -> bool:
    """b"AR", then a version this arcodec reads (so no text file's "AR...": a version nibble of 4
    or more)."""
    return len(prefix) > 2 and prefix[:2] == container.MAGIC and 1 <= prefix[2] >> 4 <= container.VERSION


class ArcImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "arcodec lossless image (learned models)"

    def _open(self) -> None:
        self._data = self.fp.read()
        try:
            self._header = container.read(self._data)[0]
        except ArcodecError as e:
            raise UnidentifiedImageError(f"not a valid .arc file: {e}") from None
        if not self._header.entries:
            raise UnidentifiedImageError("not a valid .arc file: an archive of no images")
        self.n_frames = len(self._header.entries)
        self.is_animated = self.n_frames > 1
        self._images: list[np.ndarray] | None = None  # every image, once decoded
        self._loaded = -1  # the frame whose pixels self.im holds
        self._frame = -1
        self.info.update(metadata_info(self._header.metadata))
        self.text = dict(self._header.metadata.text)  # as a PNG's: saving again keeps them
        if self._header.metadata.palette is not None:
            mode, data = self._header.metadata.palette
            self.palette = ImagePalette.raw(mode, data)
            self.palette.mode = mode
        self.seek(0)

    def seek(self, frame: int) -> None:
        if not self._seek_check(frame):
            return
        e = self._header.entries[frame]
        self._frame = frame
        self._size = (e.width, e.height)
        if self._header.sample_bits == container.WIDE_BITS:  # byte planes of 16-bit samples
            self._mode = "I;16" if e.channels == 2 else _MODES[e.channels // 2]
        elif self._header.metadata.palette is not None:  # indices
            self._mode = "P"
        elif self._header.metadata.bilevel:  # 0/255 gray
            self._mode = "1"
        else:
            self._mode = _MODES[e.channels]
        if self._header.archive:
            self.info["name"] = e.name

    def tell(self) -> int:
        return self._frame

    def load(self):
        if self._header.sample_bits == container.WIDE_BITS and self.mode != "I;16":
            raise OSError(f"cannot load a 16-bit {self.mode} .arc file: Pillow has no 16-bit colour modes "
                          "(arcodec.codec.api.decompress gives it as uint16)")
        if self._loaded != self._frame:
            if self._images is None:
                from arcodec.codec import api as codec

                try:
                    self._images = codec.decode_file(self._data)[1]
                except ArcodecError as e:
                    raise OSError(f"cannot decode .arc file: {e}") from None
                self._data = b""
                if self._exclusive_fp and self.fp:  # everything is in memory: let the file go
                    self.fp.close()
                self.fp = None
            self.im = Image.core.new(self.mode, self.size)
            img = self._images[self._frame]
            if self.mode == "1":  # a byte a pixel: 0 black, any other value white
                self.frombytes(img.tobytes(), "raw", "1;8")
            else:
                self.frombytes((img.astype("<u2") if img.dtype == np.uint16 else img).tobytes())  # I;16: little-endian
            self.readonly = 0
            self._loaded = self._frame
        return Image.Image.load(self)


def _pixels(im: Image.Image) -> np.ndarray:
    """(H, W, C) uint8 of an image as an .arc file codes it (uint16 for the I;16 modes, a
    palette image's indices), as arcodec.imageio.pil_pixels gives them."""
    try:
        return pil_pixels(im, "image")
    except ArcodecError as e:
        raise OSError(f"cannot write {FORMAT}: {e}") from None


def _save(im: Image.Image, fp, filename) -> None:
    from arcodec.codec import api as codec

    a = _pixels(im)
    try:
        data = codec.encode_images([a], model=im.encoderinfo.get("model")).data
        meta = image_metadata(im, im.encoderinfo)
        if meta:
            data = container.with_metadata(data, meta, [codec.byte_planes(a)])
    except ArcodecError as e:
        raise OSError(f"cannot write {FORMAT}: {e}") from None
    fp.write(data)


Image.register_open(FORMAT, ArcImageFile, _accept)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, ".arc")
