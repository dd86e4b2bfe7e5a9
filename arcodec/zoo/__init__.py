"""The model zoo: shipped weights with their cards, loaded with their sha256 verified.

Each model has ``<name>.json`` (machine-readable card: permanent id, architecture,
config, sha256 of the weights, data, command, measured NLL), ``<name>.pt`` (a state dict,
loaded with ``weights_only=True``) and ``<name>.md`` (the human-readable card).
A model can also be a checkpoint written by ``arcodec train`` (``runs/X/best.pt``);
such a model has id 0 and must be named again when decompressing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from arcodec.errors import ModelError
from arcodec.models.layers import set_exact
from arcodec.registry import build_model, make_config

ZOO_DIR = Path(__file__).resolve().parent
DEFAULT_GRAY = "mnist-gated"  # the model when no card applies (it codes any 8-bit image, plane by plane)


def applies(card: dict, image) -> bool:
    """Whether a card's ``applies`` rule takes an (H, W, C) uint8 image: ``channels`` (the
    channel counts it codes; a one-channel model codes more channels plane by plane),
    ``levels`` (every value below it), and optionally ``shape`` [H, W] or ``max_pixels``.
    A card without the rule applies to nothing (it is chosen only by name)."""
    rule = card.get("applies")
    if not rule:
        return False
    h, w, c = image.shape
    if c not in rule.get("channels", [1]) or int(image.max()) >= rule.get("levels", 256):
        return False
    if "shape" in rule and [h, w] != list(rule["shape"]):
        return False
    return h * w <= rule.get("max_pixels", h * w)


def applicable(images, below: int = 257) -> list[str]:
    """Names of the shipped models whose cards apply to every image, best first (the cards'
    ``rank``, then id); ``below``: only models of fewer levels than that."""
    ranked = sorted(cards(), key=lambda c: (c.get("rank", 99), c["id"]))
    return [c["name"] for c in ranked if images and c.get("applies", {}).get("levels", 256) < below
            and all(applies(c, a) for a in images)]


def default_model(images) -> str:
    """The one zoo model for images (H, W, C) uint8 when a tool needs a single model and the
    user names none: the best-ranked card that applies to all of them, else DEFAULT_GRAY.
    (The codec itself tries every applicable model and a stored method: ``codec``.)"""
    names = applicable(images)
    return names[0] if names else DEFAULT_GRAY


@dataclass(frozen=True)
class LoadedModel:
    name: str
    model_id: int  # permanent id written in .arc headers; 0 for a checkpoint file
    sha256: str
    net: torch.nn.Module  # eval mode, exact arithmetic
    card: dict

    @property
    def fingerprint(self) -> bytes:
        return bytes.fromhex(self.sha256)[:2]

    @property
    def levels(self) -> int:
        return self.net.config.levels

    @property
    def channels(self) -> int:
        return self.net.config.channels

    @property
    def bit_depth(self) -> int:
        return (self.levels - 1).bit_length()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cards() -> list[dict]:
    """Every shipped model's card, sorted by id."""
    return sorted((json.loads(p.read_text()) for p in ZOO_DIR.glob("*.json")), key=lambda c: c["id"])


def _finish(net: torch.nn.Module) -> torch.nn.Module:
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return set_exact(net, True)


def load_model(name: str = DEFAULT_GRAY) -> LoadedModel:
    """A zoo model by name, or a training checkpoint by path; verifies the sha256.

    Loaded models are cached; a checkpoint is loaded again when its file changes."""
    path = Path(name)
    if name.endswith(".pt") and path.is_file():
        st = path.stat()
        return _cached_checkpoint(str(path.resolve()), st.st_mtime_ns, st.st_size, name)
    return _load_zoo(name)


def clear_cache() -> None:
    """Forget loaded models (after the zoo changed)."""
    _load_zoo.cache_clear()
    _cached_checkpoint.cache_clear()


@lru_cache(maxsize=8)
def _cached_checkpoint(resolved: str, mtime_ns: int, size: int, name: str) -> LoadedModel:
    return _load_checkpoint(Path(name))


