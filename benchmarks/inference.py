"""Inference speed of the students: PyTorch eager fp32 vs ONNX Runtime fp32 vs ONNX Runtime INT8 (QDQ), CPU.

    python benchmarks/inference.py [--models baseline24 cpmobile] [--batch-sizes 1 256] [--min-seconds 3]

Network only (log-mel input; the front end is the same for all three and excluded). Random weights (speed does not
depend on them); INT8 is calibrated on the front end's output of random noise. Prints a table of latency per batch
(median and 90th percentile) and clips/s (batch / median latency), and writes JSON (default
benchmarks/results/inference.json). The machine load is recorded beside the figures: on a shared machine, compare
engines within one run only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asc.config import to_dict
from asc.export import export_model
from asc.fileio import write_json
from asc.frontend import build_frontend, input_shape
from asc.inference import ort_session
from asc.models.registry import Bundle, build_model, get_spec, make_config

LABELS = [f"class{i}" for i in range(10)]


def _bundle(name: str) -> Bundle:
    torch.manual_seed(0)
    spec = get_spec(name)
    config = make_config(name, n_classes=len(LABELS))
    frontend = build_frontend(spec.frontend, spec.frontend_config).eval()
    return Bundle(model=build_model(name, n_classes=len(LABELS)).eval(), frontend=frontend, model_name=name,
                  model_config=to_dict(config), frontend_name=spec.frontend, frontend_config=dict(spec.frontend_config),
                  labels=LABELS)


def _time(fn, min_seconds: float, min_runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def _row(model: str, engine: str, batch: int, times: list[float]) -> dict:
    median = statistics.median(times)
    return {"model": model, "engine": engine, "batch": batch, "runs": len(times),
            "latency_ms_median": 1000 * median, "latency_ms_p90": 1000 * float(np.percentile(times, 90)),
            "clips_per_s": batch / median}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["baseline24", "cpmobile"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 256])
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time each case at least this long")
    parser.add_argument("--min-runs", type=int, default=5, help="and at least this many batches")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads for PyTorch and ONNX Runtime (default: PyTorch's)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "inference.json"))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    rows, files = [], {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="asc-bench-") as tmp:
        for name in args.models:
            bundle = _bundle(name)
            shape = input_shape(bundle.frontend)
            noise = np.random.default_rng(0).standard_normal((64, bundle.frontend.sample_rate)).astype(np.float32)
            sessions = {}
            for precision in ("fp32", "int8"):
                path = Path(tmp) / f"{name}.{precision}.onnx"
                report = export_model(bundle, path, precision=precision, calibration=noise, n_calibration=64)
                files[f"{name}.{precision}"] = {"bytes": report.size_bytes,
                                                "checks": [dataclasses.asdict(c) for c in report.checks]}
                sessions[precision] = ort_session(path, threads=args.threads)
            for batch in args.batch_sizes:
                x = torch.randn(batch, *shape[1:])
                x_np = x.numpy()
                with torch.inference_mode():
                    cases = {"torch eager fp32": lambda: bundle.model(x)}
                    for precision, session in sessions.items():
                        input_name = session.get_inputs()[0].name
                        cases[f"onnxruntime {precision}"] = (
                            lambda s=session, n=input_name: s.run(None, {n: x_np}))
                    for engine, fn in cases.items():
                        row = _row(name, engine, batch, _time(fn, args.min_seconds, args.min_runs))
                        rows.append(row)
                        print(f"  {name:<11} {engine:<18} batch {batch:>4}: {row['clips_per_s']:10,.0f} clips/s",
                              file=sys.stderr)
    load_after = os.getloadavg()

    print(f"\n{'model':<11} {'engine':<18} {'batch':>5} {'median ms':>10} {'p90 ms':>9} {'clips/s':>10} "
          f"{'vs torch':>8}")
    for row in rows:
        base = next(r for r in rows if r["model"] == row["model"] and r["batch"] == row["batch"]
                    and r["engine"] == "torch eager fp32")
        print(f"{row['model']:<11} {row['engine']:<18} {row['batch']:>5} {row['latency_ms_median']:>10.2f} "
              f"{row['latency_ms_p90']:>9.2f} {row['clips_per_s']:>10,.0f} "
              f"{row['clips_per_s'] / base['clips_per_s']:>7.1f}x")
    for key, info in files.items():
        print(f"{key}: {info['bytes']:,} bytes")
    print(f"threads {args.threads}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          f"({os.cpu_count()} CPUs)")
    import onnxruntime

    result = {"rows": rows, "files": files, "threads": args.threads, "cpus": os.cpu_count(),
              "load_average_before": load_before, "load_average_after": load_after,
              "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
              "note": "network only (log-mel input), random weights; INT8 = ORT static QDQ, u8 activations, "
                      "s8 per-channel weights"}
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
