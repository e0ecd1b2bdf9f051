"""Progress bars show on a terminal and stay out of logs: a command whose stderr is a file or a pipe prints none."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios


def _synth(tmp_path, name: str, stderr) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asc", "data", "synth", str(tmp_path / name), "--preset", "tiny"],
                          stdout=subprocess.DEVNULL, stderr=stderr, timeout=300)


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path):
    done = _synth(tmp_path, "piped", subprocess.PIPE)
    assert done.returncode == 0
    assert b"seg/s" not in done.stderr and b"synthesising segments" not in done.stderr


def test_progress_bar_on_a_terminal(tmp_path):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal 120 columns wide
    try:
        done = _synth(tmp_path, "tty", slave)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert done.returncode == 0
    assert b"synthesising segments" in seen