@lru_cache(maxsize=8)
def _load_zoo(name: str) -> LoadedModel:
    card_path = ZOO_DIR / f"{name}.json"
    if not card_path.is_file():
        known = ", ".join(c["name"] for c in cards()) or "none"
        raise ModelError(f"unknown model {name!r} (shipped: {known})")
    card = json.loads(card_path.read_text())
    weights = ZOO_DIR / card["weights"]
    if not weights.is_file():
        raise ModelError(f"weights of model {name!r} are missing: {weights}")
    digest = sha256_file(weights)
    if digest != card["sha256"]:
        raise ModelError(f"weights of model {name!r} do not match their card's sha256 "
                         f"({digest[:12]}... != {card['sha256'][:12]}...): the file is damaged")
    net = build_model(card["arch"], make_config(card["arch"], card["config"]))
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return LoadedModel(name, int(card["id"]), digest, _finish(net), card)


def _load_checkpoint(path: Path) -> LoadedModel:
    from arcodec.training.train import load_checkpoint

    try:
        net, ckpt = load_checkpoint(path)
    except Exception as e:  # a user's file: any failure to read it is their input's fault
        raise ModelError(f"cannot load checkpoint {path}: {e}") from None
    from arcodec.models.causality import violations

    # flows code all pixels at once (no pixel order): causality concerns autoregressive models only
    bad = violations(net) if getattr(net, "coding", "autoregressive") == "autoregressive" else []
    if bad:
        (out, inp), n = bad[0], len(bad)
        raise ModelError(f"refusing {path}: the model is not causal (the distribution of pixel {out} "
                         f"depends on pixel {inp}, {n} such dependencies); it cannot be decoded")
    if getattr(net.config, "classes", 0):
        raise ModelError(f"refusing {path}: a class-conditional model (classes={net.config.classes}) "
                         "needs labels, which .arc files do not carry")
    if getattr(net, "codec_refusal", ""):  # e.g. a quantile model: no likelihood to code with
        raise ModelError(f"model {path} {net.codec_refusal}")
    card = {"name": str(path), "id": 0, "arch": ckpt["arch"], "config": json.loads(ckpt["config"])}
    return LoadedModel(str(path), 0, sha256_file(path), _finish(net), card)


def model_for_id(model_id: int, fingerprint: bytes) -> LoadedModel:
    """The zoo model a file names; checks the weights' fingerprint."""
    for card in cards():
        if card["id"] == model_id:
            m = load_model(card["name"])
            check_fingerprint(m, fingerprint)
            return m
    if model_id == 0:
        raise ModelError("the file was made with a checkpoint, not a zoo model: pass it with --model")
    raise ModelError(f"the file needs model id {model_id}, which this arcodec does not ship: upgrade arcodec")


def check_fingerprint(m: LoadedModel, fingerprint: bytes) -> None:
    if m.fingerprint != fingerprint:
        raise ModelError(f"the file was made with different weights than model {m.name!r} "
                         f"(fingerprint {fingerprint.hex()} != {m.fingerprint.hex()})")


def export_checkpoint(checkpoint: str | Path, name: str, model_id: int, card_extra: dict | None = None,
                      zoo_dir: Path = ZOO_DIR, force: bool = False) -> dict:
    """Turn a training checkpoint into a zoo entry: ``<name>.pt`` (state dict only) and
    ``<name>.json`` (card with the full sha256). Returns the card."""
    from arcodec.imageio import write_atomic
    from arcodec.training.train import load_checkpoint

    if model_id < 1:
        raise ModelError("zoo ids start at 1 (0 means 'a checkpoint file')")
    for c in cards() if zoo_dir == ZOO_DIR else []:
        if c["id"] == model_id and c["name"] != name:
            raise ModelError(f"id {model_id} belongs to {c['name']!r}: ids are permanent, pick another")
    net, ckpt = load_checkpoint(checkpoint)
    if hasattr(net, "act_max") and not bool((net.act_max > 0).all()):
        _calibrate(net, json.loads(ckpt["train_config"]))
    weights = zoo_dir / f"{name}.pt"
    tmp = weights.with_suffix(".pt.tmp")
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


def _default_applies(net: torch.nn.Module) -> dict:
    """What a new zoo model codes, for ``--model auto``: images of its levels and channels (a
    one-channel model also codes two- and four-channel images plane by plane)."""
    cfg = net.config
    return {"channels": [1, 2, 4] if cfg.channels == 1 else [cfg.channels], "levels": cfg.levels}


def _calibrate(net: torch.nn.Module, train_config: dict, crops: int = 32) -> None:
    """Fix the integer engine's activation scales from the model's own training data (the
    training split, ``crops`` crops an image): part of turning a run into a shipped model."""
    from arcodec.training.data import load_dataset

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
