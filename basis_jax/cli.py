"""What every command-line program shares: one-line user errors and a quiet console.

    from basis_jax import cli
    ...
    if __name__ == "__main__":
      cli.run(main, log_name="train.log")

- An error that is the user's to fix (`basis_jax.errors.UserError`, a bad flag value, an
  unknown config key) prints `error: <message>` (and `hint: <fix>` where there is one) on
  stderr and exits with status 2; `--traceback` shows the full traceback instead. Anything
  else is a bug and keeps its traceback.
- The console shows the project's own log lines (progress, at the root logger), and
  warnings and errors from anyone. Third-party INFO lines (orbax, absl, jax) go only to
  the log file: WORKDIR/<log_name>, where WORKDIR is `--workdir` or `config.workdir`.
- Programs that run the sampler (`cpu_device_per_core=True`) give JAX one CPU device per
  usable core, before JAX starts, unless the user chose a count (`JAX_NUM_CPU_DEVICES`, or
  `--xla_force_host_platform_device_count` in `XLA_FLAGS`): XLA:CPU runs some convolutions
  (YNNPACK's 64-channel ones among them) on one thread, so one device per core, each with
  its share of the batch, keeps every core busy (BENCHMARKS.md: the MNIST NCSN step
  1.3-1.5x faster on 2 cores). It changes no result beyond float rounding (the sampler's
  results do not depend on the device count) and nothing on a GPU or TPU, whose devices
  JAX uses instead. `JAX_NUM_CPU_DEVICES=1` restores one device.
- Ctrl-C prints one line and exits with 130. Its KeyboardInterrupt can land inside a JAX host
  callback (the sampler's progress lines), which swallows it; so `run` also records it, and
  long loops check `interrupt_requested()` where stopping is safe (after each chunk).
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import signal
import sys
import threading
from typing import Any, Callable

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_dict
from ml_collections.config_flags import config_flags as config_flags_lib

from basis_jax.errors import ConfigError, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
_TRACEBACK_FLAG = "traceback"
_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_INTERRUPT = threading.Event()


def interrupt_requested() -> bool:
  """Whether Ctrl-C came since `run` started (even if its KeyboardInterrupt was swallowed)."""
  return _INTERRUPT.is_set()


def _on_sigint(signum, frame):
  del signum, frame
  _INTERRUPT.set()
  raise KeyboardInterrupt


def run(main: Callable[[list[str]], Any], log_name: str | None = None, *,
        cpu_device_per_core: bool = False) -> None:
  """`app.run(main)` with the error, logging and device behaviour of the module docstring."""
  if cpu_device_per_core:
    use_cpu_device_per_core()
  if _TRACEBACK_FLAG not in flags.FLAGS:
    flags.DEFINE_bool(_TRACEBACK_FLAG, False,
                      "Show the full traceback of an error that is the user's to fix.")

  def wrapped(argv):
    route_logging(_log_path(log_name))
    signal.signal(signal.SIGINT, _on_sigint)
    try:
      return main(argv)
    except UserError as e:
      if flags.FLAGS[_TRACEBACK_FLAG].value:
        raise
      _exit_with(e)
    except KeyboardInterrupt as e:  # Ctrl-C: one line, not a traceback; 130 as shells use.
      if flags.FLAGS[_TRACEBACK_FLAG].value:
        raise
      sys.stdout.flush()
      sys.stderr.write(f"\n{e or 'interrupted; re-run the same command to resume'}\n")
      sys.exit(EXIT_INTERRUPTED)

  app.run(wrapped, flags_parser=_parse_flags)


def use_cpu_device_per_core() -> int | None:
  """Sets one JAX CPU device per usable core; returns the count, or None if left alone."""
  if "JAX_NUM_CPU_DEVICES" in os.environ or (
      "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")):
    return None  # The user's choice.
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  import jax  # pylint: disable=import-outside-toplevel
  try:
    jax.config.update("jax_num_cpu_devices", max(1, cores or 1))
  except RuntimeError:  # Backends already started (an import created an array).
    logging.getLogger(__name__).debug("JAX started before cli.run; CPU devices left as they are.")
    return None
  return cores


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    if any(re.fullmatch(rf"--?{_TRACEBACK_FLAG}(=(true|1))?", a, re.I) for a in argv[1:]):
      raise
    cause = e.__cause__ or e.__context__
    if isinstance(e, UserError):
      error = e
    elif isinstance(e, flags.Error) and isinstance(cause, UserError):
      error = cause  # A config file's get_config refused its argument.
    elif isinstance(e, flags.Error):  # Unknown flag, missing required flag, bad value.
      error = unknown_config_key(argv) or UserError(
          str(e), hint="--helpfull lists every flag.")
    elif isinstance(e, (AttributeError, KeyError, IndexError, ValueError)):  # No such key?
      error = unknown_config_key(argv)
      if error is None:
        raise
    else:
      raise
    _exit_with(error)


def unknown_config_key(argv: list[str]) -> ConfigError | None:
  """The first `--<config>.a.b=...` override whose key the loaded config lacks, if any."""
  for name, flag in _config_flags():
    source = _flag_argument(argv, name) or flag.default_as_str
    if not source:
      continue
    try:
      config = flag.parser.parse(source.strip("'"))
    except Exception:  # pylint: disable=broad-except
      continue  # The file itself is broken: let the original error speak.
    for arg in argv[1:]:
      match = re.match(rf"--?(?:no)?{re.escape(name)}\.([^=]+)", arg)
      if match:
        path = [p for p in re.split(r"[.\[\]]", match.group(1)) if p]
        error = _missing_key(config, name, path)
        if error is not None:
          return error
  return None


def _config_flags():
  registered = flags.FLAGS._flags()  # pylint: disable=protected-access
  return [(name, flag) for name, flag in registered.items()
          if config_flags_lib.is_config_flag(flag)]


def _flag_argument(argv: list[str], name: str) -> str | None:
  for i, arg in enumerate(argv[1:], start=1):
    if re.fullmatch(rf"--?{re.escape(name)}", arg) and i + 1 < len(argv):
      return argv[i + 1]
    match = re.fullmatch(rf"--?{re.escape(name)}=(.*)", arg)
    if match:
      return match.group(1)
  return None


def _missing_key(config: Any, section: str, path: list[str]) -> ConfigError | None:
  node = config
  for part in path:
    if isinstance(node, (config_dict.ConfigDict, dict)):
      keys = list(node.keys())
      if part in keys:
        node, section = node[part], f"{section}.{part}"
        continue
      close = difflib.get_close_matches(part, keys, n=len(keys), cutoff=0.5)
      listed = close + sorted(k for k in keys if k not in close)
      hint = f"did you mean --{section}.{close[0]}?" if close else None
      return ConfigError(f"{section} has no field {part!r}; valid keys of {section}: "
                         f"{', '.join(listed)}", hint=hint)
    if isinstance(node, (tuple, list)) and part.isdigit():
      if int(part) >= len(node):
        return ConfigError(f"{section} has {len(node)} entries; there is no {section}.{part}.")
      node, section = node[int(part)], f"{section}.{part}"
      continue
    return ConfigError(f"{section} is a value ({type(node).__name__}), not a section: it has "
                       f"no field {part!r}.")
  return None


def _exit_with(error: UserError) -> None:
  lines = str(error).splitlines() or [type(error).__name__]
  text = "error: " + "\n  ".join(lines) + "\n"
  if getattr(error, "hint", None):
    text += f"hint: {error.hint}\n"
  for handler in logging.getLogger().handlers:  # Keep the error in the log file too.
    if isinstance(handler, logging.FileHandler):
      handler.handle(logging.makeLogRecord(
          {"name": __name__, "msg": text.rstrip(), "levelno": logging.ERROR,
           "levelname": "ERROR"}))
  sys.stdout.flush()
  sys.stderr.write(text)
  sys.exit(EXIT_USER_ERROR)


# ----------------------------------------------------------------------------- logging


class _ConsoleFilter(logging.Filter):
  """The project's INFO lines (root logger) and everyone's warnings and errors."""

  def filter(self, record: logging.LogRecord) -> bool:
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


def route_logging(log_path: str | None = None) -> None:
  """Console: our INFO lines and all warnings; `log_path` (if given): everything at INFO."""
  root = logging.getLogger()
  root.setLevel(logging.INFO)
  root.removeHandler(absl_logging.get_absl_handler())  # It prints every absl INFO line.
  for handler in list(root.handlers):
    if getattr(handler, "_basis_console", False):
      root.removeHandler(handler)
  console = logging.StreamHandler(sys.stderr)
  console._basis_console = True  # pylint: disable=protected-access
  console.addFilter(_ConsoleFilter())
  console.setFormatter(_ConsoleFormatter())
  root.addHandler(console)
  if log_path:
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    if not any(getattr(h, "baseFilename", None) == os.path.abspath(log_path)
               for h in root.handlers):
      handler = logging.FileHandler(log_path)
      handler.setFormatter(logging.Formatter(_FILE_FORMAT))
      root.addHandler(handler)


def _log_path(log_name: str | None) -> str | None:
  if not log_name:
    return None
  workdir = flags.FLAGS["workdir"].value if "workdir" in flags.FLAGS else None
  if not workdir and "config" in flags.FLAGS:
    config = flags.FLAGS["config"].value
    workdir = config.get("workdir") if hasattr(config, "get") else None
  return os.path.join(workdir, log_name) if workdir else None
