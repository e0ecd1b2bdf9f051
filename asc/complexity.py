"""Complexity of a model as the DCASE Task 1 organisers count it, and budgets to check it against.

The official figure is torchinfo 1.8.0's ``summary(model, input_size=..., verbose=0)`` ``.total_params`` and
``.total_mult_adds`` on an unfused float32 copy of the network (front end excluded; BatchNorm running statistics
are buffers, not parameters). Beside it, an independent count by forward hooks applies the same rule on the model
as given (Conv: (weight + bias elements) x output positions; BatchNorm: 2 per channel, once; Linear: weight + bias
elements; activations, pooling, additions, GRN: 0) and reads the real weights of quantized modules.

Traps handled explicitly (torchinfo alone gets them wrong):

- converted INT8 eager models keep their weights packed outside ``parameters()`` (torchinfo: 0 parameters);
- QAT-prepared / observer-prepared models hide convolutions behind fake-quant children (torchinfo: only the
  BatchNorm MACs);
- pruned weights: the rules count zero-valued parameters, torchinfo counts only the unmasked ones;
- weight-norm / parametrizations: the original parameters are counted, MACs from the effective weight's shape;
- fp16 / bf16 copies: counted on a float32 copy, stored bytes from the real dtypes;
- BatchNorm folding (ONNX export, INT8 conversion) changes the count: both figures are reported.

ONNX files are counted from the graph: parameters are the initializer elements of weights and biases feeding
Conv / Gemm / MatMul / BatchNormalization (through DequantizeLinear for QDQ models; scales and zero points are not
parameters), bytes from their stored dtypes, MACs from the shapes of ``onnx.shape_inference.infer_shapes``.

Sources (:func:`count_source`): registry names (:func:`count_named`), run folders / bundle checkpoints, ONNX files
(:func:`count_onnx`); other kinds (DCASE25 inference packages, one model per device: registered by
``asc.submission.complexity2025``) plug in with :func:`register_source`. Budgets live as data in
``complexity/<edition>.toml`` (:func:`load_budget`); :func:`check` lists the violations, :func:`check_source` does
both for ``asc check-complexity``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from asc.config import from_dict, read_toml
from asc.errors import AscError, ConfigError

BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
PRECISIONS = (*BYTES_PER_PARAM, "stored")
DEFAULT_EDITION = "dcase2024"
BUDGET_DIR = Path(__file__).resolve().parents[1] / "complexity"


class ComplexityError(AscError):
    """A model, ONNX file or budget cannot be counted or read."""


def _single_threaded(fn):
    """Run ``fn`` with one intra-op thread: the batch-1 passes gain nothing from more, and on a busy machine the
    idle-spinning of extra threads makes them many times slower. The previous setting is restored."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _torch_threads(1):
            return fn(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def _torch_threads(n: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ----------------------------------------------------------------------------------------------------------------
# Report


@dataclass
class LayerRow:
    """One row of the per-layer table (one call of a leaf module, or one ONNX node)."""

    name: str
    type: str
    output_shape: list[int]
    params: int
    macs: int
    check_macs: int | None = None  # independent count of the same module (None: not comparable)


@dataclass
class ComplexityReport:
    """Parameters, MACs and parameter memory of one model on one input size."""

    name: str
    input_size: tuple[int, ...]
    params: int  # official: torchinfo total_params on the float32 equivalent (ONNX: initializer elements)
    macs: int  # official: torchinfo total_mult_adds (ONNX: from inferred shapes)
    stored_bytes: int  # parameter memory at the dtypes the model really stores
    stored_dtypes: dict[str, int]  # dtype name -> number of parameters stored in it
    method: str  # "torchinfo", "analytic" (torchinfo could not run) or "onnx"
    layers: list[LayerRow] = field(default_factory=list)
    check_params: int | None = None  # independent forward-hook count
    check_macs: int | None = None
    folded_params: int | None = None  # with every BatchNorm folded into the conv before it (None: nothing to fold)
    folded_macs: int | None = None
    bn_folded: bool = False  # BatchNorm already folded in the model as given (INT8-converted, ONNX)
    zero_params: int = 0  # zero-valued parameters (counted, as the rules require)
    deployed_precision: str | None = None  # precision implied by the model itself (None: plain float32)
    raw_torchinfo: dict[str, Any] | None = None  # torchinfo on the model as given, where a trap was handled
    torch_params: int | None = None  # ONNX: official count of the unfused PyTorch model named in the metadata
    torch_macs: int | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    precision: str | None = None  # precision asked for by the caller (None: decided at check time)

    def param_bytes(self, precision: str | None = None) -> int:
        """Parameter memory in bytes at ``precision`` (fp32/fp16/bf16/int8) or at the stored dtypes."""
        precision = precision or self.precision or "stored"
        if precision == "stored":
            return self.stored_bytes
        if precision not in BYTES_PER_PARAM:
            raise ConfigError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        return self.params * BYTES_PER_PARAM[precision]

    @property
    def bytes(self) -> int:
        return self.param_bytes()

    @property
    def budget_params(self) -> int:
        """The parameter count the rules judge: the unfused PyTorch model's where an ONNX graph names it."""
        return self.torch_params if self.torch_params is not None else self.params

    @property
    def budget_macs(self) -> int:
        """The MACs the rules judge: the unfused PyTorch model's where an ONNX graph names it (folding BatchNorm
        into conv biases adds bias MACs the official count of the unfused model does not have)."""
        return self.torch_macs if self.torch_macs is not None else self.macs

    @property
    def cross_check_agrees(self) -> bool | None:
        if self.check_params is None or self.check_macs is None:
            return None
        return self.check_params == self.params and self.check_macs == self.macs

    def to_dict(self, layers: bool = False) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_size"] = list(self.input_size)
        data["param_bytes"] = {p: self.param_bytes(p) for p in PRECISIONS}
        data["cross_check_agrees"] = self.cross_check_agrees
        if not layers:
            data.pop("layers")
        return data

    def layer_table(self) -> str:
        """The per-layer table for people."""
        head = ("layer", "type", "output shape", "params", "MACs", "check")
        rows = [(r.name, r.type, "x".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.macs:,}",
                 "" if r.check_macs is None or r.check_macs == r.macs else f"{r.check_macs:,} (differs)")
                for r in self.layers]
        rows.append(("total", "", "", f"{self.params:,}", f"{self.macs:,}", ""))
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        right = {3, 4}
        lines = []
        for i, row in enumerate([head, *rows]):
            cells = [str(c).rjust(w) if j in right else str(c).ljust(w) for j, (c, w) in enumerate(zip(row, widths))]
            lines.append("  ".join(cells).rstrip())
            if i == 0 or i == len(rows) - 1:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def summary_lines(self) -> list[str]:
        """Figures for people: official count, cross-check, folding, memory per precision, notes and warnings."""
        lines = [f"input         {list(self.input_size)}"]
        source = {"torchinfo": "torchinfo 1.8.0", "analytic": "analytic count: torchinfo cannot run this model",
                  "onnx": "ONNX graph"}[self.method]
        lines.append(f"parameters    {self.params:,}  ({source}){_check_text(self.params, self.check_params)}")
        lines.append(f"MACs          {self.macs:,}  ({source}){_check_text(self.macs, self.check_macs)}")
        if self.folded_params is not None:
            lines.append(f"BN folded     {self.folded_params:,} parameters, {self.folded_macs:,} MACs "
                         "(BatchNorm folded into the preceding conv, as ONNX export / INT8 conversion do)")
        memory = " · ".join(f"{p} {self.param_bytes(p):,} B" for p in ("fp32", "fp16", "int8"))
        stored = ", ".join(f"{n:,} {d}" for d, n in self.stored_dtypes.items()) or "none"
        lines.append(f"memory        {memory} · stored {self.stored_bytes:,} B ({stored})")
        if self.zero_params * 10 >= self.params > 0:  # pruned or sparse: worth saying they still count
            lines.append(f"zeros         {self.zero_params:,} zero-valued parameters "
                         f"({100 * self.zero_params / self.params:.0f} %), counted as the rules require")
        lines += [f"note          {n}" for n in self.notes]
        lines += [f"WARNING       {w}" for w in self.warnings]
        return lines


def _check_text(official: int, check: int | None) -> str:
    if check is None:
        return ""
    if check == official:
        return f"; cross-check {check:,} agrees"
    return f"; cross-check {check:,} DISAGREES by {check - official:+,}"


# ----------------------------------------------------------------------------------------------------------------
# Module kinds


def _quantized_base():
    from torch.ao.nn.quantized.modules.utils import WeightedQuantizedModule

    return WeightedQuantizedModule


def _quant_observer_types() -> tuple[type, ...]:
    from torch.ao.quantization import FakeQuantizeBase, ObserverBase

    return FakeQuantizeBase, ObserverBase


def _is_quantized_module(module: nn.Module) -> bool:
    return type(module).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")) and \
        ".reference" not in type(module).__module__


def _is_qat_module(module: nn.Module) -> bool:
    return type(module).__module__.startswith(("torch.ao.nn.qat", "torch.ao.nn.intrinsic.qat")) and \
        hasattr(module, "to_float")


def _packed_weight_bias(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight, bias) of a quantized module whose weights are packed outside ``parameters()``."""
    if not isinstance(module, _quantized_base()) or not callable(getattr(module, "weight", None)):
        return None
    weight = module.weight()
    bias = module.bias() if callable(getattr(module, "bias", None)) else None
    return weight, bias


def _is_conv(module: nn.Module) -> bool:
    from torch.ao.nn.quantized.modules.conv import _ConvNd as QConvNd

    return isinstance(module, (nn.modules.conv._ConvNd, QConvNd))


def _is_linear(module: nn.Module) -> bool:
    import torch.ao.nn.quantized as nnq

    return isinstance(module, (nn.Linear, nnq.Linear))


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))


def _pruned_names(module: nn.Module) -> list[str]:
    from torch.nn.utils import prune

    return [h._tensor_name for h in module._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]


def _old_weight_norm_names(module: nn.Module) -> list[str]:
    from torch.nn.utils.weight_norm import WeightNorm

    return [h.name for h in module._forward_pre_hooks.values() if isinstance(h, WeightNorm)]


@dataclass
class _Traits:
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


def _traits(model: nn.Module) -> _Traits:
    from torch.nn.utils import parametrize

    observers = _quant_observer_types()
    t = _Traits()
    for module in model.modules():
        t.quantized |= _is_quantized_module(module)
        t.prepared |= _is_qat_module(module) or isinstance(module, observers)
        t.pruned |= bool(_pruned_names(module))
        t.parametrized |= parametrize.is_parametrized(module)
        t.old_weight_norm |= bool(_old_weight_norm_names(module))
    t.reduced_float = {_dtype_name(p.dtype) for p in model.parameters()
                       if p.is_floating_point() and p.dtype != torch.float32}
    return t


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ----------------------------------------------------------------------------------------------------------------
# Float32 equivalent (what torchinfo is run on)


def _deepcopy(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works on pruned / old-style weight-norm modules, whose computed weight (a
    non-leaf tensor, recomputed by their forward pre-hook) cannot be deep-copied."""
    stash = []
    for module in model.modules():
        for name in (*_pruned_names(module), *_old_weight_norm_names(module)):
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
    observers = _quant_observer_types()
    for module in list(model.modules()):
        if isinstance(getattr(module, "activation_post_process", None), observers):
            delattr(module, "activation_post_process")
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            for key, hook in list(hooks.items()):
                if getattr(hook, "__name__", "") in ("_observer_forward_hook", "_observer_forward_pre_hook"):
                    del hooks[key]
    _replace_modules(model, lambda m: isinstance(m, observers), lambda m: nn.Identity())


def _float_from_quantized(module: nn.Module) -> nn.Module | None:
    """A float module with the same shapes as a converted quantized module (None: no equivalent known)."""
    import torch.ao.nn.quantized as nnq

    cls = type(module).__name__
    relu = [nn.ReLU()] if "ReLU" in cls else []
    packed = _packed_weight_bias(module)
    if packed is not None and _is_conv(module):
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
    if packed is not None and _is_linear(module):
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
    if _is_conv(module):
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


def _float_equivalent(model: nn.Module, traits: _Traits) -> tuple[nn.Module, list[str], list[str]]:
    """Deep copy of ``model`` in float32 with quantization machinery removed and pruning made permanent.

    Returns (copy, what was changed, quantized module types without a float equivalent). Parametrizations are kept
    (torchinfo counts their original parameters); :func:`_without_parametrizations` removes them for the MACs.
    """
    from torch.nn.utils import prune

    out = _deepcopy(model)
    changes: list[str] = []
    unsupported: list[str] = []
    if traits.prepared:
        _remove_observers(out)
        _replace_modules(out, _is_qat_module, _float_from_qat)
        changes.append("fake quantization / observers removed, QAT modules turned back into unfused float modules")
    if traits.quantized:
        unsupported = _replace_modules(out, _is_quantized_module, _float_from_quantized)
        changes.append("quantized modules replaced by float modules holding the dequantized packed weights")
    if traits.pruned:
        for module in out.modules():
            for tensor_name in _pruned_names(module):
                prune.remove(module, tensor_name)
        changes.append("pruning made permanent: zero-valued weights counted")
    if traits.reduced_float:
        changes.append(f"{'/'.join(sorted(traits.reduced_float))} parameters counted on a float32 copy")
    return out.float().cpu().eval(), changes, unsupported


def _without_parametrizations(model: nn.Module) -> nn.Module:
    """Copy with parametrized / old-style weight-norm weights replaced by plain parameters holding the effective
    weights (for the MACs). ``remove_parametrizations`` is not used: it edits the parametrized class, which a deep
    copy shares with the caller's model."""
    from torch.nn.utils import parametrize

    out = _deepcopy(model)
    _replace_modules(out, parametrize.is_parametrized, _plain_module)
    for module in out.modules():
        for tensor_name in _old_weight_norm_names(module):
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


# ----------------------------------------------------------------------------------------------------------------
# torchinfo


def _torchinfo(model: nn.Module, input_size: tuple[int, ...]):
    import torchinfo

    with torch.no_grad():
        return torchinfo.summary(model, input_size=input_size, verbose=0, device="cpu", mode="eval")


def _torchinfo_layers(stats, model: nn.Module) -> list[LayerRow]:
    names = {id(m): n for n, m in model.named_modules()}
    rows = []
    for info in stats.summary_list:
        if info.depth == 0:
            continue
        params = info.num_params if info.is_leaf_layer else max(info.leftover_params(), 0)
        if not info.is_leaf_layer and not params:
            continue
        shape = info.output_size if isinstance(info.output_size, list) else []
        rows.append(LayerRow(name=names.get(id(info.module), info.var_name or info.class_name),
                             type=info.class_name,
                             output_shape=[int(s) for s in shape if isinstance(s, int)],
                             params=int(params), macs=int(info.macs if info.is_leaf_layer else 0)))
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Independent count (forward hooks on the model as given)


@dataclass
class _Analytic:
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
    packed = _packed_weight_bias(module)
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
    observers = _quant_observer_types()
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, observers):
            continue
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            mask = module._buffers.get(name.removesuffix("_orig") + "_mask") if name.endswith("_orig") else None
            yield p.detach() * mask if mask is not None else p.detach()
        packed = _packed_weight_bias(module)
        if packed is not None:
            yield from (t for t in packed if t is not None)


