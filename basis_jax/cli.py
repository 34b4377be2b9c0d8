"""What every command-line program shares: one-line user errors, help, Ctrl-C, a quiet console.

    from basis_jax import cli
    ...
    if __name__ == "__main__":
      cli.run(main, log_name="train.log")

- An error that is the user's to fix (`basis_jax.errors.UserError`, a bad flag value, an
  unknown config key, a config file that is missing or refuses its `:argument`, a stray
  positional argument) prints `error: <message>` (and `hint: <fix>` where there is one) on
  stderr and exits with status 2; `--traceback` shows the full traceback instead. Anything
  else is a bug and keeps its traceback.
- `--help` (or `-h`, `--helpshort`) prints the program's flags, `--helpfull` every flag;
  with a config (`--config=FILE`, or the program's default config) both then list the
  config's fields with their current values and, where the program passes a table of
  meanings (`field_help`, kept beside the defaults in configs/), one line of meaning each.
  They exit 0.
- The console shows the project's own log lines and everyone's warnings (basis_jax.console);
  third-party INFO lines go only to WORKDIR/<log_name> (`--workdir`).
- The same flags mean the same thing in every program: `--config`, `--workdir` (the run's
  directory) and, in those that resume one, `--allow_config_change`, all defined by
  `define_run_flags`. A program flag given as a config field (`--config.workdir=DIR`) is
  refused, naming the flag. No program takes positional arguments: one is refused here,
  before `main` runs.
- Programs that run the sampler (`cpu_device_per_core=True`) give JAX one CPU device per
  usable core, before JAX starts, unless the user chose a count (`JAX_NUM_CPU_DEVICES`, or
  `--xla_force_host_platform_device_count` in `XLA_FLAGS`): XLA:CPU runs some convolutions
  (YNNPACK's 64-channel ones among them) on one thread, so one device per core, each with
  its share of the batch, keeps every core busy (BENCHMARKS.md: the MNIST NCSN step
  1.3-1.5x faster on 2 cores). It changes no result beyond float rounding (the sampler's
  results do not depend on the device count) and nothing on a GPU or TPU, whose devices
  JAX uses instead. `JAX_NUM_CPU_DEVICES=1` restores one device.
- Ctrl-C stops with one line (console and log file) and exit status 130. Inside
  `stop_after_work_in_flight(note)` the first Ctrl-C only asks to stop: it logs `note()` at
  once (what is in flight, how long it needs) and `stop_requested()` turns True, so the
  loop stops at its next safe point, after saving; a second Ctrl-C stops at once. Work run
  through `wait_for` (a compile, a chunk) runs on a worker thread, so that the main
  thread, where Python runs signal handlers, is free to answer while XLA computes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import signal
import sys
import threading
from typing import Any, Callable, Mapping

from absl import app, flags
from ml_collections import config_dict, config_flags

from basis_jax import config_help, console
from basis_jax.errors import UserError

EXIT_USER_ERROR = 2
# Flags defined here for a program (define_run_flags) belong to that program: its --help
# lists them as its own.
flags.disclaim_key_flags()

EXIT_INTERRUPTED = 130
_TRACEBACK_FLAG = "traceback"
ALLOW_CONFIG_CHANGE_HELP = ("Continue the workdir even though its saved config differs in keys "
                            "that change the results (the run then mixes two settings).")
_HELP = re.compile(r"--?(help|helpshort|h|\?|helpfull)(=(true|1))?", re.I)
_INTERRUPT = threading.Event()
_stop_note: Callable[[], str] | None = None  # Set inside stop_after_work_in_flight.
_workers: set[threading.Thread] = set()  # wait_for's threads still computing.


def define_run_flags(config_help: str, workdir_help: str, *, resumes: bool = False,
                     config_required: bool = True):
  """The flags of a program that reads a config and a workdir, spelled once for every program:
  `--config` (a config file; overrides `--config.x=...`), `--workdir`, and, where the program
  resumes a workdir (`resumes`), `--allow_config_change`. Returns their holders
  (config, workdir, allow_config_change or None)."""
  config = config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
  workdir = flags.DEFINE_string("workdir", None, workdir_help)
  allow = (flags.DEFINE_bool("allow_config_change", False, ALLOW_CONFIG_CHANGE_HELP)
           if resumes else None)
  flags.mark_flags_as_required(["config", "workdir"] if config_required else ["workdir"])
  return config, workdir, allow


def run(main: Callable[[list[str]], Any], log_name: str | None = None, *,
        cpu_device_per_core: bool = False,
        field_help: Mapping[str, str] | None = None,
        default_config: str | None = None) -> None:
  """`app.run(main)` with the error, help, Ctrl-C, logging and device behaviour above.

  `field_help`: one line of meaning per config field (dotted names; `prior.x` also
  serves `priors[i].x`), shown by `--help` and `--helpfull`.
  `default_config`: the `--config` file when the command line names none. (Not the flag's
  own default: ml_collections applies `--config.x` overrides to that when the flag is
  defined, at import, where a mistyped field would end in a traceback.)
  """
  if default_config and config_help.flag_argument(sys.argv, "config") is None:
    sys.argv = [sys.argv[0], f"--config={default_config}", *sys.argv[1:]]
  if cpu_device_per_core:
    use_cpu_device_per_core()
  if _TRACEBACK_FLAG not in flags.FLAGS:
    flags.DEFINE_bool(_TRACEBACK_FLAG, False,
                      "Show the full traceback of an error that is the user's to fix.",
                      module_name=__name__)

  def wrapped(argv):
    console.route_logging(_log_path(log_name))
    signal.signal(signal.SIGINT, _on_sigint)
    try:
      if len(argv) > 1:  # No program here takes positional arguments.
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
      return main(argv)
    except (UserError, app.UsageError) as e:
      if flags.FLAGS[_TRACEBACK_FLAG].value:
        raise
      if isinstance(e, app.UsageError):  # Positional arguments the program takes none of.
        e = UserError(str(e), hint="flags take the form --name=value; --help lists them.")
      _exit_with(e)
    except KeyboardInterrupt as e:  # Ctrl-C: one line, not a traceback; 130 as shells use.
      if flags.FLAGS[_TRACEBACK_FLAG].value:
        raise
      _exit_interrupted(str(e) or "interrupted; re-run the same command to resume")

  app.run(wrapped, flags_parser=functools.partial(_parse_flags, field_help=field_help))


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


# ----------------------------------------------------------------------------- Ctrl-C


def stop_requested() -> bool:
  """Whether Ctrl-C came since `run` started (even if its KeyboardInterrupt was swallowed)."""
  return _INTERRUPT.is_set()


@contextlib.contextmanager
def stop_after_work_in_flight(note: Callable[[], str]):
  """Within: the first Ctrl-C logs `note()` and asks to stop; the second stops at once.

  `note()` says what the program finishes before it stops and about how long that takes
  (e.g. "stopping once chunk 3/10 is saved, in about 40 s").
  """
  global _stop_note
  previous, _stop_note = _stop_note, note
  try:
    yield
  finally:
    _stop_note = previous


def wait_for(fn: Callable[..., Any], *args) -> Any:
  """`fn(*args)` on a worker thread; this (main) thread waits where Ctrl-C can reach it.

  A compiled JAX program with host callbacks runs synchronously in the calling thread and
  Python runs signal handlers only on the main thread between bytecodes, so a Ctrl-C
  pressed during a long chunk would wait for the chunk's end to be noticed at all.
  """
  outcome: dict[str, Any] = {}
  finished = threading.Event()

  def work():
    try:
      outcome["value"] = fn(*args)
    except BaseException as e:  # pylint: disable=broad-except  # Re-raised below.
      outcome["error"] = e
    finally:
      _workers.discard(threading.current_thread())
      finished.set()

  thread = threading.Thread(target=work, name="basis-compute", daemon=True)
  _workers.add(thread)
  thread.start()
  # Event.wait, not Thread.join: a KeyboardInterrupt inside join can mark a running thread
  # as stopped (CPython 3.11). The SIGINT handler runs during the wait.
  while not finished.wait(0.25):
    pass
  if "error" in outcome:
    raise outcome["error"]
  return outcome["value"]


def _on_sigint(signum, frame):
  del signum, frame
  first = not _INTERRUPT.is_set()
  _INTERRUPT.set()
  if first and _stop_note is not None:
    logging.warning("Ctrl-C: %s. Press Ctrl-C again to stop now.", _stop_note())
    return
  raise KeyboardInterrupt


def _exit_interrupted(message: str) -> None:
  sys.stdout.flush()
  sys.stderr.write(f"\n{message}\n")
  console.log_to_files(logging.WARNING, message)
  console.flush_log_files()
  sys.stderr.flush()
  if _workers:
    # XLA is still computing on a worker thread; interpreter shutdown would wait for it.
    os._exit(EXIT_INTERRUPTED)  # pylint: disable=protected-access
  sys.exit(EXIT_INTERRUPTED)


# ----------------------------------------------------------------------------- flags


def _parse_flags(argv: list[str], field_help: Mapping[str, str] | None = None) -> list[str]:
  wants_help = [a for a in argv[1:] if _HELP.fullmatch(a)]
  if wants_help:
    _print_help([a for a in argv if not _HELP.fullmatch(a)], field_help,
                full="helpfull" in wants_help[-1].lower())
    sys.exit(0)
  traceback_wanted = any(re.fullmatch(rf"--?{_TRACEBACK_FLAG}(=(true|1))?", a, re.I)
                         for a in argv[1:])
  try:
    rest = flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    if traceback_wanted:
      raise
    _exit_with(_flag_error(e, argv))
  for name, flag in config_help.config_flags():
    error = config_help.config_file_error(flag, config_help.flag_argument(argv, name))
    if error is not None:
      if traceback_wanted:
        raise error
      _exit_with(error)
  return rest


def _flag_error(e: Exception, argv: list[str]) -> UserError:
  """The user's mistake behind a flag-parsing failure, or re-raises a bug."""
  if isinstance(e, UserError):
    return e
  if isinstance(e, flags.Error):
    refused = config_help.config_argument_refused(e)
    if refused is not None:
      return refused
    missing = re.search(r"Flag --(\w+) must have a value other than None", str(e))
    if missing:
      return UserError(f"--{missing.group(1)} is required.",
                       hint="--help shows what each flag means.")
    return (config_help.unknown_config_key(argv) or config_help.config_value_refused(e, argv)
            or UserError(str(e), hint="--help lists the flags."))
  if isinstance(e, (AttributeError, KeyError, IndexError, ValueError)):  # No such key?
    error = config_help.unknown_config_key(argv)
    if error is not None:
      return error
  raise e


