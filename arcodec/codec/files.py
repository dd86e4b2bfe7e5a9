"""Image files to .arc files and back, in the manner of gzip: what ``arcodec compress`` and
``arcodec decompress`` do, for Python users too.

Inputs are image paths, directories and ``"-"`` (standard input). A directory gives its
images (:data:`arcodec.imageio.IMAGE_SUFFIXES`, recursively, sorted), each named in an
archive by its path from the directory's parent (``dir/sub/y.png``); a file is named by its
own name, standard input ``stdin.png``.

- :func:`plan_compress` decides what is written: without ``output`` one ``IMG.arc`` beside
  each image (standard output for standard input); with ``output`` one file, an archive
  when there are several images or a directory.
- :func:`compress_paths` reads the images, codes them and writes the plan's files.
- :func:`decompress_path` writes the image of ``IMG.arc`` to ``IMG``, or every image of an
  archive under a directory. Entry names are checked by the container
  (:func:`arcodec.codec.container.unsafe_name`: no absolute path, drive, ``..`` or NUL),
  and every name is checked before anything is decoded or written.

- :func:`decompress_paths` does that for many files, going on past a bad one.

Outputs are refused before any work when they exist, unless ``force``; files are written
atomically (:func:`arcodec.imageio.write_atomic`); ``"-"`` names standard output. A
single-image file keeps the image's metadata (ICC profile, EXIF, PNG text chunks, gamma,
DPI, a palette and its transparency, mode 1: :func:`arcodec.imageio.image_metadata`) and
decompressing writes it back, a palette image (coded as its indices) as mode P, a 1-bit one
as mode 1; an archive keeps pixels and names only (a palette image's colours). A 16-bit
image (gray PNG, TIFF or PGM; LA, RGB or RGBA PNG) becomes a single-image file of 16-bit
samples and comes back as a 16-bit image of its mode; archives hold 8-bit images only.
Removing the inputs afterwards, as gzip does, is left to the caller: :func:`remove_inputs`
removes only the images whose .arc files give back everything Pillow sees in them
(:func:`arcodec.imageio.lossless_for`).

Many files: ``jobs`` worker processes (spawned: torch and fork do not mix) each take a
share of the files, code them batched together and write them; each worker uses
``cores // jobs`` torch threads. ``jobs`` None chooses (:func:`choose_jobs`): one process
per core, or this process alone for files of fewer than :data:`IN_PROCESS_SUBPIXELS`
sub-pixels in all, where starting the workers would cost more than they save. The bytes
written do not depend on ``jobs``. An input that fails comes back as a :class:`Failed`
(one line: why) and the others go on; nothing is written for it.

``progress(total)``, where a function takes it: a context manager with ``update(n)`` (a
tqdm bar) over the ``total`` sub-pixels coded, one over all the files.
"""

from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from arcodec.codec import container
from arcodec.codec.api import (DEFAULT_MAX_PIXELS, Encoded, byte_planes, decode_file, decode_many, encode_images,
                               encode_many)
from arcodec.codec.container import Header, Metadata
from arcodec.errors import ArcodecError, FormatError
from arcodec.signals import redeliver_swallowed
from arcodec.imageio import (IMAGE_SUFFIXES, check_wide_format, encode_png, lossless_for, peek_subpixels,
                             read_image_and_metadata, refuse_existing, shown, write_atomic, write_image)

SUFFIX = ".arc"
STDIN = "-"  # standard input as an input, standard output as an output
STDIN_NAME = "stdin.png"  # standard input's name in an archive
GROUP_SUBPIXELS = 1 << 24  # a worker codes its files in groups of about this many sub-pixels (memory)
GROUP_FILES = 1024  # and of at most this many files: small files' memory is their records, not their pixels
# fewer sub-pixels in all: no worker processes unless asked for. Each starts torch and the models
# (seconds); two Kodak photos (2.4M sub-pixels) take as long in one process on two cores as in two.
IN_PROCESS_SUBPIXELS = 1 << 21
HEADER_PREFIX = 1 << 16  # bytes of an .arc file read to find its header (all of it when the header is longer)
# what a bad input raises: reported for that input, the others go on (as the CLI reports them)
EXPECTED = (ArcodecError, OSError, ValueError, KeyError, MemoryError, RuntimeError)


