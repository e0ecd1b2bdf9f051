"""The report as one self-contained HTML page: inline CSS, figures as PNG data URIs (viewable offline, mailable as
one file)."""

from __future__ import annotations

import html
from string import Template
from typing import Any, Sequence

from asc.data.layout import DEVICE_GROUPS
from asc.report.entry import RunEntry
from asc.report.figures import confusion_png, device_accuracy_png, learning_curves_png, split_accuracy_png
from asc.report.settings import MISSING, pct
from asc.report.tables import Row

CSS = """
body { margin: 0; color: #1d2329; background: #f4f6f8; line-height: 1.4; font-size: 14px;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1400px; margin: 0 auto; padding: 16px 24px 40px; box-sizing: border-box; }
h1 { font-size: 22px; margin: 8px 0 2px; }
h2 { font-size: 18px; margin: 28px 0 10px; border-bottom: 2px solid #d6dce2; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.meta, .legend { color: #5a6570; margin: 0 0 8px; }
.legend { font-size: 12px; margin: 6px 0; }
.notes { background: #fff8e6; border: 1px solid #f0d48a; border-radius: 6px; padding: 8px 14px; }
.notes li { margin: 2px 0; }
.summary { background: #fff; border: 1px solid #d6dce2; border-left: 5px solid #2b7a3d; border-radius: 6px;
           padding: 8px 14px; }
.summary p { margin: 4px 0; }
code { background: #eef1f4; padding: 0 3px; border-radius: 3px; font-size: 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 14px; }
.card { background: #fff; border: 1px solid #d6dce2; border-top: 5px solid var(--c); border-radius: 6px;
        padding: 10px 14px; }
.card h3 { margin: 0 0 4px; word-break: break-all; }
.card .src { color: #5a6570; font-size: 12px; word-break: break-all; margin-bottom: 6px; }
.card table { width: 100%; }
.card td { padding: 2px 6px 2px 0; text-align: left; vertical-align: top; }
.card td.k { color: #5a6570; white-space: nowrap; width: 1%; }
.card ul { margin: 6px 0 0; padding-left: 18px; color: #8a5a00; font-size: 12px; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; background: var(--c);
          margin-right: 5px; }
.scroll { display: inline-block; max-width: 100%; overflow-x: auto; background: #fff; border: 1px solid #d6dce2;
          border-radius: 6px; }
table.cmp { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.cmp th, table.cmp td { padding: 4px 10px; border-bottom: 1px solid #e6eaee; text-align: right;
                             white-space: nowrap; }
table.cmp th { background: #eef1f4; font-weight: 600; }
table.cmp th.grp { text-align: center; border-left: 2px solid #d6dce2; }
table.cmp .first { border-left: 2px solid #d6dce2; }
table.cmp td.key, table.cmp th.key { text-align: left; position: sticky; left: 0; z-index: 1; background: #fff;
                                     box-shadow: 1px 0 0 #d6dce2; }
table.cmp th.key { background: #eef1f4; }
table.cmp td.text { text-align: left; white-space: normal; min-width: 160px; }
table.cmp tbody.groups td { background: #f8f9fb; }
table.cmp tbody.groups tr:first-child td { border-top: 2px solid #c9d1d9; }
table.cmp td.best, table.cmp tbody.groups td.best { background: #d9f2dd; font-weight: 700; }
figure { margin: 10px 0 0; }
img { max-width: 100%; height: auto; background: #fff; border: 1px solid #d6dce2; border-radius: 6px; }
.confusions { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 14px; }
.confusions figcaption { font-weight: 600; margin-bottom: 4px; }
footer { color: #5a6570; font-size: 12px; margin-top: 30px; }
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$css</style>
</head>
<body>
<main>
<h1>$title</h1>
<p class="meta">$meta</p>
<h2>Summary</h2>
$opening
$notes
<h2>Runs</h2>
<div class="cards">
$cards
</div>
<h2>Comparison</h2>
$summary
<h2>Per device</h2>
$per_device
<h2>Per class</h2>
$per_class
<h2>Learning curves</h2>
$curves
<h2>Confusion matrices</h2>
$confusions
<h2>Complexity</h2>
$complexity
<footer>$footer</footer>
</main>
</body>
</html>
""")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def cell_text(value: Any, unit: str) -> str:
    if value is None:
        return MISSING
    if unit == "pct":
        return pct(value)
    if unit == "loss":
        return f"{value:.4f}"
    if unit == "count":
        return f"{value:,}"
    return str(value)


