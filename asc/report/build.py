"""``build_report``: read every source, compute the tables, write ``report.html`` and ``report.json`` beside it;
``format_summary`` is the terminal's one line per run."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from asc.complexity import DEFAULT_EDITION, load_budget
from asc.data.layout import normalise_split_name
from asc.errors import ConfigError
from asc.fileio import write_json, write_text
from asc.plots import colors
from asc.report.entry import RunEntry, load_entry
from asc.report.html import cell_text, render_html
from asc.report.settings import MISSING, pct
from asc.report.summary import summary
from asc.report.tables import comparison, global_notes, tables_to_dict

REPORT_FORMAT = "asc.report/1"


@dataclass
class ReportResult:
    """What :func:`build_report` wrote."""

    html_path: Path
    json_path: Path
    data: dict[str, Any]  # what report.json holds
    entries: list[RunEntry]


def _unique_names(entries: list[RunEntry]) -> None:
    seen: dict[str, int] = {}
    for e in entries:
        if e.name in seen:
            parent = e.source.parent.name
            e.name = f"{parent}/{e.name}" if parent and f"{parent}/{e.name}" not in seen else e.name
        while e.name in seen:
            seen[e.name] += 1
            e.name = f"{e.name} #{seen[e.name]}"
        seen.setdefault(e.name, 1)


def build_report(sources: Sequence[str | Path], out: str | Path = "report.html", split: str = "test",
                 edition: str = DEFAULT_EDITION, title: str | None = None, progress: bool = True) -> ReportResult:
    """Compare ``sources`` (run folders, .onnx / .pt files, evaluation JSONs); write ``out`` (HTML) and the same
    comparison as JSON beside it (``report.json`` for ``report.html``)."""
    if not sources:
        raise ConfigError("report: give at least one run folder, model file or evaluation JSON")
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {out}: expected an .html file (the JSON is written beside it)")
    budget = load_budget(edition)
    split = normalise_split_name(split)
    entries = [load_entry(s, split, edition)
               for s in tqdm(list(sources), desc="report", unit="run", disable=not progress or len(sources) < 2 or None)]
    _unique_names(entries)
    for e, color in zip(entries, colors(len(entries))):
        e.color = color
    tables = comparison(entries)
    opening = summary(entries, budget.edition)
    notes = [*opening["warnings"], *global_notes(entries)]
    created = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    title = title or "asc report: " + ", ".join(e.name for e in entries)
    meta = f"{len(entries)} run(s) · metrics of split {split} · budget {budget.describe()} · {created}"
    json_path = out.with_suffix(".json")
    data = {"format": REPORT_FORMAT, "title": title, "created": created, "split": split, "edition": budget.edition,
            "budget": budget.describe(), "html": str(out), "summary": opening, "notes": notes,
            "runs": [e.to_dict() for e in entries], "tables": tables_to_dict(tables)}
    write_text(out, render_html(entries, tables, notes, title, meta, opening))
    write_json(json_path, data)
    return ReportResult(html_path=out, json_path=json_path, data=data, entries=entries)


def format_summary(result: ReportResult) -> str:
    """The summary lines, the comparison table for the terminal (one line per run), then the notes."""
    width = max(10, *(len(e.name) for e in result.entries))
    lines = [*result.data["summary"]["lines"], ""] if result.data["summary"]["lines"] else []
    lines += [f"{'run':<{width}}  {'macro acc %':>11}  {'acc %':>7}  {'log loss':>8}  {'params':>9}  {'MACs':>12}"]
    for e in result.entries:
        m, c = e.metrics or {}, e.complexity or {}
        loss = MISSING if m.get("log_loss") is None else f"{m['log_loss']:.4f}"
        lines.append(f"{e.name:<{width}}  {pct(m.get('macro_accuracy')):>11}  {pct(m.get('accuracy')):>7}  "
                     f"{loss:>8}  {cell_text(c.get('params'), 'count'):>9}  {cell_text(c.get('macs'), 'count'):>12}")
    notes = result.data["notes"] + [f"{e.name}: {n}" for e in result.entries for n in e.notes]
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)
