"""``arcodec bench``: every method measured on a sample of a folder, round trips checked,
results as a table and as bench.md / bench.json / bench.png; bad input as one line."""

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from arcodec.evaluation import bench
from arcodec.evaluation.bench import AUTO, run_bench, sample
from arcodec.cli import main
from arcodec.imageio import read_image
from arcodec.zoo import applicable


def run(*args):
    return CliRunner().invoke(main, ["bench", *map(str, args)], catch_exceptions=False)


@pytest.fixture
def folder(tmp_path):
    """Two 8x8 gray images (noise, a gradient) and a 6x6 RGB one (in a subfolder)."""
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(d / "a.png")
    Image.fromarray(np.tile(np.arange(8, dtype=np.uint8) * 30, (8, 1))).save(d / "b.png")
    Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(d / "sub" / "c.png")
    return d


def check_consistent(res, folder):
    rows = {r["method"]: r for r in res["methods"]}
    auto = rows[AUTO]
    assert res["images"] == 3 and auto["images"] == 3 and auto["images_coded"] == 3
    assert not res["roundtrip_failures"]
    for r in res["methods"]:
        assert r["roundtrips_ok"] == r["roundtrips"] == r["images"] and not r["failures"]
        coded = [im for im in res["per_image"] if r["method"] in im["results"]]
        assert r["bytes"] == sum(im["results"][r["method"]]["bytes"] for im in coded)
        assert r["bpd"] == pytest.approx(8 * r["bytes"] / sum(im["subpixels"] for im in coded))
        assert r["encode_s"] > 0 and r["decode_s"] > 0
    models = [r for r in res["methods"] if r["kind"] == "arcodec" and r["method"] != AUTO]
    assert models  # mnist-gated codes small images of any channels: the comparison below is not empty
    images = [read_image((folder / im["file"]).read_bytes()) for im in res["per_image"]]
    assert {r["method"] for r in models} == {f"arcodec {n}" for a in images for n in applicable([a])}
    for r in models:  # auto is never larger than a model, image by image and pooled over the same images
        assert r["vs_auto"] >= 0
        for im in res["per_image"]:
            if r["method"] in im["results"]:
                assert im["results"][AUTO]["bytes"] <= im["results"][r["method"]]["bytes"]
    whole = [r["bpd"] for r in models if r["images"] == 3]
    assert auto["bpd"] <= min(whole, default=np.inf)
    assert {"PNG (Pillow)"} <= set(rows) and set(rows) | set(res["unavailable"]) >= {
        "PNG (Pillow)", "WebP lossless", "JPEG XL lossless e7"}


def test_cli_prints_the_table_and_writes_the_files(folder, tmp_path):
    out = tmp_path / "results"
    r = run(folder, "--out", out)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split()[:3] == ["method", "images", "bits/sub-px"]
    assert any(line.startswith("arcodec auto ") and "3/3 ok" in line for line in lines)
    assert any(line.startswith("PNG (Pillow) ") for line in lines)
    assert "FAILED" not in r.output and "arcodec auto:" in r.output
    assert {p.name for p in out.iterdir()} == {"bench.md", "bench.json", "bench.png"}
    res = json.loads((out / "bench.json").read_text())
    check_consistent(res, folder)
    md = (out / "bench.md").read_text()
    assert "| arcodec auto | 3/3 |" in md and "ROUND TRIP" not in md
    assert Image.open(out / "bench.png").size[0] > 100
    # earlier results are not overwritten without -f, and nothing is measured before refusing
    before = (out / "bench.json").read_bytes()
    r = run(folder, "--out", out)
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "already exists (use -f" in r.output
    assert (out / "bench.json").read_bytes() == before
    r = run(folder, "--out", out, "--limit", 1, "-f")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "bench.json").read_text())["images"] == 1


def test_library_function(folder, tmp_path):
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "res").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "res" / "bench.png")  # earlier results
    notes, bars = [], []

    class Bar:
        def __init__(self, total):
            self.total, self.done = total, 0.0
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            self.done += n

    res = run_bench(folder, limit=0, progress=Bar, note=notes.append, exclude=folder / "res")
    check_consistent(res, folder)
    assert [s["file"] for s in res["skipped"]] == ["broken.png"]
    assert any("broken.png" in n for n in notes) and res["files_found"] == 4
    assert [im["file"] for im in res["per_image"]] == ["a.png", "b.png", "sub/c.png"]
    assert len(bars) == 1 and bars[0].total > 0 and bars[0].done == pytest.approx(bars[0].total)
    assert sum(res["auto_choices"].values()) == 3
    json.dumps(res)  # plain data
    paths = bench.write_results(res, tmp_path / "w")
    assert [p.name for p in paths] == ["bench.md", "bench.json", "bench.png"]


def test_sample_is_evenly_spaced():
    assert sample(list(range(10)), 3) == [1, 5, 8]
    assert sample(list(range(4)), 0) == sample(list(range(4)), 9) == [0, 1, 2, 3]
    assert sample(list(range(100)), 20) == list(range(2, 100, 5))


def test_a_failed_round_trip_is_loud(folder, tmp_path, monkeypatch):
    real = bench._pil_decode

    def corrupt(data, shape, report):
        out = real(data, shape, report).copy()
        if shape[:2] != (16, 16):  # not the probe that tells whether the codec works here
            out[0, 0, 0] ^= 1
        return out

    monkeypatch.setattr(bench, "_pil_decode", corrupt)
    out = tmp_path / "results"
    r = run(folder, "--out", out, "--limit", 1)
    assert r.exit_code == 1
    assert any(line.startswith("PNG (Pillow)") and "0/1 FAILED" in line for line in r.output.splitlines())
    assert "ROUND TRIP FAILED" in r.output and r.output.rstrip().splitlines()[-1].startswith(
        "arcodec: error: 1 round trip(s) failed")
    assert "ROUND TRIP FAILURES: 1" in (out / "bench.md").read_text()
    assert json.loads((out / "bench.json").read_text())["roundtrip_failures"][0]["method"] == "PNG (Pillow)"


@pytest.mark.parametrize("case", ["missing", "file", "empty", "unreadable"])
def test_bad_input_is_one_line(case, tmp_path):
    target = tmp_path / "x"
    if case == "file":
        target.write_bytes(b"")
    elif case == "empty":
        target.mkdir()
        (target / "notes.txt").write_text("no images here")
    elif case == "unreadable":
        target.mkdir()
        (target / "a.png").write_bytes(b"not a png")
    r = run(target, "--out", tmp_path / "results")
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and r.output.startswith("arcodec: error: ")
    assert not (tmp_path / "results").exists()


def test_a_missing_codec_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # as if it were not installed
    notes = []
    methods, missing = bench.classical_methods(notes.append)
    assert [m.name for m in methods] == ["PNG (Pillow)"]
    assert set(missing) == {"WebP lossless", "JPEG XL lossless e7"} and len(notes) == 2
    assert all("imagecodecs is not installed" in n for n in notes)
