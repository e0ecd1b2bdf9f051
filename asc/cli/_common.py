"""Helpers shared by the CLI modules."""

from __future__ import annotations

import argparse
from typing import Callable

BATCH_HELP = "clips per batch (default: the device's, 8 on the CPU, 512 on a GPU; asc.accel.BATCH_SIZES)"


def add_command(sub, name: str, handler: Callable[[argparse.Namespace], int], help: str, example: str,
                description: str | None = None) -> argparse.ArgumentParser:
    """Add verb ``name`` with a help line and an example shown by ``--help``."""
    parser = sub.add_parser(name, help=help, description=description or help,
                            epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(handler=handler)
    parser.add_argument("--no-wait", action="store_true", default=argparse.SUPPRESS,
                        help="fail at once, naming the holder, when another process holds a lock this command needs "
                             "(an audio cache being built, a run folder being written) instead of waiting for it")
    return parser


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """Positional-free dotted config overrides: ``-o train.lr=1e-3 -o model.base_channels=24``."""
    parser.add_argument("-o", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (dotted key, TOML value); repeatable")


def add_device_args(parser: argparse.ArgumentParser, autocast: bool = True) -> None:
    """``--device`` and (for PyTorch models) ``--autocast``: where and in which precision models run (asc.accel)."""
    parser.add_argument("--device", default=None, metavar="DEV",
                        help="auto (default: the GPU when CUDA is available, else the CPU), cpu, cuda or cuda:N")
    if autocast:
        parser.add_argument("--autocast", default=None, metavar="MODE",
                            help="mixed precision: auto (default: bf16 on a GPU that supports it, else fp16; off on "
                                 "the CPU), off, bf16, fp16")


def device_overrides(args: argparse.Namespace) -> list[str]:
    """``--device`` / ``--autocast`` as dotted overrides of a training config (only the ones given)."""
    return [f'{key}="{getattr(args, key)}"' for key in ("device", "autocast") if getattr(args, key, None)]
