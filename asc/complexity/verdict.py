"""What ``asc check-complexity`` prints: every model a source holds (one per device for DCASE25-style packages)
counted and checked against one budget, with the advice and a verdict, for people (:meth:`CheckResult.format`) and
machines (:meth:`CheckResult.to_dict`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from asc.complexity.budgets import (DEFAULT_EDITION, Budget, Violation, budget_advice, check, load_budget,
                                    precision_text, resolve_precision)
from asc.complexity.report import ComplexityReport
from asc.complexity.sources import SourceOptions, count_source


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
                         f"{precision_text(m.report, m.precision)}: {m.report.param_bytes(m.precision):,} bytes")
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
