"""Architectures: tensors in, logits out. Importing this package registers them."""

from arcodec.models.pixelcnn import (GatedPixelCNN, GatedPixelCNNConfig, PixelCNN, PixelCNNConfig, StackPixelCNN,
                                     StackPixelCNNConfig)
from arcodec.models.pixelcnn_made import PixelCNNMADE, PixelCNNMADEConfig
from arcodec.models import toy  # noqa: F401  (registers histogram, ar-mlp-2d, made-2d)
from arcodec.models import classic  # noqa: F401  (registers fvsbn, nade, made, row-lstm)
from arcodec.models import conditioned, quantile  # noqa: F401  (gray-pixelcnn-made, quantile-pixelcnn)
from arcodec.models import flows  # noqa: F401  (registers coupling-flow, idf)
from arcodec.models import local  # noqa: F401  (registers local-photo)

__all__ = ["GatedPixelCNN", "GatedPixelCNNConfig", "PixelCNN", "PixelCNNConfig", "PixelCNNMADE",
           "PixelCNNMADEConfig", "StackPixelCNN", "StackPixelCNNConfig"]
