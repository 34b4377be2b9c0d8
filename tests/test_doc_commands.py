"""Every command line the documentation shows names flags and config fields that exist.

The commands are collected from README.md, docs/, the READMEs under results/ and training/,
and the docstrings of experiments/, studies/, configs/ and convert_weights/: each
`python -m <module> ...` of this project (lines continued with a backslash joined). For
each one, every `--flag` must be defined by that module (or by absl itself; the converters
define theirs in `define_flags()`, called only when they run as programs), the
`--config=FILE[:VARIANT]` must load, and every `--config.a.b=...` override must name a field
of that config (the module's `_DEFAULT_CONFIG` when the command gives none). Values are not
checked: documentation writes placeholders (`/path/to/mnist`, `DIR`).

The modules are imported in a child interpreter: their flags go to absl's global registry,
and several modules define the same names, so each module's flags are removed after it is
read.
"""

import importlib
import importlib.util
import json
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
_PACKAGES = ("experiments", "studies", "convert_weights", "basis_jax")
_COMMAND = re.compile(r"python3? -m ((?:%s)\.[\w.]*\w)([^`|\n]*)" % "|".join(_PACKAGES))
_FLAG = re.compile(r"(?<![\w-])--([A-Za-z_][\w.]*)")


def documented_commands() -> list[tuple[str, str, str]]:
  """(file, module, the rest of the line) for every command the documentation shows."""
  files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
           *sorted(REPO.glob("results/**/README.md")),
           *sorted(REPO.glob("training/**/README.md"))]
  files += sorted(p for d in ("experiments", "studies", "configs", "convert_weights")
                  for p in (REPO / d).rglob("*.py"))
  commands = []
  for path in files:
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for match in _COMMAND.finditer(text):
      commands.append((str(path.relative_to(REPO)), match.group(1), match.group(2)))
  return commands


def _load_config(spec: str):
  path, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("doc_config", REPO / path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


def _has_field(config, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    try:
      if part not in node:
        return False
    except TypeError:  # A leaf (not a ConfigDict) has no fields.
      return False
    node = node[part]
  return True


def find_problems() -> list[str]:
  from absl import flags  # pylint: disable=import-outside-toplevel
  registry = flags.FLAGS
  builtin = set(registry)
  by_module: dict[str, list] = {}
  for command in documented_commands():
    by_module.setdefault(command[1], []).append(command)
  problems = []
  for name, commands in sorted(by_module.items()):
    if importlib.util.find_spec(name) is None:
      problems += [f"{file}: `python -m {name}`: no such module" for file, _, _ in commands]
      continue
    before = set(registry)
    try:
      module = importlib.import_module(name)
    except ImportError as e:  # An optional extra (torch, tensorflow) that is not installed.
      print(f"skipped {name}: {e}", file=sys.stderr)
      continue
    if hasattr(module, "define_flags"):  # The converters define theirs only as programs.
      module.define_flags()
    defined = set(registry) - before
    defined |= {f"no{flag}" for flag in defined
                if isinstance(registry[flag], flags.BooleanFlag)}  # absl's --noNAME.
    for file, _, rest in commands:
      where = f"{file}: `python -m {name}`"
      found = _FLAG.findall(rest)
      for flag in found:
        if not flag.startswith("config.") and flag not in defined | builtin:
          problems.append(f"{where}: no flag --{flag}")
      overrides = [f[len("config."):] for f in found if f.startswith("config.")]
      spec = re.search(r"--config=([^\s\]\"']+)", rest)
      if spec and re.fullmatch(r"[A-Z_]+", spec.group(1)):
        continue  # A placeholder (CONFIG).
      if spec is None and overrides:
        default = getattr(module, "_DEFAULT_CONFIG", None)
        if default is None:
          problems.append(f"{where}: --config.… overrides without --config=")
          continue
        spec_text = str(pathlib.Path(default).resolve().relative_to(REPO))
      elif spec is None:
        continue
      else:
        spec_text = spec.group(1)
      try:
        config = _load_config(spec_text)
      except Exception as e:  # pylint: disable=broad-except
        problems.append(f"{where}: --config={spec_text} does not load: "
                        f"{type(e).__name__}: {e}")
        continue
      problems += [f"{where}: {spec_text} has no field {field}" for field in overrides
                   if not _has_field(config, field)]
    for flag in set(registry) - before:
      delattr(registry, flag)
  return problems


def test_documented_commands_name_existing_flags_and_config_fields():
  assert len(documented_commands()) > 50  # The collection itself works.
  result = subprocess.run([sys.executable, __file__], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  problems = json.loads(result.stdout.strip().splitlines()[-1])
  assert not problems, "\n".join(problems)


if __name__ == "__main__":
  sys.path.insert(0, str(REPO))
  print(json.dumps(find_problems()))
