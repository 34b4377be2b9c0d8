"""The BASIS sampler: annealed Langevin dynamics on p(x | m), compiled as one program.

For every noise level i (σ_1 > … > σ_L) and step t = 1..T, all k components of a mixture
move together (Jacobi; the released CIFAR runner updates them one after the other):

    x ← x + η_i · ( s_θ(x, i) + w/γ_i² · J_gᵀ (m − g(x)) ) + √(2η_i) · ε

with η_i = δ·σ_i²/σ_L². The sign of the data term is the released code's (it pulls x
towards the mixture); the paper's Algorithm 1 prints it with a minus.

With `metropolis` (priors with a log-density: Glow, the Gaussian toy) each step is a
Metropolis-adjusted Langevin (MALA) proposal of the level's target
log π_i(x) = Σ_j log p_σi(x_j) − w/(2γ_i²)·‖m − g(x)‖² (on g(x) = m with the hard
constraint), accepted with probability min(1, π_i(x')q(x | x')/(π_i(x)q(x' | x))): the
proposal is the step above, so every accepted step is the plain update, and a step into a
region where the density is too sharp for η_i is refused instead of diverging. A
deviation from the paper (its chains never reject), off by default.

`make_separator` returns ONE pure function. Its whole L×T schedule is a nested
`lax.scan` (levels outside, steps inside); the per-mixture update is `vmap`ped over
mixtures and the prior is called once per step on all N·k components as one batch.
Noise for mixture n comes from `fold_in(key, n)`, so a mixture gets the same result
alone, in any batch, or on any number of devices (see `files/sharding.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from basis_jax.sampling import mixing as mixing_lib, selection
from basis_jax.errors import ConfigError, InputFileError, UserError
from basis_jax.priors.base import ScoreFn, _identity_level
from basis_jax.sampling.schedules import Schedule

INITS = ("uniform", "normal")
RankFn = selection.RankFn  # rank_fn(params, x [M, k, H, W, C], mixtures [M, ...]) -> [M].
# log_density_fn(params, x [B, H, W, C], level) -> [B].
LogDensityFn = Callable[[Any, jax.Array, Any], jax.Array]


class SamplingDivergedError(UserError, FloatingPointError):
  """The Langevin state became non-finite; carries where it began (the fix is usually δ)."""

  def __init__(self, indices, levels, sigmas):
    self.indices = np.asarray(indices)
    self.levels = np.asarray(levels)
    first = int(self.levels.min())
    shown = ", ".join(f"mixture {n} at level {level} (σ={sigmas[level]:.4g})"
                      for n, level in list(zip(self.indices, self.levels))[:8])
    more = "" if len(self.indices) <= 8 else f" and {len(self.indices) - 8} more"
    super().__init__(
        "Sampling diverged (non-finite state, or |x| above the sampler's divergence_bound) "
        f"for {len(self.indices)} mixture(s): {shown}{more}. "
        f"The earliest divergence began at level {first} (σ={sigmas[first]:.4g}); lower "
        "sampler step_lr (δ) or the likelihood weight, or check the prior's weights.")


@dataclasses.dataclass(frozen=True)
class SamplerOptions:
  """Static options of the sampler (each value change means a new compilation).

  Every field is required: their defaults are `config.sampler`'s in
  configs/base_separation.py, the one place they are written; `from_section` reads such a
  section.
  """

  init: str  # 'uniform': U(init_range) (NCSN); 'normal': N(init_mean, 1) (Glow).
  init_range: tuple[float, float]
  init_mean: float  # Glow in [0, 1] space: 0.5 is the reference's N(0, 1) in [−½, ½].
  clamp: tuple[float, float] | None  # Final clamp; the MNIST runner uses (0, 1).
  num_samples: int  # Posterior samples per mixture; > 1 adds an S axis.
  hard_constraint: bool  # Project onto g(x) = m after every step (linear g).
  snapshots: bool  # Keep the state at the end of every level (paper Figure 9).
  # Metropolis-adjusted Langevin: accept or refuse every step (module docstring; needs the
  # priors' log_density_fn).
  metropolis: bool
  unroll: int  # lax.scan unroll of the inner step loop.
  # A state with |x| above this at the end of a level counts as diverged, like a non-finite
  # one: a state that explodes to huge finite values would otherwise be hidden by the clamp.
  divergence_bound: float
  # After `prune_after` levels (0: never) keep the `survivors` best of the S chains of each
  # mixture (ranked like the final choice, on the denoised state) and run only those on:
  # selection before the cost is spent. A survivor's noise is its chain's, so it ends
  # exactly where that chain would have ended without pruning.
  prune_after: int
  survivors: int

  @classmethod
  def from_section(cls, section, default_init: Mapping[str, Any] | None = None,
                   **overrides) -> SamplerOptions:
    """The options a `config.sampler` section sets, each field read, then `overrides`.

    An empty `init` means the prior's own start, `default_init` (a prior's
    `Prior.default_init`: `init` and, as it needs, `init_range` or `init_mean`).
    """
    values = {}
    for field in dataclasses.fields(cls):
      if field.name in overrides:
        continue
      try:
        values[field.name] = section[field.name]
      except (KeyError, AttributeError):
        raise ConfigError(f"config.sampler has no field {field.name!r}.",
                          hint="every separation config starts from "
                               "configs/base_separation.py, which sets each field.") from None
    values.update(overrides)
    if not values["init"]:
      if default_init is None:
        raise ConfigError("config.sampler.init is empty (the prior's own start), but no prior "
                          "start was given.")
      values.update(default_init)
    values["init_range"] = tuple(values["init_range"])
    values["clamp"] = tuple(values["clamp"] or ()) or None
    return cls(**values)

  def __post_init__(self):
    if self.init not in INITS:
      raise ConfigError(f"Unknown init {self.init!r}; choose one of {INITS}.")
    if int(self.num_samples) != self.num_samples or self.num_samples < 1:
      raise ConfigError(f"num_samples must be an integer >= 1, got {self.num_samples}.")
    if self.clamp is not None and not self.clamp[0] < self.clamp[1]:
      raise ConfigError(f"clamp must be (low, high) with low < high, got {self.clamp}.")
    if int(self.unroll) < 1:
      raise ConfigError(f"unroll must be >= 1, got {self.unroll}.")
    if not self.divergence_bound > 0:
      raise ConfigError(f"divergence_bound must be > 0, got {self.divergence_bound}.")
    if int(self.prune_after) != self.prune_after or self.prune_after < 0:
      raise ConfigError(f"prune_after must be an integer >= 0 (levels), got {self.prune_after}.")
    if self.prune_after and not 1 <= self.survivors < self.num_samples:
      raise ConfigError(f"Pruning keeps survivors (got {self.survivors}) of num_samples "
                        f"(got {self.num_samples}) chains: it needs 1 <= survivors < "
                        "num_samples.")

  @property
  def final_samples(self) -> int:
    """Chains per mixture that run to the last level."""
    return self.survivors if self.prune_after else self.num_samples


def _as_tuple(value, k, name):
  if isinstance(value, (list, tuple)):
    if len(value) != k:
      raise ConfigError(f"{name} has {len(value)} entries but there are {k} components.")
    return tuple(value)
  return None


def make_separator(
    score_fn: ScoreFn | Sequence[ScoreFn],
    mixing: mixing_lib.MixingOperator,
    schedule: Schedule,
    *,
    component_shape: tuple[int, int, int],
    num_components: int | None = None,
    select_level: Callable | Sequence[Callable] | None = None,
    options: SamplerOptions,
    progress: Callable[[int], None] | None = None,
    step_progress: Callable[[int], None] | None = None,
    rank_fn: RankFn | None = None,
    log_density_fn: LogDensityFn | Sequence[LogDensityFn] | None = None,
) -> Callable[..., dict[str, jax.Array]]:
  """Builds `separate(params, mixtures, key, indices) -> dict` (pure, jit-able).

  Args:
    score_fn: ∇ log p_σ(x) as `score_fn(params, x[B,H,W,C], level)`; one callable shared by
      all components, or a sequence of k (then `params` is a sequence of k too).
    mixing: the operator g; its `num_components` is k.
    schedule: σ ladder, T, δ, w, γ.
    component_shape: (H, W, C) of one component.
    num_components: optional check against `mixing.num_components`.
    select_level: per-level parameter slicing (Glow); called once per level.
    options: see `SamplerOptions`.
    progress: host function called with the level index after each level.
    step_progress: host function called with the step index t after each step of the
      first level only: an early timing (a run's ETA within seconds, not after a level).
    rank_fn: `rank_fn(params, x [M, k, H, W, C], mixtures [M, ...]) -> [M]`, higher is
      better (`basis_jax.sampling.selection`): with S > 1 samples it picks each mixture's result
      (and the survivors when `options.prune_after` is set).
    log_density_fn: log p_σ(x) as `log_density_fn(params, x[B,H,W,C], level) -> [B]`, one
      or k like `score_fn` (whose gradient it must be); needed by `options.metropolis`, which
      then takes the scores from it.

  The returned function takes params, mixtures [N, *mixture_shape], a PRNG key and
  int32 indices [N] (the global index of each mixture; noise derives from it) and returns
  `components` [N, k, H, W, C] (or [N, S, k, H, W, C] with S = num_samples > 1 and no
  rank_fn), `diverged_level` [N] or [N, S] (first level whose final state is non-finite or
  beyond `options.divergence_bound` in absolute value, -1 if none; checked before the clamp),
  `residual_norm` (‖g(x) − m‖ per sample at the end), `score_norm` [N, (S,) L] (mean
  per-component score norm at each level's last step), with `metropolis` `acceptance`
  [N, (S,) L] (the fraction of each level's steps accepted) and, with snapshots, `snapshots`
  [N, (S,) L, k, H, W, C]. With a rank_fn and S > 1, `components` is each mixture's chosen
  sample and beside it: `samples` [N, S', k, H, W, C] (the S' = `options.final_samples`
  chains that ran to the end), `sample_scores` [N, S'], `chosen` [N] (index into samples),
  `sample_index` [N, S'] (each kept chain's number among the S) and, with pruning,
  `prune_scores` [N, S]; the per-sample fields then describe the S' kept chains.
  """
  k = mixing.num_components
  if num_components is not None and num_components != k:
    raise ConfigError(f"num_components={num_components} but the mixing operator has {k} "
                      "components (one α per component).")
  if k < 1:
    raise ConfigError(f"num_components (k) must be >= 1, got {k}.")
  if options.hard_constraint and not mixing.is_linear:
    raise ConfigError(f"hard_constraint needs a linear mixing operator; "
                      f"{type(mixing).__name__} is not.")
  component_shape = tuple(int(d) for d in component_shape)
  if len(component_shape) != 3:
    raise ConfigError(f"component_shape must be (H, W, C), got {component_shape}.")
  if options.prune_after:
    if rank_fn is None:
      raise ConfigError("Pruning chains (prune_after > 0) needs a selection criterion to rank "
                        "them by; none was given (select='none').")
    if options.prune_after >= schedule.num_levels:
      raise ConfigError(f"prune_after={options.prune_after} leaves no level to run the "
                        f"survivors on (the schedule has {schedule.num_levels}); use 1 .. "
                        f"{schedule.num_levels - 1}.")

  # One prior for all components, or one (score_fn, params, select_level) per component.
  score_fns = _as_tuple(score_fn, k, "score_fn")
  metropolis = options.metropolis
  if metropolis:
    if log_density_fn is None or (isinstance(log_density_fn, (list, tuple))
                                  and any(fn is None for fn in log_density_fn)):
      raise ConfigError("sampler.metropolis needs the log-density of every component's prior; "
                        "this prior has none (Glow and the Gaussian toy have one).")
    if (score_fns is None) != (_as_tuple(log_density_fn, k, "log_density_fn") is None):
      raise ConfigError("Give log_density_fn as score_fn is given: one shared, or one per "
                        "component.")
  select_shared = _identity_level if select_level is None else select_level
  if score_fns is not None:
    selects = _as_tuple(select_level, k, "select_level") or (select_shared,) * k

  sigmas = np.asarray(schedule.sigmas, np.float32)
  step_sizes = jnp.asarray(schedule.step_sizes())
  inv_gamma2 = jnp.asarray(1.0 / schedule.likelihood_variances())
  weight = float(schedule.likelihood_weight)
  num_steps_per_level = schedule.steps_per_level
  num_samples = options.num_samples
  selecting = rank_fn is not None and num_samples > 1
  prune_after = options.prune_after

  def prior_score(level_params, x, level):
    """Scores for x [M, k, H, W, C], the prior called on whole batches."""
    m = x.shape[0]
    if score_fns is None:
      flat = x.reshape((m * k,) + component_shape)
      return score_fn(level_params, flat, level).reshape(x.shape)
    return jnp.stack([fn(p, x[:, j], level)
                      for j, (fn, p) in enumerate(zip(score_fns, level_params))], axis=1)

  def prior_log_density_and_score(level_params, x, level):
    """(Σ_j log p(x_j) [M], scores [M, k, H, W, C]) for x [M, k, H, W, C], one pass."""
    m = x.shape[0]

    def value_and_score(fn, p, flat):
      def total(flat):
        values = fn(p, flat, level)
        return jnp.sum(values), values
      (_, values), grad = jax.value_and_grad(total, has_aux=True)(flat)
      return values, grad

    if score_fns is None:
      values, grad = value_and_score(log_density_fn, level_params,
                                     x.reshape((m * k,) + component_shape))
      return values.reshape(m, k).sum(-1), grad.reshape(x.shape)
    pairs = [value_and_score(fn, p, x[:, j])
             for j, (fn, p) in enumerate(zip(log_density_fn, level_params))]
    return sum(v for v, _ in pairs), jnp.stack([g for _, g in pairs], axis=1)

  def select(params, level):
    if score_fns is None:
      return select_shared(params, level)
    return tuple(fn(p, level) for fn, p in zip(selects, params))

  def init_one(key):
    shape = (k,) + component_shape
    if options.init == "uniform":
      low, high = options.init_range
      return jax.random.uniform(key, shape, jnp.float32, low, high)
    return options.init_mean + jax.random.normal(key, shape, jnp.float32)

  def drift(x, mixture, score, inv_g2):
    """∇ log π_i(x) for ONE mixture: the prior's score plus the weighted data term."""
    return score + weight * inv_g2 * mixing.likelihood_direction(x, mixture)

  def constrained(x, mixture):
    return mixing.project(x, mixture) if options.hard_constraint else x

  def data_step(x, mixture, score, key, step_size, inv_g2):
    """One Langevin step for ONE mixture (vmapped over the batch)."""
    noise = jax.random.normal(key, x.shape, x.dtype)
    x = x + step_size * drift(x, mixture, score, inv_g2) + jnp.sqrt(2.0 * step_size) * noise
    return constrained(x, mixture)

  batched_data_step = jax.vmap(data_step, in_axes=(0, 0, 0, 0, None, None))

  def metropolis_accept(x, proposal, mixture, score, proposal_score, log_p, proposal_log_p, key,
                        step_size, inv_g2):
    """Whether ONE mixture's proposal is accepted (MALA's Metropolis-Hastings test).

    With the hard constraint both points lie on g(x) = m and the proposal's noise is the
    projection of isotropic noise onto that plane, so the proposal density is the isotropic
    Gaussian N(P(x + η∇log π(x)), 2η) within it and the data term is constant there.
    """
    def log_target(z, log_p):
      residual = mixture - mixing(z)
      return log_p - 0.5 * weight * inv_g2 * jnp.sum(residual**2)

    def log_proposal(to, frm, frm_score):
      mean = constrained(frm + step_size * drift(frm, mixture, frm_score, inv_g2), mixture)
      return -jnp.sum((to - mean)**2) / (4.0 * step_size)

    log_ratio = (log_target(proposal, proposal_log_p) - log_target(x, log_p)
                 + log_proposal(x, proposal, proposal_score)
                 - log_proposal(proposal, x, score))
    # Its own stream: the plain step's noise (`key`) is unchanged by turning MALA on.
    uniform = jax.random.uniform(jax.random.fold_in(key, 1), (), jnp.float32)
    return jnp.log(uniform) < log_ratio  # A non-finite proposal (NaN ratio) is refused.

  batched_accept = jax.vmap(metropolis_accept,
                            in_axes=(0, 0, 0, 0, 0, 0, 0, 0, None, None))

  def clamped(x):
    return x if options.clamp is None else jnp.clip(x, *options.clamp)

  def run_levels(params, x, diverged_level, obs, step_keys, first: int, last: int):
    """Levels [first, last) for the rows of x: (x, diverged_level, per-level outputs)."""
    rows = x.shape[0]

    def level_body(carry, level_inputs):
      x, diverged_level = carry
      level, step_size, inv_g2 = level_inputs
      level_params = select(params, level)

      def step_keys_at(t):
        global_step = level * num_steps_per_level + t
        return jax.vmap(lambda sk: jax.random.fold_in(sk, global_step))(step_keys)

      def report_step(t, x):
        if step_progress is not None and first == 0:
          # A value of this step's x makes the callback wait for the step's work.
          jax.lax.cond(level == 0, lambda: jax.debug.callback(
              lambda t, _: step_progress(t), t, jnp.max(x)), lambda: None)

      def step_body(carry, t):
        x, _ = carry
        score = prior_score(level_params, x, level)
        x = batched_data_step(x, obs, score, step_keys_at(t), step_size, inv_g2)
        report_step(t, x)
        return (x, score), None  # Only the last score is kept (for its norm), not all T.

      def metropolis_step_body(carry, t):
        x, score, log_p, accepted = carry
        keys = step_keys_at(t)
        proposal = batched_data_step(x, obs, score, keys, step_size, inv_g2)
        proposal_log_p, proposal_score = prior_log_density_and_score(level_params, proposal,
                                                                     level)
        accept = batched_accept(x, proposal, obs, score, proposal_score, log_p, proposal_log_p,
                                keys, step_size, inv_g2)

        def take(new, old):
          """Each row's proposal where it was accepted, else its current value."""
          return jnp.where(accept.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

        x = take(proposal, x)
        report_step(t, x)
        return (x, take(proposal_score, score), take(proposal_log_p, log_p),
                accepted + accept.astype(jnp.float32)), None

      steps = jnp.arange(num_steps_per_level)
      if metropolis:
        # The level's own density at the state it starts from (one pass per level).
        log_p, score = prior_log_density_and_score(level_params, x, level)
        (x, last_score, _, accepted), _ = jax.lax.scan(
            metropolis_step_body, (x, score, log_p, jnp.zeros((rows,), jnp.float32)), steps,
            unroll=options.unroll)
      else:
        (x, last_score), _ = jax.lax.scan(step_body, (x, jnp.zeros_like(x)), steps,
                                          unroll=options.unroll)
      score_norm = jnp.mean(jnp.sqrt(jnp.sum(last_score.reshape(rows, k, -1)**2, -1)), -1)
      flat = x.reshape(rows, -1)
      bounded = jnp.all(jnp.isfinite(flat) & (jnp.abs(flat) <= options.divergence_bound), -1)
      diverged_level = jnp.where((diverged_level < 0) & ~bounded, level, diverged_level)
      if progress is not None:
        # Handing over a value computed from this level's x makes the callback wait for the
        # level's work; with `level` alone XLA may run it first (a level ahead of the work).
        # A scalar of it, not the sharded rows: gathering those onto one device for the host
        # was an "involuntary full rematerialization" in every sharded run.
        jax.debug.callback(lambda level, _: progress(level), level, jnp.max(diverged_level))
      outputs = {"score_norm": score_norm}
      if metropolis:
        outputs["acceptance"] = accepted / num_steps_per_level
      if options.snapshots:
        outputs["snapshots"] = x
      return (x, diverged_level), outputs

    levels = jnp.arange(first, last, dtype=jnp.int32)
    (x, diverged_level), per_level = jax.lax.scan(
        level_body, (x, diverged_level),
        (levels, step_sizes[first:last], inv_gamma2[first:last]))
    # Per-level outputs with the level axis after the rows: [rows, levels, ...].
    return x, diverged_level, {name: jnp.moveaxis(v, 0, 1) for name, v in per_level.items()}

  def ranked(params, x, obs, num_rows):
    """rank_fn's scores [N, num_rows] of (clamped) states x; a non-finite score ranks last."""
    return selection.rankable(rank_fn(params, x, obs).reshape(-1, num_rows))

  def prune(params, x, obs, level):
    """Scores [N, S] of the chains after `level` (on the denoised state, E[x₀ | x] = x +
    σ²·s(x, σ) by Tweedie's formula) and the survivors' chain numbers [N, r], ascending."""
    denoised = x + sigmas[level] ** 2 * prior_score(select(params, level), x, level)
    scores = ranked(params, clamped(denoised), obs, num_samples)
    _, best = jax.lax.top_k(scores, options.survivors)
    return scores, jnp.sort(best, axis=1)

  def separate(params, mixtures, key, indices=None):
    num_mixtures = mixtures.shape[0]
    if indices is None:
      indices = jnp.arange(num_mixtures, dtype=jnp.int32)
    # One key per (mixture, sample); samples of a mixture are contiguous rows.
    mixture_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)
    sample_keys = jax.vmap(lambda mk: jax.vmap(lambda s: jax.random.fold_in(mk, s))(
        jnp.arange(num_samples)))(mixture_keys).reshape((-1,) + mixture_keys.shape[1:])
    init_keys, step_keys = jnp.split(jax.vmap(lambda sk: jax.random.split(sk, 2))(sample_keys),
                                     2, axis=1)
    init_keys, step_keys = init_keys[:, 0], step_keys[:, 0]
    obs = jnp.repeat(mixtures.astype(jnp.float32), num_samples, axis=0)
    x = jax.vmap(init_one)(init_keys)
    if metropolis and options.hard_constraint:
      # MALA's proposals stay on g(x) = m, so the chain must start there: from a start off
      # the plane no step back to it could be proposed, and every step would be refused.
      x = jax.vmap(constrained)(x, obs)
    diverged_level = jnp.full((x.shape[0],), -1, jnp.int32)
    extra = {}
    if prune_after:
      x, diverged_level, early = run_levels(params, x, diverged_level, obs, step_keys,
                                            0, prune_after)
      prune_scores, kept = prune(params, x, obs, prune_after - 1)
      rows = (jnp.arange(num_mixtures)[:, None] * num_samples + kept).reshape(-1)
      x, diverged_level, obs, step_keys = (a[rows] for a in (x, diverged_level, obs, step_keys))
      x, diverged_level, late = run_levels(params, x, diverged_level, obs, step_keys,
                                           prune_after, schedule.num_levels)
      per_level = {name: jnp.concatenate([early[name][rows], late[name]], axis=1)
                   for name in late}
      extra = {"prune_scores": prune_scores, "sample_index": kept}
    else:
      x, diverged_level, per_level = run_levels(params, x, diverged_level, obs, step_keys,
                                                0, schedule.num_levels)
    kept_per_mixture = options.final_samples
    residual_norm = mixing_lib.residual_norm(mixing, x, obs)
    x = clamped(x)

    def unflatten(a):
      if kept_per_mixture == 1 and not selecting:
        return a
      return a.reshape((num_mixtures, kept_per_mixture) + a.shape[1:])

    result = {
        "components": unflatten(x),
        "diverged_level": unflatten(diverged_level),
        "residual_norm": unflatten(residual_norm),
        "score_norm": unflatten(per_level["score_norm"]),
    }
    if metropolis:
      result["acceptance"] = unflatten(per_level["acceptance"])
    if options.snapshots:
      result["snapshots"] = unflatten(per_level["snapshots"])
    if selecting:
      samples = result["components"]
      scores = ranked(params, x, obs, kept_per_mixture)
      chosen = selection.choose(scores)
      every_chain = jnp.broadcast_to(jnp.arange(num_samples, dtype=jnp.int32),
                                     (num_mixtures, num_samples))
      result.update({"sample_index": every_chain, **extra, "samples": samples,
                     "sample_scores": scores, "chosen": chosen,
                     "components": samples[jnp.arange(num_mixtures), chosen]})
    return result

  separate.component_shape = component_shape
  separate.mixture_shape = mixing.mixture_shape(component_shape)
  separate.num_components = k
  separate.schedule = schedule
  return separate


def make_prior_sampler(score_fn: ScoreFn, schedule: Schedule, component_shape,
                       options: SamplerOptions | None = None):
  """Unconditional annealed Langevin (NCSN's Algorithm 1) with the separator's own loop.

  It is the BASIS update with no data term: one component, g = identity, likelihood weight
  0, so η, the noise and the level scan are those of `make_separator` (one Langevin loop
  in the project). Without `options`: NCSN's start U(0, 1), no check of divergence beyond a
  non-finite state, result clipped to [0, 1]. Returns `sample(params, key, num) ->
  [num, H, W, C]`; `num` must be static under jit.
  """
  options = options or SamplerOptions(
      init="uniform", init_range=(0.0, 1.0), init_mean=0.0, clamp=(0.0, 1.0), num_samples=1,
      hard_constraint=False, snapshots=False, metropolis=False, unroll=1,
      divergence_bound=float("inf"), prune_after=0, survivors=1)
  unconditional = dataclasses.replace(schedule, likelihood_weight=0.0)
  separate = make_separator(score_fn, mixing_lib.Sum((1.0,)), unconditional,
                            component_shape=component_shape, options=options)

  def sample(params, key, num: int):
    nothing_observed = jnp.zeros((num,) + separate.mixture_shape, jnp.float32)
    return separate(params, nothing_observed, key)["components"][:, 0]

  return sample


def validate_mixtures(mixtures, mixture_shape: tuple[int, ...]) -> np.ndarray:
  """Checks a host batch of mixtures before anything is compiled."""
  mixtures = np.asarray(mixtures)
  expected = tuple(mixture_shape)
  if mixtures.ndim != len(expected) + 1:
    raise ConfigError(f"Mixtures must have shape [N, {', '.join(map(str, expected))}] "
                      f"(rank {len(expected) + 1}); got shape {mixtures.shape}.")
  if tuple(mixtures.shape[1:]) != expected:
    raise ConfigError(f"Mixture shape {tuple(mixtures.shape[1:])} does not match the prior and "
                      f"mixing operator, which expect {expected}.")
  if mixtures.shape[0] < 1:
    raise ConfigError("No mixtures to separate (N = 0).")
  if not np.issubdtype(mixtures.dtype, np.number):
    raise InputFileError(f"Mixtures must be numeric, got dtype {mixtures.dtype}.")
  bad = ~np.isfinite(mixtures.reshape(mixtures.shape[0], -1)).all(axis=1)
  if bad.any():
    raise InputFileError(f"{int(bad.sum())} mixture(s) contain NaN or inf (first at batch position "
                         f"{int(np.argmax(bad))}).")
  return mixtures.astype(np.float32)


def check_diverged(result, indices, schedule: Schedule) -> None:
  """Raises SamplingDivergedError if any sample went non-finite (never written silently)."""
  levels = np.asarray(result["diverged_level"])
  indices = np.asarray(indices)
  if levels.ndim > 1:
    per_mixture = np.where(levels >= 0, levels, np.iinfo(np.int32).max).min(axis=1)
    levels = np.where(per_mixture == np.iinfo(np.int32).max, -1, per_mixture)
  bad = levels >= 0
  if bad.any():
    raise SamplingDivergedError(indices[bad], levels[bad], schedule.sigmas)
