"""What a resumed run keeps: Ctrl-C (once: finish and save the chunk in flight; twice: stop
at once) and chunk files damaged on disk (named, computed again, the rest kept); either
way the final separations.npz equals an uninterrupted run's, byte for byte."""

import json
import logging
import os
import signal
import subprocess
import time

import pytest

from basis_jax.sampling import separation
from tests.test_separation_runs import REPO, _env, _separate_cmd, _toy_config

# Three chunks of about 3 s each on one CPU device (the toy's first level reports each of
# its 8,000 steps): long enough to be interrupted in flight.
SLOW = ("--config.num_mixtures=6", "--config.batch_size=2",
        "--config.schedule.steps_per_level=8000")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """separations.npz of an uninterrupted run of SLOW."""
  workdir = tmp_path_factory.mktemp("reference")
  subprocess.run(_separate_cmd(workdir, *SLOW), cwd=REPO, env=_env(), check=True,
                 capture_output=True, timeout=300)
  return (workdir / "separations.npz").read_bytes()


def _interrupt(workdir, presses):
  """Runs SLOW, presses Ctrl-C `presses` times while chunk 2/3 is in flight; returns
  (exit status, console lines, seconds from the first press to the note, to the exit)."""
  process = subprocess.Popen(_separate_cmd(workdir, *SLOW), cwd=REPO, env=_env(),
                             stderr=subprocess.PIPE, text=True)
  lines, pressed, noted = [], None, None
  try:
    for line in process.stderr:
      lines.append(line.rstrip("\n"))
      if pressed is None and "Chunk 1/3 saved" in line:
        time.sleep(1.0)  # Into chunk 2 (about 3 s).
        pressed = time.time()
        process.send_signal(signal.SIGINT)
      elif pressed is not None and noted is None and "Ctrl-C: " in line:
        noted = time.time()
        if presses == 2:
          process.send_signal(signal.SIGINT)
    process.wait(timeout=300)
  finally:
    if process.poll() is None:
      process.kill()
  assert pressed is not None and noted is not None, "\n".join(lines)
  return process.returncode, lines, noted - pressed, time.time() - pressed


def test_ctrl_c_finishes_and_saves_the_chunk_in_flight_then_resumes(tmp_path, reference):
  status, lines, to_note, to_exit = _interrupt(tmp_path, presses=1)
  assert status == 130, "\n".join(lines)
  assert to_note < 2.0, to_note  # At once, though XLA is busy with chunk 2.
  note = next(line for line in lines if "Ctrl-C: " in line)
  assert "stopping after chunk 2/3 (2 mixtures) is finished and saved, in about " in note
  assert "Press Ctrl-C again to stop now." in note
  assert lines[-1] == ("interrupted after chunk 2/3: 4/6 mixtures are saved; re-run the same "
                       "command to resume")
  assert not any("Traceback" in line for line in lines)
  assert len(json.loads((tmp_path / "index.json").read_text())["chunks"]) == 2
  log = (tmp_path / "separate.log").read_text()
  assert "Ctrl-C: stopping after chunk 2/3" in log and lines[-1] in log
  subprocess.run(_separate_cmd(tmp_path, *SLOW), cwd=REPO, env=_env(), check=True,
                 capture_output=True, timeout=300)
  assert (tmp_path / "separations.npz").read_bytes() == reference


def test_a_second_ctrl_c_stops_at_once_keeping_finished_chunks(tmp_path, reference):
  status, lines, _, to_exit = _interrupt(tmp_path, presses=2)
  assert status == 130, "\n".join(lines)
  assert to_exit < 5.0, to_exit  # Not the rest of the chunk.
  assert lines[-1] == ("interrupted during chunk 2/3, whose work is lost: 2/6 mixtures are "
                       "saved; re-run the same command to resume")
  assert len(json.loads((tmp_path / "index.json").read_text())["chunks"]) == 1
  assert lines[-1] in (tmp_path / "separate.log").read_text()
  subprocess.run(_separate_cmd(tmp_path, *SLOW), cwd=REPO, env=_env(), check=True,
                 capture_output=True, timeout=300)
  assert (tmp_path / "separations.npz").read_bytes() == reference