def read_input(path: str) -> bytes:
    """The bytes of a file, or of standard input for ``"-"``; a clear error for a missing file
    or a directory."""
    if path == STDIN:
        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.exists():
        raise ArcodecError(f"{path}: no such file")
    if p.is_dir():
        raise ArcodecError(f"{path} is a directory")
    return p.read_bytes()


def write_output(target: str, data: bytes, force: bool = False) -> None:
    """Write bytes to a file atomically, or to standard output for ``"-"`` (never to a
    terminal unless ``force``)."""
    if target == STDIN:
        if sys.stdout.isatty() and not force:
            raise ArcodecError("binary data not written to a terminal (use -f to force)")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomic(Path(target), data, force)


def reason_of(e: BaseException) -> str:
    """One line saying why an input failed, as the command line prints errors."""
    if isinstance(e, MemoryError):
        return "out of memory (the images are too large for this machine)"
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, RuntimeError) and not isinstance(e, ArcodecError):
        return str(e).splitlines()[0] if str(e) else e.__class__.__name__
    return str(e)


@dataclass(frozen=True)
class Failed:
    """An input that failed (nothing was written for it); the other inputs go on."""

    path: str
    reason: str  # one line, e.g. "not an arcodec file (wrong magic bytes)"

    @property
    def message(self) -> str:
        """The reason naming the file once: ``FILE: reason``."""
        named = self.reason.startswith((f"{self.path}:", f"{self.path} "))
        return self.reason if named else f"{self.path}: {self.reason}"


def default_jobs() -> int:
    """Worker processes for many large files: one per core."""
    return os.cpu_count() or 1


def choose_jobs(jobs: int | None, total: int) -> int:
    """Processes for files of ``total`` sub-pixels: ``jobs`` when given; otherwise one per
    core, or only this one below :data:`IN_PROCESS_SUBPIXELS`."""
    if jobs is not None:
        return jobs
    return 1 if total < IN_PROCESS_SUBPIXELS else default_jobs()


def check_outputs(targets: Sequence[str | Path], force: bool = False) -> None:
    """Refuse the first target that exists (standard output aside), unless ``force``: called
    before any work, so that nothing is coded for an output that will be refused."""
    for target in targets:
        if str(target) != STDIN:
            refuse_existing(target, force)


def collect_inputs(inputs: Sequence[str]) -> list[tuple[str, str]]:
    """(path, archive entry name) for every input, in order; a directory gives its images,
    sorted, named by their path from the directory's parent."""
    out = []
    for item in inputs:
        p = Path(item)
        if item != STDIN and p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ArcodecError(f"{item}: directory holds no images")
            out += [(str(q), q.relative_to(p.parent).as_posix()) for q in found]
        else:
            out.append((item, STDIN_NAME if item == STDIN else p.name))
    return out


@dataclass(frozen=True)
class CompressPlan:
    """What :func:`compress_paths` reads and writes."""

    inputs: tuple[tuple[str, str], ...]  # (path or "-", archive entry name), one per image
    archive: bool  # one archive of every image
    targets: tuple[str, ...]  # the files written ("-": standard output): one, or one per image
    in_place: bool  # each image becomes IMG.arc beside it (what gzip would remove: IMG)

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.inputs]


def plan_compress(inputs: Sequence[str], output: str | None = None) -> CompressPlan:
    """Decide what compressing ``inputs`` writes: without ``output`` one IMG.arc per image
    (standard output when an input is standard input); with ``output`` one file, an archive
    when there are several images or a directory."""
    items = collect_inputs(inputs)
    archive = output is not None and (len(items) > 1 or any(Path(i).is_dir() for i in inputs if i != STDIN))
    in_place = output is None and all(path != STDIN for path, _ in items)
    if output is None and not in_place:
        output = STDIN
    if output is not None and len(items) > 1 and not archive:
        raise ArcodecError("several inputs need -o ARCHIVE.arc")
    targets = (output,) if output is not None else tuple(path + SUFFIX for path, _ in items)
    return CompressPlan(tuple(items), archive, targets, in_place)


