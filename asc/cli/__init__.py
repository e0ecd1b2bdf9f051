"""The ``asc`` command line: one thin command per verb; the work lives in the library.

Each module in this package defines ``register(subparsers)`` adding its verbs; each verb's handler takes the parsed
arguments and returns an exit code. Errors derived from :class:`asc.errors.AscError` become one clear line on
stderr and their ``exit_code`` (2: bad input; 1: a challenge rule is broken, e.g. a submission over budget); so do
an ``OSError`` (naming the path) or a ``ValueError`` (naming the value) that reach this far, with exit code 2
(``ASC_DEBUG=1`` shows their traceback instead). ``--no-wait`` (every verb) makes a busy lock an error at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from contextlib import nullcontext

from asc import DISTRIBUTION, __version__
from asc.errors import AscError
from asc.locks import waiting


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asc",
        description="Low-complexity acoustic scene classification: data, teachers, students, budget, INT8, submissions.",
        epilog="Start with `asc demo`; every verb has --help with an example.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} ({DISTRIBUTION})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        with waiting(False) if getattr(args, "no_wait", False) else nullcontext():
            return int(args.handler(args) or 0)
    except AscError as e:
        print(f"asc {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except (OSError, ValueError) as e:
        if os.environ.get("ASC_DEBUG"):
            raise
        print(f"asc {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"asc {args.command}: interrupted", file=sys.stderr)
        return 130


def one_line(error: OSError | ValueError) -> str:
    """``path: reason`` for an OSError, the first line of the message for a ValueError."""
    if isinstance(error, OSError) and error.filename is not None:
        paths = " -> ".join(str(p) for p in (error.filename, error.filename2) if p is not None)
        return f"{paths}: {error.strerror or type(error).__name__}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
