import json

import torch
from click.testing import CliRunner

from arcodec.cli import main
from arcodec.registry import load_checkpoint
from arcodec.training.export import export_checkpoint, model_card_markdown


def test_train_logs_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--set", "hidden=8", "--set", "layers=2", "--set", "head=8",
            "--set", "batch=16", "--set", "val_every=4", "--set", "warmup=1", "--set", "threads=1", "--out", str(out)]
    r = CliRunner().invoke(main, args + ["--set", "steps=4"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in log] == [1, 2, 3, 4] and "val_bpd" in log[-1]
    assert all(0 < rec["train_bpd"] < 9 for rec in log)
    r = CliRunner().invoke(main, args + ["--set", "steps=8", "--resume"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in log] == list(range(1, 9))
    model, ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["step"] in (4, 8) and ckpt["arch"] == "gated-pixelcnn" and model.config.hidden == 8


def test_resume_takes_the_runs_own_model_data_and_settings(tmp_path):
    """--resume needs only --out (and what changes): the architecture, data, model config and
    training settings come from the run's config.json, a fine-tuned run keeps its origin, and
    another architecture is refused."""
    out = tmp_path / "run"
    first = ["train", "--model", "pixelcnn", "--data", "digits", "--set", "hidden=6", "--set", "blocks=1",
             "--set", "batch=8", "--set", "val_every=2", "--set", "threads=1", "--set", "steps=2", "--out", str(out)]
    assert CliRunner().invoke(main, first, catch_exceptions=False).exit_code == 0
    saved = json.loads((out / "config.json").read_text())
    saved["train"]["init"] = "some-model"  # as if the run had started with --init
    (out / "config.json").write_text(json.dumps(saved))
    r = CliRunner().invoke(main, ["train", "--out", str(out), "--resume", "--set", "steps=4"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == saved["model"] and cfg["model"]["hidden"] == 6
    assert cfg["train"]["arch"] == "pixelcnn" and cfg["train"]["data"] == "digits" and cfg["train"]["batch"] == 8
    assert cfg["train"]["steps"] == 4 and cfg["train"]["init"] == "some-model"
    assert [json.loads(ln)["step"] for ln in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    r = CliRunner().invoke(main, ["train", "--model", "nade", "--out", str(out), "--resume"])
    assert r.exit_code == 2 and "is a run of pixelcnn, not nade" in r.output


def test_same_seed_same_weights(tmp_path):
    def run(d):
        args = ["train", "--data", "digits", "--set", "hidden=4", "--set", "layers=2", "--set", "head=4",
                "--set", "steps=3", "--set", "val_every=3", "--set", "threads=1", "--out", str(d)]
        assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
        return torch.load(d / "best.pt", weights_only=True)["model"]
    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_export_writes_weights_and_cards(tiny_checkpoint, tmp_path):
    card = export_checkpoint(tiny_checkpoint, "tiny", 42, {"command": "arcodec train ..."}, zoo_dir=tmp_path)
    assert (tmp_path / "tiny.arcm").exists() and len(card["sha256"]) == 64 and card["weights"] == "tiny.arcm"
    from arcodec.zoo import read_weights

    net, _ = load_checkpoint(tiny_checkpoint)
    state = read_weights(tmp_path / "tiny.arcm")  # safetensors: the same tensors, no pickle
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert json.loads((tmp_path / "tiny.json").read_text())["sha256"] == card["sha256"]
    assert card["sha256"] in model_card_markdown(card)


def test_class_conditional_model_trains_on_the_labels(tmp_path):
    """`--set classes=10` on a labelled data set: the loop feeds the labels, validates with
    the true ones, and after training the true labels explain the images better than others."""
    from arcodec.training.data import load_dataset, load_labels
    from arcodec.training.train import evaluate_nll

    out = tmp_path / "run"
    args = ["train", "--model", "gated-pixelcnn", "--data", "digits", "--set", "classes=10", "--set", "hidden=16",
            "--set", "layers=2", "--set", "head=16", "--set", "steps=150", "--set", "batch=32", "--set", "lr=2e-2",
            "--set", "warmup=1", "--set", "val_every=150", "--set", "threads=1", "--out", str(out)]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    model, ckpt = load_checkpoint(out / "best.pt")
    assert model.config.classes == 10 and set(ckpt) >= {"arch", "config", "train_config", "step", "model"}
    x, y = load_dataset("digits", "val"), load_labels("digits", "val")
    true = evaluate_nll(model, x, labels=y)
    assert abs(true - ckpt["val_bpd"]) < 1e-6  # validation used the true labels
    shuffled = evaluate_nll(model, x, labels=y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))])
    assert true < shuffled - 0.02 and true < evaluate_nll(model, x, labels=(y + 1) % 10) - 0.02


def test_class_conditional_model_needs_fitting_labels(tmp_path):
    base = ["train", "--set", "hidden=4", "--set", "layers=2", "--set", "head=4", "--set", "steps=1",
            "--set", "threads=1", "--out", str(tmp_path / "run")]
    r = CliRunner().invoke(main, base + ["--model", "gated-pixelcnn", "--data", "toy1d", "--set", "classes=10"])
    assert r.exit_code == 1 and "toy1d has no labels" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, base + ["--data", "digits", "--set", "classes=5"])
    assert r.exit_code == 1 and "digits has labels 0..9, the model has classes=5" in r.output
    assert not (tmp_path / "run").exists()  # a run that cannot start leaves no folder behind


def test_bad_folder_data_is_one_line_and_leaves_no_run(tmp_path):
    import numpy as np
    from PIL import Image

    (tmp_path / "gray").mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 20), 40 * i, dtype=np.uint8)).save(tmp_path / "gray" / f"{i}.png")
    base = ["train", "--model", "local-photo", "--set", "hidden=4", "--set", "steps=1", "--set", "threads=1",
            "--set", "crop=8", "--out", str(tmp_path / "run")]
    for extra, message in ((["--data", f"folder:{tmp_path / 'gray'}", "--set", "chroma=0.5"], "needs RGB images"),
                           (["--data", f"folder:{tmp_path / 'gray'}", "--set", "chroma=2"], "from 0 to 1"),
                           (["--data", f"folder:{tmp_path / 'none'}"], "no such folder")):
        r = CliRunner().invoke(main, base + extra)
        assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "run").exists()


