"""``asc data``: check a dataset, fetch / make / check training splits (plus the verbs of ``_data_build``)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging

from asc.cli._common import add_command
from asc.errors import ConfigError


def register(sub) -> None:
    data = add_command(sub, "data", _group_help, "datasets: check, splits, synthetic data, audio cache, report",
                       "asc data check /data/TAU-urban-acoustic-scenes-2022-mobile-development")
    data_sub = data.add_subparsers(dest="data_command", metavar="VERB")
    data.set_defaults(group=data)

    p = add_command(data_sub, "check", _check, "report every problem of a dataset (tables, splits, audio)",
                    "asc data check data/TAU-urban-acoustic-scenes-2022-mobile-development --json > problems.json",
                    description="Report every problem of a dataset in the TAU layout at once, each naming its file "
                                "and line: tables, labels, duplicates, split nesting and whole segments, train/test "
                                "location overlap and (unless --no-audio) each audio file's header and full decode. "
                                "Exit code 0 = clean, 1 = problems found, 2 = not a dataset.")
    p.add_argument("root", help="dataset folder (meta.csv, audio/, evaluation_setup/)")
    p.add_argument("--json", action="store_true", help="print the machine-readable report instead")
    p.add_argument("--no-audio", action="store_true", help="check the tables only (no audio decoding)")
    p.add_argument("--sample-rate", type=int, help="expected sample rate in Hz (default: the majority's)")
    p.add_argument("--duration", type=float, help="expected clip duration in s (default: the majority's)")
    p.add_argument("--limit", type=int, default=10, help="problems listed per kind in the human report (10)")

    p = add_command(data_sub, "download", _download,
                    "download a public dataset (resumable, md5-checked), extract it, check it",
                    "asc data download tau2022-mobile-dev data/",
                    description="Download the archives of a dataset of the catalog (asc/resources/datasets/), "
                                "verify each against its published md5, extract them into DIR in the TAU layout "
                                "and check the result (asc data check for a development set). An interrupted "
                                "download resumes where it stopped when the command is run again. Datasets: "
                                "tau2022-mobile-dev (development set, ~30 GB), tau2024-mobile-eval (2024 "
                                "evaluation set), micirp (66 device impulse responses for DIR). Exit code 0 = "
                                "downloaded and clean, 1 = downloaded but the check found problems, 2 = error.")
    p.add_argument("name", nargs="?", metavar="NAME", help="dataset name (see --list) or a catalog .toml file")
    p.add_argument("dir", nargs="?", metavar="DIR", help="folder to download and extract into")
    p.add_argument("--list", action="store_true", help="list the datasets of the catalog")
    p.add_argument("--base-url", metavar="URL", help="fetch the archives from this mirror instead")
    p.add_argument("--keep-archives", action="store_true", help="keep the zip archives after extraction")
    p.add_argument("--no-check", action="store_true", help="skip the check of the extracted data")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    splits = add_command(data_sub, "splits", _group_help, "training splits: fetch official ones, make, check",
                         "asc data splits fetch /data/TAU-urban-acoustic-scenes-2022-mobile-development")
    splits_sub = splits.add_subparsers(dest="splits_command", metavar="VERB")
    splits.set_defaults(group=splits)

    p = add_command(splits_sub, "fetch", _fetch, "download the official split files into ROOT/splits/ (verified)",
                    "asc data splits fetch /data/TAU-urban-acoustic-scenes-2022-mobile-development")
    p.add_argument("root", help="dataset folder; files go to ROOT/splits/")
    p.add_argument("--manifest", default="dcase2024", help="packaged manifest name (dcase2024) or a .toml path")
    p.add_argument("--base-url", help="fetch from here instead of the manifest's URL (http(s)://, file:// or a folder)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add_command(splits_sub, "make", _make, "build nested, stratified splits from evaluation_setup/fold1_train.csv",
                    "asc data splits make /work/my-dataset --seed 0",
                    description="Write ROOT/splits/split{5,10,25,50,100}.csv (whole segments, stratified by class "
                                "and device, nested, no test location) and test.csv (= fold1_evaluate.csv).")
    p.add_argument("root", help="dataset folder in the TAU layout")
    p.add_argument("--seed", type=int, default=0, help="selection seed (0)")
    p.add_argument("--fractions", type=int, nargs="+", default=[5, 10, 25, 50, 100], metavar="PCT",
                   help="split sizes in percent of the training set (5 10 25 50 100)")
    p.add_argument("--overwrite", action="store_true", help="replace existing split files")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add_command(splits_sub, "check", _check_files, "check split CSVs: nesting, whole segments, locations",
                    "asc data splits check splits/split*.csv splits/test.csv --manifest dcase2024")
    p.add_argument("files", nargs="+", help="split CSV files (test.csv / fold1_evaluate.csv count as test files)")
    p.add_argument("--manifest", help="also compare row counts and checksums with this manifest (e.g. dcase2024)")
    p.add_argument("--json", action="store_true", help="print the machine-readable report instead")
    p.add_argument("--limit", type=int, default=10, help="problems listed per kind in the human report (10)")

    if importlib.util.find_spec("asc.cli._data_build") is not None:
        importlib.import_module("asc.cli._data_build").add_verbs(data_sub)


def _group_help(args: argparse.Namespace) -> int:
    args.group.print_help()
    return 2


def _info_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def _check(args: argparse.Namespace) -> int:
    from asc.data.check import check_dataset_report, format_report

    report = check_dataset_report(args.root, check_audio=not args.no_audio, sample_rate=args.sample_rate,
                                  duration=args.duration)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report, args.limit))
    return 0 if report.ok else 1


def _check_files(args: argparse.Namespace) -> int:
    from asc.data.check import check_split_files, format_report

    report = check_split_files(args.files, manifest=args.manifest)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report, args.limit))
    return 0 if report.ok else 1


def _download(args: argparse.Namespace) -> int:
    from asc.data.datasets import download_dataset, list_datasets, load_spec

    if args.list:
        specs = [load_spec(name) for name in list_datasets()]
        if args.json:
            print(json.dumps([{"name": s.name, "title": s.title, "folder": s.folder, "homepage": s.homepage}
                              for s in specs], indent=2))
        else:
            for s in specs:
                print(f"{s.name:<22} {s.title}  ({s.homepage})")
        return 0
    if not (args.name and args.dir):
        raise ConfigError("asc data download NAME DIR: give a dataset name and a folder (or --list)")
    _info_logging()
    result = download_dataset(args.name, args.dir, base_url=args.base_url, keep_archives=args.keep_archives,
                              check=not args.no_check, progress=not args.json)
    check = result.get("check")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['root']}: {result['dataset']}, {result['archives']} archive(s) verified"
              + (f" (Zenodo record {result['zenodo_record']})" if result["zenodo_record"] else ""))
        if result["license"]:
            print(f"licence: {result['license']}")
        if check:
            print(check["summary"])
    return 0 if check is None or check["ok"] else 1


def _fetch(args: argparse.Namespace) -> int:
    from asc.data.splits import fetch_splits

    _info_logging()
    records = fetch_splits(args.root, manifest=args.manifest, base_url=args.base_url)
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        for r in records:
            name = "test" if r["split"] == "test" else f"split{r['split']}"
            print(f"{name:<8} {r['rows']:>7} rows  {r['status']:<14} {r['file']}")
    return 0


def _make(args: argparse.Namespace) -> int:
    from asc.data.splits import make_splits

    _info_logging()
    made = make_splits(args.root, fractions=args.fractions, seed=args.seed, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(made.to_dict(), indent=2))
        return 0
    total = made.rows["100"] if "100" in made.rows else max(made.rows[k] for k in made.rows if k != "test")
    for name, path in made.paths.items():
        share = "" if name == "test" else f" ({100 * made.rows[name] / total:.1f} %)"
        print(f"{path}: {made.rows[name]} rows{share}, {made.segments[name]} segments")
    if made.dropped_rows:
        print(f"dropped {made.dropped_rows} training rows at {len(made.dropped_locations)} test location(s)")
    print(f"summary: {made.summary_path}")
    return 0
