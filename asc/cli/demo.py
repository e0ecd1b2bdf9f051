"""Verb: demo."""

from __future__ import annotations

from asc.cli._common import add_command, add_device_args, add_overrides, device_overrides


def _demo(args) -> int:
    from asc.config import load_config
    from asc.demo import QUICK, DemoConfig, run_demo

    overrides = [f"out={args.out!r}".replace("'", '"'), *device_overrides(args)]
    if args.quick:
        overrides += [f"{k}={v!r}".replace("'", '"') for k, v in QUICK.items()]
    cfg = load_config(DemoConfig, args.config, overrides + args.overrides)
    summary = run_demo(cfg)
    return 0 if summary["submission_valid"] else 1


def register(sub) -> None:
    p = add_command(sub, "demo", _demo,
                    "run the whole pipeline on a small synthetic dataset (minutes on a CPU)",
                    "asc demo --out asc-demo")
    p.add_argument("--out", default="asc-demo", help="folder for everything the demo makes (default asc-demo)")
    p.add_argument("--quick", action="store_true", help="tiny data and one epoch per model (a smoke test)")
    p.add_argument("--config", help="TOML file of demo settings (see asc.demo.DemoConfig)")
    add_device_args(p)
    add_overrides(p)
