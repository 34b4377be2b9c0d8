"""The one producer of a separation's scores against its ground truth, in one key schema.

`separation_scores` is what a run writes into metrics.json (`sampling/separation.assemble`),
what `experiments.evaluate` writes into eval.json, what `experiments.best_of_s` writes into
best_of_s.json and what the studies read. Every score is a `metrics.summarize` dict
(mean, std, ci95, n) of per-mixture values:

- `psnr`: per-mixture PSNR of the kept sample (with S samples in `components`
  [N, S, k, ...], each sample scored on its own, then averaged per mixture);
- `average_baseline_psnr`: the baseline on the same mixtures, the Average (m / Σα per
  component) or, for colorization, the gray image;
- `psnr_single_sample`, `psnr_oracle`, `psnr_posterior_mean`: with the `samples` a
  selection chose among, one chain, the best of the S by PSNR, and their aligned mean;
- `ssim`, `average_baseline_ssim`: with `ssim=True`, SSIM under the same matching;

plus the plain numbers `fraction_components_above_29_5`, `fraction_mixtures_above_average`
and, with `samples`, `selected_from` (their S). The arrays (per-component and per-mixture
PSNR, for histograms and paired comparisons) come back beside the summary, never inside it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from basis_jax.evaluation import metrics
from basis_jax.sampling import selection


def separation_scores(components: np.ndarray, ground_truth: np.ndarray,
                      mixtures: np.ndarray, alphas: Sequence[float] | None, *,
                      samples: np.ndarray | None = None, ssim: bool = False,
                      data_range: float = 1.0) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(summary, arrays) of separated `components` [N, k, H, W, C] or [N, S, k, H, W, C].

  `samples` [N, S, k, ...]: the samples a selection chose `components` [N, k, ...] from, to
  say what the choice was worth. arrays: `component_psnr` [N, S, k], `mixture_psnr` [N].
  """
  components = np.asarray(components)
  if components.ndim == ground_truth.ndim:
    components = components[:, None]
  if components.ndim != ground_truth.ndim + 1 or components.shape[2:] != ground_truth.shape[1:]:
    raise ValueError(f"components {components.shape} do not match the ground truth "
                     f"{ground_truth.shape} ([N, k, H, W, C], or [N, S, k, H, W, C]).")
  per_sample = [metrics.separation_psnr(components[:, i], ground_truth, data_range)
                for i in range(components.shape[1])]
  component = np.stack([r["component"] for r in per_sample], 1)  # [N, S, k]
  per_mixture = component.mean(axis=(1, 2))
  average = metrics.average_baseline(mixtures, ground_truth.shape[1], alphas,
                                     channels=ground_truth.shape[-1])
  baseline = metrics.separation_psnr(average, ground_truth, data_range)
  summary: dict[str, Any] = {
      "psnr": metrics.summarize(per_mixture),
      "average_baseline_psnr": metrics.summarize(baseline["mixture"]),
      "fraction_components_above_29_5": float(np.mean(component > 29.5)),
      # Mixtures whose separation scores above the baseline's on the same mixture.
      "fraction_mixtures_above_average": float(np.mean(per_mixture > baseline["mixture"]))}
  if samples is not None and components.shape[1] == 1:
    summary["selected_from"] = int(samples.shape[1])
    for name, values in selection.sample_psnr_summary(samples, components[:, 0], ground_truth,
                                                      data_range).items():
      if name != "chosen":  # = psnr
        summary[f"psnr_{name}"] = metrics.summarize(values)
  if ssim:
    values = np.stack([metrics.matched_ssim(components[:, i], ground_truth,
                                            per_sample[i]["permutation"])
                       for i in range(components.shape[1])], 1)
    summary["ssim"] = metrics.summarize(values.mean(axis=(1, 2)))
    summary["average_baseline_ssim"] = metrics.summarize(
        metrics.matched_ssim(average, ground_truth, baseline["permutation"]).mean(axis=1))
  return summary, {"component_psnr": component, "mixture_psnr": per_mixture}
