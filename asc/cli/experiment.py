"""``asc experiment``: recipes over splits × seeds, teachers per split, the DCASE-style results table."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from asc.cli._common import add_command, add_device_args


def register(sub) -> None:
    p = add_command(sub, "experiment", _experiment,
                    "compare recipes over training splits and seeds (teachers trained per split); results table",
                    "asc experiment cpmobile23_kd baseline24 --data ROOT --dirs /data/micirp --splits 25 100 "
                    "--seeds 3 --name kd-vs-baseline")
    p.add_argument("recipes", nargs="*", metavar="RECIPE",
                   help="recipes to compare (names or TOML files); a recipe that sets [kd] is taught by the split's "
                        "teachers, the others train without one")
    p.add_argument("--config", metavar="FILE", help="experiment TOML (arms with their own overrides, teachers, ...)")
    p.add_argument("--data", metavar="ROOT", help="dataset root in the TAU layout")
    p.add_argument("--dirs", metavar="FOLDER", help="device impulse responses for recipes that use DIR")
    p.add_argument("--splits", nargs="+", metavar="S", help="training splits (default 5 10 25 50 100)")
    p.add_argument("--seeds", type=int, metavar="N", help="seeds per recipe and split (default 3)")
    p.add_argument("--teach", choices=["online", "stored"], default="online",
                   help="how taught recipes use the teachers: online on every augmented batch (default) or their "
                        "stored logits")
    p.add_argument("--teacher-recipe", metavar="RECIPE", help="teacher recipe (default cpresnet_teacher)")
    p.add_argument("--teacher-seeds", type=int, metavar="N", help="teachers per split, averaged (default 1)")
    p.add_argument("--teacher-split", metavar="S",
                   help="train one teacher set on this split for every student split (default: each split's own)")
    p.add_argument("--no-int8", action="store_true", help="skip the INT8 ONNX export and its scores")
    p.add_argument("--name", help="experiment name (default experiment)")
    p.add_argument("--out", metavar="DIR", help="output folder (default experiments/<name>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the results table as JSON")
    add_device_args(p)
    p.add_argument("-o", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training config value in every run, e.g. -o epochs=60 (repeatable)")


def _experiment(args: argparse.Namespace) -> int:
    from asc.experiment import arm_for_recipe, load_experiment, run_experiment

    cfg = load_experiment(args.config)
    values = {"data": args.data, "dirs": args.dirs, "splits": args.splits, "seeds": args.seeds, "name": args.name,
              "device": args.device, "autocast": args.autocast}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in values.items() if v is not None})
    if args.recipes:
        cfg.arms = [arm_for_recipe(r, args.teach) for r in args.recipes]
    teacher = {"recipe": args.teacher_recipe, "seeds": args.teacher_seeds, "split": args.teacher_split}
    cfg.teacher = dataclasses.replace(cfg.teacher, **{k: v for k, v in teacher.items() if v is not None})
    cfg.overrides = [*cfg.overrides, *args.overrides]
    cfg.int8 = cfg.int8 and not args.no_int8
    cfg.progress = cfg.progress and not (args.quiet or args.json)
    out = Path(args.out) if args.out else Path("experiments") / cfg.name
    log = (lambda line: None) if args.json else print
    results = run_experiment(cfg, out, log=log)
    if args.json:
        print(json.dumps(results["table"], indent=2))
    else:
        print(f"wrote {out / 'results.md'}, {out / 'results.json'} and {out / 'accuracy_vs_split.png'}")
    return 0
