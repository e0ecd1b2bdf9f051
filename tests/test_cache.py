"""Audio cache: decode once, reuse, rebuild only what changed, crash safety, concurrent builders, bad files."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

import asc.data.cache as cache_mod
from asc.cli import main as asc_main
from asc.data.cache import cache_path, decode_file, default_cache_dir, load_cache
from asc.data.validate import open_dataset
from asc.errors import DatasetError


@pytest.fixture
def root(tmp_path, synth_data) -> Path:
    """A private copy of 12 clips of the tiny synthetic set (tests change files in it)."""
    names = open_dataset(synth_data.dev).meta["filename"].tolist()[::7][:12]
    out = tmp_path / "data"
    (out / "audio").mkdir(parents=True)
    for name in names:
        shutil.copy2(synth_data.dev / name, out / name)
    return out


def names_in(root: Path) -> list[str]:
    return sorted(f"audio/{p.name}" for p in (root / "audio").iterdir())


def reference(path: Path, sr: int = 32000) -> np.ndarray:
    x, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    return torchaudio.functional.resample(torch.from_numpy(x.mean(1)), file_sr, sr).numpy()


def rewrite(path: Path, audio: np.ndarray, sr: int = 44100) -> None:
    """Replace a file's content and make sure its mtime moves."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    sf.write(str(path), audio, sr, subtype="PCM_16")
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_build_then_reuse(root, tmp_path):
    names = names_in(root)
    cache = load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    assert (cache.sample_rate, cache.n_samples, len(cache), cache.stats.decoded) == (32000, 32000, 12, 12)
    for name, row in zip(names, cache.rows(names)):
        np.testing.assert_allclose(cache.waveform(row), reference(root / name), atol=2e-5)
    batch = cache.batch(cache.rows(names[::-1]))
    assert batch.dtype == np.float32 and batch.shape == (12, 32000)
    np.testing.assert_array_equal(batch[0], cache.waveform(cache.rows(names[-1:])[0]))
    np.testing.assert_array_equal(decode_file(root / names[2], 32000, 1.0, 32000), cache.waveform(cache.rows(names)[2]))
    index = cache.path / "index.json"
    stamp = index.stat().st_mtime_ns
    again = load_cache(root, names[:5], cache_dir=tmp_path / "c", progress=False)
    assert again.stats.decoded == 0 and again.stats.reused == 5 and len(again) == 12
    assert index.stat().st_mtime_ns == stamp
    with pytest.raises(DatasetError, match="not in the audio cache"):
        again.rows(["audio/unknown.wav"])
    with pytest.raises(DatasetError, match="missing.wav: audio file not found"):
        load_cache(root, ["audio/missing.wav"], cache_dir=tmp_path / "c", progress=False)


