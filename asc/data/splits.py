"""Training splits: the official manifest (fetch + verify) and nested, stratified splits made for any dataset.

A manifest (packaged as ``asc/resources/data_splits/<name>.toml``) lists the split files of an edition: name, row
count, md5, and the base URL they are published under. ``fetch_splits`` downloads them into ``ROOT/splits/``; ``make_splits`` builds
``ROOT/splits/split{N}.csv`` for a dataset that has no official splits.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from asc import resources
from asc.config import from_dict, read_toml
from asc.data.download import ChecksumError, download, verify
from asc.data.layout import SPLIT_COLUMNS, natural_key, read_dataset, read_table
from asc.errors import ConfigError, DatasetError
from asc.fileio import atomic_path, write_json, write_text

log = logging.getLogger(__name__)


@dataclass
class SplitFile:
    """One file of a manifest: downloaded from ``base_url + name`` unless ``source`` names a file of the dataset."""

    split: str
    name: str
    rows: int
    md5: str | None = None
    sha256: str | None = None
    source: str | None = None


@dataclass
class SplitManifest:
    name: str
    base_url: str
    files: list[SplitFile] = field(default_factory=list)
    description: str = ""

    def file(self, split: str) -> SplitFile:
        for f in self.files:
            if f.split == str(split):
                return f
        raise ConfigError(f"manifest {self.name}: no entry for split {split}")


def load_manifest(manifest: str | Path = "dcase2024") -> SplitManifest:
    """A manifest by name (packaged in ``asc/resources/data_splits/<name>.toml``) or by path to a TOML file."""
    path = resources.locate("data_splits", manifest, "split manifest")
    out = from_dict(SplitManifest, read_toml(path), where=str(path))
    for f in out.files:
        if not (f.md5 or f.sha256 or f.source):
            raise ConfigError(f"{path}: file {f.name} needs an md5/sha256 checksum or a source inside the dataset")
    return out


def _base_url(base_url: str) -> str:
    """``base_url`` with a trailing slash; a local folder becomes a file:// URL."""
    if not urllib.parse.urlsplit(base_url).scheme and Path(base_url).is_dir():
        base_url = Path(base_url).resolve().as_uri()
    return base_url if base_url.endswith("/") else base_url + "/"


def count_rows(path: Path) -> int:
    return len(read_table(path, SPLIT_COLUMNS))


def fetch_splits(root: str | Path, manifest: str | Path = "dcase2024", base_url: str | None = None,
                 progress: bool = True) -> list[dict]:
    """Download the manifest's split files into ``ROOT/splits/``, verifying checksum and row count of each.

    All files are downloaded into a staging folder first and moved into place only when every one is verified.
    Files already present with the right checksum are kept. Entries with a ``source`` (split100 =
    ``evaluation_setup/fold1_train.csv``) are not downloaded; their row count is checked when the dataset has them.
    Returns one record per file: split, file, rows, status (downloaded, present, in dataset, not in dataset).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found; create it (or download the dataset) first")
    spec = load_manifest(manifest)
    base = _base_url(base_url or spec.base_url)
    out_dir = root / "splits"
    out_dir.mkdir(exist_ok=True)
    records, staged = [], []
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=out_dir) as staging:
        for f in spec.files:
            record = {"split": f.split, "file": str(out_dir / f.name), "rows": f.rows}
            if f.source:
                path = root / f.source
                record["file"] = str(path)
                if path.is_file():
                    rows = count_rows(path)
                    if rows != f.rows:
                        log.warning("%s: %d rows, the %s manifest expects %d: is this the right dataset?",
                                    path, rows, spec.name, f.rows)
                    record.update(rows=rows, status="in dataset")
                else:
                    record["status"] = "not in dataset"
                records.append(record)
                continue
            dest = out_dir / f.name
            if dest.is_file() and _verified(dest, f):
                record["status"] = "present"
                records.append(record)
                continue
            tmp = download(base + f.name, Path(staging) / f.name, sha256=f.sha256, md5=f.md5, progress=progress)
            rows = count_rows(tmp)
            if rows != f.rows:
                raise DatasetError(f"{base + f.name}: {rows} rows, the {spec.name} manifest expects {f.rows}; "
                                   f"nothing was written to {out_dir}")
            staged.append((tmp, dest))
            record["status"] = "downloaded"
            records.append(record)
        for tmp, dest in staged:
            os.replace(tmp, dest)
    return records


def _verified(path: Path, f: SplitFile) -> bool:
    """``path`` has the manifest's checksum and row count."""
    try:
        verify(path, sha256=f.sha256, md5=f.md5)
        return count_rows(path) == f.rows
    except (ChecksumError, DatasetError) as e:
        log.info("%s; fetching it again", e)
        return False