def _code(text: str) -> str:
    """Escape ``text`` and show spans in backticks as code."""
    parts = _e(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _head_cells(entries: Sequence[RunEntry], first: bool = False) -> str:
    return "".join(f'<th class="{"first" if first and i == 0 else ""}" style="--c:{e.color}">'
                   f'<span class="swatch"></span>{_e(e.name)}</th>' for i, e in enumerate(entries))


def _value_cells(row: Row, entries: Sequence[RunEntry], first: bool = False) -> str:
    best = set(row.best)
    cells = []
    for i, e in enumerate(entries):
        classes = [c for c in ("best" if e.name in best else "", "first" if first and i == 0 else "",
                               "text" if row.unit == "text" else "") if c]
        cls = f' class="{" ".join(classes)}"' if classes else ""
        cells.append(f"<td{cls}>{_e(cell_text(row.values.get(e.name), row.unit))}</td>")
    return "".join(cells)


def _rows_table(rows: list[Row], entries: Sequence[RunEntry]) -> str:
    rows = [r for r in rows if r.unit != "text" or any(v is not None for v in r.values.values())]
    body = "".join(f'<tr><td class="key">{_e(r.label)}</td>{_value_cells(r, entries)}</tr>' for r in rows)
    return (f'<div class="scroll"><table class="cmp"><thead><tr><th class="key"></th>{_head_cells(entries)}</tr>'
            f"</thead><tbody>{body}</tbody></table></div>")


def _breakdown_table(title: str, table: dict[str, list[Row]], entries: Sequence[RunEntry],
                     groups: dict[str, list[Row]] | None = None) -> str:
    """Accuracy % and log loss side by side: one column per run in each block; group rows below."""
    if not table["accuracy"]:
        return '<p class="meta">no evaluation metrics</p>'
    k = len(entries)
    head = (f'<tr><th class="key" rowspan="2">{_e(title)}</th><th rowspan="2">n</th>'
            f'<th class="grp" colspan="{k}">accuracy %</th><th class="grp" colspan="{k}">log loss</th></tr>'
            f"<tr>{_head_cells(entries, first=True)}{_head_cells(entries, first=True)}</tr>")

    def body(part: dict[str, list[Row]]) -> str:
        return "".join(f'<tr><td class="key">{_e(acc.label)}</td><td>{_e(cell_text(acc.n, "count"))}</td>'
                       f"{_value_cells(acc, entries, first=True)}{_value_cells(loss, entries, first=True)}</tr>"
                       for acc, loss in zip(part["accuracy"], part["log_loss"]))

    groups_body = f'<tbody class="groups">{body(groups)}</tbody>' if groups and groups["accuracy"] else ""
    return (f'<div class="scroll"><table class="cmp"><thead>{head}</thead><tbody>{body(table)}</tbody>'
            f"{groups_body}</table></div>")


def _card(e: RunEntry) -> str:
    rows = [("kind", {"run": "run folder", "onnx": "ONNX model", "bundle": "model bundle",
                      "eval": "evaluation JSON"}[e.kind])]
    if e.model and "model" not in e.settings:
        rows.append(("model", e.model))
    if e.recipe:
        rows.append(("recipe", e.recipe))
    rows += list(e.settings.items())
    if e.eval_path is not None:
        rows.append(("evaluated on", f"{e.eval_split} of {e.metrics.get('data_root', MISSING)}"))
    table = "".join(f'<tr><td class="k">{_e(k)}</td><td>{_e(v)}</td></tr>' for k, v in rows)
    notes = "".join(f"<li>{_code(n)}</li>" for n in e.notes)
    return (f'<div class="card" style="--c:{e.color}"><h3><span class="swatch"></span>{_e(e.name)}</h3>'
            f'<div class="src">{_e(e.source)}</div><table>{table}</table>'
            f'{f"<ul>{notes}</ul>" if notes else ""}</div>')


def _img(uri: str | None, alt: str, missing: str) -> str:
    return f'<figure><img src="{uri}" alt="{_e(alt)}"></figure>' if uri else f'<p class="meta">{_e(missing)}</p>'


def _opening(opening: dict[str, Any]) -> str:
    lines = "".join(f"<p>{_e(line)}</p>" for line in opening["lines"]) or \
        '<p class="meta">no scored run: nothing to summarise</p>'
    figure = split_accuracy_png(opening["systems"])
    return (f'<div class="summary">{lines}</div>'
            + (_img(figure, "macro accuracy per training split", "") if figure else ""))


def render_html(entries: Sequence[RunEntry], tables: dict[str, Any], notes: list[str], title: str,
                meta: str, opening: dict[str, Any]) -> str:
    """The whole page as one string (no external resources)."""
    devices = [r.key for r in tables["per_device"]["accuracy"]]
    notes_html = ""
    all_notes = [*notes, *[f"{e.name}: {n}" for e in entries for n in e.notes]]
    if all_notes:
        notes_html = ('<div class="notes"><strong>Missing pieces and warnings</strong><ul>'
                      + "".join(f"<li>{_code(n)}</li>" for n in all_notes) + "</ul></div>")
    confusions = [(e, confusion_png(e)) for e in entries]
    confusion_html = "".join(f'<figure><figcaption><span class="swatch" style="--c:{e.color}"></span>{_e(e.name)}'
                             f'</figcaption><img src="{uri}" alt="confusion matrix of {_e(e.name)}"></figure>'
                             for e, uri in confusions if uri)
    missing = [e.name for e, uri in confusions if not uri]
    confusion_html = (f'<div class="confusions">{confusion_html}</div>' if confusion_html else "") + \
        (f'<p class="meta">no evaluation JSON for {_e(", ".join(missing))}</p>' if missing else "")
    groups = ", ".join(f"{g} ({', '.join(members)})" for g, members in DEVICE_GROUPS.items())
    per_device = (f'<p class="legend">Rows below the line: device groups {_e(groups)}.</p>'
                  + _breakdown_table("device", tables["per_device"], entries, tables["per_group"])
                  + _img(device_accuracy_png(entries, devices), "accuracy per device", ""))
    return PAGE.substitute(
        title=_e(title), css=CSS, meta=_e(meta), notes=notes_html, opening=_opening(opening), cards="\n".join(_card(e) for e in entries),
        summary='<p class="legend">Best value per row highlighted here and below (accuracy: highest; log loss, '
                'parameters, MACs, bytes: lowest).</p>' + _rows_table(tables["summary"], entries),
        per_device=per_device,
        per_class=_breakdown_table("class", tables["per_class"], entries),
        curves=_img(learning_curves_png(entries), "learning curves",
                    "no run has a metrics.jsonl (learning curves are written by `asc train`)")
        + '<p class="legend">Per epoch. Left: training loss (solid), validation log loss (dashed); right: '
          'validation macro accuracy (solid), training accuracy (dotted).</p>',
        confusions=confusion_html,
        complexity=_rows_table(tables["complexity"], entries),
        footer=_e(f"asc report · {meta}"),
    )
