import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from arcodec.cli import main
from arcodec.codec.container import read


@pytest.fixture
def run(tiny):
    def invoke(*args, input=None):
        return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)
    return invoke


def png(path, a):
    Image.fromarray(a).save(path)
    return path


def test_compress_decompress_single_file_gzip_manners(run, tiny, digits, tmp_path):
    src = png(tmp_path / "d.png", digits[0])
    r = run("compress", "-m", tiny.name, src)
    assert r.exit_code == 0, r.output
    assert not src.exists() and (tmp_path / "d.png.arc").exists()  # like gzip: input removed
    r = run("decompress", "-m", tiny.name, "-k", tmp_path / "d.png.arc")
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(src)), digits[0])
    # the output exists now: no overwrite without -f, and the existing file is untouched
    before = src.read_bytes()
    r = run("decompress", "-m", tiny.name, "-k", tmp_path / "d.png.arc")
    assert r.exit_code == 1 and "already exists" in r.output and src.read_bytes() == before
    r = run("decompress", "-m", tiny.name, "-f", tmp_path / "d.png.arc")
    assert r.exit_code == 0 and not (tmp_path / "d.png.arc").exists()


def test_keep_and_info(run, tiny, digits, tmp_path):
    src = png(tmp_path / "a.png", digits[1])
    assert run("compress", "-k", "-m", tiny.name, src).exit_code == 0
    assert src.exists()
    r = run("info", tmp_path / "a.png.arc")
    assert r.exit_code == 0
    assert "28, 28, 1" in r.output and "bits/dim" in r.output and "12 header+CRC" in r.output


def test_archive_of_files_and_directories(run, tiny, digits, tmp_path):
    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    png(d / "x.png", digits[2])
    png(d / "sub" / "y.png", np.stack([digits[3]] * 3, axis=-1))
    a = png(tmp_path / "a.png", digits[4])
    r = run("compress", "-m", tiny.name, a, d, "-o", tmp_path / "set.arc")
    assert r.exit_code == 0, r.output
    assert a.exists()  # archives keep their inputs
    out = tmp_path / "out"
    r = run("decompress", "-m", tiny.name, tmp_path / "set.arc", "-o", out)
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(out / "a.png")), digits[4])
    assert np.array_equal(np.asarray(Image.open(out / "dir" / "x.png")), digits[2])
    assert np.array_equal(np.asarray(Image.open(out / "dir" / "sub" / "y.png"))[:, :, 1], digits[3])


def test_stdin_stdout(run, tiny, digits, tmp_path):
    src = png(tmp_path / "s.png", digits[5])
    r = CliRunner().invoke(main, ["compress", "-m", tiny.name, "-"], input=src.read_bytes())
    assert r.exit_code == 0
    arc = r.stdout_bytes
    assert arc[:2] == b"AR"
    r = CliRunner().invoke(main, ["decompress", "-m", tiny.name, "-"], input=arc)
    assert r.exit_code == 0
    back = tmp_path / "back.png"
    back.write_bytes(r.stdout_bytes)
    assert np.array_equal(np.asarray(Image.open(back)), digits[5])


