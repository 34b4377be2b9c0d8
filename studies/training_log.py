"""The training log of a score-network run as a markdown table (for docs/).

  python -m studies.training_log --metrics=runs/train_score_unet/metrics.jsonl

One row per held-out evaluation: step, training wall time (summed over logged windows, so
time spent paused or between sessions is not counted), images/s over the last window,
training loss, the learning rate of the window's last update (runs logged before the
trainer recorded it show '—'), and the held-out DSM loss at each σ band (EMA weights when
present), to two decimals: a cool-down moves it by less than one.
"""

import json

from absl import flags

from basis_jax import cli

_METRICS = flags.DEFINE_string("metrics", None, "A metrics.jsonl written by experiments.train.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Training batch (for images/s).")
_LOG_EVERY = flags.DEFINE_integer("log_every", 100, "Steps per logged window.")
flags.mark_flag_as_required("metrics")


def rows(records, batch_size: int, log_every: int = 100):
  """(step, hours, images/s, loss, lr, held-out losses, sigmas) per record with held-out
  losses (lr None where the record has none)."""
  out, seconds, previous = [], 0.0, None
  for r in records:
    # The first window of a file (which may start mid-run, e.g. a branched cool-down) is one
    # logging window long.
    steps = log_every if previous is None else r["step"] - previous
    previous = r["step"]
    seconds += steps / max(r["steps_per_sec"], 1e-9)
    if "heldout_loss" in r:
      heldout = r.get("heldout_loss_ema", r["heldout_loss"])
      out.append((r["step"], seconds / 3600, batch_size * r["steps_per_sec"], r["loss"],
                  r.get("lr"), heldout, r["heldout_sigmas"]))
  return out


def main(argv):
  del argv
  with open(_METRICS.value) as f:
    records = [json.loads(line) for line in f if line.strip()]
  table = rows(records, _BATCH.value, _LOG_EVERY.value)
  if not table:
    print("no held-out evaluations yet")
    return
  sigmas = table[-1][6]
  print("| step | train h | img/s | train loss | lr | "
        + " | ".join(f"σ={s:.3g}" for s in sigmas) + " |")
  print("|" + "---|" * (5 + len(sigmas)))
  for step, hours, rate, loss, lr, heldout, _ in table:
    print(f"| {step} | {hours:.2f} | {rate:.0f} | {loss:.1f} | "
          + ("—" if lr is None else f"{lr:.2g}") + " | "
          + " | ".join(f"{v:.2f}" for v in heldout) + " |")


if __name__ == "__main__":
  cli.run(main)
