"""ArviZ DataTree output of hidden-state posteriors (numpyro_parallel.ssm.hmm.datatree)."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from numpyro_parallel.ssm.hmm.datatree import hmm_to_datatree
from numpyro_parallel.ssm.hmm.distribution import DiscreteHMM


def test_hidden_state_group_has_named_dims_and_values():
    # Smoothed probabilities and Viterbi paths for 2 chains x 3 posterior draws of the means.
    means = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 2)) + np.array([-1.0, 1.0]))
    y = jnp.array([-1.2, -0.8, 1.1, 0.9, 1.3])

    def per_draw(m):
        model = DiscreteHMM(jnp.zeros(2), jnp.zeros((2, 2)), dist.Normal(m, 1.0))
        return model.smooth(y), model.viterbi(y)  # result objects: the converter unpacks them

    probs, paths = jax.vmap(jax.vmap(per_draw))(means)
    posterior = az.from_dict({"posterior": {"means": np.asarray(means)}})
    tree = hmm_to_datatree(
        probs, paths, time_coords=np.arange(10, 15), state_names=["low", "high"], datatree=posterior
    )
    assert "posterior" in tree.children and "hidden_states" in tree.children
    assert "hidden_states" not in posterior.children  # input not modified
    group = tree["hidden_states"]
    assert group["state_probs"].dims == ("chain", "draw", "time", "state")
    assert group["viterbi_path"].dims == ("chain", "draw", "time")
    np.testing.assert_allclose(group["state_probs"].values, probs.smoothed_probs)
    np.testing.assert_array_equal(group["viterbi_path"].values, paths.path)
    np.testing.assert_array_equal(group["time"].values, np.arange(10, 15))
    assert list(group["state"].values) == ["low", "high"]
    mean_probs = group["state_probs"].mean(("chain", "draw"))
    np.testing.assert_allclose(mean_probs.values, np.mean(probs.smoothed_probs, axis=(0, 1)))


def test_single_chain_input_and_errors():
    tree = hmm_to_datatree(viterbi_path=np.zeros((4, 6), int), state_samples=np.ones((4, 6), int))
    assert tree["hidden_states"]["viterbi_path"].shape == (1, 4, 6)
    with pytest.raises(ValueError, match="state_probs"):
        hmm_to_datatree(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="at least one"):
        hmm_to_datatree()
    uniform = np.full((1, 2, 5, 2), 0.5)
    with pytest.raises(ValueError, match="time"):
        hmm_to_datatree(uniform, time_coords=np.arange(4))
    with pytest.raises(ValueError, match="inconsistent"):
        hmm_to_datatree(uniform, np.zeros((1, 2, 4), int))
    with pytest.raises(ValueError, match="state_probs"):  # not normalised
        hmm_to_datatree(np.zeros((1, 2, 5, 2)))
    with pytest.raises(ValueError, match="viterbi_path"):  # state 2 with K = 2
        hmm_to_datatree(uniform, np.full((1, 2, 5), 2))
