"""Bad input as a new user types it: one `error:` line (and at most one `hint:`), exit 2, no
traceback, no workdir; `--help` exits 0 and lists the config's fields.

The table runs the real programs (`python -m experiments.separate ...`) through
tests/cli_cases.py: one interpreter imports the library once and forks a child per case,
so thirty command lines cost seconds, not a minute; a hang fails its case by timeout.
"""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from basis_jax.files import data_formats, workdir

from basis_jax import errors
from configs import gaussian_toy, train_ncsn_mnist
from tests.test_cli import REPO

SEP = ["-m", "experiments.separate"]
TOY = [*SEP, "--config=configs/gaussian_toy.py"]
TOY_MNIST = [*TOY, "--config.data.source=mnist"]  # Toy priors (instant), data from files.
TOY_CIFAR = [*TOY, "--config.data.source=cifar10"]
EVAL = ["-m", "experiments.evaluate"]
TRAIN = ["-m", "experiments.train", "--config=configs/train_ncsn_mnist.py"]

# (case, argv with {tmp} and {w} (a workdir that must not appear), the exact last lines).
CASES = [
    ("config file mistyped", [*SEP, "--config=configs/mnist_unte.py", "--workdir={w}"], [
        "error: config file configs/mnist_unte.py does not exist.",
        "hint: did you mean --config=configs/mnist_unet.py?"]),
    ("variant mistyped", [*SEP, "--config=configs/mnist_unet.py:clas_split", "--workdir={w}"], [
        "error: --config=configs/mnist_unet.py:clas_split: no variant 'clas_split'; use "
        "mixtures (agnostic, class_split, heldout), a quality (single, default, best) or both, "
        "e.g. ':class_split,best'."]),
    ("variant to a config without any", [*SEP, "--config=configs/gaussian_toy.py:big",
                                         "--workdir={w}"], [
        "error: --config=configs/gaussian_toy.py:big: configs/gaussian_toy.py takes no argument "
        "(got ':big').", "hint: use --config=configs/gaussian_toy.py"]),
    ("config is a folder", [*SEP, "--config=configs", "--workdir={w}"], [
        "error: config file configs is a directory.",
        "hint: name one config file in it (e.g. --config=configs/benchmark_ncsn.py)."]),
    ("no --config", [*SEP, "--workdir={w}"], [
        "error: --config is required.", "hint: --help shows what each flag means."]),
    ("no --workdir", [*SEP, "--config=configs/gaussian_toy.py"], [
        "error: --workdir is required.", "hint: --help shows what each flag means."]),
    ("flag mistyped", [*TOY, "--workdr={w}"], [
        "error: Unknown command line flag 'workdr'. Did you mean: workdir ?",
        "hint: --help lists the flags."]),
    ("stray argument", [*TOY, "--workdir={w}", "extra"], [
        "error: Unexpected arguments: ['extra']",
        "hint: flags take the form --name=value; --help lists them."]),
    ("config key mistyped", [*TOY, "--workdir={w}", "--config.schedule.stp_lr=1"], [
        "error: config.schedule has no field 'stp_lr'; valid keys of config.schedule: step_lr, "
        "gammas, likelihood_weight, num_levels, sigma_max, sigma_min, sigmas, steps_per_level",
        "hint: did you mean --config.schedule.step_lr?"]),
    ("config value of the wrong type", [*TOY, "--workdir={w}", "--config.num_mixtures=many"], [
        "error: --config.num_mixtures=many: config.num_mixtures takes an integer (its value "
        "is 16).",
        "hint: --help lists every field with its value."]),
    ("config value out of range", [*TOY, "--workdir={w}", "--config.schedule.step_lr=-1"], [
        "error: step_lr (δ) must be positive, got -1.0."]),
    ("batch size 0", [*TOY, "--workdir={w}", "--config.batch_size=0"], [
        "error: batch_size must be at least 1, got 0.",
        "hint: --config.batch_size=N sets how many mixtures run per chunk."]),
    ("no mixtures", [*TOY, "--workdir={w}", "--config.num_mixtures=0"], [
        "error: num_mixtures must be at least 1, got 0.",
        "hint: to separate the whole test set give its size, e.g. --config.num_mixtures=10000."]),
    ("workdir under a file", [*TOY, "--workdir={tmp}/file/run"], [
        "error: cannot create workdir {tmp}/file/run: {tmp}/file is a file.",
        "hint: choose a --workdir whose parent is a directory."]),
    ("weights that do not exist", [*SEP, "--config=configs/mnist_ncsn.py", "--workdir={w}",
                                   "--config.prior.weights={tmp}/ncsn.npz"], [
        "error: Weights file not found: {tmp}/ncsn.npz"]),
    ("Metropolis with a score prior", [*SEP, "--config=configs/mnist_unet.py", "--workdir={w}",
                                       "--config.sampler.metropolis=True"], [
        "error: sampler.metropolis needs each prior's exact log-density, whose gradient is its "
        "score; score_unet has none (a score network's likelihood is a bound).",
        "hint: use it with Glow priors, or set --config.sampler.metropolis=False."]),
    ("data path that does not exist", [*TOY_MNIST, "--workdir={w}",
                                       "--config.data.path={tmp}/nowhere"], [
        "error: config.data.path {tmp}/nowhere does not exist.",
        "hint: point --config.data.path at the dataset files, or leave it empty to read the "
        "dataset through tfds."]),
    ("MNIST path names a .gz file", [*TOY_MNIST, "--workdir={w}",
                                     "--config.data.path={tmp}/mnist/t10k-images-idx3-ubyte.gz"], [
        "error: config.data.path {tmp}/mnist/t10k-images-idx3-ubyte.gz is a file; MNIST is read "
        "from the folder that holds its four idx files.",
        "hint: --config.data.path={tmp}/mnist"]),
    ("MNIST files damaged", [*TOY_MNIST, "--workdir={w}", "--config.data.path={tmp}/mnist"], [
        "error: Checksum mismatch for {tmp}/mnist/t10k-images-idx3-ubyte.gz: sha256 is "
        "d1163c4946f9fbcdfe13e504c69be57c0ee7553786482b9322fee723e434092c, the published file "
        "has 8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6; it is "
        "truncated, corrupt or not the standard distribution.",
        "hint: download it again, or pass --config.data.verify_checksums=False for a file "
        "changed on purpose."]),
    ("CIFAR-10 .npz that is not one", [*TOY_CIFAR, "--workdir={w}",
                                       "--config.data.path={tmp}/cifar.npz"], [
        "error: {tmp}/cifar.npz is not an .npz archive (np.savez writes a zip file; this is not "
        "one, or it is truncated).",
        "hint: data.path takes the cifar-10-batches-py folder, cifar-10-python.tar.gz or an .npz "
        "written by np.savez."]),
    ("tfds data not prepared", [*TOY_MNIST, "--workdir={w}",
                                "--config.data.tfds_data_dir={tmp}/tfds"], [
        "error: tfds dataset 'mnist' (split 'test') is not prepared in {tmp}/tfds, and "
        "config.data.download is False.",
        "hint: use --config.data.path=DIR (local files: the folder of the four MNIST .gz files); "
        "or prepare it with pip install 'basis-jax[prepare]' and `tfds build mnist "
        "--file_format=array_record` (--config.data.download=True lets tfds download and "
        "prepare it)."]),
    ("resume under another config", [*TOY, "--workdir={tmp}/other_seed"], [
        "error: The workdir {tmp}/other_seed holds results of a different config; these keys "
        "change the results: seed.",
        "hint: use a new --workdir, or pass --allow_config_change if you mean to mix results."]),
    ("a program flag as a config field", [*TOY, "--workdir={w}",
                                          "--config.allow_config_change=True"], [
        "error: --config.allow_config_change=True: allow_config_change is a flag of the "
        "program, not a field of its config.", "hint: use --allow_config_change"]),
    ("train: resume under another config", [*TRAIN, "--workdir={tmp}/other_train"], [
        "error: The workdir {tmp}/other_train holds a training run of a different config; these "
        "keys change what is trained: seed.",
        "hint: use a new --workdir, or pass --allow_config_change to continue anyway (the run "
        "then mixes two settings)."]),
    ("train: the old spelling of --allow_config_change", [
        *TRAIN, "--workdir={tmp}/other_train", "--config.allow_config_change=True"], [
        "error: --config.allow_config_change=True: allow_config_change is a flag of the "
        "program, not a field of its config.", "hint: use --allow_config_change"]),
    ("evaluate: no workdir", [*EVAL], [
        "error: --workdir is required.", "hint: --help shows what each flag means."]),
    ("evaluate: workdir as a config field", [*EVAL, "--config.workdir={tmp}"], [
        "error: --config.workdir={tmp}: workdir is a flag of the program, not a field of its "
        "config.", "hint: use --workdir={tmp}"]),
    ("evaluate: not a run", [*EVAL, "--workdir={tmp}"], [
        "error: {tmp}/separations.npz not found; run experiments/separate.py first."]),
    ("evaluate: bad choice", [*EVAL, "--workdir={tmp}", "--config.inception=sometimes"], [
        "error: inception='sometimes'; expected 'auto', 'required' or 'never'."]),
]


