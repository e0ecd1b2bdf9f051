"""The official count: torchinfo 1.8.0's ``summary(model, input_size=..., verbose=0)`` ``.total_params`` and
``.total_mult_adds`` on an unfused float32 copy of the network (front end excluded; BatchNorm running statistics are
buffers, not parameters), beside the independent hook count of :mod:`asc.complexity.crosscheck`.

Traps handled explicitly (torchinfo alone gets them wrong):

- converted INT8 eager models keep their weights packed outside ``parameters()`` (torchinfo: 0 parameters);
- QAT-prepared / observer-prepared models hide convolutions behind fake-quant children (torchinfo: only the
  BatchNorm MACs);
- pruned weights: the rules count zero-valued parameters, torchinfo counts only the unmasked ones;
- weight-norm / parametrizations: the original parameters are counted, MACs from the effective weight's shape;
- fp16 / bf16 copies: counted on a float32 copy, stored bytes from the real dtypes;
- BatchNorm folding (ONNX export, INT8 conversion) changes the count: both figures are reported.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable

import torch
import torchinfo
from torch import nn

from asc.accel import cpu_threads as torch_threads  # one helper; the public name of asc.complexity stays
from asc.complexity.crosscheck import analytic_count
from asc.complexity.float_copy import float_equivalent, without_parametrizations
from asc.complexity.kinds import deepcopy_model
from asc.complexity.kinds import traits as model_traits
from asc.complexity.report import PRECISIONS, ComplexityError, ComplexityReport, LayerRow
from asc.errors import ConfigError, first_lines
from asc.frontend import input_shape
from asc.models.registry import build_frontend_for, build_model


def _single_threaded(fn):
    """Run ``fn`` with one intra-op thread: the batch-1 passes gain nothing from more, and on a busy machine the
    idle-spinning of extra threads makes them many times slower. The previous setting is restored."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch_threads(1):
            return fn(*args, **kwargs)

    return wrapper


def _torchinfo(model: nn.Module, input_size: tuple[int, ...]):
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
    traits = model_traits(model)
    analytic = analytic_count(model, input_size)
    float_model, changes, unsupported = float_equivalent(model, traits)
    notes: list[str] = []
    warnings: list[str] = []
    layers: list[LayerRow] = []
    try:
        if unsupported:
            raise ComplexityError(f"no float equivalent for {', '.join(unsupported)}")
        mac_model = without_parametrizations(float_model) if traits.parametrized or traits.old_weight_norm \
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
        notes.append(f"torchinfo cannot run a float equivalent of this model ({first_lines(e, 1, root_cause=True)}); "
                     "the figures are the analytic count on its real (packed) weights")
    calls: dict[str, int] = {}
    for row in layers:
        index = calls[row.name] = calls.get(row.name, -1) + 1
        per_call = analytic.per_module.get(row.name, [])
        row.check_macs = per_call[index] if index < len(per_call) else None
    raw = None
    if traits.any:
        try:
            raw_stats = _torchinfo(deepcopy_model(model).eval(), input_size)
            raw = {"params": int(raw_stats.total_params), "macs": int(raw_stats.total_mult_adds)}
            if (raw["params"], raw["macs"]) != (params, macs):
                notes.append(f"torchinfo on the model as given reports {raw['params']:,} parameters and "
                             f"{raw['macs']:,} MACs: wrong for this model, corrected above")
        except Exception as e:
            raw = {"error": first_lines(e, 1, root_cause=True)}
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


@_single_threaded
def frontend_input_size(frontend: nn.Module, frames: int | None = None) -> tuple[int, ...]:
    """(1, 1, F, T) the front end produces for 1 s of audio (T replaced by ``frames`` if given)."""
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
    model_overrides, frontend_overrides = split_overrides(overrides)
    model = build_model(name, model_overrides)
    if input_size is None:
        input_size = frontend_input_size(build_frontend_for(name, frontend_overrides), frames)
    elif frames is not None:
        raise ConfigError("give either an input size or a number of frames, not both")
    return count(model, input_size, precision=precision, name=name)
