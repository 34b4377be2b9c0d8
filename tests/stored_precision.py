"""The check every 16-bit shipped prior passes: a separation run with the 16-bit file scored
per mixture against the PSNRs the float32 weights it replaced gave on the same run."""

import numpy as np

from basis_jax.evaluation import report, scores


def assert_psnr_kept(workdir, float32_psnr) -> None:
  """The mean PSNR within 0.5 dB of float32's, and most chains (all but 2 of 8) within 0.1 dB:
  a chain may end in another mode, which moves its PSNR by dB, not by rounding."""
  run = report.load_separations(str(workdir))
  _, arrays = scores.separation_scores(run.components, run.ground_truth, run.mixtures,
                                       run.alphas)
  change = arrays["mixture_psnr"] - np.asarray(float32_psnr)
  assert abs(change.mean()) < 0.5, change
  assert np.sum(np.abs(change) < 0.1) >= len(change) - 2, change
