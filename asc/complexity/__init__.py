"""Complexity of a model as the DCASE Task 1 organisers count it, and budgets to check it against.

One module per concern:

- :mod:`~asc.complexity.count`: the official torchinfo count (:func:`count`, :func:`count_named`) on the float32
  equivalent built by :mod:`~asc.complexity.float_copy` (quantized, QAT-prepared, pruned, parametrized models;
  module kinds in :mod:`~asc.complexity.kinds`), cross-checked by forward hooks (:mod:`~asc.complexity.crosscheck`);
- :mod:`~asc.complexity.onnx_graph`: ONNX files counted from their graph (:func:`count_onnx`);
- :mod:`~asc.complexity.report`: the :class:`ComplexityReport` both produce;
- :mod:`~asc.complexity.budgets`: budgets per edition as data (``asc/resources/complexity/``), :func:`check`, advice;
- :mod:`~asc.complexity.sources`: what a spec names (registry model, run folder / bundle, ONNX file, or a kind
  registered with :func:`register_source`, such as the DCASE 2025 inference packages of :mod:`asc.submission`);
- :mod:`~asc.complexity.verdict`: :func:`check_source`, what ``asc check-complexity`` prints;
- :mod:`~asc.complexity.catalog`: the model zoo's figures (``asc models list``).

The rules themselves are written down in ``docs/complexity.md``.
"""

from asc.complexity.budgets import (DEFAULT_EDITION, Budget, Violation, budget_advice, check,
                                    fitting_precisions, list_budgets, load_budget, memory_advice, resolve_precision)
from asc.complexity.count import count, count_named, frontend_input_size, split_overrides, torch_threads
from asc.complexity.onnx_graph import count_onnx
from asc.complexity.report import BYTES_PER_PARAM, PRECISIONS, ComplexityError, ComplexityReport, LayerRow
from asc.complexity.sources import SourceHandler, SourceOptions, count_source, register_source
from asc.complexity.verdict import CheckResult, ModelCheck, check_source

__all__ = [
    "BYTES_PER_PARAM", "DEFAULT_EDITION", "PRECISIONS", "Budget", "CheckResult", "ComplexityError",
    "ComplexityReport", "LayerRow", "ModelCheck", "SourceHandler", "SourceOptions", "Violation", "budget_advice",
    "check", "check_source", "count", "count_named", "count_onnx", "count_source", "fitting_precisions",
    "frontend_input_size", "list_budgets", "load_budget", "memory_advice", "register_source", "resolve_precision",
    "split_overrides", "torch_threads",
]
