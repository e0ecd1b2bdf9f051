"""Decode + resample every clip once into one memory-mapped array, reused across runs and processes.

A cache lives in ``<cache_dir>/<name>-<rate>-<dtype>-<hash of the resolved dataset root>/``:

* ``data-<token>.bin``: rows of ``n_samples`` mono samples (float32 or float16) at the working rate, back to back;
* ``index.json``: ``filename -> [row, size, mtime_ns, digest]`` (digest: BLAKE2b-64 of the source file's bytes,
  the content identity teacher-logit stores check; :meth:`AudioCache.digests`), the sample rate, clip length,
  dtype, data file and ``n_rows`` (how many rows of the data file are complete);
* ``lock``: held by whichever process builds (:func:`asc.locks.hold`), so two builders never interleave; a second
  builder waits, naming the first, and a lock left behind by a killed build is taken over.

Only files whose size or mtime changed, or that are new, are decoded again; their rows are *appended* beyond
``n_rows``, then the data file is fsync-ed and the index replaced atomically. Rows the index references are never
written again, so a crash at any point leaves the previous index and everything it references intact (bytes a crashed
build appended are cut off by the next build). Rows orphaned by changed or removed files are reclaimed by rewriting
the array to a new data file once they make up more than half of it. Readers never lock: they read the index, which is
always complete, and map the rows it names.

Every clip must have the same duration (1 s for TAU); a clip with another duration, an unreadable or empty file, or
non-finite samples is a :class:`DatasetError` naming the file. Rows of the good files of a build are kept even when
some files fail, so fixing the bad files costs only their own decoding.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import ctypes
import hashlib
import json
import math
import multiprocessing
import os
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio
from tqdm import tqdm

from asc.errors import DatasetError
from asc.fileio import write_json
from asc.locks import hold

INDEX_VERSION = 1
DTYPES = ("float32", "float16")
CHUNK = 64                  # clips per decode task
CHECKPOINT_SECONDS = 60.0   # a long build commits its rows this often, so an interruption loses little
PARALLEL_MIN_FILES = 512    # fewer files are decoded in this process
COMPACT_GARBAGE = 0.5       # rewrite the array when orphaned rows exceed this share of it


def default_cache_dir() -> Path:
    """``$ASC_CACHE_DIR`` or ``~/.cache/asc``."""
    env = os.environ.get("ASC_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "asc"


def cache_path(root: str | Path, sample_rate: int = 32000, cache_dir: str | Path | None = None,
               dtype: str = "float32") -> Path:
    """The folder holding the cache of dataset ``root`` at ``sample_rate``."""
    resolved = Path(root).expanduser().resolve()
    digest = hashlib.sha256(f"{resolved}|{sample_rate}|{dtype}".encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.]+", "_", resolved.name) or "root"
    return Path(cache_dir or default_cache_dir()) / f"{name}-{sample_rate}-{dtype}-{digest}"


@dataclass
class BuildStats:
    """What the last :func:`load_cache` call did."""

    decoded: int = 0
    reused: int = 0
    removed: int = 0
    compacted: bool = False
    seconds: float = 0.0


class AudioCache:
    """A read-only view of one cache: ``rows(filenames)`` then ``waveform(row)`` or ``batch(rows)``.

    Picklable (DataLoader workers re-map the file instead of copying the array).
    """

    def __init__(self, path: Path, index: dict, stats: BuildStats | None = None):
        self.path = Path(path)
        self.root = Path(index["root"])
        self.sample_rate = int(index["sample_rate"])
        self.n_samples = int(index["n_samples"])
        self.clip_seconds = float(index["clip_seconds"])
        self.dtype = str(index["dtype"])
        self.data_file = self.path / index["data"]
        self.n_rows = int(index["n_rows"])
        self._row = {name: entry[0] for name, entry in index["files"].items()}
        self._digest = {name: entry[3] for name, entry in index["files"].items() if len(entry) > 3}
        self.stats = stats or BuildStats()
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, filename: str) -> bool:
        return filename in self._row

    @property
    def filenames(self) -> list[str]:
        return list(self._row)

    @property
    def array(self) -> np.ndarray:
        """The memory-mapped ``[n_rows, n_samples]`` array (rows not in the index are unused)."""
        if self._array is None and self.n_rows == 0:
            self._array = np.empty((0, self.n_samples), dtype=self.dtype)
        if self._array is None:
            self._array = np.memmap(self.data_file, dtype=self.dtype, mode="r", shape=(self.n_rows, self.n_samples))
        return self._array

    def rows(self, filenames: Sequence[str]) -> np.ndarray:
        """Row of each file name; a name that is not cached is an error naming it."""
        try:
            return np.fromiter((self._row[f] for f in filenames), dtype=np.int64, count=len(filenames))
        except KeyError as e:
            raise DatasetError(f"{self.root / e.args[0]}: not in the audio cache {self.path}; "
                               f"build it with load_cache(root, filenames)") from None

    def digests(self, filenames: Sequence[str]) -> list[str]:
        """The source-file digest of each name (:func:`source_digest`). Files cached before digests were kept are
        hashed now, once: their digests are added to the index under the build lock."""
        self.rows(filenames)  # every name must be cached
        missing = [name for name in dict.fromkeys(filenames) if name not in self._digest]
        if missing:
            self._digest.update(_add_digests(self.path, self.root, missing))
        return [self._digest[name] for name in filenames]

    def waveform(self, row: int) -> np.ndarray:
        """One clip as float32 ``[n_samples]`` (a copy)."""
        return np.array(self.array[row], dtype=np.float32)

    def batch(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Clips as float32 ``[len(rows), n_samples]``, read in file order for speed."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), self.n_samples), dtype=np.float32)
        out[order] = self.array[rows[order]]
        return out

    def info(self) -> dict:
        """Location and size, for reports."""
        size = self.data_file.stat().st_size if self.data_file.exists() else 0
        return {"path": str(self.path), "root": str(self.root), "files": len(self), "rows": self.n_rows,
                "orphaned_rows": self.n_rows - len(self), "sample_rate": self.sample_rate,
                "n_samples": self.n_samples, "clip_seconds": self.clip_seconds, "dtype": self.dtype,
                "bytes": size, "last_build": vars(self.stats)}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_array"] = None
        return state


def load_cache(root: str | Path, filenames: Sequence[str], sample_rate: int = 32000,
               cache_dir: str | Path | None = None, progress: bool = True, dtype: str = "float32",
               workers: int | None = None) -> AudioCache:
    """Open the cache of ``root`` at ``sample_rate``, first decoding whichever of ``filenames`` are new or changed.

    ``filenames`` are relative to ``root`` (``audio/x.wav``). ``workers``: decoding processes (default: 1, or 2 for
    large builds on a machine with 2+ cores).
    """
    if dtype not in DTYPES:
        raise DatasetError(f"cache dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    folder = cache_path(root, sample_rate, cache_dir, dtype)
    filenames = list(dict.fromkeys(filenames))
    stats = _stat_files(root, filenames)

    for _ in range(3):  # the data file may be swapped by a concurrent compaction between reading and mapping
        index = _read_index(folder)
        if index is None or _changed(index, stats):
            break
        with contextlib.suppress(FileNotFoundError):
            return _open(folder, index, BuildStats(reused=len(filenames)))
    if not filenames and index is None:  # nothing to decode: the clip length cannot be known yet
        return AudioCache(folder, {"root": str(root), "sample_rate": sample_rate, "n_samples": sample_rate,
                                   "clip_seconds": 1.0, "dtype": dtype, "data": "", "n_rows": 0, "files": {}})
    folder.mkdir(parents=True, exist_ok=True)
    with hold(folder / "lock", f"the audio cache {folder}"):
        index = _read_index(folder)  # another process may have built it meanwhile
        if index is not None and not _changed(index, stats):
            return _open(folder, index, BuildStats(reused=len(filenames)))
        index, build = _Builder(folder, root, sample_rate, dtype, index, progress, workers).run(stats)
    return _open(folder, index, build)


def _add_digests(folder: Path, root: Path, names: list[str]) -> dict[str, str]:
    """Digests of cached files that have none yet, computed from the source files and recorded in the index."""
    with hold(folder / "lock", f"the audio cache {folder}"):
        index = _read_index(folder)
        files = dict(index["files"]) if index is not None else {}
        out = {}
        for name in names:
            entry = files.get(name)
            if entry is not None and len(entry) > 3:
                out[name] = entry[3]
                continue
            out[name] = source_digest(root / name)
            if entry is not None:
                files[name] = [*entry[:3], out[name]]
        if index is not None:
            write_json(folder / "index.json", {**index, "files": files}, indent=None)
    return out


def _open(folder: Path, index: dict, stats: BuildStats) -> AudioCache:
    cache = AudioCache(folder, index, stats)
    cache.array  # map now: FileNotFoundError here means the index was replaced meanwhile
    return cache


def _stat_files(root: Path, filenames: list[str]) -> dict[str, tuple[int, int]]:
    out = {}
    for name in filenames:
        try:
            st = os.stat(root / name)
        except FileNotFoundError:
            raise DatasetError(f"{root / name}: audio file not found") from None
        out[name] = (st.st_size, st.st_mtime_ns)
    return out


def _changed(index: dict, stats: dict[str, tuple[int, int]]) -> bool:
    files = index["files"]
    for name, (size, mtime) in stats.items():
        entry = files.get(name)
        if entry is None or entry[1] != size or entry[2] != mtime:
            return True
    return False


def _read_index(folder: Path) -> dict | None:
    path = folder / "index.json"
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        return None  # unreadable: rebuilt from scratch under the lock
    if index.get("version") != INDEX_VERSION or not (folder / index.get("data", "")).is_file():
        return None
    return index


@dataclass
class _Builder:
    folder: Path
    root: Path
    sample_rate: int
    dtype: str
    index: dict | None
    progress: bool
    workers: int | None
    errors: list[str] = field(default_factory=list)

    def run(self, stats: dict[str, tuple[int, int]]) -> tuple[dict, BuildStats]:
        start = time.monotonic()
        build = BuildStats()
        index = self.index
        if index is None:
            for stale in self.folder.glob("data-*.bin"):  # left by an unreadable index or an interrupted first build
                stale.unlink()
            index = {"version": INDEX_VERSION, "root": str(self.root), "sample_rate": self.sample_rate,
                     "clip_seconds": _reference_seconds(self.root, list(stats)), "dtype": self.dtype,
                     "data": f"data-{uuid.uuid4().hex[:12]}.bin", "n_rows": 0, "files": {}}
            index["n_samples"] = round(index["clip_seconds"] * self.sample_rate)
        files = dict(index["files"])
        for name in list(files):  # drop files that are gone from disk
            if name not in stats and not (self.root / name).is_file():
                del files[name]
                build.removed += 1
        todo = [n for n, (size, mtime) in stats.items()
                if n not in files or files[n][1] != size or files[n][2] != mtime]
        build.reused = len(stats) - len(todo)
        index = {**index, "files": files}

        live = len(files) - sum(1 for n in todo if n in files)
        if index["n_rows"] and index["n_rows"] - live > COMPACT_GARBAGE * index["n_rows"]:
            index = self._compact(index, [n for n in files if n not in todo])
            build.compacted = True
        index, build.decoded = self._append(index, todo, stats)
        build.seconds = time.monotonic() - start
        if self.errors:
            more = len(self.errors) - 10
            shown = "; ".join(self.errors[:10]) + (f"; … and {more} more" if more > 0 else "")
            raise DatasetError(f"{len(self.errors)} audio file(s) could not be cached (fix or remove them from the "
                               f"list; the other {build.decoded} were cached): {shown}")
        return index, build

    def _append(self, index: dict, todo: list[str], stats: dict[str, tuple[int, int]]) -> tuple[dict, int]:
        data = self.folder / index["data"]
        row_bytes = index["n_samples"] * np.dtype(self.dtype).itemsize
        n_rows = index["n_rows"]
        files = dict(index["files"])
        for name in todo:
            files.pop(name, None)
        decoded = 0
        last_commit = time.monotonic()
        with open(data, "ab") as f:
            f.truncate(n_rows * row_bytes)  # bytes beyond the index are left-overs of an interrupted build
            f.seek(n_rows * row_bytes)
            bar = tqdm(total=len(todo), desc=f"caching {self.root.name} @ {self.sample_rate} Hz", unit="clip",
                       disable=not self.progress or not todo or None)
            for names, audio, errors, digests in self._decoded(todo, index):
                f.write(np.ascontiguousarray(audio, dtype=self.dtype).tobytes())
                for name, digest in zip(names, digests):
                    files[name] = [n_rows, *stats[name], digest]
                    n_rows += 1
                decoded += len(names)
                self.errors += errors
                bar.update(len(names) + len(errors))
                if time.monotonic() - last_commit > CHECKPOINT_SECONDS:
                    index = self._commit(f, index, files, n_rows)
                    last_commit = time.monotonic()
            bar.close()
            index = self._commit(f, index, files, n_rows)
        return index, decoded

    def _commit(self, f, index: dict, files: dict, n_rows: int) -> dict:
        f.flush()
        os.fsync(f.fileno())
        index = {**index, "files": dict(files), "n_rows": n_rows}
        write_json(self.folder / "index.json", index, indent=None)
        return index

    def _compact(self, index: dict, keep: list[str]) -> dict:
        """Copy the live rows to a new data file, switch the index to it, delete the old file."""
        old = AudioCache(self.folder, index)
        new_name = f"data-{uuid.uuid4().hex[:12]}.bin"
        files = {}
        with open(self.folder / new_name, "wb") as f:
            for start in range(0, len(keep), 1024):
                names = keep[start:start + 1024]
                rows = old.rows(names)
                f.write(np.ascontiguousarray(old.array[np.sort(rows)]).tobytes())
                for i, name in enumerate(np.asarray(names)[np.argsort(rows, kind="stable")]):
                    files[str(name)] = [start + i, *index["files"][name][1:]]
            index = self._commit(f, {**index, "data": new_name}, files, len(keep))
        old._array = None
        (self.folder / old.data_file.name).unlink(missing_ok=True)
        return index

    def _decoded(self, todo: list[str], index: dict):
        """Yield (names, audio [len(names), n_samples], errors, digests) chunk by chunk, in order."""
        chunks = [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]
        args = (str(self.root), self.sample_rate, index["clip_seconds"], index["n_samples"])
        workers = self.workers if self.workers is not None else (2 if len(todo) >= PARALLEL_MIN_FILES else 1)
        workers = max(1, min(workers, 2, os.cpu_count() or 1, len(chunks)))
        if workers == 1:
            for chunk in chunks:
                yield _decode_chunk(chunk, *args)
            return
        # fork, like DataLoader workers: spawn would re-run a caller's unguarded script (and import torch again per
        # worker). Forked workers drop their copy of the cache lock at once (asc.locks) and die with this process.
        ctx = multiprocessing.get_context("fork")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                    initargs=(os.getpid(),)) as pool:
            pending = collections.deque()
            for chunk in chunks:
                pending.append(pool.submit(_decode_chunk, chunk, *args))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def _decode_chunk(names: list[str], root: str, *args) -> tuple[list[str], np.ndarray, list[str], list[str]]:
    """:func:`decode_files` plus the digest of each decoded file."""
    good, audio, errors = decode_files(names, root, *args)
    return good, audio, errors, [source_digest(Path(root) / name) for name in good]


def source_digest(path: str | Path) -> str:
    """BLAKE2b-64 (hex) of a file's bytes: the identity of a clip's audio, whatever it is decoded to."""
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _worker_init(parent: int) -> None:
    """A decoding worker: one thread, and killed with its parent (a killed build leaves no worker behind)."""
    torch.set_num_threads(1)
    die_with_parent(parent)


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``); exit now if
    the parent ``parent`` is already gone. Elsewhere a no-op: the parent's lock is not inherited anyway."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _reference_seconds(root: Path, filenames: list[str]) -> float:
    """The clip duration of the dataset: the most common one among (up to 1,000 evenly spread) files."""
    if not filenames:
        return 1.0
    step = max(1, len(filenames) // 1000)
    durations = collections.Counter()
    for name in filenames[::step]:
        try:
            info = sf.info(str(root / name))
        except Exception:  # reported with its file name when decoded
            continue
        if info.samplerate > 0 and info.frames > 0:
            durations[round(info.frames / info.samplerate, 6)] += 1
    if not durations:
        raise DatasetError(f"{root}: none of the {len(filenames)} audio files can be read (first: {filenames[0]})")
    return durations.most_common(1)[0][0]


_RESAMPLERS: dict[tuple[int, int], object] = {}


def _resample(audio: np.ndarray, orig: int, new: int) -> np.ndarray:
    """Resample ``[B, T]`` with torchaudio's windowed-sinc (same as ``torchaudio.functional.resample`` defaults)."""
    if orig == new:
        return audio
    key = (orig, new)
    if key not in _RESAMPLERS:
        _RESAMPLERS[key] = torchaudio.transforms.Resample(orig, new)
    with torch.no_grad():
        return _RESAMPLERS[key](torch.from_numpy(audio)).numpy()


