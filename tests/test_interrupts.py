"""Interrupted and failing commands leave nothing half-written: ``arcodec compress`` and
``decompress`` write each output through a temporary file renamed into place
(:func:`arcodec.imageio.atomic_path`) and remove their inputs only after every output is
complete.

The commands run as a user runs them, in a child process (POSIX: signals, a
pseudo-terminal): Ctrl-C (SIGINT to the process group, as a terminal sends it) and
``kill -9`` while the model is working, seen on the progress bar of a pseudo-terminal; and,
to hit the moment between two files exactly, the same command with a hook that sends the
signal just before the second output is renamed into place. A full disk is simulated in
this process: the second file's write stops half way with ENOSPC."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from arcodec.cli import main
from arcodec.codec.api import decode_many, encode_many

MODEL = "mnist-gated"
STARTED = 120  # seconds a child may take to reach the point a test waits for (a loaded machine)

# the real command line, with a hook: this process sends itself signal SIGNUM just before
# the AT-th output written under FOLDER is renamed into place (atomic_path's os.replace)
HOOKED = """
import os, sys
folder, at, signum = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
real, renamed = os.replace, []
def replace(src, dst, **kw):
    if str(dst).startswith(folder):
        renamed.append(dst)
        if len(renamed) == at:
            os.kill(os.getpid(), signum)
    return real(src, dst, **kw)
os.replace = replace
from arcodec.cli import main
main(sys.argv[4:], prog_name="arcodec")
"""


def as_at_a_terminal() -> None:
    """In the child before it runs: Ctrl-C's default action back, as in a terminal's
    foreground job (a test run in the background, e.g. under nohup, ignores SIGINT, and a
    child would inherit that and never see the Ctrl-C these tests send)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def noise(n: int, side: int, seed: int = 0) -> list[np.ndarray]:
    """Images the model codes slowly: uniform noise, (side, side, 1) uint8."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (side, side, 1), dtype=np.uint8) for _ in range(n)]


def pngs(folder: Path, images: list[np.ndarray]) -> list[Path]:
    out = []
    for i, a in enumerate(images):
        out.append(folder / f"n{i}.png")
        Image.fromarray(a[:, :, 0]).save(out[-1])
    return out


def arcs(folder: Path, files: list[bytes]) -> list[Path]:
    out = []
    for i, data in enumerate(files):
        out.append(folder / f"n{i}.png.arc")
        out[-1].write_bytes(data)
    return out


@pytest.fixture(scope="module")
def small():
    """Three 8x8 noise images and their .arc files (quick to code)."""
    images = noise(3, 8)
    return images, [e.data for e in encode_many(images, model=MODEL)]


@pytest.fixture(scope="module")
def slow_to_decode():
    """Two 128x128 noise images and their .arc files: decoding them takes seconds (the
    numpy engine decodes a 40x40 one before the progress bar shows)."""
    images = noise(2, 128, seed=1)
    return images, [e.data for e in encode_many(images, model=MODEL)]


def leftovers(folder: Path) -> list[str]:
    """Temporary files of atomic_path (``.NAME.XXXX.tmp``) in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def pixels(png: Path) -> np.ndarray:
    return np.asarray(Image.open(png))[:, :, None]


def check_whole(outputs: list[Path], images: list[np.ndarray]) -> None:
    """Each of the outputs that exists is whole: output i, an .arc file, decodes to image i;
    a PNG holds image i."""
    present = [(o, a) for o, a in zip(outputs, images) if o.exists()]
    coded = [(o, a) for o, a in present if o.suffix == ".arc"]
    for (_, a), (_, back) in zip(coded, decode_many([o.read_bytes() for o, _ in coded]) if coded else []):
        assert np.array_equal(back[0], a)
    for o, a in present:
        if o.suffix == ".png":
            assert np.array_equal(pixels(o), a)