@dataclass
class MadeSplits:
    """What ``make_splits`` wrote: paths and rows per split, train rows dropped for sharing a test location."""

    root: Path
    seed: int
    paths: dict[str, Path]
    rows: dict[str, int]
    segments: dict[str, int]
    dropped_rows: int = 0
    dropped_locations: list[str] = field(default_factory=list)
    summary_path: Path | None = None

    def to_dict(self) -> dict:
        return {"root": str(self.root), "seed": self.seed, "paths": {k: str(v) for k, v in self.paths.items()},
                "rows": self.rows, "segments": self.segments, "dropped_rows": self.dropped_rows,
                "dropped_locations": self.dropped_locations}


def stratified_order(segments: pd.DataFrame, seed: int) -> np.ndarray:
    """Order of ``segments`` (columns ``label``, ``device``, ``n`` = pieces) such that every prefix holds each
    class × device cell, each class and each device in proportion to its share of pieces.

    Greedy: each step appends the next segment (seeded shuffle within its cell) of the cell whose addition most
    reduces the squared deviation of the prefix's cell, class and device counts from their targets.
    """
    rng = np.random.default_rng(seed)
    cells = segments.groupby(["label", "device"], sort=True).indices
    keys = list(cells)
    queues = [rng.permutation(cells[k]) for k in keys]
    sizes = segments["n"].to_numpy(dtype=float)
    groups = []
    for part in (0, 1):  # class and device marginals
        names = sorted({k[part] for k in keys})
        groups.append(np.array([names.index(k[part]) for k in keys]))
    total = sizes.sum()
    p_cell = np.array([sizes[q].sum() for q in queues]) / total
    p_marg = [np.bincount(g, weights=p_cell) for g in groups]
    cnt_cell = np.zeros(len(keys))
    cnt_marg = [np.zeros(len(p)) for p in p_marg]
    heads = np.zeros(len(keys), dtype=int)
    lengths = np.array([len(q) for q in queues])
    tie = rng.random(len(keys)) * 1e-9
    order = np.empty(len(segments), dtype=int)
    done = 0.0
    for step in range(len(segments)):
        open_ = heads < lengths
        n = np.array([sizes[q[h]] if h < len(q) else 0.0 for q, h in zip(queues, heads)])
        after = done + n
        deficit = p_cell * after - cnt_cell
        for g, p, c in zip(groups, p_marg, cnt_marg):
            deficit += p[g] * after - c[g]
        score = np.where(open_, 2 * n * deficit - 3 * n * n + tie, -np.inf)
        k = int(np.argmax(score))
        order[step] = queues[k][heads[k]]
        heads[k] += 1
        cnt_cell[k] += n[k]
        for g, c in zip(groups, cnt_marg):
            c[g[k]] += n[k]
        done += n[k]
    return order


def make_splits(root: str | Path, fractions=(5, 10, 25, 50, 100), seed: int = 0,
                overwrite: bool = False) -> MadeSplits:
    """Write nested training splits ``ROOT/splits/split{N}.csv`` from ``evaluation_setup/fold1_train.csv``.

    Whole recording segments only (``Layout.meta['segment']``), stratified by class × device so each split's mix
    matches the training set, each split a subset of the next, deterministic by ``seed``; split100 (the training set
    the others are drawn from) is always written. Training rows recorded at
    a location of ``fold1_evaluate.csv`` are dropped (with a warning). ``splits/test.csv`` is a copy of
    ``fold1_evaluate.csv``; ``splits/make_splits.json`` records what was made.
    """
    fractions = sorted({int(f) for f in fractions})
    if not fractions or fractions[0] <= 0 or fractions[-1] > 100:
        raise DatasetError(f"fractions {fractions}: expected percentages in 1..100")
    fractions = sorted(set(fractions) | {100})
    layout = read_dataset(root)
    root = layout.root
    setup = root / "evaluation_setup"
    train = _rows_in_meta(layout, setup / "fold1_train.csv")
    test_path = setup / "fold1_evaluate.csv"
    test = _rows_in_meta(layout, test_path)
    out_dir = root / "splits"
    names = {str(f): out_dir / f"split{f}.csv" for f in fractions}
    names["test"] = out_dir / "test.csv"
    existing = [str(p) for p in names.values() if p.exists()]
    if existing and not overwrite:
        raise DatasetError(f"{', '.join(existing)}: already exist; pass --overwrite (overwrite=True) to replace them")

    test_locations = set(test["location"])
    overlap = train["location"].isin(test_locations)
    dropped_locations = sorted(set(train.loc[overlap, "location"]), key=natural_key)
    if overlap.any():
        log.warning("%s: dropping %d rows recorded at %d location(s) that are also in %s: %s",
                    setup / "fold1_train.csv", int(overlap.sum()), len(dropped_locations), test_path.name,
                    ", ".join(dropped_locations[:10]))
        train = train[~overlap]
    if train.empty:
        raise DatasetError(f"{setup / 'fold1_train.csv'}: no training rows left after removing test locations")

    segments = train.groupby("segment", sort=True).agg(
        n=("filename", "size"), label=("scene_label", "first"), device=("device", "first"))
    order = stratified_order(segments.reset_index(), seed)
    cum = np.cumsum(segments["n"].to_numpy()[order])
    total = int(cum[-1])
    result = MadeSplits(root=root, seed=seed, paths={}, rows={}, segments={}, dropped_rows=int(overlap.sum()),
                        dropped_locations=dropped_locations)
    seg_names = segments.index.to_numpy()
    mix = {}
    for f in fractions:
        k = len(order) if f == 100 else max(1, int(np.searchsorted(cum, total * f / 100, side="right")))
        rows = train[train["segment"].isin(set(seg_names[order[:k]]))]
        write_text(names[str(f)], rows[SPLIT_COLUMNS].to_csv(sep="\t", index=False, lineterminator="\n"))
        result.paths[str(f)], result.rows[str(f)], result.segments[str(f)] = names[str(f)], len(rows), k
        mix[str(f)] = _mix(rows)
    with atomic_path(names["test"]) as tmp:
        shutil.copyfile(test_path, tmp)
    result.paths["test"], result.rows["test"] = names["test"], len(test)
    result.segments["test"] = int(test["segment"].nunique())
    result.summary_path = write_json(out_dir / "make_splits.json", {
        **result.to_dict(), "fractions": fractions, "source": str(setup / "fold1_train.csv"), "mix": mix})
    return result


