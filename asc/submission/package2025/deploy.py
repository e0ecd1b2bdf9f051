"""The deployed networks of a DCASE 2025 inference package: the multi-device container and parameter precisions.

The organisers count parameter memory as sum(numel x element size) over ``parameters()`` at the stored dtypes, and
MACs with torchinfo on a float32 copy. Every deployed form here is counted correctly by that rule:

- ``fp32`` / ``fp16``: the float network, converted with ``.float()`` / ``.half()``;
- ``int8``: Conv2d, Linear and BatchNorm2d hold their weights and biases as int8 ``nn.Parameter`` tensors (1 byte
  each; symmetric, scale per output channel for conv / linear weights, one scale per tensor otherwise) and
  dequantize them in ``forward``; the scales are buffers, like BatchNorm's running statistics (quantization
  metadata, not parameters, as in the ONNX / PyTorch quantized formats). The modules keep their torch base classes
  and "Conv" in their names, so torchinfo counts conv MACs per output position. Parameters of other modules (such
  as GRN's two scalars) stay float32. Activations are float32.

PyTorch's quantized modules are not used: they keep their packed weights outside ``parameters()``, which the
organisers' script would count as 0 bytes.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

PRECISIONS = ("fp32", "fp16", "int8")
INT8_MAX = 127


class MultiDeviceModel(nn.Module):
    """The general network (``base_model``) and one fine-tuned copy per recording device (``device_models``);
    other and unknown devices use the general network."""

    def __init__(self, base_model: nn.Module, device_models: dict[str, nn.Module] | None = None):
        super().__init__()
        self.base_model = base_model
        self.device_models = nn.ModuleDict(device_models or {})

    def get_model_for_device(self, device_id: str) -> nn.Module:
        return self.device_models[device_id] if device_id in self.device_models else self.base_model

    def forward(self, x: torch.Tensor, device_ids: list[str] | None = None) -> torch.Tensor:
        """Logits [B, n_classes] for log-mels [B, 1, F, T]; each row through its device's network."""
        if device_ids is None:
            return self.base_model(x)
        groups: dict[int, tuple[nn.Module, list[int]]] = {}
        for row, device_id in enumerate(device_ids):
            net = self.get_model_for_device(device_id)
            groups.setdefault(id(net), (net, []))[1].append(row)
        out = None
        for net, rows in groups.values():
            part = net(x[rows].to(activation_dtype(net)))
            if out is None:
                out = part.new_empty((len(device_ids), *part.shape[1:]))
            out[rows] = part
        return out


def activation_dtype(net: nn.Module) -> torch.dtype:
    """The float dtype a network computes in: that of its first float parameter or buffer (float32 if none)."""
    return next((t.dtype for t in itertools.chain(net.parameters(), net.buffers()) if t.is_floating_point()),
                torch.float32)


def deploy(net: nn.Module, precision: str) -> nn.Module:
    """``net`` (in place) in the deployed precision: fp32, fp16 or int8."""
    if precision == "fp32":
        return net.float()
    if precision == "fp16":
        return net.half()
    if precision == "int8":
        return to_int8(net.float())
    raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")


def quantize_symmetric(tensor: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values in [-127, 127], float32 scale [C] or [1]) with ``tensor ~= values * scale``."""
    t = tensor.detach().float()
    if per_channel and t.dim() > 1:
        amax = t.reshape(t.shape[0], -1).abs().amax(dim=1)
    else:
        amax = t.abs().max().reshape(1)
    scale = torch.clamp(amax / INT8_MAX, min=1e-12)
    values = torch.clamp(torch.round(t / scale.view(-1, *[1] * (t.dim() - 1))), -INT8_MAX, INT8_MAX)
    return values.to(torch.int8), scale


def _store_int8(module: nn.Module, name: str, tensor: torch.Tensor | None, per_channel: bool) -> None:
    if tensor is None:
        module.register_buffer(f"{name}_scale", None)
        return
    values, scale = quantize_symmetric(tensor, per_channel)
    setattr(module, name, nn.Parameter(values, requires_grad=False))
    module.register_buffer(f"{name}_scale", scale)


def _dequantized(module: nn.Module, name: str, dtype: torch.dtype) -> torch.Tensor | None:
    values = getattr(module, name)
    if values is None:
        return None
    scale = getattr(module, f"{name}_scale")
    return values.to(dtype) * scale.to(dtype).view(-1, *[1] * (values.dim() - 1))


class Int8Conv2d(nn.Conv2d):
    """Conv2d with int8 weight (scale per output channel) and bias."""

    @classmethod
    def from_float(cls, conv: nn.Conv2d) -> "Int8Conv2d":
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                  padding_mode=conv.padding_mode)
        _store_int8(new, "weight", conv.weight, per_channel=True)
        _store_int8(new, "bias", conv.bias, per_channel=False)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _dequantized(self, "weight", x.dtype), _dequantized(self, "bias", x.dtype))


class Int8Linear(nn.Linear):
    """Linear with int8 weight (scale per output feature) and bias."""

    @classmethod
    def from_float(cls, linear: nn.Linear) -> "Int8Linear":
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        _store_int8(new, "weight", linear.weight, per_channel=True)
        _store_int8(new, "bias", linear.bias, per_channel=False)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _dequantized(self, "weight", x.dtype), _dequantized(self, "bias", x.dtype))


class Int8BatchNorm2d(nn.BatchNorm2d):
    """Inference BatchNorm2d (running statistics) with int8 weight and bias, one scale each."""

    @classmethod
    def from_float(cls, bn: nn.BatchNorm2d) -> "Int8BatchNorm2d":
        new = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum)
        with torch.no_grad():
            new.running_mean.copy_(bn.running_mean)
            new.running_var.copy_(bn.running_var)
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
        _store_int8(new, "weight", bn.weight, per_channel=False)
        _store_int8(new, "bias", bn.bias, per_channel=False)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean.to(x.dtype), self.running_var.to(x.dtype),
                            _dequantized(self, "weight", x.dtype), _dequantized(self, "bias", x.dtype),
                            False, 0.0, self.eps)


def _int8_version(module: nn.Module):
    if type(module) is nn.Conv2d:
        return Int8Conv2d.from_float
    if type(module) is nn.Linear:
        return Int8Linear.from_float
    if type(module) is nn.BatchNorm2d and module.affine and module.track_running_stats:
        return Int8BatchNorm2d.from_float
    return None


def to_int8(net: nn.Module) -> nn.Module:
    """Replace (in place) every Conv2d, Linear and BatchNorm2d by its int8 version."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            convert = _int8_version(child)
            if convert is not None:
                setattr(parent, name, convert(child).to(child.weight.device).train(child.training))
    return net