def test_set_values_are_coerced_once_with_yes_no_words():
    from arcodec.registry import coerce, make_config
    from arcodec.training.train import TrainConfig

    assert coerce(TrainConfig, {"flip": "false", "steps": "7", "lr": "1e-2"}, "training") == \
        {"flip": False, "steps": 7, "lr": 0.01}
    assert make_config("gated-pixelcnn", {"causal": "false", "hidden": "8"}).causal is False


def test_models_lists_the_shipped_model_verified(shipped):
    r = CliRunner().invoke(main, ["models"], catch_exceptions=False)
    assert r.exit_code == 0 and "mnist-gated" in r.output and "verified" in r.output


def test_curves_png_is_drawn(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--set", "hidden=4", "--set", "layers=2", "--set", "head=4",
            "--set", "steps=6", "--set", "batch=16", "--set", "val_every=3", "--set", "threads=1", "--out", str(out)]
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    png = out / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # drawn at the end of training
    png.unlink()
    r = CliRunner().invoke(main, ["plot", str(out)], catch_exceptions=False)
    assert r.exit_code == 0 and png.exists()
    r = CliRunner().invoke(main, ["plot", str(tmp_path)])
    assert r.exit_code == 1 and "no training log" in r.output


def test_the_curves_say_what_validation_measured():
    from arcodec.explore.plots import validation_label

    assert validation_label({"train": {"data": "mnist", "val_limit": 0}}) == "validation (whole split)"
    assert validation_label({"train": {"data": "folder:photos", "val_limit": 1024}}) == "validation (1024 crops)"
    assert validation_label({"train": {"data": "mnist", "val_limit": 500, "qat": True}}) == \
        "validation (500 images), through the engine"
    assert validation_label(None) == "validation"


