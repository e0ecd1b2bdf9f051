"""`asc demo --quick`: every stage of the pipeline runs end to end and leaves its artefacts; a rerun reuses them."""

import json
import zipfile
from pathlib import Path

import pytest

from asc.cli import main


def test_quick_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "-o", "progress=false"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    art = summary["artefacts"]
    assert summary["submission_valid"] and summary["complexity"]["within_dcase2024"]
    assert set(art["student_runs"]) == {"5", "10", "25", "50", "100"}
    for key in ("int8_onnx", "predictions", "submission_zip", "report"):
        assert Path(art[key]).is_file(), key
    with zipfile.ZipFile(art["submission_zip"]) as z:
        assert sum(n.endswith(".csv") for n in z.namelist()) == 5
    assert len(summary["results"]) == 7
    text = capsys.readouterr().out
    assert "macro acc" in text and "What this shows" in text
    # the focus split compared over seeds, with a verdict that follows from the figures
    c = summary["comparison"]
    assert c["seeds"] == [0, 1] and len(c["distilled"]["values"]) == len(c["plain"]["values"]) == 2
    assert c["difference"] == pytest.approx(c["distilled"]["mean"] - c["plain"]["mean"])
    assert c["real"] == (abs(c["difference"]) > c["distilled"]["std"] + c["plain"]["std"])
    assert ("the ordering is real" in text) == c["real"]
    # the tiny preset's splits 5, 10 and 25 hold the same clips: the summary says so
    assert summary["dataset"]["identical_splits"] == [["5", "10", "25"]]
    assert "splits 5, 10, 25 of this dataset hold the same clips" in text
    first = summary["step_seconds"]
    assert main(["demo", "--quick", "--out", str(out), "-o", "progress=false"]) == 0
    again = json.loads((out / "summary.json").read_text())["step_seconds"]
    train_steps = [k for k in first if k.startswith(("train", "distil"))]
    assert sum(again[k] for k in train_steps) < sum(first[k] for k in train_steps)
