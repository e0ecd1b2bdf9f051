"""Optuna search under the complexity budget: parallel workers on one journal file, pruning, resumption of a
stopped study, retry of the trials of a dead or interrupted worker, multi-objective Pareto report, and no
over-budget candidate ever trained (tiny CP-Mobile students on the tiny synthetic dataset)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from asc.cli import main
from asc.complexity import count_source
from asc.config import read_toml
from asc.errors import ConfigError
from asc.tune import TuneError, fail_stale_trials, load_space, load_study, open_study, run_study, study_report

# A tiny CP-Mobile on a small front end: 1-2 epochs of 28 clips take seconds; trials are compared on the 12 clips
# of split 50 held out for validation.
BASE = """
[train]
model = "cpmobile"
split = "50"
epochs = {epochs}
batch_size = 20
eval_batch_size = 64
overrides = ["model_config.n_blocks=[2, 1, 1]", "frontend.n_fft=512", "frontend.win_length=400",
             "frontend.hop_length=1000", "frontend.n_mels=32", "augment.freq_mask=4", "augment.dir_p=0.0",
             "schedule.name=constant", "progress=false"]
"""
# base_channels 32 costs 1.6 M MACs on this front end: over the tight test budget below, on purpose.
PARAMS = """
[params.optim.lr]
type = "float"
low = 1e-6
high = 0.5
log = true

[params.model_config.base_channels]
type = "categorical"
choices = [8, 16, 32]
"""
BUDGET = """edition = "tight-test"
title = "a budget the widest candidates exceed"
max_macs = 500000
max_param_bytes = 200000
default_precision = "fp32"
source = "tests/test_tune.py"
"""


def write_space(folder: Path, data: Path, head: str = "", epochs: int = 1, extra: str = "",
                widths: str = "[8, 16, 32]") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "budget.toml").write_text(BUDGET)
    text = (f'budget = "budget.toml"\n{head}\n' + BASE.format(epochs=epochs) + f'data = "{data}"\n'
            + PARAMS.replace("[8, 16, 32]", widths) + extra)
    path = folder / "space.toml"
    path.write_text(text)
    return path


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def assert_never_trained_over_budget(study: optuna.Study, folder: Path) -> int:
    """Every trial whose recorded complexity exceeds the budget was rejected before training; returns how many."""
    over = 0
    for t in study.get_trials():
        attrs = t.user_attrs
        assert {"n_params", "macs", "param_bytes", "precision"} <= set(attrs), t.number
        exceeds = attrs["macs"] > 500000 or attrs["param_bytes"] > 200000
        assert attrs["over_budget"] == exceeds, t.number
        if exceeds:
            over += 1
            assert not (folder / f"trial_{t.number}").exists(), f"trial {t.number} is over budget but was trained"
            assert "run_dir" not in attrs and attrs["violations"]
            assert max(t.constraints.values()) > 0
        else:
            assert max(t.constraints.values()) <= 0
    return over


# ---------------------------------------------------------------------------------------------------- space file


def test_space_file_errors_name_the_key(tmp_path, synth_data):
    good = write_space(tmp_path / "ok", synth_data.dev)
    space = load_space(good)
    assert space.objectives == ["macro_accuracy"] and space.pruning and set(space.params) == {
        "optim.lr", "model_config.base_channels"}
    bad = good.parent / "bad.toml"
    bad.write_text(good.read_text().replace('type = "float"', 'type = "float"\nchoices = [1]'))
    with pytest.raises(ConfigError, match="params.optim.lr: choices belong to categorical"):
        load_space(bad)
    bad.write_text('objectives = ["macro_accuracy", "watts"]\n' + good.read_text())
    with pytest.raises(ConfigError, match="objective 'watts'"):
        load_space(bad)
    bad.write_text(good.read_text() + '\n[params.optim.lrr]\ntype = "float"\nlow = 1\nhigh = 2\n')
    with pytest.raises(ConfigError, match="lrr"):
        run_study(bad, "typo", n_trials=1, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs" / "tune" / "typo").exists()  # refused before any study was created
    example = load_space("cpmobile_kd")  # the packaged example, by name
    assert example.enqueue and example.params["model_config.n_blocks"].choices[0] == [3, 2, 1]


# ---------------------------------------------------------------------------------------------------- parallel


def test_two_workers_share_a_journal_study_with_pruning(tmp_path, synth_data):
    space = write_space(tmp_path, synth_data.dev, head='objectives = ["log_loss"]\n[pruner]\nn_startup_trials = 1',
                        widths="[8, 16]")
    journal = tmp_path / "shared" / "study.log"
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "asc", "tune", "run", str(space), "--trials", "2", "--study", "par",
           "--storage", f"journal://{journal}", "--runs-dir", str(runs), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two workers, one core each
    workers = [subprocess.Popen(cmd + ["--seed", str(i)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env) for i in range(2)]
    outputs = [w.communicate(timeout=400)[0] for w in workers]
    for w, out in zip(workers, outputs):
        assert w.returncode == 0, out

    study = load_study("par", f"journal://{journal}", runs)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    by_worker: dict[str, list] = {}
    for t in trials:
        by_worker.setdefault(t.user_attrs["worker"], []).append(t)
    assert len(by_worker) == 2, "both workers ran trials"
    a, b = by_worker.values()
    assert any(x.datetime_start < y.datetime_complete and y.datetime_start < x.datetime_complete
               for x in a for y in b), "the two workers ran trials at the same time"
    folder = runs / "tune" / "par"
    trained = [t for t in trials if not t.user_attrs["over_budget"]]
    for t in trained:  # per-epoch validation log loss went to the pruner; each trial is an ordinary run folder
        assert t.intermediate_values, t.number
        assert Path(t.user_attrs["run_dir"]) == (folder / f"trial_{t.number}").resolve()
        assert (folder / f"trial_{t.number}" / "checkpoints" / "last.pt").is_file()
        if t.state == TrialState.COMPLETE:
            assert (folder / f"trial_{t.number}" / "eval" / "test.json").is_file()
            assert t.value == pytest.approx(t.user_attrs["log_loss"])
    assert_never_trained_over_budget(study, folder)

    assert main(["tune", "report", "par", "--storage", f"journal://{journal}", "--runs-dir", str(runs)]) == 0
    report = json.loads((folder / "report" / "report.json").read_text())
    assert (folder / "report" / "history.png").stat().st_size > 1000
    assert len(report["trials"]) == 4 and report["objectives"] == ["log_loss"]
    imp = report["importances"]
    assert set(imp["by_objective"]) | set(imp["skipped"]) == {"log_loss"}


# ---------------------------------------------------------------------------------------------------- resume


def test_study_resumes_prunes_and_never_trains_over_budget(tmp_path, synth_data):
    enqueue = """
