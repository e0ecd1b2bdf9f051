"""The DCASE 2024/2025 Task 1 baseline: a simplified CP-Mobile (no GRN), 61,148 parameters, 29,419,156 MACs on
its front end's [1, 1, 256, 65] input; trained fp32, inferred fp16 (122,296 bytes)."""

from __future__ import annotations

from dataclasses import dataclass

from asc.models.blocks import MobileConfig, MobileNetwork
from asc.models.registry import ModelSpec, register


@dataclass
class Baseline24Config(MobileConfig):
    """channels 32, 32, 56, 104 (multiplier 1.8), expansion 2.1, blocks (3, 2, 1), strides b3 (1, 2), b4 (2, 1)."""


def build(config: Baseline24Config) -> MobileNetwork:
    return MobileNetwork(config)


register(ModelSpec(
    name="baseline24", config_cls=Baseline24Config, build=build, frontend="baseline24",
    description="DCASE 2024/2025 baseline (CP-Mobile without GRN); fits the 2024 budget in fp16",
))