@dataclass(frozen=True)
class Compressed:
    """The files :func:`compress_paths` wrote and the inputs that failed."""

    files: list[tuple[str, Encoded]]  # (target, its encoding), one per file written, in the plan's order
    coded: list[str]  # the inputs whose images those files hold
    failed: list[Failed]


def compress_paths(plan: CompressPlan, model=None, tile: int | None = None, force: bool = False,
                   progress: Callable | None = None, jobs: int | None = 1) -> Compressed:
    """Read the plan's images, code them and write its targets; an existing target is refused
    before any work unless ``force``. ``model`` None or "auto": the smallest file among every
    shipped model that applies and the stored method.

    One file per image (``plan.in_place``): ``jobs`` processes (None: :func:`choose_jobs`)
    share the images, each coding its share batched together; an image that cannot be read
    or coded is reported in ``failed`` and the others go on. One output (an archive, standard output): in this
    process, and any error is raised."""
    check_outputs(plan.targets, force)
    if plan.in_place:
        items = [(i, path, target) for i, (path, target) in enumerate(zip(plan.paths, plan.targets))]
        total = sum(peek_subpixels(path) for path in plan.paths)
        done = spread(compress_share, items, choose_jobs(jobs, total), total, progress, model, tile, force)
        files = [(target, r) for (_, path, target), r in zip(items, done) if not isinstance(r, Failed)]
        coded = [path for (_, path, _), r in zip(items, done) if not isinstance(r, Failed)]
        return Compressed(files, coded, [r for r in done if isinstance(r, Failed)])
    images, metas = zip(*[read_image_and_metadata(read_input(path), path) for path in plan.paths])
    wide = next((path for path, a in zip(plan.paths, images) if a.dtype != np.uint8), None)
    if plan.archive and wide is not None:
        raise ArcodecError(f"{wide}: 16-bit samples: an archive holds 8-bit images only (its images share one "
                           "header); compress it to its own .arc file")
    if plan.archive:  # pixels and names only: a palette image's colours
        images = [shown(a, meta) for a, meta in zip(images, metas)]
    total = sum(a.nbytes for a in images)  # the sub-pixels coded: a 16-bit sample's two bytes
    with (progress(total) if progress is not None else nullcontext()) as bar:
        names = [name for _, name in plan.inputs] if plan.archive else None
        enc = encode_images(list(images), names, model=model, tile=tile, archive=plan.archive,
                            progress=bar.update if bar is not None else None)
    if not plan.archive:
        enc = with_metadata(enc, metas[0], images[0])
    write_output(plan.targets[0], enc.data, force)
    return Compressed([(plan.targets[0], enc)], plan.paths, [])


def _in_groups(items: list[tuple], prepare: Callable, size_of: Callable, run_group: Callable) -> list[tuple[int, object]]:
    """What :func:`compress_share` and :func:`decompress_share` have in common: ``prepare``
    each (index, path, extra) item (a failure is recorded against its path), gather the
    prepared items into groups of about :data:`GROUP_SUBPIXELS` (``size_of``) and at most
    :data:`GROUP_FILES` files, and hand each group [(index, path, prepared)] to
    ``run_group``, which returns {index: result or failure}; (index, result or failure)
    sorted by index. One group is held at a time: memory does not grow with the number of
    files."""
    out: dict[int, object] = {}
    group: list[tuple[int, str, object]] = []
    size = 0  # the group's sub-pixels
    for i, path, extra in items:
        try:
            prepared = prepare(path, extra)
            group.append((i, path, prepared))
            size += size_of(prepared)
        except EXPECTED as e:
            out[i] = Failed(path, reason_of(e))
        if size >= GROUP_SUBPIXELS or len(group) >= GROUP_FILES:
            out.update(run_group(group))
            group, size = [], 0
    if group:
        out.update(run_group(group))
    return sorted(out.items())


