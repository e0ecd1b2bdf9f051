"""EfficientAT MobileNetV3 teachers (Schmid et al., ICASSP 2023): AudioSet-pretrained CNNs, ``mn01`` … ``mn40``.

Module names follow the published code (``features.N.block.K.…``, ``conc_se_layers.0.fc1``, ``classifier.5``), so
the official checkpoints load without renaming (``pretrained = "mn10_as"``; a head for another number of classes
is initialised afresh). The width multiplier names the model: mn10 = width 1.0 (4.88 M parameters with the
527-class AudioSet head). Squeeze-and-excitation is the published default (channel-wise, reduction 4); the
frequency/time variants and the other heads of the original code are not implemented.
The input is the AudioSet front end of EfficientAT: 128 mels, n_fft 1024, win 800, hop 320 at 32 kHz, mel range
0–15 kHz (``passt`` front end with f_max 15,000 and its wider fmin/fmax jitter).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from asc.errors import ConfigError
from asc.models.blocks import make_divisible
from asc.models.pretrained import load_pretrained, sources_for
from asc.models.registry import ModelSpec, register

WIDTHS = {"mn01": 0.1, "mn02": 0.2, "mn04": 0.4, "mn05": 0.5, "mn10": 1.0, "mn20": 2.0, "mn30": 3.0, "mn40": 4.0}

# MobileNetV3-Large: (in, kernel, expanded, out, squeeze-excitation, hard-swish, stride index or None)
# "stride index" points into MNConfig.strides (the four down-sampling blocks C1..C4).
_LAYOUT = (
    (16, 3, 16, 16, False, False, None),
    (16, 3, 64, 24, False, False, 0),
    (24, 3, 72, 24, False, False, None),
    (24, 5, 72, 40, True, False, 1),
    (40, 5, 120, 40, True, False, None),
    (40, 5, 120, 40, True, False, None),
    (40, 3, 240, 80, False, True, 2),
    (80, 3, 200, 80, False, True, None),
    (80, 3, 184, 80, False, True, None),
    (80, 3, 184, 80, False, True, None),
    (80, 3, 480, 112, True, True, None),
    (112, 3, 672, 112, True, True, None),
    (112, 5, 672, 160, True, True, 3),
    (160, 5, 960, 160, True, True, None),
    (160, 5, 960, 160, True, True, None),
)


@dataclass
class MNConfig:
    n_classes: int = 10
    width_mult: float = 1.0
    strides: tuple[int, int, int, int] = (2, 2, 2, 2)  # of the blocks C1..C4 (1 keeps more resolution)
    reduced_tail: bool = False  # halve the channels of the last stage
    dilated: bool = False  # last stage: dilation 2 instead of stride
    se_reduction: int = 4
    dropout: float = 0.2
    pretrained: str = ""  # name in pretrained_sources.toml, URL or file; "" = random init


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                groups: int = 1, activation: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    """Conv2d (no bias, 'same' padding) -> BatchNorm2d (eps 1e-3, momentum 0.01) [-> activation]."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2 * dilation,
                  dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels, eps=0.001, momentum=0.01),
    ]
    if activation is not None:
        layers.append(activation())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Channel gates from the (F, T) mean: Linear -> ReLU -> Linear -> sigmoid."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, channels)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(x.mean((2, 3))))))
        return x * scale[:, :, None, None]


class ConcurrentSE(nn.Module):
    """The published SE container (``conc_se_layers``), here with the one channel-wise excitation it uses."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.conc_se_layers = nn.ModuleList([SqueezeExcitation(channels, make_divisible(channels // reduction, 8))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conc_se_layers[0](x)


class InvertedResidual(nn.Module):
    """[1x1 expand] -> kxk depthwise (stride or dilation) -> [SE] -> 1x1 project; residual when shapes agree."""

    def __init__(self, in_channels: int, kernel: int, expanded: int, out_channels: int, use_se: bool,
                 activation: type[nn.Module], stride: int, dilation: int, se_reduction: int):
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(conv_bn_act(in_channels, expanded, 1, activation=activation))
        layers.append(conv_bn_act(expanded, expanded, kernel, stride=1 if dilation > 1 else stride,
                                  dilation=dilation, groups=expanded, activation=activation))
        if use_se:
            layers.append(ConcurrentSE(expanded, se_reduction))
        layers.append(conv_bn_act(expanded, out_channels, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MN(nn.Module):
    """EfficientAT MobileNetV3: [B, 1, F, T] log-mels -> logits [B, n_classes] (MLP head on the mean feature)."""

    head_prefixes = ("classifier.5",)

    def __init__(self, cfg: MNConfig):
        super().__init__()
        if cfg.width_mult <= 0 or cfg.se_reduction < 1 or any(s not in (1, 2) for s in cfg.strides):
            raise ConfigError(f"model mn: width_mult must be > 0, se_reduction >= 1 and strides 1 or 2; got "
                              f"{cfg.width_mult}, {cfg.se_reduction}, {list(cfg.strides)}")

        def ch(c: int) -> int:
            return make_divisible(c * cfg.width_mult, 8)

        divider = 2 if cfg.reduced_tail else 1
        layers: list[nn.Module] = [conv_bn_act(1, ch(16), 3, stride=2, activation=nn.Hardswish)]
        for i, (cin, k, exp, cout, se, hs, stride_at) in enumerate(_LAYOUT):
            last_stage = i >= len(_LAYOUT) - 3  # C4 and the two blocks after it
            if last_stage:
                cout //= divider
                if i > len(_LAYOUT) - 3:
                    cin, exp = cin // divider, exp // divider
            layers.append(InvertedResidual(
                ch(cin), k, ch(exp), ch(cout), se, nn.Hardswish if hs else nn.ReLU,
                stride=1 if stride_at is None else cfg.strides[stride_at],
                dilation=2 if cfg.dilated and last_stage else 1, se_reduction=cfg.se_reduction))
        last_in = ch(_LAYOUT[-1][3] // divider)
        layers.append(conv_bn_act(last_in, 6 * last_in, 1, activation=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        hidden = ch(1280 // divider)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(6 * last_in, hidden),
            nn.Hardswish(),
            nn.Dropout(cfg.dropout),
            nn.Linear(hidden, cfg.n_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_mn(cfg: MNConfig) -> nn.Module:
    model = MN(cfg)
    if cfg.pretrained:
        load_pretrained(model, cfg.pretrained)
    return model


for _name, _width in WIDTHS.items():
    register(ModelSpec(
        name=_name,
        config_cls=MNConfig,
        build=build_mn,
        frontend="passt",
        frontend_config={"f_max": 15000.0},
        augment={"fmin_aug_range": 10, "fmax_aug_range": 2000},
        role="teacher",
        description=f"EfficientAT MobileNetV3 teacher, width {_width} (AudioSet weights: pretrained=\"{_name}_as\")",
        defaults={"width_mult": _width},
        pretrained=sources_for(_name),
    ))
