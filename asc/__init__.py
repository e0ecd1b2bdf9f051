"""asc: low-complexity acoustic scene classification toolkit (DCASE Task 1 style).

Installed as the distribution ``dcase-asc`` (the name ``asc`` on the package index is an unrelated project); the
import package and the command are ``asc``.
"""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "dcase-asc"

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"
