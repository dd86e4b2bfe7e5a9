"""The model zoo: shipped weights with their cards, loaded with their sha256 verified.

Each model has ``<name>.json`` (machine-readable card: permanent id, architecture,
config, sha256 of the weights, data, command, measured NLL), ``<name>.arcm`` (a model
file: safetensors, no pickle; :func:`arcodec.registry.read_model_file`) and ``<name>.md``
(the human-readable card). A card's ``legacy_sha256`` lists earlier weights files of the same
float weights: files made with them still decode (:func:`check_fingerprint`). Retrained
weights are a new model with a new id; the model they replace stays in the zoo without an
``applies`` rule and with ``superseded_by`` naming its successor, so that its files decode
and the codec never picks it.
A model can also be a checkpoint written by ``arcodec train`` (``runs/X/best.pt``);
such a model has id 0 and must be named again when decompressing. ``arcodec export``
(:mod:`arcodec.training.export`) turns a training run into a zoo entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import import_module
from pathlib import Path

from arcodec.errors import ModelError

# torch and the architectures are imported when a model's network is first needed, not with
# the cards or the weights: the commands that only read cards and headers (arcodec info,
# arcodec models) and the engines built from the weights file in numpy run without them

ZOO_DIR = Path(__file__).resolve().parent
# the configs a coder reads without torch, by architecture: (module, class)
_LIGHT_CONFIGS = {"local-photo": ("arcodec.models.local_layout", "LocalPhotoConfig"),
                  "gated-pixelcnn": ("arcodec.models.gated_layout", "GatedPixelCNNConfig"),
                  "pixelcnn": ("arcodec.models.pixelcnn_layout", "PixelCNNConfig"),
                  "pixelcnn-made": ("arcodec.models.pixelcnn_layout", "PixelCNNMADEConfig")}
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


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A zoo model or a checkpoint, its sha256 verified. The torch network (:attr:`net`) is
    built when first asked for: a local photo model codes, and a Gated PixelCNN decodes a few
    tiles, without it (:func:`arcodec.codec.api.coding`)."""

    name: str
    model_id: int  # permanent id written in .arc headers; 0 for a checkpoint file
    sha256: str
    card: dict
    weights: Path | None = None  # a zoo model's weights file
    loaded: object = None  # a checkpoint's network, loaded already

    @cached_property
    def net(self):
        """The torch network: eval mode, exact arithmetic; cached and shared (float work uses
        ``models.layers.float_copy``)."""
        if self.loaded is not None:
            return self.loaded
        from arcodec.registry import build_model, make_config

        net = build_model(self.card["arch"], make_config(self.card["arch"], self.card["config"]))
        net.load_state_dict(read_weights(self.weights))
        return _finish(net)

    @cached_property
    def config(self):
        """The model's config: for a local photo model, a Gated PixelCNN, a PixelCNN and a
        PixelCNN-MADE read from the card without torch (what their torch-free decoders need),
        for the others the network's."""
        if self.loaded is None and self.card.get("arch") in _LIGHT_CONFIGS:
            module, name = _LIGHT_CONFIGS[self.card["arch"]]
            return getattr(import_module(module), name)(**self.card["config"])
        return self.net.config

    @property
    def fingerprint(self) -> bytes:
        return bytes.fromhex(self.sha256)[:2]

    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def channels(self) -> int:
        return self.config.channels

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


def _finish(net):
    from arcodec.models.layers import set_exact

    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return set_exact(net, True)


def load_model(name: str = DEFAULT_GRAY) -> LoadedModel:
    """A zoo model by name, or a training checkpoint by path; verifies the sha256.

    Loaded models are cached; a checkpoint is loaded again when its file changes."""
    path = Path(name)
    if path.suffix in (".pt", ".arcm") and path.is_file():  # a checkpoint or a model file (arcodec export -o)
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
    return LoadedModel(name, int(card["id"]), digest, card, weights=weights)


def read_weights(path: Path) -> dict:
    """The state dict of a zoo weights file: a model file (``.arcm``, safetensors: no pickle)
    or, from before those, a ``.pt`` state dict read with ``weights_only=True``."""
    import torch

    from arcodec.registry import MODEL_FILE_SUFFIX, read_model_file

    if path.suffix == MODEL_FILE_SUFFIX:
        return read_model_file(path)["model"]
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_checkpoint(path: Path) -> LoadedModel:
    from arcodec.registry import load_checkpoint

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
    return LoadedModel(str(path), 0, sha256_file(path), card, loaded=_finish(net))


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
    """Refuse a file made with other weights than ``m``'s: its fingerprint must be the
    weights', or one of the card's ``legacy_sha256`` (earlier files of the same float weights,
    before the integer engine's scales were stored with them)."""
    legacy = {bytes.fromhex(s)[:2] for s in m.card.get("legacy_sha256", [])}
    if fingerprint != m.fingerprint and fingerprint not in legacy:
        raise ModelError(f"the file was made with different weights than model {m.name!r} "
                         f"(fingerprint {fingerprint.hex()} != {m.fingerprint.hex()})")
