"""The float32 equivalent of a network, which torchinfo is run on: quantization machinery removed (observers,
fake quantization, QAT modules unfused, converted INT8 modules replaced by float modules holding the dequantized
weights), pruning made permanent (zero weights still count), parametrizations resolved for the MACs."""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.ao.nn.quantized as nnq
from torch import nn
from torch.nn.utils import parametrize, prune

from asc.complexity.kinds import (OBSERVER_TYPES, Traits, deepcopy_model, is_conv, is_linear, is_qat_module,
                                  is_quantized_module, old_weight_norm_names, packed_weight_bias, pruned_names)


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def _replace_modules(root: nn.Module, select: Callable[[nn.Module], bool],
                     make: Callable[[nn.Module], nn.Module | None]) -> list[str]:
    """Replace every selected submodule (at every name it is registered under; one replacement per module, so
    shared modules stay shared) by ``make(module)``; returns "name (type)" of those ``make`` has no answer for."""
    made: dict[int, nn.Module | None] = {}
    replaced: list[str] = []
    unsupported: list[str] = []
    for name, module in list(root.named_modules(remove_duplicate=False)):
        if not name or any(name.startswith(f"{r}.") for r in replaced) or not select(module):
            continue
        replaced.append(name)
        if id(module) not in made:
            made[id(module)] = make(module)
        if made[id(module)] is None:
            unsupported.append(f"{name} ({type(module).__name__})")
        else:
            _set_submodule(root, name, made[id(module)])
    return unsupported


def _remove_observers(model: nn.Module) -> None:
    """Delete eager-mode observers / fake-quant modules and their hooks; GraphModule observers become Identity."""
    for module in list(model.modules()):
        if isinstance(getattr(module, "activation_post_process", None), OBSERVER_TYPES):
            delattr(module, "activation_post_process")
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            for key, hook in list(hooks.items()):
                if getattr(hook, "__name__", "") in ("_observer_forward_hook", "_observer_forward_pre_hook"):
                    del hooks[key]
    _replace_modules(model, lambda m: isinstance(m, OBSERVER_TYPES), lambda m: nn.Identity())


def _float_from_quantized(module: nn.Module) -> nn.Module | None:
    """A float module with the same shapes as a converted quantized module (None: no equivalent known)."""
    cls = type(module).__name__
    relu = [nn.ReLU()] if "ReLU" in cls else []
    packed = packed_weight_bias(module)
    if packed is not None and is_conv(module):
        if "Add" in cls:
            return None
        dims = len(module.kernel_size)
        transposed = "Transpose" in cls
        float_cls = getattr(nn, f"ConvTranspose{dims}d" if transposed else f"Conv{dims}d")
        kwargs = dict(stride=module.stride, padding=module.padding, dilation=module.dilation,
                      groups=module.groups, bias=packed[1] is not None)
        if transposed:
            kwargs["output_padding"] = module.output_padding
        else:
            kwargs["padding_mode"] = module.padding_mode
        conv = float_cls(module.in_channels, module.out_channels, module.kernel_size, **kwargs)
        _copy_weight_bias(conv, packed)
        return nn.Sequential(conv, *relu) if relu else conv
    if packed is not None and is_linear(module):
        weight = packed[0]
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=packed[1] is not None)
        _copy_weight_bias(linear, packed)
        return nn.Sequential(linear, *relu) if relu else linear
    if isinstance(module, (nnq.Quantize, nnq.DeQuantize)):
        return nn.Identity()
    if isinstance(module, nnq.QFunctional):
        return nnq.FloatFunctional()
    float_parent = next((c for c in type(module).__mro__[1:] if c.__module__.startswith("torch.nn.modules")
                         and c is not nn.Module), None)
    if float_parent is not None:  # quantized norms subclass their float counterpart (BNReLU adds a ReLU)
        clone = copy.copy(module)
        clone.__class__ = float_parent
        return nn.Sequential(clone, *relu) if relu else clone
    if packed is None and not list(module.parameters()) and hasattr(nn, cls):
        try:
            return getattr(nn, cls)()  # parameter-free quantized activation (ReLU6, Hardswish, Sigmoid, ...)
        except TypeError:
            return None
    return None


