"""Verbs: predict, package, validate-submission."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asc.cli._common import BATCH_HELP, add_command, add_device_args, add_overrides
from asc.errors import AscError


def _predict(args) -> int:
    from asc.submission.predict import predict_eval_set

    table = predict_eval_set(args.model, args.eval_set, args.out, batch_size=args.batch_size,
                             num_workers=args.num_workers, device=args.device or "auto",
                             autocast=args.autocast or "auto", progress=not args.quiet)
    print(f"wrote {args.out}: {len(table)} rows, classes {', '.join(table.columns[2:])}")
    return 0


def _package(args) -> int:
    from asc.submission.package import build_package, load_package_config, summary_json

    cfg = load_package_config(args.config, args.overrides + [f'{k}="{v}"' for k in ("device", "autocast")
                                                             if (v := getattr(args, k))])
    if args.format == "inference-2025":
        from asc.fileio import check_writable_folder
        from asc.submission.inference2025 import build_inference_package

        folder = build_inference_package(cfg, check_writable_folder(args.out or "submissions/build"))
        print(f"wrote {folder} (install with: pip install {folder}); complexity per device: "
              f"{folder / folder.name / 'complexity.json'}")
        return 0
    if args.out:
        cfg.out = args.out
    path = build_package(cfg, warn=lambda w: print(w, file=sys.stderr))
    print(summary_json(path) if args.json else f"wrote {path} (validated: no errors)")
    return 0


def _validate(args) -> int:
    from asc.complexity import load_budget
    from asc.submission import rules as R
    from asc.submission.package import rules_for
    from asc.submission.validate import errors, validate_zip

    if not Path(args.zip).is_file():
        raise AscError(f"{args.zip}: submission zip not found")
    labels = args.labels.split(",") if args.labels else None
    rules = rules_for(args.eval_set, labels) if args.eval_set else R.SubmissionRules(
        eval_files=R.official_2024_eval_files(), labels=labels or list(R.TAU_SCENES))
    problems = validate_zip(args.zip, rules, load_budget(args.edition))
    n_errors = len(errors(problems))
    if args.json:
        print(json.dumps({"zip": args.zip, "valid": not n_errors, "errors": n_errors,
                          "warnings": len(problems) - n_errors, "problems": [vars(p) for p in problems]}, indent=2))
    else:
        for p in problems:
            print(p, file=sys.stderr)
        verdict = "valid" if not n_errors else f"INVALID: {n_errors} error(s)"
        print(f"{args.zip}: {verdict}" + (f", {len(problems) - n_errors} warning(s)" if len(problems) > n_errors
                                         else ""))
    return 0 if not n_errors else 1


def register(sub) -> None:
    p = add_command(sub, "predict", _predict, "predict an evaluation set in the official output format",
                    "asc predict runs/cpmobile_split25 --eval-set data/eval --out cpmobile.output.split_25.csv")
    p.add_argument("model", help="run folder, bundle .pt or .onnx file")
    p.add_argument("--eval-set", required=True, help="evaluation-set folder (evaluation_setup/fold1_test.csv)")
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--batch-size", type=int, metavar="N", help=BATCH_HELP)
    p.add_argument("--num-workers", type=int, default=0, metavar="N", help="loader processes (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_args(p)

    p = add_command(sub, "package", _package,
                    "build the DCASE 2024 submission zip or the DCASE 2025 inference package (refused with exit 1 "
                    "when a system is over budget or the zip breaks an official rule)",
                    "asc package submissions/example.toml")
    p.add_argument("config", help="package TOML (see submissions/example.toml)")
    p.add_argument("--format", choices=["zip", "inference-2025"], default="zip",
                   help="zip: the DCASE 2024 zip; inference-2025: a pip-installable DCASE 2025 inference package")
    p.add_argument("--out", help="zip path (default from the TOML); for inference-2025 the output folder "
                                 "(default submissions/build)")
    p.add_argument("--json", action="store_true")
    add_device_args(p)
    add_overrides(p)

    p = add_command(sub, "validate-submission", _validate,
                    "check a submission zip: errors (official rules; exit 1) and warnings (sanity checks)",
                    "asc validate-submission submissions/Doe_TUW_task1.zip --eval-set data/eval")
    p.add_argument("zip")
    p.add_argument("--eval-set", help="evaluation-set folder (default: the official 2024 list 0…135729.wav)")
    p.add_argument("--labels", help="comma-separated class list (default: the 10 TAU scenes)")
    p.add_argument("--edition", default="dcase2024", help="budget the reported complexity is compared with "
                                                          "(warnings; default dcase2024)")
    p.add_argument("--json", action="store_true")