def run_hooked(folder: Path, at: int, signum: int, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HOOKED, str(folder), str(at), str(int(signum)), *map(str, args)],
                          capture_output=True, text=True, timeout=STARTED, preexec_fn=as_at_a_terminal)


def run_on_terminal(args: list, seen: bytes, signum: int) -> tuple[int, str]:
    """Run ``arcodec ARGS`` with its stderr on a pseudo-terminal (so the progress bar shows),
    in its own process group; once ``seen`` appears there, send ``signum`` to the group as a
    terminal's Ctrl-C does. (exit status, everything it wrote on stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns: room for the bar
    p = subprocess.Popen([sys.executable, "-m", "arcodec.cli", *map(str, args)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=slave, start_new_session=True,
                         preexec_fn=as_at_a_terminal)
    os.close(slave)
    out, sent, deadline = b"", False, time.monotonic() + STARTED
    try:
        while time.monotonic() < deadline:
            if not sent and seen in out:
                os.killpg(p.pid, signum)
                sent = True
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal: it has ended
                break
            if not chunk:
                break
            out += chunk
        assert sent, f"never saw {seen!r}: {out.decode(errors='replace')}"
        return p.wait(timeout=STARTED), out.decode(errors="replace")
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()


def lines(stderr: str) -> list[str]:
    """What a terminal shows of stderr, line by line (a terminal ends lines with \\r\\n): the
    progress bar's frames (each begun by \\r) and escape sequences dropped."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", stderr)
    shown = [line.rstrip("\r").split("\r")[-1].strip() for line in text.split("\n")]
    return [line for line in shown if line]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_interrupted_while_decoding_writes_nothing(slow_to_decode, tmp_path, signum):
    """Ctrl-C or kill -9 while the model decodes: no output, no temporary file, every .arc
    file kept; Ctrl-C ends with status 130 and one line."""
    images, data = slow_to_decode
    files = arcs(tmp_path, data)
    status, stderr = run_on_terminal(["decompress", "-j", "1", *files], b"decompress", signum)
    if signum == signal.SIGINT:
        assert status == 130 and "Traceback" not in stderr
        assert lines(stderr) == ["arcodec: interrupted"]
    else:
        assert status == -signal.SIGKILL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n0.png.arc", "n1.png.arc"]
    assert all(f.read_bytes() == d for f, d in zip(files, data))


ENDED = {signal.SIGINT: (130, "arcodec: interrupted"), signal.SIGTERM: (143, "arcodec: terminated")}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_ctrl_c_between_two_files(small, tmp_path, command, signum):
    """Ctrl-C (or SIGTERM, ``kill PID``) just before the second output is renamed into place:
    the first output is whole, the second's temporary file is removed, the third is never
    written, and every input is kept (inputs go only once all outputs are whole)."""
    images, data = small
    if command == "compress":
        inputs, outputs = pngs(tmp_path, images), [tmp_path / f"n{i}.png.arc" for i in range(3)]
        r = run_hooked(tmp_path, 2, signum, "compress", "-j", "1", "-m", MODEL, *inputs)
    else:
        inputs, outputs = arcs(tmp_path, data), [tmp_path / f"n{i}.png" for i in range(3)]
        r = run_hooked(tmp_path, 2, signum, "decompress", "-j", "1", *inputs)
    status, line = ENDED[signum]
    assert r.returncode == status and r.stderr == line + "\n"
    assert [o.exists() for o in outputs] == [True, False, False]
    assert all(i.exists() for i in inputs) and leftovers(tmp_path) == []
    check_whole(outputs, images)


def test_kill_9_between_two_files_leaves_only_a_hidden_temporary(small, tmp_path):
    """kill -9 just before the second output is renamed into place: nothing can clean up, so
    its temporary file stays, hidden and named as one (``.n1.png.arc.XXXX.tmp``); no file
    under an output's name is partial and every input is kept."""
    images, _ = small
    inputs = pngs(tmp_path, images)
    r = run_hooked(tmp_path, 2, signal.SIGKILL, "compress", "-j", "1", "-m", MODEL, *inputs)
    assert r.returncode == -signal.SIGKILL
    assert all(i.exists() for i in inputs)
    assert (tmp_path / "n0.png.arc").exists() and not (tmp_path / "n1.png.arc").exists()
    assert not (tmp_path / "n2.png.arc").exists()
    [tmp] = leftovers(tmp_path)
    assert re.fullmatch(r"\.n1\.png\.arc\..+\.tmp", tmp)
    check_whole([tmp_path / "n0.png.arc"], images)


