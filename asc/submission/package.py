"""Build the DCASE 2024 Task 1 submission zip from a TOML description of up to four systems.

For each system and split the model predicts the evaluation set; the meta YAML is filled from the runs themselves
(complexity from the complexity checker, development results from ``asc evaluate``) and the TOML's descriptive
fields. Everything is validated before the zip is written, atomically.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from asc.complexity import BYTES_PER_PARAM, SourceOptions, check_source, load_budget
from asc.config import load_config
from asc.data.layout import open_eval_set
from asc.errors import AscError
from asc.evaluate import evaluate
from asc.fileio import atomic_path, check_writable
from asc.submission import rules as R
from asc.submission.predict import predict_eval_set
from asc.submission.validate import validate_system


class SubmissionError(AscError):
    """A submission cannot be built from the given configuration or models (CLI exit code 2)."""


class SubmissionRejected(SubmissionError):
    """The submission would break a challenge rule: a system over the complexity budget, or an error of the official
    validation (CLI exit code 1, as ``asc check-complexity`` over budget and ``asc validate-submission``)."""

    exit_code = 1


@dataclass
class Author:
    lastname: str
    firstname: str
    email: str
    affiliation: str
    corresponding: bool = False


@dataclass
class SystemConfig:
    index: int
    name: str
    abbreviation: str
    models: dict[str, str]  # split ("5" … "100") -> run folder, bundle .pt or .onnx
    precision: str = "fp16"  # precision of the deployed parameters (total_model_size, budget check)
    description: dict[str, Any] = field(default_factory=dict)
    external_datasets: list[dict[str, Any]] = field(default_factory=list)
    source_code: str = ""


@dataclass
class PackageConfig:
    lastname: str = ""
    institute: str = ""
    eval_set: str = ""  # evaluation-set folder (evaluation_setup/fold1_test.csv, audio/)
    dev_data: str = ""  # development dataset root, for the dev-test results in the meta YAML
    authors: list[Author] = field(default_factory=list)
    systems: list[SystemConfig] = field(default_factory=list)
    technical_report: str = ""
    edition: str = "dcase2024"
    labels: list[str] = field(default_factory=list)  # the class list, in output order (default: the ten TAU scenes)
    out: str = ""
    batch_size: int = 0  # clips per batch when predicting; 0 = the device's default
    device: str = "auto"  # where the models run: auto, cpu, cuda, cuda:N
    autocast: str = "auto"  # mixed precision of PyTorch models: auto (GPU only), off, bf16, fp16


DESCRIPTION_DEFAULTS = {
    "input_sampling_rate": 32, "acoustic_features": "log-mel energies", "data_augmentation": "",
    "machine_learning_method": "CNN", "external_data_usage": "", "complexity_management": "",
    "pipeline": "", "framework": "pytorch", "split_adaptations": "", "system_adaptations": "",
}


def load_package_config(path: str | Path, overrides: list[str] | None = None) -> PackageConfig:
    cfg = load_config(PackageConfig, path, overrides)
    base = Path(path).resolve().parent
    for attr in ("eval_set", "dev_data", "technical_report", "out"):
        value = getattr(cfg, attr)
        if value and not Path(value).is_absolute():
            setattr(cfg, attr, os.path.normpath(base / value))
    for system in cfg.systems:
        system.models = {s: m if Path(m).is_absolute() else os.path.normpath(base / m) for s, m in system.models.items()}
    return cfg


def official_labels(cfg: PackageConfig) -> list[str]:
    """The classes a submission must predict: the package TOML's ``labels``, else the official ten scenes."""
    return list(cfg.labels) or list(R.TAU_SCENES)


def system_label(cfg: PackageConfig, system: SystemConfig) -> str:
    return f"{cfg.lastname}_{cfg.institute}_task1_{system.index}"


