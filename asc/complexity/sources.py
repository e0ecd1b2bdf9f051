"""What ``asc check-complexity MODEL`` can count: one small interface, a registry of source handlers.

A handler is ``handler(spec, options)``: it returns ``[(device_id, report), ...]`` (device_id None for a single model;
one entry per device for DCASE25-style packages) or None when ``spec`` is not its kind. Built in: ONNX files, run
folders / bundle checkpoints and registry model names (tried last, in that order). Other kinds register with
:func:`register_source` and are tried first; :mod:`asc.submission` registers DCASE 2025 inference packages, so the
dependency runs from submission to complexity, never back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from asc.complexity.count import count, count_named, frontend_input_size
from asc.complexity.onnx_graph import count_onnx
from asc.complexity.report import ComplexityError, ComplexityReport
from asc.errors import ConfigError
from asc.models.registry import list_models, load_bundle


@dataclass
class SourceOptions:
    """How to count a source: config overrides (registry names only), input shape, precision."""

    overrides: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, ...] | None = None
    frames: int | None = None
    precision: str | None = None


SourceHandler = Callable[[str, SourceOptions], "list[tuple[str | None, ComplexityReport]] | None"]
_SOURCE_HANDLERS: list[SourceHandler] = []


def register_source(handler: SourceHandler) -> SourceHandler:
    """Add ``handler`` (see the module docstring), tried before the built-in ones and those registered earlier;
    registering the same handler again changes nothing."""
    if handler not in _SOURCE_HANDLERS:
        _SOURCE_HANDLERS.insert(0, handler)
    return handler


def count_source(spec: str, options: SourceOptions | None = None) -> list[tuple[str | None, ComplexityReport]]:
    """Count whatever ``spec`` names: a registered kind, an ONNX file, a run folder or bundle checkpoint, or a
    registry model name. Returns ``[(device_id, report)]``."""
    options = options or SourceOptions()
    for handler in (*_SOURCE_HANDLERS, _onnx_source, _bundle_source, _registry_source):
        result = handler(spec, options)
        if result is not None:
            return result
    known = ", ".join(sorted(s.name for s in list_models()))
    raise ComplexityError(f"{spec}: not a model name (known: {known}), an existing run folder or checkpoint, "
                          "nor an .onnx file")


def no_overrides(spec: str, options: SourceOptions) -> None:
    """Refuse config overrides for a saved model (they apply to registry names only)."""
    if options.overrides:
        raise ConfigError(f"{spec}: config overrides apply to registry model names only, not to saved models")


def input_size_for(frontend, options: SourceOptions) -> tuple[int, ...]:
    """The input shape a saved model is counted on: the one given, else its front end's 1-s output (or
    ``options.frames`` frames of it)."""
    if options.input_size is None:
        return frontend_input_size(frontend, options.frames)
    if options.frames is not None:
        raise ConfigError("give either an input shape or a number of frames, not both")
    return options.input_size


def _onnx_source(spec: str, options: SourceOptions):
    path = Path(spec)
    if path.suffix.lower() != ".onnx":
        return None
    if not path.is_file():
        raise ComplexityError(f"{path}: ONNX file not found")
    no_overrides(spec, options)
    input_size = options.input_size
    if options.frames is not None:
        if input_size is not None:
            raise ConfigError("give either an input shape or a number of frames, not both")
        base = count_onnx(path).input_size
        input_size = (*base[:-1], options.frames)
    return [(None, count_onnx(path, input_size, options.precision))]


def _bundle_source(spec: str, options: SourceOptions):
    path = Path(spec)
    if not path.exists():
        return None
    no_overrides(spec, options)
    bundle = load_bundle(path)
    input_size = input_size_for(bundle.frontend, options)
    return [(None, count(bundle.model, input_size, options.precision, name=f"{path} ({bundle.model_name})"))]


def _registry_source(spec: str, options: SourceOptions):
    if spec not in {s.name for s in list_models()}:
        return None
    return [(None, count_named(spec, options.overrides, options.precision, options.input_size, options.frames))]
