"""CP-ResNet (CPJKU): a receptive-field-regularised ResNet, the CNN teacher of the DCASE 2023 system.

``rho`` sets the receptive field by switching 3x3 convolutions to 1x1 from a fixed position on (larger rho:
more 3x3 kernels). The DCASE 2023 teacher (rho 8, widths 32/64/92, blocks (2, 1, 1), stage-2 groups 2) has
127,684 parameters and 28,840,396 MACs on its front end's [1, 1, 256, 43] input (``cpjku23`` with hop 750).
Module names follow the published code (``in_c``, ``stage1.block1.conv1``, ``feed_forward``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from asc.errors import ConfigError
from asc.models.registry import ModelSpec, register


@dataclass
class CPResNetConfig:
    n_classes: int = 10
    in_channels: int = 1
    rho: int = 8
    widths: tuple[int, int, int] = (32, 64, 92)  # channels of stages 1, 2, 3
    n_blocks: tuple[int, int, int] = (2, 1, 1)
    groups: tuple[int, int, int] = (1, 2, 1)  # grouped convolutions per stage
    maxpool_stage1: tuple[int, ...] = (0, 1, 2, 4)  # max-pool before block 0 / after block k of stage 1
    first_pool: tuple[int, int] = (2, 2)  # kernel = stride of the pool before the first block
    pool: tuple[int, int] = (2, 1)  # kernel = stride of the other pools (frequency only)


def kernel_sizes(rho: int) -> list[list[tuple[int, int]]]:
    """(k1, k2) of the first two blocks of each stage for receptive-field parameter ``rho`` (later blocks: 1x1)."""
    e = rho - 4
    return [
        [(3, 1), (3 - 2 * (-e > 2), 3 - 2 * (-e > 1))],
        [(3 - 2 * (-e > 0), 1 + 2 * (e > 0)), (1 + 2 * (e > 1), 1 + 2 * (e > 2))],
        [(1 + 2 * (e > 3), 1 + 2 * (e > 4)), (1 + 2 * (e > 5), 1 + 2 * (e > 6))],
    ]


class BasicBlock(nn.Module):
    """conv k1 -> BN -> ReLU -> conv k2 -> BN, plus the (1x1 conv + BN when widths differ) shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, k1: int, k2: int, groups: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, k1, padding=k1 // 3, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, k2, padding=k2 // 3, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if in_channels != out_channels:
            self.shortcut.add_module("conv", nn.Conv2d(in_channels, out_channels, 1, groups=groups, bias=False))
            self.shortcut.add_module("bn", nn.BatchNorm2d(out_channels))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


class CPResNet(nn.Module):
    def __init__(self, config: CPResNetConfig):
        super().__init__()
        self.config = config
        if config.rho < 0:
            raise ConfigError(f"model cpresnet: rho must be >= 0, got {config.rho}")
        widths, kernels = list(config.widths), kernel_sizes(config.rho)
        for s, (width, groups) in enumerate(zip(widths, config.groups)):
            if width % groups or (s > 0 and widths[s - 1] % groups):
                raise ConfigError(f"model cpresnet: groups[{s}] = {groups} must divide the stage's input and output "
                                  f"widths ({widths[max(s - 1, 0)]}, {width})")
        self.in_c = nn.Sequential(
            nn.Conv2d(config.in_channels, widths[0], kernel_size=5, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        in_channels = widths[0]
        for s in range(3):
            stage = nn.Sequential()
            pools = config.maxpool_stage1 if s == 0 else ()
            if 0 in pools:
                stage.add_module("maxpool0_0", nn.MaxPool2d(config.first_pool, config.first_pool))
            for b in range(config.n_blocks[s]):
                k1, k2 = kernels[s][b] if b < 2 else (1, 1)
                stage.add_module(f"block{b + 1}", BasicBlock(in_channels, widths[s], k1, k2, config.groups[s]))
                in_channels = widths[s]
                for i, pos in enumerate(pools):
                    if pos == b + 1:
                        stage.add_module(f"maxpool{b + 1}_{i}", nn.MaxPool2d(config.pool, config.pool))
            self.add_module(f"stage{s + 1}", stage)
        self.feed_forward = nn.Sequential(
            nn.Conv2d(in_channels, config.n_classes, kernel_size=1, bias=False),
            nn.BatchNorm2d(config.n_classes),
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        self._init_fixup()

    def _init_fixup(self) -> None:
        """Kaiming (fan_in) convs, zero classifier, Fixup-scaled residual branches (second conv zero)."""
        blocks = [m for m in self.modules() if isinstance(m, BasicBlock)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.feed_forward[0].weight)
        for b in blocks:
            n = b.conv1.kernel_size[0] * b.conv1.kernel_size[1] * b.conv1.out_channels
            nn.init.normal_(b.conv1.weight, 0.0, len(blocks) ** -0.5 * math.sqrt(2.0 / n))
            nn.init.zeros_(b.conv2.weight)
            if len(b.shortcut):
                n = b.shortcut.conv.out_channels
                nn.init.normal_(b.shortcut.conv.weight, 0.0, math.sqrt(2.0 / n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.in_c(x))))
        return self.feed_forward(x).flatten(1)


register(ModelSpec(
    name="cpresnet", config_cls=CPResNetConfig, build=CPResNet, frontend="cpjku23",
    frontend_config={"hop_length": 750}, role="teacher",
    description="CP-ResNet teacher (DCASE23, rho 8, receptive-field regularised); cpjku23 front end at hop 750",
))
