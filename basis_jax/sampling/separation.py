"""A separation run from a config: priors, mixtures, chunked sampling, outputs on disk.

Mixtures are processed in chunks of `config.batch_size` (global, across devices). Each
chunk is written atomically to WORKDIR/chunks/ and recorded in WORKDIR/index.json, so a
killed run resumed with the same command skips finished chunks and ends with the same
bytes as an uninterrupted one (noise depends only on (seed, mixture position)). At the
end the chunks are assembled into WORKDIR/separations.npz:

  mixtures [N, *mixture_shape], components [N, k, H, W, C] (or [N, S, k, H, W, C]),
  ground_truth [N, k, H, W, C] when known, indices (dataset items mixed), positions [N],
  residual_norm, score_norm [N, (S,) L], acceptance [N, (S,) L] (with sampler.metropolis),
  alphas.

Mixtures, components and ground truth are saved in the dataset's space; a prior that works
in another (`Prior.to_prior`/`from_prior`) gets its mixtures mapped in and its components
mapped back.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from basis_jax.files import atomic

from basis_jax import cli, console, errors

from basis_jax.sampling import memory, mixing as mixing_lib

from basis_jax.evaluation import metrics, report, scores
from basis_jax.files import mixtures as mixtures_lib
from basis_jax import overview, priors as priors_lib
from basis_jax import progress as progress_lib
from basis_jax.sampling import run_config, sampler, schedules, selection
from basis_jax.files import sharding
from basis_jax.evaluation import visualize
from basis_jax.files import workdir as workdir_lib
from basis_jax.errors import ConfigError


@dataclasses.dataclass
class Job:
  """Everything built from a config, before any compilation."""

  schedule: schedules.Schedule
  mixing: mixing_lib.MixingOperator
  priors: list[priors_lib.Prior]  # One per component (the same object when shared).
  options: sampler.SamplerOptions
  params: Any
  separate: Any
  settings: run_config.RunSettings  # The config's run-level sections, checked once.


def build_priors(config, schedule, k: int) -> list[priors_lib.Prior]:
  specs = list(config.get("priors") or ())
  if specs:
    if config.get("prior") is not None:
      raise errors.ConfigError(
          "Both config.priors (one prior per component) and config.prior are set; config.priors "
          "would silently replace config.prior.", hint="Set config.prior = None in a config "
          "that lists config.priors, or empty config.priors to use config.prior.")
    if len(specs) != k:
      raise ConfigError(f"config.priors lists {len(specs)} priors but there are {k} components.")
    built = [priors_lib.load(spec, schedule) for spec in specs]
  else:
    built = [priors_lib.load(config.prior, schedule)] * k
  shapes = {p.image_shape for p in built}
  if len(shapes) != 1:
    raise ConfigError(f"All component priors must share one image shape, got {sorted(shapes)}.")
  if any(p.data_space != built[0].data_space for p in built):
    # Mixtures are mapped into one space (mixtures_to_prior_space).
    raise ConfigError(f"All component priors must work in one data space, got "
                      f"{[p.data_space for p in built]}.")
  for prior in built:
    if prior.num_levels is not None and prior.num_levels != schedule.num_levels:
      raise ConfigError(f"Prior {prior.name!r} was trained for {prior.num_levels} noise levels but "
                        f"the schedule has {schedule.num_levels}.")
  return built


def build_job(config, progress=None, step_progress=None) -> Job:
  """Checks the config (run_config.check, once) and builds its priors and separator."""
  settings = run_config.check(config)
  k = settings.num_components
  priors = build_priors(config, settings.schedule, k)
  options = settings.options_for(priors[0].default_init)
  inexact = sorted({p.name for p in priors if not p.exact_log_density})
  if options.metropolis and inexact:
    raise ConfigError(f"sampler.metropolis needs each prior's exact log-density, whose gradient "
                      f"is its score; {', '.join(inexact)} has none (a score network's "
                      "likelihood is a bound).", hint="use it with Glow priors, or set "
                      "--config.sampler.metropolis=False.")
  rank_fn = selection.make_rank_fn(settings.select, priors, settings.mixing,
                                   settings.schedule.num_levels)
  shared = all(p is priors[0] for p in priors)
  separate = sampler.make_separator(
      priors[0].score_fn if shared else [p.score_fn for p in priors], settings.mixing,
      settings.schedule, component_shape=priors[0].image_shape, num_components=k,
      select_level=priors[0].select_level if shared else [p.select_level for p in priors],
      options=options, progress=progress, step_progress=step_progress, rank_fn=rank_fn,
      log_density_fn=(priors[0].log_density_fn if shared
                      else [p.log_density_fn for p in priors]) if options.metropolis else None)
  params = priors[0].params if shared else tuple(p.params for p in priors)
  return Job(settings.schedule, settings.mixing, priors, options, params, separate, settings)


def best_of_s(config, workdir: str) -> dict:
  """Best of S after the fact in a finished run's workdir (`experiments.best_of_s`): by the
  likelihood under the run's priors, the rules of the in-run choice (`selection.best_of_s`).
  Writes best_of_s.npz and best_of_s.json (the scores of `evaluation.scores`) and returns
  the latter."""
  path = os.path.join(workdir, "separations.npz")
  if not os.path.exists(path):
    raise errors.MissingFileError(f"{path} not found.", hint="run experiments.separate on this "
                                  "workdir first, with the same --config.")
  run = report.load_separations(workdir)
  samples = run.components
  if samples.shape[1] == 1:
    raise errors.ConfigError(f"{path} holds one sample per mixture (components "
                             f"{samples.shape}).", hint="run the separation with "
                             "--config.sampler.num_samples > 1.")
  schedule = run_config.check(config).schedule
  priors = build_priors(config, schedule, samples.shape[2])
  best, index, sample_scores = selection.best_of_s(samples, priors,
                                                   num_levels=schedule.num_levels)
  atomic.save_npz(os.path.join(workdir, "best_of_s.npz"), components=best, index=index,
                  scores=sample_scores)
  summary = {"num_mixtures": int(samples.shape[0]), "num_samples": int(samples.shape[1])}
  if run.ground_truth is not None:
    # separations.npz is in the dataset's [0, 1] space: peak 1, as experiments.evaluate.
    scored, _ = scores.separation_scores(best, run.ground_truth, run.mixtures, run.alphas,
                                         samples=samples)
    summary.update(scored)
  atomic.write_json(os.path.join(workdir, "best_of_s.json"), summary)
  return summary


def load_mixtures(config, job: Job) -> mixtures_lib.MixtureSet:
  """The mixtures to separate: drawn from the priors, or from data (basis_jax.files.mixtures)."""
  if config.data.source == "prior":
    mixture_set = mixtures_lib.from_priors(
        [p.sample for p in job.priors], config.num_mixtures, config.mixture.seed,
        tuple(config.mixing.alphas))
  else:
    mixture_set = mixtures_lib.from_config(config, job.priors[0].data_shape)
  if mixture_set.ground_truth is None:
    return mixture_set
  # Picked ground truth is mixed by the run's operator, the one definition of g.
  return dataclasses.replace(mixture_set,
                             mixtures=mixing_lib.mix(job.mixing, mixture_set.ground_truth))


def mixtures_to_prior_space(mixtures: np.ndarray, job: Job) -> np.ndarray:
  """Dataset-space mixtures in the prior's space: mapped like a component image.

  Exact for a g that acts pixel by pixel (its mixtures have the components' shape), as the
  data space maps are linear and keep zero (`base.DataSpace`); other g's are refused.
  """
  prior = job.priors[0]
  if prior.data_space.is_identity:
    return mixtures
  if mixtures.shape[1:] != prior.data_shape:
    raise ConfigError(f"Mixtures of shape {mixtures.shape[1:]} cannot be mapped into the "
                      f"space of the {prior.name} prior (from {prior.data_shape} to "
                      f"{prior.image_shape}); use a mixing operator that acts pixel by pixel.")
  return prior.to_prior(mixtures)




class _ProgressRelay:
  """The sampler's host callbacks (built with the job), forwarded to the run's
  RunProgress once the chunks are planned."""

  def __init__(self):
    self.target: progress_lib.RunProgress | None = None

  def on_step(self, step):
    if self.target is not None:
      self.target.on_step(step)

  def on_level(self, level):
    if self.target is not None:
      self.target.on_level(level)


def run(config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False,
        log_file: bool = False, on_chunk_recorded: Callable[[int], None] | None = None):
  """Separates `config.num_mixtures` mixtures into `workdir`, resuming if possible.

  With `log_file`, log lines also go to WORKDIR/separate.log (separate.pN.log for
  process N > 0). `on_chunk_recorded(n)` is called once this run's n-th chunk (from 1) is
  on disk and in the index: a seam for callers (tests kill the run there). The first
  Ctrl-C stops after the chunk in flight is saved, the second at once (basis_jax.cli).
  """
  sharding.initialize_distributed(config.get("distributed"))
  workdir_lib.validate_path(workdir)
  relay = _ProgressRelay()
  # Everything that can refuse the run comes before the workdir, so a refused run leaves none.
  job = build_job(config, progress=relay.on_level, step_progress=relay.on_step)
  mixture_set = load_mixtures(config, job)
  num_mixtures = mixture_set.mixtures.shape[0]
  prior_mixtures = mixtures_to_prior_space(mixture_set.mixtures, job)
  sampler.validate_mixtures(prior_mixtures, job.separate.mixture_shape)
  work = workdir_lib.Workdir(workdir)
  if log_file:
    console.log_to(work.file("separate.log" if jax.process_index() == 0 else
                             f"separate.p{jax.process_index()}.log"))
  work.check_config(config, allow_config_change, [p.weights_digest for p in job.priors])
  if jax.process_count() == 1:  # With several processes another may be writing already.
    work.remove_stale_temporaries()
  for number, prior in enumerate({id(p): p for p in job.priors}.values()):
    overview.log_parameter_overview(prior.params, f"Prior {number} ({prior.name})")
  mesh = sharding.make_mesh()
  num_devices = mesh.devices.size
  jitted = sharding.jit_batch_fn(job.separate, mesh)
  key = jax.random.key(config.seed)
  params = jax.device_put(job.params, sharding.replicated(mesh))

  index = work.read_index()
  damaged = work.drop_damaged_chunks(index, jax.process_index())
  for line in damaged:
    logging.warning(line)
  if damaged and jax.process_index() == 0:
    atomic.write_json(work.file("index.json"), index)
  _sync("checked_chunks")
  done = [c["range"] for c in index["chunks"]]
  chunks = workdir_lib.plan_chunks(num_mixtures, config.batch_size, done)
  already_done = sum(b - a for a, b in done)
  logging.info("%d mixtures: %d already done, %d chunk(s) of <= %d to run on %d device(s).",
               num_mixtures, already_done, len(chunks), config.batch_size, num_devices)
  progress = progress_lib.RunProgress(
      total=num_mixtures, already_done=already_done, chunks=chunks,
      num_levels=job.schedule.num_levels, steps_per_level=job.schedule.steps_per_level,
      num_samples=job.options.num_samples, num_devices=num_devices)
  relay.target = progress
  compiled = {}
  in_flight = None  # The chunk (number) being compiled or run, lost if stopped at once.
  try:
    with progress, cli.stop_after_work_in_flight(progress.stop_note):
      for number, (start, stop) in enumerate(chunks):
        if cli.stop_requested():
          raise KeyboardInterrupt
        in_flight = number
        rows = stop - start
        positions = sharding.pad_batch(np.arange(start, stop, dtype=np.int32), num_devices)
        batch = sharding.pad_batch(prior_mixtures[start:stop], num_devices)
        global_rows = len(positions)
        lo, hi = sharding.process_row_range(mesh, global_rows)
        args = (params, sharding.global_batch(mesh, batch[lo:hi], global_rows), key,
                sharding.global_batch(mesh, positions[lo:hi], global_rows))
        if global_rows not in compiled:
          progress.compiling_chunk(number, start, stop)
          compiled[global_rows] = cli.wait_for(lambda: jitted.lower(*args).compile())
          memory.check_chunk_fits(compiled[global_rows], global_rows,
                                  job.settings.max_device_memory_gb)
          if cli.stop_requested():
            in_flight = None
            raise KeyboardInterrupt
        progress.chunk_started(number, start, stop)
        t0 = time.time()
        local = cli.wait_for(_local_results, compiled[global_rows], args)
        seconds = time.time() - t0
        keep = np.arange(lo, hi) < rows  # Drop the padding rows.
        local = {name: value[keep] for name, value in local.items()}
        mine = positions[lo:hi][keep]
        sampler.check_diverged(local, mine, job.schedule)
        for name in ("components", "samples", "snapshots"):
          if name in local:
            local[name] = job.priors[0].from_prior(local[name])
        if mine.size:
          fields = {name: local[name] for name in workdir_lib.RESULT_FIELDS if name in local}
          atomic.save_npz(work.chunk_file(start, stop, jax.process_index()), positions=mine,
                          **fields)
        _sync(f"chunk_{start}")
        if jax.process_index() == 0:
          work.record_chunk(index, start, stop, jax.process_count())
          _append_chunk_metrics(work, start, stop, seconds, local, mine, mixture_set, job)
        in_flight = None
        progress.chunk_saved(rows, seconds)
        if on_chunk_recorded is not None:
          on_chunk_recorded(number + 1)
  except KeyboardInterrupt:
    saved = f"{already_done + progress.saved}/{num_mixtures} mixtures are saved"
    if in_flight is not None:
      what = f"during chunk {in_flight + 1}/{len(chunks)}, whose work is lost"
    elif progress.saved_chunks:
      what = f"after chunk {progress.saved_chunks}/{len(chunks)}"
    else:
      what = f"before chunk 1/{len(chunks)}"
    raise KeyboardInterrupt(f"interrupted {what}: {saved}; re-run the same command to "
                            "resume") from None

  if jax.process_index() == 0:
    return assemble(work, config, mixture_set, job)
  return None


def _local_results(compiled, args) -> dict[str, np.ndarray]:
  """Runs a compiled chunk; this process's rows of each output, on the host."""
  out = compiled(*args)
  return {name: sharding.local_rows(value) for name, value in out.items()}


def _append_chunk_metrics(work, start, stop, seconds, local, mine, mixture_set, job) -> None:
  record = {"chunk": [start, stop], "seconds": seconds,
            "residual_norm_mean": float(np.mean(local["residual_norm"])),
            "score_norm_per_level": np.mean(local["score_norm"].reshape(
                -1, job.schedule.num_levels), axis=0).tolist()}
  if "acceptance" in local:
    record["acceptance_per_level"] = np.mean(local["acceptance"].reshape(
        -1, job.schedule.num_levels), axis=0).tolist()
  if mixture_set.ground_truth is not None and local["components"].ndim == 5:
    record["psnr_mean"] = metrics.separation_psnr(
        local["components"], mixture_set.ground_truth[mine], 1.0)["mixture"].mean().item()
  with open(work.file("metrics.jsonl"), "a") as f:
    f.write(json.dumps(record) + "\n")


def summary_line(summary: dict) -> str:
  """One line for the end of a run: BASIS vs its baseline, PSNR mean ± 95 % interval.

  For colorization the baseline is the gray image itself (as RGB); for sums the paper's
  Average (the mixture divided among the components).
  """
  colorization = summary.get("baseline") == "gray image"
  text = f"{summary['num_mixtures']} {'images colorized' if colorization else 'mixtures'}"
  if "psnr" in summary:
    basis, baseline = summary["psnr"], summary["average_baseline_psnr"]
    ours = "colorized" if colorization else "BASIS"
    theirs = "the gray image" if colorization else "Average"
    text += (f": {ours} {basis['mean']:.1f} ± {basis['ci95']:.1f} dB vs {theirs} "
             f"{baseline['mean']:.1f} ± {baseline['ci95']:.1f} dB PSNR"
             f"{' against the original' if colorization else ''} (mean ± 95 % interval)")
    if not colorization and summary.get("image_shape", [1])[-1] == 3:
      # CIFAR-10-like sums: many image pairs give nearly the same mixture (paper, Section 5).
      text += "; on natural images PSNR is not the measure (docs/outputs.md)"
  return text


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def _read_chunk(path: str) -> dict[str, np.ndarray]:
  with np.load(path) as chunk:
    return {name: chunk[name] for name in chunk.files}


def assemble(work: workdir_lib.Workdir, config, mixture_set: mixtures_lib.MixtureSet,
             job: Job) -> dict:
  """Reads every chunk file and writes separations.npz, metrics.json and a PNG grid."""
  num_mixtures = mixture_set.mixtures.shape[0]
  fields: dict[str, np.ndarray] = {}
  filled = np.zeros(num_mixtures, bool)
  for entry in work.read_index()["chunks"]:
    start, stop = entry["range"]
    for process in range(entry.get("processes", 1)):
      path = work.chunk_file(start, stop, process)
      if not os.path.exists(path):
        continue
      try:
        chunk = _read_chunk(path)
      except Exception as e:  # pylint: disable=broad-except  # Damage surfaces as many types.
        raise errors.InputFileError(
            f"chunk file {os.path.relpath(path, work.path)} is damaged ({type(e).__name__}).",
            hint="re-run the same command: it checks every chunk and computes damaged ones "
                 "again.") from e
      positions = chunk["positions"]
      for name in workdir_lib.RESULT_FIELDS:
        if name in chunk:
          if name not in fields:
            fields[name] = np.zeros((num_mixtures,) + chunk[name].shape[1:], chunk[name].dtype)
          fields[name][positions] = chunk[name]
      filled[positions] = True
  if not filled.all():
    missing = np.flatnonzero(~filled)
    raise errors.InputFileError(
        f"{missing.size} mixture(s) have no chunk file (first: {missing[:5].tolist()}).",
        hint="re-run the same command to compute them.")
  arrays = {"mixtures": mixture_set.mixtures, "positions": np.arange(num_mixtures),
            "alphas": np.asarray(mixture_set.alphas, np.float32), **fields}
  if mixture_set.ground_truth is not None:
    arrays["ground_truth"] = mixture_set.ground_truth
  if mixture_set.indices is not None:
    arrays["indices"] = mixture_set.indices
  atomic.save_npz(work.file("separations.npz"), **arrays)
  colorization = isinstance(job.mixing, mixing_lib.Grayscale)
  summary = {"num_mixtures": num_mixtures,
             "num_components": job.mixing.num_components,
             "image_shape": list(fields["components"].shape[-3:]),
             "num_samples": job.options.num_samples,
             "residual_norm_mean": float(fields["residual_norm"].mean())}
  components = fields["components"]
  if "samples" in fields:
    summary["select"] = job.settings.select
  if mixture_set.ground_truth is not None and components.ndim == 5:
    # The one score producer; with samples, what the choice was worth (one sample, the
    # oracle, the mean).
    scored, _ = scores.separation_scores(components, mixture_set.ground_truth,
                                         mixture_set.mixtures, mixture_set.alphas,
                                         samples=fields.get("samples"))
    summary.update(scored)
    summary["baseline"] = "gray image" if colorization else "Average"
  atomic.write_json(work.file("metrics.json"), summary)
  shown = components if components.ndim == 5 else components[:, 0]
  figure = visualize.separation_figure(
      mixture_set.mixtures, shown, mixture_set.ground_truth,
      max_rows=job.settings.grid_rows,
      labels=visualize.COLORIZATION_LABELS if colorization else visualize.SEPARATION_LABELS)
  visualize.save_figure(work.file("separations.png"), figure)
  if job.settings.component_pngs:
    count = visualize.save_component_pngs(work.file("components"), components)
    logging.info("Wrote %d component PNGs to %s.", count, work.file("components"))
  logging.info("%s; wrote %s, separations.png and metrics.json.", summary_line(summary),
               work.file("separations.npz"))
  return summary
