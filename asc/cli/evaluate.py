"""``asc evaluate``: score a model on a labelled split; print the report, write JSON + confusion PNG."""

from __future__ import annotations

import argparse
import json

from asc.cli._common import BATCH_HELP, add_command, add_device_args


def register(sub) -> None:
    parser = add_command(
        sub, "evaluate", _run,
        help="score a model (run folder, bundle .pt or .onnx) on a labelled split: per device, class, group",
        example="asc evaluate runs/baseline24-split25 --data data/TAU-urban-acoustic-scenes-2022-mobile-development",
    )
    parser.add_argument("model", help="run folder, model bundle .pt or .onnx file")
    parser.add_argument("--data", required=True, metavar="ROOT", help="dataset root in the TAU layout")
    parser.add_argument("--split", default="test", help="split to score: test (dev-test, default), 5, 10, 25, 50, 100")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (default: RUN/eval/ for a run folder, <stem>.eval/ beside a file)")
    parser.add_argument("--batch-size", type=int, metavar="N", help=BATCH_HELP)
    add_device_args(parser)
    parser.add_argument("--cache-dir", metavar="DIR", help="audio cache folder (default $ASC_CACHE_DIR or ~/.cache/asc)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON instead of the report table")


def _run(args: argparse.Namespace) -> int:
    from asc.evaluate import evaluate
    from asc.metrics import format_report
    from asc.runs import default_eval_dir, eval_paths

    result = evaluate(args.model, args.data, split=args.split, out_dir=args.out, batch_size=args.batch_size,
                      cache_dir=args.cache_dir, progress=not args.json, device=args.device or "auto",
                      autocast=args.autocast or "auto")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    json_path, png_path = eval_paths(args.out or default_eval_dir(args.model), result["split"])
    print(f"{result['model_name']} on split {result['split']} of {result['data_root']}\n")
    print(format_report(result))
    print(f"wrote {json_path} and {png_path}")
    return 0
