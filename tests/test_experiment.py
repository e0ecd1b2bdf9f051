"""``asc experiment``: recipes × splits × seeds with teachers per split, resumable, and its results table."""

from __future__ import annotations

import json
import os

import pytest

from asc.cli import main
from asc.config import read_toml
from asc.experiment import ArmConfig, ExperimentConfig, TeacherConfig, run_experiment, summarise

TINY = ["batch_size=16", "eval_batch_size=64", "epochs=1", "progress=false", "augment.dir_p=0.0",
        "schedule.warmup_steps=2", "schedule.warmup_epochs=1"]
SMALL_STUDENT = ["model_config.base_channels=8"]


@pytest.fixture(scope="module")
def experiment(synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "kd"
    cfg = ExperimentConfig(
        name="kd", data=str(synth_data.dev), splits=["25", "50"], seeds=2, overrides=TINY, progress=False,
        arms=[ArmConfig("plain", "baseline24", "none", SMALL_STUDENT),
              ArmConfig("taught", "baseline24", "online", SMALL_STUDENT + ["kd.lam=0.5"]),
              ArmConfig("ablation", "baseline24", "none", SMALL_STUDENT + ["augment.mixup_alpha=0.3"], ["50"])],
        teacher=TeacherConfig(recipe="cpresnet_teacher", seeds=1))
    lines: list[str] = []
    return out, cfg, run_experiment(cfg, out, log=lines.append), lines


def test_every_run_is_a_normal_run_folder_with_its_split_and_seed(experiment, synth_data):
    out, cfg, results, _ = experiment
    for arm in ("plain", "taught"):
        for split in ("25", "50"):
            for seed in (0, 1):
                run = out / "runs" / arm / f"split{split}-seed{seed}"
                saved = read_toml(run / "config.toml")
                assert (saved["split"], saved["seed"]) == (split, seed)
                assert (run / "eval" / "test.json").is_file() and (run / "export" / "model.int8.onnx").is_file()
                assert json.loads((run / "eval" / "test.json").read_text())["selection"]["checkpoint"] == "last"
                if arm == "taught":  # taught online by the teachers of its own split
                    assert saved["kd"]["teachers"] == [str(out / "teachers" / f"split{split}-seed0")]
                else:
                    assert saved["kd"]["teachers"] == [] and saved["kd"]["teacher_logits"] == ""
    for split in ("25", "50"):
        assert read_toml(out / "teachers" / f"split{split}-seed0" / "config.toml")["split"] == split


def test_results_table_aggregates_seeds(experiment):
    out, cfg, results, lines = experiment
    saved = json.loads((out / "results.json").read_text())
    assert saved["table"] == results["table"]
    for arm in ("plain", "taught"):
        for split in ("25", "50"):
            runs = results["arms"][arm][split]
            values = sorted(r["macro_accuracy"] for r in runs)
            row = results["table"][arm]["splits"][split]["macro_accuracy"]
            assert sorted(row["values"]) == pytest.approx(values)
            assert row["mean"] == pytest.approx(sum(values) / 2)
            assert row["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
            assert results["table"][arm]["splits"][split]["int8"]["n"] == 2
    average = results["table"]["taught"]["average"]
    per_seed = [(results["arms"]["taught"]["50"][s]["macro_accuracy"]
                 + results["arms"]["taught"]["25"][s]["macro_accuracy"]) / 2 for s in (0, 1)]
    assert average["values"] == pytest.approx(per_seed)
    delta = results["table"]["taught"]["vs_plain"]["50"]
    assert delta == pytest.approx(results["table"]["taught"]["splits"]["50"]["macro_accuracy"]["mean"]
                                  - results["table"]["plain"]["splits"]["50"]["macro_accuracy"]["mean"])
    assert results["complexity"]["plain"]["deploy"] == "fp16"
    text = (out / "results.md").read_text()
    assert "| taught |" in text and "teacher ensemble" in text and "taught minus plain" in text
    assert (out / "accuracy_vs_split.png").stat().st_size > 1000
    assert sum("[" in line and "/10]" in line for line in lines) == 10
    assert set(results["arms"]["ablation"]) == {"50"}  # an arm limited to one split
    assert not (out / "runs" / "ablation" / "split25-seed0").exists()
    assert "| ablation | – |" in text


def test_rerun_reuses_finished_runs(experiment):
    out, cfg, results, _ = experiment
    ckpt = out / "runs" / "taught" / "split50-seed1" / "checkpoints" / "last.pt"
    before = os.stat(ckpt).st_mtime_ns
    again = run_experiment(cfg, out, log=lambda line: None)
    assert os.stat(ckpt).st_mtime_ns == before
    assert again["table"] == results["table"]


def test_summary_of_incomplete_seeds_and_cli_errors(experiment, synth_data, tmp_path, capsys):
    _, cfg, results, _ = experiment
    partial = {"arms": {"plain": {"50": results["arms"]["plain"]["50"][:1]}}, "teachers": {}}
    table = summarise(partial, cfg)
    assert table["plain"]["splits"]["50"]["macro_accuracy"]["std"] == 0.0
    assert main(["experiment", "baseline24", "--data", str(synth_data.dev), "--splits", "7",
                 "--out", str(tmp_path / "x")]) == 2
    assert "split" in capsys.readouterr().err
    assert main(["experiment", "cpresnet_teacher", "--data", str(synth_data.dev), "--splits", "50",
                 "--seeds", "1", "--out", str(tmp_path / "y"), "-o", "epochs=1"]) == 2
    assert "--dirs" in capsys.readouterr().err
