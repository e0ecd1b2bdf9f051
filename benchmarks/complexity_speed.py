"""Seconds to check a student against the DCASE 2024 budget: build from the registry, front-end input shape, official
torchinfo count, independent hook count, BN-folded figure and budget check (what ``asc check-complexity`` does after
its imports). Target: < 3 s per model.

The first check of each model runs in a fresh process (``asc check-complexity MODEL --json``, interpreter start and
imports included) and in-process (cold: first registry and front-end use); then the in-process median of a few
repeats is reported.

    python benchmarks/complexity_speed.py
    python benchmarks/complexity_speed.py --models baseline24 cpmobile cpresnet --repeats 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

import torch

TARGET_S = 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["baseline24", "cpmobile"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the timings as JSON")
    args = parser.parse_args()

    from asc.complexity import check_source

    rows = []
    for name in args.models:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "asc", "check-complexity", name, "--json"],
                              capture_output=True, text=True)
        cli_s = time.perf_counter() - start
        if proc.returncode not in (0, 1):
            print(proc.stderr, file=sys.stderr)
            return 2
        start = time.perf_counter()
        result = check_source(name)
        cold_s = time.perf_counter() - start
        warm = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            check_source(name)
            warm.append(time.perf_counter() - start)
        report = result.models[0].report
        rows.append({"model": name, "params": report.params, "macs": report.macs,
                     "within_budget": result.within_budget, "cli_s": cli_s, "cold_s": cold_s,
                     "warm_median_s": statistics.median(warm), "meets_target": statistics.median(warm) < TARGET_S})
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "target_s": TARGET_S, "rows": rows}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"complexity check speed (torch {info['torch']}, {info['threads']} threads; target < {TARGET_S:.0f} s)")
    print(f"{'model':<12} {'params':>9} {'MACs':>12}  {'CLI (fresh process)':>20} {'in-process cold':>16} "
          f"{'warm median':>12}  target")
    for r in rows:
        print(f"{r['model']:<12} {r['params']:>9,} {r['macs']:>12,}  {r['cli_s']:>19.2f}s {r['cold_s']:>15.2f}s "
              f"{r['warm_median_s']:>11.2f}s  {'met' if r['meets_target'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
