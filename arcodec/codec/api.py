"""Images to .arc bytes and back: plans the streams, runs the coder, checks the CRC."""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np

from arcodec.codec import container
from arcodec.codec.coders import Coder, coder_for
from arcodec.codec.container import Entry, Header
from arcodec.codec.plan import DEFAULT_CHUNK, Stream, gather, plan_streams, scatter, tiles_crc
from arcodec.errors import ArcodecError, FormatError, IntegrityError
from arcodec.registry import MODEL_FILE_SUFFIX
from arcodec.zoo import DEFAULT_GRAY, LoadedModel, applicable, check_fingerprint, load_model, model_for_id

MAX_BATCH = 512  # tiles pushed through the model together (memory grows with it)
# sub-pixels a decoder works on at a time (more only when one stream is larger): its buffers
# (int64 model input, or float32 grid and uint8 levels) and activations grow with it
DECODE_SUBPIXELS = 1 << 24
# sub-pixels one file may hold (an archive's images summed) unless the caller raises it: the
# decoded images take a byte each (512 MiB), one batch of DECODE_SUBPIXELS a few hundred MiB
# more, about 2 GiB at most in all (docs/format.md, "Limits and memory")
DEFAULT_MAX_PIXELS = 1 << 29
# decoded sub-pixels an Archive keeps (its least recently used streams leave first)
ARCHIVE_CACHE = 1 << 26
Progress = Callable[[int], None]  # called with the number of sub-pixels just coded


@dataclass(frozen=True)
class Encoded:
    data: bytes
    nll_bits: float  # the model's code length of the pixels (the size estimate)
    subpixels: int
    seconds: float


def as_image(array) -> np.ndarray:
    """(H, W) or (H, W, C) uint8 -> (H, W, C) uint8, or a clear error."""
    a = np.asarray(array)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.integer) and a.size and (a.min() < 0 or a.max() > 255):
            raise ArcodecError(f"pixel values must be 0..255, got {a.min()}..{a.max()}")
        if not np.issubdtype(a.dtype, np.integer) and a.size:
            raise ArcodecError(f"pixels must be integers, got dtype {a.dtype}")
        a = a.astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or 0 in a.shape:
        raise ArcodecError(f"expected an (H, W) or (H, W, C) image with C <= 4, got shape {a.shape}")
    return np.ascontiguousarray(a)


def byte_planes(image: np.ndarray) -> np.ndarray:
    """The uint8 pixels an .arc file codes (and its CRC32 covers) for an (H, W, C) image: a
    uint8 image as it is; a 16-bit one (header tag 11) as (H, W, 2C) byte channels, channel
    2k the high byte and 2k+1 the low byte of channel k."""
    if image.dtype == np.uint8:
        return image
    h, w, c = image.shape
    out = np.empty((h, w, 2 * c), dtype=np.uint8)
    out[:, :, 0::2] = image >> 8
    out[:, :, 1::2] = image & 0xFF
    return out


def _join_planes(planes: np.ndarray) -> np.ndarray:
    """The (H, W, C) uint16 image of :func:`byte_planes`' (H, W, 2C) byte channels."""
    return (planes[:, :, 0::2].astype(np.uint16) << 8) | planes[:, :, 1::2]


def _sample_bits(wide: bool) -> int:
    """The header's sample bits (tag 11) of an image that is 16-bit or not."""
    return container.WIDE_BITS if wide else container.DEFAULT_BIT_DEPTH


def _coded(array) -> tuple[np.ndarray, bool]:
    """The uint8 image an .arc file codes for an array, and whether it is a 16-bit image
    (uint16, (H, W) or (H, W, C) with C <= 4: coded as its byte planes, header tag 11);
    any other array as :func:`as_image` takes it."""
    a = np.asarray(array)
    if a.dtype.kind != "u" or a.dtype.itemsize != 2:
        return as_image(a), False
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or 0 in a.shape:
        raise ArcodecError(f"expected an (H, W) or (H, W, C) image with C <= 4, got shape {a.shape}")
    return byte_planes(a.astype(np.uint16)), True


