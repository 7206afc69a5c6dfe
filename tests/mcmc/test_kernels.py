"""BlackJAX-style block samplers: one step == a block of base-kernel steps."""

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import random_walk

from numpyro_parallel.mcmc import parallel_hmc, parallel_mala, parallel_rwm, run_chain
from tests.mcmc.test_chain import logistic_logdensity


def _check_block(block_algorithm, base_algorithm, num_steps_per_block):
    x0 = jnp.array([0.2, -0.1, 0.4])
    state = block_algorithm.init(x0)
    key = jax.random.key(7)
    last, info = jax.jit(block_algorithm.step)(key, state)
    expected, expected_info = run_chain(
        base_algorithm, base_algorithm.init(x0), key, num_steps_per_block, strategy="sequential"
    )
    np.testing.assert_allclose(info.states.position, expected.position, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(last.position, expected.position[-1], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(info.aux.is_accepted, expected_info.aux.is_accepted)
    assert bool(info.converged) and 0 < int(info.num_iterations) <= num_steps_per_block
    assert float(info.residual) < 1e-6 and int(info.status) == 0


def test_parallel_mala_block():
    _check_block(
        parallel_mala(logistic_logdensity, 0.3, 40),
        blackjax.mala(logistic_logdensity, 0.3),
        40,
    )


def test_parallel_hmc_block():
    _check_block(
        parallel_hmc(logistic_logdensity, 0.5, jnp.ones(3), 3, 20, solver="quasi_newton"),
        blackjax.hmc(logistic_logdensity, 0.5, jnp.ones(3), 3),
        20,
    )


def test_parallel_rwm_block():
    _check_block(
        parallel_rwm(logistic_logdensity, 0.5, 20, solver="jacobi"),
        blackjax.additive_step_random_walk(logistic_logdensity, random_walk.normal(0.5)),
        20,
    )