def compress_share(items: list[tuple[int, str, str]], model, tile: int | None, force: bool,
                   progress: Callable | None) -> list[tuple[int, Encoded | Failed]]:
    """Code (index, image path, target) items, one file per image, in groups of about
    :data:`GROUP_SUBPIXELS` pushed through the model together; (index, encoding or failure)
    each. A group that fails is coded again one image at a time, to tell which image failed."""

    def prepare(path: str, target: str) -> tuple[str, Metadata, np.ndarray]:
        a, meta = read_image_and_metadata(read_input(path), path)
        return target, meta, a

    def run_group(group: list) -> dict:
        out = {}
        try:
            encs = encode_many([a for *_, (_, _, a) in group], model=model, tile=tile, progress=progress)
        except EXPECTED:
            encs = None
        for k, (i, path, (target, meta, a)) in enumerate(group):
            try:
                enc = encs[k] if encs is not None else encode_many([a], model=model, tile=tile, progress=progress)[0]
                enc = with_metadata(enc, meta, a)
                write_output(target, enc.data, force)
                out[i] = enc
            except EXPECTED as e:
                out[i] = Failed(path, reason_of(e))
        return out

    return _in_groups(items, prepare, lambda prepared: prepared[2].size, run_group)


def with_metadata(enc: Encoded, metadata: Metadata, image: np.ndarray) -> Encoded:
    """A single image's encoding with the metadata of its file in the header (as it is when
    there is none)."""
    if not metadata:
        return enc
    return replace(enc, data=container.with_metadata(enc.data, metadata, [byte_planes(image)]))