@pytest.mark.parametrize("content, message", [
    (b"this is not an image", "not a readable image"),
    (b"", "not a readable image"),
])
def test_bad_images_give_one_line_and_no_output(run, tiny, tmp_path, content, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    r = run("compress", "-m", tiny.name, bad)
    assert r.exit_code == 1 and message in r.output and len(r.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png"]


@pytest.mark.parametrize("content, message", [
    (b"PK\x03\x04zipzipzip", "not an arcodec file"),
    (b"AR\x90\x01\x00\x00\x1c\x1c0000", "format version 9"),
    (b"AR\x10", "truncated"),
])
def test_bad_arc_files_give_one_line_and_no_output(run, tiny, tmp_path, content, message):
    bad = tmp_path / "bad.png.arc"
    bad.write_bytes(content)
    r = run("decompress", "-m", tiny.name, bad)
    assert r.exit_code == 1 and message in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png.arc"]


def test_corrupt_payload_writes_nothing(run, tiny, digits, tmp_path):
    src = png(tmp_path / "c.png", digits[6])
    run("compress", "-m", tiny.name, src)
    arc = tmp_path / "c.png.arc"
    data = bytearray(arc.read_bytes())
    data[len(data) // 2] ^= 0x10
    arc.write_bytes(bytes(data))
    r = run("decompress", "-m", tiny.name, arc)
    assert r.exit_code == 1 and ("CRC32" in r.output or "corrupt" in r.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png.arc"]


def test_unknown_model_and_missing_file(run, tmp_path):
    r = run("compress", "-m", "nope", tmp_path / "missing.png")
    assert r.exit_code == 1 and "no such file" in r.output
    png(tmp_path / "z.png", np.zeros((4, 4), np.uint8))
    r = run("compress", "-m", "nope", tmp_path / "z.png")
    assert r.exit_code == 1 and "unknown model" in r.output


def test_console_script_exit_code_and_no_traceback(tmp_path):
    bad = tmp_path / "x.arc"
    bad.write_bytes(b"garbage")
    p = subprocess.run([sys.executable, "-m", "arcodec.cli", "decompress", str(bad)],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.strip() == "arcodec: error: not an arcodec file (wrong magic bytes)"
    assert "Traceback" not in p.stderr


def fresh_cli(folder, *commands: list[str]) -> tuple[list[int], bool, str]:
    """Run arcodec commands in turn in a fresh interpreter in ``folder``: (their exit codes,
    whether torch was imported, what the failing ones printed)."""
    script = ("import sys\n"
              "from click.testing import CliRunner\n"
              "from arcodec.cli import main\n"
              f"for args in {list(commands)!r}:\n"
              "    r = CliRunner().invoke(main, args)\n"
              "    print(r.exit_code)\n"
              "    if r.exit_code:\n"
              "        print(args, r.output, file=sys.stderr)\n"
              "print('torch' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    *codes, torch_loaded = p.stdout.split()
    return [int(c) for c in codes], torch_loaded == "True", p.stderr


def test_headers_stored_files_and_early_errors_start_without_torch(tmp_path):
    """arcodec info, a stored file's decompression, the errors found before any model (a
    missing file, a damaged one) and arcodec models (the cards, every weights file's sha256
    checked) never import torch: a fraction of a second instead of the seconds torch takes
    to import."""
    from arcodec.codec.api import encode_stored

    image = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    (tmp_path / "s.arc").write_bytes(encode_stored([image]).data)
    (tmp_path / "bad.arc").write_bytes(b"garbage")
    codes, torch_loaded, log = fresh_cli(tmp_path, ["info", "s.arc"], ["decompress", "-k", "s.arc", "-o", "s.png"],
                                         ["decompress", "missing.arc"], ["decompress", "bad.arc"], ["models"])
    assert codes == [0, 0, 1, 1, 0] and not torch_loaded, log
    assert np.array_equal(np.asarray(Image.open(tmp_path / "s.png")), image)


def test_photos_compress_and_decompress_without_torch(tmp_path):
    """The shipped photo models code through their integer engine, built from the weights
    file with numpy: ``arcodec compress`` and ``decompress`` of a photo (large enough for the
    mixture-offset search) never import torch, and the pixels come back."""
    yy, xx = np.mgrid[0:260, 0:256]
    rng = np.random.default_rng(1)
    image = np.stack([(xx + yy) // 2, (3 * xx) % 256, yy], axis=2) + rng.integers(0, 9, (260, 256, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "p.png")
    codes, torch_loaded, log = fresh_cli(tmp_path, ["compress", "-k", "p.png", "--model", "photo-rgb"],
                                         ["decompress", "-k", "p.png.arc", "-o", "back.png"])
    assert codes == [0, 0] and not torch_loaded, log
    assert np.array_equal(np.asarray(Image.open(tmp_path / "back.png")), image)
    assert read((tmp_path / "p.png.arc").read_bytes())[0].engine == 5


def test_a_digit_decompresses_without_torch(tmp_path):
    """The shipped Gated PixelCNN decodes a few tiles on its numpy engine (the compiled
    kernels, built from the weights file): ``arcodec decompress`` of a digit never imports
    torch, and the pixels come back."""
    from arcodec.codec.api import encode_images

    yy, xx = np.mgrid[0:28, 0:28]
    digit = (np.clip(1 - np.abs(np.hypot(yy - 14, xx - 13) - 8) / 3, 0, 1) * 255).astype(np.uint8)[:, :, None]
    (tmp_path / "d.arc").write_bytes(encode_images([digit], model="mnist-gated").data)
    codes, torch_loaded, log = fresh_cli(tmp_path, ["decompress", "-k", "d.arc", "-o", "d.png"])
    assert codes == [0] and not torch_loaded, log
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")), digit[:, :, 0])


def test_a_colour_digit_decompresses_without_torch(tmp_path):
    """The shipped PixelCNN-MADE decodes on its compiled steps, built from the weights file
    with numpy: ``arcodec decompress`` of a colour digit (values 0..3, colour MNIST's) never
    imports torch, and the pixels come back."""
    from arcodec.codec.api import encode_images

    yy, xx = np.mgrid[0:28, 0:28]
    ring = np.clip(3 - np.abs(np.hypot(yy - 14, xx - 13) - 8), 0, 3).round().astype(np.uint8)
    image = np.stack([ring, 3 - ring, ring // 2], axis=2)
    (tmp_path / "c.arc").write_bytes(encode_images([image], model="colour-mnist-made").data)
    codes, torch_loaded, log = fresh_cli(tmp_path, ["info", "c.arc"], ["decompress", "-k", "c.arc", "-o", "c.png"])
    assert codes == [0, 0] and not torch_loaded, log
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c.png")), image)
    assert b"colour-mnist-made" in subprocess.run([sys.executable, "-m", "arcodec.cli", "info", str(tmp_path / "c.arc")],
                                                  capture_output=True).stdout


def test_help_has_examples(run):
    for cmd in ("compress", "decompress", "info", "train"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "Example" in r.output


def test_eval_reports_nll_next_to_real_bits_per_image(run, tiny, tmp_path):
    import csv

    out = tmp_path / "ev.csv"
    r = run("eval", "-m", tiny.name, "--data", "digits", "--limit", 5, "--batch", 2, "--csv", out)
    assert r.exit_code == 0, r.output
    assert "NLL (model)" in r.output and "achieved (real files)" in r.output and "5/5" in r.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5
    for row in rows:
        assert row["roundtrip_ok"] == "True"
        assert float(row["file_bpd"]) > float(row["nll_bpd"]) > 0  # header and coder cost something
        assert int(row["file_bytes"]) * 8 == pytest.approx(float(row["file_bpd"]) * 64, rel=1e-5)
    assert run("eval", "-m", tiny.name, "--data", "digits", "--limit", 1, "--csv", out).exit_code == 1  # no -f


def test_eval_report_is_one_html_page_with_its_figures(run, tiny, tmp_path):
    import base64
    import re

    rep = tmp_path / "rep"
    r = run("eval", "-m", tiny.name, "--data", "digits", "--limit", 6, "--csv", tmp_path / "r.csv", "--report", rep)
    assert r.exit_code == 0, r.output
    page = (rep / "index.html").read_text()
    assert list(rep.iterdir()) == [rep / "index.html"]  # one file: every figure inline
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert titles == ["Summary", "File bits/dim per image", "Model NLL against file bits/dim",
                      "The 4 worst images and where their bits go", "Training"]
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) == 4  # histogram, scatter, worst images, the checkpoint's training curves
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in pngs)
    assert "6/6" in page and tiny.sha256 in page
    again = run("eval", "-m", tiny.name, "--data", "digits", "--limit", 1, "--csv", tmp_path / "s.csv", "--report", rep)
    assert again.exit_code == 1 and "already exists" in again.output  # nothing overwritten without -f


def test_eval_on_a_folder_of_images(run, tiny, digits, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    png(d / "a.png", digits[0])
    png(d / "b.png", np.stack([digits[1][:10, :12]] * 3, axis=-1))  # RGB: coded channel by channel
    r = run("eval", "-m", tiny.name, "--data", d, "--csv", tmp_path / "f.csv")
    assert r.exit_code == 0, r.output
    assert "2/2" in r.output


def test_the_library_plans_what_compress_writes(tmp_path):
    from arcodec.codec import container
    from arcodec.codec.files import archive_targets, plan_compress
    from arcodec.errors import ArcodecError

    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    for p in (d / "x.png", d / "sub" / "y.png", tmp_path / "a.png"):
        png(p, np.zeros((4, 4), np.uint8))
    a = str(tmp_path / "a.png")
    plan = plan_compress([a])
    assert plan.targets == (a + ".arc",) and plan.in_place and not plan.archive
    plan = plan_compress([a, str(d)], "set.arc")
    assert plan.archive and plan.targets == ("set.arc",) and not plan.in_place
    assert [n for _, n in plan.inputs] == ["a.png", "dir/sub/y.png", "dir/x.png"]
    assert plan_compress(["-"]).targets == ("-",)
    with pytest.raises(ArcodecError, match="several inputs need -o"):
        plan_compress(["-", a])
    header = container.Header(0, b"\0\0", (container.Entry(4, 4, 1, ""),), archive=True)
    with pytest.raises(ArcodecError, match="unsafe name"):
        archive_targets(header, tmp_path / "out")


def test_a_reader_that_leaves_early_gets_no_error(tmp_path):
    """`arcodec info x.arc | head -1`: the closed pipe ends the command quietly (status 141, as
    a shell reports SIGPIPE), with nothing on stderr."""
    from pathlib import Path

    golden = Path(__file__).parent / "golden"
    files = [str(p) for p in sorted(golden.glob("*.arc"))] * 200  # enough output to fill the pipe
    p = subprocess.Popen([sys.executable, "-m", "arcodec.cli", "info", *files],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == ""
