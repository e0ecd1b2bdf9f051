"""``asc report``: one self-contained HTML page and a JSON comparing runs trained for real (tiny model, tiny
synthetic data, one epoch), and graceful degradation when a run lacks pieces."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from asc.cli import main
from asc.errors import ConfigError
from asc.report import ReportError, Row, build_report
from asc.train.recipes import build_config
from asc.train.trainer import fit

TINY = ["batch_size=20", "eval_batch_size=64", "schedule.warmup_steps=2", "optim.lr=0.01", "progress=false"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(synth_data, tmp_path_factory) -> tuple[Path, Path]:
    """Two run folders of the trainer: baseline24 with 8 and 12 base channels, one epoch each."""
    root = tmp_path_factory.mktemp("runs")
    for name, channels in (("tiny-a", 8), ("tiny-b", 12)):
        cfg = build_config("baseline24", overrides=[*TINY, f"model_config.base_channels={channels}"],
                           data=str(synth_data.dev), split="50", epochs=1, name=name)
        fit(cfg, root / name)
    return root / "tiny-a", root / "tiny-b"


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    return build_report(list(runs), out, progress=False)


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(uri) for uri in re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)]


def _assert_self_contained(page: str) -> None:
    assert not re.search(r"https?://", page), "no web addresses at all (nothing may be fetched)"
    assert not re.search(r"<link\b|<script\b|@import|url\(", page, re.I), "no stylesheets, scripts or CSS urls"
    for ref in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', page):
        assert ref.startswith("data:image/png;base64,"), f"external reference {ref[:60]!r}"


def test_report_is_one_self_contained_page_comparing_both_runs(runs, report):
    a, b = runs
    page = report.html_path.read_text()
    assert sorted(p.name for p in report.html_path.parent.iterdir()) == ["report.html", "report.json"]
    _assert_self_contained(page)
    for run in runs:
        assert page.count(run.name) >= 5  # card, table headers, confusion caption
    # per-device and per-class tables: one row per device / class of the evaluation, plus the device groups
    evals = {run.name: json.loads((run / "eval" / "test.json").read_text()) for run in runs}
    for device in [*evals["tiny-a"]["devices"], "real", "seen", "unseen"]:
        assert f'<td class="key">{device}</td>' in page
    for label in evals["tiny-a"]["labels"]:
        assert f'<td class="key">{label}</td>' in page
    # learning curves, accuracy per device and one confusion matrix per run, all PNG data URIs
    images = _images(page)
    assert len(images) == 4 and all(img.startswith(PNG_MAGIC) and len(img) > 5000 for img in images)
    assert 'alt="learning curves"' in page and 'alt="confusion matrix of tiny-a"' in page
    assert 'alt="confusion matrix of tiny-b"' in page and "Missing pieces" not in page


def test_report_json_holds_the_numbers(runs, report):
    data = json.loads(report.json_path.read_text())
    assert data == json.loads(json.dumps(report.data))
    assert [r["name"] for r in data["runs"]] == ["tiny-a", "tiny-b"]
    summary = {row["key"]: row for row in data["tables"]["summary"]}
    for run, entry in zip(runs, data["runs"]):
        ev = json.loads((run / "eval" / "test.json").read_text())
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert entry["metrics"]["macro_accuracy"] == ev["macro_accuracy"]
        assert summary["macro_accuracy"]["values"][run.name] == ev["macro_accuracy"]
        assert summary["log_loss"]["values"][run.name] == ev["log_loss"]
        assert summary["real_accuracy"]["values"][run.name] == ev["per_group"]["real"]["accuracy"]
        assert entry["history"] == history and entry["notes"] == []
        assert entry["model"] == "baseline24" and entry["train_split"] == "50"
        assert entry["settings"]["epochs"] == "1 of 1"
        assert entry["recipe"].startswith("baseline24, changed:")
        c = entry["complexity"]
        assert c["param_bytes"]["fp16"] == 2 * c["params"] and c["param_bytes"]["int8"] == c["params"] > 0
        assert 0 < c["macs"] <= 30_000_000 and c["budget"]["within_budget"]
        rows = {row["key"]: row for row in data["tables"]["per_device"]["accuracy"]}
        for device, m in ev["per_device"].items():
            assert rows[device]["values"][run.name] == m["accuracy"] and rows[device]["n"] == m["n"]
        rows = {row["key"]: row for row in data["tables"]["per_class"]["log_loss"]}
        for label, m in ev["per_class"].items():
            assert rows[label]["values"][run.name] == m["log_loss"]
    # fewer base channels: fewer parameters and MACs, marked best (lowest) in the JSON and the page
    params = summary["params"]["values"]
    assert params["tiny-a"] < params["tiny-b"] and summary["params"]["best"] == ["tiny-a"]
    assert summary["macs"]["best"] == ["tiny-a"]
    page = report.html_path.read_text()
    assert re.search(rf'<td class="key">parameters \(official count\)</td><td class="best">{params["tiny-a"]:,}</td>', page)


def test_report_notes_missing_pieces_and_accepts_eval_json(runs, tmp_path):
    a, b = runs
    partial = tmp_path / "tiny-partial"
    shutil.copytree(a, partial)
    (partial / "metrics.jsonl").unlink()
    shutil.rmtree(partial / "eval")
    shutil.rmtree(partial / "checkpoints")
    result = build_report([partial, b / "eval" / "test.json"], tmp_path / "out" / "cmp.html", progress=False)
    assert result.json_path == tmp_path / "out" / "cmp.json"
    page = result.html_path.read_text()
    _assert_self_contained(page)
    bare, scored = result.data["runs"]
    assert bare["metrics"] is None and bare["history"] == [] and bare["complexity"] is None
    assert bare["settings"]["model config"] == "base_channels=8"  # config.toml is still read
    assert any("metrics.jsonl" in n and "asc train" in n for n in bare["notes"])
    assert any(f"asc evaluate {partial} --data " in n for n in bare["notes"])
    assert any("checkpoints/best.pt" in n and "complexity not counted" in n for n in bare["notes"])
    assert scored["name"] == "tiny-b" and scored["kind"] == "eval" and scored["history"] and scored["metrics"]
    assert "Missing pieces" in page and "<code>asc evaluate" in page
    assert len(_images(page)) == 3  # curves (tiny-b only), per-device bars, one confusion matrix
    summary = {row["key"]: row for row in result.data["tables"]["summary"]}
    assert summary["macro_accuracy"]["values"]["tiny-partial"] is None
    assert summary["macro_accuracy"]["best"] == []  # nothing to rank with one value


def test_report_rejects_bad_sources(runs, tmp_path):
    with pytest.raises(ReportError, match="not found"):
        build_report([tmp_path / "nope"], tmp_path / "r.html", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="not a run folder"):
        build_report([tmp_path / "empty"], tmp_path / "r.html", progress=False)
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(ReportError, match="not an evaluation JSON"):
        build_report([tmp_path / "x.json"], tmp_path / "r.html", progress=False)
    with pytest.raises(ConfigError, match="expected an .html file"):
        build_report(list(runs), tmp_path / "r.json", progress=False)


def test_best_marks_ties_and_skips_missing_values():
    assert Row("k", "k", {"a": 0.5, "b": 0.7, "c": 0.7, "d": None}, "higher").best == ["b", "c"]
    assert Row("k", "k", {"a": 2.0, "b": 1.0}, "lower").best == ["b"]
    assert Row("k", "k", {"a": 1.0, "b": 1.0}, "lower").best == []
    assert Row("k", "k", {"a": 1.0, "b": None}, "higher").best == []
    assert Row("k", "k", {"a": 1.0, "b": 2.0}).best == []


def test_cli_report_json_and_error(runs, tmp_path, capsys):
    _, b = runs
    out = tmp_path / "cli" / "report.html"
    assert main(["report", str(b / "eval" / "test.json"), "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in data["runs"]] == ["tiny-b"] and out.is_file() and out.with_suffix(".json").is_file()
    assert main(["report", str(tmp_path / "missing-run"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("asc report: error:") and "missing-run" in err and len(err.splitlines()) == 1


def test_report_opens_with_a_summary_and_warns_about_dubious_comparisons(runs, synth_data, tmp_path):
    """Best run within budget first; a recipe trained on two splits gets its split average and a figure; a run
    validated on the dev-test split and two runs with identical predictions are flagged."""
    a, b = runs
    c = tmp_path / "tiny-c"
    cfg = build_config("baseline24", overrides=[*TINY, "model_config.base_channels=8"], data=str(synth_data.dev),
                       split="25", epochs=1, name="tiny-c")
    fit(cfg, c)
    twin = tmp_path / "twin"
    shutil.copytree(a, twin)  # the same model under another name
    old = twin / "config.toml"
    old.write_text(old.read_text().replace('split = "50"', 'split = "50"\nval_split = "test"'))
    result = build_report([a, b, c, twin], tmp_path / "r.html", progress=False)
    opening = result.data["summary"]
    scores = {e.name: e.metrics["macro_accuracy"] for e in result.entries}
    best = max(scores, key=scores.get)  # every tiny model fits the budget
    assert opening["best"] == best and opening["lines"][0].startswith(f"Best within the dcase2024 budget: {best}")
    recipe = [s for s in opening["systems"] if set(s["splits"]) == {"25", "50"}]
    assert len(recipe) == 1
    assert recipe[0]["average"] == pytest.approx((scores["tiny-c"] + (scores["tiny-a"] + scores["twin"]) / 2) / 2)
    assert any(line.endswith(f"average {100 * recipe[0]['average']:.2f} % over splits 25, 50 "
                             f"(25: {100 * scores['tiny-c']:.2f} %, 50: {100 * scores['tiny-a']:.2f} % (2 runs)).")
               for line in opening["lines"])
    warnings = opening["warnings"]
    assert any(w.startswith("twin: validated on the dev-test split") for w in warnings)
    assert any("tiny-a and twin have identical predictions" in w for w in warnings)
    assert not any("tiny-b" in w for w in warnings)
    page = result.html_path.read_text()
    assert page.index("<h2>Summary</h2>") < page.index("<h2>Runs</h2>")
    assert "macro accuracy per training split" in page  # the accuracy-vs-split figure
    assert "MACs (official count)" in page
