"""Complexity of a DCASE 2025 inference package module, measured the way the organisers' ``test_complexity.py``
does (github.com/CPJKU/dcase2025_task1_inference), and its registration as a source of ``asc check-complexity``.

Their procedure, per device id a, b, c, s1 … s10: ``model = load_model()``; one input per device from
``load_inputs([resources/dummy.wav] * 13, device_ids, model)``; for each, the network
``get_model_for_device(model, device_id)``; MACs = torchinfo ``summary(deepcopy(net).float(), input_size=input.shape,
verbose=0).total_mult_adds``; parameter memory = sum(numel x bytes of the dtype) over ``net.parameters()`` at
their stored dtypes (a fixed table; other dtypes are an error). Limits: 30,000,000 MACs and 128,000 bytes each.
asc also counts each network with :func:`asc.complexity.count` (per-layer table, cross-check); where the two
disagree the organisers' figures are reported, with a warning. ``unknown`` is measured too (the general network).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import importlib.util
import re
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Iterator

import torch
import torchinfo
from torch import nn

from asc.complexity import ComplexityError, ComplexityReport, SourceOptions, count, register_source, torch_threads

ORGANISER_DEVICE_IDS = ("a", "b", "c", *(f"s{i}" for i in range(1, 11)))
DEVICE_IDS_2025 = (*ORGANISER_DEVICE_IDS, "unknown")
ORGANISER_DTYPE_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2, torch.int8: 1, torch.uint8: 1,
                         torch.int32: 4, torch.qint8: 1, torch.quint8: 1}
MODULE_NAME = re.compile(r"^(?P<package>[A-Za-z_]\w*)\.(?P=package)_(?P<index>\d+)$")


def organisers_param_bytes(net: nn.Module) -> int:
    """Parameter memory as the organisers count it: every ``parameters()`` tensor at its stored dtype."""
    total = 0
    for name, param in net.named_parameters():
        if param.dtype not in ORGANISER_DTYPE_BYTES:
            raise ComplexityError(f"parameter {name} has dtype {param.dtype}, which the organisers' complexity "
                                  f"script does not count (it supports {', '.join(map(str, ORGANISER_DTYPE_BYTES))})")
        total += param.numel() * ORGANISER_DTYPE_BYTES[param.dtype]
    return total


def organisers_macs(net: nn.Module, input_size: tuple[int, ...]) -> int:
    """torchinfo's total_mult_adds on a float32 copy of ``net``, as the organisers run it."""
    return int(torchinfo.summary(copy.deepcopy(net).float(), input_size=tuple(input_size), verbose=0).total_mult_adds)


@contextlib.contextmanager
def inference_module(spec: str | Path) -> Iterator[ModuleType]:
    """Import a package module given as a file ``<dir>/<Label>/<Label>_<n>.py`` (not installed: loaded from its
    folder, ``sys.path`` untouched, removed from ``sys.modules`` afterwards) or as ``<Label>.<Label>_<n>``
    (installed)."""
    path = Path(spec)
    if path.suffix != ".py":
        try:
            yield importlib.import_module(str(spec))
        except ImportError as e:
            raise ComplexityError(f"{spec}: cannot import the inference module ({e})") from None
        return
    package_dir = path.resolve().parent
    package = package_dir.name
    if not (package_dir / "__init__.py").is_file():
        raise ComplexityError(f"{path}: not inside a package folder (no {package_dir / '__init__.py'})")
    shadowed = {k: v for k, v in sys.modules.items() if k == package or k.startswith(package + ".")}
    for key in shadowed:
        del sys.modules[key]
    try:
        spec_ = importlib.util.spec_from_file_location(package, package_dir / "__init__.py",
                                                       submodule_search_locations=[str(package_dir)])
        module = importlib.util.module_from_spec(spec_)
        sys.modules[package] = module
        spec_.loader.exec_module(module)
        try:
            inference = importlib.import_module(f"{package}.{path.stem}")
        except ImportError as e:
            raise ComplexityError(f"{path}: cannot import the inference module ({e})") from None
        yield inference
    finally:
        for key in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
            del sys.modules[key]
        sys.modules.update(shadowed)


def measure_module(module: ModuleType,
                   device_ids: tuple[str, ...] = DEVICE_IDS_2025) -> list[tuple[str, ComplexityReport]]:
    """``[(device_id, report)]`` of an inference module, by the organisers' procedure (see the module docstring);
    each report's memory is at the stored dtypes. Batch-1 passes run on one thread (faster on a busy machine)."""
    with torch_threads(1):
        return _measure(module, device_ids)


def _measure(module: ModuleType, device_ids: tuple[str, ...]) -> list[tuple[str, ComplexityReport]]:
    package = module.__name__.split(".")[0]
    model = module.load_model()
    dummy = resources.files(f"{package}.resources") / "dummy.wav"
    with resources.as_file(dummy) as dummy_path:
        inputs = module.load_inputs([str(dummy_path)] * len(device_ids), list(device_ids), model)
    if len(inputs) != len(device_ids):
        raise ComplexityError(f"{module.__name__}.load_inputs returned {len(inputs)} inputs for {len(device_ids)} "
                              "files; the template's contract is one input per file")
    reports: dict[int, ComplexityReport] = {}
    out = []
    for device, x in zip(device_ids, inputs):
        net = module.get_model_for_device(model, device)
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ComplexityError(f"{module.__name__}.load_inputs: input for device {device} is "
                                  f"{getattr(x, 'shape', type(x).__name__)}; expected one tensor [1, 1, F, T]")
        key = id(net)
        if key not in reports:
            report = count(net, tuple(x.shape), precision="stored", name=module.__name__)
            official = (organisers_macs(net, tuple(x.shape)), organisers_param_bytes(net))
            if (report.macs, report.stored_bytes) != official:
                report = dataclasses.replace(report, macs=official[0], stored_bytes=official[1], warnings=[
                    *report.warnings, f"the organisers' script counts {official[0]:,} MACs and {official[1]:,} bytes "
                    f"for this network; asc's own count gives {report.macs:,} MACs and {report.stored_bytes:,} "
                    f"bytes (the organisers' figures are reported)"])
            reports[key] = report
        out.append((device, reports[key]))
    return out


def is_package_module(spec: str) -> bool:
    """Whether ``spec`` names an inference package module: a ``.py`` file or ``<Label>.<Label>_<n>``."""
    path = Path(spec)
    return (path.suffix == ".py" and path.is_file()) or bool(MODULE_NAME.match(spec))


def package_source(spec: str, options: SourceOptions):
    """``asc check-complexity`` source handler: a 2025 package module (file or installed dotted name)."""
    if not is_package_module(spec):
        return None
    if options.overrides or options.input_size is not None or options.frames is not None:
        raise ComplexityError(f"{spec}: an inference package is measured on its own inputs (load_inputs on its "
                              "dummy.wav); config overrides, --input-shape and --frames do not apply")
    with inference_module(spec) as module:
        measured = measure_module(module)
    if options.precision not in (None, "stored"):
        measured = [(d, dataclasses.replace(r, precision=options.precision)) for d, r in measured]
    return measured


register_source(package_source)
