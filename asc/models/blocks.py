"""Building blocks shared by the students: the CP-Mobile network of inverted-bottleneck blocks (with or without
GRN), ``make_divisible``, and the conv-BN(-ReLU) groups that quantization fuses.

Module names follow the published code (``in_c``, ``stages.s1.b1.block.0.0``, ``after_block_norm``,
``feed_forward``), so the DCASE 2024 baseline and the CPJKU 2023 CP-Mobile checkpoints load without renaming.
Every conv is followed by its BatchNorm (and ReLU) as separate submodules of one ``nn.Sequential``; forward
passes have no data-dependent control flow (ONNX export traces them as they are).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from asc.errors import ConfigError


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going more than 10 % below it (MobileNet)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int | tuple[int, int] = 1,
            groups: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv2d (no bias, 'same' padding) -> BatchNorm2d [-> ReLU]: indices 0, 1, 2 as in torchvision."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class GRN(nn.Module):
    """Global response normalisation (ConvNeXt V2) with scalar gamma and beta, both initialised to 0."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(2, 3), keepdim=True)
        nx = gx / (gx.mean(dim=1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class InvertedBottleneck(nn.Module):
    """1x1 expand -> 3x3 depthwise (carries the stride) -> 1x1 project; residual add when in = out (average-pooled
    shortcut when strided), optional GRN, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, expansion_rate: float,
                 stride: tuple[int, int] = (1, 1), grn: bool = False):
        super().__init__()
        exp_channels = make_divisible(in_channels * expansion_rate, 8)
        self.block = nn.Sequential(
            conv_bn(in_channels, exp_channels, kernel_size=1),
            conv_bn(exp_channels, exp_channels, kernel_size=3, stride=stride, groups=exp_channels),
            conv_bn(exp_channels, out_channels, kernel_size=1, relu=False),
        )
        self.use_shortcut = in_channels == out_channels
        if self.use_shortcut and tuple(stride) != (1, 1):
            self.shortcut = nn.AvgPool2d(kernel_size=3, stride=stride, padding=1)
        else:
            self.shortcut = nn.Identity()
        self.after_block_norm = GRN() if grn else nn.Identity()
        self.after_block_activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        if self.use_shortcut:
            y = y + self.shortcut(x)
        return self.after_block_activation(self.after_block_norm(y))


@dataclass
class MobileConfig:
    """A CP-Mobile-style network; defaults are the DCASE 2024 baseline."""

    n_classes: int = 10
    in_channels: int = 1
    base_channels: int = 32
    channels_multiplier: float = 1.8
    expansion_rate: float = 2.1
    n_blocks: tuple[int, ...] = (3, 2, 1)
    strides: dict[str, tuple[int, int]] = field(default_factory=lambda: {"b3": (1, 2), "b4": (2, 1)})
    grn: bool = False  # GRN after every block's residual add (CP-Mobile)

    def __post_init__(self):
        strides = {}
        for name, stride in self.strides.items():
            if len(stride) != 2 or not all(isinstance(s, int) and s >= 1 for s in stride):
                raise ConfigError(f"model config strides.{name}: expected two positive integers, got {stride!r}")
            strides[name] = (int(stride[0]), int(stride[1]))
        self.strides = strides

    def stage_channels(self) -> list[int]:
        """Channels after the stem, then after each stage."""
        base = make_divisible(self.base_channels, 8)
        return [base] + [make_divisible(base * self.channels_multiplier ** i, 8) for i in range(len(self.n_blocks))]


class MobileNetwork(nn.Module):
    """Stem (two conv3x3/s2), stages of inverted-bottleneck blocks (b1, b2, ... numbered across stages; strides
    by block name), 1x1 conv -> BN -> global average pool head."""

    def __init__(self, config: MobileConfig):
        super().__init__()
        self.config = config
        channels = config.stage_channels()
        self.in_c = nn.Sequential(
            conv_bn(config.in_channels, channels[0] // 4, kernel_size=3, stride=2),
            conv_bn(channels[0] // 4, channels[0], kernel_size=3, stride=2),
        )
        self.stages = nn.Sequential()
        block_id = 0
        for stage_id, n_blocks in enumerate(config.n_blocks):
            stage = nn.Sequential()
            in_channels = channels[stage_id]
            for _ in range(n_blocks):
                block_id += 1
                stride = tuple(config.strides.get(f"b{block_id}", (1, 1)))
                stage.add_module(f"b{block_id}", InvertedBottleneck(
                    in_channels, channels[stage_id + 1], config.expansion_rate, stride, grn=config.grn))
                in_channels = channels[stage_id + 1]
            self.stages.add_module(f"s{stage_id + 1}", stage)
        unknown = sorted(set(config.strides) - {f"b{i}" for i in range(1, block_id + 1)})
        if unknown:
            raise ConfigError(f"model config strides: no block(s) {', '.join(unknown)} in a network of {block_id} "
                              f"blocks (names b1..b{block_id})")
        self.feed_forward = nn.Sequential(
            nn.Conv2d(channels[-1], config.n_classes, kernel_size=1, bias=False),
            nn.BatchNorm2d(config.n_classes),
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(self.stages(self.in_c(x))).flatten(1)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan_out) convs, unit BatchNorm (as the published students)."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def fusion_groups(model: nn.Module) -> list[list[str]]:
    """Names of every Conv2d -> BatchNorm2d [-> ReLU] run inside a Sequential, for
    ``torch.ao.quantization.fuse_modules(model.eval(), fusion_groups(model))``."""
    groups = []
    for prefix, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for i, (name, child) in enumerate(children[:-1]):
            if isinstance(child, nn.Conv2d) and isinstance(children[i + 1][1], nn.BatchNorm2d):
                group = [name, children[i + 1][0]]
                if i + 2 < len(children) and isinstance(children[i + 2][1], nn.ReLU):
                    group.append(children[i + 2][0])
                groups.append([f"{prefix}.{n}" if prefix else n for n in group])
    return groups