def test_sigterm_to_the_parent_ends_its_workers(tmp_path):
    """SIGTERM to the command alone (not its process group) while its -j 2 workers decode:
    it terminates them, and nothing is left: no output, no temporary file, no worker, every
    .arc file kept; status 143 and one line."""
    data = [e.data for e in encode_many(noise(2, 384, seed=3), model=MODEL)]  # seconds each to decode
    files = arcs(tmp_path, data)
    p = subprocess.Popen([sys.executable, "-m", "arcodec.cli", "decompress", "-j", "2", *map(str, files)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=as_at_a_terminal)
    try:
        children = Path(f"/proc/{p.pid}/task/{p.pid}/children")
        deadline = time.monotonic() + STARTED
        workers: list[str] = []
        while time.monotonic() < deadline and p.poll() is None:
            workers = children.read_text().split() if children.exists() else []
            if sum(map(coding, workers)) >= 2:
                break
            time.sleep(0.05)
        time.sleep(1)  # the workers load the model and decode (several seconds an image)
        os.kill(p.pid, signal.SIGTERM)
        _, stderr = p.communicate(timeout=STARTED)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 143 and stderr == "arcodec: terminated\n"
    assert not any(Path(f"/proc/{w}").exists() and coding(w) for w in workers)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["n0.png.arc", "n1.png.arc"]
    assert all(f.read_bytes() == d for f, d in zip(files, data))


def importing_torch(pid: str) -> bool:
    """Whether process ``pid`` has begun importing torch (its libraries are mapped)."""
    return _mapped(pid, ("libtorch",))


def coding(pid: str) -> bool:
    """Whether worker ``pid`` has begun coding: torch or numba's compiler mapped (a digit
    decodes on the numpy engine, without torch)."""
    return _mapped(pid, ("libtorch", "llvmlite"))


def _mapped(pid: str, names: tuple[str, ...]) -> bool:
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # not there (yet, or any more)
        return False
    return any(n in maps for n in names)


@pytest.mark.slow
def test_ctrl_c_while_workers_start(tmp_path):
    """Ctrl-C while the worker processes of -j 2 import torch: status 130 and one line, no
    traceback from a worker, nothing written and every input kept."""
    images = noise(4, 32, seed=2)
    inputs = pngs(tmp_path, images)
    p = subprocess.Popen([sys.executable, "-m", "arcodec.cli", "compress", "-j", "2", "-m", MODEL, *map(str, inputs)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=as_at_a_terminal)
    children = Path(f"/proc/{p.pid}/task/{p.pid}/children")
    if not children.exists():
        p.kill()
        p.wait()
        pytest.skip("needs /proc/PID/task/PID/children to see the workers start")
    deadline = time.monotonic() + STARTED
    while sum(map(importing_torch, children.read_text().split())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGINT)
    _, stderr = p.communicate(timeout=STARTED)
    assert p.returncode == 130 and stderr == "arcodec: interrupted\n"
    assert all(i.exists() for i in inputs) and leftovers(tmp_path) == []
    check_whole([tmp_path / f"{i.name}.arc" for i in inputs], images)


def full_disk_at(name: str):
    """A Path.write_bytes that stops half way with ENOSPC when writing the temporary file of
    output ``name``, as on a full disk."""
    real = Path.write_bytes

    def write_bytes(self, data):
        if self.name.startswith(f".{name}."):
            with open(self, "wb") as f:
                f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    return write_bytes


def test_full_disk_while_compressing(small, tmp_path, monkeypatch):
    """The disk fills while the second of three outputs is written: one line naming that
    input, status 1, no partial or temporary file; that input is kept, the others are
    compressed (and removed, as gzip does)."""
    images, _ = small
    inputs = pngs(tmp_path, images)
    monkeypatch.setattr(Path, "write_bytes", full_disk_at("n1.png.arc"))
    r = CliRunner().invoke(main, ["compress", "-j", "1", "-m", MODEL, *map(str, inputs)])
    assert r.exit_code == 1
    assert r.output == f"arcodec: error: {inputs[1]}: [Errno 28] No space left on device\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n0.png.arc", "n1.png", "n2.png.arc"]
    check_whole([tmp_path / f"{i.name}.arc" for i in inputs], images)


def test_full_disk_while_decompressing(small, tmp_path, monkeypatch):
    """The same while decompressing: the .arc file whose image could not be written is kept."""
    images, data = small
    inputs = arcs(tmp_path, data)
    monkeypatch.setattr(Path, "write_bytes", full_disk_at("n1.png"))
    r = CliRunner().invoke(main, ["decompress", "-j", "1", *map(str, inputs)])
    assert r.exit_code == 1
    assert r.output == f"arcodec: error: {inputs[1]}: [Errno 28] No space left on device\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n0.png", "n1.png.arc", "n2.png"]
    check_whole([tmp_path / f"n{i}.png" for i in range(3)], images)


