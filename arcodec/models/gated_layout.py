"""What a coder needs to know of a Gated PixelCNN without torch: its config and the shape of
every convolution (kernel, dilation, causal padding).

:class:`arcodec.models.pixelcnn.GatedPixelCNN` (the float model) builds its layers from
these shapes, and :mod:`arcodec.codec.gated` builds its integer engine from them and the
weights file alone, so that a digit decodes without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GatedPixelCNNConfig:
    channels: int = 1  # sub-pixels per pixel (1: grayscale)
    levels: int = 256  # K intensity levels per sub-pixel
    hidden: int = 32  # feature maps of each stack
    layers: int = 8  # gated layers, the first one included
    first_kernel: int = 7
    kernel: int = 3
    head: int = 128  # width of the 1x1 output network
    dilation: str = "1"  # dilations of layers 2, 3, ... cycling through a list: "1,2,4,8" (the first: 1)
    classes: int = 0  # > 0: class-conditional, every gated layer adds V y (y one-hot) before its gate
    causal: bool = True  # False: the first horizontal layer sees the pixel itself; study only

    def __post_init__(self):
        if self.channels != 1:
            raise ValueError("gated-pixelcnn models one channel; code colour channel by channel")
        if self.layers < 1 or self.kernel % 2 == 0 or self.first_kernel % 2 == 0:
            raise ValueError("layers >= 1 and odd kernel sizes are required")
        if self.classes < 0:
            raise ValueError("classes >= 0 is required")
        d = self.dilation
        text = ",".join(str(v) for v in d) if isinstance(d, (tuple, list)) else str(d)
        try:
            ok = all(int(v) >= 1 for v in text.split(","))
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"dilation must list integers >= 1 separated by commas (e.g. '1,2,4'), got {d!r}")
        object.__setattr__(self, "dilation", ",".join(str(int(v)) for v in text.split(",")))

    def dilations(self) -> tuple[int, ...]:
        """The dilation of every layer: 1 for the first, then the cycle of ``dilation``."""
        cycle = [int(v) for v in self.dilation.split(",")]
        return tuple(1 if i == 0 else cycle[(i - 1) % len(cycle)] for i in range(self.layers))


def causal_pad(kind: str, kernel: tuple[int, int], shift: bool = False, dilation: int = 1
               ) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding of a causal convolution (negative crops), so that
    output (i, j) sees only its causal neighbourhood (:class:`arcodec.models.layers.CausalConv2d`):

    * ``"down"``: rows i-kh+1..i (``shift``: i-kh..i-1), columns j-kw//2..j+kw//2;
    * ``"right"``: columns j-kw+1..j (``shift``: j-kw..j-1);
    * ``"point"``: a 1x1 convolution.

    Offsets are times the dilation."""
    kh, kw = kernel
    d = dilation
    if kind == "down":
        side = (kw // 2) * d
        return side, side, (kh - 1) * d + (1 if shift else 0), -1 if shift else 0
    if kind == "right":
        return (kw - 1) * d + (1 if shift else 0), -1 if shift else 0, 0, 0
    if kind == "point":
        return 0, 0, 0, 0
    raise ValueError(f"unknown causal conv kind {kind!r}")


@dataclass(frozen=True)
class ConvShape:
    """A causal convolution's shape: input channels, output channels, kernel (kh, kw), kind,
    shift and dilation, and its padding (:func:`causal_pad`)."""

    cin: int
    cout: int
    kernel: tuple[int, int]
    kind: str
    shift: bool = False
    dilation: int = 1

    @property
    def pad(self) -> tuple[int, int, int, int]:
        return causal_pad(self.kind, self.kernel, self.shift, self.dilation)


@dataclass(frozen=True)
class LayerShape:
    """One gated layer: the vertical and horizontal convolutions (2f outputs each)."""

    first: bool
    v: ConvShape
    h: ConvShape


def layer_shape(cin: int, f: int, k: int, first: bool, dilation: int = 1, causal: bool = True) -> LayerShape:
    """The first layer is strictly causal (mask A: rows above, pixels to the left) unless
    ``causal`` is False (its horizontal convolution then sees the pixel itself)."""
    if first:
        v = ConvShape(cin, 2 * f, (k // 2, k), "down", True, dilation)
        h = (ConvShape(cin, 2 * f, (1, k // 2), "right", True, dilation) if causal
             else ConvShape(cin, 2 * f, (1, k // 2 + 1), "right", False, dilation))
    else:
        v = ConvShape(f, 2 * f, (k // 2 + 1, k), "down", False, dilation)
        h = ConvShape(f, 2 * f, (1, k // 2 + 1), "right", False, dilation)
    return LayerShape(first, v, h)


def receptive_field(config: GatedPixelCNNConfig) -> tuple[int, int]:
    """(rows above, columns to either side) that a pixel's distribution can depend on."""
    c = config
    reach = c.first_kernel // 2 + sum((c.kernel // 2) * d for d in c.dilations()[1:])
    return reach, reach


def layer_shapes(config: GatedPixelCNNConfig) -> list[LayerShape]:
    """Every layer's shapes, first to last."""
    c = config
    return [layer_shape(c.channels if i == 0 else c.hidden, c.hidden, c.first_kernel if i == 0 else c.kernel,
                        i == 0, d, c.causal) for i, d in enumerate(c.dilations())]
