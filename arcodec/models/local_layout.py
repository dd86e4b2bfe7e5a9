"""What a coder needs to know of a local photo model without torch: its config and where
each channel's mixture sits in the head's outputs.

:class:`arcodec.models.local.LocalPhotoModel` (the float model, for training) and
:class:`arcodec.codec.engine.LocalEngine` (the integer engine, built from the weights alone)
both read their layout here, so that a photo decodes without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcodec import fixed

# The coder's frequency tables have this many bits of precision; every level keeps at least
# one unit, which is the uniform floor (levels / 2**TABLE_BITS of the mass). The float path
# mixes in the same floor, so training optimises what the coder pays.
TABLE_BITS = 24

SURPRISE_CENTRE = 2.5  # nats: the gains act on u - SURPRISE_CENTRE (a typical channel's code length)
SURPRISE_MAX = 16.0  # nats: u is clamped to [0, SURPRISE_MAX]
HEAD_U_SCALE = 0.25  # the channel heads read code lengths (nats) as (u - SURPRISE_CENTRE) / 4
HEAD_G_MAX = 256.0  # a channel head's unit saturates here (the integer engine's products stay in int64)


@dataclass(frozen=True)
class LocalPhotoConfig:
    channels: int = 3
    levels: int = 256
    hidden: int = 128
    horizon: int = 3  # rows above and columns to either side the window reaches
    blocks: int = 2  # residual blocks of two 1x1 convolutions
    components: int = 10  # logistics in each sub-pixel's mixture
    surprise: bool = False  # channels follow the earlier channels' code lengths (see arcodec.models.local)
    channel_head: int = 0  # units of each later channel's own small head on the earlier channels (0: none)

    def __post_init__(self):
        if self.channels not in (1, 2, 3, 4):
            raise ValueError(f"local-photo codes 1..4 channels, got {self.channels}")
        if not 2 <= self.levels <= fixed.MIXTURE_MAX_LEVELS:
            raise ValueError(f"levels must be 2..{fixed.MIXTURE_MAX_LEVELS}, got {self.levels}")
        if self.horizon < 1 or self.hidden < 1 or self.blocks < 0 or not 1 <= self.components <= 64:
            raise ValueError("local-photo needs horizon >= 1, hidden >= 1, blocks >= 0, components 1..64")
        if self.channel_head < 0 or self.channel_head and self.channels == 1:
            raise ValueError(f"channel_head is the units of the later channels' heads: 0 or more, and 0 for one "
                             f"channel, not {self.channel_head}")


def floor_eps(levels: int) -> float:
    """The uniform floor's share of the mass, as the coder's tables give it."""
    return levels / 2.0**TABLE_BITS


def pairs(channels: int) -> list[tuple[int, int]]:
    """The (channel, earlier channel) pairs the colour coupling and the surprise act on."""
    return [(a, b) for a in range(channels) for b in range(a)]


def n_params(config: LocalPhotoConfig) -> int:
    """The head's outputs per pixel: 3 M per channel, M per pair, then ``channel_head``
    for each channel after the first (its own head's input from the trunk)."""
    c = config.channels
    return config.components * (3 * c + len(pairs(c))) + config.channel_head * (c - 1)


def head_layout(config: LocalPhotoConfig) -> list[dict]:
    """Where channel c's mixture sits in the head's output columns: ``logits``, ``means``
    and ``log_scales`` (start, stop) ranges, and ``coupling``: (start, stop, earlier
    channel) ranges of coefficients whose tanh times that channel's scaled level moves the
    means, and ``head``: the (start, stop) range of the trunk's input to the channel's own
    head (``channel_head`` > 0, channels after the first; None otherwise). The integer
    engine (arcodec.codec.engine) reads the raw parameters by this."""
    m, c, units = config.components, config.channels, config.channel_head
    heads = m * (3 * c + len(pairs(c)))  # where the heads' inputs start
    out = []
    for ch in range(c):
        base = ch * 3 * m
        out.append({"logits": (base, base + m), "means": (base + m, base + 2 * m),
                    "log_scales": (base + 2 * m, base + 3 * m),
                    "coupling": [(c * 3 * m + k * m, c * 3 * m + (k + 1) * m, prev)
                                 for k, (cc, prev) in enumerate(pairs(c)) if cc == ch],
                    "head": (heads + (ch - 1) * units, heads + ch * units) if units and ch else None})
    return out
