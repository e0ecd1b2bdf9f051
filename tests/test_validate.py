"""The dataset validation every command runs (asc.data.validate.open_dataset): each defect a real user makes is
refused with one line naming file, line and value; a training split leaking test locations is refused unless
allowed; the verdict is remembered while the tables are unchanged. And `asc data check` flags non-finite and
all-zero audio."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from asc.cli import main
from asc.data import validate
from asc.data.validate import open_dataset
from asc.errors import DatasetError


def _read(root, rel):
    return pd.read_csv(root / rel, sep="\t", dtype=str, keep_default_na=False)


def _write(root, rel, df):
    (root / rel).write_text(df.to_csv(sep="\t", index=False))


@pytest.fixture
def dev(synth_data, tmp_path):
    """A writable copy of the tiny synthetic development set (TAU scenes and file names)."""
    return shutil.copytree(synth_data.dev, tmp_path / "dev")


def _leak(root):
    """A test row also listed in the training files (split100 and fold1_train, so nesting still holds)."""
    row = _read(root, "splits/test.csv").iloc[[0]]
    for rel in ("splits/split100.csv", "evaluation_setup/fold1_train.csv"):
        _write(root, rel, pd.concat([_read(root, rel), row]))
    return row["filename"].iloc[0]


def test_a_clean_dataset_opens(dev):
    layout = open_dataset(dev, train_split="25")
    assert layout.labels == sorted(set(layout.meta["scene_label"])) and len(layout.labels) == 10


def test_a_label_typo_is_not_an_eleventh_class(dev, capsys):
    meta = _read(dev, "meta.csv")
    label = meta.loc[3, "scene_label"]
    typo = label[:2] + label[3:]  # "airport" -> "aiport"
    meta.loc[3, "scene_label"] = typo
    _write(dev, "meta.csv", meta)
    with pytest.raises(DatasetError, match=rf"meta.csv line 5: scene_label '{typo}' \(1 row\(s\)\) is not one of the "
                                           rf"official TAU scenes \(did you mean '{label}'\?\)"):
        open_dataset(dev)
    assert main(["train", "--data", str(dev), "--split", "5", "--epochs", "1", "--runs-dir",
                 str(dev.parent / "runs"), "--name", "typo"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"'{typo}'" in err and "meta.csv line 5" in err
    assert not (dev.parent / "runs").exists()  # refused before anything was written


def test_a_declared_class_list_is_enforced(shared_dir, tmp_path):
    root = shutil.copytree(shared_dir / "data" / "us8k-mini", tmp_path / "us8k", ignore=shutil.ignore_patterns(
        "*.wav"))
    labels = sorted(set(_read(root, "meta.csv")["scene_label"]))
    assert open_dataset(root, labels=labels).labels == labels  # not TAU scenes: any list, or the declared one
    with pytest.raises(DatasetError, match=rf"scene_label '{labels[-1]}' \(\d+ row\(s\)\) is not one of the "
                                           rf"declared class list"):
        open_dataset(root, labels=labels[:-1])


@pytest.mark.parametrize("defect", ["duplicate", "not_in_meta", "split_label", "not_nested"])
def test_each_table_defect_is_refused_naming_file_and_line(dev, defect):
    split = _read(dev, "splits/split10.csv")
    if defect == "duplicate":
        _write(dev, "splits/split10.csv", pd.concat([split.iloc[:3], split.iloc[[1]], split.iloc[3:]]))
        expected = r"splits/split10.csv line 5: audio/\S+ is already listed on line 3"
    elif defect == "not_in_meta":
        _write(dev, "splits/split10.csv", pd.concat([split, pd.DataFrame({"filename": ["audio/nope.wav"],
                                                                          "scene_label": ["bus"]})]))
        expected = rf"splits/split10.csv line {len(split) + 2}: audio/nope.wav is not in meta.csv"
    elif defect == "split_label":
        split.loc[0, "scene_label"] = "tram" if split.loc[0, "scene_label"] != "tram" else "bus"
        _write(dev, "splits/split10.csv", split)
        expected = r"splits/split10.csv line 2: audio/\S+: scene_label '\w+' but meta.csv says '\w+'"
    else:
        _write(dev, "splits/split10.csv", split.iloc[2:])
        expected = r"splits/split5.csv line \d+: audio/\S+ is not in splits/split10.csv"
    with pytest.raises(DatasetError, match=expected):
        open_dataset(dev)


def test_training_on_a_split_that_leaks_test_locations_is_an_error_unless_allowed(dev, capsys, caplog):
    leaked = _leak(dev)
    location = "-".join(leaked.split("/")[-1].split("-")[1:3])
    with pytest.raises(DatasetError, match=rf"split100.csv: 1 recording location\(s\) of training split 100 "
                                           rf"\(1 row\(s\)\) are also in the test split .*test.csv, e.g. {location}"):
        open_dataset(dev, train_split="100")
    open_dataset(dev, train_split="5")  # the small splits do not leak
    with caplog.at_level(logging.WARNING, logger="asc.data.validate"):
        assert open_dataset(dev, train_split="100", allow_leak=True).root == dev
        open_dataset(dev)  # commands that do not train: a warning
    assert "allowed by allow_leak" in caplog.text and "inflated dev-test scores" in caplog.text

    runs = dev.parent / "runs"
    assert main(["train", "--data", str(dev), "--split", "100", "--runs-dir", str(runs), "--name", "leak"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and location in err and "--allow-leak" in err
    # --allow-leak reaches the trainer: it passes the validation and stops at the next check (the model name)
    assert main(["train", "--data", str(dev), "--split", "100", "--runs-dir", str(runs), "--name", "leak",
                 "--allow-leak", "--model", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_every_dataset_command_validates(dev, capsys):
    split = _read(dev, "splits/split10.csv")
    _write(dev, "splits/split10.csv", pd.concat([split, split.iloc[[0]]]))
    runs = ["--runs-dir", str(dev.parent / "runs")]
    for argv in (["data", "cache", str(dev)], ["teachers", "ensemble", "nowhere", "--out", "x.logits", "--data",
                                                str(dev)], ["distill", "--data", str(dev), "--teachers", "t.logits",
                                                            *runs]):
        assert main(argv) == 2, argv
        assert "is already listed on line" in capsys.readouterr().err


def test_the_verdict_is_remembered_until_a_table_changes(dev, monkeypatch):
    calls = []
    real = validate.check_tables
    monkeypatch.setattr(validate, "check_tables", lambda *a, **k: calls.append(a) or real(*a, **k))
    open_dataset(dev)
    open_dataset(dev, train_split="5")
    assert len(calls) == 1
    split = _read(dev, "splits/split10.csv")
    _write(dev, "splits/split10.csv", pd.concat([split, split.iloc[[0]]]))
    with pytest.raises(DatasetError, match="already listed"):
        open_dataset(dev)
    assert len(calls) == 2


def test_data_check_flags_non_finite_and_silent_audio(dev, capsys):
    names = _read(dev, "meta.csv")["filename"]
    nan_file, zero_file = dev / names[0], dev / names[1]
    audio, rate = sf.read(nan_file, dtype="float32")
    audio[10], audio[20] = np.nan, np.inf
    sf.write(nan_file, audio, rate, subtype="FLOAT")
    sf.write(zero_file, np.zeros_like(audio), rate, subtype="PCM_16")
    assert main(["data", "check", str(dev)]) == 1
    out = capsys.readouterr().out
    assert f"{names[0]}: 2 of its {len(audio)} samples are NaN or infinite (meta.csv line 2)" in out
    assert f"{names[1]}: all {len(audio)} samples are zero (meta.csv line 3)" in out
