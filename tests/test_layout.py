"""The TAU layout reader: labels/devices from the data, splits, evaluation sets, clear errors."""

import shutil

import pytest

from asc.data.layout import natural_key, normalise_split_name, open_eval_set, parse_filename
from asc.data.layout import read_dataset as open_dataset
from asc.errors import DatasetError


def test_parse_tau_filename():
    f = parse_filename("audio/street_traffic-lyon-1100-40600-3-s5.wav")
    assert f == {"city": "lyon", "location": "lyon-1100", "segment": "street_traffic-lyon-1100-40600-s5",
                 "piece": "3", "device": "s5"}
    assert parse_filename("audio/0.wav")["segment"] == "0"


def test_natural_device_order():
    assert sorted(["s10", "s2", "a", "s1", "c"], key=natural_key) == ["a", "c", "s1", "s2", "s10"]


def test_split_names():
    assert normalise_split_name(25) == "25" and normalise_split_name("split5.csv") == "5"
    assert normalise_split_name("dev-test") == "test"
    with pytest.raises(DatasetError, match="unknown split"):
        normalise_split_name("30")


def test_us8k_mini_labels_come_from_data(shared_dir):
    ds = open_dataset(shared_dir / "data" / "us8k-mini")
    assert ds.labels[0] == "air_conditioner" and len(ds.labels) == 10
    assert ds.devices == ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert [len(ds.split(s)) for s in ("5", "10", "25", "50", "100", "test")] == [50, 95, 237, 474, 956, 953]
    train = ds.split("100")
    assert (train["label"] == train["scene_label"].map(ds.label_to_index)).all()


def test_errors_name_file_and_row(tmp_path, shared_dir):
    root = tmp_path / "ds"
    root.mkdir()
    with pytest.raises(DatasetError, match="meta.csv: file not found"):
        open_dataset(root)
    (root / "meta.csv").write_text("filename,scene_label,identifier,source_label\na.wav,x,y,a\n")
    with pytest.raises(DatasetError, match="comma-separated"):
        open_dataset(root)
    (root / "meta.csv").write_text("filename\tscene_label\tidentifier\tsource_label\n"
                                   "audio/a.wav\tbus\tx-1\ta\naudio/a.wav\tbus\tx-1\ta\n")
    with pytest.raises(DatasetError, match="row 3: duplicate filename audio/a.wav"):
        open_dataset(root)
    (root / "meta.csv").write_text("filename\tscene_label\tidentifier\tsource_label\naudio/a.wav\tbus\tx-1\ta\n")
    (root / "splits").mkdir()
    (root / "splits" / "split5.csv").write_text("filename\tscene_label\naudio/zzz.wav\tbus\n")
    with pytest.raises(DatasetError, match=r"split5.csv: 1 file\(s\) not in meta.csv: row 2 \(audio/zzz.wav\)"):
        open_dataset(root).split("5")
    with pytest.raises(DatasetError, match="asc data splits fetch"):
        open_dataset(root).split("10")


def test_eval_set_with_and_without_device_ids(tmp_path):
    (tmp_path / "evaluation_setup").mkdir()
    (tmp_path / "evaluation_setup" / "fold1_test.csv").write_text("filename\naudio/0.wav\naudio/1.wav\n")
    ev = open_eval_set(tmp_path)
    assert list(ev.files["filename"]) == ["audio/0.wav", "audio/1.wav"] and not ev.has_device_ids
    (tmp_path / "evaluation_setup" / "fold1_test.csv").write_text(
        "filename\tdevice_id\naudio/0.wav\ta\naudio/1.wav\tunknown\n")
    ev = open_eval_set(tmp_path)
    assert list(ev.files["device_id"]) == ["a", ""] and ev.has_device_ids
