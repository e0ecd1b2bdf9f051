"""What a network is made of, as far as counting goes: quantized (packed INT8), quantization-prepared (observers,
fake quantization, QAT modules), pruned, parametrized or reduced-precision modules, and a deep copy that survives
pruning and old-style weight norm."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.ao.nn.quantized as nnq
from torch import nn
from torch.ao.nn.quantized.modules.conv import _ConvNd as QConvNd
from torch.ao.nn.quantized.modules.utils import WeightedQuantizedModule
from torch.ao.quantization import FakeQuantizeBase, ObserverBase
from torch.nn.utils import parametrize, prune
from torch.nn.utils.weight_norm import WeightNorm

OBSERVER_TYPES = (FakeQuantizeBase, ObserverBase)


def is_quantized_module(module: nn.Module) -> bool:
    return type(module).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")) and \
        ".reference" not in type(module).__module__


def is_qat_module(module: nn.Module) -> bool:
    return type(module).__module__.startswith(("torch.ao.nn.qat", "torch.ao.nn.intrinsic.qat")) and \
        hasattr(module, "to_float")


def packed_weight_bias(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight, bias) of a quantized module whose weights are packed outside ``parameters()``."""
    if not isinstance(module, WeightedQuantizedModule) or not callable(getattr(module, "weight", None)):
        return None
    weight = module.weight()
    bias = module.bias() if callable(getattr(module, "bias", None)) else None
    return weight, bias


def is_conv(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.conv._ConvNd, QConvNd))


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, nnq.Linear))


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))


def pruned_names(module: nn.Module) -> list[str]:
    return [h._tensor_name for h in module._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]


def old_weight_norm_names(module: nn.Module) -> list[str]:
    return [h.name for h in module._forward_pre_hooks.values() if isinstance(h, WeightNorm)]


@dataclass
class Traits:
    quantized: bool = False  # packed INT8 weights (converted model)
    prepared: bool = False  # observers / fake quantization / QAT modules
    pruned: bool = False
    parametrized: bool = False
    old_weight_norm: bool = False
    reduced_float: set[str] = field(default_factory=set)  # float dtypes other than float32

    @property
    def any(self) -> bool:
        return self.quantized or self.prepared or self.pruned or self.parametrized or self.old_weight_norm or \
            bool(self.reduced_float)


def traits(model: nn.Module) -> Traits:
    t = Traits()
    for module in model.modules():
        t.quantized |= is_quantized_module(module)
        t.prepared |= is_qat_module(module) or isinstance(module, OBSERVER_TYPES)
        t.pruned |= bool(pruned_names(module))
        t.parametrized |= parametrize.is_parametrized(module)
        t.old_weight_norm |= bool(old_weight_norm_names(module))
    t.reduced_float = {dtype_name(p.dtype) for p in model.parameters()
                       if p.is_floating_point() and p.dtype != torch.float32}
    return t


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def deepcopy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works on pruned / old-style weight-norm modules, whose computed weight (a
    non-leaf tensor, recomputed by their forward pre-hook) cannot be deep-copied."""
    stash = []
    for module in model.modules():
        for name in (*pruned_names(module), *old_weight_norm_names(module)):
            if name in module.__dict__:
                stash.append((module, name, module.__dict__.pop(name)))
    try:
        out = copy.deepcopy(model)
    finally:
        for module, name, value in stash:
            module.__dict__[name] = value
    for module in out.modules():  # recompute what was left out, as the next forward would
        for hook in module._forward_pre_hooks.values():
            if hasattr(hook, "apply_mask") or hasattr(hook, "compute_weight"):
                name = getattr(hook, "_tensor_name", None) or getattr(hook, "name")
                value = hook.apply_mask(module) if hasattr(hook, "apply_mask") else hook.compute_weight(module)
                setattr(module, name, value)
    return out
