"""Evaluation-set predictions and challenge submission packages.

Importing the package registers DCASE 2025 inference packages as a complexity source
(:mod:`asc.submission.complexity2025`).
"""

from asc.submission import complexity2025  # noqa: F401  (registers the 2025 package source)
