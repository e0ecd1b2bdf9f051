"""The submission validator: a valid 2024 zip passes; each class of defect is rejected by name."""

import zipfile

import numpy as np
import pytest
import yaml

from asc.submission import rules as R
from asc.submission.predict import output_table
from asc.submission.validate import validate_zip

LABEL = "Doe_TUW_task1_1"
FILES = [f"audio/{i}.wav" for i in range(30)]


def meta() -> dict:
    item = {"accuracy": 50.0, "logloss": 1.2}
    split = {"overall": dict(item), "class_wise": {c: dict(item) for c in R.TAU_SCENES},
             "device_wise": {d: dict(item) for d in R.TAU_DEVICES}}
    return {
        "submission": {"label": LABEL, "name": "Test system", "abbreviation": "TestSys",
                       "authors": [{"lastname": "Doe", "firstname": "Jane", "email": "j@x.org", "affiliation": "TUW",
                                    "corresponding": True},
                                   {"lastname": "Roe", "firstname": "Rick", "email": "r@x.org", "affiliation": "TUW"}]},
        "system": {"description": {k: "x" for k in R.DESCRIPTION_FIELDS},
                   "complexity": {"total_model_size": 122296, "total_parameters": 61148, "macs": 29419156},
                   "external_datasets": [], "source_code": "https://example.org"},
        "results": {"development_dataset": {f"split_{s}": split for s in R.SPLITS}},
    }


def output_text() -> str:
    logits = np.random.default_rng(0).normal(size=(len(FILES), 10))
    return output_table(FILES, logits, R.TAU_SCENES).to_csv(sep="\t", index=False, float_format="%.6f")


def write_zip(path, outputs=None, meta_obj=None, extra=None, drop=()):
    outputs = outputs or {s: output_text() for s in R.SPLITS}
    with zipfile.ZipFile(path, "w") as z:
        for s, text in outputs.items():
            name = f"task1/{LABEL}/{R.output_name(LABEL, s)}"
            if name not in drop:
                z.writestr(name, text)
        if f"task1/{LABEL}/{R.meta_name(LABEL)}" not in drop:
            z.writestr(f"task1/{LABEL}/{R.meta_name(LABEL)}", yaml.safe_dump(meta_obj or meta()))
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


RULES = R.SubmissionRules(eval_files=FILES)


def kinds(path):
    return {p.kind for p in validate_zip(path, RULES)}


def test_valid_zip_passes(tmp_path):
    path = write_zip(tmp_path / "ok.zip", extra={"task1/Doe_TUW_task1_technical_report.pdf": b"%PDF-1.4"})
    assert validate_zip(path, RULES) == []


def _edit_rows(fn):
    lines = output_text().splitlines()
    return "\n".join(fn(lines)) + "\n"


@pytest.mark.parametrize("name, outputs_fn, kind", [
    ("comma", lambda t: t.replace("\t", ","), "header"),
    ("missing_row", lambda t: _edit_rows(lambda ls: ls[:-1]), "row_count"),
    ("duplicate", lambda t: _edit_rows(lambda ls: ls + [ls[1]]), "duplicate"),
    ("folder_in_name", lambda t: _edit_rows(lambda ls: [ls[0], "audio/" + ls[1]] + ls[2:]), "filename"),
    ("unknown_label", lambda t: _edit_rows(lambda ls: [ls[0], ls[1].replace(ls[1].split("\t")[1], "beach", 1)]
                                           + ls[2:]), "scene_label"),
    ("not_float", lambda t: _edit_rows(lambda ls: [ls[0], "\t".join(ls[1].split("\t")[:-1] + ["high"])] + ls[2:]),
     "not_float"),
    ("nan", lambda t: _edit_rows(lambda ls: [ls[0], "\t".join(ls[1].split("\t")[:-1] + ["nan"])] + ls[2:]), "nan"),
    ("sum", lambda t: _edit_rows(lambda ls: [ls[0], "\t".join(ls[1].split("\t")[:-1] + ["0.9"])] + ls[2:]),
     "probability_sum"),
    ("field_count", lambda t: _edit_rows(lambda ls: [ls[0], ls[1] + "\t0.1"] + ls[2:]), "field_count"),
    ("foreign_file", lambda t: _edit_rows(lambda ls: [ls[0], ls[1].replace("0.wav", "999999.wav", 1)] + ls[2:]),
     "unknown_file"),
])
def test_output_defects_are_named(tmp_path, name, outputs_fn, kind):
    outputs = {s: output_text() for s in R.SPLITS}
    outputs["25"] = outputs_fn(outputs["25"])
    assert kind in kinds(write_zip(tmp_path / f"{name}.zip", outputs=outputs))


def _meta_with(path, value):
    m = meta()
    node = m
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return m


@pytest.mark.parametrize("path, value, kind", [
    (("submission", "abbreviation"), "MuchTooLongName", "abbreviation"),
    (("submission", "label"), "Doe_TUW_task2_1", "label"),
    (("submission", "authors", 1, "corresponding"), True, "corresponding_author"),
    (("submission", "authors", 0, "corresponding"), False, "corresponding_author"),
    (("submission", "authors", 0, "email"), KeyError, "meta_fields"),
    (("system", "complexity", "total_parameters"), "61k", "meta_type"),
    (("system", "description", "pipeline"), KeyError, "meta_fields"),
    (("results", "development_dataset", "split_5"), KeyError, "meta_fields"),
])
def test_meta_defects_are_named(tmp_path, path, value, kind):
    assert kind in kinds(write_zip(tmp_path / "m.zip", meta_obj=_meta_with(path, value)))


def test_layout_defects(tmp_path):
    assert "missing_output" in kinds(write_zip(tmp_path / "a.zip", drop={f"task1/{LABEL}/{R.output_name(LABEL, '50')}"}))
    assert "missing_meta" in kinds(write_zip(tmp_path / "b.zip", drop={f"task1/{LABEL}/{R.meta_name(LABEL)}"}))
    assert "filename" in kinds(write_zip(tmp_path / "c.zip", extra={f"task1/{LABEL}/notes.txt": "x"}))
    assert "zip_layout" in kinds(write_zip(tmp_path / "d.zip", extra={"output.csv": "x"}))
    (tmp_path / "e.zip").write_bytes(b"not a zip")
    assert kinds(tmp_path / "e.zip") == {"zip"}


def test_cli_exit_codes(tmp_path, capsys):
    from asc.cli import main

    ok = write_zip(tmp_path / "ok.zip")
    (tmp_path / "evaluation_setup").mkdir()
    (tmp_path / "evaluation_setup" / "fold1_test.csv").write_text("filename\n" + "\n".join(FILES) + "\n")
    assert main(["validate-submission", str(ok), "--eval-set", str(tmp_path)]) == 0
    assert main(["validate-submission", str(ok)]) == 1  # against the official 135,730-file list
    assert "row_count" in capsys.readouterr().err
    assert main(["validate-submission", str(tmp_path / "missing.zip")]) == 2
