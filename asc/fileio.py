"""Atomic writes and checksums: every file the toolkit writes goes through here.

An atomic write goes to a hidden temporary file beside its target (``.<name>.<pid>-<random><suffix>.tmp``) that
is renamed onto the target only when complete, so a final path never holds a partial file. Temporary files of the
same target that a killed writer left behind (its process is gone; without a pid in the name: older than this
process) are removed when the target is written again. :func:`check_writable` tells before long work whether an
output can be written at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterator

from asc.errors import AscError
from asc.locks import process_alive, process_started_at

_UMASK = os.umask(0)
os.umask(_UMASK)
STARTED = process_started_at(os.getpid()) or time.time()  # when this process started


class OutputError(AscError):
    """An output cannot be written where it was asked for."""


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Error (:class:`OutputError` naming the path) unless a file can be created at ``path``: its nearest existing
    folder must be a writable folder (probed with a temporary file) and ``path`` itself not a folder. Nothing is
    left behind."""
    path = Path(path).absolute()
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; the {what} must be a file path")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{path}: cannot write the {what} here: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".asc-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{path}: cannot write the {what} here: {folder}: {e.strerror}") from None
    return path


def check_writable_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Error unless ``path`` is, or can be created as, a folder files can be written to (nothing is created)."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file; the {what} must be a folder")
    check_writable(path / ".asc-probe", what)
    return path


_TMP_PID = re.compile(r"\.(\d+)-[^.]+")


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the hidden temporary files of ``path`` that killed writers left: those of a process that is gone (or
    whose pid now belongs to a process started after the file was written), and, for names without a pid, those
    older than this process. Returns what was removed."""
    path = Path(path)
    removed = []
    with contextlib.suppress(OSError):
        for tmp in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
            try:
                if _abandoned(tmp, tmp.name[len(path.name) + 1:]):
                    tmp.unlink()
                    removed.append(tmp)
            except OSError:
                continue
    return removed


def _abandoned(tmp: Path, tail: str) -> bool:
    mtime = tmp.stat().st_mtime
    pid = _TMP_PID.match(tail)
    if pid is None:
        return mtime < STARTED
    pid = int(pid.group(1))
    if pid == os.getpid():
        return False
    if not process_alive(pid):
        return True
    started = process_started_at(pid)
    return started is not None and started > mtime + 1.0  # the pid was reused since


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds. Left-over
    temporaries of ``path`` from killed writers are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write a matplotlib figure as PNG atomically, then release it."""
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(path)