def carve_validation(table: pd.DataFrame, fraction: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, validation rows) of a training split: about ``fraction`` of each class's clips held out as
    whole recording locations (column ``location``), so no location is on both sides; deterministic by ``seed``.

    A location counts for the class most of its clips have; per class, locations are taken in seeded random order
    while each brings the held-out share closer to the target, and at least one stays for training (a class
    recorded at a single location has no validation clips). Where every location is too large for that (tiny
    splits), one location of each class that has two or more is held out, and a warning gives the share.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation.fraction: expected a share of the training split in (0, 1), got {fraction}")
    sizes = table.groupby("location", sort=True).size()
    owner = table.groupby("location", sort=True)["label"].agg(lambda s: s.value_counts().index[0])
    rng = np.random.default_rng(seed)
    held: list[str] = []
    candidates: list[str] = []  # per class, its first location in seeded order (the fallback)
    for label in sorted(owner.unique()):
        locations = owner.index[owner == label].to_numpy()
        if len(locations) < 2:
            continue
        locations = locations[rng.permutation(len(locations))]
        candidates.append(min(locations, key=lambda loc: sizes[loc]))
        target, taken, left = fraction * sizes[locations].sum(), 0, len(locations)
        for loc in locations:
            if left > 1 and sizes[loc] < 2 * (target - taken):  # taking it brings the share closer to the target
                held.append(loc)
                taken, left = taken + sizes[loc], left - 1
    if not held and candidates:
        held = candidates
        log.warning("validation.fraction = %s: every recording location is larger than that share; holding out one "
                    "location of each class with two or more (%.0f %% of the split)", fraction,
                    100 * sizes[held].sum() / len(table))
    if not held:
        raise DatasetError(f"validation.fraction = {fraction}: no class of this split has two recording locations, "
                           f"so nothing can be held out without losing a class; train without validation")
    is_val = table["location"].isin(set(held)).to_numpy()
    return table[~is_val].reset_index(drop=True), table[is_val].reset_index(drop=True)


def _rows_in_meta(layout, path: Path) -> pd.DataFrame:
    """Rows of ``layout.meta`` listed in ``path`` (file order); unknown or duplicate files are errors."""
    table = read_table(path, ["filename"])
    dup = table.index[table["filename"].duplicated()]
    if len(dup):
        raise DatasetError(f"{path}: row {dup[0] + 2}: duplicate filename {table['filename'].iloc[dup[0]]}; "
                           f"run `asc data check {layout.root}`")
    pos = pd.Index(layout.meta["filename"]).get_indexer(table["filename"])
    bad = np.flatnonzero(pos < 0)
    if len(bad):
        rows = ", ".join(f"row {i + 2} ({table['filename'].iloc[i]})" for i in bad[:5])
        raise DatasetError(f"{path}: {len(bad)} file(s) not in meta.csv: {rows}")
    return layout.meta.iloc[pos].reset_index(drop=True)


def _mix(rows: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Pieces per class and device."""
    counts = rows.groupby(["scene_label", "device"]).size()
    out: dict[str, dict[str, int]] = {}
    for (label, device), n in counts.items():
        out.setdefault(label, {})[device] = int(n)
    return out