def dev_results(model_path: str, cfg: PackageConfig, labels: list[str], devices: list[str]) -> dict[str, Any]:
    """overall / class_wise / device_wise blocks (accuracy in percent, log loss) from the dev-test evaluation."""
    metrics = evaluate(model_path, cfg.dev_data, split="test", progress=False, batch_size=cfg.batch_size or None,
                       device=cfg.device, autocast=cfg.autocast)

    def item(block: dict | None) -> dict[str, Any]:
        if not block or not block.get("n"):
            return {"accuracy": None, "logloss": None}
        return {"accuracy": round(100.0 * block["accuracy"], 2), "logloss": round(float(block["log_loss"]), 4)}

    return {
        "overall": {"accuracy": round(100.0 * metrics["macro_accuracy"], 2),
                    "logloss": round(float(metrics["log_loss"]), 4)},
        "class_wise": {c: item(metrics["per_class"].get(c)) for c in labels},
        "device_wise": {d: item(metrics["per_device"].get(d)) for d in devices},
    }


def system_complexity(models: dict[str, str], precision: str, edition: str,
                      label: str = "") -> tuple[dict[str, int], list[str]]:
    """The official figures of a system (the largest over its split models; for an ONNX model those of the unfused
    PyTorch model it was exported from, as the rules count), and comment lines with the ONNX graph's own figures.
    A model over the ``edition`` budget at ``precision`` is refused with the checker's message."""
    sizes, params, macs = [], [], []
    graph: dict[str, list[str]] = {}  # ONNX graph figures -> splits
    checked: dict[str, Any] = {}
    for split, path in models.items():
        if str(path) not in checked:
            checked[str(path)] = check_source(str(path), edition, SourceOptions(precision=precision))
        for model in checked[str(path)].models:
            if not model.within_budget:
                hints = "".join(f"; {a}" for a in model.advice)
                raise SubmissionRejected(f"system {label} split {split} ({path}) is over the {edition} budget at "
                                         f"{precision}: {'; '.join(model.violations)}{hints}")
            report = model.report
            params.append(int(report.budget_params))
            macs.append(int(report.budget_macs))
            sizes.append(int(report.budget_params) * BYTES_PER_PARAM[precision])
            if report.method == "onnx" and (report.params, report.macs) != (report.budget_params, report.budget_macs):
                figures = (f"ONNX graph (BatchNorm folded) {report.params:,} parameters, {report.macs:,} MACs, "
                           f"{report.stored_bytes:,} bytes stored")
                graph.setdefault(figures, []).append(split)
    official = {"total_model_size": max(sizes), "total_parameters": max(params), "macs": max(macs)}
    return official, [f"split{'s' if len(s) > 1 else ''} {', '.join(s)}: {f}" for f, s in graph.items()]


def with_comments(meta_text: str, key: str, comments: list[str]) -> str:
    """``meta_text`` with ``# comment`` lines after the first line holding ``key:`` (at that line's indent)."""
    if not comments:
        return meta_text
    lines = meta_text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{key}:"):
            indent = line[:len(line) - len(line.lstrip())]
            lines[i + 1:i + 1] = [f"{indent}# {c}" for c in comments]
            break
    return "\n".join(lines) + "\n"


def build_meta(cfg: PackageConfig, system: SystemConfig, results: dict[str, Any],
               complexity: dict[str, int]) -> dict[str, Any]:
    return {
        "submission": {
            "label": system_label(cfg, system), "name": system.name, "abbreviation": system.abbreviation,
            "authors": [vars(a).copy() for a in cfg.authors],
        },
        "system": {
            "description": {**DESCRIPTION_DEFAULTS, **system.description},
            "complexity": complexity,
            "external_datasets": system.external_datasets,
            "source_code": system.source_code,
        },
        "results": {"development_dataset": results},
    }


def _ordered(table, labels: list[str], where: str):
    """The output table with its class columns in ``labels`` order; other classes are refused."""
    predicted = list(table.columns[2:])
    if sorted(predicted) != sorted(labels):
        raise SubmissionRejected(f"{where} predicts {predicted}, not the submission's classes {labels} (the official "
                                 "scenes unless the package TOML sets labels = [...])")
    return table[["filename", "scene_label", *labels]]


