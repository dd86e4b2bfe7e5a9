"""The model the toolkit works on: a float-mode copy of a zoo model, a checkpoint or a module,
and the checks of what a query hands it (labels, images, causality).

Zoo models come from :func:`arcodec.zoo.load_model` (sha256 verified) and checkpoints from
:func:`arcodec.registry.load_checkpoint`; the toolkit only makes its own float copy, so the
codec's cached exact model stays as it is. Unlike the zoo, it takes the checkpoints the
codec refuses: a class-conditional model gets its labels with the query, and a non-causal
ablation or a model without a likelihood can still be sampled and drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from arcodec.errors import ArcodecError
from arcodec.models.layers import float_copy


@dataclass(frozen=True)
class InferenceModel:
    """A model ready for sampling and queries: a float-mode copy in eval mode."""

    name: str
    net: torch.nn.Module

    @property
    def levels(self) -> int:
        return self.net.config.levels

    @property
    def channels(self) -> int:
        return self.net.config.channels

    @property
    def classes(self) -> int:
        return int(getattr(self.net.config, "classes", 0) or 0)

    @property
    def is_flow(self) -> bool:
        """A flow (the registry's ``coding`` "flow" or "continuous"), not a raster model."""
        return getattr(self.net, "coding", "autoregressive") != "autoregressive" or hasattr(self.net, "intermediates")


def _float_copy(net: torch.nn.Module) -> torch.nn.Module:
    """A float-mode, eval-mode copy of ``net`` without gradients."""
    out = float_copy(net).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def as_model(model) -> InferenceModel:
    """The toolkit's model from a zoo name, a checkpoint path (``runs/x/best.pt``), an
    :class:`InferenceModel` (returned as it is), a :class:`arcodec.zoo.LoadedModel` or a module."""
    if isinstance(model, InferenceModel):
        return model
    if isinstance(model, str):
        if model.endswith(".pt"):
            return InferenceModel(model, _float_copy(_checkpoint(model)))
        from arcodec.zoo import load_model

        model = load_model(model)
    if hasattr(model, "net") and hasattr(model, "sha256"):  # zoo.LoadedModel
        return InferenceModel(model.name, _float_copy(model.net))
    return InferenceModel(getattr(model, "arch", type(model).__name__), _float_copy(model))


def _checkpoint(name: str) -> torch.nn.Module:
    from arcodec.registry import load_checkpoint

    path = Path(name)
    if not path.is_file():
        raise ArcodecError(f"{name}: no such checkpoint")
    try:
        net, _ = load_checkpoint(path)
    except Exception as e:  # the user's file: any failure to read it is their input's fault
        raise ArcodecError(f"cannot load checkpoint {path}: {e}") from None
    return net


def initialised_like(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised model of ``net``'s architecture and config (float mode, seeded)."""
    from arcodec.registry import build_model

    torch.manual_seed(seed)
    return build_model(net.arch, net.config).eval()


def require_causal(m: InferenceModel) -> None:
    """Queries and inpainting trust the factorisation: refuse a model that breaks it."""
    from arcodec.models.causality import violations

    if m.is_flow:
        raise ArcodecError(f"{m.name} is a flow: the likelihood queries need a raster-order autoregressive model")
    bad = violations(m.net)
    if bad:
        raise ArcodecError(f"{m.name} is not causal ({len(bad)} dependencies on later pixels): "
                           "its conditionals are not those of a joint distribution")


def labels(m: InferenceModel, y, n: int) -> torch.Tensor | None:
    """Labels (n,) for a class-conditional model (an int, a list or a tensor), None otherwise."""
    if not m.classes:
        if y is not None:
            raise ArcodecError(f"{m.name} is not class-conditional: it takes no label")
        return None
    if y is None:
        raise ArcodecError(f"{m.name} is class-conditional ({m.classes} classes): give a label")
    t = torch.as_tensor(y, dtype=torch.long).reshape(-1)
    if len(t) == 1:
        t = t.expand(n)
    if len(t) != n or int(t.min()) < 0 or int(t.max()) >= m.classes:
        raise ArcodecError(f"labels must be {n} integers in 0..{m.classes - 1}")
    return t.clone()


def image_batch(m: InferenceModel, image) -> torch.Tensor:
    """(C, H, W), (H, W) or (H, W, C) integer levels -> (1, C, H, W) long, checked."""
    t = image.long() if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image)).long()
    if t.ndim == 2:
        t = t[None]
    elif t.ndim == 3 and t.shape[0] != m.channels and t.shape[-1] == m.channels:
        t = t.permute(2, 0, 1)
    if t.ndim != 3 or t.shape[0] != m.channels:
        raise ArcodecError(f"{m.name} models {m.channels}-channel images, got shape {tuple(t.shape)}")
    if int(t.min()) < 0 or int(t.max()) >= m.levels:
        raise ArcodecError(f"{m.name} models levels 0..{m.levels - 1}, the image has {int(t.min())}..{int(t.max())}")
    return t[None].contiguous()