def remove_inputs(paths: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Remove the images whose .arc files give back everything Pillow sees in them (as gzip
    removes its inputs); keep the others and return (path, what its .arc file would lose)
    for each (:func:`arcodec.imageio.lossless_for`: metadata, another mode or format)."""
    kept = []
    for path in paths:
        lost = lossless_for(path)
        if lost:
            kept.append((path, lost))
        else:
            Path(path).unlink()
    return kept


def output_name(file: str, output: str | None = None) -> str:
    """Where decompressing ``file`` writes: ``output`` when given, standard output for
    standard input, IMG for IMG.arc."""
    if output is not None:
        return output
    if file == STDIN:
        return STDIN
    if file.endswith(SUFFIX) and len(file) > len(SUFFIX):
        return file[: -len(SUFFIX)]
    raise ArcodecError(f"{file}: unknown suffix (expected {SUFFIX}); name the output with -o")


def archive_targets(header: Header, directory: str | Path) -> list[Path]:
    """The path of each image of an archive under ``directory``: its entry name, which must be
    safe (:func:`container.unsafe_name`) and name a file, and no name twice."""
    targets = []
    for e in header.entries:
        if container.unsafe_name(e.name) is not None or not Path(e.name).parts:
            raise ArcodecError(f"archive holds an unsafe name {e.name!r}; refusing to write it")
        targets.append(Path(directory) / e.name)
    if len(set(targets)) != len(targets):
        raise ArcodecError("the archive holds a name more than once; refusing to write any of it")
    return targets


@dataclass(frozen=True)
class Decompressed:
    """What :func:`decompress_path` decoded and where it wrote it."""

    header: Header
    output: str  # the image written ("-": standard output, as PNG), or the archive's directory


@dataclass(frozen=True)
class _Opened:
    """An .arc file read and checked, with where its images go (nothing decoded yet)."""

    data: bytes
    header: Header
    output: str
    targets: list[Path]  # an archive's images; empty for a single image


def _open_arc(file: str, output: str | None, directory: str | None, force: bool,
              data: bytes | None = None) -> _Opened:
    """Read an .arc file (unless its ``data`` is given), parse its header and check its
    outputs: ``output``, by default IMG for IMG.arc, placed in ``directory`` when one is
    given."""
    data = read_input(file) if data is None else data
    header, _, _ = container.read(data)
    output = output_name(file, output)
    if directory is not None:
        output = str(Path(directory) / Path(output).name)
    if header.archive and output == STDIN:
        raise ArcodecError("an archive cannot go to stdout; name a directory with -o")
    targets = archive_targets(header, output) if header.archive else []
    check_outputs(targets if header.archive else [output], force)
    if header.sample_bits == container.WIDE_BITS and output != STDIN:
        check_wide_format(output, header.entries[0].channels // 2)
    return _Opened(data, header, output, targets)


def _write_decoded(opened: _Opened, images: list[np.ndarray], force: bool) -> Decompressed:
    """Write the decoded images where :func:`_open_arc` said."""
    if opened.header.archive:
        for t, a in zip(opened.targets, images):
            write_image(t, a, force)
    elif opened.output == STDIN:
        write_output(STDIN, encode_png(images[0], opened.header.metadata), force)
    else:
        write_image(Path(opened.output), images[0], force, opened.header.metadata)
    return Decompressed(opened.header, opened.output)


def decompress_path(file: str, output: str | None = None, model=None, force: bool = False,
                    progress: Callable | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decompressed:
    """Decode an .arc file (``"-"``: standard input) and write its image to ``output`` (by
    default IMG for IMG.arc; standard output, as PNG, for standard input), or every image of
    an archive under the directory ``output``. The CRC32 of the pixels is verified and every
    output is checked before anything is written; any error is raised, and a file of more
    than ``max_pixels`` sub-pixels is refused."""
    opened = _open_arc(file, output, None, force)
    total = sum(e.subpixels for e in opened.header.entries)
    with (progress(total) if progress is not None else nullcontext()) as bar:
        _, images = decode_file(opened.data, model=model, progress=bar.update if bar is not None else None,
                                max_pixels=max_pixels)
    return _write_decoded(opened, images, force)


def decompress_paths(files: Sequence[str], output: str | None = None, model=None, force: bool = False,
                     progress: Callable | None = None, jobs: int | None = 1,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Decompressed | Failed]:
    """Decompress several .arc files (as :func:`decompress_path` does one), going on past a
    bad one: a :class:`Failed` for each file that cannot be read, decoded or written (nothing
    is written for it), in the order of ``files``.

    With one file ``output`` is its output; with several, ``output`` must be an existing
    directory, where each file's output goes (IMG for IMG.arc, the directory ``set`` of an
    archive ``set.arc``); standard input cannot be one of several files. ``jobs`` processes
    (None: :func:`choose_jobs`) share the files (files decoded in one process go through the
    model together). Each file is read whole only where it is decoded, one group at a time,
    so that memory does not grow with the number of files (only its header here, for the
    progress bar); standard input is read here, once."""
    directory = None
    if len(files) > 1:
        if STDIN in files:
            raise ArcodecError("standard input ('-') cannot be one of several inputs")
        if output is not None:
            if not Path(output).is_dir():
                raise ArcodecError(f"{output}: with several inputs, -o must name an existing directory")
            directory, output = output, None
    items, total = [], 0
    for i, file in enumerate(files):
        data = None
        try:  # the files' sizes, for the progress bar; a file that fails here fails again below, and says why
            if file == STDIN:
                data = read_input(file)
                header = container.read(data)[0]
            else:
                header = peek_header(file)
            total += sum(e.subpixels for e in header.entries)
        except EXPECTED:
            pass
        items.append((i, file, data))  # None: read where it is decoded
    jobs = 1 if jobs == 1 or len(files) == 1 else choose_jobs(jobs, total)
    return spread(decompress_share, items, jobs, total, progress, output, directory, model, force, max_pixels)


def peek_header(path: str) -> Header:
    """The header of the .arc file ``path``, from its first :data:`HEADER_PREFIX` bytes when
    they hold it (from the whole file otherwise); a FormatError or OSError as reading it
    would give."""
    with open(path, "rb") as f:
        data = f.read(HEADER_PREFIX)
        try:
            return container.read_header(data)[0]
        except FormatError:
            rest = f.read()
            if not rest:
                raise
            return container.read_header(data + rest)[0]


def decompress_share(items: list[tuple[int, str, bytes | None]], output: str | None, directory: str | None,
                     model, force: bool, max_pixels: int, progress: Callable | None
                     ) -> list[tuple[int, Decompressed | Failed]]:
    """Decompress (index, file, its bytes or None to read it) items, in groups of about
    :data:`GROUP_SUBPIXELS` decoded together; (index, result or failure) each. A group that
    fails is decoded again one file at a time, to tell which file failed."""

    def prepare(file: str, data: bytes | None) -> _Opened:
        return _open_arc(file, output, directory, force, data)

    def run_group(group: list) -> dict:
        out = {}
        try:
            decoded = decode_many([o.data for *_, o in group], model=model, progress=progress, max_pixels=max_pixels)
        except EXPECTED:
            decoded = None
        for k, (i, file, opened) in enumerate(group):
            try:
                images = decoded[k][1] if decoded is not None else \
                    decode_file(opened.data, model, progress=progress, max_pixels=max_pixels)[1]
                out[i] = _write_decoded(opened, images, force)
            except EXPECTED as e:
                out[i] = Failed(file, reason_of(e))
        return out

    return _in_groups(items, prepare, lambda opened: sum(e.subpixels for e in opened.header.entries), run_group)


_REPORT = None  # a worker's progress: puts the sub-pixels coded on the parent's queue


def _start_worker(queue, threads: int) -> None:
    """Set up a worker process: its share of the cores, progress to the parent, and Ctrl-C
    ending it quietly (SystemExit: temporary files are removed, no traceback is printed), and
    SIGTERM too (the parent sends it to its workers when it is terminated itself).
    The worker starts with Ctrl-C blocked (:func:`_in_pool`); one that came while it started
    ends it here, before any work."""
    global _REPORT
    from arcodec.codec.coders import set_threads

    set_threads(threads)
    _REPORT = queue.put
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # as the parent: ignored in a background job
        signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _terminated)  # the parent terminates its workers when it is terminated
    redeliver_swallowed([(_exit_code(143), signal.SIGTERM, _terminated),
                         (_exit_code(130), signal.SIGINT, _interrupted)])
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending Ctrl-C is handled here
    except SystemExit:
        os._exit(130)  # nothing written yet; leaving the initializer by an exception would print a traceback


def _interrupted(signum, frame):
    raise SystemExit(130)


def _terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the clean-up that follows runs to its end
    raise SystemExit(143)


def _exit_code(code: int) -> Callable[[BaseException], bool]:
    return lambda e: isinstance(e, SystemExit) and e.code == code


def _in_worker(work: Callable, share: list, args: tuple) -> list:
    return work(share, *args, _REPORT)


def spread(work: Callable, items: list[tuple], jobs: int, total: int, progress: Callable | None,
           *args) -> list:
    """``work(share, *args, progress)`` over (index, ...) items, the items shared among
    ``min(jobs, len(items))`` processes (in this one when that is one), with one progress bar
    over ``total``; returns what ``work`` gives for each item, in the index order."""
    k = max(1, min(jobs, len(items)))
    with (progress(total) if progress is not None else nullcontext()) as bar:
        update = bar.update if bar is not None else None
        if k == 1:
            done = work(items, *args, update)
        else:
            done = _in_pool(work, [items[c::k] for c in range(k)], args, update)
    return [r for _, r in sorted(done, key=lambda ir: ir[0])]


def _in_pool(work: Callable, shares: list[list], args: tuple, update: Callable | None) -> list:
    """Run ``work`` on each share in its own spawned process; progress from every worker
    goes to ``update``."""
    import multiprocessing
    import queue as queues

    ctx = multiprocessing.get_context("spawn")
    reports = ctx.Queue()
    threads = max(1, default_jobs() // len(shares))

    def drain():
        while True:
            try:
                n = reports.get_nowait()
            except queues.Empty:
                return
            if update is not None:
                update(n)

    pool = ProcessPoolExecutor(len(shares), mp_context=ctx, initializer=_start_worker, initargs=(reports, threads))
    try:
        # the workers start (import torch, the models) with Ctrl-C blocked, so that it cannot
        # interrupt that with a traceback; _start_worker unblocks it
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            futures = [pool.submit(_in_worker, work, share, args) for share in shares]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
        return [r for f in futures for r in f.result()]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        reports.close()
