"""Fault injection: real ``asc`` processes killed with SIGKILL (by pid, from the test) in the middle of their work,
then run again. Each rerun must finish (bounded by a subprocess timeout), give the result of an uninterrupted run
and leave no partial artefact at a final path (nor a stale temporary file beside it).

Where a process is killed is chosen exactly: the processes run under a launcher whose audit hook pauses the process
when it is about to rename a finished temporary file onto the final path of interest and tells the test, which kills
it there: the worst moment for an atomic write (everything computed, nothing in place). What that paused process had
computed, complete in its temporary file, is the uninterrupted result the rerun is compared with. The audio cache
build is killed while its two decoding workers run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from asc.data.cache import cache_path, load_cache
from asc.runs import RunDir
from asc.train.recipes import build_config
from asc.train.trainer import fit

TIMEOUT = 300  # seconds any one process may take (a hang fails the test instead of stalling the suite)

# Runs `python -m asc ARGS` and pauses it, telling the test through the file $ASC_TEST_PAUSED, when it is about to
# rename a temporary file onto a path ending in $ASC_TEST_TARGET for the $ASC_TEST_NTH time.
LAUNCHER = textwrap.dedent("""
    import os, runpy, sys, time
    target, nth, seen = os.environ["ASC_TEST_TARGET"], int(os.environ["ASC_TEST_NTH"]), []
    def pause(event, args):
        if event == "os.rename" and str(args[1]).endswith(target) and os.getpid() == main:
            seen.append(args)
            if len(seen) == nth:
                with open(os.environ["ASC_TEST_PAUSED"], "w") as f:
                    f.write(f"{os.fspath(args[0])}\\n")
                time.sleep(3600)
    main = os.getpid()
    sys.addaudithook(pause)
    sys.argv = ["asc", *sys.argv[1:]]
    runpy.run_module("asc", run_name="__main__")
