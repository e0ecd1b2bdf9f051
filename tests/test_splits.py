"""Split manifests and nested, stratified splits; the official split files are nested with whole segments."""

import shutil

import numpy as np
import pandas as pd
import pytest

from asc.cli import main
from asc.data.check import check_dataset, check_split_files
from asc.data.layout import parse_filename
from asc.data.splits import load_manifest, make_splits
from asc.data.validate import open_dataset
from asc.errors import ConfigError, DatasetError
from asc.fileio import file_digest

LABELS = ["airport", "bus", "metro", "park", "tram"]
DEVICES = ["a", "b", "c", "s1", "s2", "s3"]


def _tau_like(root, seed=0, train_segments=240, test_segments=40, overlap=0):
    """Tables (no audio) of a TAU-like dataset: 10-piece segments, ~70 % device a in train, test locations apart.
    ``overlap`` train segments are recorded at a test location."""
    rng = np.random.default_rng(seed)
    rows, train, test = [], [], []

    def segment(label, city, loc, seg, device, into):
        for k in range(10):
            name = f"audio/{label}-{city}-{loc}-{seg}-{k}-{device}.wav"
            rows.append((name, label, f"{city}-{loc}", device))
            into.append((name, label))

    for i in range(train_segments):
        device = "a" if rng.random() < 0.7 else DEVICES[1 + i % 5]
        loc = 1000 + int(rng.integers(40)) if i >= overlap else 1
        segment(LABELS[i % len(LABELS)], "lyon", loc, i, device, train)
    for i in range(test_segments):
        segment(LABELS[i % len(LABELS)], "lyon", i % 5, 5000 + i, DEVICES[i % 6], test)
    (root / "evaluation_setup").mkdir(parents=True)
    pd.DataFrame(rows, columns=["filename", "scene_label", "identifier", "source_label"]).to_csv(
        root / "meta.csv", sep="\t", index=False)
    for name, table in (("fold1_train.csv", train), ("fold1_evaluate.csv", test)):
        pd.DataFrame(table, columns=["filename", "scene_label"]).to_csv(root / "evaluation_setup" / name, sep="\t",
                                                                        index=False)
    return root


def _read(path):
    return pd.read_csv(path, sep="\t", dtype=str)


def test_manifest_has_the_official_facts():
    m = load_manifest("dcase2024")
    assert m.base_url == "https://github.com/CPJKU/dcase2024_task1_baseline/releases/download/files/"
    assert {f.split: f.rows for f in m.files} == {"5": 6980, "10": 13960, "25": 34900, "50": 69800, "100": 139620,
                                                 "test": 29680}
    assert m.file("100").source == "evaluation_setup/fold1_train.csv" and m.file("100").md5 is None
    assert m.file("test").md5 == "b004a563a8320fb4152c5479abfc442e"
    with pytest.raises(ConfigError, match="unknown split manifest 'dcase1999'; known: dcase2024"):
        load_manifest("dcase1999")


def test_manifest_checksums_match_the_real_files(shared_dir):
    for f in load_manifest("dcase2024").files:
        if not f.source:
            assert file_digest(shared_dir / "splits" / f.name, "md5") == f.md5, f.name


def test_made_splits_are_nested_whole_stratified_and_checkable(tmp_path):
    root = _tau_like(tmp_path / "ds")
    made = make_splits(root, seed=3)
    train = _read(root / "evaluation_setup" / "fold1_train.csv")
    tables = {name: _read(path) for name, path in made.paths.items()}
    assert tables["100"]["filename"].tolist() == train["filename"].tolist()
    assert tables["test"].equals(_read(root / "evaluation_setup" / "fold1_evaluate.csv"))
    meta = open_dataset(root).meta.set_index("filename")
    previous = set()
    for f in ("5", "10", "25", "50", "100"):
        t = tables[f].join(meta[["device", "segment"]], on="filename")
        assert len(train) * int(f) / 100 - 10 < len(t) <= len(train) * int(f) / 100  # whole segments of 10
        assert (t.groupby("segment").size() == 10).all()
        assert previous <= set(t["filename"])
        previous = set(t["filename"])
        assert (t["scene_label"] == t["filename"].map(meta["scene_label"])).all()
        for col in ("device", "scene_label"):  # each marginal within one segment of its target
            share = t[col].value_counts() / len(t)
            target = train.join(meta[["device"]], on="filename")[col].value_counts() / len(train)
            assert (share.reindex(target.index, fill_value=0) - target).abs().max() <= 10 / len(t) + 1e-9, (f, col)
    assert made.rows["5"] == len(tables["5"]) and made.segments["5"] == len(tables["5"]) // 10
    assert check_dataset(root, check_audio=False) == []
    assert len(open_dataset(root).split("10")) == made.rows["10"]


def test_same_seed_same_splits_other_seed_other_splits(tmp_path):
    texts = {}
    for name, seed in (("x", 1), ("y", 1), ("z", 2)):
        root = _tau_like(tmp_path / name)
        make_splits(root, seed=seed, fractions=(10, 50))
        texts[name] = [(root / "splits" / f"split{f}.csv").read_text() for f in (10, 50)]
    assert texts["x"] == texts["y"]
    assert texts["x"][0] != texts["z"][0]


