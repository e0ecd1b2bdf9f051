"""asc: low-complexity acoustic scene classification toolkit (DCASE Task 1 style)."""

__version__ = "0.1.0"
