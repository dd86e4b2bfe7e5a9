"""Model registry: names to (class, config dataclass); ``build_model`` is the one constructor.

Names -> classes (:func:`register_model`, :func:`architectures`), settings -> config
(:func:`make_config`, :func:`coerce`), config -> model (:func:`build_model`), checkpoint
file -> model (:func:`load_checkpoint`: training writes checkpoints, the registry reads them).

A model file (``.arcm``, :func:`model_file_bytes`) is what ``arcodec export -o`` gives a user:
one safetensors file, the weights as tensors and the architecture, config, name and training
facts as one JSON object in its metadata. It holds no pickle, and :func:`load_checkpoint` reads
it like a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a model is loaded or written, not with the registry:
    from torch import nn  # the model-file suffix and format are read by commands that build no model

_MODELS: dict[str, tuple[type[nn.Module], type]] = {}
_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def register_model(name: str, config_cls: type):
    """Class decorator: ``@register_model("gated-pixelcnn", GatedPixelCNNConfig)``."""

    def wrap(cls):
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = (cls, config_cls)
        cls.arch = name
        return cls

    return wrap


def architectures(coding: str | None = None) -> list[str]:
    """Registered names; ``coding`` keeps only models whose class attribute ``coding`` (default
    "autoregressive"; "flow" for integer flows, "continuous" for density flows) matches."""
    _load()
    return sorted(n for n, (cls, _) in _MODELS.items()
                  if coding is None or getattr(cls, "coding", "autoregressive") == coding)


def make_config(arch: str, values: dict[str, Any] | None = None):
    """The config dataclass of ``arch`` with ``values`` (strings are converted to field types)."""
    _load()
    if arch not in _MODELS:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(_MODELS))}")
    cls = _MODELS[arch][1]
    kwargs = coerce(cls, values or {}, arch)
    return cls(**kwargs)


def coerce(cls, values: dict[str, Any], what: str) -> dict[str, Any]:
    """``values`` for the fields of dataclass ``cls``, strings converted to each field's type
    (yes/no words for booleans: ``bool("false")`` would be True); unknown keys are refused."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise KeyError(f"{what} has no setting {key!r}; settings: {', '.join(fields)}")
        default = fields[key].default
        if isinstance(value, str) and isinstance(default, bool):
            if value.lower() not in _BOOLS:
                raise ValueError(f"{what} setting {key!r} is a yes/no value, got {value!r}")
            value = _BOOLS[value.lower()]
        kwargs[key] = type(default)(value) if isinstance(value, str) and default is not None else value
    return kwargs


def model_class(arch: str) -> type[nn.Module]:
    """The class registered as ``arch``."""
    _load()
    if arch not in _MODELS:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(_MODELS))}")
    return _MODELS[arch][0]


def build_model(arch: str, config) -> nn.Module:
    _load()
    return _MODELS[arch][0](config)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """(model, checkpoint dict) from a file written by ``arcodec train``
    (:func:`arcodec.training.train.checkpoint`): the architecture's name, its config as
    JSON and a state dict, read with ``weights_only=True`` (no pickled code). A model file
    (``.arcm``) gives the same dict (:func:`read_model_file`)."""
    if Path(path).suffix == MODEL_FILE_SUFFIX:
        ckpt = read_model_file(path)
    else:
        import torch

        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(ckpt["arch"], make_config(ckpt["arch"], json.loads(ckpt["config"])))
    model.load_state_dict(ckpt["model"])
    return model, ckpt


MODEL_FILE_SUFFIX = ".arcm"
MODEL_FILE_FORMAT = "arcodec-model/1"  # the metadata's "format": what the file is, and its version


def model_file_bytes(model: nn.Module, name: str, facts: dict[str, Any]) -> bytes:
    """The bytes of a model file (``.arcm``): ``model``'s state dict in safetensors format
    and one metadata entry, ``arcodec``: a JSON object with the format, the architecture, the
    config, ``name`` and ``facts`` (training facts: ``train_config``, ``step``, ``val_bpd``,
    ``arcodec_version``, a card's extra fields). One entry, its keys sorted: safetensors
    writes several entries in no fixed order, and the same model must give the same bytes,
    whose sha256 is the fingerprint in the .arc files made with it."""
    from safetensors.torch import save

    about = {**facts, "format": MODEL_FILE_FORMAT, "arch": model.arch, "name": name,
             "config": dataclasses.asdict(model.config)}
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    return save(tensors, {"arcodec": json.dumps(about, sort_keys=True)})


def read_model_file(path: str | Path) -> dict:
    """A model file's contents as a checkpoint dict (``arch``, ``config`` and ``train_config``
    as JSON strings, ``name``, the other facts, ``model``: the state dict); a ``ValueError`` naming what
    is wrong when the file is not one (safetensors' own error for a malformed file)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        about = json.loads((f.metadata() or {}).get("arcodec", "{}"))
        if not isinstance(about, dict) or about.get("format") != MODEL_FILE_FORMAT:
            raise ValueError(f"not an arcodec model file (no {MODEL_FILE_FORMAT!r} metadata)")
        state = {k: f.get_tensor(k) for k in f.keys()}
    as_in_checkpoints = {k: json.dumps(about[k]) for k in ("config", "train_config") if k in about}
    return {**about, **as_in_checkpoints, "model": state}


def _load() -> None:
    from importlib import import_module

    from arcodec.models import MODULES

    for module in MODULES:  # each registers its architectures
        import_module(module)
