"""Where the bits go: the code length of every sub-pixel of an image, taken from the tables
the codec's encoder hands the range coder while it writes the image's .arc file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arcodec.errors import ArcodecError


@dataclass
class BitsMap:
    """Code length of every sub-pixel of an image under the codec's own tables."""

    image: np.ndarray  # (H, W, C) uint8
    bits: np.ndarray  # (H, W, C) float64: -log2 of the coder's probability of each sub-pixel
    file_bytes: int  # the whole .arc file
    payload_bytes: int  # its range-coder streams (and their lengths), without header and CRC
    model: str

    @property
    def total_bits(self) -> float:
        return float(self.bits.sum())


def bits_map(image, model=None, tile: int | None = None) -> BitsMap:
    """Per-sub-pixel code lengths -log2 p (bits) of ``image`` ((H, W) or (H, W, C) uint8)
    with one model (``model``, else the zoo's default for the image), next to the size of
    the .arc file.

    The image is encoded once, stream by stream of the codec's plan, by the model's coder;
    the exact tables it codes with give the code lengths (raster coder: coder weights;
    wavefront coder: integer frequencies), and the streams make the file that
    :func:`arcodec.codec.api.encode_images` writes with the same model and tile. The sum of
    the code lengths and the payload differ only by the coder's overhead (a few tens of bits
    per stream)."""
    from arcodec.codec import container
    from arcodec.codec.api import as_image, coder_of, coding, resolve
    from arcodec.codec.mixture import code_lengths
    from arcodec.codec.plan import gather, plan_streams, scatter
    from arcodec.zoo import default_model

    img = as_image(image)
    m = resolve(model if model is not None else default_model([img]))
    coder = coder_of(m)
    if coder.kind not in ("autoregressive", "wavefront"):
        raise ArcodecError(f"{m.name} is a flow: bits maps are drawn for autoregressive models")
    if int(img.max()) >= m.levels:
        raise ArcodecError(f"model {m.name!r} codes levels 0..{m.levels - 1}, the image has {img.max()}")
    if m.channels != 1 and img.shape[2] != m.channels:
        raise ArcodecError(f"model {m.name!r} codes {m.channels}-channel images, got {img.shape[2]} channels")
    tile = tile or coder.tile
    bits = np.zeros(img.shape, dtype=np.float64)
    payloads = []
    for s in plan_streams([img.shape], m.channels, tile):
        x = gather([img], s)  # (n, C, h, w)
        n, C = x.shape[:2]
        b = np.zeros(x.shape, dtype=np.float64)  # code lengths of the stream's tiles

        def raster_table(r0, r1, w, x=x, b=b, n=n, C=C):
            w = w.reshape(r1 - r0, x.shape[3], C, n, -1)  # decoder order: row, column, channel, tile
            sym = x[:, :, r0:r1].transpose(2, 3, 1, 0)
            p = np.take_along_axis(w, sym[..., None], -1)[..., 0] / w.sum(-1)
            b[:, :, r0:r1] = -np.log2(p).transpose(3, 2, 0, 1)

        def wavefront_table(tiles, rows, cols, ch, freq, x=x, b=b):
            b[tiles, ch, rows, cols] = code_lengths(freq, x[tiles, ch, rows, cols])

        on_table = raster_table if coder.kind == "autoregressive" else wavefront_table
        [(payload, _)] = coder.encode(coding(m), x, [n], on_table=on_table)
        payloads.append(payload)
        scatter([bits], s, b)
    header = container.Header(m.model_id, m.fingerprint, (container.Entry(*img.shape, ""),), False, m.bit_depth,
                              tile, scan=coder.scan, engine=coder.engine)
    payload = container.join_parts(payloads)
    data = container.write(header, payload, [img])
    return BitsMap(img, bits, len(data), len(payload), m.name)
