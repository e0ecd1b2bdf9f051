"""Helpers shared by the CLI modules."""

from __future__ import annotations

import argparse
from typing import Callable


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
