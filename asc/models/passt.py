"""PaSST teacher (Koutini et al., Interspeech 2022): a ViT on 128-band log-mels with structured patchout.

The network is the author's (``hear21passt``, the optional extra ``dcase-asc[passt]``), so parameter names are those of
the official checkpoints (``patch_embed.proj``, ``cls_token``, ``dist_token``, ``new_pos_embed``,
``freq_new_pos_embed``, ``time_new_pos_embed``, ``blocks.N.…``, ``norm``, ``head.0`` (LayerNorm), ``head.1``,
``head_dist``). Our forward returns logits only and is silent (the package prints debug shapes otherwise).

The default is PaSST-S (768 wide, 12 layers, 12 heads, patch 16, stride 10) whose positional encoding covers 10-s
inputs (998 frames); shorter inputs such as 1-s clips (100 frames) use its first part, as in the CPJKU DCASE 2023
teacher. ``pretrained = "passt_s_swa_p16_128_ap476"`` starts from the AudioSet weights with a new head.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import nn

from asc.errors import ConfigError, MissingDependencyError
from asc.models.pretrained import load_pretrained, sources_for
from asc.models.registry import ModelSpec, register


@dataclass
class PaSSTConfig:
    n_classes: int = 10
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    fstride: int = 10
    tstride: int = 10
    input_fdim: int = 128  # mel bands of the input
    input_tdim: int = 998  # frames covered by the time positional encoding (longer inputs are an error)
    s_patchout_f: int = 6  # train: frequency rows of patches dropped per batch
    s_patchout_t: int = 0  # train: time columns of patches dropped per batch
    u_patchout: int = 0  # train: single patches dropped per batch
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    pretrained: str = ""  # name in pretrained_sources.toml, URL or file; "" = random init


def _import_hear21passt() -> ModuleType:
    try:
        from hear21passt.models import passt
    except ImportError as e:
        raise MissingDependencyError(
            f"model passt needs the optional package hear21passt ({e}); install it with: pip install \"dcase-asc[passt]\""
        ) from None
    return passt


@functools.cache
def _model_class(hp: ModuleType) -> type:
    class PaSST(hp.PaSST):
        """hear21passt's PaSST: input [B, 1, F, T] log-mels -> logits [B, n_classes]."""

        head_prefixes = ("head.1", "head_dist")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n_mels, n_frames = self.patch_embed.img_size
            if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != n_mels:
                raise ValueError(f"PaSST expects input [B, 1, {n_mels}, T], got {list(x.shape)}")
            if x.shape[3] > n_frames:
                raise ValueError(f"PaSST input has {x.shape[3]} frames; its positional encoding covers {n_frames} "
                                 "(raise input_tdim)")
            hp.first_RUN = False  # the package prints debug shapes while this module global is True
            with warnings.catch_warnings():  # the patch embedding warns whenever T differs from input_tdim
                warnings.filterwarnings("ignore", message="Input image size", category=UserWarning)
                logits, _ = super().forward(x)
            return logits

        def adapt_pretrained(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            """Cut a longer time positional encoding to this model's length (what forward does anyway)."""
            key = "time_new_pos_embed"
            own = self.time_new_pos_embed.shape[-1]
            if key in state and state[key].dim() == 4 and state[key].shape[-1] > own:
                state = {**state, key: state[key][..., :own]}
            return state

    return PaSST


def build_passt(cfg: PaSSTConfig) -> nn.Module:
    if cfg.embed_dim % cfg.num_heads:
        raise ConfigError(f"model passt: embed_dim {cfg.embed_dim} is not divisible by num_heads {cfg.num_heads}")
    f_patches = (cfg.input_fdim - cfg.patch_size) // cfg.fstride + 1
    t_patches = (cfg.input_tdim - cfg.patch_size) // cfg.tstride + 1
    if f_patches < 1 or t_patches < 1:
        raise ConfigError(f"model passt: input {cfg.input_fdim}x{cfg.input_tdim} is smaller than one patch "
                          f"({cfg.patch_size})")
    if cfg.s_patchout_f >= f_patches:
        raise ConfigError(f"model passt: s_patchout_f {cfg.s_patchout_f} must be below the {f_patches} "
                          "frequency rows of patches")
    model = _model_class(_import_hear21passt())(
        u_patchout=cfg.u_patchout, s_patchout_t=cfg.s_patchout_t, s_patchout_f=cfg.s_patchout_f,
        img_size=(cfg.input_fdim, cfg.input_tdim), patch_size=cfg.patch_size, stride=(cfg.fstride, cfg.tstride),
        in_chans=1, num_classes=cfg.n_classes, embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio, qkv_bias=True, distilled=True, drop_rate=cfg.drop_rate,
        attn_drop_rate=cfg.attn_drop_rate, drop_path_rate=cfg.drop_path_rate)
    # The distillation head is in the checkpoints but unused by forward: frozen, so DDP and optimizers skip it.
    model.head_dist.requires_grad_(False)
    if cfg.pretrained:
        load_pretrained(model, cfg.pretrained)
    return model


register(ModelSpec(
    name="passt",
    config_cls=PaSSTConfig,
    build=build_passt,
    frontend="passt",
    role="teacher",
    description="PaSST-S transformer teacher with patchout (hear21passt; pip install \"dcase-asc[passt]\")",
    pretrained=sources_for("passt"),
))
