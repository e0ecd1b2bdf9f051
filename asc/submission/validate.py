"""Validate a DCASE 2024 Task 1 submission (zip or its parts): official rules and own sanity checks, kept apart.

Every problem is collected (none stops the check), each naming the file and row or field, with a severity:

- ``error``: an official rule as the organisers' 2024 validator applies it, plus two rules of the submission
  instructions it does not check: an output file for each of the five splits, at most four systems. Otherwise a zip
  the official validator accepts has no errors here: column order, UTF-8 names, YAML truthy values
  (``corresponding: yes``), numeric strings (``total_parameters: "61148"``) and extra files outside ``task1/`` are
  all accepted.
- ``warning``: own sanity checks the official validator does not make (probabilities that are NaN, outside [0, 1]
  or do not sum to 1, a scene label that is not the most probable class, file names with a folder, a system index
  outside 1-4, figures above the complexity limits, incomplete or non-numeric development results, stray files).

Row-level problems are reported once per kind and file, with the first row and the number of rows.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from asc.submission import rules as R

ERROR, WARNING = "error", "warning"
OUTPUT_SUFFIX = re.compile(r"\.output\.split_(?P<split>\d+)\.csv$")


@dataclass(frozen=True)
class Problem:
    kind: str  # stable short name, e.g. "header", "row_count", "corresponding_author"
    where: str  # file[:row] or meta field
    message: str
    severity: str = ERROR  # "error" (official rule) or "warning" (own sanity check)

    def __str__(self) -> str:
        return f"{self.severity}: [{self.kind}] {self.where}: {self.message}"


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR]


class _RowProblems:
    """Row-level problems of one file, one entry per kind: first row, its message, and how many rows."""

    def __init__(self, name: str):
        self.name = name
        self.first: dict[str, tuple[int, str, str]] = {}
        self.count: dict[str, int] = {}

    def add(self, kind: str, row: int, message: str, severity: str = ERROR) -> None:
        self.first.setdefault(kind, (row, message, severity))
        self.count[kind] = self.count.get(kind, 0) + 1

    def problems(self) -> list[Problem]:
        out = []
        for kind, (row, message, severity) in self.first.items():
            more = self.count[kind] - 1
            out.append(Problem(kind, f"{self.name}:{row}", message + (f" (and {more:,} more rows)" if more else ""),
                               severity))
        return out


def _is_float(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def _is_int(value) -> bool:
    """The official validator's integer test: ``int(value)`` succeeds (61148, "61148", 61148.0)."""
    try:
        int(value)
        return value is not None
    except (TypeError, ValueError):
        return False