def build_package(cfg: PackageConfig, progress: bool = True, warn: Callable[[str], None] | None = None) -> Path:
    """Check the budget, predict, evaluate, validate, then write the zip atomically. Returns the zip path.

    Errors of the official rules refuse the build (:class:`SubmissionRejected`); the validator's own sanity warnings
    go to ``warn``."""
    if not cfg.systems:
        raise SubmissionError("no [[systems]] in the package config")
    if len(cfg.systems) > R.MAX_SYSTEMS:
        raise SubmissionRejected(f"{len(cfg.systems)} systems; the rules allow at most {R.MAX_SYSTEMS}")
    out = check_writable(cfg.out or f"submissions/{cfg.lastname}_{cfg.institute}_task1.zip", "submission zip")
    eval_set = open_eval_set(cfg.eval_set)
    report = Path(cfg.technical_report) if cfg.technical_report else None
    if report is not None and not report.is_file():
        raise SubmissionError(f"{report}: technical report not found")
    labels = official_labels(cfg)
    rules = R.SubmissionRules(eval_files=list(eval_set.files["filename"]), labels=labels)
    budget = load_budget(cfg.edition)
    members: dict[str, bytes] = {}
    problems = []
    for system in cfg.systems:
        label = system_label(cfg, system)
        missing = [s for s in R.SPLITS if s not in system.models]
        if missing:
            raise SubmissionError(f"system {label}: no model for split(s) {', '.join(missing)} in [systems.models]")
        if system.precision not in BYTES_PER_PARAM:
            raise SubmissionError(f"system {label}: precision {system.precision!r}; expected one of "
                                  f"{', '.join(BYTES_PER_PARAM)}")
        models = {s: system.models[s] for s in R.SPLITS}
        complexity, graph = system_complexity(models, system.precision, cfg.edition, label)
        outputs: dict[str, str] = {}
        results: dict[str, Any] = {}
        for split, model in models.items():
            table = _ordered(predict_eval_set(model, cfg.eval_set, batch_size=cfg.batch_size or None,
                                              progress=progress, device=cfg.device, autocast=cfg.autocast),
                             labels, f"system {label} split {split} ({model})")
            outputs[split] = table.to_csv(sep="\t", index=False, float_format="%.6f")
            results[f"split_{split}"] = dev_results(model, cfg, labels, R.TAU_DEVICES)
        meta_text = yaml.safe_dump(build_meta(cfg, system, results, complexity), sort_keys=False, allow_unicode=True)
        meta_text = with_comments(meta_text, "macs", graph)
        problems += validate_system(label, outputs, meta_text, rules, budget=budget)
        for split, text in outputs.items():
            members[f"task1/{label}/{R.output_name(label, split)}"] = text.encode("utf-8")
        members[f"task1/{label}/{R.meta_name(label)}"] = meta_text.encode("utf-8")
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        listing = "\n  ".join(str(p) for p in errors[:20])
        raise SubmissionRejected(f"the submission does not pass validation ({len(errors)} error(s)); nothing "
                                 f"written:\n  {listing}")
    for p in problems:
        if warn is not None:
            warn(str(p))
    if report is not None:
        members[f"task1/{cfg.lastname}_{cfg.institute}_task1_technical_report.pdf"] = report.read_bytes()
    with atomic_path(out, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
    return out


def rules_for(eval_root: str | Path, labels: list[str] | None = None) -> R.SubmissionRules:
    """Validation rules for an evaluation set (the TAU scenes unless other labels are given)."""
    files = list(open_eval_set(eval_root).files["filename"])
    return R.SubmissionRules(eval_files=files, labels=labels or list(R.TAU_SCENES))


def summary_json(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return json.dumps({"zip": str(path), "members": archive.namelist()}, indent=2)
