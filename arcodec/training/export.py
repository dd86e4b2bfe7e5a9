"""Turn a training run into a zoo entry or a model file: ``arcodec export``.

:func:`export_model_file` writes one ``.arcm`` file (safetensors: the weights, with the
architecture, config, name and training facts in its metadata;
:func:`arcodec.registry.model_file_bytes`), which ``--model FILE.arcm`` takes everywhere a
model is named. :func:`export_checkpoint` writes ``<name>.arcm`` (the same kind of model
file), ``<name>.json`` (the machine-readable card, with the full sha256 of the weights) and ``<name>.md`` (the
human-readable card, :func:`model_card_markdown`) into the zoo folder. A local model's
integer engine is calibrated on its own training data first when the run did not do it.
The zoo (:mod:`arcodec.zoo`) reads and verifies what this writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from arcodec import __version__
from arcodec.errors import ModelError
from arcodec.imageio import refuse_existing, write_atomic
from arcodec.registry import MODEL_FILE_SUFFIX, build_model, load_checkpoint, make_config, model_file_bytes
from arcodec.training.data import load_dataset
from arcodec.zoo import ZOO_DIR, cards, clear_cache, read_weights


def export_checkpoint(checkpoint: str | Path, name: str, model_id: int, card_extra: dict | None = None,
                      zoo_dir: Path = ZOO_DIR, force: bool = False) -> dict:
    """Turn a training checkpoint into a zoo entry: ``<name>.arcm`` (a model file) and
    ``<name>.json`` (card with the full sha256). Returns the card."""
    if model_id < 1:
        raise ModelError("zoo ids start at 1 (0 means 'a checkpoint file')")
    for c in cards() if zoo_dir == ZOO_DIR else []:
        if c["id"] == model_id and c["name"] != name:
            raise ModelError(f"id {model_id} belongs to {c['name']!r}: ids are permanent, pick another")
    net, ckpt = exportable(checkpoint)
    weights = zoo_dir / f"{name}{MODEL_FILE_SUFFIX}"
    facts = {"train_config": json.loads(ckpt["train_config"]), "step": ckpt["step"], "val_bpd": ckpt.get("val_bpd")}
    data = model_file_bytes(net, name, facts)
    write_atomic(weights, data, force)
    card = {
        "name": name,
        "id": model_id,
        "arch": ckpt["arch"],
        "config": json.loads(ckpt["config"]),
        "weights": weights.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "train_config": json.loads(ckpt["train_config"]),
        "step": ckpt["step"],
        "val_bpd": ckpt.get("val_bpd"),
        "applies": _default_applies(net),
        **(card_extra or {}),
    }
    write_atomic(zoo_dir / f"{name}.json", (json.dumps(card, indent=2) + "\n").encode(), force=True)
    write_atomic(zoo_dir / f"{name}.md", model_card_markdown(card).encode(), force=True)
    clear_cache()
    return card


def export_model_file(checkpoint: str | Path, path: str | Path, name: str = "", extra: dict | None = None,
                      force: bool = False) -> str:
    """Write a training checkpoint as one model file ``path`` (``.arcm``): the weights in
    safetensors format, the architecture, config, ``name`` (default: the file's stem) and
    the training facts (training settings, step, validation NLL, ``extra``: e.g. the command)
    in its metadata. Returns the file's sha256, the fingerprint of every .arc made with it."""
    path = Path(path)
    if path.suffix != MODEL_FILE_SUFFIX:
        raise ModelError(f"a model file's name ends in {MODEL_FILE_SUFFIX}: {path}")
    refuse_existing(path, force)
    net, ckpt = exportable(checkpoint)
    facts = {"arcodec_version": __version__, "train_config": json.loads(ckpt["train_config"]), "step": ckpt["step"],
             "val_bpd": ckpt.get("val_bpd"), **(extra or {})}
    data = model_file_bytes(net, name or path.stem, facts)
    write_atomic(path, data, force)
    return hashlib.sha256(data).hexdigest()


def exportable(checkpoint: str | Path) -> tuple[torch.nn.Module, dict]:
    """(model, checkpoint dict) of a training checkpoint, ready to ship: a local model's
    integer engine calibrated on its own training data when the run did not do it."""
    net, ckpt = load_checkpoint(checkpoint)
    if hasattr(net, "act_max") and not bool((net.act_max > 0).all()):
        _calibrate(net, json.loads(ckpt["train_config"]))
    return net, ckpt


def _default_applies(net: torch.nn.Module) -> dict:
    """What a new zoo model codes, for ``--model auto``: images of its levels and channels (a
    one-channel model also codes two- and four-channel images plane by plane)."""
    cfg = net.config
    return {"channels": [1, 2, 4] if cfg.channels == 1 else [cfg.channels], "levels": cfg.levels}


def _calibrate(net: torch.nn.Module, train_config: dict, crops: int = 32, most: int = 4096,
               data_root: str | None = None) -> None:
    """Fix the integer engine's activation scales from the model's own training data (the
    training split, ``crops`` crops an image, at most ``most`` images evenly spaced): part of
    turning a run into a shipped model."""
    data = train_config["data"]
    options = {}
    if data.startswith("folder:"):
        options = {"crop": train_config.get("crop", 32), "crops": crops, "mode": train_config.get("mode", "")}
    if data_root is not None:
        options["root"] = data_root
    images = load_dataset(data, "train", **options)
    net.calibrate(images[:: max(1, len(images) // most)])


def calibrate_zoo(name: str, data_root: str | None = None, zoo_dir: Path = ZOO_DIR) -> dict:
    """Give zoo model ``name`` its integer engine's scales (the ``act_max`` buffer),
    calibrated on its card's training data, and write it back with its card: the float
    weights stay as they are, so files coded before with the earlier weights file still
    decode (its sha256 joins the card's ``legacy_sha256``, whose fingerprints files may
    carry). ``arcodec calibrate NAME``. Returns the card."""
    card, net = _zoo_entry(name, zoo_dir)
    if not hasattr(net, "calibrate"):
        raise ModelError(f"model {name!r} ({card['arch']}) has no integer engine to calibrate")
    _calibrate(net, card["train_config"], data_root=data_root)
    return _rewrite(name, card, net, zoo_dir, f"Integer engine scales calibrated on the training data with "
                    f"`arcodec calibrate {name}`")


def rewrite_zoo(name: str, zoo_dir: Path = ZOO_DIR) -> dict:
    """Write zoo model ``name``'s weights as a model file (``<name>.arcm``: safetensors, no
    pickle), the same tensors, with its card; files made with the earlier weights file still
    decode (its sha256 joins ``legacy_sha256``). ``arcodec rewrite-zoo NAME``. Returns the card."""
    card, net = _zoo_entry(name, zoo_dir)
    return _rewrite(name, card, net, zoo_dir, f"Weights rewritten as a safetensors model file with "
                    f"`arcodec rewrite-zoo {name}`")


def _zoo_entry(name: str, zoo_dir: Path) -> tuple[dict, torch.nn.Module]:
    """(card, float model with its weights) of zoo model ``name``, from the zoo's files."""
    card_path = zoo_dir / f"{name}.json"
    if not card_path.is_file():
        raise ModelError(f"unknown zoo model {name!r}")
    card = json.loads(card_path.read_text())
    net = build_model(card["arch"], make_config(card["arch"], card["config"]))
    net.load_state_dict(read_weights(zoo_dir / card["weights"]))
    return card, net


def _rewrite(name: str, card: dict, net: torch.nn.Module, zoo_dir: Path, what: str) -> dict:
    """Write ``net`` as zoo model ``name``'s model file and update its card; when the bytes
    change, the earlier file's sha256 becomes a legacy fingerprint and ``what`` joins the notes."""
    facts = {k: card[k] for k in ("train_config", "step", "val_bpd") if k in card}
    data = model_file_bytes(net, name, facts)
    digest = hashlib.sha256(data).hexdigest()
    old = zoo_dir / card["weights"]
    weights = zoo_dir / f"{name}{MODEL_FILE_SUFFIX}"
    if digest != card["sha256"]:
        card["legacy_sha256"] = [*card.get("legacy_sha256", []), card["sha256"]]
        card["notes"] = (card.get("notes", "") + f" {what}; the float weights are those of the earlier weights "
                         f"file (sha256 {card['sha256'][:12]}...), whose .arc files still decode.").strip()
    card.update(weights=weights.name, sha256=digest, size_bytes=len(data))
    write_atomic(weights, data, force=True)
    if old != weights:
        old.unlink()
    return update_card(name, card, zoo_dir)


def update_card(name: str, fields: dict, zoo_dir: Path = ZOO_DIR) -> dict:
    """Write ``fields`` into zoo model ``name``'s card (JSON and Markdown). Returns the card."""
    card_path = zoo_dir / f"{name}.json"
    card = {**json.loads(card_path.read_text()), **fields}
    write_atomic(card_path, (json.dumps(card, indent=2) + "\n").encode(), force=True)
    write_atomic(zoo_dir / f"{name}.md", model_card_markdown(card).encode(), force=True)
    clear_cache()
    return card


def model_card_markdown(card: dict) -> str:
    """The human-readable card, generated from the JSON card (no number typed by hand)."""
    cfg = ", ".join(f"{k}={v}" for k, v in card["config"].items())
    tr = card.get("train_config", {})
    lines = [
        f"# Model card: `{card['name']}` (id {card['id']})",
        "",
        f"- **Architecture**: `{card['arch']}` ({cfg})",
        f"- **Weights**: `{card['weights']}`, {card['size_bytes']} bytes, sha256 `{card['sha256']}` "
        "(verified on every load)",
        f"- **Training data**: {tr.get('data', '?')} training split (see `arcodec/training/data.py`), "
        + (f"{tr['seconds']:g} seconds of training on {tr.get('device', 'cpu')} in steps of batch {tr.get('batch', '?')}"
         if tr.get("seconds") else f"{tr.get('steps', '?')} steps of batch {tr.get('batch', '?')}")
        + f", best validation checkpoint at step {card.get('step')}, validation NLL {card.get('val_bpd')} bits/dim",
        f"- **Training settings**: {json.dumps(tr)}",
    ]
    if card.get("command"):
        lines.append(f"- **Command**: `{card['command']}`")
    if "test_nll_bpd" in card:
        lines += [
            f"- **Test NLL** on the {card['test_images']} {card['data']} test images: "
            f"**{card['test_nll_bpd']} bits/dim** in the codec's exact arithmetic "
            f"({card['test_nll_bpd_float']} in float32); measured by `arcodec export ... --data {card['data']}`",
        ]
    if card.get("notes"):
        lines += ["", card["notes"]]
    return "\n".join(lines) + "\n"