def validate_output(text: str, name: str, rules: R.SubmissionRules) -> list[Problem]:
    """One output CSV: header, fields, file names, labels, probabilities, count and uniqueness."""
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows:
        return [Problem("empty", name, "output file is empty")]
    header, body = rows[0], rows[1:]
    problems: list[Problem] = []
    missing = [c for c in rules.header if c not in header]
    if missing:
        problems.append(Problem("header", f"{name}:1", f"header lacks {missing}; expected the TAB-separated fields "
                                                       f"{rules.header} (in any order)"))
        if "filename" not in header:
            return problems
    extra = [c for c in header if c not in rules.header]
    if extra:
        problems.append(Problem("header", f"{name}:1", f"unexpected column(s) {extra}; expected exactly "
                                                       f"{len(rules.header)} fields"))
    expected = {R.eval_basename(f) for f in rules.eval_files}
    col = {c: i for i, c in enumerate(header)}
    rows_with = _RowProblems(name)
    seen: set[str] = set()
    for row_no, row in enumerate(body, start=2):
        if len(row) != len(rules.header):
            rows_with.add("field_count", row_no, f"{len(row)} fields; expected {len(rules.header)}")
        if col["filename"] >= len(row):
            continue
        filename = row[col["filename"]]
        base = R.eval_basename(filename)
        if base != filename:
            rows_with.add("filename_folder", row_no, f"{filename!r}: the file name is usually written without its "
                                                     "folder (accepted)", WARNING)
        if not base.endswith(".wav"):
            rows_with.add("filename", row_no, f"{filename!r}: wrong file extension (use .wav)")
        if base in seen:
            rows_with.add("duplicate", row_no, f"duplicate file {base}")
        seen.add(base)
        if base not in expected:
            rows_with.add("unknown_file", row_no, f"{base} is not in the evaluation list")
        label = row[col["scene_label"]] if col.get("scene_label", len(row)) < len(row) else ""
        if label not in rules.labels:
            rows_with.add("scene_label", row_no, f"illegal scene label {label!r}")
        probs = []
        for cls in rules.labels:
            if col.get(cls, len(row)) >= len(row):
                continue
            raw = row[col[cls]]
            if not _is_float(raw):
                rows_with.add("not_float", row_no, f"{cls}={raw!r} is not a number")
                continue
            value = float(raw)
            if not math.isfinite(value):
                rows_with.add("nan", row_no, f"{cls}={raw} is not a finite probability", WARNING)
            elif not 0.0 <= value <= 1.0:
                rows_with.add("probability_range", row_no, f"{cls}={raw} outside [0, 1]", WARNING)
            probs.append(value)
        if len(probs) == len(rules.labels) and all(math.isfinite(p) for p in probs):
            total = sum(probs)
            if abs(total - 1.0) > rules.prob_sum_tolerance:
                rows_with.add("probability_sum", row_no, f"probabilities sum to {total:.6f}, not 1", WARNING)
            best = rules.labels[max(range(len(probs)), key=probs.__getitem__)]
            if label in rules.labels and label != best and probs[rules.labels.index(label)] < max(probs):
                rows_with.add("argmax", row_no, f"scene_label {label} is not the most probable class {best}",
                              WARNING)
    problems += rows_with.problems()
    if len(seen) != len(expected):
        problems.append(Problem("row_count", name, f"{len(seen)} unique files; the evaluation list has {len(expected)}"))
    absent = expected - seen
    if absent and len(seen) <= len(expected):
        problems.append(Problem("missing_files", name, f"{len(absent)} evaluation file(s) have no row, e.g. "
                                                       f"{sorted(absent)[0]}"))
    return problems


def _fields(block, required, where: str, problems: list[Problem], severity: str = ERROR) -> bool:
    if not isinstance(block, dict):
        problems.append(Problem("meta_block", where, "block missing or not a mapping", severity))
        return False
    missing = [f for f in required if f not in block]
    if missing:
        problems.append(Problem("meta_fields", where, f"missing field(s) {', '.join(missing)}", severity))
    return True


def label_problems(label, where: str) -> list[Problem]:
    """A submission label is ``<Lastname>_<Institute>_task1_<1-4>``: four '_'-separated parts (any letters)."""
    parts = str(label).split("_")
    if len(parts) != 4 or parts[2] != "task1":
        return [Problem("label", where, f"{label!r} is not <Lastname>_<Institute>_task1_<1-4> (four parts "
                                        "separated by '_', the third 'task1')")]
    if parts[3] not in ("1", "2", "3", "4"):
        return [Problem("label_index", where, f"{label!r}: the submission instructions number systems 1-4",
                        WARNING)]
    return []


