"""Building the DCASE 2024 submission zip from trained models: validated, atomic, official complexity figures in the
meta YAML (also for INT8 ONNX systems), over-budget systems and foreign class lists refused.
(The 2025 inference package: tests/test_inference2025.py.)"""

import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml

from asc.data.layout import open_eval_set
from asc.data.validate import open_dataset
from asc.models.registry import build_model, make_config, save_bundle
from asc.submission import rules as R
from asc.cli import main as cli_main
from asc.submission.package import (Author, PackageConfig, SubmissionError, SubmissionRejected, SystemConfig,
                                    build_package, rules_for)
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


def test_int8_onnx_system_reports_the_official_unfused_figures(synth_data, tmp_path):
    from asc.export import export_onnx

    labels = open_dataset(synth_data.dev).labels
    bundle = tmp_path / "b24.pt"
    save_bundle(bundle, build_model("baseline24", n_classes=len(labels)), "baseline24",
                make_config("baseline24", n_classes=len(labels)), labels)
    onnx = export_onnx(bundle, tmp_path / "b24.int8.onnx", precision="int8", data_root=synth_data.dev,
                       n_calibration=16)
    cfg = config(synth_data, bundle, tmp_path)
    cfg.systems[0].models = {s: str(onnx) for s in R.SPLITS}
    cfg.systems[0].precision = "int8"
    path = build_package(cfg, progress=False)
    with zipfile.ZipFile(path) as z:
        text = z.read("task1/Doe_TUW_task1_1/Doe_TUW_task1_1.meta.yaml").decode()
    complexity = yaml.safe_load(text)["system"]["complexity"]
    assert complexity == {"total_model_size": 61_148, "total_parameters": 61_148, "macs": 29_419_156}
    graph = [line for line in text.splitlines() if "# splits 5, 10, 25, 50, 100: ONNX graph (BatchNorm folded)" in line]
    assert len(graph) == 1 and "29,419,156 MACs" not in graph[0]  # the graph's own figures, beside the official
    assert validate_zip(path, rules_for(synth_data.eval)) == []


def test_over_budget_system_is_refused_with_the_checkers_message(synth_data, tmp_path, capsys):
    cpmobile = tmp_path / "cpmobile.pt"
    save_bundle(cpmobile, build_model("cpmobile"), "cpmobile", make_config("cpmobile"), list(R.TAU_SCENES))
    cfg = config(synth_data, cpmobile, tmp_path)
    with pytest.raises(SubmissionRejected, match=r"split 5 .*253,904 bytes at fp16 exceed the dcase2024 limit of "
                                                 r"128,000 bytes.*only when quantized to int8"):
        build_package(cfg, progress=False)
    assert not any(tmp_path.glob("*.zip*"))
    toml = tmp_path / "package.toml"
    toml.write_text(f'lastname = "Doe"\ninstitute = "TUW"\neval_set = "{synth_data.eval}"\n'
                    f'dev_data = "{synth_data.dev}"\n[[systems]]\nindex = 1\nname = "x"\nabbreviation = "x"\n'
                    f'models = {{ {", ".join(f"{chr(34)}{s}{chr(34)} = {chr(34)}{cpmobile}{chr(34)}" for s in R.SPLITS)} }}\n')
    assert cli_main(["package", str(toml)]) == 1
    assert "over the dcase2024 budget" in capsys.readouterr().err


def test_classes_are_the_official_scenes_in_official_order(synth_data, tmp_path):
    from asc.submission.package import _ordered, official_labels
    from asc.submission.predict import output_table

    reversed_scenes = list(reversed(R.TAU_SCENES))
    table = output_table(["audio/0.wav"], np.zeros((1, 10)), reversed_scenes)
    assert list(_ordered(table, list(R.TAU_SCENES), "x").columns) == ["filename", "scene_label", *R.TAU_SCENES]
    custom = PackageConfig(labels=["dog", "cat"])
    assert official_labels(custom) == ["dog", "cat"] and official_labels(PackageConfig()) == list(R.TAU_SCENES)
    foreign = tmp_path / "foreign.pt"
    save_bundle(foreign, build_model("baseline24", {"base_channels": 8}, n_classes=10), "baseline24",
                make_config("baseline24", {"base_channels": 8}, n_classes=10), [*R.TAU_SCENES[:-1], "beach"])
    with pytest.raises(SubmissionRejected, match="not the submission's classes"):
        build_package(config(synth_data, foreign, tmp_path), progress=False)
