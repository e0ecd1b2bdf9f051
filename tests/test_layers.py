"""The import structure of ``asc``: a layer order every module keeps, no cycles between packages, imports at module
tops. Read from the source with ``ast`` (nothing is imported); docs/architecture.md describes the same layers."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "asc"

# Bottom to top: a module may import from its own layer and the layers below it, never from a layer above.
LAYERS = [
    ("foundation", ["asc", "asc.errors", "asc.locks", "asc.fileio", "asc.config", "asc.resources", "asc.plots",
                    "asc.runs", "asc.accel"]),
    ("data", ["asc.data"]),
    ("frontend/augment", ["asc.frontend", "asc.augment"]),
    ("models", ["asc.models", "asc.inference", "asc.metrics", "asc.evaluate"]),
    ("train/complexity", ["asc.train", "asc.complexity", "asc.tune"]),
    ("export", ["asc.export", "asc.quantize", "asc.report", "asc.experiment"]),
    ("submission", ["asc.submission"]),
    ("cli", ["asc.cli", "asc.demo", "asc.__main__"]),
]
# Optional heavy packages a module may import inside the function that needs them (everything else at the top).
LAZY = {"onnx", "onnxruntime", "optuna", "matplotlib", "hear21passt", "timm"}
# The CLI's verb handlers import the library module they run when they run, so `asc --help` answers without torch.
LAZY_IN = "asc.cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at the module top) for every import statement of a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # "from asc.submission import rules" imports the module asc.submission.rules
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
            out += [(name, node.lineno, id(node) in top) for name in dict.fromkeys(names)]
    return out


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest entry that is ``module`` or a package above it."""
    best, index = "", None
    for i, (_, members) in enumerate(LAYERS):
        for member in members:
            if (module == member or module.startswith(member + ".")) and len(member) >= len(best):
                best, index = member, i
    if index is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py and to "
                             "docs/architecture.md")
    return index


def unit(module: str) -> str:
    """The package or top-level module an asc module belongs to (asc.train.trainer -> asc.train)."""
    return ".".join(module.split(".")[:2])


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_only_from_its_layer_or_below():
    above = [f"{module} ({LAYERS[layer_of(module)][0]}) line {line}: {name} ({LAYERS[layer_of(name)][0]})"
             for module, path in MODULES.items() for name, line, _ in imports(path)
             if name.split(".")[0] == "asc" and layer_of(name) > layer_of(module)]
    assert not above, "imports from a layer above:\n" + "\n".join(above)


def test_imports_sit_at_the_module_top():
    inner = [f"{module} line {line}: {name}" for module, path in MODULES.items()
             if not (module == LAZY_IN or module.startswith(LAZY_IN + "."))
             for name, line, at_top in imports(path) if not at_top and name.split(".")[0] not in LAZY]
    assert not inner, "imports inside functions (move them to the top):\n" + "\n".join(inner)


def test_no_cycles_between_packages():
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        for name, _, _ in imports(path):
            if name.split(".")[0] == "asc" and unit(name) != unit(module) and name != "asc":
                graph.setdefault(unit(module), set()).add(unit(name))

    def path_back(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen:
                found = path_back(start, nxt, (*seen, nxt))
                if found:
                    return found
        return None

    cycles = [" -> ".join((u, *c)) for u in sorted(graph) if (c := path_back(u, u, ()))]
    assert not cycles, "import cycles between packages: " + "; ".join(cycles)


def test_the_checks_see_a_violation(tmp_path):
    """The parser finds what the rules forbid (a guard against a test that cannot fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import json\nfrom asc.cli import main\n\n\ndef f():\n    from asc.train import trainer\n"
                   "    import onnx\n")
    found = imports(bad)
    assert ("asc.cli", 2, True) in found and ("asc.train.trainer", 6, False) in found and ("onnx", 7, False) in found
    assert layer_of("asc.cli") > layer_of("asc.data.layout") > layer_of("asc.runs")