AUTO = "auto"  # every shipped model that applies, and the stored method: the smallest file wins


def is_auto(model) -> bool:
    return model is None or (isinstance(model, str) and model == AUTO)


def resolve(model: str | LoadedModel | None) -> LoadedModel:
    m = model if isinstance(model, LoadedModel) else load_model(DEFAULT_GRAY if is_auto(model) else model)
    coder_of(m)  # a model that cannot code is refused here, before any work
    return m


@lru_cache(maxsize=16)
def coding(m: LoadedModel):
    """What the coders code with: for a shipped local photo model, Gated PixelCNN, PixelCNN
    or PixelCNN-MADE its weights as numpy arrays (:class:`arcodec.codec.engine.LocalWeights`,
    :class:`arcodec.codec.gated.GatedWeights`, :class:`arcodec.codec.pixelcnn_step.PixelCNNWeights`:
    their decoders run without torch; the encoders of the last three load it), for every
    other model (and a checkpoint) the torch network."""
    if m.loaded is None and m.weights.suffix == MODEL_FILE_SUFFIX:
        if m.card.get("arch") == "local-photo":
            from arcodec.codec.engine import LocalWeights

            return LocalWeights.read(m.weights, m.card["config"])
        if m.card.get("arch") == "gated-pixelcnn":
            from arcodec.codec.gated import GatedWeights

            return GatedWeights.read(m.weights, m.card["config"], torch_model=lambda: m.net)
        if m.card.get("arch") in ("pixelcnn", "pixelcnn-made"):
            from arcodec.codec.pixelcnn_step import PixelCNNWeights

            return PixelCNNWeights.read(m.weights, m.card["arch"], m.card["config"], torch_model=lambda: m.net)
    return m.net


def coder_of(m: LoadedModel, engine: int | None = None) -> Coder:
    """The coder of the model's kind (:mod:`arcodec.codec.coders`): autoregressive models
    step through the pixels, local ones along wavefronts, integer flows invert in one pass;
    a continuous flow is refused (a density over real vectors cannot code integers losslessly).
    ``engine``: a file's engine (decoding); None: the newest that codes the model (encoding)."""
    return coder_for(coding(m), m.name, engine)


def scan_of(m: LoadedModel) -> int:
    """The symbol order the model's coder writes (a header field)."""
    return coder_of(m).scan


def default_tile(m: LoadedModel) -> int:
    """Tile side when the caller names none (whole images, up to 4096 a side, for the local
    models: they see across tiles' borders only inside a tile)."""
    return coder_of(m).tile


@dataclass
class _Job:
    """One .arc file being coded: its images, its streams and their payloads."""

    images: list[np.ndarray]
    streams: list[Stream]
    payloads: list[bytes] = field(default_factory=list)
    bits: list[float] = field(default_factory=list)
    crcs: list[int] | None = None  # each stream's CRC32 (archives of several streams; header tag 10)


def _batches(jobs: list[_Job], max_tiles: int, max_subpixels: int | None = None) -> list[list[tuple[int, int]]]:
    """(job, stream) pairs grouped by tile shape, cut into batches of at most ``max_tiles``
    tiles, and of at most ``max_subpixels`` sub-pixels when given (a stream is never split,
    so a batch is larger only when one stream is): every batch goes through the model
    together."""
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for j, job in enumerate(jobs):
        for k, s in enumerate(job.streams):
            groups.setdefault((s.height, s.width), []).append((j, k))
    most = max_subpixels if max_subpixels is not None else float("inf")
    out = []
    for refs in groups.values():
        batch, tiles, size = [], 0, 0
        for j, k in refs:
            s = jobs[j].streams[k]
            n = len(s.tiles)
            sub = s.height * s.width * sum(jobs[j].images[t.image].shape[2] if t.plane < 0 else 1 for t in s.tiles)
            if batch and (tiles + n > max_tiles or size + sub > most):
                out.append(batch)
                batch, tiles, size = [], 0, 0
            batch.append((j, k))
            tiles += n
            size += sub
        out.append(batch)
    return out


