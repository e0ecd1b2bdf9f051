"""Compare runs on one self-contained HTML page, with the same comparison as JSON beside it.

``build_report(["runs/a", "runs/b"], "report.html")`` gathers what each source holds and writes ``report.html``
(inline CSS, plots as base64 PNG data URIs: viewable offline, mailable as one file) and ``report.json``:

- a header per run: model, training split, recorded (or closest named) recipe, key settings of ``config.toml``;
- a comparison table: macro accuracy, accuracy, log loss, accuracy per device group (real / seen / unseen),
  parameters, MACs, parameter memory at fp16 / int8 and the budget verdict (:mod:`asc.complexity`);
- accuracy and log loss per device, per device group and per class side by side (best value per row marked);
- learning curves of every run in one figure (``metrics.jsonl``), one confusion matrix per run, complexity details.

A source is a run folder (``runs/<name>``), a model file (``.onnx`` or bundle ``.pt``; its metrics are read from
``<stem>.eval/<split>.json`` beside it, where ``asc evaluate`` writes them) or an evaluation JSON itself. Pieces a
source lacks are left out with a note that names the missing file and the command that makes it.

Modules: :mod:`~asc.report.entry` (reading a source), :mod:`~asc.report.settings` (a run's settings for people),
:mod:`~asc.report.tables` (computing the comparison), :mod:`~asc.report.figures` (plots, drawn by
:mod:`asc.plots`), :mod:`~asc.report.html` (the page), :mod:`~asc.report.build` (the entry point).
"""

from asc.report.build import REPORT_FORMAT, ReportResult, build_report, format_summary
from asc.report.entry import ReportError, RunEntry, complexity_summary, load_entry
from asc.report.tables import Row, comparison, global_notes

__all__ = ["REPORT_FORMAT", "ReportError", "ReportResult", "Row", "RunEntry", "build_report", "comparison",
           "complexity_summary", "format_summary", "global_notes", "load_entry"]
