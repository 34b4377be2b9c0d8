"""Errors that are the user's to fix, as opposed to bugs.

The command-line programs print a `UserError` as one `error: <message>` line (plus a hint
where one exists) and exit with status 2; anything else keeps its traceback. Subclasses
also derive from the builtin a caller would expect (`ValueError`, `FileNotFoundError`), so
library callers can keep catching those.
"""


class UserError(Exception):
  """A problem with the user's input: a config value, a file, a refused resume."""

  def __init__(self, message: str, hint: str | None = None):
    super().__init__(message)
    self.hint = hint


class ConfigError(UserError, ValueError):
  """A config value or combination of values that cannot be used."""


class InputFileError(UserError, ValueError):
  """A missing, truncated, corrupt or mismatched input file (data, mixtures, weights)."""


class MissingFileError(InputFileError, FileNotFoundError):
  """An input file that does not exist (also a FileNotFoundError for library callers)."""


class MissingDependencyError(UserError, RuntimeError):
  """An optional package (torch, tensorflow) that this step needs is not installed."""
