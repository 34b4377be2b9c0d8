"""The run's progress as a person sees it: the estimate, the advice for long runs, the bar."""

import io
import logging

from basis_jax import console, progress


class _Terminal(io.StringIO):

  def isatty(self):
    return True


def test_the_bar_redraws_below_log_lines_and_progress_lines_stay_in_the_log(tmp_path):
  terminal = _Terminal()
  console.route_logging(str(tmp_path / "run.log"))
  root = logging.getLogger()
  handler = next(h for h in root.handlers if getattr(h, "_basis_console", False))
  handler.setStream(terminal)
  try:
    with console.ProgressBar(terminal) as bar:
      bar.update(120, 500, "120/500 mixtures, ETA 38 min")
      logging.info("chunk 1/2 level 3/10 done", extra=console.PROGRESS)  # The bar says it.
      logging.warning("something to see")
    text = terminal.getvalue()
    assert "\r[######------------------] 120/500 mixtures, ETA 38 min" in text
    assert "chunk 1/2 level 3/10" not in text
    warning = text.index("WARNING: something to see")
    assert text.rfind("\r\033[K", 0, warning) > text.index("120/500")  # Bar cleared first...
    assert text.rindex("120/500 mixtures") > warning  # ...and drawn again below.
    assert "chunk 1/2 level 3/10 done" in (tmp_path / "run.log").read_text()
  finally:
    console.route_logging()


def test_a_long_run_is_told_how_to_shrink():
  run = progress.RunProgress(total=20000, already_done=0, chunks=[(0, 20000)], num_levels=10,
                             steps_per_level=50, num_samples=2, num_devices=2)
  advice = run.shrink_advice(seconds_left=20000 * 7.2, mixtures_left=20000)
  assert advice.startswith("To shrink it: --config.num_mixtures=500 fits in about an hour; ")
  assert "--config.sampler.num_samples=1 --config.select=none" in advice
  assert [progress.duration(s) for s in (40, 720, 27 * 3600)] == ["40 s", "12 min", "27.0 h"]
