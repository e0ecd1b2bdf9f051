"""Counting an ONNX file from its graph: parameters are the initializer elements of weights and biases feeding
Conv / Gemm / MatMul / BatchNormalization (through DequantizeLinear for QDQ models; scales and zero points are not
parameters), bytes from their stored dtypes, MACs from the shapes of ``onnx.shape_inference.infer_shapes``. A graph
exported by asc names its unfused PyTorch model in the metadata; that model's count is the one the rules judge.

``onnx`` is an optional heavy import: it is loaded when a graph is counted."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from torch import nn

from asc.complexity.count import count, frontend_input_size
from asc.complexity.report import ComplexityError, ComplexityReport, LayerRow
from asc.config import from_dict
from asc.frontend import build_frontend
from asc.models.registry import get_spec


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
    spec = get_spec(name)
    return spec.build(from_dict(spec.config_cls, config, where=f"model {name}"))


def _onnx_zeros(tensor, base_dir: Path) -> int:
    from onnx import numpy_helper

    try:
        return int((numpy_helper.to_array(tensor, base_dir=str(base_dir)) == 0).sum())
    except Exception:
        return 0
