"""Defaults shared by the training configs: the `config.optim` section.

Every trainer builds its optimizer with `basis_jax.training.optim` from a full `config.optim`
(the factory reads every field and refuses a missing one), so the defaults of that section
are written here and nowhere else.
"""

import ml_collections

OPTIM_DEFAULTS = {
    # 'adam' (score networks, as the reference trains) | 'sgd_nesterov' (the classifier) |
    # 'adamax' (Glow, as openai/glow trains).
    "name": "adam",
    "lr": 1e-3,
    "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,  # adam, adamax
    "momentum": 0.9,  # sgd_nesterov
    "grad_clip": 0.0,  # Global-norm clip; 0: none.
    "weight_decay": 0.0,  # Decoupled, on kernels (ndim > 1) only.
    "warmup_steps": 0,  # Linear warm-up.
    # Cool-down: from update decay_start, lr falls linearly to lr·final_lr_factor over
    # decay_steps updates (0: constant lr after the warm-up).
    "decay_start": 0, "decay_steps": 0, "final_lr_factor": 0.0,
}


def optim(**values) -> ml_collections.ConfigDict:
  """A full `config.optim` section: OPTIM_DEFAULTS with `values` (known keys only)."""
  unknown = sorted(set(values) - set(OPTIM_DEFAULTS))
  if unknown:
    raise ValueError(f"Unknown config.optim field(s) {unknown}; the fields are "
                     f"{sorted(OPTIM_DEFAULTS)}.")
  return ml_collections.ConfigDict({**OPTIM_DEFAULTS, **values})
