"""User-facing errors.

Every error a user can cause derives from `TunesmithError`; the CLI prints its message (no
traceback) and exits with status 2. A message says what was wrong, where (file:line:field or
config key) and how to fix it.
"""


class TunesmithError(Exception):
    """Base class of errors caused by user input or environment, not by a bug."""


class ConfigError(TunesmithError):
    """A config file or override is invalid (unknown key, wrong type, contradiction)."""


class DataError(TunesmithError):
    """A data file has invalid rows or cannot be read."""


class ModelError(TunesmithError):
    """A model cannot be found, converted or loaded."""


class OutputError(TunesmithError):
    """An output folder is missing, incomplete or would be overwritten."""


class TrainingStopped(TunesmithError):
    """Training stopped on a signal after saving a checkpoint; `training.resume=auto` goes on."""

    exit_code = 3


class ExportCheckFailed(TunesmithError):
    """An export scored more than `--max-drop` below the model it came from; it stays OUT.partial."""

    exit_code = 4
