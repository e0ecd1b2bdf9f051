"""A dataset in the TAU Urban Acoustic Scenes 2022 Mobile layout, read into tables.

``ROOT/meta.csv`` (TAB: filename, scene_label, identifier, source_label), ``ROOT/evaluation_setup/fold1_{train,
evaluate,test}.csv`` and optional ``ROOT/splits/split{5,10,25,50,100}.csv`` / ``test.csv``. Labels, devices and
cities come from the data: class index = position in the sorted label list.

An evaluation set is a folder with ``evaluation_setup/fold1_test.csv`` (``filename`` and optionally ``device_id``)
and ``audio/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from asc.errors import DatasetError

META_COLUMNS = ["filename", "scene_label", "identifier", "source_label"]
SPLIT_COLUMNS = ["filename", "scene_label"]
TRAIN_SPLITS = ("5", "10", "25", "50", "100")
TAU_SCENES = ("airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
              "street_pedestrian", "street_traffic", "tram")  # TAU22 classes in index order (for synthetic data,
# the official output format and validator defaults; a dataset's own labels always come from its meta.csv)
TAU_DEVICES = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
DEVICE_GROUPS = {"real": ("a", "b", "c"), "seen": ("s1", "s2", "s3"), "unseen": ("s4", "s5", "s6")}


def natural_key(text: str):
    """Sort key that orders s2 before s10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text))]


