"""Dataset checks: every problem of a dataset in the TAU layout, or of a set of split files, reported at once.

Each :class:`Problem` has a short stable ``kind`` (see :data:`KINDS`), the ``file`` at fault (relative to the dataset
root for :func:`check_dataset`) and the 1-based ``row`` = line number in that file (the header is line 1; ``None``
for problems of a whole file or of an audio file, whose message names the meta.csv line that lists it).
"""

from __future__ import annotations

import collections
import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from asc.data.download import ChecksumError, verify
from asc.data.layout import META_COLUMNS, SPLIT_COLUMNS, TAU_SCENES, TRAIN_SPLITS, natural_key, parse_filenames
from asc.data.splits import load_manifest
from asc.errors import DatasetError

KINDS = {
    "missing_file": "a file of the layout is missing",
    "bad_table": "a table cannot be read as TAB-separated text with a header",
    "missing_column": "a required column is missing",
    "empty_value": "a required value is empty",
    "duplicate_row": "a file is listed more than once in one table",
    "unknown_file": "a row names a file that meta.csv does not list",
    "unknown_label": "a scene_label that meta.csv does not have",
    "unknown_class": "a scene_label of meta.csv outside the class list (the official TAU scenes, or the declared one)",
    "label_mismatch": "scene_label disagrees with meta.csv, another split file or the scene in the file name",
    "device_mismatch": "source_label disagrees with the device in the file name",
    "location_mismatch": "identifier disagrees with the city-location in the file name",
    "not_nested": "a row of a smaller split is missing from the next larger split",
    "partial_segment": "a recording segment is only partly in a split",
    "location_overlap": "a recording location is in both training and test files",
    "missing_audio": "an audio file listed in meta.csv does not exist",
    "unreadable_audio": "an audio file cannot be opened or fully decoded",
    "non_finite": "an audio file holds NaN or infinite samples",
    "silent": "every sample of an audio file is zero",
    "sample_rate": "an audio file does not have the expected sample rate",
    "mixed_sample_rate": "an audio file's sample rate differs from the majority",
    "channels": "an audio file is not mono",
    "duration": "an audio file's duration differs from the expected (majority) duration",
    "row_count": "a split file's row count differs from the manifest",
    "checksum": "a split file's checksum differs from the manifest",
}
TEST_FILES = ("test.csv", "fold1_evaluate.csv", "fold1_test.csv")


@dataclass
class Problem:
    kind: str
    file: str
    row: int | None
    message: str

    @property
    def where(self) -> str:
        return f"{self.file} line {self.row}" if self.row else self.file

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class CheckReport:
    """Problems plus what was checked (``stats``)."""

    root: str
    problems: list[Problem] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        return dict(collections.Counter(p.kind for p in self.problems))

    def to_dict(self) -> dict:
        return {"root": self.root, "ok": self.ok, "counts": self.counts(), "stats": self.stats,
                "problems": [asdict(p) for p in self.problems]}


@dataclass
class _Table:
    """A parsed table: ``df`` has the file's columns plus ``line``, ``segment`` and ``location``."""

    name: str
    df: pd.DataFrame


def _read_table(path: Path, name: str, required: list[str], problems: list[Problem]) -> pd.DataFrame | None:
    """Parse ``path``; unparseable tables and missing columns become problems (and None); rows with an empty
    required value are reported and dropped. Adds the column ``line``."""
    try:
        df = pd.read_csv(path, sep="\t", dtype=object, keep_default_na=False)
    except pd.errors.EmptyDataError:
        problems.append(Problem("bad_table", name, None, "empty file: expected a header line"))
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        problems.append(Problem("bad_table", name, None, f"cannot read as a TAB-separated table: {e}"))
        return None
    missing = [c for c in required if c not in df.columns]
    if missing:
        hint = (" (it looks comma-separated; TAU files are TAB-separated)"
                if len(df.columns) == 1 and "," in df.columns[0] else "")
        problems.append(Problem("missing_column", name, 1,
                                f"missing column(s) {', '.join(missing)}; found {list(df.columns)}{hint}"))
        return None
    df = df.fillna("")
    df["line"] = np.arange(len(df)) + 2
    keep = np.ones(len(df), dtype=bool)
    for col in required:
        empty = (df[col].str.strip() == "").to_numpy()
        for line in df["line"].to_numpy()[empty]:
            problems.append(Problem("empty_value", name, int(line), f"empty {col}"))
        keep &= ~empty
    return df[keep].reset_index(drop=True)


