"""``asc export`` (ONNX fp32 / fp16 / INT8, checked against PyTorch) and ``asc qat`` (quantization-aware training)."""

from __future__ import annotations

import argparse
import json

from asc.cli._common import add_command, add_device_args, add_overrides, device_overrides

INT8_NOTE = ("INT8: one byte per parameter, so a student of up to 128,000 parameters fits the DCASE 2024/2025 "
             "parameter-memory limit (128,000 bytes) only in INT8 (fp16 allows 64,000)")


def register(sub) -> None:
    p = add_command(sub, "export", _export,
                    "write a trained model as one ONNX file (fp32, fp16 or static INT8), checked against PyTorch",
                    "asc export runs/cpmobile-kd-split25 --precision int8 --data ROOT")
    p.add_argument("model", help="run folder or model bundle .pt")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32", help="(default fp32)")
    p.add_argument("--out", metavar="FILE",
                   help="ONNX file (default RUN/export/model.<precision>.onnx, or <stem>.<precision>.onnx)")
    p.add_argument("--data", metavar="ROOT",
                   help="dataset root (TAU layout): INT8 calibration clips and real clips for the check")
    p.add_argument("--calibration-split", default="100", metavar="SPLIT",
                   help="split whose clips calibrate INT8 (default 100)")
    p.add_argument("--n-calibration", type=int, default=256, metavar="N", help="calibration clips (default 256)")
    p.add_argument("--calibration-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="activation range estimation (default minmax)")
    p.add_argument("--check-split", default="test", metavar="SPLIT",
                   help="split whose clips check ONNX Runtime against PyTorch (default test)")
    p.add_argument("--n-check", type=int, default=256, metavar="N",
                   help="real clips in the check (default 256; more than the split has = all of it)")
    p.add_argument("--with-frontend", action="store_true",
                   help="also write <out>.e2e.onnx taking 32 kHz waveforms (front end included, in fp32)")
    p.add_argument("--cache-dir", metavar="DIR", help="audio cache folder (default $ASC_CACHE_DIR or ~/.cache/asc)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_device_args(p, autocast=False)

    p = add_command(sub, "qat", _qat,
                    "quantization-aware fine-tuning of a trained run (fake INT8), then INT8 ONNX export",
                    "asc qat runs/cpmobile-kd-split25 --epochs 10")
    p.add_argument("run", help="run folder of the trained float model")
    p.add_argument("--epochs", type=int, default=10, metavar="N", help="QAT epochs (default 10)")
    p.add_argument("--lr", type=float, metavar="LR", help="learning rate (default: the run's / 10)")
    p.add_argument("--freeze-bn-epochs", type=int, metavar="N",
                   help="last N epochs with BatchNorm statistics frozen (default half of --epochs)")
    p.add_argument("--freeze-observer-epochs", type=int, metavar="N",
                   help="last N epochs with activation ranges frozen (default a third of --epochs)")
    p.add_argument("--data", metavar="ROOT", help="dataset root (default: the run's)")
    p.add_argument("--out", metavar="DIR", help="output run folder (default RUN-qat beside RUN)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted QAT run")
    p.add_argument("--no-export", action="store_true", help="skip the INT8 ONNX export at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_device_args(p)
    add_overrides(p)


def _export(args: argparse.Namespace) -> int:
    from asc.complexity import count_onnx
    from asc.export import export_model
    from asc.runs import default_export_path, export_report_path

    out = args.out or default_export_path(args.model, args.precision)
    report = export_model(args.model, out, precision=args.precision, n_calibration=args.n_calibration,
                          calibration_method=args.calibration_method, calibration_split=args.calibration_split,
                          with_frontend=args.with_frontend, data_root=args.data, check_split=args.check_split,
                          n_check=args.n_check, cache_dir=args.cache_dir, device=args.device or "auto")
    complexity = count_onnx(report.path).to_dict()
    if args.json:
        print(json.dumps({**report.to_dict(), "complexity": complexity}, indent=2, default=str))
        return 0 if report.passed else 1
    print(format_report(report))
    print(f"complexity    {complexity['params']:,} parameters stored in {complexity['stored_bytes']:,} bytes "
          f"({', '.join(f'{n:,} {d}' for d, n in complexity['stored_dtypes'].items())}), "
          f"{complexity['macs']:,} MACs (BN folded)")
    if report.precision == "int8":
        print(INT8_NOTE)
    print(f"wrote {report.path}{' and ' + str(report.frontend_path) if report.frontend_path else ''} "
          f"(report {export_report_path(report.path)})")
    if not report.passed:
        print("WARNING: a check did not pass (see above); inspect before deploying")
    return 0 if report.passed else 1


def format_report(report) -> str:
    """The export report for people: file, size, calibration and the ORT-vs-PyTorch checks."""
    lines = [f"{report.model_name} -> {report.path} ({report.precision}, {report.size_bytes:,} bytes, "
             f"input {report.input_shape})"]
    if report.calibration:
        c = report.calibration
        lines.append(f"calibration   {c['n']} clips of {c['source']}, {c['method']}; {c['format']}, "
                     f"{c['activations']} activations, {c['weights']} weights")
    lines.append("ONNX Runtime vs PyTorch fp32:")
    lines += [_check_line(c) for c in report.checks]
    if report.frontend_path:
        lines.append(f"with front end -> {report.frontend_path} ({report.frontend_size_bytes:,} bytes, "
                     "waveform input):")
        lines += [_check_line(c) for c in report.frontend_checks]
    if report.frontend_note:
        lines.append(report.frontend_note)
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def _check_line(c) -> str:
    verdict = {True: "ok", False: "FAILED", None: "-"}[c.passed]
    return (f"  {c.inputs:<6} n={c.n:<4} max |diff| {c.max_abs_diff:.3g}, top-1 agreement "
            f"{100 * c.top1_agreement:.2f} %  [{verdict}: {c.tolerance}]")


def _qat(args: argparse.Namespace) -> int:
    from asc.quantize import QATConfig, run_qat

    cfg = QATConfig(epochs=args.epochs, lr=args.lr, freeze_bn_epochs=args.freeze_bn_epochs,
                    freeze_observer_epochs=args.freeze_observer_epochs, export=not args.no_export)
    summary = run_qat(args.run, cfg, out_dir=args.out, data_root=args.data,
                      overrides=args.overrides + device_overrides(args),
                      resume=args.resume, progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(f"{summary['run']}: QAT {cfg.epochs} epochs from {summary['source']}; dev-test macro accuracy:")
    fq = summary.get("fake_quant")
    if fq:
        print(f"  fake INT8 (PyTorch, best epoch {fq['epoch']}) {100 * fq['macro_accuracy']:.2f} %")
    print(f"  float weights after QAT             {100 * summary['float']['macro_accuracy']:.2f} %")
    if summary.get("export"):
        e = summary["export"]
        print(f"  INT8 ONNX                           {100 * summary['int8']['macro_accuracy']:.2f} %  "
              f"({e['path']}, {e['size_bytes']:,} bytes)")
        print(INT8_NOTE)
    return 0
