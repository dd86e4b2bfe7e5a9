"""Architectures: tensors in, logits out.

:func:`arcodec.registry` imports :data:`MODULES` to register them. The classes below are
imported on first use, so that the torch-free parts (:mod:`arcodec.models.local_layout`)
can be read without torch."""

from importlib import import_module

MODULES = ("arcodec.models.pixelcnn", "arcodec.models.pixelcnn_made",
           "arcodec.models.toy",  # histogram, ar-mlp-2d, made-2d
           "arcodec.models.classic",  # fvsbn, nade, made, row-lstm
           "arcodec.models.conditioned", "arcodec.models.quantile",  # gray-pixelcnn-made, quantile-pixelcnn
           "arcodec.models.flows",  # coupling-flow, idf
           "arcodec.models.local")  # local-photo

_CLASSES = {"GatedPixelCNN": "pixelcnn", "GatedPixelCNNConfig": "pixelcnn", "PixelCNN": "pixelcnn",
            "PixelCNNConfig": "pixelcnn", "StackPixelCNN": "pixelcnn", "StackPixelCNNConfig": "pixelcnn",
            "PixelCNNMADE": "pixelcnn_made", "PixelCNNMADEConfig": "pixelcnn_made"}

__all__ = sorted(_CLASSES)


def __getattr__(name: str):
    if name in _CLASSES:
        return getattr(import_module(f"arcodec.models.{_CLASSES[name]}"), name)
    raise AttributeError(f"module 'arcodec.models' has no attribute {name!r}")
