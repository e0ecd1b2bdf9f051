"""``asc check-complexity``: parameters, MACs and parameter memory against a DCASE budget (exit 1 when over)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asc.cli._common import add_command
from asc.errors import ConfigError


def register(sub) -> None:
    parser = add_command(
        sub, "check-complexity", _run,
        help="count parameters / MACs / parameter memory (torchinfo rules) and check them against a DCASE budget",
        example="asc check-complexity cpmobile --precision int8   # or a run folder, a bundle .pt, an .onnx file,\n"
                "  asc check-complexity submissions/build/Doe_TUW_task1/Doe_TUW_task1/Doe_TUW_task1_1.py",
        description="Count a model as the DCASE Task 1 organisers do (torchinfo 1.8.0 on the float32 network, front "
                    "end excluded, 1-s input), cross-check the count, and check it against a budget. Exit 0 within "
                    "budget, 1 over budget, 2 on bad input.",
    )
    parser.add_argument("model", metavar="MODEL",
                        help="registry model name, run folder, model bundle .pt, .onnx file, or a DCASE 2025 "
                             "inference package module (<Label>/<Label>_1.py, or <Label>.<Label>_1 when installed: "
                             "measured per device id as the organisers' test_complexity.py does)")
    parser.add_argument("-o", "--set", "--config-override", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override the model config (registry names only): base_channels=24, "
                             "model.expansion_rate=2, frontend.hop_length=750; repeatable")
    parser.add_argument("--edition", default=None, metavar="NAME",
                        help="budget: dcase2022, dcase2023, dcase2024 (default; dcase2025 for an inference package "
                             "module), dcase2025, or a .toml file")
    parser.add_argument("--precision", choices=["fp32", "fp16", "bf16", "int8", "stored"],
                        help="precision of the parameter memory (default: the model's own for INT8/fp16 or "
                             "quantization-prepared models, else the edition's default for float models)")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--frames", type=int, metavar="N", help="count on N time frames of the front end's output")
    shape.add_argument("--input-shape", metavar="B,C,F,T", help="explicit input shape, e.g. 1,1,256,65")
    parser.add_argument("--layers", action="store_true", help="print the per-layer table")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--save", metavar="FILE.json",
                        help="also write the JSON result there (and the text report beside it as .txt)")


def _run(args: argparse.Namespace) -> int:
    import asc.submission  # noqa: F401  (registers DCASE 2025 inference packages as a source)
    from asc.complexity import DEFAULT_EDITION, SourceOptions, check_source
    from asc.submission.complexity2025 import is_package_module  # also registers package modules as a source
    from asc.config import apply_overrides
    from asc.fileio import write_json, write_text

    overrides = _flatten(apply_overrides({}, args.overrides))
    options = SourceOptions(overrides=overrides, input_size=_parse_shape(args.input_shape), frames=args.frames,
                            precision=args.precision)
    edition = args.edition or ("dcase2025" if is_package_module(args.model) else DEFAULT_EDITION)
    result = check_source(args.model, edition, options)
    data = result.to_dict(layers=args.layers)
    text = result.format(layers=args.layers)
    if args.save:
        path = Path(args.save)
        write_json(path, data)
        write_text(path.with_suffix(".txt"), text + "\n")
    print(json.dumps(data, indent=2) if args.json else text)
    return 0 if result.within_budget else 1


def _flatten(data: dict, prefix: str = "") -> dict:
    """{"model": {"base_channels": 24}} -> {"model.base_channels": 24} (dotted keys as given)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in ("model", "frontend") and not prefix:
            out.update(_flatten(value, f"{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ConfigError(f"--input-shape {text!r}: expected positive integers like 1,1,256,65")
    return shape