def validate_meta(meta, name: str, label: str, rules: R.SubmissionRules, budget=None) -> list[Problem]:
    """The meta YAML of one system (``label``: the one in the output file names). ``budget``: an
    :class:`asc.complexity.Budget` whose limits the reported complexity is compared with (warnings)."""
    problems: list[Problem] = []
    if not isinstance(meta, dict):
        return [Problem("meta_block", name, "meta YAML is not a mapping")]
    sub = meta.get("submission")
    if _fields(sub, R.SUBMISSION_FIELDS, f"{name}:submission", problems):
        if "label" in sub:
            problems += label_problems(sub["label"], f"{name}:submission.label")
            if sub["label"] != label:
                problems.append(Problem("label", f"{name}:submission.label",
                                        f"{sub['label']!r} differs from the label in the file names {label!r}"))
        abbreviation = sub.get("abbreviation")
        if abbreviation is not None and not isinstance(abbreviation, str):
            problems.append(Problem("abbreviation", f"{name}:submission.abbreviation", f"{abbreviation!r} is not text"))
        elif isinstance(abbreviation, str) and len(abbreviation) > R.MAX_ABBREVIATION:
            problems.append(Problem("abbreviation", f"{name}:submission.abbreviation",
                                    f"{abbreviation!r} is longer than {R.MAX_ABBREVIATION} characters"))
        authors = sub.get("authors")
        if not isinstance(authors, list) or not authors:
            problems.append(Problem("authors", f"{name}:submission.authors", "a list of at least one author is "
                                                                             "required"))
        else:
            for i, author in enumerate(authors):
                _fields(author, R.AUTHOR_FIELDS, f"{name}:submission.authors[{i}]", problems)
            corresponding = sum(1 for a in authors if isinstance(a, dict) and a.get("corresponding"))
            if corresponding != 1:
                problems.append(Problem("corresponding_author", f"{name}:submission.authors",
                                        f"{corresponding} corresponding authors; exactly one is required"))
    system = meta.get("system")
    if _fields(system, R.SYSTEM_FIELDS, f"{name}:system", problems):
        if "description" in system:
            _fields(system["description"], R.DESCRIPTION_FIELDS, f"{name}:system.description", problems)
        complexity = system.get("complexity")
        if _fields(complexity, R.COMPLEXITY_FIELDS, f"{name}:system.complexity", problems):
            _complexity_problems(complexity, f"{name}:system.complexity", budget, problems)
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
                if f"split_{split}" in dev:
                    _split_results(dev[f"split_{split}"], f"{name}:results.development_dataset.split_{split}", rules,
                                   problems)
    return problems


def _complexity_problems(complexity: dict, where: str, budget, problems: list[Problem]) -> None:
    params = complexity.get("total_parameters")
    if "total_parameters" in complexity and not _is_int(params):
        problems.append(Problem("meta_type", f"{where}.total_parameters", f"{params!r} is not an integer"))
    for key in ("total_model_size", "macs"):
        if key in complexity and complexity[key] is not None and not _is_float(complexity[key]):
            problems.append(Problem("meta_type", f"{where}.{key}", f"{complexity[key]!r} is not a number", WARNING))
    if budget is None:
        return
    limits = {"macs": budget.max_macs, "total_model_size": budget.max_param_bytes, "total_parameters":
              budget.max_params}
    for key, limit in limits.items():
        value = complexity.get(key)
        if limit is not None and _is_float(value) and float(value) > limit:
            problems.append(Problem("over_budget", f"{where}.{key}", f"{float(value):,.0f} exceeds the "
                                                                     f"{budget.edition} limit of {limit:,}", WARNING))


def _split_results(block, where: str, rules: R.SubmissionRules, problems: list[Problem]) -> None:
    """Development results of one split: required by the meta template, not checked by the official validator."""
    if not _fields(block, ("overall", "class_wise", "device_wise"), where, problems, WARNING):
        return
    if "overall" in block:
        _result_item(block["overall"], f"{where}.overall", problems)
    for group, keys in (("class_wise", rules.labels), ("device_wise", rules.devices)):
        sub_block = block.get(group)
        if _fields(sub_block, keys, f"{where}.{group}", problems, WARNING):
            for key in keys:
                if key in sub_block:
                    _result_item(sub_block[key], f"{where}.{group}.{key}", problems)


def _result_item(block, where: str, problems: list[Problem]) -> None:
    if _fields(block, R.RESULT_FIELDS, where, problems, WARNING):
        for key in R.RESULT_FIELDS:
            value = block.get(key)
            if value is not None and (isinstance(value, bool) or not _is_float(value)):
                problems.append(Problem("meta_type", f"{where}.{key}", f"{value!r} is not a number or null", WARNING))


