"""What a program tells its user about a config: its fields (`--help`) and mistakes in it.

- `field`, `require`: a config's fields read strictly (a missing one is refused by name;
  every default lives in configs/, none in the code that reads them).
- `config_fields`: every field of a config, its value and one line of meaning, from a
  table kept beside the defaults (configs/base_separation.py FIELD_HELP,
  configs/evaluate.py FIELD_HELP) that the program passes to `cli.run(config_help=...)`.
- The rest turns what absl and ml_collections raise for a mistyped config file, variant,
  field or value into one `ConfigError`/`UserError` line with a hint (basis_jax.cli
  prints it).
"""

from __future__ import annotations

import difflib
import os
import re
import traceback
from typing import Any, Mapping

from absl import flags
from ml_collections import config_dict
from ml_collections.config_flags import config_flags as config_flags_lib

from basis_jax.errors import ConfigError, UserError


def field(config: Any, path: str, hint: str | None = None) -> Any:
  """config's field at a dotted `path`; a missing one is refused, naming it."""
  node = config
  for part in path.split("."):
    try:
      node = node[part]
    except (KeyError, AttributeError, TypeError):
      raise ConfigError(f"The config has no field {path!r}.", hint=hint) from None
  return node


def require(config: Any, paths, hint: str | None = None) -> None:
  """Refuses a config that lacks any of the dotted `paths`, naming every missing one."""
  missing = []
  for path in paths:
    try:
      field(config, path)
    except ConfigError:
      missing.append(path)
  if missing:
    raise ConfigError(f"The config has no field(s) {', '.join(map(repr, missing))}.",
                      hint=hint)


def config_fields(config: Any, meanings: Mapping[str, str], prefix: str = "") -> list[str]:
  """One line per leaf field: `  name = value    meaning`, in the config's order."""
  rows = list(_leaves(config, prefix))
  width = min(44, max((len(f"{n} = {v}") for n, v in rows), default=0))
  lines = []
  for name, value in rows:
    meaning = field_meaning(name, meanings)
    left = f"{name} = {value}"
    lines.append(f"  {left:<{width}}  {meaning}".rstrip() if meaning else f"  {left}")
  return lines


def field_meaning(name: str, meanings: Mapping[str, str]) -> str:
  """The meaning of a dotted field name; `priors[i].x` falls back to `prior.x`."""
  if name in meanings:
    return meanings[name]
  general = re.sub(r"^priors\[\d+\]", "prior", name)
  return meanings.get(general, "")


def _leaves(node: Any, prefix: str):
  for key, value in node.items():
    name = f"{prefix}{key}"
    if isinstance(value, config_dict.ConfigDict):
      yield from _leaves(value, name + ".")
    elif isinstance(value, (tuple, list)) and value and all(
        isinstance(v, config_dict.ConfigDict) for v in value):
      for i, item in enumerate(value):
        yield from _leaves(item, f"{name}[{i}].")
    else:
      yield name, _short(value)


def _short(value: Any) -> str:
  text = repr(value)
  return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------- mistakes


def config_value_refused(e: flags.Error, argv: list[str]) -> UserError | None:
  """`--config.num_mixtures=many`: which type the field takes, shown by its current value."""
  match = re.match(r"flag --(\w+)\.([\w.]+)=(.*?): ", str(e))
  if match is None:
    return None
  name, field, given = match.groups()
  flag = flags.FLAGS[name] if name in flags.FLAGS else None
  source = flag_argument(argv, name) or (flag.default_as_str if flag else None)
  try:
    node = flag.parser.parse(source.strip("'"))
    for part in field.split("."):
      node = node[part]
  except Exception:  # pylint: disable=broad-except  # Nothing better to say than absl.
    return None
  kinds = {bool: "True or False", int: "an integer", float: "a number", str: "a string",
           tuple: "a tuple"}
  kind = kinds.get(type(node), f"a {type(node).__name__}")
  return ConfigError(f"--{name}.{field}={given}: {name}.{field} takes {kind} (its value "
                     f"is {node!r}).",
                     hint="--help lists every field with its value.")


