"""``asc data check``: clean real and synthetic datasets pass; each injected defect is reported by kind, file and
row; bad inputs give clear errors."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from asc.cli import main
from asc.data.check import KINDS, check_dataset, check_dataset_report, check_split_files
from asc.errors import DatasetError

TABLES = ["meta.csv", "evaluation_setup/fold1_train.csv", "evaluation_setup/fold1_evaluate.csv",
          "evaluation_setup/fold1_test.csv", *[f"splits/split{n}.csv" for n in (5, 10, 25, 50, 100)],
          "splits/test.csv"]


def _read(root, rel):
    return pd.read_csv(root / rel, sep="\t", dtype=str, keep_default_na=False)


def _write(root, rel, df):
    (root / rel).write_text(df.to_csv(sep="\t", index=False))


def _reduce(src, dst, train_rows=40, test_rows=20):
    """Copy of dataset ``src`` with whole segments only: those of the smallest split, topped up from fold1_train
    to ``train_rows``, and the first segments of fold1_evaluate up to ``test_rows``. Tables keep their order."""
    meta = _read(src, "meta.csv")
    segment = pd.Series(meta["filename"].str.replace(r"-\d+-([^-]+)\.wav$", r"-\1", regex=True).to_numpy(),
                        index=meta["filename"])
    chosen = set()

    def take(filenames, limit):
        filenames, picked = list(dict.fromkeys(filenames)), []
        for seg in dict.fromkeys(segment[filenames]):
            if len(picked) >= limit:
                break
            picked += [f for f in filenames if segment[f] == seg]
        chosen.update(picked)

    take(list(_read(src, "splits/split5.csv")["filename"]) + list(_read(src, "evaluation_setup/fold1_train.csv")
                                                                 ["filename"]), train_rows)
    take(list(_read(src, "evaluation_setup/fold1_evaluate.csv")["filename"]), test_rows)
    for rel in TABLES:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        df = _read(src, rel)
        _write(dst, rel, df[df["filename"].isin(chosen)])
    (dst / "audio").mkdir()
    for f in chosen:
        shutil.copyfile(src / f, dst / f)
    return dst


@pytest.fixture(scope="module", params=["us8k-mini", "synth"])
def reduced(request, tmp_path_factory):
    """A reduced copy (~60 clips) of the real us8k-mini dataset or of the synthetic dataset."""
    src = (request.getfixturevalue("shared_dir") / "data" / "us8k-mini" if request.param == "us8k-mini"
           else request.getfixturevalue("synth_data").dev)
    return _reduce(src, tmp_path_factory.mktemp(request.param))


@pytest.fixture
def dataset(reduced, tmp_path):
    """A fresh, writable copy of the reduced dataset."""
    return shutil.copytree(reduced, tmp_path / "ds")


def _audio(root):
    return _read(root, "meta.csv")["filename"].tolist()


def _rewrite(path, seconds=1.0, rate=None, channels=1):
    old, old_rate = sf.read(path, dtype="float32", always_2d=True)
    rate = rate or old_rate
    n = int(round(seconds * rate))
    data = np.resize(old[:, 0], n)[:, None].repeat(channels, axis=1)
    sf.write(path, data, rate, subtype="PCM_16", format="WAV")


def _multi_piece_segment(root, rel):
    """(first line, filenames) of the first segment with two or more pieces in table ``rel``."""
    df = _read(root, rel)
    seg = df["filename"].str.replace(r"-\d+-([^-]+)\.wav$", r"-\1", regex=True)
    name = seg[seg.duplicated()].iloc[0]
    rows = df.index[seg == name]
    return int(rows[0]) + 2, df["filename"][rows].tolist()


# Each defect: inject(root) -> (kind, file, row or None) that the report must contain.
def _missing_audio(root):
    f = _audio(root)[3]
    (root / f).unlink()
    return "missing_audio", f, None


def _garbage_audio(root):
    f = _audio(root)[4]
    (root / f).write_bytes(b"this is not audio" * 100)
    return "unreadable_audio", f, None


def _corrupt_body(root):
    """A FLAC body whose header reads fine but whose frames do not decode: only a real decode finds it."""
    f = _audio(root)[5]
    data, rate = sf.read(root / f, dtype="float32")
    sf.write(root / f, data, rate, format="FLAC")
    raw = bytearray((root / f).read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 400] = bytes(400)
    (root / f).write_bytes(raw)
    sf.info(root / f)  # the header alone looks fine
    return "unreadable_audio", f, None


def _truncated_wav(root):
    f = _audio(root)[6]
    raw = (root / f).read_bytes()
    (root / f).write_bytes(raw[: len(raw) // 2])
    return "unreadable_audio", f, None


def _mixed_rate(root):
    f = _audio(root)[7]
    _rewrite(root / f, rate=16000)
    return "mixed_sample_rate", f, None


def _stereo(root):
    f = _audio(root)[8]
    _rewrite(root / f, channels=2)
    return "channels", f, None


def _short(root):
    f = _audio(root)[9]
    _rewrite(root / f, seconds=0.5)
    return "duration", f, None


def _unknown_label(root):
    df = _read(root, "splits/split5.csv")
    df.loc[1, "scene_label"] = "bogus"
    _write(root, "splits/split5.csv", df)
    return "unknown_label", "splits/split5.csv", 3


def _label_mismatch(root):
    df = _read(root, "evaluation_setup/fold1_evaluate.csv")
    labels = sorted(set(_read(root, "meta.csv")["scene_label"]))
    df.loc[2, "scene_label"] = next(label for label in labels if label != df.loc[2, "scene_label"])
    _write(root, "evaluation_setup/fold1_evaluate.csv", df)
    return "label_mismatch", "evaluation_setup/fold1_evaluate.csv", 4


def _duplicate_meta(root):
    df = _read(root, "meta.csv")
    _write(root, "meta.csv", pd.concat([df, df.iloc[[0]]]))
    return "duplicate_row", "meta.csv", len(df) + 2


def _duplicate_split(root):
    df = _read(root, "splits/split10.csv")
    _write(root, "splits/split10.csv", pd.concat([df.iloc[:3], df.iloc[[1]], df.iloc[3:]]))
    return "duplicate_row", "splits/split10.csv", 5


def _unknown_file(root):
    df = _read(root, "evaluation_setup/fold1_test.csv")
    _write(root, "evaluation_setup/fold1_test.csv", pd.concat([df, pd.DataFrame({"filename": ["audio/nope.wav"]})]))
    return "unknown_file", "evaluation_setup/fold1_test.csv", len(df) + 2


def _not_nested(root):
    line, names = _multi_piece_segment(root, "splits/split5.csv")
    df = _read(root, "splits/split10.csv")
    _write(root, "splits/split10.csv", df[~df["filename"].isin(names)])  # a whole segment of split5 left out
    return "not_nested", "splits/split5.csv", line


def _partial_segment(root):
    line, names = _multi_piece_segment(root, "splits/split5.csv")
    df = _read(root, "splits/split5.csv")
    _write(root, "splits/split5.csv", df[df["filename"] != names[-1]])
    return "partial_segment", "splits/split5.csv", line


def _location_overlap(root):
    extra = _read(root, "evaluation_setup/fold1_evaluate.csv").iloc[[0]]
    for rel in ("evaluation_setup/fold1_train.csv", "splits/split100.csv"):
        df = _read(root, rel)
        _write(root, rel, pd.concat([df, extra]))
    return "location_overlap", "splits/split100.csv", len(df) + 2


def _missing_column(root):
    (root / "splits/split25.csv").write_text("filename\tlabel\naudio/x.wav\tbus\n")
    return "missing_column", "splits/split25.csv", 1


def _comma_separated(root):
    df = _read(root, "splits/split50.csv")
    (root / "splits/split50.csv").write_text(df.to_csv(index=False))
    return "missing_column", "splits/split50.csv", 1


def _bad_table(root):
    with open(root / "splits/split50.csv", "a") as f:
        f.write("audio/x.wav\tbus\textra\tfields\n")
    return "bad_table", "splits/split50.csv", None


def _empty_value(root):
    df = _read(root, "evaluation_setup/fold1_evaluate.csv")
    df.loc[0, "filename"] = ""
    _write(root, "evaluation_setup/fold1_evaluate.csv", df)
    return "empty_value", "evaluation_setup/fold1_evaluate.csv", 2


def _missing_file(root):
    (root / "evaluation_setup/fold1_evaluate.csv").unlink()
    return "missing_file", "evaluation_setup/fold1_evaluate.csv", None


def _device_mismatch(root):
    df = _read(root, "meta.csv")
    df.loc[4, "source_label"] = "s6" if df.loc[4, "source_label"] != "s6" else "a"
    _write(root, "meta.csv", df)
    return "device_mismatch", "meta.csv", 6


def _location_mismatch(root):
    df = _read(root, "meta.csv")
    df.loc[5, "identifier"] = "nowhere-0"
    _write(root, "meta.csv", df)
    return "location_mismatch", "meta.csv", 7


DEFECTS = [_missing_audio, _garbage_audio, _corrupt_body, _truncated_wav, _mixed_rate, _stereo, _short,
           _unknown_label, _label_mismatch, _duplicate_meta, _duplicate_split, _unknown_file, _not_nested,
           _partial_segment, _location_overlap, _missing_column, _comma_separated, _bad_table, _empty_value,
           _missing_file, _device_mismatch, _location_mismatch]


def test_us8k_mini_is_clean(shared_dir, capsys):
    assert main(["data", "check", str(shared_dir / "data" / "us8k-mini")]) == 0
    out = capsys.readouterr().out
    assert "clean: no problems found" in out and "audio: 1909 of 1909 files decoded; 22050 Hz (1909)" in out


def test_reduced_copy_is_clean(reduced, capsys):
    assert main(["data", "check", str(reduced), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["problems"] == [] and 50 <= report["stats"]["clips"] <= 70
    assert report["stats"]["audio_ok"] == report["stats"]["clips"]


@pytest.mark.parametrize("inject", DEFECTS, ids=lambda f: f.__name__.strip("_"))
def test_each_defect_is_reported(dataset, inject, capsys):
    kind, file, row = inject(dataset)
    assert main(["data", "check", str(dataset), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    found = [(p["kind"], p["file"], p["row"]) for p in report["problems"]]
    assert (kind, file, row) in found, found
    assert kind in KINDS
    assert main(["data", "check", str(dataset)]) == 1
    human = capsys.readouterr().out
    assert f"{kind} (" in human and file in human and "problem(s):" in human


def test_all_problems_at_once_and_expected_rate(dataset):
    kinds = {_missing_audio(dataset)[0], _unknown_label(dataset)[0], _not_nested(dataset)[0], _stereo(dataset)[0]}
    report = check_dataset_report(dataset, sample_rate=8000, progress=False)
    assert kinds | {"sample_rate"} <= set(report.counts())
    assert report.counts()["sample_rate"] == report.stats["audio_ok"]  # every decodable file is not at 8 kHz
    table_only = {p.kind for p in check_dataset(dataset, check_audio=False)}
    assert "unknown_label" in table_only and not table_only & {"missing_audio", "channels", "sample_rate"}


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        check_dataset(tmp_path / "absent")
    with pytest.raises(DatasetError, match=r"meta.csv: file not found; a dataset in the TAU layout"):
        check_dataset(tmp_path)
    assert main(["data", "check", str(tmp_path)]) == 2
    assert "asc data: error:" in capsys.readouterr().err
    (tmp_path / "meta.csv").write_text("filename,scene_label,identifier,source_label\naudio/a.wav,bus,x-1,a\n")
    problems = check_dataset(tmp_path)
    assert problems[0].kind == "missing_column" and "comma-separated" in problems[0].message
    assert {p.kind for p in problems} == {"missing_column", "missing_file"}
    (tmp_path / "meta.csv").write_text("filename\tscene_label\n")
    assert "missing column(s) identifier, source_label" in str(check_dataset(tmp_path)[0])
    with pytest.raises(DatasetError, match="absent.csv: file not found"):
        check_split_files([tmp_path / "absent.csv"])


def test_synthetic_split_files_are_nested(synth_data):
    files = sorted((synth_data.dev / "splits").glob("*.csv"))
    report = check_split_files(files)
    assert report.problems == [] and len(report.stats["chain"]) == 5
