"""asc.locks: a live holder is named and waited for (or refused with --no-wait), a stale lock kept alive by the
children of a dead holder is taken over, and forked children never keep a lock alive. Real processes and real
flock locks throughout."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from asc.locks import LockBusyError, hold, process_alive, waiting

TIMEOUT = 120  # seconds any subprocess may take; the waits below end in a few seconds

HOLD_FOR = textwrap.dedent("""
    import sys, time
    from asc.locks import hold
    with hold(sys.argv[1], "the test lock"):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")

# Takes the lock without asc (no at-fork clean-up), hands the fd to a long-lived child, then dies: the child keeps
# the lock alive as the forked decoding workers of a killed cache build did.
ORPHAN = textwrap.dedent("""
    import fcntl, json, os, subprocess, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    if sys.argv[2] == "record":
        os.write(fd, json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "since": "then"}).encode())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], pass_fds=[fd])
    print(child.pid, flush=True)
""")


def _start(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, text=True)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_live_holder_is_named_and_refused_without_waiting(tmp_path):
    lock = tmp_path / "lock"
    holder = _start(HOLD_FOR, lock, 300)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockBusyError, match=rf"the test lock is locked by pid {holder.pid} on "
                                                rf"{socket.gethostname()} since .*\(-c {lock} 300\)"):
            with hold(lock, "the test lock", wait=False):
                pass
        with waiting(False), pytest.raises(LockBusyError):  # the process default (CLI --no-wait)
            with hold(lock, "the test lock"):
                pass
    finally:
        _kill(holder.pid)
        holder.wait(TIMEOUT)


def test_a_waiter_says_whom_it_waits_for_and_gets_the_lock_when_the_holder_ends(tmp_path, capsys):
    lock = tmp_path / "lock"
    holder = _start(HOLD_FOR, lock, 1.5)
    assert holder.stdout.readline().strip() == "locked"
    with hold(lock, "the test lock", wait=True):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert holder.wait(TIMEOUT) == 0  # it ended normally: the lock was not taken from it
    err = capsys.readouterr().err
    assert f"the test lock is locked by pid {holder.pid}" in err and "waiting for it" in err
    assert "lock acquired after" in err and "took over" not in err


@pytest.mark.parametrize("record", ["record", "none"])
def test_a_lock_kept_alive_by_orphans_of_a_dead_holder_is_taken_over(tmp_path, capsys, record):
    lock = tmp_path / "lock"
    starter = _start(ORPHAN, lock, record)
    orphan = int(starter.stdout.readline())
    starter.wait(TIMEOUT)  # the holder is dead; its child holds the lock
    try:
        assert process_alive(orphan) and not process_alive(starter.pid)
        with hold(lock, "the test lock", wait=False):  # not busy: stale, taken over at once
            assert json.loads(lock.read_text())["pid"] == os.getpid()
            other = subprocess.run([sys.executable, "-c", "import sys; from asc.locks import hold\n"
                                    "with hold(sys.argv[1], 'the test lock', wait=False): pass", str(lock)],
                                   capture_output=True, text=True, timeout=TIMEOUT)
            assert other.returncode == 1 and f"LockBusyError: the test lock is locked by pid {os.getpid()}" in \
                other.stderr  # really held: by this process, not shared with the orphan
        assert "took over a stale lock" in capsys.readouterr().err
    finally:
        _kill(orphan)


def test_forked_children_do_not_keep_a_lock_alive(tmp_path, capsys):
    lock = tmp_path / "lock"
    code = textwrap.dedent("""
        import os, sys, time
        from asc.locks import hold
        with hold(sys.argv[1], "the test lock"):
            child = os.fork()
            if child == 0:
                os.write(1, f"child {os.getpid()}\\n".encode())  # past the fork (and its clean-up)
                time.sleep(300)
                os._exit(0)
            os.write(1, f"parent {child}\\n".encode())
            os._exit(0)  # dies holding the lock, its child lives on
    """)
    parent = _start(code, lock)
    lines = dict(parent.stdout.readline().split() for _ in range(2))
    child = int(lines["child"])
    assert int(lines["parent"]) == child
    parent.wait(TIMEOUT)
    try:
        assert process_alive(child)
        with hold(lock, "the test lock", wait=False):  # free: the child closed its copy when it was forked
            pass
        assert "took over" not in capsys.readouterr().err  # nothing stale to take over
    finally:
        _kill(child)