def config_argument_refused(e: flags.Error) -> UserError | None:
  """A config file's `get_config(argument)` that refused its argument (a mistyped variant).

  ml_collections re-raises get_config's ValueError/TypeError with the traceback pasted into
  the message; the original is the innermost exception of the chain. A ValueError is how
  config files refuse an argument; a TypeError counts only when the call itself failed (a
  file that takes no argument), not one raised deeper inside the file (a bug).
  """
  match = re.match(r"flag --(\w+)=(\S+): Error whilst parsing config file", str(e))
  if match is None:
    return None
  original = e
  while (original.__cause__ or original.__context__) is not None:
    original = original.__cause__ or original.__context__
  if isinstance(original, UserError):
    return original
  frames = traceback.extract_tb(original.__traceback__)
  raised_by_the_call = not frames or frames[-1].filename == config_flags_lib.__file__
  if isinstance(original, TypeError) and raised_by_the_call:
    path, _, argument = match.group(2).partition(":")
    return ConfigError(f"--{match.group(1)}={match.group(2)}: {path} takes no argument "
                       f"(got ':{argument}').", hint=f"use --{match.group(1)}={path}")
  if isinstance(original, ValueError):
    return ConfigError(f"--{match.group(1)}={match.group(2)}: {original}")
  return None


def config_file_error(flag, argument: str | None) -> UserError | None:
  """A config flag whose file could not be loaded (missing, a directory, unreadable).

  ml_collections defers such a failure to the config's first use, where it surfaces as a
  long nested traceback; here it is one line, with the closest file name as the hint.
  """
  value = flag.value
  if type(value).__name__ != "_ErrorConfig":
    return None
  source = (argument or flag.default_as_str or "").strip("'\"")
  path = source.partition(":")[0]
  if not os.path.exists(path):
    return UserError(f"config file {path} does not exist.", hint=_closest_file_hint(
        flag.name, path, source[len(path):]))
  if os.path.isdir(path):
    files = sorted(f for f in os.listdir(path) if f.endswith(".py")
                   and not f.startswith(("_", "base")))
    example = f" (e.g. --{flag.name}={os.path.join(path, files[0])})" if files else ""
    return UserError(f"config file {path} is a directory.",
                     hint=f"name one config file in it{example}.")
  cause = object.__getattribute__(value, "_error")
  last = str(cause).strip().splitlines()[-1].strip() if str(cause).strip() else repr(cause)
  return UserError(f"config file {path} could not be loaded: {last}")


def _closest_file_hint(name: str, path: str, argument: str) -> str | None:
  folder = os.path.dirname(path) or "."
  if not os.path.isdir(folder):
    return f"{folder} is not a directory either; config files live in configs/."
  candidates = [f for f in os.listdir(folder) if f.endswith(".py")]
  close = difflib.get_close_matches(os.path.basename(path), candidates, n=1, cutoff=0.6)
  if not close:
    return f"the config files are in configs/ (e.g. --{name}=configs/mnist_unet.py)."
  return f"did you mean --{name}={os.path.join(os.path.dirname(path), close[0])}{argument}?"


def unknown_config_key(argv: list[str]) -> ConfigError | None:
  """The first `--<config>.a.b=...` override whose key the loaded config lacks, if any."""
  for name, flag in config_flags():
    source = flag_argument(argv, name) or flag.default_as_str
    if not source:
      continue
    try:
      config = flag.parser.parse(source.strip("'"))
    except Exception:  # pylint: disable=broad-except
      continue  # The file itself is broken: let the original error speak.
    for arg in argv[1:]:
      match = re.match(rf"--?(?:no)?{re.escape(name)}\.([^=]+)(=.*)?", arg)
      if match:
        path = [p for p in re.split(r"[.\[\]]", match.group(1)) if p]
        error = _missing_key(config, name, path)
        if error is not None and len(path) == 1 and path[0] in flags.FLAGS:
          return _flag_given_as_field(name, path[0], match.group(2))
        if error is not None:
          return error
  return None


def _flag_given_as_field(config_name: str, flag: str, value: str | None) -> ConfigError:
  """`--config.workdir=DIR` where the program takes `--workdir=DIR`."""
  given = f"--{config_name}.{flag}{value or ''}"
  if isinstance(flags.FLAGS[flag], flags.BooleanFlag):
    use = f"--{flag}" if (value or "=true").lower() in ("=true", "=1") else f"--no{flag}"
  else:
    use = f"--{flag}{value or '=...'}"
  return ConfigError(f"{given}: {flag} is a flag of the program, not a field of its "
                     f"{config_name}.", hint=f"use {use}")


def config_flags():
  registered = flags.FLAGS._flags()  # pylint: disable=protected-access
  return [(name, flag) for name, flag in registered.items()
          if config_flags_lib.is_config_flag(flag)]


def flag_argument(argv: list[str], name: str) -> str | None:
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
