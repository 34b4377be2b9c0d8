"""Mixing operators: explicit adjoints agree with the vjp path; projections are exact."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from basis_jax.sampling import mixing


def _random(shape, seed):
  return jax.random.uniform(jax.random.key(seed), shape)


LINEAR_OPERATORS = [
    (mixing.Sum((1.0, 1.0)), (2, 8, 8, 1)),
    (mixing.Sum((0.5, 0.5)), (2, 8, 8, 3)),
    (mixing.Sum((0.3, 1.0, 2.5)), (3, 6, 6, 1)),
    (mixing.Grayscale(), (1, 8, 8, 3)),
]


@pytest.mark.parametrize("op,shape", LINEAR_OPERATORS)
def test_explicit_adjoint_matches_vjp(op, shape):
  x = _random(shape, 0)
  m = op(_random(shape, 1))
  explicit = op.likelihood_direction(x, m)
  # The base class's adjoint is the generic jax.vjp path.
  via_vjp = mixing.MixingOperator.adjoint(op, x, m - op(x))
  assert type(op).adjoint is not mixing.MixingOperator.adjoint  # Really two paths.
  np.testing.assert_allclose(explicit, via_vjp, rtol=1e-6, atol=1e-7)
  generic = mixing.Generic(op, num_components=op.num_components)
  np.testing.assert_allclose(generic.likelihood_direction(x, m), explicit, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("op,shape", LINEAR_OPERATORS)
def test_projection_satisfies_constraint_and_is_orthogonal(op, shape):
  x = _random(shape, 2)
  m = op(_random(shape, 3))
  projected = op.project(x, m)
  np.testing.assert_allclose(op(projected), m, atol=1e-5)
  # The correction lies in the row space of A (range of the adjoint): it is the minimum-norm
  # change, so projecting again changes nothing.
  np.testing.assert_allclose(op.project(projected, m), projected, atol=1e-5)


def test_sum_values():
  x = jnp.stack([jnp.full((2, 2, 1), 0.2), jnp.full((2, 2, 1), 0.5)])
  np.testing.assert_allclose(mixing.Sum((1.0, 2.0))(x), jnp.full((2, 2, 1), 1.2), rtol=1e-6)
  np.testing.assert_allclose(mixing.Grayscale()(jnp.ones((1, 2, 2, 3)) * jnp.array([0., .3, .6])),
                             jnp.full((2, 2, 1), 0.3), rtol=1e-6)


def test_clipped_sum_is_nonlinear_and_its_gradient_is_zero_where_saturated():
  op = mixing.Generic(mixing.clipped_sum, num_components=2)
  x = jnp.stack([jnp.array([[[0.2]], [[0.9]]]), jnp.array([[[0.3]], [[0.8]]])])  # [2, 2, 1, 1]
  np.testing.assert_allclose(op(x)[:, 0, 0], [0.5, 1.0])
  direction = op.likelihood_direction(x, jnp.zeros((2, 1, 1)))
  np.testing.assert_allclose(direction[:, 1], 0.0)  # Saturated pixel: no gradient.
  np.testing.assert_allclose(direction[:, 0, 0, 0], [-0.5, -0.5])
  with pytest.raises(ValueError, match="not linear"):
    op.project(x, op(x))


def test_bad_operators():
  with pytest.raises(ValueError, match="at least one component"):
    mixing.Sum(())
  with pytest.raises(ValueError, match="non-zero"):
    mixing.Sum((0.0, 0.0))
  with pytest.raises(ValueError, match="k\\) must be >= 1"):
    mixing.Generic(mixing.clipped_sum, num_components=0)
  with pytest.raises(ValueError, match="3-channel"):
    mixing.Grayscale()(jnp.ones((1, 4, 4, 1)))
  cfg = ml_collections.ConfigDict({"kind": "sum", "alphas": (1.0, 1.0, 1.0)})
  with pytest.raises(ValueError, match="alphas has 3 entries but num_components is 2"):
    mixing.from_config(cfg, num_components=2)
  with pytest.raises(ValueError, match="Unknown mixing kind"):
    mixing.from_config(ml_collections.ConfigDict({"kind": "product", "alphas": (1.,)}))
