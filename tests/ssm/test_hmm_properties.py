"""Property tests of `DiscreteHMM`'s shape, dtype and value handling (Hypothesis).

Any generated input either raises a clear `ValueError` / `TypeError` that names an argument in
backticks, or gives a log-likelihood equal to brute-force enumeration and to the sequential
strategy (finite, or exactly ``-inf`` for data of probability zero).
"""

from __future__ import annotations

import re
import warnings
from functools import partial

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from numpyro_parallel.ssm.hmm.distribution import DiscreteHMM
from numpyro_parallel.ssm.hmm.inference import hmm_viterbi
from tests.reference.hmm import enumerate_reference

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
SPECIAL = [np.nan, np.inf, -np.inf]


@st.composite
def problems(draw):
    num_states = draw(st.sampled_from([1, 2, 3]))
    num_steps = draw(st.sampled_from([1, 2, 5]))
    time_varying = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float64, np.float64, np.float32, np.int64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    initial = rng.normal(size=num_states)
    transition = rng.normal(size=(num_steps, num_states, num_states) if time_varying else
                            (num_states, num_states))  # fmt: skip
    # structural zeros (-inf), occasionally a whole row, and occasionally NaN / +inf logits
    for logits in (initial, transition):
        zeros = rng.random(logits.shape) < draw(st.sampled_from([0.0, 0.3, 0.6]))
        logits[zeros] = -np.inf
        if draw(st.integers(0, 9)) == 0:
            logits.flat[rng.integers(logits.size)] = draw(st.sampled_from([np.nan, np.inf]))
    # observations: NaN (missing) and +-inf sprinkled in
    y = rng.normal(size=num_steps) * 2
    special = rng.random(num_steps) < draw(st.sampled_from([0.0, 0.2]))
    y[special] = rng.choice(SPECIAL, size=special.sum())
    means = np.linspace(-1.5, 1.5, num_states)
    if not np.issubdtype(dtype, np.floating):  # integer logits: a TypeError whatever the values
        finite = partial(np.nan_to_num, nan=0.0, posinf=0.0, neginf=0.0)  # no overflowing cast
        initial, transition = finite(initial), finite(transition)
    return initial.astype(dtype), transition.astype(dtype), means, y


def _log_emissions(y, means):
    ll = norm.logpdf(y[:, None], means[None, :], 1.0)
    ll[np.isnan(y)] = 0.0  # missing
    return ll


def _expected_error(initial, transition) -> bool:
    if not np.issubdtype(initial.dtype, np.floating):
        return True
    for logits in (initial, transition):
        if np.any(np.isnan(logits) | np.isposinf(logits)):
            return True
        if np.any(np.all(np.isneginf(logits), axis=-1)):
            return True
    return False


@pytest.mark.slow
@SETTINGS
@given(problems())
def test_discrete_hmm_raises_clearly_or_matches_enumeration(problem):
    initial, transition, means, y = problem
    float64 = initial.dtype == np.float64
    observations = dist.Normal(jnp.asarray(means, initial.dtype if float64 else np.float32), 1.0)
    if _expected_error(initial, transition):
        with pytest.raises((ValueError, TypeError)) as info:
            DiscreteHMM(initial, transition, observations).log_prob(y)
        assert re.search(r"`(initial_logits|transition_logits)`", str(info.value)), info.value
        return
    ll = _log_emissions(y, means)
    evidence, _, _, best = enumerate_reference(initial, transition, ll)
    rtol = 1e-8 if float64 else 2e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # enumerated -inf joint densities
        parallel = DiscreteHMM(initial, transition, observations).log_prob(y)
        sequential = DiscreteHMM(initial, transition, observations, strategy="sequential").log_prob(
            y
        )
        associative = DiscreteHMM(initial, transition, observations, strategy="associative")
        terms = associative.log_likelihood_terms(y)
    for got in (parallel, sequential, associative.log_prob(y), jnp.sum(terms)):
        if np.isneginf(evidence):
            assert got == -jnp.inf
        else:
            np.testing.assert_allclose(got, evidence, rtol=rtol, atol=rtol)
    assert terms.shape == (len(y),)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        viterbi = hmm_viterbi(initial, transition, ll.astype(initial.dtype), strategy="sequential")
    assert bool(viterbi.valid) == bool(np.isfinite(best))
    assert any(w.category is RuntimeWarning for w in caught) == (not np.isfinite(best))
    if np.isfinite(best):
        np.testing.assert_allclose(viterbi.log_joint, best, rtol=rtol, atol=rtol)


@SETTINGS
@given(
    st.sampled_from([1, 2, 3]),
    st.sampled_from([1, 2, 7]),
    st.sampled_from([(), (2,), (1,)]),
    st.booleans(),
)
@pytest.mark.slow
def test_shapes_follow_the_time_axis_rule(num_states, num_steps, batch, fix_length):
    """``y`` is ``batch + (T,)``: results have the batch shape (T-terms: ``batch + (T,)``);
    a trailing length-1 axis is rejected as ambiguous unless the model fixes T."""
    model = DiscreteHMM(
        jnp.zeros(num_states),
        jnp.zeros((num_states, num_states)),
        dist.Normal(jnp.linspace(-1.0, 1.0, num_states), 1.0),
        num_steps=num_steps if fix_length else None,
    )
    y = jnp.zeros((*batch, num_steps))
    ambiguous = not fix_length and num_steps == 1 and len(batch) > 0
    if ambiguous:
        with pytest.raises(ValueError, match=r"`y`.*ambiguous"):
            model.log_prob(y)
        return
    assert model.log_prob(y).shape == batch
    assert model.log_likelihood_terms(y).shape == (*batch, num_steps)
    assert model.viterbi(y).path.shape == (*batch, num_steps)
    if num_steps > 1:
        with pytest.raises(ValueError, match="`y`"):
            model.log_prob(y[..., None])  # (T, 1): T sequences of length one
