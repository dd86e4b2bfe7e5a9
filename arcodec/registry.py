"""Model registry: names to (class, config dataclass); ``build_model`` is the one constructor.

Names -> classes (:func:`register_model`, :func:`architectures`), settings -> config
(:func:`make_config`, :func:`coerce`), config -> model (:func:`build_model`), checkpoint
file -> model (:func:`load_checkpoint`: training writes checkpoints, the registry reads them).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

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


def build_model(arch: str, config) -> nn.Module:
    _load()
    return _MODELS[arch][0](config)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """(model, checkpoint dict) from a file written by ``arcodec train``
    (:func:`arcodec.training.train.checkpoint`): the architecture's name, its config as
    JSON and a state dict, read with ``weights_only=True`` (no pickled code)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(ckpt["arch"], make_config(ckpt["arch"], json.loads(ckpt["config"])))
    model.load_state_dict(ckpt["model"])
    return model, ckpt


def _load() -> None:
    import arcodec.models  # noqa: F401  (registers the architectures)
