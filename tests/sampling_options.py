"""Sampler options for tests: config.sampler's defaults, written once in
configs/base_separation.py, with overrides (the start, when not given, is U(0, 1))."""

from basis_jax.priors.base import UNIFORM_INIT
from basis_jax.sampling import sampler
from configs import base_separation


def sampler_options(**overrides) -> sampler.SamplerOptions:
  return sampler.SamplerOptions.from_section(base_separation.get_config().sampler,
                                             UNIFORM_INIT, **overrides)