# ----------------------------------------------------------------------------- damage


def _truncate(path):
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _flip_bytes(path):
  raw = bytearray(path.read_bytes())
  for i in range(len(raw) // 2, len(raw) // 2 + 8):  # Inside an array's data.
    raw[i] ^= 0xFF
  path.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def finished_toy_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("undamaged")
  separation.run(_toy_config(), str(workdir))  # 12 mixtures in chunks [0,5), [5,10), [10,12).
  return workdir


def _copy(source, target):
  import shutil  # pylint: disable=import-outside-toplevel
  shutil.copytree(source, target)
  return target


@pytest.mark.parametrize("damage", [_truncate, _flip_bytes, os.unlink],
                         ids=["truncated", "bytes flipped", "deleted"])
def test_a_damaged_chunk_is_named_and_computed_again(tmp_path, finished_toy_run, damage, caplog):
  workdir = _copy(finished_toy_run, tmp_path / "run")
  chunk = workdir / "chunks" / "chunk_00000005_00000010.p000.npz"
  kept = workdir / "chunks" / "chunk_00000000_00000005.p000.npz"
  kept_stat = kept.stat()
  damage(chunk)
  (workdir / "separations.npz").unlink()
  with caplog.at_level(logging.INFO):
    separation.run(_toy_config(), str(workdir))
  problem = "is missing" if damage is os.unlink else "is damaged (its SHA-256 differs"
  named = [r.getMessage() for r in caplog.records if "chunks/chunk_00000005_00000010" in
           r.getMessage()]
  assert len(named) == 1 and problem in named[0], named
  assert named[0].endswith("; computing mixtures [5, 10) again.")
  assert "7 already done, 1 chunk(s)" in caplog.text  # The other two chunks are kept...
  assert kept.stat().st_mtime_ns == kept_stat.st_mtime_ns  # ...untouched.
  assert ((workdir / "separations.npz").read_bytes() ==
          (finished_toy_run / "separations.npz").read_bytes())


def test_an_index_without_checksums_still_resumes(tmp_path, finished_toy_run, caplog):
  """A workdir written before checksums: chunks that load are kept, one that fails is not."""
  workdir = _copy(finished_toy_run, tmp_path / "old")
  index = json.loads((workdir / "index.json").read_text())
  for entry in index["chunks"]:
    del entry["sha256"]
  (workdir / "index.json").write_text(json.dumps(index))
  _flip_bytes(workdir / "chunks" / "chunk_00000010_00000012.p000.npz")
  (workdir / "separations.npz").unlink()
  with caplog.at_level(logging.INFO):
    separation.run(_toy_config(), str(workdir))
  assert ("chunk file chunks/chunk_00000010_00000012.p000.npz is damaged (it does not load); "
          "computing mixtures [10, 12) again.") in caplog.text
  assert "10 already done" in caplog.text
  assert ((workdir / "separations.npz").read_bytes() ==
          (finished_toy_run / "separations.npz").read_bytes())
  recorded = json.loads((workdir / "index.json").read_text())["chunks"]
  assert [("sha256" in entry) for entry in recorded] == [False, False, True]


def test_a_chunk_damaged_after_the_check_fails_assembly_with_one_line(tmp_path,
                                                                      finished_toy_run):
  from basis_jax import errors  # pylint: disable=import-outside-toplevel
  from basis_jax.files import workdir as workdir_lib
  workdir = _copy(finished_toy_run, tmp_path / "late")
  _truncate(workdir / "chunks" / "chunk_00000000_00000005.p000.npz")
  config = _toy_config()
  job = separation.build_job(config)
  with pytest.raises(errors.InputFileError, match=r"chunk file chunks/chunk_00000000_00000005"
                     r"\.p000\.npz is damaged \(BadZipFile\)\.") as error:
    separation.assemble(workdir_lib.Workdir(str(workdir)), config,
                        separation.load_mixtures(config, job), job)
  assert error.value.hint.startswith("re-run the same command")
