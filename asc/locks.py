"""Inter-process locks that never hang silently: an exclusive ``flock`` on a lock file that names its holder.

:func:`hold` takes the lock of a file (the audio cache's ``lock``, a run folder's ``.lock``). The file records its
holder (pid, process start time, host, command, since when), so that

* a **live** holder is named: the caller waits for it with a message and a progress line (polling every 0.05 s,
  backing off to 1 s), or, without waiting (``wait=False``, CLI ``--no-wait``, ``ASC_NO_WAIT=1``), fails at once
  with :class:`LockBusyError` naming it;
* a **stale** lock, held by processes that outlived a dead holder (children forked while it held the lock, e.g.
  decoding workers of a killed build), is detected (the recorded holder, or the ``/proc/locks`` entry when the file
  names none, is a dead process on this host) and taken over: the old file is unlinked and a fresh one locked. A
  short guard lock on the folder serialises take-overs with acquisitions, so two processes never both hold it.

A process re-entering a lock it holds just nests (the trainer's final evaluation writes into the run folder it
holds). Every forked child closes its copies of the held locks at once (``os.register_at_fork``), so no child can
keep a lock alive past its parent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from asc.errors import AscError

POLL_START, POLL_MAX = 0.05, 1.0  # seconds between attempts while waiting for a live holder
GUARD_SECONDS = 10.0  # the folder guard is held for microseconds; longer means something is wrong
NO_WAIT_ENV = "ASC_NO_WAIT"


class LockBusyError(AscError):
    """The lock is held by a live process and waiting was not allowed (or the guard stayed busy)."""


_held: dict[str, int] = {}  # absolute lock path (a folder for a guard: "path/") -> fd, held by this process


def _close_held_in_child() -> None:
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


def waiting_allowed() -> bool:
    """False when ``$ASC_NO_WAIT`` is set (CLI ``--no-wait``): a busy lock is then an error at once."""
    return os.environ.get(NO_WAIT_ENV, "") in ("", "0")


@contextlib.contextmanager
def waiting(allowed: bool) -> Iterator[None]:
    """Within the block, the default of :func:`hold` (for this process and the processes it starts) is ``allowed``."""
    before = os.environ.get(NO_WAIT_ENV)
    if allowed:
        os.environ.pop(NO_WAIT_ENV, None)
    else:
        os.environ[NO_WAIT_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(NO_WAIT_ENV, None)
        else:
            os.environ[NO_WAIT_ENV] = before


# ------------------------------------------------------------------------------------------- process identity


def process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def process_started_at(pid: int) -> float | None:
    """Wall-clock time process ``pid`` started (within a second: the boot time is in whole seconds), or None."""
    ticks = process_start(pid)
    try:
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, TypeError):
        return None


def process_alive(pid: int, start: int | None = None) -> bool:
    """Whether ``pid`` is a running process (not a zombie) and, given ``start``, the same one as then."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
    except (OSError, IndexError):
        return True
    now = process_start(pid)
    return start is None or now is None or now == start


def _record() -> dict:
    return {"pid": os.getpid(), "start": process_start(os.getpid()), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)[:300]}


def describe(holder: dict | None) -> str:
    """A holder for people: ``pid 123 on host-a since … (python -m asc train …)``."""
    if not holder or "pid" not in holder:
        return "an unknown process"
    text = f"pid {holder['pid']} on {holder.get('host', '?')}"
    text += f" since {holder['since']}" if holder.get("since") else ""
    return text + (f" ({holder['command']})" if holder.get("command") else "")


