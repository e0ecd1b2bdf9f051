"""CP-Mobile (CPJKU, DCASE 2023): inverted-bottleneck blocks with GRN after every residual add.

Scaling knobs: ``base_channels``, ``channels_multiplier``, ``expansion_rate`` (plus block counts and strides).
The published network (126,952 parameters, 28,893,268 MACs on its front end's [1, 1, 256, 64] input) fits the
2024 budget (128,000 bytes, 30 M MACs) only in INT8; ``cpmobile_s`` fits in fp16, ``cpmobile_xs`` in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asc.models.blocks import MobileConfig, MobileNetwork
from asc.models.registry import ModelSpec, register


@dataclass
class CPMobileConfig(MobileConfig):
    """channels 32, 32, 72, 168 (multiplier 2.3), expansion 3, blocks (3, 2, 1), strides b2 (2, 2), b4 (2, 1)."""

    channels_multiplier: float = 2.3
    expansion_rate: float = 3.0
    strides: dict[str, tuple[int, int]] = field(default_factory=lambda: {"b2": (2, 2), "b4": (2, 1)})
    grn: bool = True


def build(config: CPMobileConfig) -> MobileNetwork:
    return MobileNetwork(config)


register(ModelSpec(
    name="cpmobile", config_cls=CPMobileConfig, build=build, frontend="cpjku23",
    description="CP-Mobile with GRN as published (DCASE23); fits the 2024 budget only in int8 (126,952 bytes)",
))
register(ModelSpec(
    name="cpmobile_s", config_cls=CPMobileConfig, build=build, frontend="cpjku23",
    defaults={"channels_multiplier": 1.8, "expansion_rate": 2.1, "strides": {"b3": [1, 2], "b4": [2, 1]}},
    description="CP-Mobile at baseline24 width with GRN; fits the 2024 budget in fp16 (122,320 bytes)",
))
register(ModelSpec(
    name="cpmobile_xs", config_cls=CPMobileConfig, build=build, frontend="cpjku23",
    defaults={"base_channels": 24, "channels_multiplier": 1.6, "expansion_rate": 2.0,
              "strides": {"b3": [1, 2], "b4": [2, 1]}},
    description="narrow CP-Mobile with GRN; fits the 2024 budget in fp32 (127,176 bytes)",
))