def _derive(df: pd.DataFrame, meta: pd.DataFrame | None) -> pd.DataFrame:
    """Add ``segment`` and ``location`` (from meta.csv for files it lists, else parsed from the file name) and the
    parsed ``name_scene`` and ``name_device``; names meta.csv lists are not parsed again."""
    df = df.copy()
    derived = ["segment", "location", "name_scene", "name_device"]
    if meta is not None:
        known = meta.drop_duplicates("filename").set_index("filename")[derived].reindex(df["filename"])
        missing = known["segment"].isna().to_numpy()
    else:
        known, missing = None, np.ones(len(df), dtype=bool)
    parsed = parse_filenames(df["filename"][missing])
    for column, source in zip(derived, ("segment", "location", "scene", "device")):
        values = known[column].to_numpy(dtype=object, copy=True) if known is not None else np.empty(len(df), object)
        values[missing] = parsed[source].to_numpy()
        df[column] = values
    return df


def _name_mismatch(df: pd.DataFrame, name: str, column: str, parsed: pd.Series, kind: str,
                   problems: list[Problem]) -> None:
    """Rows whose ``column`` differs from the value parsed from the file name (where the name has the TAU form)."""
    parsed = pd.Series(parsed.to_numpy(), index=df.index)
    bad = (parsed != "") & (df[column] != parsed)
    for line, filename, value, want in zip(df["line"][bad], df["filename"][bad], df[column][bad], parsed[bad]):
        problems.append(Problem(kind, name, int(line), f"{filename}: {column} {value!r} but the name says {want!r}"))


def _check_rows(t: _Table, meta: pd.DataFrame | None, problems: list[Problem]) -> None:
    """Duplicates, files not in meta.csv, unknown or mismatching labels."""
    df = t.df
    first = df.drop_duplicates("filename").set_index("filename")["line"]
    dup = df[df["filename"].duplicated()]
    for filename, line in zip(dup["filename"], dup["line"]):
        problems.append(Problem("duplicate_row", t.name, int(line), f"{filename} is already listed on line "
                                                                      f"{first[filename]}"))
    if meta is None:
        return
    meta_label = meta.set_index("filename")["scene_label"]
    labels = set(meta["scene_label"])
    in_meta = df["filename"].isin(meta_label.index)
    for filename, line in zip(df["filename"][~in_meta], df["line"][~in_meta]):
        problems.append(Problem("unknown_file", t.name, int(line), f"{filename} is not in meta.csv"))
    if "scene_label" not in df.columns:
        return
    odd = df[~df["scene_label"].isin(labels)]
    for filename, label, line in zip(odd["filename"], odd["scene_label"], odd["line"]):
        problems.append(Problem("unknown_label", t.name, int(line),
                                f"{filename}: scene_label {label!r} is not a label of meta.csv"))
    expected = df["filename"].map(meta_label)
    wrong = in_meta & df["scene_label"].isin(labels) & (df["scene_label"] != expected)
    for filename, label, line, want in zip(df["filename"][wrong], df["scene_label"][wrong], df["line"][wrong],
                                           expected[wrong]):
        problems.append(Problem("label_mismatch", t.name, int(line),
                                f"{filename}: scene_label {label!r} but meta.csv says {want!r}"))


def _check_chain(chain: list[_Table], problems: list[Problem]) -> None:
    """Each table a subset of the next; no segment split between a table and the rest of the next."""
    for small, big in zip(chain, chain[1:]):
        outside = ~small.df["filename"].isin(big.df["filename"])
        for filename, line in zip(small.df["filename"][outside], small.df["line"][outside]):
            problems.append(Problem("not_nested", small.name, int(line), f"{filename} is not in {big.name}"))
        _check_segments(small, big.df, big.name, problems)


