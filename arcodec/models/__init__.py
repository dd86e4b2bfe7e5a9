"""Architectures: tensors in, logits out. Importing this package registers them."""

from arcodec.models.pixelcnn import GatedPixelCNN, GatedPixelCNNConfig

__all__ = ["GatedPixelCNN", "GatedPixelCNNConfig"]