def decode_file(path: str | Path, sample_rate: int, clip_seconds: float, n_samples: int) -> np.ndarray:
    """Read one clip as mono float32 at ``sample_rate`` with exactly ``n_samples`` samples; errors name the file."""
    names, audio, errors = decode_files([Path(path).name], str(Path(path).parent), sample_rate, clip_seconds, n_samples)
    if errors:
        raise DatasetError(errors[0])
    return audio[0]


def decode_files(names: list[str], root: str, sample_rate: int, clip_seconds: float,
                 n_samples: int) -> tuple[list[str], np.ndarray, list[str]]:
    """Decode, mix to mono and resample files (relative to ``root``); returns (good names, audio, error messages)."""
    good: list[str] = []
    clips: list[np.ndarray] = []
    rates: list[int] = []
    errors: list[str] = []
    for name in names:
        path = Path(root) / name
        try:
            if path.stat().st_size == 0:
                raise ValueError("empty file")
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError… for bad files
            errors.append(f"{path}: unreadable audio ({str(e).strip() or type(e).__name__})")
            continue
        expected = round(clip_seconds * sr)
        if data.shape[0] != expected or data.shape[1] == 0:
            errors.append(f"{path}: {data.shape[0] / sr:.4f} s ({data.shape[0]} samples at {sr} Hz) but every clip "
                          f"must be {clip_seconds:g} s ({expected} samples); trim or pad it, or leave it out")
            continue
        mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        if not np.isfinite(mono).all():
            errors.append(f"{path}: contains NaN or infinite samples")
            continue
        good.append(name)
        clips.append(mono)
        rates.append(sr)
    out = np.empty((len(good), n_samples), dtype=np.float32)
    for sr in set(rates):
        idx = [i for i, r in enumerate(rates) if r == sr]
        res = _resample(np.stack([clips[i] for i in idx]), sr, sample_rate)
        res = _fit_length(res, n_samples)
        out[idx] = res
    return good, out, errors


def _fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    """Absorb the ±1-sample rounding of resampling (larger differences were rejected before)."""
    t = audio.shape[-1]
    if t >= n:
        return audio[..., :n]
    if n - t > max(2, math.ceil(n * 1e-3)):
        raise DatasetError(f"resampled clip has {t} samples, expected {n}")
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, n - t)], mode="edge")
