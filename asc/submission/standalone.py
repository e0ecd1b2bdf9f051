"""Standalone source code of toolkit objects, for packages that must run without the toolkit.

:func:`standalone_source` returns one Python module holding the source of the given functions and classes as they
are written in ``asc``, plus everything they use from other ``asc`` modules (helpers, base classes, constants,
exception types), in dependency order, headed by the import statements of the third-party and standard-library
names they use. The DCASE 2025 inference package gets its network, front end and audio decoding this way, so the
code it ships is the code the toolkit trained and evaluated with, not a second copy kept in step by hand.
"""

from __future__ import annotations

import ast
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from asc.errors import AscError

OWN_PACKAGE = "asc"


class StandaloneError(AscError):
    """An object's source cannot be made standalone (e.g. it imports a package the caller does not allow)."""


@dataclass
class _ModuleInfo:
    module: ModuleType
    tree: ast.Module
    source: str
    definitions: dict[str, ast.stmt]  # top-level def / class / assignment by name
    imports: dict[str, ast.stmt]  # bound name -> the top-level import statement binding it


@dataclass
class StandaloneModule:
    """The generated source and the top-level third-party packages it imports."""

    source: str
    names: list[str]  # the definitions it holds, in order
    packages: set[str] = field(default_factory=set)


_MODULES: dict[str, _ModuleInfo] = {}


def _info(module_name: str) -> _ModuleInfo:
    if module_name not in _MODULES:
        module = sys.modules[module_name]
        source = Path(inspect.getsourcefile(module)).read_text(encoding="utf-8")
        tree = ast.parse(source)
        definitions: dict[str, ast.stmt] = {}
        imports: dict[str, ast.stmt] = {}
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                definitions[node.name] = node
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        definitions[target.id] = node
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                definitions[node.target.id] = node
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    imports[(alias.asname or alias.name).split(".")[0]] = node
        _MODULES[module_name] = _ModuleInfo(module, tree, source, definitions, imports)
    return _MODULES[module_name]


def _segment(info: _ModuleInfo, node: ast.stmt) -> str:
    """The full source lines of ``node``, decorators included."""
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return "\n".join(info.source.splitlines()[start - 1:node.end_lineno])


def _is_own(module_name: str) -> bool:
    return module_name == OWN_PACKAGE or module_name.startswith(OWN_PACKAGE + ".")


def _import_module_name(node: ast.ImportFrom | ast.Import, info: _ModuleInfo) -> str:
    if isinstance(node, ast.Import):
        return node.names[0].name
    if node.level:
        base = info.module.__name__.rsplit(".", node.level)[0]
        return f"{base}.{node.module}" if node.module else base
    return node.module or ""


def _import_text(node: ast.Import | ast.ImportFrom, name: str) -> str:
    """The import statement binding only ``name`` (absolute form)."""
    for alias in node.names:
        if (alias.asname or alias.name).split(".")[0] != name:
            continue
        suffix = f" as {alias.asname}" if alias.asname else ""
        if isinstance(node, ast.Import):
            return f"import {alias.name}{suffix}"
        return f"from {node.module} import {alias.name}{suffix}"
    raise KeyError(name)


def standalone_source(objects: list, allowed_packages: set[str], header: str = "") -> StandaloneModule:
    """One standalone module defining ``objects`` (functions / classes of ``asc`` modules) and their ``asc``
    dependencies. Third-party imports must be in ``allowed_packages`` (the standard library is always allowed);
    an import of ``asc`` inside a function body, or two different definitions with one name, is an error."""
    order: list[tuple[str, str]] = []  # (module, name), dependencies first
    imports: dict[str, str] = {}  # name -> import statement
    packages: set[str] = set()
    visiting: set[tuple[str, str]] = set()

    def visit(module_name: str, name: str, via: str) -> None:
        key = (module_name, name)
        if key in order or key in visiting:
            return
        info = _info(module_name)
        node = info.definitions.get(name)
        if node is None:
            raise StandaloneError(f"{module_name}.{name} (used by {via}): not a top-level definition")
        visiting.add(key)
        for ref in sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - {name}):
            if ref in info.definitions:
                visit(module_name, ref, f"{module_name}.{name}")
            elif ref in info.imports:
                statement = info.imports[ref]
                source_module = _import_module_name(statement, info)
                if _is_own(source_module):
                    obj = getattr(info.module, ref)
                    visit(obj.__module__, obj.__name__, f"{module_name}.{name}")
                    if obj.__name__ != ref:
                        raise StandaloneError(f"{module_name}: {obj.__name__} is imported as {ref}; use its own name")
                else:
                    _allow(source_module, allowed_packages, f"{module_name}.{name}")
                    imports.setdefault(ref, _import_text(statement, ref))
                    packages.add(source_module.split(".")[0])
        for inner in ast.walk(node):  # imports inside function bodies
            if isinstance(inner, (ast.Import, ast.ImportFrom)):
                inner_module = _import_module_name(inner, info)
                if _is_own(inner_module):
                    raise StandaloneError(f"{module_name}.{name} imports {inner_module} inside its body")
                _allow(inner_module, allowed_packages, f"{module_name}.{name}")
                packages.add(inner_module.split(".")[0])
        visiting.discard(key)
        order.append(key)

    for obj in objects:
        visit(obj.__module__, obj.__name__, "the caller")
    names: dict[str, str] = {}
    for module_name, name in order:
        if name in names and names[name] != module_name:
            raise StandaloneError(f"two definitions named {name} ({names[name]} and {module_name})")
        names[name] = module_name
    stdlib = {p for p in packages if p in sys.stdlib_module_names or p == "__future__"}
    statements = sorted(set(imports.values()), key=lambda s: (s.split()[1], s))
    lines = [f'"""{header}"""' if header else "", "", "from __future__ import annotations", ""]
    lines += [s for s in statements if s.split()[1].split(".")[0] in stdlib]
    lines += [""] + [s for s in statements if s.split()[1].split(".")[0] not in stdlib]
    emitted: set[int] = set()
    for module_name, name in order:
        node = _info(module_name).definitions[name]
        if id(node) not in emitted:  # one assignment may bind several names
            emitted.add(id(node))
            lines += ["", "", _segment(_info(module_name), node)]
    text = "\n".join(lines).lstrip("\n") + "\n"
    while "\n\n\n\n" in text:
        text = text.replace("\n\n\n\n", "\n\n\n")
    return StandaloneModule(source=text, names=[n for _, n in order], packages=packages - stdlib)


def _allow(module_name: str, allowed: set[str], where: str) -> None:
    root = module_name.split(".")[0]
    if root in sys.stdlib_module_names or root == "__future__" or root in allowed:
        return
    raise StandaloneError(f"{where} needs the package {root!r}; a standalone package may use only the standard "
                          f"library and {', '.join(sorted(allowed))}")
