"""Glow: invertibility, exact log-det, likelihood bookkeeping, functional interface."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from basis_jax.priors import glow
from basis_jax.priors import glow_layers as layers

TINY = glow.GlowConfig(image_shape=(8, 8, 1), levels=2, depth=2, width=8)


def perturbed(model: glow.Glow, scale: float = 0.05, seed: int = 1) -> glow.Glow:
  """The model with every parameter moved off its initial value, so zero-initialised
  couplings and priors are not the identity in the tests."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  leaves, treedef = jax.tree.flatten(params)
  rng = np.random.default_rng(seed)
  leaves = [leaf + scale * rng.standard_normal(leaf.shape).astype(np.float32)
            for leaf in leaves]
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves), rest)


def uniform_images(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-0.5, 0.5, shape), jnp.float32)


@pytest.mark.parametrize("coupling,lu", [("affine", False), ("additive", True)])
def test_reverse_inverts_forward(coupling, lu):
  config = glow.GlowConfig(image_shape=(8, 8, 2), levels=2, depth=2, width=8,
                           coupling=coupling, lu_decomposed=lu)
  x = uniform_images((3, 8, 8, 2))
  model = perturbed(glow.create(config, seed=0, init_batch=x))
  graphdef, state = nnx.split(model)

  @jax.jit
  def roundtrip(state, x):
    m = nnx.merge(graphdef, state)
    zs, _, _ = m.encode(x)
    return m.decode(zs)

  np.testing.assert_allclose(roundtrip(state, x), x, atol=1e-4)


def test_logdet_matches_brute_force_jacobian():
  x = uniform_images((2, 8, 8, 1))
  model = perturbed(glow.create(TINY, seed=0, init_batch=x))
  graphdef, state = nnx.split(model)

  def flat_latents(state, image):
    zs, _, _ = nnx.merge(graphdef, state).encode(image[None])
    return jnp.concatenate([z.reshape(-1) for z in zs])

  def jacobian_and_logdet(state, image):
    jacobian = jax.jacfwd(flat_latents, argnums=1)(state, image).reshape(64, 64)
    _, logdet, _ = nnx.merge(graphdef, state).encode(image[None])
    return jacobian, logdet[0]

  jacobian, exact = jax.jit(jacobian_and_logdet)(state, x[0])
  sign, brute = np.linalg.slogdet(np.asarray(jacobian, np.float64))
  assert sign != 0
  np.testing.assert_allclose(float(exact), brute, rtol=1e-4, atol=1e-3)


def test_fresh_model_on_uniform_noise_is_close_to_8_bits():
  # Uniform noise has density 1 on [−½, ½]^D, i.e. exactly 8 bits/dim; a freshly
  # initialised Glow is a near-Gaussian fit to it, slightly worse (KL >= 0).
  config = glow.GlowConfig(image_shape=(16, 16, 3), levels=2, depth=2, width=16)
  x = uniform_images((32, 16, 16, 3))
  model = glow.create(config, seed=0, init_batch=x)
  bpd = float(jnp.mean(nnx.jit(lambda m, x: m.bits_per_dim(x))(model, x)))
  assert 8.0 < bpd < 8.5, bpd


def test_lu_factors_reproduce_the_matrix():
  rng = np.random.default_rng(0)
  w = rng.standard_normal((6, 6))
  p, lower, upper = layers._lu(w)
  np.testing.assert_allclose(p @ lower @ upper, w, atol=1e-10)
  assert np.allclose(np.tril(upper, -1), 0) and np.allclose(np.diag(lower), 1)


def test_squeeze_channel_order_and_inverse():
  x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
  y = layers.squeeze2d(x)
  # New channel c·4 + dy·2 + dx holds x[2i + dy, 2j + dx, c].
  assert y[0, 1, 0, 2 * 4 + 1 * 2 + 1] == x[0, 3, 1, 2]
  np.testing.assert_array_equal(layers.unsqueeze2d(y), x)


def test_edge_padding_channel():
  padded = layers._edge_pad(jnp.ones((1, 3, 3, 1)), 1, 1)
  border = np.asarray(padded[0, :, :, 1])
  assert border.sum() == 16 and border[1:4, 1:4].sum() == 0
  assert np.asarray(padded[0, :, :, 0]).sum() == 9


def test_sample_shape_and_finite():
  model = glow.create(TINY, seed=0, init_batch=uniform_images((4, 8, 8, 1)))
  samples = nnx.jit(lambda m, key: m.sample(key, 5, temperature=0.7))(
      model, jax.random.PRNGKey(0))
  assert samples.shape == (5, 8, 8, 1) and bool(jnp.all(jnp.isfinite(samples)))


def test_stacked_states_and_select_level():
  states = [nnx.split(glow.create(TINY, seed=s))[1] for s in range(3)]
  graphdef = nnx.split(glow.create(TINY, seed=0))[0]
  stacked = glow.stack_states(states)
  x = uniform_images((2, 8, 8, 1))
  log_prob = glow.make_log_prob_fn(graphdef)
  score = glow.make_score_fn(graphdef)

  @jax.jit
  def at_level(stacked, level):
    state = glow.select_level(stacked, level)
    return log_prob(state, x), score(state, x)

  for level in (0, 2):
    lp, s = at_level(stacked, jnp.int32(level))
    ref_lp, ref_s = jax.jit(log_prob)(states[level], x), jax.jit(score)(states[level], x)
    np.testing.assert_allclose(lp, ref_lp, rtol=1e-5)
    np.testing.assert_allclose(s, ref_s, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("edge_padding", [True, False])
def test_widening_preserves_the_density_and_adds_trainable_channels(edge_padding):
  """`glow.widen`: the wide model's log p equals the narrow one's (every parameter of the
  narrow model perturbed, so nothing is trivially zero), the new channels get gradients,
  and another depth is refused."""
  narrow_config = dataclasses.replace(TINY, edge_padding=edge_padding)
  wide_config = dataclasses.replace(narrow_config, width=20)
  x = uniform_images((6, 8, 8, 1))
  narrow = perturbed(glow.create(narrow_config, seed=0, init_batch=x))
  graphdef, fresh = nnx.split(glow.create(wide_config, seed=1, init_batch=x))
  wide = glow.widen(nnx.split(narrow)[1], narrow_config, fresh, wide_config)
  np.testing.assert_allclose(glow.make_log_prob_fn(graphdef)(wide, x), narrow(x), rtol=1e-6)
  assert not np.allclose(nnx.merge(graphdef, fresh)(x), narrow(x), rtol=1e-2)
  grads = jax.grad(lambda s: jnp.sum(glow.make_log_prob_fn(graphdef)(s, x)))(wide)
  kernel = np.asarray(grads["levels"][0]["steps"][0]["coupling_net"]["conv_out"]["kernel"])
  assert np.abs(kernel[:, :, 8:20]).max() > 0  # The new hidden channels learn.
  with pytest.raises(ValueError, match="Can only widen"):
    glow.widen(nnx.split(narrow)[1], narrow_config, fresh,
               dataclasses.replace(wide_config, depth=3))


def test_bad_input_shape_is_a_clear_error():
  model = glow.create(TINY, seed=0)
  with pytest.raises(ValueError, match="Glow expects images"):
    model(jnp.zeros((1, 8, 8, 3)))
  with pytest.raises(ValueError, match="divisible"):
    glow.GlowConfig(image_shape=(28, 28, 1), levels=3)