""")


def _env(**extra) -> dict:
    """The test's environment: processes run the asc the tests import (the checkout from its root, or the installed
    wheel under CI)."""
    return {**os.environ, **extra}


def _asc(*args) -> subprocess.CompletedProcess:
    """Run ``python -m asc ARGS`` to the end (at most TIMEOUT seconds)."""
    done = subprocess.run([sys.executable, "-m", "asc", *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _kill_at_rename(tmp_path: Path, target: str, nth: int, *args) -> Path:
    """Run ``asc ARGS`` until it is about to rename its ``nth`` finished temporary file onto a path ending in
    ``target``, kill it there with SIGKILL, and return that temporary file (complete, not renamed)."""
    paused = tmp_path / f"paused-{target.replace('/', '_')}-{nth}"
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env=_env(ASC_TEST_TARGET=target, ASC_TEST_NTH=str(nth), ASC_TEST_PAUSED=str(paused)))
    try:
        deadline = time.monotonic() + TIMEOUT
        while not paused.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert paused.exists(), f"never reached the write of {target}: {proc.poll()} {proc.stderr.read()[-3000:]}"
        time.sleep(0.05)  # the marker is written; the process sleeps in the hook
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(TIMEOUT) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    tmp = Path(paused.read_text().strip())
    assert tmp.is_file() and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
    return tmp


def _no_temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*.tmp"))


@pytest.fixture(scope="module")
def data(tmp_path_factory, synth_data):
    """A private copy of the tiny synthetic dataset (its own audio cache entries), its test split and evaluation set
    cut to their first 12 clips: every process here predicts them several times."""
    root = tmp_path_factory.mktemp("faults")
    shutil.copytree(synth_data.dev, root / "dev")
    shutil.copytree(synth_data.eval, root / "eval")
    for table in ("dev/splits/test.csv", "dev/evaluation_setup/fold1_evaluate.csv", "dev/evaluation_setup/fold1_test.csv",
                  "eval/evaluation_setup/fold1_test.csv"):
        lines = (root / table).read_text().splitlines(keepends=True)
        (root / table).write_text("".join(lines[:13]))
    return root


# ------------------------------------------------------------------------------------------------- audio cache


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != b"Z":
                out.append(int(entry.name))
    return out


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def test_killed_cache_build_with_two_workers_leaves_no_worker_and_no_lock(data, tmp_path):
    """kill -9 of `asc data cache --workers 2` while its workers decode: the workers die with it, the lock is free,
    and the next `asc data cache` finishes with a cache identical to a clean build's."""
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([sys.executable, "-m", "asc", "data", "cache", str(data / "dev"), "--workers", "2",
                             "--cache-dir", str(killed_dir), "--json"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env())
    deadline = time.monotonic() + TIMEOUT
    workers: list[int] = []
    while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
        workers = _children(proc.pid)
        time.sleep(0.005)
    assert len(workers) >= 2, "the build never ran two decoding workers"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(TIMEOUT) == -signal.SIGKILL
    while any(_running(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(w) for w in workers), "decoding workers outlived their killed parent"

    done = _asc("data", "cache", data / "dev", "--workers", "2", "--cache-dir", killed_dir, "--json")
    assert "took over" not in done.stderr  # nothing was left holding the lock
    names = (data / "dev" / "meta.csv").read_text().splitlines()[1:]
    names = [line.split("\t")[0] for line in names]
    rerun = load_cache(data / "dev", names, cache_dir=killed_dir, progress=False)
    clean = load_cache(data / "dev", names, cache_dir=clean_dir, progress=False, workers=1)
    assert rerun.stats.reused == len(names) and clean.stats.decoded == len(names)
    np.testing.assert_array_equal(rerun.batch(rerun.rows(names)), clean.batch(clean.rows(names)))
    assert rerun.digests(names) == clean.digests(names)
    assert _no_temporaries(cache_path(data / "dev", cache_dir=killed_dir)) == []


# ---------------------------------------------------------------------------------------------------- training


TRAIN = ("train", "--split", "5", "--epochs", "2", "--seed", "3", "--quiet", "-o", "batch_size=8",
         "-o", "model_config.base_channels=8")


def test_killed_training_resumes_to_the_uninterrupted_result(data, tmp_path):
    """kill -9 while epoch 2's checkpoint is about to replace epoch 1's: last.pt still holds epoch 1 (complete),
    `asc train --resume` redoes epoch 2 and ends with exactly the checkpoint the killed run had computed."""
    runs = tmp_path / "runs"
    tmp = _kill_at_rename(tmp_path, "checkpoints/last.pt", 2, *TRAIN, "--data", data / "dev", "--name", "r",
                          "--runs-dir", runs)
    uninterrupted = torch.load(tmp, map_location="cpu", weights_only=False)
    run = RunDir(runs / "r")
    at_kill = torch.load(run.last_checkpoint, map_location="cpu", weights_only=False)  # complete: epoch 1
    assert at_kill["epoch"] == 1 and uninterrupted["epoch"] == 2

    _asc("train", "--resume", "--name", "r", "--runs-dir", runs, "--quiet")
    final = torch.load(run.last_checkpoint, map_location="cpu", weights_only=False)
    assert final["epoch"] == 2
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key
    assert final["optimizer"]["state"].keys() == uninterrupted["optimizer"]["state"].keys()
    for k, state in uninterrupted["optimizer"]["state"].items():
        assert all(torch.equal(final["optimizer"]["state"][k][name], v) for name, v in state.items())
    assert [r["epoch"] for r in run.read_history()] == [1, 2] and run.eval_paths("test")[0].is_file()
    assert _no_temporaries(run.path) == []  # the killed writer's temporary was removed by the rerun


# ------------------------------------------------------------------------------------------- export, packaging


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A small trained run (in this process: the export and packaging processes are the ones killed)."""
    run = tmp_path_factory.mktemp("runs") / "model"
    cfg = build_config("baseline24", data=str(data / "dev"), split="5", epochs=1, batch_size=8, progress=False,
                       model_config={"base_channels": 8})
    fit(cfg, run)
    return run


def test_killed_export_leaves_no_partial_onnx_and_the_rerun_matches(data, trained, tmp_path):
    out = tmp_path / "export" / "model.fp32.onnx"
    args = ("export", trained, "--data", data / "dev", "--n-check", "8", "--out", out)
    tmp = _kill_at_rename(tmp_path, "model.fp32.onnx", 1, *args)
    complete = tmp.read_bytes()
    assert not out.exists()  # nothing at the final path, not even a partial file
    _asc(*args)
    assert out.read_bytes() == complete
    assert _no_temporaries(out.parent) == [] and (out.parent / "model.fp32.export.json").is_file()


def test_killed_packaging_leaves_no_partial_zip_and_the_rerun_matches(data, trained, tmp_path):
    zip_path = tmp_path / "sub" / "Doe_TUW_task1.zip"
    models = ", ".join(f'"{s}" = "{trained}"' for s in ("5", "10", "25", "50", "100"))
    toml = tmp_path / "package.toml"
    toml.write_text(textwrap.dedent(f"""
        lastname = "Doe"
        institute = "TUW"
        eval_set = "{data / 'eval'}"
        dev_data = "{data / 'dev'}"
        out = "{zip_path}"
        [[authors]]
        lastname = "Doe"
        firstname = "Jane"
        email = "jane@example.org"
        affiliation = "X"
        corresponding = true
        [[systems]]
        index = 1
        name = "baseline"
        abbreviation = "B"
        precision = "int8"
        models = {{ {models} }}
    """))
    tmp = _kill_at_rename(tmp_path, "Doe_TUW_task1.zip", 1, "package", toml)
    with zipfile.ZipFile(tmp) as z:
        complete = {name: z.read(name) for name in z.namelist()}
    assert not zip_path.exists()
    _asc("package", toml)
    with zipfile.ZipFile(zip_path) as z:
        assert {name: z.read(name) for name in z.namelist()} == complete
    assert _no_temporaries(zip_path.parent) == []
