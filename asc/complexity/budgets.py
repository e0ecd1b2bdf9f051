"""Budgets as data (packaged in ``asc/resources/complexity/<edition>.toml``: :func:`load_budget`), the check of a
count against one (:func:`check` lists the :class:`Violation` s) and advice for people (the precisions that would
fit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asc import resources
from asc.complexity.report import BYTES_PER_PARAM, PRECISIONS, ComplexityReport
from asc.config import from_dict, read_toml
from asc.errors import ConfigError

DEFAULT_EDITION = "dcase2024"


@dataclass(frozen=True)
class Budget:
    """The complexity limits of one challenge edition (``asc/resources/complexity/<edition>.toml``)."""

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
    return resources.names("complexity")


def load_budget(edition: str = DEFAULT_EDITION) -> Budget:
    """The budget of ``edition`` (e.g. "dcase2024", packaged in ``asc/resources/complexity/``) or of a TOML file."""
    path = resources.locate("complexity", edition, "complexity budget")
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
                                 f"parameter memory: {memory:,} bytes at {precision_text(report, precision)} exceed "
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


def precision_text(report: ComplexityReport, precision: str) -> str:
    if precision != "stored":
        return precision
    return "stored dtypes (" + ", ".join(report.stored_dtypes) + ")"