def _check(m: LoadedModel, a: np.ndarray, planes: bool = False) -> None:
    """Refuse an image the model cannot code (``planes``: a 16-bit image's byte planes)."""
    if planes and m.channels != 1:
        raise ArcodecError(f"model {m.name!r} codes {m.channels}-channel 8-bit images; a 16-bit image's "
                           "byte planes are coded by a grayscale model")
    if int(a.max()) >= m.levels:
        raise ArcodecError(f"model {m.name!r} codes levels 0..{m.levels - 1}, the image has {a.max()}")
    if m.channels != 1 and a.shape[2] != m.channels:
        raise ArcodecError(f"model {m.name!r} codes {m.channels}-channel images, got {a.shape[2]} channels")
    check = coder_of(m).check
    if check is not None:
        check(coding(m), a.shape[0], a.shape[1])


def _encode(m: LoadedModel, files: list[tuple[list[np.ndarray], list[str] | None, bool]], tile: int | None,
            progress: Progress | None, max_tiles: int, maps: list[tuple[int, ...]] | None = None,
            wide: list[bool] | None = None) -> list[Encoded]:
    """Encode several files (images, names, archive?) with one model, batching their streams.
    With ``maps``, file i's images are indices into the levels ``maps[i]`` (its header's level
    map; the CRC covers the pixels the indices stand for). With ``wide``, file i's image is a
    16-bit image's byte planes when ``wide[i]`` (header tag 11)."""
    t0 = time.perf_counter()
    tile = tile or default_tile(m)
    jobs = []
    for imgs, _, archive in files:
        streams = plan_streams([a.shape for a in imgs], m.channels, tile, DEFAULT_CHUNK)
        crcs = [0] * len(streams) if archive and len(streams) > 1 else None
        jobs.append(_Job(imgs, streams, [b""] * len(streams), [0.0] * len(streams), crcs))
    encode = coder_of(m).encode
    for batch in _batches(jobs, max_tiles):
        xs = [gather(jobs[j].images, jobs[j].streams[k]) for j, k in batch]
        for (j, k), x, (payload, bits) in zip(batch, xs, encode(coding(m), np.concatenate(xs), [len(x) for x in xs])):
            jobs[j].payloads[k], jobs[j].bits[k] = payload, bits
            if jobs[j].crcs is not None:
                jobs[j].crcs[k] = tiles_crc(x)
        if progress is not None:
            progress(sum(x.size for x in xs))
    seconds = (time.perf_counter() - t0) / len(files)
    out = []
    for i, (job, (imgs, names, archive)) in enumerate(zip(jobs, files)):
        levels = tuple(maps[i]) if maps and maps[i] else ()
        pixels = [np.asarray(levels, dtype=np.uint8)[a] for a in imgs] if levels else imgs
        entries = tuple(Entry(a.shape[0], a.shape[1], a.shape[2], n) for a, n in zip(imgs, names or [""] * len(imgs)))
        header = Header(m.model_id, m.fingerprint, entries, archive, m.bit_depth, tile, scan=scan_of(m),
                        levels=levels, engine=coder_of(m).engine, stream_crcs=job.crcs is not None,
                        sample_bits=_sample_bits(wide is not None and wide[i]))
        sums = b"".join(c.to_bytes(4, "little") for c in job.crcs or [])
        data = container.write(header, sums + container.join_parts(job.payloads), pixels)
        out.append(Encoded(data, sum(job.bits), sum(a.size for a in imgs), seconds))
    return out


def encode_stored(images: list[np.ndarray], names: list[str] | None = None, archive: bool = False,
                  wide: bool = False) -> Encoded:
    """The stored method: the pixels as they are (raw, or deflated when that is shorter),
    no model. Bounds every file: header + H W C bytes + CRC at most. ``wide``: the image is
    a 16-bit image's byte planes (header tag 11)."""
    t0 = time.perf_counter()
    raw = b"".join(a.tobytes() for a in images)
    packed = zlib.compress(raw, 9)
    method, payload = (container.METHOD_DEFLATE, packed) if len(packed) < len(raw) else (container.METHOD_RAW, raw)
    entries = tuple(Entry(a.shape[0], a.shape[1], a.shape[2], n) for a, n in zip(images, names or [""] * len(images)))
    header = Header(0, b"\0\0", entries, archive, container.DEFAULT_BIT_DEPTH, method=method,
                    sample_bits=_sample_bits(wide))
    data = container.write(header, payload, images)
    return Encoded(data, 8.0 * len(payload), sum(a.size for a in images), time.perf_counter() - t0)