def test_many_files_are_read_a_group_at_a_time(tmp_path, monkeypatch):
    """Decompressing many files in one process holds one group of them at a time: a file is
    read only once the outputs of the groups before it are written, so that memory does not
    grow with the number of files (benchmarks/many_files.py measures it)."""
    from arcodec.codec import files
    from arcodec.codec.api import encode_stored

    images = noise(6, 8)
    inputs = arcs(tmp_path, [encode_stored([a]).data for a in images])
    monkeypatch.setattr(files, "GROUP_FILES", 2)
    written, read_input = {}, files.read_input

    def reading(path):  # how many outputs exist when each file is read whole
        written[Path(path).name] = len(list(tmp_path.glob("*.png")))
        return read_input(path)

    monkeypatch.setattr(files, "read_input", reading)
    done = files.decompress_paths([str(p) for p in inputs], jobs=1)
    assert not any(isinstance(r, files.Failed) for r in done)
    assert written == {f"n{i}.png.arc": 2 * (i // 2) for i in range(6)}
    check_whole([tmp_path / f"n{i}.png" for i in range(6)], images)


SWALLOWED = r"""
import ctypes, os, signal, sys, time
from arcodec.signals import redeliver_swallowed

def handler(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(143)

signal.signal(signal.SIGTERM, handler)
if sys.argv[1] == "redeliver":
    redeliver_swallowed([(lambda e: isinstance(e, SystemExit) and e.code == 143, signal.SIGTERM, handler)])

def inside():  # C code calling Python, as numba's compiler does through ctypes
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)  # the handler runs here, inside the callback

ctypes.CFUNCTYPE(None)(inside)()
time.sleep(3)
print("carried on", flush=True)
"""


@pytest.mark.parametrize("redeliver", [True, False])
def test_a_signal_that_lands_inside_a_c_callback_still_ends_the_process(redeliver):
    """SIGTERM while a ctypes callback runs (a -j worker compiling a numba kernel): ctypes
    swallows the handler's SystemExit with a traceback; redelivered, it ends the process with
    status 143 and nothing on stderr. (Without: the traceback, and the process carries on.)"""
    r = subprocess.run([sys.executable, "-c", SWALLOWED, "redeliver" if redeliver else "plain"],
                       capture_output=True, text=True, timeout=60)
    if redeliver:
        assert r.returncode == 143 and r.stderr == "" and "carried on" not in r.stdout
    else:
        assert "Exception ignored" in r.stderr and "carried on" in r.stdout and r.returncode == 0
