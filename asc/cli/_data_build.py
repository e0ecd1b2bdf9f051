"""``asc data synth | cache | report``: added to the ``asc data`` group by :mod:`asc.cli.data`."""

from __future__ import annotations

import argparse
import json

from asc.cli._common import add_command


def add_verbs(data_sub) -> None:
    """Register the synth, cache and report verbs under ``asc data``."""
    from asc.data.synth import PRESETS

    p = add_command(data_sub, "synth", _synth, "write a synthetic dataset in the TAU layout (+ an evaluation set)",
                    "asc data synth /tmp/synth --preset small --seed 0",
                    description="Write OUT/dev (TAU layout: meta.csv, audio/, evaluation_setup/, splits/) and "
                                "OUT/eval (audio/<int>.wav, evaluation_setup/fold1_test.csv). 10 scenes, devices "
                                "a, b, c, s1-s6 (s4-s6 only in test), 44.1 kHz 16-bit WAV; same seed = same bytes.")
    p.add_argument("out", help="output folder")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small", help="size (small: ~420 clips)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT/dev and OUT/eval if they exist")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add_command(data_sub, "cache", _cache, "decode + resample a dataset once into the audio cache",
                    "asc data cache /data/TAU-urban-acoustic-scenes-2022-mobile-development --eval-set /data/eval",
                    description="Build or refresh the memory-mapped audio cache of every clip in ROOT/meta.csv "
                                "(only new or changed files are decoded) and print where it is. The cache lives in "
                                "$ASC_CACHE_DIR or ~/.cache/asc.")
    p.add_argument("root", help="dataset folder in the TAU layout")
    p.add_argument("--eval-set", help="also cache this evaluation set folder")
    p.add_argument("--sample-rate", type=int, default=32000, help="working sample rate in Hz (32000)")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="stored sample type")
    p.add_argument("--cache-dir", help="cache folder (default $ASC_CACHE_DIR or ~/.cache/asc)")
    p.add_argument("--workers", type=int, help="decoding processes (at most 2; default: 2 for large builds)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add_command(data_sub, "report", _report, "clips per split × class × device, audio formats and durations",
                    "asc data report data/TAU-urban-acoustic-scenes-2022-mobile-development --out reports/tau22",
                    description="Count clips per split, class and device, segments and locations, and read every "
                                "audio header (sample rates, durations, channels). --out writes data_report.json "
                                "and data_report.png (bars per class stacked by device).")
    p.add_argument("root", help="dataset folder in the TAU layout")
    p.add_argument("--json", action="store_true", help="print the machine-readable report instead")
    p.add_argument("--no-audio", action="store_true", help="skip reading the audio headers")
    p.add_argument("--out", help="folder for data_report.json and data_report.png")


def _synth(args: argparse.Namespace) -> int:
    from asc.data.synth import SynthConfig, make_synthetic_dataset

    paths = make_synthetic_dataset(args.out, SynthConfig.preset(args.preset, seed=args.seed),
                                   overwrite=args.overwrite, progress=not args.json)
    if args.json:
        print(json.dumps({"dev": str(paths.dev), "eval": str(paths.eval)}, indent=2))
    else:
        print(f"development set: {paths.dev}\nevaluation set:  {paths.eval}")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from asc.data.cache import load_cache
    from asc.data.layout import open_eval_set
    from asc.data.validate import open_dataset

    layout = open_dataset(args.root)
    targets = [(layout.root, layout.meta["filename"].tolist())]
    if args.eval_set:
        ev = open_eval_set(args.eval_set)
        targets.append((ev.root, ev.files["filename"].tolist()))
    infos = []
    for root, names in targets:
        cache = load_cache(root, names, args.sample_rate, args.cache_dir, progress=not args.json, dtype=args.dtype,
                           workers=args.workers)
        infos.append(cache.info())
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for info in infos:
        b = info["last_build"]
        print(f"{info['root']}: {info['files']} clips × {info['n_samples']} samples @ {info['sample_rate']} Hz "
              f"({info['dtype']}, {info['bytes'] / 2**20:.1f} MiB)\n  cache: {info['path']}\n"
              f"  this run: {b['decoded']} decoded, {b['reused']} reused, {b['removed']} removed"
              f"{', compacted' if b['compacted'] else ''} in {b['seconds']:.1f} s")
    return 0


def _report(args: argparse.Namespace) -> int:
    from asc.data.report import dataset_report, format_report, write_report

    report = dataset_report(args.root, audio=not args.no_audio, progress=not args.json)
    written = write_report(report, args.out) if args.out else []
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        for path in written:
            print(f"wrote {path}")
    return 0
