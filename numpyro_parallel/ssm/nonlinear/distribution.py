"""`NonlinearGaussianSSM`: a NumPyro distribution over observations of a nonlinear Gaussian SSM.

The states are marginalised *approximately*: `log_prob` runs the parallel iterated smoother of
`numpyro_parallel.ssm.nonlinear.smoother` to convergence and returns the exact Kalman
log-likelihood of the model linearised at the converged posterior (Yaghoobi, Corenflos, Hassan &
Särkkä 2021, "Parallel iterated extended and sigma-point Kalman smoothers"; 2022, "Parallel
square-root statistical linear regression for inference in nonlinear state space models").

- ``method="extended"``: linearisation at the MAP trajectory; the result is a Laplace-type
  approximation with the Gauss–Newton Hessian.
- sigma-point methods: posterior linearisation (statistical linear regression around the
  smoothed marginals, linearisation error added to ``Q`` and ``R``).

Gradients: the converged point is held fixed and ``gradient_steps`` (default 1) further
smoother iterations are differentiated (each adds one term of the Neumann series of the implicit
derivative of the fixed point); see the "Nonlinear models" docs page for the accuracy.

The approximation is poor when the posterior is far from Gaussian (multimodal or ambiguous
observation models, strong nonlinearity relative to the noise). Failures: see the class
docstring and the "Failure modes" docs page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints

from numpyro_parallel._checks import check_positive_int, check_sample_shape, nan_unless
from numpyro_parallel.ssm.kalman.sampling import kalman_sample_states
from numpyro_parallel.ssm.nonlinear.checks import (
    check_distribution_arrays,
    check_observation_values,
    check_options,
)
from numpyro_parallel.ssm.nonlinear.model import model_from_covariances
from numpyro_parallel.ssm.nonlinear.simulate import simulate_model
from numpyro_parallel.ssm.nonlinear.smoother import (
    IteratedSmootherResult,
    NonlinearGaussianModel,
    check_model,
    iterated_smoother,
    linearize_model,
    linearized_log_likelihood,
    warn_not_converged,
)
from numpyro_parallel.strategy import StrategyLike, as_strategy

__all__ = ["NonlinearGaussianSSM"]


class NonlinearGaussianSSM(Distribution):
    """Nonlinear state-space model with additive Gaussian noise, states marginalised approximately.

    ``x_0 ~ N(initial_mean, initial_cov)``, ``x_{t+1} = f(x_t) + N(0, Q)``,
    ``y_t = h(x_t) + N(0, R)`` for ``t = 0..T-1``; the distribution is over ``y`` with event
    shape ``(T, p)``.

    `log_prob` is NaN when the iterated smoother did not converge (plus a `RuntimeWarning`
    outside `jit`); `log_prob_and_smooth` returns the value together with the smoother result
    (``status``, ``converged``, ``num_iterations``, ``residual``) in one pass.

    Args:
        initial_mean: ``(d,)`` finite mean of ``x_0``.
        initial_cov: ``(d, d)`` symmetric PSD covariance of ``x_0``.
        transition_fn: ``f: (d,) -> (d,)`` (may close over model parameters).
        transition_cov: ``(d, d)`` or ``(T, d, d)`` symmetric PSD process noise covariance.
        observation_fn: ``h: (d,) -> (p,)``.
        observation_cov: ``(p, p)`` or ``(T, p, p)`` symmetric PSD observation covariance.
        num_steps: number of time steps T (``>= 1``).
        method: linearisation: ``"extended"``, ``"unscented"``, ``"cubature"`` or
            ``"gauss_hermite"``.
        max_iterations: maximum smoother iterations (``>= 1``).
        atol: absolute convergence tolerance (see `iterated_smoother`).
        rtol: relative convergence tolerance (see `iterated_smoother`).
        damping: Levenberg–Marquardt damping strength ``> 0``, or None.
        order: Gauss–Hermite points per dimension.
        initial_trajectory: ``"filter"`` (default: the classical extended / sigma-point
            smoother, one sequential sweep, robust) or ``"prior"`` (fully parallel, but can
            converge to a wrong mode on strongly nonlinear models).
        gradient_steps: final smoother iterations that `log_prob` differentiates through
            (0: gradient at a fixed linearisation point; see module docstring).
        strategy: evaluation strategy of the Kalman recursions (`numpyro_parallel.strategy`).
        validate_args: NumPyro's argument validation flag.

    Raises:
        ValueError, TypeError: concrete invalid arguments (the message names the argument).
    """

    arg_constraints: ClassVar[dict] = {
        "initial_mean": constraints.real_vector,
        "initial_cov": constraints.positive_semidefinite,
    }
    support = constraints.independent(constraints.real, 2)
    pytree_data_fields = ("initial_mean", "initial_cov", "transition_cov", "observation_cov")
    pytree_aux_fields = (
        "transition_fn",
        "observation_fn",
        "num_steps",
        "method",
        "max_iterations",
        "atol",
        "rtol",
        "damping",
        "initial_trajectory",
        "order",
        "gradient_steps",
        "strategy",
    )

    def __init__(
        self,
        initial_mean: jax.Array,
        initial_cov: jax.Array,
        transition_fn: Callable[[jax.Array], jax.Array],
        transition_cov: jax.Array,
        observation_fn: Callable[[jax.Array], jax.Array],
        observation_cov: jax.Array,
        num_steps: int,
        *,
        method: str = "extended",
        max_iterations: int = 50,
        atol: float | None = None,
        rtol: float = 0.0,
        damping: float | None = None,
        initial_trajectory: str = "filter",
        order: int = 3,
        gradient_steps: int = 1,
        strategy: StrategyLike = "auto",
        validate_args: bool | None = None,
    ):
        check_options(
            method=method,
            max_iterations=max_iterations,
            atol=atol,
            rtol=rtol,
            damping=damping,
            order=order,
            initial_trajectory=initial_trajectory,
            trajectory_by_name=True,
        )
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.gradient_steps = check_positive_int("gradient_steps", gradient_steps, minimum=0)
        arrays, p = check_distribution_arrays(
            initial_mean,
            initial_cov,
            transition_fn,
            transition_cov,
            observation_fn,
            observation_cov,
            self.num_steps,
        )
        self.initial_mean, self.initial_cov, self.transition_cov, self.observation_cov = arrays
        self.transition_fn = transition_fn
        self.observation_fn = observation_fn
        self.method = method
        self.max_iterations = max_iterations
        self.atol = atol
        self.rtol = rtol
        self.damping = damping
        self.initial_trajectory = initial_trajectory
        self.order = order
        self.strategy = as_strategy(strategy)
        super().__init__((), (self.num_steps, p), validate_args=validate_args)

    @property
    def model(self) -> NonlinearGaussianModel:
        """The model in square-root form (`model_from_covariances`), noise time-expanded."""
        return self._model_from(self._arrays())

    def _arrays(self) -> tuple[jax.Array, ...]:
        return (self.initial_mean, self.initial_cov, self.transition_cov, self.observation_cov)

    def _model_from(self, arrays: tuple[jax.Array, ...]) -> NonlinearGaussianModel:
        model = model_from_covariances(*arrays, self.transition_fn, self.observation_fn)
        return check_model(model, self.num_steps)

    def _check_y(self, y: Any, single: bool = False) -> jax.Array:
        y = jnp.asarray(y)
        if y.shape[-2:] != self.event_shape or y.ndim < 2:
            raise ValueError(
                f"`y` must have shape batch + (T, p) = batch + {self.event_shape}; got {y.shape}."
            )
        if single and y.ndim != 2:
            raise ValueError(f"`y` must be a single sequence of shape (T, p); got {y.shape}.")
        return check_observation_values(y)

    def _smooth(self, model: NonlinearGaussianModel, y: jax.Array) -> IteratedSmootherResult:
        return iterated_smoother(
            model,
            y,
            method=self.method,
            max_iterations=self.max_iterations,
            atol=self.atol,
            rtol=self.rtol,
            damping=self.damping,
            initial_trajectory=self.initial_trajectory,
            order=self.order,
            strategy=self.strategy,
        )

    def smooth(self, y: jax.Array) -> IteratedSmootherResult:
        """Run the iterated smoother to convergence (warns outside `jit` if it did not).

        Args:
            y: ``(T, p)`` observations; NaN entries are missing.

        Returns:
            `IteratedSmootherResult` (mean, chol, status, converged, num_iterations, residual).
        """
        y = self._check_y(y, single=True)
        return self._smooth(self.model, y)

    def log_prob_and_smooth(self, value: jax.Array) -> tuple[jax.Array, IteratedSmootherResult]:
        """`log_prob` together with the iterated smoother's result, from a single pass.

        Use it to see why a `log_prob` is NaN without a second `smooth` call: the result's
        ``status`` and ``converged`` flag, ``num_iterations`` and last ``residual`` (NaN when
        an iterate became non-finite). Outside `jit` a `RuntimeWarning` is emitted when any
        sequence did not converge.

        Args:
            value: ``batch + (T, p)`` observations; NaN entries are missing.

        Returns:
            ``(log_prob, result)``: ``batch`` log-likelihoods (NaN where not converged) and an
            `IteratedSmootherResult` whose fields have the leading ``batch`` shape.
        """
        y = self._check_y(value)

        def one(model, y_seq):
            result = self._smooth(model, y_seq)
            log_lik = linearized_log_likelihood(
                model,
                y_seq,
                result.mean,
                result.chol,
                method=self.method,
                order=self.order,
                unrolled_steps=self.gradient_steps,
                strategy=self.strategy,
            )
            return nan_unless(result.converged, log_lik), result

        def run(arrays, flat):
            model = self._model_from(arrays)
            return jax.vmap(lambda y_seq: one(model, y_seq))(flat)

        batch = y.shape[:-2]
        # One compiled program, also when called eagerly (the arrays are arguments).
        log_lik, result = jax.jit(run)(self._arrays(), y.reshape(-1, *self.event_shape))
        log_lik = log_lik.reshape(batch)
        result = jax.tree_util.tree_map(lambda a: a.reshape(*batch, *a.shape[1:]), result)
        warn_not_converged(result, self.max_iterations, self.atol)
        return log_lik, result

    def log_prob(self, value: jax.Array) -> jax.Array:
        """Approximate marginal log-likelihood (Kalman likelihood at the converged linearisation).

        NaN when the iterated smoother did not converge or an input was invalid under
        tracing (see `log_prob_and_smooth` for the diagnostics).

        Args:
            value: ``batch + (T, p)`` observations; NaN entries are missing.

        Returns:
            ``batch`` log-likelihoods.
        """
        return self.log_prob_and_smooth(value)[0]

    def sample_states(
        self, rng_key: jax.Array, y: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> jax.Array:
        """Draw state trajectories from the linearised posterior at convergence.

        Args:
            rng_key: JAX PRNG key.
            y: ``(T, p)`` observations; NaN entries are missing.
            sample_shape: leading shape of the draws (an int n means ``(n,)``; entries >= 0).

        Returns:
            ``(*sample_shape, T, d)`` trajectories; NaN when the smoother did not converge.
        """
        sample_shape = check_sample_shape(sample_shape)
        y = self._check_y(y, single=True)

        def run(arrays, key, y):
            model = self._model_from(arrays)
            result = jax.lax.stop_gradient(self._smooth(model, y))
            params = linearize_model(model, result.mean, result.chol, self.method, self.order)
            draws = kalman_sample_states(key, params, y, sample_shape, strategy=self.strategy)
            return nan_unless(result.converged, draws), result

        draws, result = jax.jit(run)(self._arrays(), rng_key, y)
        warn_not_converged(result, self.max_iterations, self.atol)
        return draws

    def simulate(
        self, rng_key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]:
        """Simulate the nonlinear model (sequentially).

        Args:
            rng_key: JAX PRNG key.
            sample_shape: leading shape of the draws (an int n means ``(n,)``; entries >= 0).

        Returns:
            States ``(*sample_shape, T, d)`` and observations ``(*sample_shape, T, p)``.
        """
        return simulate_model(rng_key, self.model, sample_shape)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Simulate observations from the nonlinear model.

        Args:
            key: JAX PRNG key.
            sample_shape: leading shape of the draws (an int n means ``(n,)``; entries >= 0).

        Returns:
            ``(*sample_shape, T, p)`` observations.
        """
        return self.simulate(key, sample_shape)[1]
