"""An independent count by forward hooks on the model as given, beside torchinfo's official one: the same rules
(Conv: (weight + bias elements) x output positions; BatchNorm: 2 per channel, once; Linear: weight + bias elements;
activations, pooling, additions, GRN: 0), on the real weights (packed INT8 ones included), with stored bytes, zero
weights and the BatchNorm-folded figures."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from asc.complexity.kinds import (OBSERVER_TYPES, deepcopy_model, dtype_name, is_conv, is_linear, is_norm,
                                  packed_weight_bias)
from asc.complexity.report import ComplexityError
from asc.errors import first_lines


@dataclass
class Analytic:
    params: int
    macs: int
    per_module: dict[str, list[int]]  # name -> MACs of each call
    folded_params: int | None
    folded_macs: int | None
    stored_bytes: int
    stored_dtypes: dict[str, int]
    zeros: int
    linear_per_position_extra: int  # MACs Linear layers on sequences would add if counted per position


def _weight_bias(module: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    packed = packed_weight_bias(module)
    if packed is not None:
        return packed
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    return (weight if isinstance(weight, torch.Tensor) else None,
            bias if isinstance(bias, torch.Tensor) else None)


def _numel(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel()


def _first_tensor(value) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _stored_parameters(model: nn.Module) -> Iterable[torch.Tensor]:
    """Every stored parameter tensor once (pruned ones with their mask applied), outside quantization observers,
    plus the packed weights of quantized modules."""
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, OBSERVER_TYPES):
            continue
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            mask = module._buffers.get(name.removesuffix("_orig") + "_mask") if name.endswith("_orig") else None
            yield p.detach() * mask if mask is not None else p.detach()
        packed = packed_weight_bias(module)
        if packed is not None:
            yield from (t for t in packed if t is not None)


def analytic_count(model: nn.Module, input_size: tuple[int, ...]) -> Analytic:
    params = 0
    stored_bytes = 0
    zeros = 0
    dtypes: dict[str, int] = {}
    for t in _stored_parameters(model):
        params += t.numel()
        stored_bytes += t.numel() * t.element_size()
        dtypes[dtype_name(t.dtype)] = dtypes.get(dtype_name(t.dtype), 0) + t.numel()
        zeros += int((t.dequantize() if t.is_quantized else t).eq(0).sum())

    work = deepcopy_model(model).float().cpu().eval()
    names = {id(m): n for n, m in work.named_modules()}
    per_module: dict[str, list[int]] = {}
    producers: dict[int, tuple[nn.Module, torch.Tensor, int]] = {}  # id(output) -> (conv/linear, output, positions)
    folds: list[tuple[nn.Module, nn.Module, int, int]] = []  # (weighted module, norm, output positions, batch)
    linear_extra = 0

    def hook(module, inputs, output):
        out = _first_tensor(output)
        if out is None or isinstance(module, OBSERVER_TYPES):
            return
        batch = out.shape[0] if out.dim() else 1
        weight, bias = _weight_bias(module)
        if is_conv(module):
            positions = batch * math.prod(out.shape[2:])
            macs = (_numel(weight) + _numel(bias)) * positions
            producers[id(out)] = (module, out, positions)
            inner_bn = getattr(module, "bn", None)
            if isinstance(inner_bn, nn.modules.batchnorm._BatchNorm):  # QAT ConvBn: BN inside the conv module
                folds.append((module, inner_bn, positions, batch))
        elif is_linear(module):
            macs = batch * (_numel(weight) + _numel(bias))
            producers[id(out)] = (module, out, batch)
            nonlocal linear_extra
            linear_extra += (math.prod(out.shape[:-1]) - batch) * _numel(weight) if out.dim() > 2 else 0
        elif is_norm(module):
            macs = batch * (_numel(weight) + _numel(bias))
            x = _first_tensor(inputs)
            source = producers.get(id(x)) if x is not None else None
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and source is not None and source[1] is x and \
                    all(f[1] is not module for f in folds):
                folds.append((source[0], module, source[2], batch))
        else:
            macs = batch * sum(p.numel() for n, p in module.named_parameters(recurse=False) if n in ("weight", "bias"))
        name = names.get(id(module), type(module).__name__)
        per_module.setdefault(name, []).append(int(macs))

    handles = [m.register_forward_hook(hook) for m in work.modules()]
    try:
        with torch.no_grad():
            work(torch.rand(*input_size))
    except Exception as e:
        raise ComplexityError(f"cannot run the model on an input of shape {list(input_size)} "
                              f"({first_lines(e, 1, root_cause=True)}); "
                              "check the input shape (--input-shape / --frames)") from None
    finally:
        for h in handles:
            h.remove()
    macs = sum(sum(calls) for calls in per_module.values())
    folded_params = folded_macs = None
    if folds:
        folded_params, folded_macs = params, macs
        for weighted, norm, positions, batch in folds:
            norm_params = _numel(norm.weight) + _numel(norm.bias)
            folded_params -= norm_params
            folded_macs -= norm_params * batch
            if _weight_bias(weighted)[1] is None:
                channels = norm.num_features
                folded_params += channels
                folded_macs += channels * positions
    return Analytic(params=params, macs=macs, per_module=per_module, folded_params=folded_params,
                     folded_macs=folded_macs, stored_bytes=stored_bytes, stored_dtypes=dtypes, zeros=zeros,
                     linear_per_position_extra=linear_extra)
