"""``asc train``, ``asc distill``, ``asc train-teacher``, ``asc teachers ensemble``, ``asc finetune-devices``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from asc.cli._common import BATCH_HELP, add_command, add_device_args, add_overrides, device_overrides
from asc.errors import ConfigError


def register(sub) -> None:
    p = add_command(sub, "train", _train, "train a model without a teacher (default: the DCASE24 baseline recipe)",
                    "asc train --model baseline24 --split 25 --data data/TAU-urban-acoustic-scenes-2022-mobile-"
                    "development")
    _add_train_args(p, default_model="baseline24")

    p = add_command(sub, "distill", _distill,
                    "train a student with knowledge distillation from teachers (default: the baseline24_kd recipe)",
                    "asc distill --split 25 --teachers runs/teacher-1 runs/teacher-2 --data ROOT")
    _add_train_args(p, default_model="baseline24")
    p.add_argument("--teachers", nargs="+", metavar="SOURCE",
                   help="teacher run folders or bundles, run online on the student's augmented batches and averaged "
                        "(consistent teaching), or one logit store (.logits) from `asc teachers ensemble`")

    p = add_command(sub, "train-teacher", _train_teacher, "train a teacher (default split 100, the model's recipe)",
                    "asc train-teacher --model cpresnet --split 100 --data ROOT --dirs /data/micirp")
    _add_train_args(p, default_model="cpresnet")

    teachers = add_command(sub, "teachers", _group_help, "teacher ensembles: logits for distillation",
                           "asc teachers ensemble runs/passt-1 runs/cpresnet-1 --out teachers/ens.logits --data ROOT")
    teachers.set_defaults(group=teachers)
    t_sub = teachers.add_subparsers(dest="teachers_command", metavar="VERB")
    p = add_command(t_sub, "ensemble", _ensemble,
                    "average the teachers' logits on all training clips; store with dataset fingerprint",
                    "asc teachers ensemble runs/passt-1 runs/cpresnet-1 --out teachers/ens.logits --data ROOT")
    p.add_argument("runs", nargs="+", metavar="RUN", help="teacher run folders or bundle .pt files")
    p.add_argument("--out", required=True, metavar="FILE", help="store to write (e.g. teachers/ensemble.logits)")
    p.add_argument("--data", required=True, metavar="ROOT", help="dataset root in the TAU layout")
    p.add_argument("--split", default="100", help="clips to cover (default 100: every training clip)")
    p.add_argument("--batch-size", type=int, metavar="N", help=BATCH_HELP)
    p.add_argument("--cache-dir", metavar="DIR", help="audio cache folder (default $ASC_CACHE_DIR or ~/.cache/asc)")
    p.add_argument("--checkpoint-seconds", type=float, default=60.0, metavar="S",
                   help="write each teacher's logits so far every S seconds (default 60); a rerun after an "
                        "interruption continues from there. Several GPUs: torchrun --nproc_per_node N -m asc ...")
    p.add_argument("--json", action="store_true", help="print the provenance as JSON")
    add_device_args(p)

    p = add_command(sub, "finetune-devices", _finetune_devices,
                    "DCASE25: fine-tune a copy of a general model per training device; multi-device bundle",
                    "asc finetune-devices runs/baseline24-split25 --epochs 50")
    p.add_argument("run", help="run folder of the general model")
    p.add_argument("--epochs", type=int, metavar="N", help="epochs per device (recipe: 50)")
    p.add_argument("--devices", nargs="+", metavar="DEV", help="devices to fine-tune (default: all in the train split)")
    p.add_argument("--out", metavar="DIR", help="output run folder (default: RUN-devices beside RUN)")
    p.add_argument("--resume", action="store_true", help="continue: skip finished devices, resume interrupted ones")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_device_args(p)
    add_overrides(p)


def _add_train_args(p: argparse.ArgumentParser, default_model: str) -> None:
    p.add_argument("--data", metavar="ROOT", help="dataset root in the TAU layout")
    p.add_argument("--split", help="training split: 5, 10, 25, 50, 100")
    p.add_argument("--model", help=f"model name (default {default_model}; see `asc models list`)")
    p.add_argument("--recipe", metavar="NAME|FILE",
                   help="recipe name (`asc recipes list`) or a recipe TOML file (default: the model's own)")
    p.add_argument("--config", metavar="FILE", help="TOML file of TrainConfig values (applied after the recipe)")
    p.add_argument("--epochs", type=int, metavar="N", help="number of epochs")
    p.add_argument("--seed", type=int, metavar="N", help="random seed (default 0)")
    p.add_argument("--val-split", type=float, metavar="FRACTION",
                   help="hold out this share of the training split's recording locations as a validation set and "
                        "keep the best validation epoch (default: no validation, the model is the last epoch; the "
                        "dev-test split is never used to select)")
    p.add_argument("--dirs", metavar="FOLDER", help="device impulse responses for DIR augmentation")
    p.add_argument("--name", help="run name (default: <model>-split<split>-<time>)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="where run folders go (default runs/)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run --name from its last epoch")
    p.add_argument("--allow-leak", action="store_true", default=None,
                   help="train even if the training split shares recording locations with the test split (an "
                        "error otherwise: the dev-test score would be inflated)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    add_device_args(p)
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the network (opt-in; see benchmarks/device_throughput.py)")
    add_overrides(p)
    p.set_defaults(default_model=default_model)


def _train(args: argparse.Namespace) -> int:
    return _run_training(args, suffix="", split_default=None)


def _distill(args: argparse.Namespace) -> int:
    from asc.train.recipes import DISTILL_RECIPE

    args.default_recipe = DISTILL_RECIPE
    if not args.resume and not args.teachers:
        raise ConfigError("distill: --teachers is required: teacher run folders (online) or a logit store from "
                          "`asc teachers ensemble`")
    return _run_training(args, suffix="-kd", split_default=None,
                         extra={"kd": teacher_settings(args.teachers)} if args.teachers else None)


def teacher_settings(sources: list[str]) -> dict:
    """``kd`` settings for ``--teachers``: one ``.logits`` store, or teacher runs / bundles taught online."""
    stores = [s for s in sources if s.endswith(".logits")]
    if stores and len(sources) > 1:
        raise ConfigError(f"--teachers: a logit store ({stores[0]}) already holds its ensemble; pass it alone, or "
                          f"pass teacher run folders to teach online")
    return {"teacher_logits": sources[0], "teachers": []} if stores else {"teacher_logits": "", "teachers": sources}


def _train_teacher(args: argparse.Namespace) -> int:
    return _run_training(args, suffix="", split_default="100")


def _run_training(args: argparse.Namespace, suffix: str, split_default: str | None,
                  extra: dict | None = None) -> int:
    from asc.runs import RunDir
    from asc.train.config import load_train_config
    from asc.train.recipes import build_config, default_recipe
    from asc.train.trainer import fit

    runs_dir = Path(args.runs_dir)
    if args.resume:
        if not args.name:
            raise ConfigError("--resume needs --name NAME of the run to continue")
        run = RunDir(runs_dir / args.name)
        if not run.has_config():
            raise ConfigError(f"{run}: no run to resume (config.toml missing)")
        overrides = [*args.overrides, *(["progress=false"] if args.quiet else []),
                     *(["allow_leak=true"] if args.allow_leak else []), *device_overrides(args),
                     *(["compile=true"] if args.compile else [])]
        result = fit(load_train_config(run.config_path, overrides), run.path, resume=True)
        return _report(result, run.path, args.json)

    model = args.model or args.default_model
    values = {"data": args.data, "split": args.split, "model": args.model, "epochs": args.epochs, "seed": args.seed,
              "allow_leak": args.allow_leak,
              "progress": False if args.quiet else None,
              "validation": {"fraction": args.val_split, "select": "best"} if args.val_split else None,
              "augment": {"dir_folder": args.dirs} if args.dirs else None, "device": args.device,
              "autocast": args.autocast, "compile": args.compile, **(extra or {})}
    defaults = {"model": args.default_model, **({"split": split_default} if split_default else {})}
    recipe = args.recipe or (default_recipe(args.model) if args.model else None) or \
        getattr(args, "default_recipe", None) or default_recipe(model)
    cfg = build_config(recipe, args.config, args.overrides, defaults=defaults,
                       **values)
    name = args.name or new_run_name(runs_dir, f"{cfg.model}{suffix}-split{cfg.split}-"
                                               f"{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = runs_dir / name
    result = fit(dataclasses.replace(cfg, name=name), run_dir)
    return _report(result, run_dir, args.json)


def new_run_name(runs_dir: Path, base: str) -> str:
    """``base``, or ``base-2``, ``base-3`` …: the first whose folder this process creates (two runs started in the
    same second never share a folder)."""
    from asc.fileio import check_writable_folder

    check_writable_folder(runs_dir, "runs folder")
    runs_dir.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        name = base if i == 1 else f"{base}-{i}"
        try:
            (runs_dir / name).mkdir()
            return name
        except FileExistsError:
            continue
    raise ConfigError(f"{runs_dir}: {base} and 999 numbered variants exist; pass --name")


def _report(result: dict, run_dir: Path, as_json: bool) -> int:
    if int(os.environ.get("RANK", "0")) != 0:  # other processes of a torchrun stay quiet
        return 0
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    from asc.metrics import format_report

    print(f"{run_dir}: {result['model_name']} on split {result['split']}\n")
    print(format_report(result))
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from asc.train.ensemble import ensemble_teachers

    prov = ensemble_teachers(args.runs, args.data, args.out, split=args.split, batch_size=args.batch_size,
                             cache_dir=args.cache_dir, progress=not args.json, device=args.device or "auto",
                             autocast=args.autocast or "auto", checkpoint_seconds=args.checkpoint_seconds)
    if int(os.environ.get("RANK", "0")) != 0:  # other processes of a torchrun stay quiet
        return 0
    if args.json:
        print(json.dumps(prov, indent=2))
        return 0
    print(f"{'teacher':<50} {'macro acc':>9} {'acc':>7} {'log loss':>8}")
    for t in prov["teachers"]:
        print(f"{t['run'][-50:]:<50} {100 * t['macro_accuracy']:8.2f}% {100 * t['accuracy']:6.2f}% "
              f"{t['log_loss']:8.3f}")
    e = prov["ensemble"]
    print(f"{'ensemble (mean of logits)':<50} {100 * e['macro_accuracy']:8.2f}% {100 * e['accuracy']:6.2f}% "
          f"{e['log_loss']:8.3f}")
    print(f"wrote {args.out} (scored on split {prov['report_split']}; logits of split {prov['split']})")
    return 0


def _finetune_devices(args: argparse.Namespace) -> int:
    from asc.train.devices import finetune_devices

    summary = finetune_devices(args.run, out_dir=args.out, epochs=args.epochs, devices=args.devices,
                               overrides=args.overrides + device_overrides(args), resume=args.resume,
                               progress=not args.json)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{'device':<8} {'n':>5} {'general':>8} {'specific':>9}")
    for device, row in summary["per_device"].items():
        gen, spec = row["general"], row["specific"]
        print(f"{device:<8} {row['n']:>5} {_pct(gen):>8} {_pct(spec):>9}")
    g, s = summary["general"], summary["device_specific"]
    print(f"macro accuracy: general {100 * g['macro_accuracy']:.2f} %, device-specific "
          f"{100 * s['macro_accuracy']:.2f} %")
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _group_help(args: argparse.Namespace) -> int:
    args.group.print_help()
    return 2
