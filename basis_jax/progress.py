"""Progress of a chunked separation run: its timing, the whole run's ETA, lines and a bar.

Timing comes from the sampler's host callbacks: every step of a chunk's first level
(`on_step`), every level (`on_level`), then every finished chunk (`chunk_saved`). The first
estimate of the whole run is logged as one line a few steps into the first chunk, once
its program is compiled; a run estimated at over an hour says so and how to shrink it.
Later lines refine it: one per saved chunk and one per level (at most one every 5 s), each
with mixtures done / total and the ETA of the whole run, shown as a progress bar instead
where the console is a terminal (basis_jax.console). `stop_note()` says what a Ctrl-C
waits for and about how long.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from basis_jax import console

_STEPS_BEFORE_ESTIMATE = 5  # Steps of the first level timed before the first estimate.
_LEVEL_LINE_EVERY = 5.0  # Seconds: a level's line only this long after the last line.
_BAR_EVERY = 0.25  # Seconds between redraws of the terminal's bar (steps come faster).
_HOUR = 3600.0


def duration(seconds: float) -> str:
  """`40 s`, `12 min`, `2.3 h`."""
  if seconds < 90:
    return f"{seconds:.0f} s"
  if seconds < 90 * 60:
    return f"{seconds / 60:.0f} min"
  return f"{seconds / _HOUR:.1f} h"


class RunProgress:
  """What the chunk loop reports: call its methods in the order the loop runs."""

  def __init__(self, *, total: int, already_done: int, chunks: list[tuple[int, int]],
               num_levels: int, steps_per_level: int, num_samples: int, num_devices: int):
    self.total, self.already_done, self.chunks = total, already_done, chunks
    self.num_levels, self.steps_per_level = num_levels, steps_per_level
    self.num_samples, self.num_devices = num_samples, num_devices
    # Reentrant: the Ctrl-C handler (stop_note) may run on the main thread while it holds it.
    self.lock = threading.RLock()
    self.bar = console.ProgressBar()
    self.saved = 0  # Mixtures of this run on disk.
    self.saved_chunks = 0
    self.computing = 0.0  # Seconds spent running (not compiling) the saved chunks.
    self.number, self.rows, self.started = 0, 0, None  # The chunk in flight.
    self.compiling = False
    self.levels_done, self.steps_done = 0, 0
    self.step_zero_at = None
    self.estimated = False
    self.last_line_at = 0.0
    self.drawn_at = 0.0

  # ------------------------------------------------------------------- the loop's calls

  def __enter__(self):
    self.bar.__enter__()
    return self

  def __exit__(self, *exc):
    self.bar.__exit__(*exc)

  def compiling_chunk(self, number: int, start: int, stop: int) -> None:
    with self.lock:
      self.number, self.rows, self.compiling, self.started = number, stop - start, True, None

  def chunk_started(self, number: int, start: int, stop: int) -> None:
    """The chunk's program is compiled and about to run: its clock starts."""
    with self.lock:
      self.number, self.rows, self.compiling = number, stop - start, False
      self.started, self.levels_done, self.steps_done, self.step_zero_at = (
          time.time(), 0, 0, None)
    self._draw()

  def on_step(self, step) -> None:
    """The sampler's step callback (first level only; each device reports)."""
    step = int(np.asarray(step).reshape(-1)[0])
    with self.lock:
      if step < self.steps_done or self.started is None:
        return
      self.steps_done = step + 1
      if step == 0:
        self.step_zero_at = time.time()
      ready = (not self.estimated and self.step_zero_at is not None
               and step >= min(_STEPS_BEFORE_ESTIMATE, self.steps_per_level - 1) and step > 0)
      if ready:  # Steps after the first: the first may carry one-time start-up costs.
        per_step = (time.time() - self.step_zero_at) / step
        left = self._left(per_step * self.num_levels * self.steps_per_level)
    if ready:
      self._log_estimate(left, f"from the first {step + 1} steps")
    self._draw()

  def on_level(self, level) -> None:
    """The sampler's level callback (each device reports; logged once)."""
    level = int(np.asarray(level).reshape(-1)[0])
    with self.lock:
      if level < self.levels_done or self.started is None:
        return
      self.levels_done = level + 1
      elapsed = time.time() - self.started
      chunk_seconds = elapsed * self.num_levels / self.levels_done
      left = self._left(chunk_seconds)
      first_estimate = not self.estimated
      quiet = time.time() - self.last_line_at < _LEVEL_LINE_EVERY
      if not quiet:
        self.last_line_at = time.time()
    if first_estimate:
      self._log_estimate(left, f"from the first {level + 1} level(s)")
    if quiet:
      self._draw()
      return
    logging.info("chunk %d/%d level %d/%d done: %s, ETA %s", self.number + 1, len(self.chunks),
                 level + 1, self.num_levels, self._done_text(), duration(left),
                 extra=console.PROGRESS)
    self._draw()

  def chunk_saved(self, rows: int, seconds: float) -> None:
    with self.lock:
      self.saved += rows
      self.saved_chunks += 1
      self.computing += seconds
      self.started = None
      left = self._left(0.0)
      rate = self.saved / self.computing
      first_estimate = not self.estimated
      self.last_line_at = time.time()
    if first_estimate:  # A chunk too short to report steps or levels.
      self._log_estimate(left, "from the first chunk")
    logging.info("Chunk %d/%d saved: %d/%d mixtures done, %.2f mixtures/s, ETA %s.",
                 self.number + 1, len(self.chunks), self.already_done + self.saved, self.total,
                 rate, duration(left), extra=console.PROGRESS)
    self._draw()

  def stop_note(self) -> str:
    """What the first Ctrl-C waits for, and for how long: for the cli's message."""
    with self.lock:
      kept = (f"{self.already_done + self.saved}/{self.total} mixtures are saved"
              if self.already_done + self.saved else "nothing is saved yet")
      label = f"chunk {self.number + 1}/{len(self.chunks)}"
      if self.compiling:
        return f"stopping once {label} has compiled, before it runs ({kept})"
      if self.started is None:
        return f"stopping before the next chunk ({kept})"
      left = self._chunk_seconds() - (time.time() - self.started)
      wait = f"in about {duration(max(left, 1.0))}" if left == left else "when it ends"
      if self.number == len(self.chunks) - 1:
        return f"{label} is the run's last: finishing it and the outputs, {wait}"
      return f"stopping after {label} ({self.rows} mixtures) is finished and saved, {wait} " \
             f"({kept}; the chunk in flight cannot be cut short without losing it)"

  # ------------------------------------------------------------------- estimates

  def _chunk_seconds(self) -> float:
    """Expected seconds of the chunk in flight (NaN before anything was timed)."""
    if self.saved:
      return self.rows * self.computing / self.saved
    elapsed = time.time() - self.started
    if self.levels_done:
      return elapsed * self.num_levels / self.levels_done
    if self.step_zero_at is not None and self.steps_done > 1:
      per_step = (time.time() - self.step_zero_at) / (self.steps_done - 1)
      return per_step * self.num_levels * self.steps_per_level
    return float("nan")

  def _left(self, chunk_seconds: float) -> float:
    """Seconds left in the whole run, given the chunk in flight's expected length."""
    if self.saved:
      rate = self.saved / self.computing
    else:
      rate = self.rows / max(chunk_seconds, 1e-9)
    unsaved = sum(b - a for a, b in self.chunks) - self.saved
    in_flight = 0.0
    if self.started is not None:
      in_flight = min(time.time() - self.started, chunk_seconds) * rate
    return max(0.0, (unsaved - in_flight) / rate)

  def _done_text(self) -> str:
    done = self.already_done + self.saved
    if self.started is not None and self.levels_done:
      done += self.rows * self.levels_done / self.num_levels
    return f"{done:.0f}/{self.total} mixtures ({100 * done / self.total:.0f} %)"

  def _log_estimate(self, seconds_left: float, basis: str) -> None:
    with self.lock:
      if self.estimated:
        return
      self.estimated = True
    left = sum(b - a for a, b in self.chunks)
    sizes = sorted({b - a for a, b in self.chunks}, reverse=True)
    logging.info("Estimated time for this run: %s (%d mixtures in %d chunk(s) of %s on %d "
                 "device(s); %s, refined as it goes).", duration(seconds_left), left,
                 len(self.chunks), " and ".join(map(str, sizes)), self.num_devices, basis)
    if seconds_left > _HOUR:
      logging.warning("This run needs more than an hour (about %s). %s", duration(seconds_left),
                      self.shrink_advice(seconds_left, left))

  def shrink_advice(self, seconds_left: float, mixtures_left: int) -> str:
    per_mixture = seconds_left / max(mixtures_left, 1)
    fits = int(_HOUR / per_mixture) + self.already_done
    text = f"To shrink it: --config.num_mixtures={max(fits, 1)} fits in about an hour"
    if self.num_samples > 1:
      text += (f"; one posterior sample per mixture instead of {self.num_samples} "
               "(--config.sampler.num_samples=1 --config.select=none, the ':single' variant of "
               f"configs/mnist_unet.py) needs about 1/{self.num_samples} of the time")
    return text + "."

  def _draw(self) -> None:
    if not self.bar.enabled or time.time() - self.drawn_at < _BAR_EVERY:
      return
    with self.lock:
      self.drawn_at = time.time()
      done = self.already_done + self.saved
      if self.started is not None:
        fraction = (self.levels_done + self.steps_done / self.steps_per_level
                    if self.levels_done == 0 else self.levels_done) / self.num_levels
        done += self.rows * min(fraction, 1.0)
      chunk = f"chunk {self.number + 1}/{len(self.chunks)}"
      if self.compiling:
        chunk += " compiling"
      elif self.started is not None:
        chunk += f" level {min(self.levels_done + 1, self.num_levels)}/{self.num_levels}"
      eta = ""
      if self.estimated:
        seconds = self._chunk_seconds() if self.started is not None else 0.0
        eta = f", ETA {duration(self._left(seconds))}" if seconds == seconds else ""
      text = f"{done:.0f}/{self.total} mixtures, {chunk}{eta}"
    self.bar.update(done, self.total, text)