def _scaled(progress: Progress | None, share: float) -> Progress | None:
    return None if progress is None else (lambda n: progress(n * share))


def level_map(images: list[np.ndarray]) -> tuple[int, ...]:
    """The levels the images use when there are fewer than 256 of them and they are not
    already 0..n-1 (a palette, or 2-bit colour saved as 0, 85, 170, 255); () otherwise."""
    values = np.unique(np.concatenate([a.ravel() for a in images]))
    if len(values) == 256 or values[-1] == len(values) - 1:
        return ()
    return tuple(int(v) for v in values)


def _candidates(imgs: list[np.ndarray], planes: bool = False) -> list[tuple[str, tuple[int, ...]]]:
    """(model, level map) pairs that apply to the images: every shipped model whose card
    takes them as they are, and the models of fewer than 256 levels that take their indices
    into a level map. ``planes``: the images are 16-bit images' byte planes, which only
    grayscale models code (plane by plane): the models whose cards take each plane alone."""

    def fitting(images: list[np.ndarray], below: int = 257) -> list[str]:
        if planes:
            images = [a[:, :, k: k + 1] for a in images for k in range(a.shape[2])]
        return applicable(images, below)

    out = [(name, ()) for name in fitting(imgs)]
    levels = level_map(imgs)
    if levels:
        out += [(name, levels) for name in fitting(_indexed(imgs, levels), below=256)]
    return out


# images of this many sub-pixels or more (all of a call's, summed) are coded in full by only one
# of the local photo models that apply: the one whose exact tables, with the mixture offsets it
# would fit on them, code PRESELECT_SAMPLES pixels drawn from them (each image's share in
# proportion to its size) in the fewest bits
PRESELECT_SUBPIXELS = 1 << 16
PRESELECT_SAMPLES = 8192