[[enqueue]]
"optim.lr" = 1e-6
"model_config.base_channels" = 8

[[enqueue]]
"optim.lr" = 0.5
"model_config.base_channels" = 8

[[enqueue]]
"model_config.base_channels" = 32

[[enqueue]]
"optim.lr" = 1e-2
"model_config.base_channels" = 32
"""
    space = write_space(tmp_path, synth_data.dev, epochs=2, extra=enqueue,
                        head='objectives = ["log_loss"]\n[pruner]\nn_startup_trials = 1')
    runs = tmp_path / "runs"
    folder = runs / "tune" / "res"

    first = run_study(space, "res", n_trials=2, runs_dir=runs, progress=False)
    assert first["trials_run"] == [0, 1]
    study = load_study("res", runs_dir=runs)
    t0, t1 = finished(study)
    assert [t.state for t in study.get_trials()[2:]] == [TrialState.WAITING] * 2  # the rest of the queue
    assert t0.state == TrialState.COMPLETE and t0.params["optim.lr"] == 1e-6
    # lr 0.5 blows the validation loss up at epoch 1: below the median of trial 0 -> pruned, epoch 2 never ran
    assert t1.state == TrialState.PRUNED and t1.user_attrs["pruned_at_epoch"] == 1
    assert t1.intermediate_values[0] > t0.intermediate_values[0]
    assert len((folder / "trial_1" / "metrics.jsonl").read_text().splitlines()) == 1
    assert len((folder / "trial_0" / "metrics.jsonl").read_text().splitlines()) == 2

    second = run_study(space, "res", n_trials=2, runs_dir=runs, progress=False)  # same study, resumed
    assert second["trials_run"] == [2, 3]
    study = load_study("res", runs_dir=runs)
    assert len(study.get_trials()) == 4 and len(finished(study)) == 4
    for t in study.get_trials()[2:]:
        assert t.state == TrialState.PRUNED and t.user_attrs["over_budget"] is True
        assert t.user_attrs["macs"] > 500000 and any("MACs" in v for v in t.user_attrs["violations"])
        assert not t.intermediate_values
    assert assert_never_trained_over_budget(study, folder) == 2

    # a trained trial's run folder is what `asc evaluate` / `asc package` take; its count matches the record
    [(_, report)] = count_source(str(folder / "trial_0"))
    assert (report.macs, report.params) == (t0.user_attrs["macs"], t0.user_attrs["n_params"])
    assert main(["evaluate", str(folder / "trial_0"), "--data", str(synth_data.dev), "--out", str(tmp_path / "ev"),
                 "--json"]) == 0
    again = json.loads((tmp_path / "ev" / "test.json").read_text())
    assert again["log_loss"] == pytest.approx(t0.user_attrs["test_log_loss"])  # recorded, never ranked on
    last = json.loads((folder / "trial_0" / "metrics.jsonl").read_text().splitlines()[-1])
    assert t0.value == pytest.approx(last["val_loss"])  # the objective: the held-out validation set
    assert read_toml(folder / "trial_0" / "config.toml")["name"] == "res-trial_0"

    changed = tmp_path / "changed.toml"
    changed.write_text(space.read_text().replace("high = 0.5", "high = 0.9"))
    with pytest.raises(TuneError, match=r"another search space \(params.optim.lr.high differ"):
        run_study(changed, "res", n_trials=1, runs_dir=runs, progress=False)
    with pytest.raises(TuneError, match=r"another search space \(train.epochs differ"):
        run_study(space, "res", n_trials=1, runs_dir=runs, overrides=["epochs=3"], progress=False)

    report = study_report("res", runs_dir=runs)
    assert [r["number"] for r in report["best"]] == [0]
    assert report["n_over_budget"] == 2 and report["importances"]["skipped"]


# ---------------------------------------------------------------------------------------------------- dead workers


def test_trials_of_dead_and_interrupted_workers_run_again(tmp_path, synth_data):
    space_path = write_space(tmp_path, synth_data.dev, head='heartbeat = 1\n[pruner]\nname = "none"')
    space = load_space(space_path)
    journal = f"journal://{tmp_path / 'study.log'}"
    runs = tmp_path / "runs"
    open_study(space, "dead", journal, runs)
    # a worker that takes a trial and dies without a word (SIGKILL, power loss): the trial stays RUNNING
    code = ("import os, optuna; from asc.tune import load_space, open_storage; from pathlib import Path\n"
            f"space = load_space({str(space_path)!r})\n"
            f"study = optuna.load_study(study_name='dead', storage=open_storage({journal!r}, Path('.')))\n"
            "study.enqueue_trial({'optim.lr': 1e-3, 'model_config.base_channels': 8})\n"
            "study.ask({k: p.distribution() for k, p in space.params.items()})\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    study = load_study("dead", journal, runs)
    [lost] = study.get_trials()
    assert lost.state == TrialState.RUNNING
    time.sleep(max(0.0, lost.datetime_start.timestamp() + 2.2 - time.time()))  # 2 heartbeats missed
    assert fail_stale_trials(study, heartbeat=1, max_retry=3) == [0]
    assert fail_stale_trials(study, heartbeat=1, max_retry=3) == []  # failed and queued once only
    lost_params = lost.params

    # a worker stopped with Ctrl-C during training: its trial is failed and queued again
    worker = subprocess.Popen([sys.executable, "-m", "asc", "tune", "run", str(space_path), "--trials", "3",
                               "--study", "dead", "--storage", journal, "--runs-dir", str(runs), "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = runs / "tune" / "dead" / "trial_1" / "config.toml"  # written when training starts
    deadline = time.time() + 300
    while not started.is_file() and worker.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    worker.send_signal(signal.SIGINT)
    out = worker.communicate(timeout=120)[0]
    assert worker.returncode == 130, out

    summary = run_study(space, "dead", n_trials=1, storage=journal, runs_dir=runs, progress=False)
    study = load_study("dead", journal, runs)
    states = [t.state for t in study.get_trials()]
    assert states[:3] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE], states
    retried = study.get_trials()[2]
    assert summary["trials_run"] == [2]
    assert retried.params == lost_params == study.get_trials()[1].params
    assert retried.system_attrs["retry_history"] == [0, 1]
    assert retried.params == {"optim.lr": 1e-3, "model_config.base_channels": 8}
    assert (runs / "tune" / "dead" / "trial_2" / "eval" / "test.json").is_file()
    assert len(study.get_trials()) == 3


# ---------------------------------------------------------------------------------------------------- Pareto


def test_multi_objective_study_reports_a_pareto_front(tmp_path, synth_data):
    enqueue = "".join(f'\n[[enqueue]]\n"optim.lr" = 1e-3\n"model_config.base_channels" = {c}\n' for c in (8, 32, 16))
    space = write_space(tmp_path, synth_data.dev, head='objectives = ["macro_accuracy", "macs"]', extra=enqueue)
    runs = tmp_path / "runs"
    run_study(space, "pareto", n_trials=3, runs_dir=runs, progress=False)
    study = load_study("pareto", runs_dir=runs)
    folder = runs / "tune" / "pareto"
    t8, t32, t16 = study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in (t8, t32, t16))  # multi-objective: never pruned
    # the over-budget candidate is infeasible through its constraints, recorded but never trained
    assert t32.user_attrs["over_budget"] and t32.constraints["macs"] > 0
    assert t32.values == [0.0, t32.user_attrs["macs"]]
    assert not (folder / "trial_1").exists()
    assert t8.constraints["macs"] <= 0 and t8.values[1] < t16.values[1]
    assert assert_never_trained_over_budget(study, folder) == 1
    front = {t.number for t in study.best_trials}
    assert 1 not in front and 0 in front  # the cheapest feasible trial is always on the front

    assert main(["tune", "report", "pareto", "--runs-dir", str(runs), "--json"]) == 0
    report = json.loads((folder / "report" / "report.json").read_text())
    assert report["objectives"] == ["macro_accuracy", "macs"]
    assert report["directions"] == ["maximize", "minimize"]
    assert {r["number"] for r in report["best"]} == front
    assert (folder / "report" / "pareto.png").stat().st_size > 1000
    assert report["importances"]["skipped"]  # two trained trials: too few for importances
