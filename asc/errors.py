"""Exceptions with messages meant for people: each names the file, row or field at fault."""


class AscError(Exception):
    """Base class for every error the toolkit reports to a user (CLI exit code ``exit_code``: 2, bad input)."""

    exit_code = 2


class DatasetError(AscError):
    """A dataset, split file or audio file is missing or malformed."""


class ConfigError(AscError):
    """A configuration file or override is invalid."""


class CheckpointError(AscError):
    """A checkpoint or pretrained file cannot be loaded into a model."""


class MissingDependencyError(AscError):
    """An optional extra (e.g. ``dcase-asc[passt]``) is needed but not installed."""


def first_lines(error: BaseException, n: int = 2, root_cause: bool = False) -> str:
    """A foreign exception in one line for people: its type and the first ``n`` lines of its message (with
    ``root_cause``, of the exception at the end of its ``__cause__`` chain: libraries such as torchinfo wrap model
    errors in a generic one)."""
    while root_cause and error.__cause__ is not None:
        error = error.__cause__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {' '.join(lines[:n])}" if lines else type(error).__name__
