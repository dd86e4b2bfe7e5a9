"""Users' own models from ours: ``arcodec train --init``, ``arcodec export -o FILE.arcm``,
and ``--model FILE.arcm`` in the codec (public interfaces only)."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from arcodec.cli import main
from arcodec.registry import load_checkpoint, model_file_bytes, read_model_file

FAST = ["--set", "batch=8", "--set", "val_every=2", "--set", "val_limit=16", "--set", "warmup=1",
        "--set", "threads=1"]


@pytest.fixture(scope="module")
def fine_tuned(tiny_checkpoint, tmp_path_factory):
    """A run fine-tuned for two steps from the tiny checkpoint, and its model file."""
    d = tmp_path_factory.mktemp("finetune")
    r = CliRunner().invoke(main, ["train", "--init", str(tiny_checkpoint), "--data", "digits", "--set", "steps=2",
                                  *FAST, "--out", str(d / "run")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["export", str(d / "run"), "-o", str(d / "mine.arcm")], catch_exceptions=False)
    assert r.exit_code == 0 and "sha256" in r.output, r.output
    return d


def test_init_starts_from_the_model_with_its_config(fine_tuned, tiny_checkpoint):
    start, _ = load_checkpoint(tiny_checkpoint)
    tuned, ckpt = load_checkpoint(fine_tuned / "run" / "best.pt")
    assert tuned.config == start.config and ckpt["step"] == 2
    assert json.loads(ckpt["train_config"])["init"] == str(tiny_checkpoint)
    moved = [k for k, v in start.state_dict().items() if not torch.equal(v, tuned.state_dict()[k])]
    assert moved and all(  # two small steps from the initial weights, not a fresh start
        (start.state_dict()[k] - tuned.state_dict()[k]).abs().max() < 0.05 for k in moved)
    log = [json.loads(ln) for ln in (fine_tuned / "run" / "log.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in log] == [1, 2] and (fine_tuned / "run" / "curves.png").exists()


def test_model_file_compresses_and_decompresses_through_the_cli(fine_tuned, tmp_path):
    img = np.zeros((12, 10), dtype=np.uint8)
    img[2:10, 4:6] = 13
    Image.fromarray(img).save(tmp_path / "d.png")
    model = str(fine_tuned / "mine.arcm")
    r = CliRunner().invoke(main, ["compress", "-k", "-j", "1", str(tmp_path / "d.png"), "--model", model])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["decompress", "-j", "1", str(tmp_path / "d.png.arc"), "-o", str(tmp_path / "back.png"),
                                  "--model", model])
    assert r.exit_code == 0, r.output
    assert (np.asarray(Image.open(tmp_path / "back.png")) == img).all()


def test_tampered_or_malformed_model_file_is_refused(fine_tuned, tmp_path):
    img = np.full((6, 7), 5, dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "d.png")
    r = CliRunner().invoke(main, ["compress", "-k", "-j", "1", str(tmp_path / "d.png"),
                                  "--model", str(fine_tuned / "mine.arcm")])
    assert r.exit_code == 0, r.output
    data = bytearray((fine_tuned / "mine.arcm").read_bytes())
    data[-3] ^= 1  # a byte of the last tensor's weights
    (tmp_path / "tampered.arcm").write_bytes(bytes(data))
    r = CliRunner().invoke(main, ["decompress", "-j", "1", str(tmp_path / "d.png.arc"), "-o", str(tmp_path / "x.png"),
                                  "--model", str(tmp_path / "tampered.arcm")])
    assert r.exit_code == 1 and "different weights" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.png").exists()
    (tmp_path / "junk.arcm").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    r = CliRunner().invoke(main, ["compress", "-k", "-j", "1", str(tmp_path / "d.png"), "-o", str(tmp_path / "y.arc"),
                                  "--model", str(tmp_path / "junk.arcm")])
    assert r.exit_code == 1 and "junk.arcm" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_model_file_round_trip_is_safetensors_with_json_metadata(tiny_checkpoint, tmp_path):
    from safetensors import safe_open

    net, ckpt = load_checkpoint(tiny_checkpoint)
    assert torch.load(tiny_checkpoint, weights_only=True)["arch"] == ckpt["arch"]  # old checkpoints: no pickle
    path = tmp_path / "m.arcm"
    facts = {"train_config": json.loads(ckpt["train_config"]), "step": 12, "val_bpd": 1.5}
    path.write_bytes(model_file_bytes(net, "m", facts))
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["arcodec"])
    assert meta["arch"] == "gated-pixelcnn" and meta["name"] == "m" and meta["config"]["hidden"] == 8
    back = read_model_file(path)
    assert back["step"] == 12 and back["val_bpd"] == 1.5 and json.loads(back["train_config"]) == facts["train_config"]
    again, _ = load_checkpoint(path)
    assert again.config == net.config
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in net.state_dict().items())
    assert model_file_bytes(net, "m", facts) == path.read_bytes()  # the same model, the same fingerprint


def test_init_refuses_another_architecture_and_resume(tmp_path):
    base = ["train", "--init", "mnist-gated", "--data", "digits", "--out", str(tmp_path / "run")]
    r = CliRunner().invoke(main, base + ["--set", "hidden=8"])
    assert r.exit_code == 1 and "cannot set hidden=8 (it has 32)" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["train", "--init", "photo-rgb", "--data", "digits", "--out", str(tmp_path / "run"),
                                  "--set", "hidden=8"])
    assert r.exit_code == 1 and "cannot set hidden=8 (it has" in r.output and "enlarge hidden" in r.output
    r = CliRunner().invoke(main, base + ["--model", "made"])
    assert r.exit_code == 1 and "is a gated-pixelcnn model, not made" in r.output
    r = CliRunner().invoke(main, base + ["--resume"])
    assert r.exit_code == 2 and "--resume" in r.output
    r = CliRunner().invoke(main, ["export", str(tmp_path)])
    assert r.exit_code == 2 and "-o FILE.arcm" in r.output
