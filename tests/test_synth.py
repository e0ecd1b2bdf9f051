"""Synthetic TAU-layout data: layout, splits, devices, determinism, class structure."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asc.cli import main as asc_main
from asc.data.layout import DEVICE_GROUPS, open_eval_set, read_table
from asc.data.layout import TAU_SCENES
from asc.data.synth import SynthConfig, make_synthetic_dataset
from asc.data.validate import open_dataset
from asc.errors import DatasetError

SPLITS = ("5", "10", "25", "50", "100")


def test_layout_parses_with_tau_labels_and_devices(synth_data):
    ds = open_dataset(synth_data.dev)
    cfg = SynthConfig.preset("tiny")
    assert ds.labels == sorted(TAU_SCENES)
    assert ds.devices == ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert ds.available_splits() == [*SPLITS, "test"]
    n_train = len(TAU_SCENES) * cfg.train_segments * cfg.pieces
    n_test = len(TAU_SCENES) * cfg.test_segments * cfg.pieces
    assert len(ds.meta) == n_train + n_test
    assert len(ds.split("100")) == n_train and len(ds.split("test")) == n_test
    # the official files agree with the splits folder
    setup = synth_data.dev / "evaluation_setup"
    assert read_table(setup / "fold1_train.csv", ["filename", "scene_label"])["filename"].tolist() == \
        ds.split("100")["filename"].tolist()
    assert read_table(setup / "fold1_evaluate.csv", ["filename"])["filename"].tolist() == \
        ds.split("test")["filename"].tolist()
    assert read_table(setup / "fold1_test.csv", ["filename"]).columns.tolist() == ["filename"]
    header = (synth_data.dev / "meta.csv").read_text().splitlines()[0]
    assert header == "filename\tscene_label\tidentifier\tsource_label"
    # identifiers are the location, scene labels match the file names
    assert (ds.meta["identifier"] == ds.meta["location"]).all()
    assert all(Path(f).name.startswith(s + "-") for f, s in zip(ds.meta["filename"], ds.meta["scene_label"]))


def test_audio_is_pcm16_at_44k_one_second(synth_data):
    ds = open_dataset(synth_data.dev)
    for name in ds.meta["filename"].iloc[::17]:
        info = sf.info(str(synth_data.dev / name))
        assert (info.samplerate, info.frames, info.channels, info.subtype) == (44100, 44100, 1, "PCM_16")
        x, _ = sf.read(str(synth_data.dev / name))
        assert 0.001 < np.sqrt(np.mean(x ** 2)) < 0.5 and np.abs(x).max() < 1.0


def test_splits_nested_whole_segments_stratified_disjoint(synth_data):
    ds = open_dataset(synth_data.dev)
    cfg = SynthConfig.preset("tiny")
    segments = ds.meta.groupby("segment")["filename"].apply(set)
    previous: set[str] = set()
    for name in SPLITS:
        split = ds.split(name)
        files = set(split["filename"])
        assert previous <= files, f"split{name} does not contain the smaller split"
        previous = files
        for seg in split["segment"].unique():  # all pieces of a segment together
            assert segments[seg] <= files
        assert set(split["scene_label"]) == set(TAU_SCENES)  # every class in every split
        assert set(split["device"]) <= set(DEVICE_GROUPS["real"] + DEVICE_GROUPS["seen"])
    train, test = ds.split("100"), ds.split("test")
    assert not set(train["location"]) & set(test["location"])
    assert (train["device"] == "a").mean() == pytest.approx(0.7, abs=0.06)
    assert set(test["device"]) == set(ds.devices)
    assert {f.split("-")[-2] for f in train["filename"]} == {str(k) for k in range(cfg.pieces)}


def test_eval_set(synth_data):
    ev = open_eval_set(synth_data.eval)
    cfg = SynthConfig.preset("tiny")
    n = len(TAU_SCENES) * cfg.eval_segments * cfg.pieces
    assert ev.files["filename"].tolist() == [f"audio/{i}.wav" for i in range(n)]
    assert ev.has_device_ids and set(ev.files["device_id"]) <= set(sum(DEVICE_GROUPS.values(), ()))
    assert all((synth_data.eval / f).is_file() for f in ev.files["filename"])
    truth = read_table(synth_data.eval / "ground_truth.csv", ["filename", "scene_label", "source_label"])
    assert truth["filename"].tolist() == ev.files["filename"].tolist()
    assert truth["source_label"].tolist() == ev.files["device_id"].tolist()
    assert set(truth["scene_label"]) == set(TAU_SCENES)


def test_same_seed_identical_bytes_other_seed_differs(tmp_path, synth_data):
    cfg = SynthConfig.preset("tiny", train_segments=2, test_segments=1, eval_segments=1, labels=("bus", "park"))
    a = make_synthetic_dataset(tmp_path / "a", cfg)
    make_synthetic_dataset(tmp_path / "b", cfg)
    c = make_synthetic_dataset(tmp_path / "c", SynthConfig.preset("tiny", seed=1, train_segments=2, test_segments=1,
                                                                 eval_segments=1, labels=("bus", "park")))
    for sub in ("dev", "eval"):
        files = sorted(p.relative_to(tmp_path / "a" / sub) for p in (tmp_path / "a" / sub).rglob("*") if p.is_file())
        match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a" / sub, tmp_path / "b" / sub, files, shallow=False)
        assert not mismatch and not errors and len(match) == len(files)
    name = open_dataset(a.dev).meta["filename"].iloc[0]
    assert (a.dev / name).read_bytes() != (c.dev / name).read_bytes()
    with pytest.raises(DatasetError, match="not empty"):
        make_synthetic_dataset(tmp_path / "a", cfg)
    make_synthetic_dataset(tmp_path / "a", cfg, overwrite=True)


def test_classes_separable_but_not_trivially(synth_data):
    """Band-energy features: per-class means differ, yet segments of one class vary."""
    ds = open_dataset(synth_data.dev)
    edges = np.geomspace(50, 20000, 17)

    def features(name: str) -> np.ndarray:
        x, sr = sf.read(str(synth_data.dev / name))
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / sr)
        bands = np.array([spec[(f >= lo) & (f < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:])])
        return np.log(bands / bands.sum() + 1e-10)

    meta = ds.meta[ds.meta["device"] == "a"]
    feats = np.stack([features(f) for f in meta["filename"]])
    labels = meta["label"].to_numpy()
    means = np.stack([feats[labels == c].mean(0) for c in range(len(ds.labels))])
    within = np.mean([feats[labels == c].std(0).mean() for c in range(len(ds.labels))])
    between = np.mean([np.abs(means[i] - means[j]).mean() for i in range(len(means)) for j in range(i)])
    assert within > 0.05          # not identical clips
    assert between > within       # but the classes differ more than their members


def test_bad_config_and_preset():
    with pytest.raises(DatasetError, match="unknown synthetic preset"):
        SynthConfig.preset("huge")
    with pytest.raises(DatasetError, match="'-'"):
        make_synthetic_dataset(Path("/nonexistent"), SynthConfig(labels=("a-b", "c")))


def test_cli_synth_and_report(synth_data, tmp_path, capsys):
    assert asc_main(["data", "synth", str(tmp_path / "s"), "--preset", "tiny", "--seed", "5", "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert open_dataset(paths["dev"]).labels == sorted(TAU_SCENES) and Path(paths["eval"]).is_dir()
    assert asc_main(["data", "synth", str(tmp_path / "s"), "--preset", "tiny"]) == 2  # exists: refuse
    assert "--overwrite" in capsys.readouterr().err

    assert asc_main(["data", "report", str(synth_data.dev), "--json", "--out", str(tmp_path / "rep")]) == 0
    report = json.loads(capsys.readouterr().out)
    layout = open_dataset(synth_data.dev)
    for name in ("5", "100", "test"):
        split = layout.split(name)
        assert report["splits"][name]["rows"] == len(split)
        assert report["splits"][name]["class_device"]["bus"]["a"] == \
            int(((split["scene_label"] == "bus") & (split["device"] == "a")).sum())
    assert report["audio"]["sample_rates"] == {"44100": len(layout.meta)}
    assert report["audio"]["durations_s"] == {"1.0": len(layout.meta)} and not report["audio"]["unreadable"]
    assert json.loads((tmp_path / "rep" / "data_report.json").read_text()) == report
    assert (tmp_path / "rep" / "data_report.png").read_bytes()[:4] == b"\x89PNG"
    assert asc_main(["data", "report", str(synth_data.dev), "--no-audio"]) == 0
    out = capsys.readouterr().out
    assert "clips per split and device" in out and "street_traffic" in out and "audio:" not in out


def test_small_preset_has_five_distinct_nested_splits(tmp_path):
    """The demo's dataset: every training split holds more clips than the one below it."""
    cfg = SynthConfig.preset("small", sample_rate=8000, clip_seconds=0.25)
    layout = open_dataset(make_synthetic_dataset(tmp_path, cfg).dev)
    sizes = [len(layout.split(s)) for s in ("5", "10", "25", "50", "100")]
    assert sizes == sorted(set(sizes)) and sizes[-1] == 20 * 3 * 10