def _analytic(model: nn.Module, input_size: tuple[int, ...]) -> _Analytic:
    observers = _quant_observer_types()
    params = 0
    stored_bytes = 0
    zeros = 0
    dtypes: dict[str, int] = {}
    for t in _stored_parameters(model):
        params += t.numel()
        stored_bytes += t.numel() * t.element_size()
        dtypes[_dtype_name(t.dtype)] = dtypes.get(_dtype_name(t.dtype), 0) + t.numel()
        zeros += int((t.dequantize() if t.is_quantized else t).eq(0).sum())

    work = _deepcopy(model).float().cpu().eval()
    names = {id(m): n for n, m in work.named_modules()}
    per_module: dict[str, list[int]] = {}
    producers: dict[int, tuple[nn.Module, torch.Tensor, int]] = {}  # id(output) -> (conv/linear, output, positions)
    folds: list[tuple[nn.Module, nn.Module, int, int]] = []  # (weighted module, norm, output positions, batch)
    linear_extra = 0

    def hook(module, inputs, output):
        out = _first_tensor(output)
        if out is None or isinstance(module, observers):
            return
        batch = out.shape[0] if out.dim() else 1
        weight, bias = _weight_bias(module)
        if _is_conv(module):
            positions = batch * math.prod(out.shape[2:])
            macs = (_numel(weight) + _numel(bias)) * positions
            producers[id(out)] = (module, out, positions)
            inner_bn = getattr(module, "bn", None)
            if isinstance(inner_bn, nn.modules.batchnorm._BatchNorm):  # QAT ConvBn: BN inside the conv module
                folds.append((module, inner_bn, positions, batch))
        elif _is_linear(module):
            macs = batch * (_numel(weight) + _numel(bias))
            producers[id(out)] = (module, out, batch)
            nonlocal linear_extra
            linear_extra += (math.prod(out.shape[:-1]) - batch) * _numel(weight) if out.dim() > 2 else 0
        elif _is_norm(module):
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
        raise ComplexityError(f"cannot run the model on an input of shape {list(input_size)} ({_error_text(e)}); "
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
    return _Analytic(params=params, macs=macs, per_module=per_module, folded_params=folded_params,
                     folded_macs=folded_macs, stored_bytes=stored_bytes, stored_dtypes=dtypes, zeros=zeros,
                     linear_per_position_extra=linear_extra)


# ----------------------------------------------------------------------------------------------------------------
# count()


@_single_threaded
def count(model: nn.Module, input_size: Iterable[int], precision: str | None = None,
          name: str | None = None) -> ComplexityReport:
    """Official complexity of ``model`` on a front-end output of ``input_size`` (e.g. (1, 1, 256, 65)).

    ``precision`` (fp32/fp16/bf16/int8/stored) is the one :attr:`ComplexityReport.bytes` reports and
    :func:`check` uses by default; None leaves the choice to :func:`check` (see :func:`resolve_precision`).
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise ComplexityError("TorchScript modules cannot be counted (no module hooks): count the eager model or "
                              "its ONNX export")
    input_size = tuple(int(s) for s in input_size)
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    name = name or type(model).__name__
    traits = _traits(model)
    analytic = _analytic(model, input_size)
    float_model, changes, unsupported = _float_equivalent(model, traits)
    notes: list[str] = []
    warnings: list[str] = []
    layers: list[LayerRow] = []
    try:
        if unsupported:
            raise ComplexityError(f"no float equivalent for {', '.join(unsupported)}")
        mac_model = _without_parametrizations(float_model) if traits.parametrized or traits.old_weight_norm \
            else float_model
        stats = _torchinfo(mac_model, input_size)
        params, macs = stats.total_params, stats.total_mult_adds
        if mac_model is not float_model:
            params = _torchinfo(float_model, input_size).total_params
            changes.append("parametrized weights: original parameters counted, MACs from the effective weights")
        layers = _torchinfo_layers(stats, mac_model)
        method = "torchinfo"
        notes += [f"counted on a float32 equivalent: {c}" for c in changes]
    except Exception as e:  # torchinfo cannot run the float equivalent: the independent count becomes official
        method = "analytic"
        params, macs = analytic.params, analytic.macs
        notes.append(f"torchinfo cannot run a float equivalent of this model ({_error_text(e)}); the figures are "
                     "the analytic count on its real (packed) weights")
    calls: dict[str, int] = {}
    for row in layers:
        index = calls[row.name] = calls.get(row.name, -1) + 1
        per_call = analytic.per_module.get(row.name, [])
        row.check_macs = per_call[index] if index < len(per_call) else None
    raw = None
    if traits.any:
        try:
            raw_stats = _torchinfo(_deepcopy(model).eval(), input_size)
            raw = {"params": int(raw_stats.total_params), "macs": int(raw_stats.total_mult_adds)}
            if (raw["params"], raw["macs"]) != (params, macs):
                notes.append(f"torchinfo on the model as given reports {raw['params']:,} parameters and "
                             f"{raw['macs']:,} MACs: wrong for this model, corrected above")
        except Exception as e:
            raw = {"error": _error_text(e)}
            notes.append(f"torchinfo fails on the model as given ({raw['error']})")
    if method == "torchinfo" and (analytic.params, analytic.macs) != (params, macs):
        differing = [r.name for r in layers if r.check_macs is not None and r.check_macs != r.macs]
        warnings.append(f"independent count disagrees: {analytic.params:,} parameters / {analytic.macs:,} MACs vs "
                        f"torchinfo {params:,} / {macs:,}"
                        + (f"; layers that differ: {', '.join(differing[:8])}" if differing else ""))
    if analytic.linear_per_position_extra:
        notes.append(f"Linear layers on sequences are counted once per clip (torchinfo's rule), not per position; "
                     f"per position they would add {analytic.linear_per_position_extra:,} MACs")
    if traits.quantized:
        notes.append("INT8-converted model: BatchNorm is folded into the convolutions, so these are folded figures")
    deployed = None
    if traits.quantized or traits.reduced_float:
        deployed = "stored"
    elif traits.prepared:
        deployed = "int8"
        notes.append("quantization-prepared model: its weights are deployed as INT8 (default precision int8)")
    folded = (analytic.folded_params, analytic.folded_macs)
    if folded == (params, macs):
        folded = (None, None)
    independent = method == "torchinfo"
    return ComplexityReport(
        name=name, input_size=input_size, params=int(params), macs=int(macs), stored_bytes=analytic.stored_bytes,
        stored_dtypes=analytic.stored_dtypes, method=method, layers=layers,
        check_params=analytic.params if independent else None, check_macs=analytic.macs if independent else None,
        folded_params=folded[0], folded_macs=folded[1], bn_folded=traits.quantized, zero_params=analytic.zeros,
        deployed_precision=deployed, raw_torchinfo=raw, notes=notes, warnings=warnings, precision=precision)


def _error_text(error: BaseException) -> str:
    """The root cause of an exception in one line (torchinfo wraps model errors in a generic RuntimeError)."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


# ----------------------------------------------------------------------------------------------------------------
# Registry models and front-end input shapes


@_single_threaded
def frontend_input_size(frontend: nn.Module, frames: int | None = None) -> tuple[int, ...]:
    """(1, 1, F, T) the front end produces for 1 s of audio (T replaced by ``frames`` if given)."""
    from asc.frontend import input_shape

    shape = tuple(input_shape(frontend, 1.0))
    if frames is not None:
        if frames < 1:
            raise ConfigError(f"frames {frames}: expected a positive number of time frames")
        shape = (*shape[:-1], int(frames))
    return shape


def split_overrides(overrides: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """{"base_channels": 24, "model.expansion_rate": 2, "frontend.hop_length": 750} -> (model, front-end) dicts."""
    model: dict[str, Any] = {}
    frontend: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if key.startswith("frontend."):
            frontend[key.removeprefix("frontend.")] = value
        else:
            model[key.removeprefix("model.")] = value
    return model, frontend


def count_named(name: str, overrides: dict[str, Any] | None = None, precision: str | None = None,
                input_size: Iterable[int] | None = None, frames: int | None = None) -> ComplexityReport:
    """Build registry model ``name`` (``overrides`` of its config; keys ``frontend.*`` go to its front end) and
    count it on its front end's output for 1 s (or ``input_size`` / ``frames``)."""
    from asc.models.registry import build_frontend_for, build_model

    model_overrides, frontend_overrides = split_overrides(overrides)
    model = build_model(name, model_overrides)
    if input_size is None:
        input_size = frontend_input_size(build_frontend_for(name, frontend_overrides), frames)
    elif frames is not None:
        raise ConfigError("give either an input size or a number of frames, not both")
    return count(model, input_size, precision=precision, name=name)


# ----------------------------------------------------------------------------------------------------------------
# ONNX

_ONNX_PARAM_INPUTS = {  # op -> indices of inputs that are parameters (weights, biases; not scales / zero points)
    "Conv": (1, 2), "ConvTranspose": (1, 2), "ConvInteger": (1,), "QLinearConv": (3, 8),
    "Gemm": (1, 2), "MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3),
    "BatchNormalization": (1, 2), "LayerNormalization": (1, 2), "InstanceNormalization": (1, 2),
}
_ONNX_CONV = {"Conv", "ConvTranspose", "ConvInteger", "QLinearConv"}
_ONNX_PASS_THROUGH = {"DequantizeLinear", "Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze",
                      "Flatten"}


def _onnx_dtype(data_type: int) -> tuple[str, int]:
    import onnx

    np_dtype = onnx.helper.tensor_dtype_to_np_dtype(data_type)
    return str(np_dtype), np_dtype.itemsize


def count_onnx(path: str | Path, input_size: Iterable[int] | None = None,
               precision: str | None = None) -> ComplexityReport:
    """Count an ONNX model from its graph (see the module docstring for the rules)."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise ComplexityError(f"{path}: cannot read ONNX model: {e}") from None
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            initializers[node.output[0]] = node.attribute[0].t
    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs:
        raise ComplexityError(f"{path}: the graph has no input")
    metadata = {p.key: p.value for p in model.metadata_props}
    dims = inputs[0].type.tensor_type.shape.dim
    if input_size is None:
        input_size = tuple(d.dim_value if d.HasField("dim_value") else 0 for d in dims)
        if input_size and input_size[0] == 0:
            input_size = (1, *input_size[1:])
        if 0 in input_size and "asc.frontend" in metadata:
            from asc.frontend import build_frontend

            fe = json.loads(metadata["asc.frontend"])
            input_size = frontend_input_size(build_frontend(fe["name"], fe.get("config") or {}))
        if 0 in input_size:
            raise ComplexityError(f"{path}: input {inputs[0].name!r} has dynamic dimensions {list(input_size)} "
                                  "(0 = dynamic): give the input shape (--input-shape 1,1,256,65)")
    input_size = tuple(int(s) for s in input_size)
    if len(input_size) != len(dims):
        raise ComplexityError(f"{path}: input {inputs[0].name!r} has rank {len(dims)}, input shape "
                              f"{list(input_size)} has rank {len(input_size)}")
    for dim, size in zip(dims, input_size):
        dim.Clear()
        dim.dim_value = size
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:
        raise ComplexityError(f"{path}: ONNX shape inference failed on input {list(input_size)}: {e}") from None
    shapes: dict[str, list[int]] = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input):
        tensor_type = vi.type.tensor_type
        if tensor_type.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
    producers = {out: node for node in graph.node for out in node.output}

    def resolve(name: str):
        """(initializer name, tensor) behind a node input, through DequantizeLinear / Identity / Cast / ..."""
        for _ in range(16):
            if name in initializers:
                return name, initializers[name]
            node = producers.get(name)
            if node is None or node.op_type not in _ONNX_PASS_THROUGH or not node.input:
                return None
            name = node.input[0]
        return None

    counted: set[str] = set()  # node input names counted
    used: set[str] = set()  # initializers behind them
    params = macs = stored_bytes = zeros = 0
    dtypes: dict[str, int] = {}
    layers: list[LayerRow] = []
    notes: list[str] = []
    for node in graph.node:
        indices = _ONNX_PARAM_INPUTS.get(node.op_type)
        if indices is None:
            continue
        # keyed by the node's own input name: exporters alias equal constants (e.g. the zero biases of untrained
        # folded BatchNorms) through Identity nodes, which are still separate parameters; a weight used directly
        # by several nodes (a module called twice) is counted once
        tensors = [(node.input[i], *resolved) for i in indices if i < len(node.input) and node.input[i]
                   for resolved in [resolve(node.input[i])] if resolved is not None]
        if not tensors:
            continue  # e.g. MatMul of two activations (attention): no parameters, 0 MACs by the rules
        numel = sum(math.prod(t.dims) for _, _, t in tensors)
        out_shape = shapes.get(node.output[0])
        if out_shape is None or any(d < 0 for d in out_shape):
            raise ComplexityError(f"{path}: no static output shape for node {node.name or node.output[0]!r} "
                                  f"({node.op_type}) after shape inference on input {list(input_size)}")
        batch = out_shape[0] if out_shape else 1
        node_macs = numel * batch * (math.prod(out_shape[2:]) if node.op_type in _ONNX_CONV else 1)
        node_params = 0
        for key, init_name, t in tensors:
            if key in counted:
                continue
            counted.add(key)
            used.add(init_name)
            n = math.prod(t.dims)
            dtype, size = _onnx_dtype(t.data_type)
            node_params += n
            stored_bytes += n * size
            dtypes[dtype] = dtypes.get(dtype, 0) + n
            zeros += _onnx_zeros(t, path.parent)
        params += node_params
        macs += node_macs
        layers.append(LayerRow(name=node.name or node.output[0], type=node.op_type, output_shape=out_shape,
                               params=node_params, macs=node_macs))
    other = sum(math.prod(t.dims) for n, t in initializers.items() if n not in used)
    if other:
        notes.append(f"{other:,} elements of other initializers not counted (scales, zero points, shape constants; "
                     "also small parameters outside Conv/Gemm/MatMul/BatchNormalization, e.g. GRN's scalar γ and β)")
    if len(input_size) == 2:
        notes.append("the graph takes waveforms: it includes the front end, which the rules exclude")
    notes.append("BatchNorm is folded into the convolutions here: each folded conv bias adds channels x positions "
                 "MACs that the rules' count of the unfused PyTorch model (BatchNorm: 2 per channel) does not have; "
                 "the official figure is the PyTorch model's (asc check-complexity on the run or bundle)")
    check_params = check_macs = None
    torch_figures = (None, None)
    if "asc.model" in metadata:
        try:
            spec = json.loads(metadata["asc.model"])
            reference = count(_build_registry_model(spec["name"], spec.get("config") or {}), input_size,
                              name=spec["name"])
            check_params = reference.folded_params if reference.folded_params is not None else reference.params
            check_macs = reference.folded_macs if reference.folded_macs is not None else reference.macs
            torch_figures = (reference.params, reference.macs)
            notes.append(f"torch model {spec['name']} from the metadata: {reference.params:,} parameters, "
                         f"{reference.macs:,} MACs unfused; the cross-check compares its BN-folded figure")
        except Exception as e:
            notes.append(f"torch model in the metadata could not be counted: {type(e).__name__}: {e}")
    warnings = []
    if check_params is not None and (check_params, check_macs) != (params, macs):
        warnings.append(f"the torch model's BN-folded count ({check_params:,} parameters, {check_macs:,} MACs) "
                        f"differs from the graph's ({params:,}, {macs:,})")
    return ComplexityReport(
        name=path.name, input_size=input_size, params=params, macs=macs, stored_bytes=stored_bytes,
        stored_dtypes=dtypes, method="onnx", layers=layers, check_params=check_params, check_macs=check_macs,
        bn_folded=True, zero_params=zeros, deployed_precision="stored", torch_params=torch_figures[0],
        torch_macs=torch_figures[1], notes=notes, warnings=warnings, precision=precision)


def _build_registry_model(name: str, config: dict[str, Any]) -> nn.Module:
    from asc.models.registry import get_spec

    spec = get_spec(name)
    return spec.build(from_dict(spec.config_cls, config, where=f"model {name}"))


def _onnx_zeros(tensor, base_dir: Path) -> int:
    from onnx import numpy_helper

    try:
        return int((numpy_helper.to_array(tensor, base_dir=str(base_dir)) == 0).sum())
    except Exception:
        return 0


# ----------------------------------------------------------------------------------------------------------------
# Sources: registry names, run folders / bundles, ONNX files (extension point for other kinds)

SourceHandler = Callable[[str, "SourceOptions"], "list[tuple[str | None, ComplexityReport]] | None"]
_SOURCE_HANDLERS: list[SourceHandler] = []


@dataclass
class SourceOptions:
    """How to count a source: config overrides (registry names only), input shape, precision."""

    overrides: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, ...] | None = None
    frames: int | None = None
    precision: str | None = None


def register_source(handler: SourceHandler) -> SourceHandler:
    """Add a handler tried before the built-in ones: ``handler(spec, options)`` returns ``[(device_id, report),
    ...]`` (device_id None for a single model; one entry per device for DCASE25-style packages) or None when
    ``spec`` is not its kind."""
    _SOURCE_HANDLERS.insert(0, handler)
    return handler


def count_source(spec: str, options: SourceOptions | None = None) -> list[tuple[str | None, ComplexityReport]]:
    """Count whatever ``spec`` names: a registered model, a run folder or bundle checkpoint, an ONNX file, or a kind
    added with :func:`register_source`. Returns ``[(device_id, report)]``."""
    options = options or SourceOptions()
    for handler in (*_SOURCE_HANDLERS, _onnx_source, _bundle_source, _registry_source):
        result = handler(spec, options)
        if result is not None:
            return result
    from asc.models.registry import list_models

    known = ", ".join(sorted(s.name for s in list_models()))
    raise ComplexityError(f"{spec}: not a model name (known: {known}), an existing run folder or checkpoint, "
                          "nor an .onnx file")


def _no_overrides(spec: str, options: SourceOptions) -> None:
    if options.overrides:
        raise ConfigError(f"{spec}: config overrides apply to registry model names only, not to saved models")


def _onnx_source(spec: str, options: SourceOptions):
    path = Path(spec)
    if path.suffix.lower() != ".onnx":
        return None
    if not path.is_file():
        raise ComplexityError(f"{path}: ONNX file not found")
    _no_overrides(spec, options)
    input_size = options.input_size
    if options.frames is not None:
        if input_size is not None:
            raise ConfigError("give either an input shape or a number of frames, not both")
        base = count_onnx(path).input_size
        input_size = (*base[:-1], options.frames)
    return [(None, count_onnx(path, input_size, options.precision))]


def _bundle_source(spec: str, options: SourceOptions):
    path = Path(spec)
    if not path.exists():
        return None
    _no_overrides(spec, options)
    from asc.models.registry import load_bundle

    bundle = load_bundle(path)
    input_size = options.input_size
    if input_size is None:
        input_size = frontend_input_size(bundle.frontend, options.frames)
    elif options.frames is not None:
        raise ConfigError("give either an input shape or a number of frames, not both")
    return [(None, count(bundle.model, input_size, options.precision, name=f"{path} ({bundle.model_name})"))]


def _registry_source(spec: str, options: SourceOptions):
    from asc.models.registry import list_models

    if spec not in {s.name for s in list_models()}:
        return None
    return [(None, count_named(spec, options.overrides, options.precision, options.input_size, options.frames))]


# ----------------------------------------------------------------------------------------------------------------
# Budgets


@dataclass(frozen=True)
class Budget:
    """The complexity limits of one challenge edition (``complexity/<edition>.toml``)."""

    edition: str
    max_macs: int
    source: str
    title: str = ""
    max_params: int | None = None  # limit on the parameter count (2022/2023: INT8 counted)
    max_param_bytes: int | None = None  # limit on parameter memory in bytes (2024/2025)
    default_precision: str = "int8"  # precision assumed for a plain float32 model when none is given
    per_device: bool = False  # limits hold for each device-specific model on its own (2025)
    notes: str = ""

    def describe(self) -> str:
        limits = []
        if self.max_params is not None:
            limits.append(f"≤ {self.max_params:,} parameters")
        if self.max_param_bytes is not None:
            limits.append(f"≤ {self.max_param_bytes:,} bytes of parameter memory")
        limits.append(f"≤ {self.max_macs:,} MACs per 1-s clip")
        return f"{self.edition}: " + ", ".join(limits) + (" (each device-specific model)" if self.per_device else "")


def list_budgets() -> list[str]:
    return sorted(p.stem for p in BUDGET_DIR.glob("*.toml"))


def load_budget(edition: str = DEFAULT_EDITION) -> Budget:
    """The budget of ``edition`` (e.g. "dcase2024") from ``complexity/``, or from a TOML file path."""
    path = Path(edition)
    if path.suffix != ".toml":
        path = BUDGET_DIR / f"{edition}.toml"
        if not path.is_file():
            raise ConfigError(f"unknown complexity budget {edition!r}; known: {', '.join(list_budgets()) or 'none'} "
                              f"(files {BUDGET_DIR}/<edition>.toml)")
    budget = from_dict(Budget, read_toml(path), where=str(path))
    if budget.max_params is None and budget.max_param_bytes is None:
        raise ConfigError(f"{path}: give max_params or max_param_bytes")
    if budget.default_precision not in BYTES_PER_PARAM:
        raise ConfigError(f"{path}: default_precision {budget.default_precision!r}: expected one of "
                          f"{', '.join(BYTES_PER_PARAM)}")
    return budget


class Violation(str):
    """One exceeded limit; the string is the message for people, the attributes are for machines."""

    limit: str  # "params", "param_bytes" or "macs"
    figure: int
    maximum: int
    excess: int

    def __new__(cls, limit: str, figure: int, maximum: int, message: str) -> "Violation":
        self = super().__new__(cls, message)
        self.limit, self.figure, self.maximum, self.excess = limit, figure, maximum, figure - maximum
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "figure": self.figure, "maximum": self.maximum, "excess": self.excess,
                "message": str(self)}


def resolve_precision(report: ComplexityReport, budget: Budget, precision: str | None = None) -> str:
    """The precision a check uses: the one given, else the report's, else the model's own (INT8-converted or fp16
    models: as stored; QAT-prepared: int8), else the edition's default for float models."""
    precision = precision or report.precision or report.deployed_precision or budget.default_precision
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision


def check(report: ComplexityReport, budget: Budget, precision: str | None = None) -> list[Violation]:
    """Violations of ``budget`` (empty: within budget); each message names the limit, the figure and the excess."""
    precision = resolve_precision(report, budget, precision)
    out: list[Violation] = []
    params, macs = report.budget_params, report.budget_macs
    if budget.max_params is not None and params > budget.max_params:
        out.append(Violation("params", params, budget.max_params,
                             f"parameters: {params:,} exceed the {budget.edition} limit of "
                             f"{budget.max_params:,} by {params - budget.max_params:,}"))
    if budget.max_param_bytes is not None:
        memory = report.param_bytes(precision)
        if memory > budget.max_param_bytes:
            out.append(Violation("param_bytes", memory, budget.max_param_bytes,
                                 f"parameter memory: {memory:,} bytes at {_precision_text(report, precision)} exceed "
                                 f"the {budget.edition} limit of {budget.max_param_bytes:,} bytes by "
                                 f"{memory - budget.max_param_bytes:,} bytes"))
    if macs > budget.max_macs:
        out.append(Violation("macs", macs, budget.max_macs,
                             f"MACs: {macs:,} exceed the {budget.edition} limit of {budget.max_macs:,} by "
                             f"{macs - budget.max_macs:,}"))
    return out


def fitting_precisions(report: ComplexityReport, budget: Budget) -> list[str]:
    """The precisions (fp32, fp16, int8) at which the parameter limits are met."""
    if budget.max_params is not None and report.params > budget.max_params:
        return []
    if budget.max_param_bytes is None:
        return list(BYTES_PER_PARAM)
    return [p for p in ("fp32", "fp16", "int8") if report.param_bytes(p) <= budget.max_param_bytes]


def memory_advice(report: ComplexityReport, budget: Budget, precision: str | None = None) -> str | None:
    """E.g. "fits dcase2024 only when quantized to int8", when memory is over at ``precision`` but not at all."""
    precision = resolve_precision(report, budget, precision)
    if budget.max_param_bytes is None or report.param_bytes(precision) <= budget.max_param_bytes:
        return None
    fits = fitting_precisions(report, budget)
    macs = "" if report.budget_macs <= budget.max_macs else " (memory only: the MAC limit is still exceeded)"
    if fits == ["int8"]:
        return f"fits {budget.edition} only when quantized to int8 ({report.param_bytes('int8'):,} bytes){macs}"
    if fits:
        return (f"fits {budget.edition} in {' or '.join(fits)} "
                f"({', '.join(f'{p} {report.param_bytes(p):,} bytes' for p in fits)}){macs}")
    return f"does not fit {budget.edition} at any precision: {report.params:,} parameters are too many even in int8"


def budget_advice(report: ComplexityReport, budget: Budget, precision: str | None = None) -> list[str]:
    """Hints beside the verdict: the precisions that would fit, and for ONNX graphs over the MAC limit only because
    BatchNorm is folded into conv biases, the unfused PyTorch model's official figure."""
    hints = [h for h in [memory_advice(report, budget, precision)] if h]
    if report.torch_macs is not None and report.macs != report.torch_macs:
        hints.append(f"judged on the unfused PyTorch model named in the ONNX metadata ({report.torch_macs:,} MACs), "
                     f"as the rules count it; the graph itself, with BatchNorm folded into conv biases, has "
                     f"{report.macs:,}")
    return hints


def _precision_text(report: ComplexityReport, precision: str) -> str:
    if precision != "stored":
        return precision
    return "stored dtypes (" + ", ".join(report.stored_dtypes) + ")"


# ----------------------------------------------------------------------------------------------------------------
# Checking a source against a budget (what ``asc check-complexity`` prints)


@dataclass
class ModelCheck:
    device: str | None
    report: ComplexityReport
    precision: str
    violations: list[Violation]
    advice: list[str]

    @property
    def within_budget(self) -> bool:
        return not self.violations


@dataclass
class CheckResult:
    """Every model a source holds (one per device for DCASE25-style packages) checked against one budget."""

    source: str
    budget: Budget
    models: list[ModelCheck]

    @property
    def within_budget(self) -> bool:
        return all(m.within_budget for m in self.models)

    def to_dict(self, layers: bool = False) -> dict[str, Any]:
        return {
            "source": self.source, "edition": self.budget.edition, "budget": dataclasses.asdict(self.budget),
            "within_budget": self.within_budget,
            "models": [{"device": m.device, "precision": m.precision,
                        "param_bytes": m.report.param_bytes(m.precision), "within_budget": m.within_budget,
                        "violations": [v.to_dict() for v in m.violations], "advice": m.advice,
                        "report": m.report.to_dict(layers=layers)} for m in self.models],
        }

    def format(self, layers: bool = False) -> str:
        lines = []
        for m in self.models:
            title = m.report.name + (f"  [device {m.device}]" if m.device is not None else "")
            lines.append(title)
            if layers and m.report.layers:
                lines += ["", m.report.layer_table(), ""]
            lines += [f"  {line}" for line in m.report.summary_lines()]
            lines.append(f"  budget        {self.budget.describe()}; memory at "
                         f"{_precision_text(m.report, m.precision)}: {m.report.param_bytes(m.precision):,} bytes")
            lines += [f"  OVER          {v}" for v in m.violations]
            lines += [f"  hint          {a}" for a in m.advice]
            lines.append(f"  verdict       {'within' if m.within_budget else 'OVER'} {self.budget.edition} budget")
        if len(self.models) > 1:
            over = [str(m.device) for m in self.models if not m.within_budget]
            lines.append(f"all devices: {'within budget' if not over else 'OVER budget for ' + ', '.join(over)}")
        return "\n".join(lines)


def check_source(spec: str, edition: str = DEFAULT_EDITION, options: SourceOptions | None = None,
                 layers: bool = False) -> CheckResult:
    """Count ``spec`` (see :func:`count_source`) and check each model it holds against the ``edition`` budget."""
    options = options or SourceOptions()
    budget = load_budget(edition)
    models = []
    for device, report in count_source(spec, options):
        precision = resolve_precision(report, budget, options.precision)
        models.append(ModelCheck(device=device, report=report, precision=precision,
                                 violations=check(report, budget, precision),
                                 advice=budget_advice(report, budget, precision)))
    return CheckResult(source=spec, budget=budget, models=models)
