"""The package as a user installs it: its version, its declared dependencies against what the code imports, and
the data files it reads at run time (all inside the package, readable through importlib.resources)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

import asc
from asc import DISTRIBUTION, resources
from asc.cli import main

PACKAGE = Path(asc.__file__).resolve().parent
CHECKOUT = PACKAGE.parent if (PACKAGE.parent / "pyproject.toml").is_file() else None

# Declared for the code at run time although no module imports them by name.
INDIRECT = {"onnxscript": "torch.onnx.export's dynamo exporter imports it"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    """(runtime dependencies, extra -> dependencies) of the package being tested: pyproject.toml when the tests run
    against a checkout, the installed metadata when they run against an installed wheel."""
    if CHECKOUT is not None:
        project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]
        runtime, extras = project["dependencies"], project.get("optional-dependencies", {})
        name = lambda req: _norm(re.match(r"[A-Za-z0-9._-]+", req).group(0))  # noqa: E731
        return {name(r) for r in runtime}, {k: {name(r) for r in v} for k, v in extras.items()}
    runtime, extras = set(), {}
    for req in importlib.metadata.requires(DISTRIBUTION) or []:
        dist = _norm(re.match(r"[A-Za-z0-9._-]+", req).group(0))
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", req)
        (extras.setdefault(extra.group(1), set()) if extra else runtime).add(dist)
    return runtime, extras


def _imports() -> dict[str, list[str]]:
    """Top-level third-party module -> files of the package that import it."""
    out: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top != "asc" and top not in sys.stdlib_module_names:
                    out.setdefault(top, []).append(str(path.relative_to(PACKAGE)))
    return out


def test_every_runtime_import_is_declared_and_nothing_only_tests_use():
    runtime, extras = _declared()
    owners = importlib.metadata.packages_distributions()
    optional = set().union(*(deps for extra, deps in extras.items() if extra != "test"))
    imported = set()
    for module, files in _imports().items():
        dists = {_norm(d) for d in owners.get(module, [module])}
        imported |= dists
        assert dists & (runtime | optional), f"{module} (imported by {files[0]}) is not a declared dependency"
    unused = sorted(runtime - imported - set(INDIRECT))
    assert not unused, f"declared but never imported by the package: {unused} (test-only? move it to the test extra)"
    assert "scikit-learn" in extras["test"] and "scikit-learn" not in runtime


def test_version_comes_from_the_distribution(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"asc {asc.__version__} ({DISTRIBUTION})"
    try:
        assert asc.__version__ == importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # a checkout that was never installed
        assert asc.__version__ == "0+unknown"


def test_every_packaged_data_file_is_read_through_importlib_resources():
    kinds = {"complexity": 4, "data_splits": 1, "recipes": 3, "teachers": 2, "tune": 1, "datasets": 3}
    for kind, at_least in kinds.items():
        names = resources.names(kind)
        assert len(names) >= at_least, (kind, names)
        for name in names:
            res = resources.resource(kind, f"{name}.toml")
            assert tomllib.loads(res.read_text()), (kind, name)
    assert resources.resource("pretrained_sources.toml").is_file()
    # no code reaches data through the source tree any more
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if re.search(r"__file__\)?\.(resolve\(\)\.)?parents?\b", p.read_text())]
    assert offenders == []


def test_names_and_paths_are_told_apart(tmp_path):
    from asc.errors import ConfigError

    assert resources.locate("complexity", "dcase2024", "budget").name == "dcase2024.toml"
    own = tmp_path / "mine.toml"
    own.write_text('edition = "mine"\n')
    assert resources.locate("complexity", str(own), "budget") == own
    with pytest.raises(ConfigError, match=r"unknown budget 'dcase1999'; known: dcase2022, dcase2023"):
        resources.locate("complexity", "dcase1999", "budget")
    with pytest.raises(ConfigError, match="missing.toml: budget file not found"):
        resources.locate("complexity", str(tmp_path / "missing.toml"), "budget")
    with pytest.raises(ConfigError, match="unknown budget '../complexity/dcase2024'|budget file not found"):
        resources.locate("complexity", "../complexity/dcase2024", "budget")
