"""Architectures: tensors in, logits out. Importing this package registers them."""

from arcodec.models.pixelcnn import (GatedPixelCNN, GatedPixelCNNConfig, PixelCNN, PixelCNNConfig, StackPixelCNN,
                                     StackPixelCNNConfig)
from arcodec.models.pixelcnn_made import PixelCNNMADE, PixelCNNMADEConfig
from arcodec.models import toy  # noqa: F401  (registers histogram, ar-mlp-2d, made-2d)

__all__ = ["GatedPixelCNN", "GatedPixelCNNConfig", "PixelCNN", "PixelCNNConfig", "PixelCNNMADE",
           "PixelCNNMADEConfig", "StackPixelCNN", "StackPixelCNNConfig"]