def error_text(error: UserError) -> str:
  """What the console shows for a user error: `error: ...` and maybe `hint: ...`."""
  lines = str(error).splitlines() or [type(error).__name__]
  text = "error: " + "\n  ".join(lines) + "\n"
  if getattr(error, "hint", None):
    text += f"hint: {error.hint}\n"
  return text


def _exit_with(error: UserError) -> None:
  text = error_text(error)
  console.log_to_files(logging.ERROR, text.rstrip())  # Keep the error in the log file too.
  sys.stdout.flush()
  sys.stderr.write(text)
  sys.exit(EXIT_USER_ERROR)


# ----------------------------------------------------------------------------- help


def _print_help(argv: list[str], field_help: Mapping[str, str] | None, full: bool) -> None:
  """absl's help text, then the config's fields, values and meanings."""
  app.usage(shorthelp=not full, writeto_stdout=True)
  try:  # Parse what was given (a config and its overrides); a mistake only loses the fields.
    flags.FLAGS(argv)
  except Exception:  # pylint: disable=broad-except
    pass
  for name, flag in config_help.config_flags():
    error = config_help.config_file_error(flag, config_help.flag_argument(argv, name))
    if error is not None:
      print(f"\n--{name}: {error}")
    elif isinstance(flag.value, config_dict.ConfigDict):
      source = config_help.flag_argument(argv, name) or flag.default_as_str.strip("'")
      print(f"\n{name} fields of {source} (set any with --{name}.FIELD=VALUE):")
      print("\n".join(config_help.config_fields(flag.value, field_help or {})))
    else:
      print(f"\nPass --{name}=FILE with --help to list that config's fields.")


def _log_path(log_name: str | None) -> str | None:
  if not log_name:
    return None
  workdir = flags.FLAGS["workdir"].value if "workdir" in flags.FLAGS else None
  return os.path.join(workdir, log_name) if workdir else None
