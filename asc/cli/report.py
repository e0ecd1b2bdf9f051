"""``asc report``: one self-contained HTML page (and JSON) comparing runs, model files or evaluation JSONs."""

from __future__ import annotations

import argparse
import json

from asc.cli._common import add_command


def register(sub) -> None:
    parser = add_command(
        sub, "report", _run,
        help="compare runs on one offline HTML page (+ JSON): metrics per device / class, curves, confusion, budget",
        example="asc report runs/baseline24-split25 runs/cpmobile-kd-split25 --out report.html",
        description="Compare runs on one self-contained HTML page (plots embedded, no external files) and write the "
                    "same comparison as JSON beside it (report.json for report.html). Sources: run folders, .onnx or "
                    "bundle .pt files (metrics from <stem>.eval/<split>.json of `asc evaluate`), evaluation JSONs. "
                    "Missing pieces are noted with the command that makes them.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folder, .onnx / .pt model file or evaluation JSON")
    parser.add_argument("--out", default="report.html", metavar="FILE.html",
                        help="HTML file to write (default report.html; the JSON goes beside it)")
    parser.add_argument("--split", default="test", help="evaluation split to compare (default test = dev-test)")
    parser.add_argument("--edition", default=None, metavar="NAME",
                        help="complexity budget: dcase2022, dcase2023, dcase2024 (default), dcase2025")
    parser.add_argument("--title", help="page title (default: the run names)")
    parser.add_argument("--json", action="store_true", help="print the report JSON instead of the summary")


def _run(args: argparse.Namespace) -> int:
    from asc.complexity import DEFAULT_EDITION
    from asc.report import build_report, format_summary

    result = build_report(args.runs, args.out, split=args.split, edition=args.edition or DEFAULT_EDITION,
                          title=args.title, progress=not args.json)
    if args.json:
        print(json.dumps(result.data, indent=2))
        return 0
    print(format_summary(result))
    print(f"wrote {result.html_path} and {result.json_path}")
    return 0
