"""The run folder's layout (asc.runs.RunDir): config, history, checkpoints, bundles, eval / export paths, lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from asc.cli import main
from asc.errors import CheckpointError
from asc.models.registry import build_model, load_bundle, make_config, save_bundle
from asc.runs import (RunDir, RunLockedError, default_eval_dir, default_export_path, export_report_path, read_bundle,
                      resolve_checkpoint)
from asc.train.config import TrainConfig
from asc.train.trainer import fit

LABELS = [f"c{i}" for i in range(10)]


def _bundle(path, base_channels: int = 8):
    model = build_model("baseline24", {"base_channels": base_channels})
    return save_bundle(path, model, "baseline24", make_config("baseline24", {"base_channels": base_channels}), LABELS)


def test_model_checkpoint_prefers_best_then_last(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.is_run() and not run.has_model()
    with pytest.raises(CheckpointError, match="no checkpoints/best.pt or checkpoints/last.pt"):
        run.model_checkpoint()
    _bundle(run.last_checkpoint, base_channels=8)
    assert run.is_run() and run.model_checkpoint() == run.last_checkpoint == resolve_checkpoint(run.path)
    _bundle(run.best_checkpoint, base_channels=16)
    assert run.model_checkpoint() == run.best_checkpoint
    assert resolve_checkpoint(run.path, "last") == run.last_checkpoint
    assert load_bundle(run.path).model_config["base_channels"] == 16
    assert load_bundle(run.path, which="last").model_config["base_channels"] == 8
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(tmp_path / "missing.pt")


def test_read_bundle_refuses_other_files(tmp_path):
    path, ckpt = read_bundle(_bundle(tmp_path / "b.pt"))
    assert path == tmp_path / "b.pt" and ckpt["model_name"] == "baseline24" and ckpt["labels"] == LABELS
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: cannot read checkpoint"):
        read_bundle(tmp_path / "junk.pt")


def test_config_and_history_round_trip(tmp_path):
    run = RunDir(tmp_path / "run")
    cfg = TrainConfig(name="x", data="/data", split="10", epochs=3)
    run.write_config(cfg)
    assert run.has_config() and run.read_config(TrainConfig) == cfg
    assert run.config_dict()["split"] == "10"
    records = [{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.5}]
    run.write_history(records)
    assert run.read_history() == records
    with open(run.history_path, "a") as f:
        f.write("{broken\n" + json.dumps({"loss": 1}) + "\n")
    notes: list[str] = []
    assert run.read_history(notes) == records
    assert notes == [f"{run.history_path}: line 3 is not JSON (skipped)",
                     f"{run.history_path}: line 4 has no epoch number (skipped)"]


def test_eval_and_export_paths(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    assert run.eval_paths("test") == (run.path / "eval" / "test.json", run.path / "eval" / "test_confusion.png")
    assert default_eval_dir(run.path) == run.eval_dir
    assert default_eval_dir(tmp_path / "m.pt") == tmp_path / "m.eval"
    assert default_export_path(run.path, "int8") == run.path / "export" / "model.int8.onnx"
    assert default_export_path(tmp_path / "m.pt", "fp16") == tmp_path / "m.fp16.onnx"
    assert export_report_path(run.export_path("int8")) == run.path / "export" / "model.int8.export.json"
    assert RunDir.containing(run.export_path("int8")).path == run.path
    assert RunDir.containing(tmp_path / "m.pt") is None


HOLD = textwrap.dedent("""
    import sys, time
    from asc.runs import RunDir
    with RunDir(sys.argv[1]).lock():
        print("locked", flush=True)
        time.sleep(120)
""")


def test_a_second_writer_gets_a_clear_error_naming_the_holder(tmp_path, synth_data):
    run = RunDir(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"pid {holder.pid} on {socket.gethostname()}"):
            with run.lock(wait=False):
                pass
        # a new run in a folder another process writes is refused at once, before anything else
        with pytest.raises(RunLockedError, match="another process is writing it"):
            fit(TrainConfig(data=str(synth_data.dev)), run.path)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with run.lock():  # a dead holder's lock is gone with its process
        with run.lock():  # the same process nests it (the trainer's final evaluation writes into its run)
            pass
        other = subprocess.run([sys.executable, "-c", "import sys; from asc.runs import RunDir\n"
                                "with RunDir(sys.argv[1]).lock(wait=False): pass", str(run.path)],
                               capture_output=True, text=True, timeout=120)
        assert other.returncode == 1 and f"pid {os.getpid()}" in other.stderr
    with run.lock(wait=False):
        pass


def test_cli_reports_a_locked_run_in_one_line(tmp_path, capsys, synth_data):
    run = RunDir(tmp_path / "runs" / "r")
    run.write_config(TrainConfig(name="r", data=str(synth_data.dev)))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", "--resume", "--name", "r", "--runs-dir", str(tmp_path / "runs"), "--no-wait"]) == 2
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another process is writing it" in err and str(holder.pid) in err
