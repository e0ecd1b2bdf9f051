"""Validate a DCASE 2024 Task 1 submission (zip or its parts) against the official rules, plus sanity checks.

Every problem is collected (none stops the check), each naming the file and row or field.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from asc.submission import rules as R


@dataclass(frozen=True)
class Problem:
    kind: str  # stable short name, e.g. "header", "row_count", "corresponding_author"
    where: str  # file[:row] or meta field
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.where}: {self.message}"


def validate_output(text: str, name: str, rules: R.SubmissionRules) -> list[Problem]:
    """One output CSV: header, columns, labels, probabilities, file names, count and uniqueness."""
    problems: list[Problem] = []
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows:
        return [Problem("empty", name, "output file is empty")]
    header, body = rows[0], rows[1:]
    if header != rules.header:
        problems.append(Problem("header", f"{name}:1", f"header is {header}; expected TAB-separated {rules.header}"))
        if "filename" not in header:
            return problems
    expected = {R.eval_basename(f) for f in rules.eval_files}
    col = {c: i for i, c in enumerate(header)}
    seen: set[str] = set()
    for row_no, row in enumerate(body, start=2):
        where = f"{name}:{row_no}"
        if len(row) != len(rules.header):
            problems.append(Problem("field_count", where, f"{len(row)} fields; expected {len(rules.header)}"))
            continue
        filename = row[col["filename"]]
        if "/" in filename:
            problems.append(Problem("filename", where, f"{filename!r}: write the file name without its folder"))
        base = R.eval_basename(filename)
        if not base.endswith(".wav"):
            problems.append(Problem("filename", where, f"{filename!r}: wrong file extension (use .wav)"))
        if base in seen:
            problems.append(Problem("duplicate", where, f"duplicate file {base}"))
        seen.add(base)
        if base not in expected:
            problems.append(Problem("unknown_file", where, f"{base} is not in the evaluation list"))
        label = row[col["scene_label"]] if "scene_label" in col else ""
        if label not in rules.labels:
            problems.append(Problem("scene_label", where, f"illegal scene label {label!r}"))
        probs = []
        for cls in rules.labels:
            raw = row[col[cls]] if cls in col else ""
            try:
                value = float(raw)
            except ValueError:
                problems.append(Problem("not_float", where, f"{cls}={raw!r} is not a number"))
                continue
            if math.isnan(value) or math.isinf(value):
                problems.append(Problem("nan", where, f"{cls}={raw}"))
            elif not 0.0 <= value <= 1.0:
                problems.append(Problem("probability_range", where, f"{cls}={raw} outside [0, 1]"))
            probs.append(value)
        if len(probs) == len(rules.labels) and all(math.isfinite(p) for p in probs):
            total = sum(probs)
            if abs(total - 1.0) > rules.prob_sum_tolerance:
                problems.append(Problem("probability_sum", where, f"probabilities sum to {total:.6f}, not 1"))
            best = rules.labels[max(range(len(probs)), key=probs.__getitem__)]
            if label in rules.labels and label != best and probs[rules.labels.index(label)] < max(probs):
                problems.append(Problem("argmax", where, f"scene_label {label} is not the most probable class {best}"))
    if len(seen) != len(expected):
        problems.append(Problem("row_count", name, f"{len(seen)} unique files; the evaluation list has {len(expected)}"))
    missing = expected - seen
    if missing and len(seen) <= len(expected):
        problems.append(Problem("missing_files", name, f"{len(missing)} evaluation file(s) have no row, e.g. "
                                                      f"{sorted(missing)[0]}"))
    return problems


def _fields(block, required, where: str, problems: list[Problem]) -> bool:
    if not isinstance(block, dict):
        problems.append(Problem("meta_block", where, "block missing or not a mapping"))
        return False
    missing = [f for f in required if f not in block]
    if missing:
        problems.append(Problem("meta_fields", where, f"missing field(s) {', '.join(missing)}"))
    return True


def _number_or_null(value, where: str, problems: list[Problem]) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        problems.append(Problem("meta_type", where, f"{value!r} is not a number or null"))


def validate_meta(meta, name: str, label: str, rules: R.SubmissionRules) -> list[Problem]:
    """The meta YAML of one system."""
    problems: list[Problem] = []
    if not isinstance(meta, dict):
        return [Problem("meta_block", name, "meta YAML is not a mapping")]
    sub = meta.get("submission")
    if _fields(sub, R.SUBMISSION_FIELDS, f"{name}:submission", problems):
        if sub.get("label") != label:
            problems.append(Problem("label", f"{name}:submission.label",
                                    f"{sub.get('label')!r} differs from the label in the file names {label!r}"))
        if not R.LABEL_PATTERN.match(str(sub.get("label", ""))):
            problems.append(Problem("label", f"{name}:submission.label",
                                    f"{sub.get('label')!r} is not <Lastname>_<Institute>_task1_<1-4>"))
        abbreviation = sub.get("abbreviation")
        if isinstance(abbreviation, str) and len(abbreviation) > R.MAX_ABBREVIATION:
            problems.append(Problem("abbreviation", f"{name}:submission.abbreviation",
                                    f"{abbreviation!r} is longer than {R.MAX_ABBREVIATION} characters"))
        authors = sub.get("authors")
        if not isinstance(authors, list) or not authors:
            problems.append(Problem("authors", f"{name}:submission.authors", "at least one author is required"))
        else:
            for i, author in enumerate(authors):
                _fields(author, R.AUTHOR_FIELDS, f"{name}:submission.authors[{i}]", problems)
            corresponding = sum(1 for a in authors if isinstance(a, dict) and a.get("corresponding") is True)
            if corresponding != 1:
                problems.append(Problem("corresponding_author", f"{name}:submission.authors",
                                        f"{corresponding} corresponding authors; exactly one is required"))
    system = meta.get("system")
    if _fields(system, R.SYSTEM_FIELDS, f"{name}:system", problems):
        _fields(system.get("description"), R.DESCRIPTION_FIELDS, f"{name}:system.description", problems)
        complexity = system.get("complexity")
        if _fields(complexity, R.COMPLEXITY_FIELDS, f"{name}:system.complexity", problems):
            params = complexity.get("total_parameters")
            if not isinstance(params, int) or isinstance(params, bool):
                problems.append(Problem("meta_type", f"{name}:system.complexity.total_parameters",
                                        f"{params!r} is not an integer"))
            for key in ("total_model_size", "macs"):
                if key in complexity:
                    _number_or_null(complexity[key], f"{name}:system.complexity.{key}", problems)
        datasets = system.get("external_datasets") or []
        if not isinstance(datasets, list):
            problems.append(Problem("meta_type", f"{name}:system.external_datasets", "must be a list"))
        else:
            for i, item in enumerate(datasets):
                _fields(item, R.EXTERNAL_DATASET_FIELDS, f"{name}:system.external_datasets[{i}]", problems)
    results = meta.get("results")
    if _fields(results, ("development_dataset",), f"{name}:results", problems):
        dev = results.get("development_dataset")
        if _fields(dev, [f"split_{s}" for s in rules.splits], f"{name}:results.development_dataset", problems):
            for split in rules.splits:
                block = dev.get(f"split_{split}")
                where = f"{name}:results.development_dataset.split_{split}"
                if not _fields(block, ("overall", "class_wise", "device_wise"), where, problems):
                    continue
                _result_item(block.get("overall"), f"{where}.overall", problems)
                for group, keys in (("class_wise", rules.labels), ("device_wise", rules.devices)):
                    sub_block = block.get(group)
                    if _fields(sub_block, keys, f"{where}.{group}", problems):
                        for key in keys:
                            if key in sub_block:
                                _result_item(sub_block[key], f"{where}.{group}.{key}", problems)
    return problems


def _result_item(block, where: str, problems: list[Problem]) -> None:
    if _fields(block, R.RESULT_FIELDS, where, problems):
        for key in R.RESULT_FIELDS:
            _number_or_null(block.get(key), f"{where}.{key}", problems)


def validate_system(label: str, outputs: dict[str, str], meta_text: str, rules: R.SubmissionRules) -> list[Problem]:
    """One system: ``outputs`` maps split -> CSV text, ``meta_text`` is its YAML."""
    problems: list[Problem] = []
    if not R.LABEL_PATTERN.match(label):
        problems.append(Problem("label", label, "submission label must be <Lastname>_<Institute>_task1_<1-4>"))
    for split in rules.splits:
        name = R.output_name(label, split)
        if split not in outputs:
            problems.append(Problem("missing_output", f"task1/{label}/{name}", "output file missing"))
        else:
            problems += validate_output(outputs[split], f"task1/{label}/{name}", rules)
    meta_file = f"task1/{label}/{R.meta_name(label)}"
    try:
        meta = yaml.safe_load(meta_text)
    except yaml.YAMLError as e:
        return problems + [Problem("yaml", meta_file, f"not valid YAML: {e}")]
    return problems + validate_meta(meta, meta_file, label, rules)


def validate_zip(path: str | Path, rules: R.SubmissionRules) -> list[Problem]:
    """A whole 2024 submission zip."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, FileNotFoundError) as e:
        return [Problem("zip", str(path), f"cannot open as a zip file: {e}")]
    problems: list[Problem] = []
    with archive:
        bad = archive.testzip()
        if bad:
            problems.append(Problem("zip", bad, "corrupt member (CRC mismatch)"))
        systems: dict[str, dict] = {}
        for info in archive.infolist():
            name = info.filename
            if info.is_dir():
                continue
            parts = name.split("/")
            if name.lower().endswith(".pdf"):
                continue
            if len(parts) != 3 or parts[0] != "task1":
                problems.append(Problem("zip_layout", name, "expected task1/<Label>/<file>"))
                continue
            label, fname = parts[1], parts[2]
            entry = systems.setdefault(label, {"outputs": {}, "meta": None})
            if fname == R.meta_name(label):
                entry["meta"] = archive.read(name).decode("utf-8")
                continue
            split = next((s for s in rules.splits if fname == R.output_name(label, s)), None)
            if split is None:
                problems.append(Problem("filename", name, f"unexpected file; expected {R.output_name(label, '<N>')} "
                                                          f"or {R.meta_name(label)}"))
            else:
                entry["outputs"][split] = archive.read(name).decode("utf-8")
        if not systems:
            problems.append(Problem("zip_layout", str(path), "no system folder task1/<Label>/ found"))
        if len(systems) > R.MAX_SYSTEMS:
            problems.append(Problem("systems", str(path), f"{len(systems)} systems; at most {R.MAX_SYSTEMS} allowed"))
        for label, entry in sorted(systems.items()):
            if entry["meta"] is None:
                problems.append(Problem("missing_meta", f"task1/{label}/{R.meta_name(label)}", "meta YAML missing"))
                entry["meta"] = "{}"
            problems += validate_system(label, entry["outputs"], entry["meta"], rules)
    return problems