def _check_segments(t: _Table, reference: pd.DataFrame, ref_name: str, problems: list[Problem]) -> None:
    """Segments of ``t`` that have pieces in ``reference`` which ``t`` lacks."""
    ref = reference.drop_duplicates("filename")
    ref = ref[ref["segment"].isin(set(t.df["segment"]))]
    have = set(t.df["filename"])
    lacking = ref[~ref["filename"].isin(have)]
    if lacking.empty:
        return
    n_ref = ref.groupby("segment").size()
    firsts = t.df.drop_duplicates("segment").set_index("segment")["line"]
    for segment, rows in lacking.groupby("segment", sort=False):
        names = sorted(rows["filename"], key=natural_key)
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        problems.append(Problem(
            "partial_segment", t.name, int(firsts[segment]),
            f"segment {segment}: {n_ref[segment] - len(names)} of its {n_ref[segment]} pieces in {ref_name} are "
            f"here, not {', '.join(names[:3])}{more}; a split must hold whole segments"))


def _check_locations(train: list[_Table], test: list[_Table], problems: list[Problem]) -> None:
    """One problem per location found in a training table and in a test table."""
    def first_seen(tables):
        seen: dict[str, tuple[str, int, int]] = {}
        for t in tables:
            df = t.df[t.df["location"] != ""]
            counts = df.groupby("location").size()
            for loc, line in df.drop_duplicates("location").set_index("location")["line"].items():
                seen.setdefault(loc, (t.name, int(line), int(counts[loc])))
        return seen

    in_train, in_test = first_seen(train), first_seen(test)
    for loc in sorted(set(in_train) & set(in_test), key=natural_key):
        (a, a_line, a_n), (b, b_line, b_n) = in_train[loc], in_test[loc]
        problems.append(Problem("location_overlap", a, a_line,
                                f"location {loc} ({a_n} rows here) is also in {b} (line {b_line}, {b_n} rows); "
                                f"training and test must not share recording locations"))


def _check_meta(meta: pd.DataFrame, name: str, problems: list[Problem]) -> None:
    """Duplicates and agreement of scene_label / source_label / identifier with the file name (``meta`` as made
    by :func:`_derive`, before its location is replaced by the identifier). A name's scene counts only where it is
    itself one of the labels (other datasets name files in the TAU pattern with other words first)."""
    _check_rows(_Table(name, meta), None, problems)
    scene = meta["name_scene"].where(meta["name_scene"].isin(set(meta["scene_label"])), "")
    _name_mismatch(meta, name, "scene_label", scene, "label_mismatch", problems)
    _name_mismatch(meta, name, "source_label", meta["name_device"], "device_mismatch", problems)
    _name_mismatch(meta, name, "identifier", meta["location"], "location_mismatch", problems)


def class_list(labels: Sequence[str], declared: Sequence[str] = ()) -> tuple[list[str], str] | None:
    """(the class list a dataset's ``labels`` must keep to, what it is called): ``declared`` when given, else the
    official TAU scenes when the dataset uses them (at least half of its labels are official scenes), else None."""
    if declared:
        return list(declared), "the declared class list"
    official = set(labels) & set(TAU_SCENES)
    if len(official) >= 2 and 2 * len(official) >= len(set(labels)):
        return list(TAU_SCENES), "the official TAU scenes"
    return None


