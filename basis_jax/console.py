"""What the console shows: the project's own lines, everyone's warnings, a progress bar.

- `route_logging(path)`: the console gets the project's INFO lines (the root logger) and
  warnings and errors from anyone; third-party INFO lines (orbax, absl, jax) and the
  parameter tables go only to the log file at `path`.
- `ProgressBar`: on a terminal, one line redrawn in place at the bottom (mixtures done /
  total, ETA); log lines print above it. Progress lines logged with `PROGRESS` in `extra`
  then stay off the console (the bar says the same) and go only to the log file. Where the
  console is not a terminal (a pipe, a CI log) there is no bar and those lines print.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from absl import logging as absl_logging

_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# `logging.info(..., extra=PROGRESS)` marks a line the bar stands for on a terminal.
PROGRESS = {"progress": True}
_BAR_WIDTH = 24


class _ConsoleFilter(logging.Filter):
  """The project's INFO lines (root logger) and everyone's warnings and errors."""

  def filter(self, record: logging.LogRecord) -> bool:
    if getattr(record, "progress", False) and ProgressBar.active is not None:
      return False
    return record.levelno >= logging.WARNING or record.name == "root"


class _ConsoleFormatter(logging.Formatter):

  def __init__(self):
    super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

  def format(self, record: logging.LogRecord) -> str:
    text = super().format(record)
    if record.levelno >= logging.WARNING:
      stamp = self.formatTime(record, self.datefmt)
      text = f"{stamp} {record.levelname}: {text[len(stamp) + 1:]}"
    return text


class _ConsoleHandler(logging.StreamHandler):
  """Writes a log line above the progress bar: clear the bar, write, draw it again."""

  _basis_console = True

  def emit(self, record: logging.LogRecord) -> None:
    bar = ProgressBar.active
    if bar is None:
      super().emit(record)
      return
    with bar.lock:
      bar.clear()
      super().emit(record)
      bar.draw()


def route_logging(log_path: str | None = None) -> None:
  """Console: our INFO lines and all warnings; `log_path` (if given): everything at INFO."""
  root = logging.getLogger()
  root.setLevel(logging.INFO)
  root.removeHandler(absl_logging.get_absl_handler())  # It prints every absl INFO line.
  for handler in list(root.handlers):
    if getattr(handler, "_basis_console", False):
      root.removeHandler(handler)
  console = _ConsoleHandler(sys.stderr)
  console.addFilter(_ConsoleFilter())
  console.setFormatter(_ConsoleFormatter())
  root.addHandler(console)
  if log_path:
    log_to(log_path)


def log_to(path: str) -> None:
  """Also writes every log line at INFO and above to `path` (once per path)."""
  path = os.path.abspath(path)
  root = logging.getLogger()
  if any(getattr(h, "baseFilename", None) == path for h in root.handlers):
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  handler = logging.FileHandler(path)
  handler.setFormatter(logging.Formatter(_FILE_FORMAT))
  root.addHandler(handler)


def log_to_files(level: int, text: str, name: str = __name__) -> None:
  """`text` to the log files only (a line the console already shows in its own form)."""
  for handler in logging.getLogger().handlers:
    if isinstance(handler, logging.FileHandler):
      handler.handle(logging.makeLogRecord(
          {"name": name, "msg": text, "levelno": level,
           "levelname": logging.getLevelName(level)}))


def flush_log_files() -> None:
  for handler in logging.getLogger().handlers:
    handler.flush()


class ProgressBar:
  """`[#####-----] 120/500 mixtures  ETA 38 min` redrawn in place on a terminal.

  Use as a context manager; `update(done, total, text)` redraws. Where stderr is not a
  terminal it does nothing (the progress lines print instead).
  """

  active: "ProgressBar | None" = None  # The bar on screen, if any (one at a time).

  def __init__(self, stream=None):
    self.stream = stream or sys.stderr
    self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.lock = threading.RLock()
    self.line = ""

  def __enter__(self) -> "ProgressBar":
    if self.enabled:
      ProgressBar.active = self
    return self

  def __exit__(self, *exc) -> None:
    if ProgressBar.active is self:
      with self.lock:
        if self.line:
          self.stream.write("\n")  # Leave the last state on screen.
          self.stream.flush()
        ProgressBar.active = None

  def update(self, done: float, total: float, text: str) -> None:
    if not self.enabled:
      return
    fraction = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
    filled = int(round(fraction * _BAR_WIDTH))
    with self.lock:
      self.clear()
      self.line = f"[{'#' * filled}{'-' * (_BAR_WIDTH - filled)}] {text}"
      self.draw()

  def clear(self) -> None:
    if self.line:
      self.stream.write("\r\033[K")

  def draw(self) -> None:
    if self.line:
      self.stream.write("\r" + self.line)
      self.stream.flush()