def test_torchrun_two_processes_match_one(tmp_path):
    """DDP on 2 gloo processes, each with half of every batch, trains the same weights as
    one process with the whole batch (up to float summation order)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    sets = ["--data", "digits", "--set", "hidden=6", "--set", "layers=2", "--set", "head=6", "--set", "steps=3",
            "--set", "batch=16", "--set", "val_every=3", "--set", "warmup=1", "--set", "lr=3e-3", "--set", "threads=1"]
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "arcodec", "train", *sets,
                        "--out", str(tmp_path / "ddp")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert CliRunner().invoke(main, ["train", *sets, "--out", str(tmp_path / "one")]).exit_code == 0
    log = [json.loads(ln) for ln in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in log] == [1, 2, 3]  # rank 0 alone writes the log
    a = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert not all(torch.equal(a[k], torch.zeros_like(a[k])) for k in a)


def test_l2_penalty_shrinks_the_weights(tmp_path):
    def norm(l2):
        d = tmp_path / f"l2_{l2}"
        args = ["train", "--data", "digits", "--set", "hidden=4", "--set", "layers=2", "--set", "head=4",
                "--set", "steps=5", "--set", "val_every=5", "--set", "threads=1", "--set", f"l2={l2}",
                "--set", "lr=1e-2", "--out", str(d)]
        assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
        w = torch.load(d / "last.pt", weights_only=True)["model"]
        return sum(float(v.float().pow(2).sum()) for v in w.values())
    assert norm(10.0) < norm(0.0)


def test_a_device_this_machine_lacks_is_a_one_line_error(tmp_path):
    """--set device=cuda trains on a GPU; without one (or for a device arcodec does not train
    on) the command says so in one line, exits non-zero and writes no run."""
    base = ["train", "--data", "digits", "--set", "hidden=8", "--set", "layers=2", "--set", "steps=1",
            "--set", "threads=1"]
    devices = ["tpu", "mps"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in devices:
        out = tmp_path / device
        r = CliRunner().invoke(main, base + ["--set", f"device={device}", "--out", str(out)])
        assert r.exit_code != 0 and "Traceback" not in r.output, r.output
        assert "device" in r.output.strip().splitlines()[-1], r.output
        assert not out.exists()


def test_only_trains_the_named_parameters_and_leaves_the_rest_to_the_bit(tmp_path):
    """``--set only=head_`` on a model grown with channel heads: the heads learn, every other
    weight stays exactly the initial model's; a prefix that names nothing is one line, no run."""
    import numpy as np
    import torch
    from PIL import Image

    g = np.random.default_rng(0)
    (tmp_path / "rgb").mkdir()
    for i in range(12):
        yy, xx = np.mgrid[:24, :24]
        img = np.stack([40 + 3 * xx, 60 + 4 * yy, 90 + 2 * (xx + yy)], -1) + g.integers(0, 20, (24, 24, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(tmp_path / "rgb" / f"{i}.png")
    common = ["--data", f"folder:{tmp_path / 'rgb'}", "--set", "steps=3", "--set", "threads=1", "--set", "crop=8",
              "--set", "batch=4", "--set", "val_every=3", "--set", "lr=1e-2"]
    r = CliRunner().invoke(main, ["train", "--model", "local-photo", "--set", "hidden=4", "--set", "blocks=1",
                                  "--set", "components=2", *common, "--out", str(tmp_path / "base")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["train", "--init", str(tmp_path / "base" / "last.pt"), "--set", "channel_head=3",
                                  "--set", "only=head_", *common, "--out", str(tmp_path / "heads")])
    assert r.exit_code == 0, r.output
    before = torch.load(tmp_path / "base" / "last.pt", weights_only=True)["model"]
    after = torch.load(tmp_path / "heads" / "last.pt", weights_only=True)["model"]
    assert {k for k in after if k not in before} == {"head_in", "head_out", "head_bias"}
    for k, old in before.items():  # the output layer grew rows for the heads' inputs: its old ones frozen too
        if k != "act_max":  # the engine's scales, calibrated again
            assert torch.equal(after[k][tuple(slice(0, n) for n in old.shape)], old), k
    assert after["head_out"].abs().sum() > 0  # started at zero: learnt
    r = CliRunner().invoke(main, ["train", "--init", str(tmp_path / "base" / "last.pt"), "--set", "only=nope",
                                  *common, "--out", str(tmp_path / "none")])
    assert r.exit_code == 1 and "only=nope: no parameter of the model is named so" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "none").exists()


def test_a_run_of_seconds_stops_on_time_validates_and_cools_its_learning_rate(tmp_path):
    """--set seconds=S: the run stops at the first step after S seconds (steps only bounds
    it), validates and saves there; the learning rate follows the clock to about 0; the log
    and the card say seconds; --resume is refused (the schedule is one leg's clock)."""
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--set", "hidden=8", "--set", "layers=2", "--set", "head=8",
            "--set", "batch=16", "--set", "val_every=100000", "--set", "warmup=2", "--set", "threads=1",
            "--set", "steps=100000", "--set", "seconds=3", "--out", str(out)]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert 5 < len(log) < 100000 and "val_bpd" in log[-1] and "val_bpd" not in log[-2]
    assert log[-1]["seconds"] >= 3 >= log[-2]["seconds"]  # (rounded to 0.01 s)
    assert log[-1]["lr"] < 0.01 * max(rec["lr"] for rec in log)
    _, ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == len(log)
    r = CliRunner().invoke(main, args + ["--resume"])
    assert r.exit_code != 0 and "--init" in r.output and "Traceback" not in r.output
    from arcodec.training.export import model_card_markdown

    card = {"name": "x", "id": 0, "arch": "gated-pixelcnn", "config": {}, "weights": "x.arcm", "size_bytes": 1,
            "sha256": "0", "step": len(log), "val_bpd": 1.0, "train_config": json.loads(ckpt["train_config"])}
    assert "3 seconds of training on cpu" in model_card_markdown(card)
