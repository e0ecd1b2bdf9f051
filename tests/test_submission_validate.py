"""The submission validator: a valid 2024 zip passes; each official-rule defect is an error by name, own sanity checks
are warnings; every zip the official 2024 validator accepts (column order, UTF-8 names, YAML truthy values, numeric
strings, extra files) has no errors."""

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


def write_zip(path, outputs=None, meta_obj=None, extra=None, drop=(), label=LABEL):
    outputs = outputs or {s: output_text() for s in R.SPLITS}
    with zipfile.ZipFile(path, "w") as z:
        for s, text in outputs.items():
            name = f"task1/{label}/{R.output_name(label, s)}"
            if name not in drop:
                z.writestr(name, text)
        if f"task1/{label}/{R.meta_name(label)}" not in drop:
            z.writestr(f"task1/{label}/{R.meta_name(label)}", yaml.safe_dump(meta_obj or meta()))
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


RULES = R.SubmissionRules(eval_files=FILES)


def kinds(path, severity="error"):
    return {p.kind for p in validate_zip(path, RULES) if p.severity == severity}


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
    ("extension", lambda t: _edit_rows(lambda ls: [ls[0], ls[1].replace(".wav", ".flac", 1)] + ls[2:]), "filename"),
    ("unknown_label", lambda t: _edit_rows(lambda ls: [ls[0], ls[1].replace(ls[1].split("\t")[1], "beach", 1)]
                                           + ls[2:]), "scene_label"),
    ("not_float", lambda t: _edit_rows(lambda ls: [ls[0], "\t".join(ls[1].split("\t")[:-1] + ["high"])] + ls[2:]),
     "not_float"),
    ("field_count", lambda t: _edit_rows(lambda ls: [ls[0], ls[1] + "\t0.1"] + ls[2:]), "field_count"),
    ("foreign_file", lambda t: _edit_rows(lambda ls: [ls[0], ls[1].replace("0.wav", "999999.wav", 1)] + ls[2:]),
     "unknown_file"),
])
def test_output_defects_are_named(tmp_path, name, outputs_fn, kind):
    outputs = {s: output_text() for s in R.SPLITS}
    outputs["25"] = outputs_fn(outputs["25"])
    assert kind in kinds(write_zip(tmp_path / f"{name}.zip", outputs=outputs))


@pytest.mark.parametrize("name, outputs_fn, kind", [
    ("folder_in_name", lambda t: _edit_rows(lambda ls: [ls[0], "audio/" + ls[1]] + ls[2:]), "filename_folder"),
    ("nan", lambda t: _edit_rows(lambda ls: [ls[0], "\t".join(ls[1].split("\t")[:-1] + ["nan"])] + ls[2:]), "nan"),
    ("sum", lambda t: _edit_rows(lambda ls: [ls[0], "\t".join(ls[1].split("\t")[:-1] + ["0.9"])] + ls[2:]),
     "probability_sum"),
    ("argmax", lambda t: _edit_rows(lambda ls: [ls[0], "\t".join([ls[1].split("\t")[0], "tram" if
                                                                  ls[1].split("\t")[1] != "tram" else "bus",
                                                                  *ls[1].split("\t")[2:]])] + ls[2:]), "argmax"),
])
def test_sanity_checks_are_warnings(tmp_path, name, outputs_fn, kind):
    """The official validator accepts these; they are reported, but only as warnings."""
    outputs = {s: output_text() for s in R.SPLITS}
    outputs["25"] = outputs_fn(outputs["25"])
    path = write_zip(tmp_path / f"{name}.zip", outputs=outputs)
    assert kind in kinds(path, "warning") and kinds(path) == set()


def _columns_reordered(text: str) -> str:
    table = [line.split("\t") for line in text.splitlines()]
    order = [0, 1, *range(len(table[0]) - 1, 1, -1)]  # class columns reversed
    return "\n".join("\t".join(row[i] for i in order) for row in table) + "\n"


