"""basis-jax: BASIS source separation with deep generative priors, on JAX."""

__version__ = "0.1.0"
