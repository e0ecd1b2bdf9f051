"""One model registry: name -> (typed config, builder, front end, role, pretrained sources).

Families register themselves in their own modules (``asc/models/<family>.py``) with :func:`register`;
``build_model("baseline24", {"base_channels": 24}, n_classes=10)`` builds one anywhere in the toolkit.
A *model bundle* (:func:`save_bundle` / :func:`load_bundle`) is the portable checkpoint every command exchanges:
the network's state dict plus everything needed to rebuild it and its front end.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from asc.config import from_dict, to_dict
from asc.errors import CheckpointError, ConfigError
from asc.frontend import MOVED_TO_AUGMENT, build_frontend
from asc.runs import BUNDLE_FORMAT, read_bundle, write_bundle

FAMILY_MODULES = ("baseline24", "cpmobile", "cpresnet", "passt", "efficientat")


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model."""

    name: str
    config_cls: type  # dataclass with an ``n_classes`` field
    build: Callable[[Any], nn.Module]
    frontend: str  # front-end name in asc.frontend
    frontend_config: dict[str, Any] = field(default_factory=dict)  # overrides of the front end's defaults
    augment: dict[str, Any] = field(default_factory=dict)  # training augmentation of its own (asc.augment keys)
    role: str = "student"  # "student" or "teacher"
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)  # preset values on top of config_cls defaults
    pretrained: dict[str, Any] = field(default_factory=dict)  # name -> {"url": ..., "sha256": ...}


_REGISTRY: dict[str, ModelSpec] = {}
_loaded = False


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_families() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in FAMILY_MODULES:
            importlib.import_module(f"asc.models.{module}")


def list_models() -> list[ModelSpec]:
    _load_families()
    return list(_REGISTRY.values())


def get_spec(name: str) -> ModelSpec:
    _load_families()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def make_config(name: str, overrides: dict[str, Any] | None = None, n_classes: int | None = None):
    """The typed config of model ``name``: class defaults <- preset defaults <- overrides (<- n_classes)."""
    spec = get_spec(name)
    data = to_dict(spec.config_cls())
    data.update(spec.defaults)
    data.update(overrides or {})
    if n_classes is not None:
        data["n_classes"] = n_classes
    return from_dict(spec.config_cls, data, where=f"model {name}")


def build_model(name: str, overrides: dict[str, Any] | None = None, n_classes: int | None = None) -> nn.Module:
    spec = get_spec(name)
    return spec.build(make_config(name, overrides, n_classes))


def build_frontend_for(name: str, overrides: dict[str, Any] | None = None) -> nn.Module:
    """The front end model ``name`` expects (with optional overrides of its config)."""
    spec = get_spec(name)
    return build_frontend(spec.frontend, {**spec.frontend_config, **(overrides or {})})


@dataclass
class Bundle:
    """A model ready to run: network, its front end, and what it predicts."""

    model: nn.Module
    frontend: nn.Module
    model_name: str
    model_config: dict[str, Any]
    frontend_name: str
    frontend_config: dict[str, Any]
    labels: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


def bundle_dict(model: nn.Module, model_name: str, model_config: Any, labels: list[str],
                frontend_name: str | None = None, frontend_config: dict[str, Any] | None = None,
                **extra: Any) -> dict[str, Any]:
    """The checkpoint dict of a model bundle (training state may be added beside these keys)."""
    spec = get_spec(model_name)
    cfg = to_dict(model_config) if dataclasses.is_dataclass(model_config) else dict(model_config)
    return {
        "format": BUNDLE_FORMAT,
        "model_name": model_name,
        "model_config": cfg,
        "frontend_name": frontend_name or spec.frontend,
        "frontend_config": dict(spec.frontend_config if frontend_config is None else frontend_config),
        "labels": list(labels),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


def save_bundle(path: str | Path, model: nn.Module, model_name: str, model_config: Any, labels: list[str],
                frontend_name: str | None = None, frontend_config: dict[str, Any] | None = None,
                **extra: Any) -> Path:
    return write_bundle(bundle_dict(model, model_name, model_config, labels, frontend_name, frontend_config, **extra),
                        path)


def load_bundle(path: str | Path, which: str = "model") -> Bundle:
    """Rebuild model and front end from a bundle file or a run folder's checkpoint ``which`` (both in eval mode;
    see :func:`asc.runs.resolve_checkpoint`)."""
    ckpt_path, ckpt = read_bundle(path, which)
    # The bundle's weights replace any pretrained start point: rebuild without fetching it again.
    model_config = {**ckpt["model_config"], **({"pretrained": ""} if "pretrained" in ckpt["model_config"] else {})}
    cfg = from_dict(get_spec(ckpt["model_name"]).config_cls, model_config, where=f"{ckpt_path}:model_config")
    model = get_spec(ckpt["model_name"]).build(cfg)
    load_state_dict_strict(model, ckpt["state_dict"], str(ckpt_path))
    frontend_config = {k: v for k, v in ckpt["frontend_config"].items() if k not in MOVED_TO_AUGMENT}
    frontend = build_frontend(ckpt["frontend_name"], frontend_config)
    known = {"format", "model_name", "model_config", "frontend_name", "frontend_config", "labels", "state_dict"}
    return Bundle(model=model.eval(), frontend=frontend.eval(), model_name=ckpt["model_name"],
                  model_config=ckpt["model_config"], frontend_name=ckpt["frontend_name"],
                  frontend_config=frontend_config, labels=list(ckpt["labels"]),
                  extra={k: v for k, v in ckpt.items() if k not in known})


def load_state_dict_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load with an error that names every missing, unexpected and mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:10]}{' …' if len(missing) > 10 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:10]}{' …' if len(unexpected) > 10 else ''}")
        if shapes:
            parts.append(f"shape mismatches {shapes[:10]}")
        raise CheckpointError(f"{source}: incompatible with {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state_dict)
