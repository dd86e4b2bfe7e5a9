"""Architectures: tensors in, logits out. Importing this package registers them."""

from arcodec.models.pixelcnn import (GatedPixelCNN, GatedPixelCNNConfig, PixelCNN, PixelCNNConfig, StackPixelCNN,
                                     StackPixelCNNConfig)
from arcodec.models import toy  # noqa: F401  (registers histogram, ar-mlp-2d, made-2d)

__all__ = ["GatedPixelCNN", "GatedPixelCNNConfig", "PixelCNN", "PixelCNNConfig", "StackPixelCNN",
           "StackPixelCNNConfig"]
