"""DCASE 2025 inference packages as a source of ``asc check-complexity`` (registered with
:func:`asc.complexity.register_source` when :mod:`asc.submission` is imported).

A spec names one module of a package: a file ``path/<Label>/<Label>_1.py`` (imported from that file, whether or not
the package is installed) or an installed module ``<Label>.<Label>_1``. Each device id of the 2025 rules gets its own
report, on the network the module's ``get_model_for_device`` returns.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from asc.complexity import ComplexityError, SourceOptions, count, register_source
from asc.complexity.sources import input_size_for, no_overrides
from asc.submission.runtime2025 import DEVICE_IDS_2025

MODULE_NAME = re.compile(r"[A-Za-z_]\w*\.[A-Za-z_]\w*_task1_\d")


def import_package_module(path: str | Path) -> ModuleType:
    """Import ``<Label>/<Label>_N.py`` as module ``<Label>.<Label>_N`` of the package in that folder (loaded from
    the folder itself, replacing an already imported package of that name from elsewhere)."""
    path = Path(path).resolve()
    folder, label = path.parent, path.parent.name
    package = sys.modules.get(label)
    if package is None or [str(folder)] != list(getattr(package, "__path__", [])):
        for name in [n for n in sys.modules if n == label or n.startswith(f"{label}.")]:
            del sys.modules[name]
        init = folder / "__init__.py"
        spec = importlib.util.spec_from_file_location(label, init, submodule_search_locations=[str(folder)]) \
            if init.is_file() else importlib.machinery.ModuleSpec(label, None, is_package=True)
        if not init.is_file():
            spec.submodule_search_locations = [str(folder)]
        package = importlib.util.module_from_spec(spec)
        sys.modules[label] = package
        if spec.loader is not None:
            spec.loader.exec_module(package)
    return importlib.import_module(f"{label}.{path.stem}")


def package_source(spec: str, options: SourceOptions):
    """One report per 2025 device id for a module of an inference package; None for other specs."""
    path = Path(spec)
    if not (path.suffix == ".py" and path.is_file()) and not MODULE_NAME.fullmatch(spec):
        return None
    no_overrides(spec, options)
    try:
        module = import_package_module(path) if path.suffix == ".py" else importlib.import_module(spec)
    except ImportError as e:
        raise ComplexityError(f"{spec}: cannot import inference module: {e}") from None
    name = module.__name__
    model = module.load_model()
    input_size = input_size_for(model.predictor.frontend, options)
    return [(device, count(module.get_model_for_device(model, device), input_size, options.precision,
                           name=f"{name} [{device}]")) for device in DEVICE_IDS_2025]


register_source(package_source)
