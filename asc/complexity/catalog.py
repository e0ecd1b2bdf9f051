"""The model zoo at a glance: each registered model's role, front end, parameters and MACs per 1-s clip."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tqdm import tqdm

from asc.complexity.count import count
from asc.frontend import input_shape
from asc.models.registry import ModelSpec, build_frontend_for, build_model, get_spec, list_models


@dataclass
class ModelSummary:
    name: str
    role: str
    frontend: str
    input_shape: tuple[int, int, int, int]  # the front end's output for 1 s (what the MACs are counted on)
    params: int
    macs: int
    description: str

    def to_json(self) -> dict:
        return asdict(self)


def summarize(spec: ModelSpec) -> ModelSummary:
    shape = input_shape(build_frontend_for(spec.name))
    report = count(build_model(spec.name), shape, name=spec.name)
    return ModelSummary(spec.name, spec.role, spec.frontend, shape, report.params, report.macs, spec.description)


def catalog(names: list[str] | None = None, progress: bool = True) -> list[ModelSummary]:
    """Summaries of the registered models (all, or those named; an unknown name is a ConfigError)."""
    specs = list_models() if not names else [get_spec(n) for n in names]
    return [summarize(s) for s in tqdm(specs, desc="count", unit="model", disable=not progress or None, leave=False)]
