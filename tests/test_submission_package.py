"""Building submissions from trained models: the 2024 zip (validated, atomic) and the 2025 inference package."""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml

from asc.data.layout import open_dataset, open_eval_set
from asc.models.registry import build_model, make_config, save_bundle
from asc.submission import rules as R
from asc.submission.inference2025 import build_inference_package
from asc.submission.package import (Author, PackageConfig, SubmissionError, SystemConfig, build_package,
                                    rules_for)
from asc.submission.predict import predict_eval_set
from asc.submission.validate import validate_zip


@pytest.fixture(scope="module")
def bundle(synth_data, tmp_path_factory):
    """A small randomly initialised baseline24 over the synthetic labels, plus a device-b specific copy."""
    import torch

    labels = open_dataset(synth_data.dev).labels
    torch.manual_seed(0)
    cfg = make_config("baseline24", {"base_channels": 8}, n_classes=len(labels))
    model = build_model("baseline24", {"base_channels": 8}, n_classes=len(labels))
    device_b = build_model("baseline24", {"base_channels": 8}, n_classes=len(labels))
    path = tmp_path_factory.mktemp("bundle") / "student.pt"
    save_bundle(path, model, "baseline24", cfg, labels, device_state_dicts={"b": device_b.state_dict()})
    return path


def config(synth_data, bundle, tmp_path, **system) -> PackageConfig:
    author = Author("Doe", "Jane", "jane@example.org", "TU Wien", corresponding=True)
    sys_cfg = SystemConfig(index=1, name="Tiny baseline", abbreviation="TinyB",
                           models={s: str(bundle) for s in (*R.SPLITS, "all")}, precision="fp16", **system)
    return PackageConfig(lastname="Doe", institute="TUW", eval_set=str(synth_data.eval), dev_data=str(synth_data.dev),
                         authors=[author], systems=[sys_cfg], out=str(tmp_path / "Doe_TUW_task1.zip"))


def test_zip_is_built_validated_and_complete(synth_data, bundle, tmp_path):
    path = build_package(config(synth_data, bundle, tmp_path), progress=False)
    assert validate_zip(path, rules_for(synth_data.eval)) == []
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        meta = yaml.safe_load(z.read("task1/Doe_TUW_task1_1/Doe_TUW_task1_1.meta.yaml"))
        out = z.read("task1/Doe_TUW_task1_1/Doe_TUW_task1_1.output.split_25.csv").decode()
    assert names == {f"task1/Doe_TUW_task1_1/Doe_TUW_task1_1.output.split_{s}.csv" for s in R.SPLITS} | {
        "task1/Doe_TUW_task1_1/Doe_TUW_task1_1.meta.yaml"}
    complexity = meta["system"]["complexity"]
    assert complexity["total_parameters"] > 0 and complexity["total_model_size"] == 2 * complexity["total_parameters"]
    dev = meta["results"]["development_dataset"]["split_25"]
    assert 0 <= dev["overall"]["accuracy"] <= 100 and set(dev["device_wise"]) == set(R.TAU_DEVICES)
    rows = out.splitlines()
    assert rows[0].split("\t") == ["filename", "scene_label", *R.TAU_SCENES]
    assert len(rows) - 1 == len(open_eval_set(synth_data.eval).files)


def test_invalid_submission_writes_nothing(synth_data, bundle, tmp_path):
    cfg = config(synth_data, bundle, tmp_path)
    cfg.systems[0].abbreviation = "WayTooLongAbbreviation"
    with pytest.raises(SubmissionError, match="abbreviation"):
        build_package(cfg, progress=False)
    assert not any(tmp_path.glob("*.zip*")) and not any(tmp_path.glob(".*zip*"))


def test_missing_split_model_is_an_error(synth_data, bundle, tmp_path):
    cfg = config(synth_data, bundle, tmp_path)
    del cfg.systems[0].models["50"]
    with pytest.raises(SubmissionError, match="no model for split"):
        build_package(cfg, progress=False)


def test_inference_2025_package_installs_and_predicts_like_asc_predict(synth_data, bundle, tmp_path):
    folder = build_inference_package(config(synth_data, bundle, tmp_path), tmp_path / "build")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(folder)], check=True)
    assert (target / "Doe_TUW_task1" / "ckpts" / "Doe_TUW_task1_1.pt").is_file()
    eval_set = open_eval_set(synth_data.eval)
    files = [str(synth_data.eval / f) for f in eval_set.files["filename"][:6]]
    devices = ["a", "b", "unknown", "b", "s9", "c"]
    script = (
        "import json, sys, torch\n"
        "from Doe_TUW_task1 import Doe_TUW_task1_1 as m\n"
        "files, devices = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n"
        "logits, classes = m.predict(files, devices, use_cuda=False)\n"
        "model = m.load_model()\n"
        "assert m.get_model_for_device(model, 'b') is not m.get_model_for_device(model, 'a')\n"
        "print(json.dumps({'logits': torch.stack(logits).tolist(), 'classes': classes}))\n")
    import json

    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", script, json.dumps(files), json.dumps(devices)], env=env,
                            capture_output=True, text=True, check=True, cwd=tmp_path)
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["classes"] == open_dataset(synth_data.dev).labels
    probs = np.exp(np.array(got["logits"]))
    probs /= probs.sum(axis=1, keepdims=True)
    # asc predict on the same files with the same device routing
    subset = tmp_path / "subset"
    (subset / "evaluation_setup").mkdir(parents=True)
    (subset / "audio").symlink_to(synth_data.eval / "audio")
    pd.DataFrame({"filename": eval_set.files["filename"][:6], "device_id": devices}).to_csv(
        subset / "evaluation_setup" / "fold1_test.csv", sep="\t", index=False)
    table = predict_eval_set(bundle, subset, progress=False)
    np.testing.assert_allclose(probs, table[got["classes"]].to_numpy(), atol=1e-5)
    report = json.loads((folder / "Doe_TUW_task1" / "complexity.json").read_text())["Doe_TUW_task1_1"]
    assert set(report) == {"a", "b", "c", *(f"s{i}" for i in range(1, 11)), "unknown"}
    assert all(r["within_budget"] for r in report.values())
    checked = subprocess.run([sys.executable, "-m", "asc", "check-complexity",
                              str(target / "Doe_TUW_task1" / "Doe_TUW_task1_1.py"), "--edition", "dcase2025",
                              "--precision", "fp16", "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    per_device = json.loads(checked.stdout)
    assert "s10" in json.dumps(per_device) and "unknown" in json.dumps(per_device)