def validate_system(label: str, outputs: dict[str, str], meta_text: str, rules: R.SubmissionRules,
                    folder: str | None = None, budget=None) -> list[Problem]:
    """One system: ``outputs`` maps split -> CSV text of ``<label>.output.split_<N>.csv``, ``meta_text`` is the
    YAML of ``<label>.meta.yaml``; ``folder`` the zip folder holding them (default ``task1/<label>``)."""
    folder = folder or f"task1/{label}"
    problems: list[Problem] = []
    for split in rules.splits:
        name = f"{folder}/{R.output_name(label, split)}"
        if split not in outputs:
            problems.append(Problem("missing_output", name, "output file missing (the rules require one per split)"))
        else:
            problems += validate_output(outputs[split], name, rules)
    meta_file = f"{folder}/{R.meta_name(label)}"
    try:
        meta = yaml.safe_load(meta_text)
    except yaml.YAMLError as e:
        return problems + [Problem("yaml", meta_file, f"not valid YAML: {e}")]
    return problems + validate_meta(meta, meta_file, label, rules, budget)


def validate_zip(path: str | Path, rules: R.SubmissionRules, budget=None) -> list[Problem]:
    """A whole 2024 submission zip. Files are grouped as the official validator does: members whose path contains
    ``task1`` (PDFs and folders aside) by their folder; others, such as a README at the root, are not part of it."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, FileNotFoundError, IsADirectoryError) as e:
        return [Problem("zip", str(path), f"cannot open as a zip file: {e}")]
    problems: list[Problem] = []
    with archive:
        bad = archive.testzip()
        if bad:
            return [Problem("zip", bad, "corrupt member (CRC mismatch)")]
        folders: dict[str, dict] = {}
        for info in archive.infolist():
            name = info.filename
            if info.is_dir() or "task1" not in name or ".pdf" in name.lower():
                continue
            folder, _, fname = name.rpartition("/")
            if folder.split("/")[0] != "task1":
                problems.append(Problem("zip_layout", name, "expected task1/<Label>/<file>"))
                continue
            entry = folders.setdefault(folder, {"outputs": {}, "meta": None})
            split = OUTPUT_SUFFIX.search(fname)
            if split and split.group("split") in rules.splits:
                entry["outputs"][fname] = (split.group("split"), archive.read(name).decode("utf-8"))
            elif fname.endswith(".meta.yaml"):
                entry["meta"] = (fname, archive.read(name).decode("utf-8"))
            else:
                problems.append(Problem("unexpected_file", name, "not an output or meta file of the submission "
                                                                 "(ignored)", WARNING))
    if not folders:
        problems.append(Problem("zip_layout", str(path), "no system folder task1/<Label>/ found"))
    if len(folders) > R.MAX_SYSTEMS:
        problems.append(Problem("systems", str(path), f"{len(folders)} systems; at most {R.MAX_SYSTEMS} allowed"))
    for folder, entry in sorted(folders.items()):
        problems += _validate_folder(folder, entry, rules, budget)
    return problems


def _validate_folder(folder: str, entry: dict, rules: R.SubmissionRules, budget) -> list[Problem]:
    problems: list[Problem] = []
    folder_label = folder.split("/")[-1]
    if entry["meta"] is None:
        return [Problem("missing_meta", f"{folder}/{R.meta_name(folder_label)}", "meta YAML missing")]
    meta_name, meta_text = entry["meta"]
    try:
        meta = yaml.safe_load(meta_text)
    except yaml.YAMLError as e:
        return [Problem("yaml", f"{folder}/{meta_name}", f"not valid YAML: {e}")]
    label = meta.get("submission", {}).get("label") if isinstance(meta, dict) and isinstance(
        meta.get("submission"), dict) else None
    label = str(label) if label is not None else folder_label
    if label != folder_label:
        problems.append(Problem("label", folder, f"folder name differs from submission.label {label!r}", WARNING))
    if meta_name != R.meta_name(label):
        problems.append(Problem("label", f"{folder}/{meta_name}", f"meta file name does not match the submission "
                                                                  f"label {label!r}"))
    outputs: dict[str, str] = {}
    for fname, (split, text) in sorted(entry["outputs"].items()):
        if fname != R.output_name(label, split):
            problems.append(Problem("label", f"{folder}/{fname}", f"output file name does not match the submission "
                                                                  f"label {label!r}"))
        outputs[split] = text
    return problems + validate_system(label, outputs, meta_text, rules, folder, budget)
