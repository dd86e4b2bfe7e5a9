"""What a coder needs to know of a PixelCNN or a PixelCNN-MADE without torch: their configs
and their receptive fields.

:mod:`arcodec.models.pixelcnn` and :mod:`arcodec.models.pixelcnn_made` (the float models)
take their configs from here, and :mod:`arcodec.codec.pixelcnn_step` builds its compiled
decoder from them and the weights file alone, so that a shipped PixelCNN-MADE decodes
without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcodec.fixed import MIXTURE_MAX_COMPONENTS


def check_common(channels: int, levels: int, kernels: tuple[int, ...]) -> None:
    """The checks every PixelCNN-style config makes (a ValueError): at least one channel,
    two levels or more, odd kernel sizes."""
    if channels < 1 or levels < 2:
        raise ValueError("channels >= 1 and levels >= 2 are required")
    if any(k < 1 or k % 2 == 0 for k in kernels):
        raise ValueError(f"odd kernel sizes are required, got {kernels}")


@dataclass(frozen=True)
class PixelCNNConfig:
    channels: int = 1  # sub-pixels per pixel; C > 1 uses the colour masks (R before G before B)
    levels: int = 256  # K intensity levels per sub-pixel
    hidden: int = 128  # feature maps between the blocks (2h in the paper; h inside a block)
    blocks: int = 12  # residual blocks
    first_kernel: int = 7  # the type-A layer
    kernel: int = 3  # the middle layer of each block
    head: int = 256  # width of the 1x1 output network (1024 in the paper)
    norm: bool = False  # layer normalisation (per pixel and colour group) at each block's input
    causal: bool = True  # False: the first layer is type B (sees the pixel itself); study only
    mixture: int = 0  # 0: K categorical logits per sub-pixel; M > 0: a discretized logistic mixture of M

    def __post_init__(self):
        check_common(self.channels, self.levels, (self.first_kernel, self.kernel))
        c = self.channels
        if not 0 <= self.mixture <= MIXTURE_MAX_COMPONENTS:
            raise ValueError(f"mixture must be 0 (categorical) to {MIXTURE_MAX_COMPONENTS} components, "
                             f"got {self.mixture}")
        if self.blocks < 0 or self.hidden < 2 * c or self.hidden % (2 * c) or self.head < c or self.head % c:
            raise ValueError(f"pixelcnn needs blocks >= 0, hidden a multiple of 2 * channels ({2 * c}) "
                             f"and head a multiple of channels ({c})")


@dataclass(frozen=True)
class PixelCNNMADEConfig:
    channels: int = 3  # sub-pixels per pixel: the MADE's variables, in order (R, G, B)
    levels: int = 256  # K intensity levels per sub-pixel
    hidden: int = 96  # feature maps of the PixelCNN (halved inside a block)
    blocks: int = 6  # residual blocks of 1x1 / kxk / 1x1 type-B masked convolutions
    first_kernel: int = 7  # the type-A layer
    kernel: int = 3  # the middle layer of each block
    features: int = 64  # phi_i: context features per pixel, fed to the MADE
    made_hidden: int = 128  # width of each MADE hidden layer
    made_layers: int = 1  # MADE hidden layers
    norm: bool = False  # layer normalisation (per pixel) at each block's input
    causal: bool = True  # False: the first layer is type B (phi_i sees pixel i); study only

    def __post_init__(self):
        check_common(self.channels, self.levels, (self.first_kernel, self.kernel))
        if self.blocks < 0 or self.hidden < 2 or self.hidden % 2 or self.features < 1:
            raise ValueError("pixelcnn-made needs blocks >= 0, an even hidden >= 2 and features >= 1")
        if self.made_hidden < 1 or self.made_layers < 1:
            raise ValueError("pixelcnn-made needs made_hidden >= 1 and made_layers >= 1")


def receptive_field(config) -> tuple[int, int]:
    """(rows above, columns to either side) that a pixel's distribution can depend on, for a
    PixelCNN or a PixelCNN-MADE config (the first layer's reach and every block's)."""
    reach = config.first_kernel // 2 + config.blocks * (config.kernel // 2)
    return reach, reach
