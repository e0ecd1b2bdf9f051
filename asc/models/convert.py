"""Published checkpoints -> our models and model bundles.

Reads an asc bundle, a PyTorch Lightning checkpoint (network under the ``model.`` prefix, e.g. the CPJKU DCASE 2023
CP-Mobile), a dict holding a ``state_dict`` (the baseline24 reference), or a plain state dict. Our module names
follow the published code (``in_c.*``, ``stages.s1.b1.block.*``, ``after_block_norm.*``, ``feed_forward.*``), so
only the wrapper prefix is stripped; any other difference is reported key by key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from asc.config import to_dict
from asc.data.layout import TAU_SCENES
from asc.errors import CheckpointError
from asc.models.registry import get_spec, load_state_dict_strict, make_config, save_bundle

LIGHTNING_PREFIX = "model."


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The network's tensors from a checkpoint file, wrapper prefix removed. Only convert files you trust:
    Lightning checkpoints hold pickled training state, so they are loaded with ``weights_only=False``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise CheckpointError(f"{path}: cannot read checkpoint: {e}") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no state dict of tensors found (expected a bundle, a Lightning checkpoint, "
                              "a dict with 'state_dict', or a plain state dict)")
    if any(k.startswith(LIGHTNING_PREFIX) for k in state):
        state = {k[len(LIGHTNING_PREFIX):]: v for k, v in state.items() if k.startswith(LIGHTNING_PREFIX)}
    return dict(state)


def n_classes_of(state_dict: dict[str, torch.Tensor]) -> int | None:
    """Classes of the classifier conv ``feed_forward.0.weight`` [n_classes, C, 1, 1], if present."""
    weight = state_dict.get("feed_forward.0.weight")
    return int(weight.shape[0]) if weight is not None else None


def convert(src: str | Path, model_name: str, overrides: dict[str, Any] | None = None) -> tuple[nn.Module, Any]:
    """Build ``model_name`` (config defaults <- overrides, classes from the checkpoint) and load ``src`` into it."""
    state = read_state_dict(src)
    config = make_config(model_name, overrides, n_classes=n_classes_of(state))
    model = get_spec(model_name).build(config)
    load_state_dict_strict(model, state, f"{src} -> model {model_name}")
    return model.eval(), config


def convert_to_bundle(src: str | Path, model_name: str, out: str | Path, labels: list[str] | None = None,
                      overrides: dict[str, Any] | None = None) -> Path:
    """Write a model bundle of ``src`` loaded into ``model_name``; labels default to the 10 TAU scenes."""
    model, config = convert(src, model_name, overrides)
    labels = list(labels or TAU_SCENES)
    if len(labels) != config.n_classes:
        raise CheckpointError(f"{src}: the checkpoint predicts {config.n_classes} classes but {len(labels)} labels "
                              "were given; pass --labels with one name per class")
    return save_bundle(out, model, model_name, to_dict(config), labels, converted_from=str(src))