def _preselect(imgs: list[np.ndarray], cands: list[tuple[str, tuple[int, ...]]],
               planes: bool = False) -> list[tuple[str, tuple[int, ...]]]:
    """``cands`` less the local photo models that would lose on the images: when several apply
    and the images are large (:data:`PRESELECT_SUBPIXELS`), only the one whose exact tables
    code a seeded sample of the images' pixels in the fewest bits, each with the mixture
    offsets it would fit on the sample (:func:`arcodec.codec.wavefront.sampled_bits`), codes
    them in full: an encoder's choice, not the format's, as any model decodes its own files.
    A photo model's full encode takes seconds, its sample about 0.3 s (the fit included,
    which the chosen model's encode then reuses). ``planes``: 16-bit images' byte planes,
    coded plane by plane: all candidates stay."""
    local = [c for c in cands if load_model(c[0]).card.get("arch") == "local-photo"]
    total = sum(a.size for a in imgs)
    if planes or len(local) < 2 or total < PRESELECT_SUBPIXELS:
        return cands
    from arcodec.codec.coders import pool_map
    from arcodec.codec.wavefront import OneThread, sampled_bits

    def bits(cand: tuple[str, tuple[int, ...]]) -> float:
        m = load_model(cand[0])
        return sum(sampled_bits(coding(m), a.transpose(2, 0, 1)[None], max(1, PRESELECT_SAMPLES * a.size // total))
                   for a in _indexed(imgs, cand[1]))

    with OneThread() as threads:  # the models' samples side by side, each on one thread
        scores = pool_map(bits, local, threads)
    best = local[scores.index(min(scores))]
    return [c for c in cands if c not in local or c == best]


def _warm_up(imgs: list[np.ndarray]) -> None:
    """A photo among the images (one of :data:`PRESELECT_SUBPIXELS` sub-pixels or more; many
    small images, digits say, are not coded by the photo models): start loading what its
    encode will load on its way, beside the work before it
    (:func:`arcodec.codec.wavefront.warm_up`)."""
    if any(a.size >= PRESELECT_SUBPIXELS for a in imgs):
        from arcodec.codec.wavefront import warm_up

        warm_up()


def _indexed(imgs: list[np.ndarray], levels: tuple[int, ...]) -> list[np.ndarray]:
    if not levels:
        return imgs
    lut = np.zeros(256, dtype=np.uint8)
    lut[list(levels)] = np.arange(len(levels), dtype=np.uint8)
    return [lut[a] for a in imgs]


def encode_images(images: list, names: list[str] | None = None, model=None, tile: int | None = None,
                  archive: bool | None = None, progress: Progress | None = None) -> Encoded:
    """Compress images into one .arc file (an archive when ``names`` is given or archive=True).

    ``model`` None or "auto": every shipped model whose card applies to all the images codes
    them (directly, or through a level map), and so does the stored method; the smallest
    file wins. A uint16 image is a 16-bit image: coded as its byte planes (:func:`byte_planes`,
    plane by plane through grayscale models) in a single-image file; archives take 8-bit
    images only (their images share one header)."""
    coded = [_coded(a) for a in images]
    imgs, wide = [a for a, _ in coded], any(w for _, w in coded)
    archive = bool(names) if archive is None else archive
    if not archive and len(imgs) != 1:
        raise ArcodecError("a single-image file holds one image; use an archive for several")
    if archive and wide:
        raise ArcodecError("an archive holds 8-bit images only (its images share one header): "
                           "compress 16-bit images one file each")
    _warm_up(imgs)
    if not is_auto(model):
        m = resolve(model)
        for a in imgs:
            _check(m, a, wide)
        return _encode(m, [(imgs, names, archive)], tile, progress, MAX_BATCH, wide=[wide])[0]
    best = encode_stored(imgs, names, archive, wide)
    cands = _preselect(imgs, _candidates(imgs, wide), wide)
    for name, levels in cands:
        enc = _encode(resolve(name), [(_indexed(imgs, levels), names, archive)], tile,
                      _scaled(progress, 1 / len(cands)), MAX_BATCH, [levels], [wide])[0]
        if len(enc.data) < len(best.data):
            best = enc
    if not cands and progress is not None:
        progress(sum(a.size for a in imgs))
    return best


def encode_many(images: list, model=None, tile: int | None = None,
                progress: Progress | None = None, max_tiles: int | None = None) -> list[Encoded]:
    """One single-image .arc file per image, the images pushed through the model together.

    ``model`` None or "auto": per image, the smallest of every applicable shipped model's
    file (directly, or through a level map) and the stored one; each model codes all the
    images it applies to in one batch. ``Encoded.seconds`` is the call's time divided by the
    number of files. A uint16 image is a 16-bit image, coded as its byte planes (as
    :func:`encode_images` codes it)."""
    coded = [_coded(a) for a in images]
    imgs, wide = [a for a, _ in coded], [w for _, w in coded]
    _warm_up(imgs)
    if not is_auto(model):
        m = resolve(model)
        for a, w in coded:
            _check(m, a, w)
        return _encode(m, [([a], None, False) for a in imgs], tile, progress, max_tiles or MAX_BATCH, wide=wide)
    best = [encode_stored([a], wide=w) for a, w in coded]
    cands = [_preselect([a], _candidates([a], w), w) for a, w in coded]
    groups: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
    for i, cs in enumerate(cands):
        for name, levels in cs:
            groups.setdefault(name, []).append((i, levels))
        if not cs and progress is not None:
            progress(imgs[i].size)
    for name, members in groups.items():
        share = float(np.mean([1 / len(cands[i]) for i, _ in members]))
        encoded = _encode(resolve(name), [(_indexed([imgs[i]], lv), None, False) for i, lv in members], tile,
                          _scaled(progress, share), max_tiles or MAX_BATCH, [lv for _, lv in members],
                          [wide[i] for i, _ in members])
        for (i, _), e in zip(members, encoded):
            if len(e.data) < len(best[i].data):
                best[i] = e
    return best


def _open(data: bytes, model, max_pixels: int) -> tuple[Header, LoadedModel | None, _Job]:
    """Parse a file and plan its decoding: (header, model (None for a stored file), job with
    the streams' payloads). Whatever the header claims is checked against ``max_pixels`` and
    the payload's size before anything is allocated or decoded."""
    header, body, _ = container.read(data)
    total = sum(e.subpixels for e in header.entries)
    if total > max_pixels:
        raise FormatError(f"file holds {total} sub-pixels, more than the limit of {max_pixels}: if you trust it, "
                          f"raise the limit (max_pixels=, or arcodec decompress --max-pixels N)")
    shapes = [(e.height, e.width, e.channels) for e in header.entries]
    if header.method != container.METHOD_MODEL:
        # checked before allocating the images: DEFLATE expands at most 1032:1
        most = len(body) if header.method == container.METHOD_RAW else 1032 * len(body)
        if total > most:
            raise FormatError(f"corrupt payload ({len(body)} stored bytes for {total} sub-pixels)")
        return header, None, _Job([np.zeros(s, dtype=np.uint8) for s in shapes], [], [body])
    if is_auto(model):
        m = model_for_id(header.model_id, header.fingerprint)
    else:
        m = resolve(model)
        check_fingerprint(m, header.fingerprint)
    if scan_of(m) != header.scan:
        raise FormatError(f"file's scan order ({header.scan}) is not model {m.name!r}'s ({scan_of(m)}): corrupt header")
    if m.bit_depth != header.bit_depth:
        raise FormatError(f"file has bit depth {header.bit_depth}, model {m.name!r} codes {m.bit_depth}")
    if m.channels != 1 and any(e.channels != m.channels for e in header.entries):
        raise FormatError(f"file holds images whose channels are not the {m.channels} that model {m.name!r} codes")
    if len(header.levels) > m.levels:
        raise FormatError(f"file's level map has {len(header.levels)} levels, model {m.name!r} codes {m.levels}")
    # checked before planning: every stream of up to DEFAULT_CHUNK tiles but the last stores its
    # length (a byte at least), so a short payload cannot hold many tiles
    t = header.tile
    tiles = sum((c if m.channels == 1 else 1) * -(-h // t) * -(-w // t) for h, w, c in shapes)
    if tiles > DEFAULT_CHUNK * (len(body) + 1):
        raise FormatError(f"file is truncated ({len(body)} payload bytes for {tiles} tiles)")
    streams = plan_streams(shapes, m.channels, header.tile, DEFAULT_CHUNK)
    crcs = None
    if header.stream_crcs:
        if len(body) < 4 * len(streams):
            raise FormatError(f"file is truncated ({len(body)} payload bytes for the checksums of {len(streams)} streams)")
        crcs = [int.from_bytes(body[4 * k: 4 * k + 4], "little") for k in range(len(streams))]
        body = body[4 * len(streams):]
    payloads = container.split_parts(body, len(streams), "stream")
    room = coder_of(m, header.engine).room
    if room is not None:  # every coded sub-pixel costs some bits: a short payload is refused now
        for s, p in zip(streams, payloads):
            room(coding(m), p, len(s.tiles), m.channels, s.height, s.width)
    job = _Job([np.zeros(s, dtype=np.uint8) for s in shapes], streams, payloads, crcs=crcs)
    return header, m, job


def _verify_stream(job: _Job, k: int, x) -> None:
    """Check decoded stream k's tiles against its CRC32, when the file has stream checksums."""
    if job.crcs is not None and tiles_crc(x) != job.crcs[k]:
        raise IntegrityError(f"the CRC32 of stream {k + 1} of {len(job.streams)} fails: the file is corrupt")


def _unstore(header: Header, job: _Job) -> None:
    """Fill a stored file's images from its payload (raw or deflated pixels)."""
    total = sum(a.size for a in job.images)
    body = job.payloads[0]
    if header.method == container.METHOD_DEFLATE:
        d = zlib.decompressobj()
        try:
            body = d.decompress(body, total + 1)
        except zlib.error:
            raise FormatError("corrupt payload (the stored pixels do not inflate)") from None
        if not d.eof or d.unused_data:
            raise FormatError("corrupt payload (stored pixels cut short or followed by extra bytes)")
    if len(body) != total:
        raise FormatError(f"corrupt payload ({len(body)} stored bytes for {total} sub-pixels)")
    pos = 0
    for a in job.images:
        a[...] = np.frombuffer(body, dtype=np.uint8, count=a.size, offset=pos).reshape(a.shape)
        pos += a.size


def decode_many(datas: list[bytes], model=None, naive: bool = False, progress: Progress | None = None,
                max_tiles: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
                ) -> list[tuple[Header, list[np.ndarray]]]:
    """Decode several .arc files, the streams of equal tile shape (across files) pushed
    through the model together, at most :data:`DECODE_SUBPIXELS` at a time; each file's
    CRC32 is verified. Returns (header, images (H, W, C) uint8, uint16 for a 16-bit image:
    header tag 11) per file, in order. A corrupt file fails the whole call, and so does a
    file of more than ``max_pixels`` sub-pixels (raise it for larger files you trust)."""
    opened = [_open(d, model, max_pixels) for d in datas]
    by_model: dict[tuple[int, int], list[int]] = {}
    for i, (header, m, job) in enumerate(opened):
        if m is None:
            _unstore(header, job)
            if progress is not None:
                progress(sum(a.size for a in job.images))
            continue
        by_model.setdefault((id(m), header.engine), []).append(i)
    for (_, engine), idx in by_model.items():
        m = opened[idx[0]][1]
        jobs = [opened[i][2] for i in idx]
        channels = m.channels
        decode = coder_of(m, engine).decode
        for batch in _batches(jobs, max_tiles or MAX_BATCH, DECODE_SUBPIXELS):
            s0 = jobs[batch[0][0]].streams[batch[0][1]]
            x = decode(coding(m), [jobs[j].payloads[k] for j, k in batch],
                               [len(jobs[j].streams[k].tiles) for j, k in batch],
                               channels, s0.height, s0.width, naive=naive, progress=progress)
            pos = 0
            for j, k in batch:
                n = len(jobs[j].streams[k].tiles)
                _verify_stream(jobs[j], k, x[pos: pos + n])
                scatter(jobs[j].images, jobs[j].streams[k], x[pos: pos + n])
                pos += n
    out = []
    for data, (header, _, job) in zip(datas, opened):
        if header.levels:  # the model decoded indices into the header's level map
            lut = np.zeros(256, dtype=np.uint8)
            lut[: len(header.levels)] = header.levels
            job.images = [lut[a] for a in job.images]
        if not container.verify(data, job.images):
            raise IntegrityError("the CRC32 check fails: the file is corrupt")
        if header.sample_bits == container.WIDE_BITS:  # byte planes: the 16-bit image
            job.images = [_join_planes(a) for a in job.images]
        out.append((header, job.images))
    return out


def decode_file(data: bytes, model=None, naive: bool = False, progress: Progress | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Header, list[np.ndarray]]:
    """Decode .arc bytes to (header, images (H, W, C) uint8, or uint16 for a 16-bit image);
    verifies the CRC32. A file of more than ``max_pixels`` sub-pixels is refused."""
    return decode_many([data], model, naive, progress, max_pixels=max_pixels)[0]


class Archive:
    """Random access to the images of one .arc file, a stream at a time.

        arc = Archive(Path("set.arc").read_bytes())
        arc[7]            # image 7, (H, W, C) uint8
        arc.entries[7]    # its name and shape, from the header

    In an archive with stream checksums (header tag 10: every model-coded archive of more
    than one stream that this arcodec writes), ``arc[i]`` decodes only the streams that hold
    image i (a stream is up to 256 tiles), checks each against its own CRC32, and keeps the
    decoded streams in a cache of at most ``cache_subpixels`` sub-pixels (the least recently
    used leave first). Any other file (a single image, a stored file, an archive of one
    stream, or one written before tag 10) is decoded whole on first use and checked by the
    file's CRC32. Either way no pixel is returned unverified. Whatever the header claims is
    checked against ``max_pixels`` and the payload's size when the Archive is made."""

    def __init__(self, data: bytes, model=None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 cache_subpixels: int = ARCHIVE_CACHE):
        self.data = bytes(data)
        self.header, self.model, self._job = _open(self.data, model, max_pixels)
        self.entries = self.header.entries
        self.random_access = self._job.crcs is not None
        self.cache_subpixels = cache_subpixels
        self.decoded_streams = 0  # streams decoded so far: the work done
        self._args = (model, max_pixels)
        self._whole: list[np.ndarray] | None = None
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._tiles_of: list[list[tuple[int, int]]] = [[] for _ in self.entries]  # (stream, tile in it)
        for k, s in enumerate(self._job.streams):
            for n, t in enumerate(s.tiles):
                self._tiles_of[t.image].append((k, n))

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"image {i} of an archive of {len(self)}")
        i %= len(self)
        if not self.random_access:
            if self._whole is None:
                self._whole = decode_file(self.data, self._args[0], max_pixels=self._args[1])[1]
                self.decoded_streams = len(self._job.streams)
            return self._whole[i].copy()
        e = self.entries[i]
        out = np.zeros((e.height, e.width, e.channels), dtype=np.uint8)
        for k, n in self._tiles_of[i]:
            s = self._job.streams[k]
            t, tile = s.tiles[n], self._stream(k)[n].transpose(1, 2, 0)  # (h, w, C)
            dst = out[t.y: t.y + s.height, t.x: t.x + s.width]
            if t.plane >= 0:
                dst[:, :, t.plane] = tile[:, :, 0]
            else:
                dst[...] = tile
        if self.header.levels:  # the model decoded indices into the header's level map
            lut = np.zeros(256, dtype=np.uint8)
            lut[: len(self.header.levels)] = self.header.levels
            return lut[out]
        return out

    def _stream(self, k: int) -> np.ndarray:
        """Stream k's decoded tiles (n, C, h, w) uint8, verified, from the cache or decoded now."""
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        s, m = self._job.streams[k], self.model
        x = coder_of(m, self.header.engine).decode(coding(m), [self._job.payloads[k]], [len(s.tiles)], m.channels,
                                                   s.height, s.width)
        _verify_stream(self._job, k, x)
        self.decoded_streams += 1
        self._cache[k] = x = np.asarray(x).astype(np.uint8)
        while len(self._cache) > 1 and sum(v.size for v in self._cache.values()) > self.cache_subpixels:
            self._cache.popitem(last=False)
        return x


def compress(array, model: str | LoadedModel | None = None) -> bytes:
    """Compress one image ((H, W) or (H, W, C) uint8, or uint16 for 16-bit samples) to .arc
    bytes, in the manner of zlib.

    Without ``model`` (or "auto"): the smallest file among every shipped model that applies
    to the image and the stored method."""
    return encode_images([array], model=model).data


def decompress(data: bytes, model: str | LoadedModel | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image of a single-image .arc file: (H, W) for grayscale, else (H, W, C), uint8
    (uint16 for 16-bit samples; a palette image's indices, its palette in the metadata of
    :func:`decode_file`'s header); one of more than ``max_pixels`` sub-pixels is refused."""
    header, images = decode_file(data, model, max_pixels=max_pixels)
    if header.archive:
        raise ArcodecError("this is an archive of several images: use decompress_archive()")
    img = images[0]
    return img[:, :, 0] if img.shape[2] == 1 else img


def decompress_archive(data: bytes, model=None, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, np.ndarray]:
    """Every image of an archive, by name; an archive of more than ``max_pixels`` sub-pixels
    is refused."""
    header = container.read(data)[0]
    names = [e.name for e in header.entries]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise FormatError(f"archive holds the name {dup!r} more than once: decode_file() gives every image")
    header, images = decode_file(data, model, max_pixels=max_pixels)
    return {e.name: (a[:, :, 0] if a.shape[2] == 1 else a) for e, a in zip(header.entries, images)}