def _check_classes(meta: pd.DataFrame, name: str, declared: Sequence[str], problems: list[Problem]) -> None:
    """One problem per scene_label outside the class list, at its first row."""
    known = class_list(sorted(set(meta["scene_label"])), declared)
    if known is None:
        return
    classes, what = known
    odd = meta[~meta["scene_label"].isin(set(classes))]
    counts = odd["scene_label"].value_counts()
    for label, line in odd.drop_duplicates("scene_label").set_index("scene_label")["line"].items():
        close = difflib.get_close_matches(label, classes, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(Problem("unknown_class", name, int(line),
                                f"scene_label {label!r} ({counts[label]} row(s)) is not one of {what}{hint}: "
                                f"{', '.join(classes)}"))


def _riff_truncated(path: Path) -> str:
    """For a RIFF/WAVE file whose header announces more bytes than the file has: a message; else ""."""
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return ""
    announced = int.from_bytes(head[4:8], "little") + 8
    size = path.stat().st_size
    if announced > size + 1 and announced - 8 not in (0, 0xFFFFFFFF):  # 1: a missing pad byte
        return f"truncated: its RIFF header announces {announced} bytes, the file has {size}"
    return ""


def _check_audio(root: Path, meta: pd.DataFrame, problems: list[Problem], sample_rate: int | None,
                 duration: float | None, progress: bool) -> dict:
    """Header (rate, channels, frames) and a full decode of every file; rate and duration against the expected
    value or, when not given, the majority."""
    info = []
    for filename, line in tqdm(zip(meta["filename"], meta["line"]), total=len(meta), desc="audio", unit="file",
                               disable=not progress or None, leave=False):
        path = root / filename
        at = f"(meta.csv line {line})"
        if not path.is_file():
            problems.append(Problem("missing_audio", filename, None, f"not found {at}"))
            continue
        try:
            with sf.SoundFile(path) as f:
                rate, channels, frames = f.samplerate, f.channels, f.frames
                samples = f.read(dtype="float32", always_2d=True)
                decoded = len(samples)
        except Exception as e:  # libsndfile raises LibsndfileError, RuntimeError, ...
            problems.append(Problem("unreadable_audio", filename, None, f"cannot decode: {e} {at}"))
            continue
        if decoded != frames:
            problems.append(Problem("unreadable_audio", filename, None,
                                    f"decodes {decoded} of the {frames} frames in its header {at}"))
            continue
        truncated = _riff_truncated(path)
        if truncated:
            problems.append(Problem("unreadable_audio", filename, None, f"{truncated} {at}"))
            continue
        if channels != 1:
            problems.append(Problem("channels", filename, None, f"{channels} channels, expected mono {at}"))
        bad = samples.size - int(np.isfinite(samples).sum())
        if bad:
            problems.append(Problem("non_finite", filename, None, f"{bad} of its {samples.size} samples are NaN or "
                                                                   f"infinite {at}"))
        elif samples.size and not samples.any():
            problems.append(Problem("silent", filename, None, f"all {samples.size} samples are zero {at}"))
        info.append((filename, line, rate, frames))
    stats = {"audio_files": len(meta), "audio_ok": len(info)}
    if not info:
        return stats
    rates = collections.Counter(r for _, _, r, _ in info)
    majority_rate = rates.most_common(1)[0][0]
    for filename, line, rate, _ in info:
        if sample_rate is not None and rate != sample_rate:
            problems.append(Problem("sample_rate", filename, None,
                                    f"{rate} Hz, expected {sample_rate} Hz (meta.csv line {line})"))
        elif sample_rate is None and rate != majority_rate:
            problems.append(Problem("mixed_sample_rate", filename, None,
                                    f"{rate} Hz while {rates[majority_rate]} of {len(info)} files are "
                                    f"{majority_rate} Hz (meta.csv line {line})"))
    durations = collections.Counter(round(frames / rate, 3) for _, _, rate, frames in info)
    expected = duration if duration is not None else durations.most_common(1)[0][0]
    for filename, line, rate, frames in info:
        if frames != round(expected * rate):
            what = "expected" if duration is not None else f"the majority ({durations[expected]} files)"
            problems.append(Problem("duration", filename, None,
                                    f"{frames / rate:.4f} s ({frames} samples at {rate} Hz), {what} is "
                                    f"{expected:g} s (meta.csv line {line})"))
    stats.update(sample_rates={int(k): v for k, v in rates.items()}, duration_s=expected,
                 durations={str(k): v for k, v in durations.most_common(5)})
    return stats


def check_dataset_report(root: str | Path, check_audio: bool = True, sample_rate: int | None = None,
                         duration: float | None = None, progress: bool = True,
                         labels: Sequence[str] = ()) -> CheckReport:
    """Check a dataset in the TAU layout; see :func:`check_dataset`. Returns problems plus statistics."""
    report, meta = _check_tables(Path(root), labels)
    if check_audio and meta is not None:
        report.stats.update(_check_audio(Path(root), meta, report.problems, sample_rate, duration, progress))
    return report


def check_tables(root: str | Path, labels: Sequence[str] = ()) -> CheckReport:
    """The table part of :func:`check_dataset_report` (no audio is opened): what every command that reads a
    dataset runs (:mod:`asc.data.validate`)."""
    return _check_tables(Path(root), labels)[0]


def _check_tables(root: Path, labels: Sequence[str]) -> tuple[CheckReport, pd.DataFrame | None]:
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if not (root / "meta.csv").is_file():
        raise DatasetError(f"{root / 'meta.csv'}: file not found; a dataset in the TAU layout has meta.csv, audio/ "
                           f"and evaluation_setup/ (for a set of split files use `asc data splits check FILE...`)")
    problems: list[Problem] = []
    stats: dict = {"tables": {}}
    meta = _read_table(root / "meta.csv", "meta.csv", META_COLUMNS, problems)
    if meta is not None:
        meta = _derive(meta, None)
        _check_meta(meta, "meta.csv", problems)
        _check_classes(meta, "meta.csv", labels, problems)
        meta = meta.drop_duplicates("filename")
        meta["location"] = meta["identifier"]
        stats.update(clips=len(meta), labels=sorted(set(meta["scene_label"])),
                     devices=sorted(set(meta["source_label"]), key=natural_key))
        stats["tables"]["meta.csv"] = len(meta)

    def load(rel: str, required: list[str], needed: bool) -> _Table | None:
        if not (root / rel).is_file():
            if needed:
                problems.append(Problem("missing_file", rel, None, "not found"))
            return None
        df = _read_table(root / rel, rel, required, problems)
        if df is None:
            return None
        t = _Table(rel, _derive(df, meta))
        _check_rows(t, meta, problems)
        stats["tables"][rel] = len(df)
        return t

    splits = [load(f"splits/split{n}.csv", SPLIT_COLUMNS, False) for n in TRAIN_SPLITS]
    train = load("evaluation_setup/fold1_train.csv", SPLIT_COLUMNS, True)
    evaluate = load("evaluation_setup/fold1_evaluate.csv", SPLIT_COLUMNS, True)
    test_list = load("evaluation_setup/fold1_test.csv", ["filename"], False)
    test_split = load("splits/test.csv", SPLIT_COLUMNS, False)
    chain = [t for t in (*splits, train) if t is not None]
    stats["chain"] = [t.name for t in chain]
    _check_chain(chain, problems)
    if meta is not None:
        for t in (train, evaluate):
            if t is not None:
                _check_segments(t, meta, "meta.csv", problems)
    _check_locations(chain, [t for t in (evaluate, test_split, test_list) if t is not None], problems)
    return CheckReport(root=str(root), problems=problems, stats=stats), meta


def check_dataset(root: str | Path, check_audio: bool = True, sample_rate: int | None = None,
                  duration: float | None = None, progress: bool = True, labels: Sequence[str] = ()) -> list[Problem]:
    """Every problem of the dataset at ``root`` (TAU layout): tables (parse, columns, duplicates, unknown files and
    labels, labels outside the class list: ``labels`` when declared, else the official TAU scenes when the dataset
    uses them), splits (nesting, whole segments, train/test location overlap) and, with ``check_audio``, each audio
    file (exists, decodes fully, finite, not all zero, mono, sample rate and duration as given or as the majority).

    A missing ``root`` or ``meta.csv`` is not a dataset: :class:`DatasetError`.
    """
    return check_dataset_report(root, check_audio, sample_rate, duration, progress, labels).problems


def check_split_files(paths: list[str | Path], manifest: str | Path | None = None) -> CheckReport:
    """Check split CSVs without a dataset: training files (ordered by size) must be nested with whole segments;
    test files (test.csv, fold1_evaluate.csv, fold1_test.csv) must share no location with them; a file name must
    have one label everywhere. With a ``manifest`` (name or path) row counts and checksums are compared too.
    ``stats['files']`` describes each file, ``stats['chain']`` is the nesting order."""
    problems: list[Problem] = []
    train, test, files = [], [], []
    for path in map(Path, paths):
        name = str(path)
        if not path.is_file():
            raise DatasetError(f"{path}: file not found")
        is_test = path.name in TEST_FILES
        df = _read_table(path, name, ["filename"] if path.name == "fold1_test.csv" else SPLIT_COLUMNS, problems)
        if df is None:
            continue
        t = _Table(name, _derive(df, None))
        _check_rows(t, None, problems)
        (test if is_test else train).append(t)
        sizes = t.df.drop_duplicates("filename").groupby("segment").size()
        files.append({"file": name, "role": "test" if is_test else "train", "rows": len(df),
                      "segments": len(sizes), "pieces_per_segment": {int(k): int(v) for k, v in
                                                                     sizes.value_counts().sort_index().items()},
                      "locations": int(t.df["location"].nunique()),
                      "devices": sorted(set(t.df["name_device"]) - {""}, key=natural_key)})
    train.sort(key=lambda t: (t.df["filename"].nunique(), natural_key(t.name)))
    order = [t.name for t in (*train, *test)]
    files.sort(key=lambda f: order.index(f["file"]) if f["file"] in order else len(order))
    _check_chain(train, problems)
    _check_locations(train, test, problems)
    first_label: dict[str, tuple[str, str]] = {}
    for t in (*train, *test):
        if "scene_label" not in t.df.columns:
            continue
        _name_mismatch(t.df, t.name, "scene_label", t.df["name_scene"], "label_mismatch", problems)
        for filename, label, line in zip(t.df["filename"], t.df["scene_label"], t.df["line"]):
            seen = first_label.setdefault(filename, (label, t.name))
            if seen[0] != label:
                problems.append(Problem("label_mismatch", t.name, int(line),
                                        f"{filename}: scene_label {label!r} but {seen[1]} says {seen[0]!r}"))
    if manifest is not None:
        spec = load_manifest(manifest)
        entries = {f.name: f for f in spec.files}
        for info, path in ((i, Path(i["file"])) for i in files):
            entry = entries.get(path.name)
            if entry is None:
                continue
            if info["rows"] != entry.rows:
                problems.append(Problem("row_count", info["file"], None,
                                        f"{info['rows']} rows, the {spec.name} manifest says {entry.rows}"))
            try:
                verify(path, sha256=entry.sha256, md5=entry.md5)
            except ChecksumError as e:
                problems.append(Problem("checksum", info["file"], None,
                                        f"{e.algorithm} {e.actual}, the {spec.name} manifest says {e.expected}"))
    stats = {"files": files, "chain": [t.name for t in train]}
    return CheckReport(root="", problems=problems, stats=stats)


def format_report(report: CheckReport, limit: int = 10) -> str:
    """Human-readable report: what was checked, problems grouped by kind (at most ``limit`` each), a summary."""
    lines = _describe(report.stats)
    by_kind: dict[str, list[Problem]] = collections.defaultdict(list)
    for p in report.problems:
        by_kind[p.kind].append(p)
    for kind, items in by_kind.items():
        lines.append(f"{kind} ({len(items)}): {KINDS.get(kind, '')}")
        lines.extend(f"  {p}" for p in items[:limit])
        if len(items) > limit:
            lines.append(f"  ... and {len(items) - limit} more (all of them with --json)")
    if report.ok:
        lines.append("clean: no problems found")
    else:
        parts = ", ".join(f"{k} {len(v)}" for k, v in by_kind.items())
        lines.append(f"{len(report.problems)} problem(s): {parts}")
    return "\n".join(lines)


def _describe(stats: dict) -> list[str]:
    lines = []
    if "clips" in stats:
        lines.append(f"meta.csv: {stats['clips']} clips, {len(stats['labels'])} labels, devices "
                     f"{' '.join(stats['devices'])}")
    for name, rows in stats.get("tables", {}).items():
        if name != "meta.csv":
            lines.append(f"{name}: {rows} rows")
    if "audio_files" in stats:
        rates = ", ".join(f"{k} Hz ({v})" for k, v in stats.get("sample_rates", {}).items())
        lines.append(f"audio: {stats['audio_ok']} of {stats['audio_files']} files decoded; {rates or 'none read'}; "
                     f"duration {stats.get('duration_s', '?')} s")
    for f in stats.get("files", []):
        pieces = ", ".join(f"{n}×{k}" for k, n in f["pieces_per_segment"].items())
        lines.append(f"{f['file']}: {f['role']}, {f['rows']} rows, {f['segments']} segments ({pieces} pieces), "
                     f"{f['locations']} locations, devices {' '.join(f['devices'])}")
    if stats.get("chain"):
        lines.append("nesting checked: " + " ⊂ ".join(Path(c).name for c in stats["chain"]))
    return lines
