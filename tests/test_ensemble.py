"""Teacher logits at scale: one pass per teacher, resumable after a real SIGKILL, sharded over two torchrun
processes (gloo on the CPU) and merged by rank 0 — each time the same store as one uninterrupted process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from asc.train.ensemble import ensemble_teachers
from asc.train.logits import TeacherLogits
from test_device import discriminative_bundle

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def teachers(synth_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("teachers")
    return [str(discriminative_bundle(folder / f"teacher{seed}.pt", synth_data.dev, seed)) for seed in (1, 2)]


def _asc(*args: str) -> list[str]:
    return [sys.executable, "-m", "asc", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _done(path: Path) -> int:
    try:
        with np.load(path, allow_pickle=False) as z:
            return int(z["done"])
    except (OSError, ValueError, KeyError):
        return 0


def test_one_pass_covers_the_split_and_scores_on_the_report_split(teachers, synth_data, tmp_path):
    prov = ensemble_teachers(teachers, synth_data.dev, tmp_path / "t.logits", progress=False, device="cpu")
    store = TeacherLogits.load(tmp_path / "t.logits", synth_data.dev)
    assert len(store.filenames) == 80 and prov["report_split"] == "test" and prov["processes"] == 1
    single = [ensemble_teachers([t], synth_data.dev, tmp_path / f"{i}.logits", progress=False, device="cpu")
              for i, t in enumerate(teachers)]
    mean = np.mean([TeacherLogits.load(tmp_path / f"{i}.logits").logits for i in range(2)], axis=0)
    np.testing.assert_allclose(store.logits, mean, atol=1e-5)
    assert [t["macro_accuracy"] for t in prov["teachers"]] == [s["teachers"][0]["macro_accuracy"] for s in single]


def test_killed_ensemble_resumes_from_its_checkpoint_with_the_same_result(teachers, synth_data, tmp_path):
    out = tmp_path / "t.logits"
    cmd = _asc("teachers", "ensemble", *teachers, "--out", str(out), "--data", str(synth_data.dev), "--device", "cpu",
               "--batch-size", "1", "--checkpoint-seconds", "0", "--json")
    partial = tmp_path / "t.logits.partial" / "teacher0-rank0.npz"
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while _done(partial) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    killed_at = _done(partial)
    assert 10 <= killed_at < 120 and not out.exists()  # 80 training + 40 test clips per teacher

    resumed = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"teacher 1/2 baseline24: resuming after {killed_at} of 120 clips" in resumed.stderr
    assert not partial.parent.exists()
    prov = json.loads(resumed.stdout)

    reference = tmp_path / "reference.logits"  # the same command, uninterrupted
    cmd[cmd.index(str(out))] = str(reference)
    expected = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert expected.returncode == 0 and "resuming" not in expected.stderr
    np.testing.assert_array_equal(TeacherLogits.load(out).logits, TeacherLogits.load(reference).logits)
    assert prov["ensemble"] == json.loads(expected.stdout)["ensemble"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_shards_the_clips_and_rank0_merges(teachers, synth_data, tmp_path):
    out = tmp_path / "sharded.logits"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(_free_port()), "-m", "asc", "teachers", "ensemble", *teachers, "--out", str(out),
                           "--data", str(synth_data.dev), "--device", "cpu", "--batch-size", "8", "--json"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    prov = json.loads(proc.stdout)  # printed once, by rank 0
    assert prov["processes"] == 2
    single = tmp_path / "single.logits"
    expected = ensemble_teachers(teachers, synth_data.dev, single, progress=False, device="cpu")
    a, b = TeacherLogits.load(out, synth_data.dev), TeacherLogits.load(single)
    assert a.filenames == b.filenames and a.fingerprint == b.fingerprint
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
    assert prov["ensemble"]["macro_accuracy"] == pytest.approx(expected["ensemble"]["macro_accuracy"])
    assert not (tmp_path / "sharded.logits.partial").exists()