def test_what_the_official_validator_accepts_has_no_errors(tmp_path):
    label = "Müller_TUW_task1_1"
    m = meta()
    m["submission"]["label"] = label
    m["submission"]["authors"][0].update(lastname="Müller", firstname="Jürgen", affiliation="Technische Universität")
    m["system"]["complexity"]["total_parameters"] = "61148"
    m["system"]["complexity"]["macs"] = "29419156"
    text = yaml.safe_dump(m, allow_unicode=True, sort_keys=False).replace("corresponding: true", "corresponding: yes")
    assert "corresponding: yes" in text
    path = tmp_path / "accepted.zip"
    with zipfile.ZipFile(path, "w") as z:
        for s in R.SPLITS:
            z.writestr(f"task1/{label}/{R.output_name(label, s)}", _columns_reordered(output_text()))
        z.writestr(f"task1/{label}/{R.meta_name(label)}", text.encode("utf-8"))
        z.writestr("README.md", "how we built it")
        z.writestr("task1/Müller_TUW_task1_technical_report.pdf", b"%PDF-1.4")
    problems = validate_zip(path, RULES)
    assert [p for p in problems if p.severity == "error"] == [], problems
    quoted = yaml.safe_load(text)
    quoted["submission"]["authors"][0]["corresponding"] = "yes"  # a truthy string, as the official test counts it
    assert kinds(write_zip(tmp_path / "quoted.zip", meta_obj=quoted, label=label)) == set()


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
    (("system", "complexity", "total_parameters"), None, "meta_type"),
    (("system", "external_datasets"), [{"name": "AudioSet"}], "meta_fields"),
    (("system", "description", "pipeline"), KeyError, "meta_fields"),
    (("results", "development_dataset", "split_5"), KeyError, "meta_fields"),
])
def test_meta_defects_are_named(tmp_path, path, value, kind):
    assert kind in kinds(write_zip(tmp_path / "m.zip", meta_obj=_meta_with(path, value)))


@pytest.mark.parametrize("label, severity, kind", [("Doe_Smith_TUW_task1_1", "error", "label"),
                                                    ("Doe_TUW_task2_1", "error", "label"),
                                                    ("Doe_TUW_task1_5", "warning", "label_index")])
def test_label_rules(tmp_path, label, severity, kind):
    m = meta()
    m["submission"]["label"] = label
    problems = validate_zip(write_zip(tmp_path / "l.zip", meta_obj=m, label=label), RULES)
    assert [p.kind for p in problems] == [kind] and problems[0].severity == severity


def test_incomplete_results_and_reported_overruns_are_warnings(tmp_path):
    from asc.complexity import load_budget

    m = _meta_with(("results", "development_dataset", "split_5", "overall"), KeyError)
    m["results"]["development_dataset"]["split_10"]["class_wise"]["bus"]["accuracy"] = "n/a"
    m["system"]["complexity"]["macs"] = 30_216_768
    problems = validate_zip(write_zip(tmp_path / "r.zip", meta_obj=m), RULES, load_budget("dcase2024"))
    assert {p.kind for p in problems if p.severity == "warning"} == {"meta_fields", "meta_type", "over_budget"}
    assert [p for p in problems if p.severity == "error"] == []
    assert any("30,216,768 exceeds the dcase2024 limit of 30,000,000" in p.message for p in problems)


def test_layout_defects(tmp_path):
    assert "missing_output" in kinds(write_zip(tmp_path / "a.zip", drop={f"task1/{LABEL}/{R.output_name(LABEL, '50')}"}))
    assert "missing_meta" in kinds(write_zip(tmp_path / "b.zip", drop={f"task1/{LABEL}/{R.meta_name(LABEL)}"}))
    assert "unexpected_file" in kinds(write_zip(tmp_path / "c.zip", extra={f"task1/{LABEL}/notes.txt": "x"}),
                                      "warning")
    assert kinds(write_zip(tmp_path / "d.zip", extra={"output.csv": "x", "README.md": "x"})) == set()
    assert "zip_layout" in kinds(write_zip(tmp_path / "f.zip", extra={"submission/task1_notes.txt": "x"}))
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