def test_cache_location(root, tmp_path, monkeypatch):
    monkeypatch.setenv("ASC_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert cache_path(root).parent == tmp_path / "env"
    assert cache_path(root, 32000) != cache_path(root, 16000) != cache_path(root, 16000, dtype="float16")
    assert cache_path(root) == cache_path(root / "audio" / "..")  # keyed by the resolved root
    cache = load_cache(root, names_in(root)[:2], sample_rate=16000, dtype="float16", progress=False)
    assert cache.path.parent == tmp_path / "env" and cache.n_samples == 16000
    np.testing.assert_allclose(cache.waveform(0), reference(root / names_in(root)[0], 16000), atol=2e-3)


def test_rebuild_only_what_changed(root, tmp_path):
    names = names_in(root)
    first = load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    old = {n: first.waveform(r) for n, r in zip(names, first.rows(names))}
    rng = np.random.default_rng(0)
    changed = names[3]
    rewrite(root / changed, 0.1 * rng.standard_normal(44100))
    sf.write(str(root / "audio" / "new-22k-stereo.wav"), 0.1 * rng.standard_normal((22050, 2)), 22050)
    (root / names[5]).unlink()
    names = names_in(root)
    second = load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    assert (second.stats.decoded, second.stats.reused, second.stats.removed) == (2, 10, 1)
    assert len(second) == 12 and "audio/new-22k-stereo.wav" in second
    for name in names:
        got = second.waveform(second.rows([name])[0])
        if name in old and name != changed:
            np.testing.assert_array_equal(got, old[name])  # untouched rows were not re-decoded
        else:
            np.testing.assert_allclose(got, reference(root / name), atol=2e-5)
    assert not np.allclose(second.waveform(second.rows([changed])[0]), old[changed])
    # an old reader keeps its consistent view
    np.testing.assert_array_equal(first.waveform(first.rows([names[0]])[0]), old[names[0]])


def test_compaction_reclaims_orphaned_rows(root, tmp_path):
    names = names_in(root)
    load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    rng = np.random.default_rng(1)
    for name in names[:5]:
        rewrite(root / name, 0.1 * rng.standard_normal(44100))
    first = load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    assert first.n_rows == 17 and not first.stats.compacted  # 5 orphaned rows of 17
    for name in names[5:10]:  # 10 of 17 rows would be orphaned
        rewrite(root / name, 0.1 * rng.standard_normal(44100))
    cache = load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    assert cache.stats.compacted and cache.n_rows == 12 and cache.data_file != first.data_file
    assert sorted(p.name for p in cache.path.glob("data-*")) == [cache.data_file.name]
    for name in names:
        np.testing.assert_allclose(cache.waveform(cache.rows([name])[0]), reference(root / name), atol=2e-5)


@pytest.mark.parametrize("kind", ["empty", "corrupt", "truncated", "short", "long"])
def test_bad_files_raise_naming_the_file(root, tmp_path, kind):
    names = names_in(root)
    bad = root / names[4]
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "corrupt":
        bad.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "truncated":
        bad.write_bytes(bad.read_bytes()[:40000])
    else:
        rewrite(bad, np.zeros(22050 if kind == "short" else 48000), 44100)
    message = {"empty": "empty file", "corrupt": "unreadable audio", "truncated": "but every clip must be 1 s",
               "short": "0.5000 s", "long": "1.0884 s"}[kind]
    with pytest.raises(DatasetError, match=message) as err:
        load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    assert str(bad) in str(err.value) and "1 audio file(s)" in str(err.value)
    # the good files were cached, the bad one was not (no silent zeros)
    cache = load_cache(root, [n for n in names if n != names[4]], cache_dir=tmp_path / "c", progress=False)
    assert cache.stats.decoded == 0 and len(cache) == 11 and names[4] not in cache


def test_crash_mid_build_keeps_previous_cache(root, tmp_path, monkeypatch):
    names = names_in(root)
    base = load_cache(root, names[:4], cache_dir=tmp_path / "c", progress=False)
    before = {n: base.waveform(r) for n, r in zip(names[:4], base.rows(names[:4]))}
    index = base.path / "index.json"
    index_bytes = index.read_bytes()

    real = cache_mod.decode_files
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "CHUNK", 3)
    monkeypatch.setattr(cache_mod, "decode_files", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    assert index.read_bytes() == index_bytes  # rows of the first chunk were written but never referenced
    assert base.data_file.stat().st_size > base.n_rows * base.n_samples * 4
    assert not [p for p in base.path.iterdir() if p.name.startswith(".")]  # no temporary index left behind

    def crash_on_commit(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod, "decode_files", real)
    monkeypatch.setattr(cache_mod, "write_json", crash_on_commit)
    with pytest.raises(OSError, match="disk full"):
        load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    assert index.read_bytes() == index_bytes
    monkeypatch.undo()

    after = load_cache(root, names[:4], cache_dir=tmp_path / "c", progress=False)
    assert after.stats.decoded == 0
    for n, r in zip(names[:4], after.rows(names[:4])):
        np.testing.assert_array_equal(after.waveform(r), before[n])
    full = load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    assert full.stats.decoded == 8 and full.n_rows == 12
    assert full.data_file.stat().st_size == 12 * 32000 * 4  # left-overs of the crashed builds were cut off
    for n, r in zip(names, full.rows(names)):
        np.testing.assert_allclose(full.waveform(r), reference(root / n), atol=2e-5)


def _build_in_process(root: str, names: list[str], cache_dir: str, barrier, queue) -> None:
    barrier.wait()
    cache = load_cache(root, names, cache_dir=cache_dir, progress=False)
    queue.put((cache.stats.decoded, cache.stats.reused, cache.data_file.name))


def test_two_processes_build_one_cache(root, tmp_path):
    names = names_in(root)
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_build_in_process, args=(str(root), names, str(tmp_path / "c"), barrier, queue))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert [r[:2] for r in results] == [(0, 12), (12, 0)]  # one built, the other waited and reused it
    assert results[0][2] == results[1][2]
    cache = load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    assert cache.stats.decoded == 0 and cache.n_rows == 12
    assert len(json.loads((cache.path / "index.json").read_text())["files"]) == 12
    for n, r in zip(names, cache.rows(names)):
        np.testing.assert_allclose(cache.waveform(r), reference(root / n), atol=2e-5)


def test_worker_pool_and_pickle(root, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "CHUNK", 4)
    names = names_in(root)
    serial = load_cache(root, names, cache_dir=tmp_path / "a", progress=False, workers=1)
    pooled = load_cache(root, names, cache_dir=tmp_path / "b", progress=False, workers=2)
    np.testing.assert_array_equal(serial.batch(serial.rows(names)), pooled.batch(pooled.rows(names)))
    clone = pickle.loads(pickle.dumps(pooled))
    assert len(pickle.dumps(pooled)) < 100_000  # the array is re-mapped, not copied
    np.testing.assert_array_equal(clone.waveform(3), pooled.waveform(3))


def test_empty_request_writes_nothing(root, tmp_path):
    cache = load_cache(root, [], cache_dir=tmp_path / "c", progress=False)
    assert len(cache) == 0 and cache.batch([]).shape == (0, 32000) and not (tmp_path / "c").exists()


def test_cli_cache_builds_dev_and_eval(synth_data, tmp_path, capsys):
    args = ["data", "cache", str(synth_data.dev), "--eval-set", str(synth_data.eval), "--cache-dir", str(tmp_path)]
    assert asc_main(args + ["--json"]) == 0
    dev, ev = json.loads(capsys.readouterr().out)
    assert dev["files"] == len(open_dataset(synth_data.dev).meta) and ev["files"] == 20
    assert dev["last_build"]["decoded"] == dev["files"] and Path(dev["path"]).parent == tmp_path
    assert asc_main(args) == 0
    out = capsys.readouterr().out
    assert "0 decoded, 120 reused" in out and str(tmp_path) in out
    assert asc_main(["data", "cache", str(tmp_path / "nowhere")]) == 2


def test_unreadable_index_is_rebuilt_from_scratch(root, tmp_path):
    names = names_in(root)
    cache = load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    (cache.path / "index.json").write_text("{not json")
    again = load_cache(root, names, cache_dir=tmp_path / "c", progress=False)
    assert again.stats.decoded == 12 and [p.name for p in again.path.glob("data-*")] == [again.data_file.name]
    np.testing.assert_array_equal(again.batch(again.rows(names)), cache.batch(cache.rows(names)))