def _float_from_qat(module: nn.Module) -> nn.Module:
    """The unfused float module of a QAT module (``to_float()`` would fold a QAT ConvBn's BatchNorm)."""
    bn = getattr(module, "bn", None)
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        return module.to_float()
    if is_conv(module):
        core = type(module)._FLOAT_CONV_MODULE(module.in_channels, module.out_channels, module.kernel_size,
                                               module.stride, module.padding, module.dilation, module.groups,
                                               module.bias is not None, module.padding_mode)
    else:
        core = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    _copy_weight_bias(core, (module.weight.detach(), None if module.bias is None else module.bias.detach()))
    layers = [core, copy.deepcopy(bn)]
    relu_cls = getattr(type(module), "_FLOAT_RELU_MODULE", None)
    if relu_cls is not None:
        layers.append(relu_cls())
    return nn.Sequential(*layers)


def _copy_weight_bias(target: nn.Module, packed: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    weight, bias = packed
    with torch.no_grad():
        target.weight.copy_(weight.dequantize() if weight.is_quantized else weight)
        if bias is not None:
            target.bias.copy_(bias.dequantize() if bias.is_quantized else bias)


def float_equivalent(model: nn.Module, traits: Traits) -> tuple[nn.Module, list[str], list[str]]:
    """Deep copy of ``model`` in float32 with quantization machinery removed and pruning made permanent.

    Returns (copy, what was changed, quantized module types without a float equivalent). Parametrizations are kept
    (torchinfo counts their original parameters); :func:`without_parametrizations` removes them for the MACs.
    """
    out = deepcopy_model(model)
    changes: list[str] = []
    unsupported: list[str] = []
    if traits.prepared:
        _remove_observers(out)
        _replace_modules(out, is_qat_module, _float_from_qat)
        changes.append("fake quantization / observers removed, QAT modules turned back into unfused float modules")
    if traits.quantized:
        unsupported = _replace_modules(out, is_quantized_module, _float_from_quantized)
        changes.append("quantized modules replaced by float modules holding the dequantized packed weights")
    if traits.pruned:
        for module in out.modules():
            for tensor_name in pruned_names(module):
                prune.remove(module, tensor_name)
        changes.append("pruning made permanent: zero-valued weights counted")
    if traits.reduced_float:
        changes.append(f"{'/'.join(sorted(traits.reduced_float))} parameters counted on a float32 copy")
    return out.float().cpu().eval(), changes, unsupported


def without_parametrizations(model: nn.Module) -> nn.Module:
    """Copy with parametrized / old-style weight-norm weights replaced by plain parameters holding the effective
    weights (for the MACs). ``remove_parametrizations`` is not used: it edits the parametrized class, which a deep
    copy shares with the caller's model."""
    out = deepcopy_model(model)
    _replace_modules(out, parametrize.is_parametrized, _plain_module)
    for module in out.modules():
        for tensor_name in old_weight_norm_names(module):
            torch.nn.utils.remove_weight_norm(module, tensor_name)
    if parametrize.is_parametrized(out):
        out = _plain_module(out)
    return out


def _plain_module(module: nn.Module) -> nn.Module:
    """A new instance of the unparametrized class sharing ``module``'s children, with each parametrized tensor
    replaced by a parameter holding its current value."""
    base = type(module).__bases__[0]
    plain = base.__new__(base)
    plain.__dict__ = {k: (type(v)(v) if isinstance(v, dict) else v) for k, v in module.__dict__.items()}
    plain._modules.pop("parametrizations")
    with torch.no_grad():
        for tensor_name in module.parametrizations:
            plain._parameters[tensor_name] = nn.Parameter(getattr(module, tensor_name).detach().clone())
    return plain
