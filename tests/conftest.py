"""Shared test fixtures: the real material in ``../shared`` (skipped when absent), a tiny synthetic dataset, and an
isolated audio cache directory for the whole session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Every test (and every subprocess a test starts) writes its audio caches here, never to ~/.cache/asc. Spawned
# subprocesses may import this file again: they inherit the session's directory instead of making their own.
if "ASC_TEST_SESSION_CACHE_DIR" not in os.environ:
    os.environ["ASC_TEST_SESSION_CACHE_DIR"] = tempfile.mkdtemp(prefix="asc-test-cache-")
_CACHE_DIR = Path(os.environ["ASC_TEST_SESSION_CACHE_DIR"])
os.environ["ASC_CACHE_DIR"] = str(_CACHE_DIR)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def pytest_configure(config):
    """Under CI (``ASC_TEST_INSTALLED_IN=<venv>``) the suite must test the installed wheel, not a checkout."""
    expected = os.environ.get("ASC_TEST_INSTALLED_IN")
    if expected:
        import asc

        if not Path(asc.__file__).resolve().is_relative_to(Path(expected).resolve()):
            raise pytest.UsageError(f"asc is imported from {asc.__file__}, not from the installation in {expected}")


@pytest.fixture(scope="session", autouse=True)
def _session_cache_dir():
    """Remove the session's cache directory when the tests are done."""
    yield _CACHE_DIR
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The session's audio cache directory (``$ASC_CACHE_DIR``)."""
    return _CACHE_DIR


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``<repo>/../shared`` (impulse responses, splits, reference outputs, us8k-mini); skip the test if absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found (real material shared by the team)")
    return SHARED


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    """SynthPaths (``.dev``, ``.eval``) of a tiny synthetic dataset in the TAU layout, built once per session.

    Treat it as read-only: copy it (``shutil.copytree``) before modifying files.
    """
    from asc.data.synth import SynthConfig, make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), SynthConfig.preset("tiny"))
