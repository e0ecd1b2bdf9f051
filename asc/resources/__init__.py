"""Data files that ship inside the package, read through :mod:`importlib.resources` (so an installed wheel, not
only a checkout, has them). One folder per kind; each is documented where a person looks for it:

=================  ==============================================  ====================================
folder             holds                                           documented in (repository)
=================  ==============================================  ====================================
``complexity/``    complexity budget per challenge edition         ``complexity/README.md``
``data_splits/``   official split manifests (URLs, rows, md5)      ``data_splits/README.md``
``recipes/``       named training recipes (TrainConfig TOML)       ``asc recipes list``
``teachers/``      teacher recipes (TrainConfig TOML)              ``teachers/README.md``
``tune/``          example Optuna search spaces                    ``asc tune run --help``
``datasets/``      download catalog: archives, URLs, md5           ``asc data download --list``
=================  ==============================================  ====================================

``pretrained_sources.toml`` names published weights (:mod:`asc.models.pretrained`).
"""

from __future__ import annotations

import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from asc.errors import ConfigError


def resource(*parts: str) -> Traversable:
    """The packaged file or folder ``parts`` (e.g. ``resource("complexity", "dcase2024.toml")``)."""
    node = resources.files(__name__)
    for part in parts:
        node = node.joinpath(part)
    return node


def names(kind: str, suffix: str = ".toml") -> list[str]:
    """Names (file stems) of the packaged ``kind/*<suffix>`` files, sorted."""
    folder = resource(kind)
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(suffix)] for p in folder.iterdir() if p.is_file() and p.name.endswith(suffix))


def is_path(text: str) -> bool:
    """Whether a name-or-path argument names a file: it ends in ``.toml`` or contains a path separator."""
    return text.endswith(".toml") or os.sep in text or bool(os.altsep and os.altsep in text)


def locate(kinds: str | tuple[str, ...], name_or_path: str | os.PathLike, what: str) -> Traversable:
    """A packaged TOML file by name (searched in ``kinds`` in order), or a TOML file by path."""
    text = str(name_or_path)
    if isinstance(name_or_path, os.PathLike) or is_path(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: {what} file not found")
        return path
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    for kind in kinds:
        if text in names(kind):
            return resource(kind, f"{text}.toml")
    known = sorted(n for kind in kinds for n in names(kind))
    raise ConfigError(f"unknown {what} {text!r}; known: {', '.join(known) or 'none'} (or give a path to a .toml file)")
