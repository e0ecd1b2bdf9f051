"""Verbs: models list, models convert."""

from __future__ import annotations

import json

from asc.cli._common import add_command, add_overrides


def _list(args) -> int:
    from asc.complexity.catalog import catalog

    rows = catalog(args.names or None)
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return 0
    header = f"{'name':<14}{'role':<9}{'front end':<12}{'input':<16}{'params':>12}{'MACs':>15}  description"
    print(header)
    for r in rows:
        shape = "x".join(map(str, r.input_shape))
        print(f"{r.name:<14}{r.role:<9}{r.frontend:<12}{shape:<16}{r.params:>12,}{r.macs:>15,}  {r.description}")
    return 0


def _convert(args) -> int:
    from asc.config import apply_overrides
    from asc.models.convert import convert_to_bundle

    labels = args.labels.split(",") if args.labels else None
    out = convert_to_bundle(args.src, args.model, args.out, labels=labels,
                            overrides=apply_overrides({}, args.overrides))
    print(f"wrote {out} (model {args.model} from {args.src})")
    return 0


def register(sub) -> None:
    p = add_command(sub, "models", lambda args: p.print_help() or 2, "list the model zoo; convert checkpoints",
                    "asc models list")
    verbs = p.add_subparsers(dest="models_command", metavar="VERB")

    q = add_command(verbs, "list", _list, "registered models: role, front end, parameters, MACs per 1-s clip",
                    "asc models list --json")
    q.add_argument("names", nargs="*", help="only these models (default: all)")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")

    q = add_command(verbs, "convert", _convert, "load a published checkpoint into a model and write a bundle",
                    "asc models convert cpmobile23_epoch149.ckpt --model cpmobile --out cpmobile23.pt")
    q.add_argument("src", help="checkpoint: Lightning .ckpt (prefix model.), state dict, or dict with state_dict")
    q.add_argument("--model", required=True, help="registered model name (see `asc models list`)")
    q.add_argument("--out", required=True, help="bundle .pt to write")
    q.add_argument("--labels", help="comma-separated class names (default: the 10 TAU scenes)")
    add_overrides(q)
