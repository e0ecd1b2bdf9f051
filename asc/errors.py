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
    """An optional extra (e.g. ``asc[passt]``) is needed but not installed."""