def read_table(path: Path, required: list[str]) -> pd.DataFrame:
    """Read a TAB-separated CSV with a header; every value as a string. Errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as e:  # pandas raises many types for malformed files
        raise DatasetError(f"{path}: cannot parse as a TAB-separated table: {e}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        hint = " (is it comma-separated? TAU files are TAB-separated)" if len(df.columns) == 1 and "," in df.columns[0] else ""
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; found {list(df.columns)}{hint}")
    for col in required:
        empty = df.index[df[col].str.strip() == ""]
        if len(empty):
            raise DatasetError(f"{path}: row {empty[0] + 2}: empty {col}")
    return df


_NAME = re.compile(r"^(?P<scene>[^/]*)-(?P<city>[^-/]*)-(?P<locid>[^-/]*)-(?P<segid>[^-/]*)-(?P<piece>\d+)-"
                   r"(?P<device>[^-/]*)$")
_FIELDS = ("scene", "city", "location", "segment", "piece", "device")


def parse_filenames(filenames) -> pd.DataFrame:
    """Fields of ``audio/<scene>-<city>-<locid>-<segid>-<k>-<device>.wav`` names (a plain loop: several times faster
    than pandas' string methods on the 230,000 names of TAU).

    Columns scene, city, location, segment, piece, device. ``segment`` identifies a 10-s recording segment of one
    device (all of its 1-s pieces share it). Names of another form get the file stem as segment and "" elsewhere.
    """
    cols: dict[str, list[str]] = {k: [] for k in _FIELDS}
    for name in map(str, filenames):
        base = name.rsplit("/", 1)[-1]
        dot = base.rfind(".")
        stem = base[:dot] if dot > 0 else base
        m = _NAME.match(stem)
        if m is None:
            values = ("", "", "", stem, "", "")
        else:
            scene, city, locid, segid, piece, device = m.group("scene", "city", "locid", "segid", "piece", "device")
            values = (scene, city, f"{city}-{locid}", f"{scene}-{city}-{locid}-{segid}-{device}", piece, device)
        for key, value in zip(_FIELDS, values):
            cols[key].append(value)
    return pd.DataFrame(cols, dtype=object)


def parse_filename(filename: str) -> dict[str, str]:
    """:func:`parse_filenames` for one name (without ``scene``)."""
    row = parse_filenames([filename]).iloc[0]
    return {k: row[k] for k in ("city", "location", "segment", "piece", "device")}


@dataclass
class Layout:
    """A development dataset: ``meta`` has one row per clip with the derived columns
    ``label`` (class index), ``device``, ``city``, ``location``, ``segment``."""

    root: Path
    meta: pd.DataFrame
    labels: list[str]
    devices: list[str]
    cities: list[str]
    _splits: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def label_to_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def split_path(self, name: str) -> Path:
        """Where split ``name`` ("5" … "100", "test") is read from."""
        name = normalise_split_name(name)
        candidate = self.root / "splits" / (f"split{name}.csv" if name != "test" else "test.csv")
        if candidate.is_file():
            return candidate
        if name == "100":
            return self.root / "evaluation_setup" / "fold1_train.csv"
        if name == "test":
            return self.root / "evaluation_setup" / "fold1_evaluate.csv"
        raise DatasetError(
            f"{candidate}: split {name} not found; fetch the official splits with `asc data splits fetch {self.root}` "
            f"or build them with `asc data splits make {self.root}`"
        )

    def available_splits(self) -> list[str]:
        out = []
        for name in (*TRAIN_SPLITS, "test"):
            try:
                self.split_path(name)
                out.append(name)
            except DatasetError:
                pass
        return out

    def split(self, name: str) -> pd.DataFrame:
        """Rows of ``meta`` in split ``name``, in the split file's order. Unknown files are an error."""
        name = normalise_split_name(name)
        if name not in self._splits:
            path = self.split_path(name)
            table = read_table(path, ["filename"])
            index = pd.Index(self.meta["filename"])
            pos = index.get_indexer(table["filename"])
            bad = [i for i, p in enumerate(pos) if p < 0]
            if bad:
                rows = ", ".join(f"row {i + 2} ({table['filename'].iloc[i]})" for i in bad[:5])
                raise DatasetError(f"{path}: {len(bad)} file(s) not in meta.csv: {rows}")
            self._splits[name] = self.meta.iloc[pos].reset_index(drop=True)
        return self._splits[name]

    def audio_path(self, filename: str) -> Path:
        return self.root / filename


def normalise_split_name(name: str | int) -> str:
    text = str(name).strip().lower().removeprefix("split").removesuffix(".csv")
    if text in ("dev-test", "evaluate", "val", "validation"):
        text = "test"
    if text not in (*TRAIN_SPLITS, "test"):
        raise DatasetError(f"unknown split {name!r}: expected one of 5, 10, 25, 50, 100, test")
    return text


def read_dataset(root: str | Path) -> Layout:
    """Read ``ROOT/meta.csv`` and derive labels, devices and cities from it, unvalidated: commands open a dataset
    with :func:`asc.data.validate.open_dataset`, which validates its tables first."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    meta = read_table(root / "meta.csv", META_COLUMNS)
    dup = meta.index[meta["filename"].duplicated()]
    if len(dup):
        raise DatasetError(f"{root / 'meta.csv'}: row {dup[0] + 2}: duplicate filename {meta['filename'].iloc[dup[0]]}")
    parsed = parse_filenames(meta["filename"]).set_axis(meta.index)
    meta = meta.copy()
    meta["device"] = meta["source_label"]
    meta["city"] = parsed["city"].where(parsed["city"] != "", meta["identifier"].str.split("-").str[0])
    meta["location"] = meta["identifier"]
    meta["segment"] = parsed["segment"]
    labels = sorted(meta["scene_label"].unique())
    devices = sorted(meta["device"].unique(), key=natural_key)
    cities = sorted(meta["city"].unique())
    index = {label: i for i, label in enumerate(labels)}
    meta["label"] = meta["scene_label"].map(index).astype(int)
    return Layout(root=root, meta=meta, labels=labels, devices=devices, cities=cities)


@dataclass
class EvalSet:
    """An evaluation set: file names (as in the list, e.g. ``audio/0.wav``) and optional device ids."""

    root: Path
    files: pd.DataFrame  # columns filename, device_id ("" where unknown)

    def audio_path(self, filename: str) -> Path:
        return self.root / filename

    @property
    def has_device_ids(self) -> bool:
        return bool((self.files["device_id"] != "").any())


def open_eval_set(root: str | Path) -> EvalSet:
    """Read ``ROOT/evaluation_setup/fold1_test.csv`` (``filename`` [, ``device_id``])."""
    root = Path(root)
    path = root / "evaluation_setup" / "fold1_test.csv"
    table = read_table(path, ["filename"])
    dup = table.index[table["filename"].duplicated()]
    if len(dup):
        raise DatasetError(f"{path}: row {dup[0] + 2}: duplicate filename {table['filename'].iloc[dup[0]]}")
    if "device_id" not in table.columns:
        table["device_id"] = ""
    table["device_id"] = table["device_id"].replace("unknown", "")
    return EvalSet(root=root, files=table[["filename", "device_id"]].reset_index(drop=True))


def device_group(device: str) -> str | None:
    """real (a, b, c), seen (s1–s3), unseen (s4–s6) or None."""
    for group, members in DEVICE_GROUPS.items():
        if device in members:
            return group
    return None