def _prepare(tmp):
  """The files the cases point at."""
  (tmp / "file").write_text("")
  (tmp / "mnist").mkdir()
  for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    with gzip.GzipFile(tmp / "mnist" / name, "wb", mtime=0) as f:
      f.write(b"\x00\x00\x08\x01\x00\x00\x00\x00")
  (tmp / "cifar.npz").write_bytes(b"\x80\x04 this is a pickle, not an npz" * 4)
  other = tmp / "other_seed"  # A run of the toy config with another seed, one chunk done.
  other.mkdir()
  saved = workdir._config_dict(gaussian_toy.get_config())  # pylint: disable=protected-access
  saved["seed"] += 1
  (other / "config.json").write_text(json.dumps(saved))
  (other / "index.json").write_text(json.dumps({"chunks": [{"range": [0, 1]}]}))
  other_train = tmp / "other_train"  # A training run of the NCSN config with another seed.
  other_train.mkdir()
  saved = json.loads(train_ncsn_mnist.get_config().to_json_best_effort(sort_keys=True))
  saved["seed"] += 1
  (other_train / "config.json").write_text(json.dumps(saved))


def run_cases(cases, timeout=120):
  """Results of each {"argv": [...]} case, run by tests/cli_cases.py (see its docstring)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1", PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, str(REPO / "tests" / "cli_cases.py")],
                          input=json.dumps(cases), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout * len(cases), check=True)
  return json.loads(result.stdout)


@pytest.fixture(scope="module")
def table_results(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("cli")
  _prepare(tmp)
  fill = lambda text, name: text.format(tmp=tmp, w=tmp / f"w_{name.replace(' ', '_')}")
  cases = [{"argv": [fill(a, name) for a in argv]} for name, argv, _ in CASES]
  results = dict(zip([name for name, _, _ in CASES], run_cases(cases)))
  return tmp, fill, results


@pytest.mark.parametrize("name, expected", [(name, lines) for name, _, lines in CASES],
                         ids=[name for name, _, _ in CASES])
def test_a_user_mistake_is_one_error_line(table_results, name, expected):
  tmp, fill, results = table_results
  result = results[name]
  stderr = result["stderr"]
  assert result["returncode"] == 2, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  lines = stderr.rstrip("\n").splitlines()
  expected = [fill(line, name) for line in expected]
  assert lines[-len(expected):] == expected
  # Only the error (and its hint) may follow the program's own progress lines.
  assert not any(line.startswith(("error:", "hint:")) for line in lines[:-len(expected)])
  assert not (tmp / f"w_{name.replace(' ', '_')}").exists(), "nothing may be written"


def test_help_exits_0_and_lists_the_config_fields():
  results = run_cases([
      {"argv": [*SEP, "--help"]},
      {"argv": [*SEP, "--config=configs/mnist_unet.py", "--help"]},
      {"argv": [*SEP, "--helpfull", "--config=configs/mnist_unet.py",
                "--config.num_mixtures=20"]},
      {"argv": [*EVAL, "--help"]}])
  assert [r["returncode"] for r in results] == [0, 0, 0, 0], [r["stderr"] for r in results]
  plain, with_config, full, evaluate = (r["stdout"] for r in results)
  assert "--workdir: Output directory" in plain and "--config=FILE with --help" in plain
  lines = with_config.splitlines()
  assert "config fields of configs/mnist_unet.py (set any with --config.FIELD=VALUE):" in lines
  field = next(line for line in lines if line.lstrip().startswith("num_mixtures = "))
  assert field.split() [:3] == ["num_mixtures", "=", "50"] and "how many mixtures" in field
  assert any(line.lstrip().startswith("sampler.num_samples = 2 ") for line in lines)
  assert any(line.lstrip().startswith("num_mixtures = 20 ") for line in full.splitlines())
  assert "--helpfull" not in full.split("config fields")[1]
  assert "--[no]only_check_args" in full  # --helpfull: every flag, then the fields.
  assert "histogram_bins = 40" in evaluate


def test_every_program_spells_the_shared_flags_the_same():
  """--workdir is a run's directory in every program; --allow_config_change is the one way
  to continue a workdir under a changed config, in each program that resumes one."""
  resumes = {"separate": True, "train": True, "train_glow": True, "evaluate": False,
             "best_of_s": False, "label_recovery": False, "benchmark": False,
             "train_classifier": True, "posterior_samples": False}
  results = run_cases([{"argv": ["-m", f"experiments.{name}", "--help"]} for name in resumes])
  for (name, resumable), result in zip(resumes.items(), results):
    assert result["returncode"] == 0, (name, result["stderr"][-3000:])
    assert "\n  --workdir: " in result["stdout"], name
    assert ("--[no]allow_config_change: " in result["stdout"]) == resumable, name


def test_every_separation_config_field_has_a_meaning():
  """FIELD_HELP (configs/base_separation.py) covers every field of every separation config."""
  import importlib  # pylint: disable=import-outside-toplevel
  from basis_jax import config_help  # pylint: disable=import-outside-toplevel
  from configs import base_separation  # pylint: disable=import-outside-toplevel
  names = ["gaussian_toy", "mnist_unet", "mnist_ncsn", "mnist_glow", "cifar_unet",
           "cifar_color_unet", "cifar_ncsn", "cifar_color_ncsn", "cifar_glow", "lsun_glow"]
  missing = set()
  for name in names:
    config = importlib.import_module(f"configs.{name}").get_config()
    for line in config_help.config_fields(config, base_separation.FIELD_HELP):
      field = line.split(" = ")[0].strip()
      if not config_help.field_meaning(field, base_separation.FIELD_HELP):
        missing.add(f"{name}: {field}")
  assert not missing, sorted(missing)


def test_data_loaders_name_the_fix():
  """What the table's data cases print, at the library level (where notebooks meet it)."""
  with pytest.raises(errors.InputFileError) as gz:
    data_formats.load_mnist_files(__file__, "test")
  assert gz.value.hint == f"--config.data.path={os.path.dirname(__file__)}"


def test_cifar10_path_hints(tmp_path):
  np.savez(tmp_path / "cifar.npz", images=np.zeros((2, 32, 32, 3), np.uint8))
  with pytest.raises(errors.InputFileError) as folder:
    data_formats.load_cifar10_files(str(tmp_path), "test")
  assert folder.value.hint.endswith(f"--config.data.path={tmp_path / 'cifar.npz'}")
  with pytest.raises(errors.InputFileError) as keys:
    data_formats.load_cifar10_files(str(tmp_path / "cifar.npz"), "test")
  assert "holds ['images']; expected x_test and y_test" in str(keys.value)
  assert keys.value.hint.startswith("save it as np.savez(path, x_test=")
