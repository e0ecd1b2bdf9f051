"""``asc tune run SPACE.toml`` (a worker of a study) and ``asc tune report NAME``."""

from __future__ import annotations

import argparse
import json

from asc.cli._common import add_command, add_device_args, add_overrides, device_overrides

EXAMPLES = """examples:
  asc tune run space.toml --trials 40 --study cpm-kd                  # SQLite runs/tune/cpm-kd/study.db
  asc tune run space.toml --trials 20 --study cpm-kd --storage journal:///nfs/tune/cpm-kd.log   # on each machine
  asc tune run space.toml --trials 20 --study cpm-kd --storage postgresql://user:pw@db/optuna
  asc tune report cpm-kd                                              # table, plots and JSON in runs/tune/cpm-kd/report
packaged example space: cpmobile_kd (`asc tune run cpmobile_kd ...`; copy it from asc/resources/tune/)"""


def register(sub) -> None:
    group = add_command(sub, "tune", _group_help,
                        "hyper-parameter / architecture search under the complexity budget (Optuna)",
                        "asc tune run space.toml --trials 40 --study cpm-kd",
                        description="Search training and architecture settings with Optuna. Candidates over the "
                                    "complexity budget are rejected before training; every trained trial is a run "
                                    "folder runs/tune/<study>/trial_<n>/ that `asc evaluate` and `asc package` "
                                    "accept.")
    group.epilog = EXAMPLES
    group.set_defaults(group=group)
    verbs = group.add_subparsers(dest="tune_command", metavar="VERB")

    p = add_command(verbs, "run", _run, "run trials of a study (one worker; start more with a shared --storage)",
                    "asc tune run cpmobile_kd --trials 40 --study cpm-kd --data ROOT")
    p.add_argument("space", metavar="SPACE.toml",
                   help="search space file (base run, [params.<key>] tables, objectives) or a packaged name: "
                        "cpmobile_kd")
    p.add_argument("--trials", type=int, metavar="N", help="trials this worker runs (default: until --timeout/--total "
                                                          "or Ctrl-C)")
    p.add_argument("--study", required=True, metavar="NAME", help="study name (resumed if it exists)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna RDB URL (postgresql://..., sqlite:///f.db) or journal:///path/file.log shared by "
                        "several workers (default: SQLite RUNS/tune/NAME/study.db, one process)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="trial run folders go to DIR/tune/NAME/ (runs)")
    p.add_argument("--total", type=int, metavar="N", help="stop when the study holds N finished trials (all workers)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="start no trial after this many seconds")
    p.add_argument("--data", metavar="ROOT", help="dataset root on this machine (replaces train.data)")
    p.add_argument("--seed", type=int, help="sampler seed (give each parallel worker its own)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_device_args(p)
    add_overrides(p)

    p = add_command(verbs, "report", _report,
                    "best trials, Pareto front or history plot, parameter importances (+ JSON)",
                    "asc tune report cpm-kd --storage journal:///nfs/tune/cpm-kd.log")
    p.add_argument("study", metavar="NAME", help="study name")
    p.add_argument("--storage", metavar="URL", help="as for `asc tune run` (default: RUNS/tune/NAME/study.db)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="runs folder of the study (runs)")
    p.add_argument("--out", metavar="DIR", help="report folder (default RUNS/tune/NAME/report)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="best trials listed (single objective; 10)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _run(args: argparse.Namespace) -> int:
    from asc.tune import format_rows, load_space, run_study

    space = load_space(args.space)
    if space.pruner.name != "none" and not space.pruning and not args.json:
        print("note: pruning is off: Optuna prunes single-objective studies only")
    summary = run_study(space, args.study, n_trials=args.trials, storage=args.storage, runs_dir=args.runs_dir,
                        timeout=args.timeout, total=args.total, data=args.data,
                        overrides=args.overrides + device_overrides(args),
                        seed=args.seed, progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    states = ", ".join(f"{n} {s.lower()}" for s, n in summary["states"].items())
    print(f"study {summary['study']} ({summary['storage']}): ran trials {summary['trials_run']}; all trials: {states}")
    if summary["best"]:
        print(("best trial:" if len(space.objectives) == 1 else "Pareto front:"))
        print(format_rows(summary["best"][:10], space.objectives))
    print(f"report: asc tune report {summary['study']}" + (f" --storage {args.storage}" if args.storage else "")
          + (f" --runs-dir {args.runs_dir}" if args.runs_dir != "runs" else ""))
    return 0


def _report(args: argparse.Namespace) -> int:
    from asc.tune import format_rows, study_report

    report = study_report(args.study, storage=args.storage, runs_dir=args.runs_dir, out_dir=args.out, top=args.top)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    objectives = report["objectives"]
    states = ", ".join(f"{n} {s.lower()}" for s, n in report["states"].items())
    aims = ", ".join(f"{o} ({d})" for o, d in zip(objectives, report["directions"]))
    print(f"study {report['study']}: objectives {aims}; budget {report['budget']}, parameters counted at "
          f"{report['precision']}")
    print(f"trials: {states}; {report['n_over_budget']} over budget (never trained)\n")
    title = "best trials" if len(objectives) == 1 else "Pareto front (within budget)"
    if report["best"]:
        print(f"{title}:\n{format_rows(report['best'], objectives)}\n")
        for row in report["best"][:3]:
            print(f"  trial {row['number']}: {row['run_dir'] or '-'}")
    else:
        print(f"{title}: none yet (no completed trial within budget)")
    imp = report["importances"]
    for name, values in imp["by_objective"].items():
        print(f"\nparameter importances for {name} (fANOVA, {imp['n_trials']} trials):")
        for key, value in values.items():
            print(f"  {key:<40} {value:.3f}")
    for name, reason in imp["skipped"].items():
        print(f"\nparameter importances for {name}: skipped ({reason})")
    print("\nwrote " + ", ".join(report["plots"].values()))
    return 0


def _group_help(args: argparse.Namespace) -> int:
    args.group.print_help()
    return 2
