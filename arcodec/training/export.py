"""Turn a training run into a zoo entry or a model file: ``arcodec export``.

:func:`export_model_file` writes one ``.arcm`` file (safetensors: the weights, with the
architecture, config, name and training facts in its metadata;
:func:`arcodec.registry.model_file_bytes`), which ``--model FILE.arcm`` takes everywhere a
model is named. :func:`export_checkpoint` writes ``<name>.pt`` (the state dict only), ``<name>.json`` (the
machine-readable card, with the full sha256 of the weights) and ``<name>.md`` (the
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
from arcodec.registry import MODEL_FILE_SUFFIX, load_checkpoint, model_file_bytes
from arcodec.training.data import load_dataset
from arcodec.zoo import ZOO_DIR, cards, clear_cache


def export_checkpoint(checkpoint: str | Path, name: str, model_id: int, card_extra: dict | None = None,
                      zoo_dir: Path = ZOO_DIR, force: bool = False) -> dict:
    """Turn a training checkpoint into a zoo entry: ``<name>.pt`` (state dict only) and
    ``<name>.json`` (card with the full sha256). Returns the card."""
    if model_id < 1:
        raise ModelError("zoo ids start at 1 (0 means 'a checkpoint file')")
    for c in cards() if zoo_dir == ZOO_DIR else []:
        if c["id"] == model_id and c["name"] != name:
            raise ModelError(f"id {model_id} belongs to {c['name']!r}: ids are permanent, pick another")
    net, ckpt = exportable(checkpoint)
    weights = zoo_dir / f"{name}.pt"
    tmp = weights.with_suffix(".pt.tmp")  # torch.save names the archive's folder after the file: keep that name
    torch.save({k: v.contiguous() for k, v in net.state_dict().items()}, tmp)
    data = tmp.read_bytes()
    tmp.unlink()
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


def _calibrate(net: torch.nn.Module, train_config: dict, crops: int = 32) -> None:
    """Fix the integer engine's activation scales from the model's own training data (the
    training split, ``crops`` crops an image): part of turning a run into a shipped model."""
    data = train_config["data"]
    options = {}
    if data.startswith("folder:"):
        options = {"crop": train_config.get("crop", 32), "crops": crops, "mode": train_config.get("mode", "")}
    net.calibrate(load_dataset(data, "train", **options))


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
        f"{tr.get('steps', '?')} steps of batch {tr.get('batch', '?')}, best validation checkpoint at step "
        f"{card.get('step')}, validation NLL {card.get('val_bpd')} bits/dim",
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
