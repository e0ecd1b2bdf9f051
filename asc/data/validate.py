"""The one dataset validation every command that reads a dataset runs: :func:`open_dataset`.

It checks the tables only (no audio is opened; :func:`asc.data.check.check_tables`), so it runs every time; its
verdict is kept per process for as long as the tables' sizes and modification times stay the same. Refused with a
:class:`~asc.errors.DatasetError` naming file, line and value (``asc data check ROOT`` lists every problem, and
decodes the audio too):

* structure: a table that cannot be parsed, a missing column, an empty required value;
* duplicated rows of a table, and rows naming files that ``meta.csv`` does not list;
* labels: a split's label unknown to ``meta.csv`` or disagreeing with it (or with the scene in a TAU file name),
  and a ``meta.csv`` label outside the class list: the declared one (``labels``), else the official TAU scenes
  when the dataset uses them, so a typo never becomes an eleventh class;
* nesting: a row of a smaller training split missing from the next larger one.

Recording locations shared by a training split and the test split (a *leak*: the dev-test score would be
inflated) are an error for the command that trains on that split (``train_split``) unless ``allow_leak``; other
commands get a warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from asc.data.check import Problem, check_tables
from asc.data.layout import Layout, natural_key, read_dataset, read_table
from asc.errors import DatasetError

log = logging.getLogger(__name__)

ERROR_KINDS = ("bad_table", "missing_column", "empty_value", "unknown_class", "duplicate_row", "unknown_file",
               "unknown_label", "label_mismatch", "not_nested")  # in the order they are quoted
SHOWN = 3  # problems quoted in the error; `asc data check` lists them all

_verdicts: dict[tuple, list[Problem]] = {}
_warned: set[tuple] = set()


def open_dataset(root: str | Path, labels: Sequence[str] = (), train_split: str | None = None,
                 allow_leak: bool = False) -> Layout:
    """The dataset at ``root`` (:class:`~asc.data.layout.Layout`), validated as the module docstring says.

    ``labels``: the declared class list (empty: the official TAU scenes when the dataset uses them, else whatever
    ``meta.csv`` has). ``train_split``: the split the caller trains on; a location it shares with the test split is
    an error unless ``allow_leak`` (then a warning).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    problems = table_problems(root, labels)
    errors = sorted((p for p in problems if p.kind in ERROR_KINDS), key=lambda p: ERROR_KINDS.index(p.kind))
    if errors:
        shown = "; ".join(f"{root / p.file}{f' line {p.row}' if p.row else ''}: {p.message}" for p in errors[:SHOWN])
        more = f"; … {len(errors) - SHOWN} more" if len(errors) > SHOWN else ""
        raise DatasetError(f"{shown}{more} (`asc data check {root}` lists every problem)")
    layout = read_dataset(root)
    if train_split is not None:
        check_leak(layout, train_split, allow_leak)
    else:
        _warn_overlaps(root, problems)
    return layout


def table_problems(root: Path, labels: Sequence[str] = ()) -> list[Problem]:
    """:func:`check_tables` of ``root``, remembered while its tables are unchanged."""
    key = (str(root.resolve()), tuple(labels), _signature(root))
    if key not in _verdicts:
        _verdicts[key] = check_tables(root, labels).problems
    return _verdicts[key]


def _signature(root: Path) -> tuple:
    out = []
    for folder in (root, root / "evaluation_setup", root / "splits"):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        out += [(folder.name, e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries
                if e.name.endswith(".csv") and e.is_file()]
    return tuple(out)


def check_leak(layout: Layout, split: str, allow_leak: bool = False) -> list[str]:
    """Recording locations training split ``split`` shares with the test split: a DatasetError naming the files,
    lines and locations unless ``allow_leak`` (then a warning). Returns the shared locations."""
    if "test" not in layout.available_splits():
        return []
    train, test_path = layout.split(split), layout.split_path("test")
    # only the test split's file names are read (their recording locations from meta.csv), never its labels
    test = layout.meta.set_index("filename")["location"].reindex(read_table(test_path, ["filename"])["filename"])
    shared = sorted(set(train["location"]) & set(test.dropna()), key=natural_key)
    if not shared:
        return []
    train_path, loc = layout.split_path(split), shared[0]
    here = int((train["location"] == loc).to_numpy().argmax()) + 2
    there = int((test == loc).to_numpy().argmax()) + 2
    rows = int(train["location"].isin(set(shared)).sum())
    text = (f"{train_path}: {len(shared)} recording location(s) of training split {split} ({rows} row(s)) are also in "
            f"the test split {test_path}, e.g. {loc} (line {here} here, line {there} there): training on them leaks "
            f"test data and inflates the dev-test score")
    if not allow_leak:
        raise DatasetError(f"{text}; fix the split (e.g. `asc data splits make {layout.root} --overwrite`) or allow "
                           f"it explicitly (--allow-leak, allow_leak = true)")
    log.warning("%s (allowed by allow_leak)", text)
    return shared


def _warn_overlaps(root: Path, problems: list[Problem]) -> None:
    overlaps = [p for p in problems if p.kind == "location_overlap"]
    key = (str(root.resolve()), len(overlaps))
    if overlaps and key not in _warned:
        _warned.add(key)
        first = overlaps[0]
        log.warning("%s: %d recording location(s) of training split files are also in the test split, e.g. %s line "
                    "%s: %s; models trained on those splits have inflated dev-test scores (`asc data check %s`)",
                    root, len(overlaps), first.file, first.row, first.message, root)