def test_training_rows_at_test_locations_are_dropped(tmp_path, caplog):
    root = _tau_like(tmp_path / "ds", overlap=3)
    made = make_splits(root)
    assert made.dropped_rows == 30 and made.dropped_locations == ["lyon-1"]
    assert "lyon-1" in caplog.text
    test_locations = {parse_filename(f)["location"] for f in _read(made.paths["test"])["filename"]}
    for f in ("5", "10", "25", "50", "100"):
        assert not {parse_filename(x)["location"] for x in _read(made.paths[f])["filename"]} & test_locations
    assert made.rows["100"] == 2400 - 30


def test_existing_splits_need_overwrite(tmp_path, capsys):
    root = _tau_like(tmp_path / "ds", train_segments=40, test_segments=10)
    assert main(["data", "splits", "make", str(root), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "split5.csv: 20 rows (5.0 %), 2 segments" in out and "test.csv: 100 rows, 10 segments" in out
    before = (root / "splits" / "split50.csv").read_text()
    assert main(["data", "splits", "make", str(root), "--seed", "2"]) == 2
    assert "already exist; pass --overwrite" in capsys.readouterr().err
    assert (root / "splits" / "split50.csv").read_text() == before
    assert main(["data", "splits", "make", str(root), "--seed", "2", "--overwrite"]) == 0


def test_make_splits_bad_inputs(tmp_path):
    root = _tau_like(tmp_path / "ds", train_segments=20, test_segments=5)
    train = root / "evaluation_setup" / "fold1_train.csv"
    with pytest.raises(DatasetError, match="expected percentages in 1..100"):
        make_splits(root, fractions=(0, 50))
    text = train.read_text()
    train.write_text(text + "audio/bus-lyon-9-9-0-a.wav\tbus\n")
    with pytest.raises(DatasetError, match=r"fold1_train.csv: 1 file\(s\) not in meta.csv: row 202"):
        make_splits(root)
    train.write_text(text.replace("\t", ","))
    with pytest.raises(DatasetError, match="fold1_train.csv: missing column.*comma-separated"):
        make_splits(root)
    train.unlink()
    with pytest.raises(DatasetError, match="fold1_train.csv: file not found"):
        make_splits(root)
    with pytest.raises(DatasetError, match="meta.csv: file not found"):
        make_splits(tmp_path / "ds" / "evaluation_setup")


def test_make_splits_on_synthetic_dataset(synth_data, tmp_path):
    root = tmp_path / "dev"
    shutil.copytree(synth_data.dev, root, ignore=shutil.ignore_patterns("audio"))
    (root / "audio").symlink_to(synth_data.dev / "audio")
    made = make_splits(root, seed=0, overwrite=True)
    assert [made.rows[f] for f in ("5", "10", "25", "50", "100")] == sorted(made.rows[f] for f in
                                                                           ("5", "10", "25", "50", "100"))
    assert made.rows["100"] == len(_read(root / "evaluation_setup" / "fold1_train.csv"))
    assert check_dataset(root, progress=False) == []


def test_official_split_files_are_nested_with_whole_segments(shared_dir, capsys):
    files = sorted((shared_dir / "splits").glob("*.csv"))
    report = check_split_files(files, manifest="dcase2024")
    assert report.problems == []
    assert [p.split("/")[-1] for p in report.stats["chain"]] == ["split5.csv", "split10.csv", "split25.csv",
                                                                  "split50.csv"]
    info = {f["file"].split("/")[-1]: f for f in report.stats["files"]}
    assert info["split5.csv"]["rows"] == 6980 and info["split5.csv"]["pieces_per_segment"] == {10: 698}
    assert info["test.csv"]["role"] == "test" and len(info["test.csv"]["devices"]) == 9
    assert main(["data", "splits", "check", *map(str, files)]) == 0
    assert "split5.csv ⊂ split10.csv ⊂ split25.csv ⊂ split50.csv" in capsys.readouterr().out


def test_split_file_defects_are_found(shared_dir, tmp_path, capsys):
    s5, s10 = (_read(shared_dir / "splits" / n) for n in ("split5.csv", "split10.csv"))
    s5 = s5.drop(index=3).reset_index(drop=True)  # the first segment is one piece short
    gone = s5["filename"].iloc[20]  # a split5 row no longer in split10
    s10 = s10[s10["filename"] != gone]
    test = _read(shared_dir / "splits" / "test.csv").head(20)
    test.loc[0, "filename"] = s10["filename"].iloc[-1]  # a training file (and location) in the test split
    for name, df in (("split5.csv", s5), ("split10.csv", s10), ("test.csv", test)):
        (tmp_path / name).write_text(df.to_csv(sep="\t", index=False))
    report = check_split_files([tmp_path / n for n in ("split10.csv", "split5.csv", "test.csv")],
                               manifest="dcase2024")
    kinds = report.counts()
    assert kinds["not_nested"] == 1 and kinds["location_overlap"] == 1
    assert kinds["row_count"] == 3 and kinds["checksum"] == 3
    nested = next(p for p in report.problems if p.kind == "not_nested")
    assert nested.file.endswith("split5.csv") and nested.row == 22 and gone in nested.message
    partial = [p for p in report.problems if p.kind == "partial_segment"]
    assert [(p.file.split("/")[-1], p.row) for p in partial] == [("split5.csv", 2)]
    assert "9 of its 10 pieces in " in partial[0].message
    overlap = next(p for p in report.problems if p.kind == "location_overlap")
    assert "test.csv (line 2" in overlap.message
    assert main(["data", "splits", "check", str(tmp_path / "split5.csv"), str(tmp_path / "split10.csv")]) == 1
    assert "not_nested (1)" in capsys.readouterr().out
    assert main(["data", "splits", "check", str(tmp_path / "absent.csv")]) == 2