def read_holder(fd: int) -> dict | None:
    """The holder the lock file on ``fd`` records, else the process ``/proc/locks`` names, else None."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except (OSError, ValueError):
        info = None
    if isinstance(info, dict) and isinstance(info.get("pid"), int):
        return info
    pids = _flock_pids(fd)
    return {"pid": pids[0], "host": socket.gethostname()} if pids else None


def _flock_pids(fd: int) -> list[int]:
    """Pids ``/proc/locks`` gives for flock locks on the file of ``fd`` (the process that took each lock)."""
    st = os.fstat(fd)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            rows = [line.split() for line in f]
    except OSError:
        return []
    return [int(r[4]) for r in rows if len(r) > 5 and r[1] == "FLOCK" and r[5] == dev and r[4].isdigit()]


def _stale(holder: dict | None) -> bool:
    """The lock is held although the process that took it, on this host, is dead (it lives on in inherited fds)."""
    return (holder is not None and holder.get("host") == socket.gethostname()
            and not process_alive(holder["pid"], holder.get("start")))


# ------------------------------------------------------------------------------------------------------ the lock


@contextlib.contextmanager
def _guard(folder: Path) -> Iterator[None]:
    """A brief exclusive flock on ``folder`` around every attempt, so take-overs and acquisitions never interleave."""
    fd = os.open(folder, os.O_RDONLY)
    key = f"{folder}/"
    try:
        deadline = time.monotonic() + GUARD_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockBusyError(f"{folder}: its lock guard stayed busy for {GUARD_SECONDS:g} s "
                                        f"({', '.join(map(str, _flock_pids(fd))) or 'holder unknown'})") from None
                time.sleep(0.01)
            except OSError:  # a file system without flock on folders: go without the guard
                break
        _held[key] = fd
        yield
    finally:
        _held.pop(key, None)
        os.close(fd)


def _attempt(path: Path) -> tuple[int | None, dict | None, bool]:
    """(fd holding the lock or None, holder when busy, whether a stale lock was taken over)."""
    with _guard(path.parent):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return _own(fd), None, False
        except BlockingIOError:
            pass
        holder = read_holder(fd)
        if not _stale(holder):
            os.close(fd)
            return None, holder, False
        os.unlink(path)  # its orphaned holders keep the old inode; the lock starts afresh
        os.close(fd)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return _own(fd), holder, True


def _own(fd: int) -> int:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(_record()) + "\n").encode(), 0)
    return fd


@contextlib.contextmanager
def hold(path: str | os.PathLike, what: str, wait: bool | None = None,
         error: type[LockBusyError] = LockBusyError) -> Iterator[None]:
    """Hold the exclusive lock of file ``path`` (created if missing) while the block runs.

    ``what`` names the locked thing in messages ("the run folder runs/x"). A live holder is waited for with a
    message on stderr (``wait`` True) or is an ``error`` (:class:`LockBusyError`) naming it (``wait`` False;
    None = the process default, :func:`waiting_allowed`). A stale lock is taken over with a note.
    """
    path = Path(path).absolute()
    key = str(path)
    if key in _held:  # this process holds it already: nested use
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    wait = waiting_allowed() if wait is None else wait
    fd, holder, took_over = _attempt(path)
    if fd is None:
        if not wait:
            raise error(f"{what} is locked by {describe(holder)}: another process is writing it; wait for it to "
                        f"finish, or stop it")
        fd, holder, took_over = _wait(path, what, holder)
    if took_over:
        print(f"asc: {what}: took over a stale lock of {describe(holder)}, which is no longer running",
              file=sys.stderr)
    _held[key] = fd
    try:
        yield
    finally:
        _held.pop(key, None)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def _wait(path: Path, what: str, holder: dict | None) -> tuple[int, dict | None, bool]:
    """Poll until the lock is free (or stale); a message, then a progress line on a terminal."""
    print(f"asc: {what} is locked by {describe(holder)}; waiting for it (Ctrl-C to stop; --no-wait fails at once)",
          file=sys.stderr, flush=True)
    start, delay = time.monotonic(), POLL_START
    bar = tqdm(desc=f"waiting for {what}", bar_format="{desc}: {elapsed}", file=sys.stderr, leave=False,
               disable=not sys.stderr.isatty())
    try:
        while True:
            time.sleep(delay)
            delay = min(POLL_MAX, delay * 2)
            fd, now, took_over = _attempt(path)
            bar.update(0)
            if fd is not None:
                print(f"asc: {what}: lock acquired after {time.monotonic() - start:.1f} s", file=sys.stderr)
                return fd, now, took_over
            if now and holder and now.get("pid") != holder.get("pid"):
                holder = now
                bar.write(f"asc: {what} is now locked by {describe(holder)}; still waiting", file=sys.stderr)
    finally:
        bar.close()
