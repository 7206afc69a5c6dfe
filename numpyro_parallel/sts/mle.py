"""Maximum likelihood for structural time-series models: `fit_mle`.

The parallel Kalman log-likelihood and its exact gradient (reverse mode through the
square-root filter) drive scipy's L-BFGS-B over unconstrained coordinates: each parameter is
mapped onto its prior's support with `numpyro.distributions.transforms.biject_to` (a scale is
``exp`` of a real number, partial autocorrelations ``tanh``). The priors only supply the
supports; the objective is the likelihood alone. Standard errors come from the observed
information: the inverse Hessian of the negative log-likelihood in the model's own parameters,
computed exactly by automatic differentiation (what statsmodels approximates numerically with
``cov_type="approx"``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.distributions.transforms import biject_to

from numpyro_parallel._checks import check_positive_int, check_real, warn_if
from numpyro_parallel.sts._validate import check_initial_state, check_series
from numpyro_parallel.sts.model import Sum, data_scale

__all__ = ["MLEResult", "fit_mle"]


class MLEResult(NamedTuple):
    """Maximum-likelihood estimate of a structural model.

    Attributes:
        params: ``{component: {parameter: value}}`` (plus ``"observation"``), as `Sum.ssm`
            takes them.
        standard_errors: the same structure: square roots of the diagonal of the inverse
            observed information (NaN where the Hessian is not positive definite).
        covariance: ``(k, k)`` inverse observed information of the flattened parameters
            (the order of `jax.flatten_util.ravel_pytree` on ``params``).
        log_likelihood: the maximised ``log p(y | params)``.
        converged: whether L-BFGS-B reported convergence, or stopped where a Newton step
            would lower the objective by less than its rounding level (its line search
            then finds no decrease; ``message`` says so).
        num_iterations: L-BFGS-B iterations.
        message: L-BFGS-B's termination message.
    """

    params: dict[str, dict[str, jax.Array]]
    standard_errors: dict[str, dict[str, jax.Array]]
    covariance: jax.Array
    log_likelihood: jax.Array
    converged: bool
    num_iterations: int
    message: str


def _starting_value(prior) -> jax.Array:
    """The prior mean where it is finite, else the image of 0 under the support's bijection."""
    try:
        mean = jnp.asarray(prior.mean)
    except NotImplementedError:
        mean = None
    if mean is not None and bool(jnp.all(jnp.isfinite(mean))):
        return mean
    shape = prior.batch_shape + prior.event_shape
    return biject_to(prior.support)(jnp.zeros(shape))


def fit_mle(
    model: Sum,
    y: Any,
    *,
    initial_params: dict[str, dict[str, Any]] | None = None,
    initial_mean: Any = None,
    initial_cov: Any = None,
    max_iterations: int = 1000,
    gtol: float = 1e-9,
) -> MLEResult:
    """Maximise ``log p(y | params)`` over the parameters of a `Sum`.

    Args:
        model: the structural model.
        y: ``(T,)`` series; NaN values are missing.
        initial_params: starting values ``{component: {parameter: value}}``; default: each
            prior's mean (or the centre of its support).
        initial_mean: ``(d,)`` initial state mean overriding the components' defaults
            (e.g. a known initialisation), as in `Sum.ssm`.
        initial_cov: ``(d, d)`` initial state covariance, likewise.
        max_iterations: cap on L-BFGS-B iterations.
        gtol: L-BFGS-B's projected-gradient tolerance.

    Returns:
        An `MLEResult`; outside ``jit`` a `RuntimeWarning` when the log-likelihood is not
        finite where L-BFGS-B stopped, when it did not converge, or when the Hessian at the
        optimum is not positive definite.

    Raises:
        TypeError: ``model`` is not a `Sum`; ``y`` does not hold real numbers (integers are
            converted to floats); ``initial_params`` is not a nested dict; ``gtol`` is not a
            number.
        ValueError: ``y`` is not a ``(T,)`` series, holds inf, has no observed value or is
            constant (no maximum exists); ``max_iterations`` < 1; ``gtol`` not a finite
            positive number; ``initial_params`` naming unknown groups or parameters, without
            some parameter or outside its support; an invalid ``initial_mean`` or
            ``initial_cov``.
    """
    import scipy.optimize

    if not isinstance(model, Sum):
        raise TypeError(f"`model` must be a numpyro_parallel.sts.Sum; got {type(model).__name__}.")
    y = check_series(y)
    observed = np.asarray(y)[~np.isnan(np.asarray(y))]
    if np.all(observed == observed[0]):
        raise ValueError(
            f"`y` is constant (every observed value is {observed[0]:g}): the likelihood grows "
            "without bound as the noise scales shrink to 0, so there is no maximum-likelihood "
            "estimate; sample `model.numpyro_model` (its priors keep the scales finite) instead."
        )
    max_iterations = check_positive_int("max_iterations", max_iterations)
    gtol = check_real("gtol", gtol, low=0.0)
    initial_mean, initial_cov = check_initial_state(model.state_dim, initial_mean, initial_cov)
    model.warn_if_short(y.shape[0])
    data = data_scale(y)
    priors = model.priors(data)
    transforms = {
        g: {p: biject_to(prior.support) for p, prior in ps.items()} for g, ps in priors.items()
    }
    if initial_params is None:
        start = {
            g: {p: _starting_value(prior) for p, prior in ps.items()} for g, ps in priors.items()
        }
    else:
        if not isinstance(initial_params, dict) or not all(
            isinstance(v, dict) for v in initial_params.values()
        ):
            raise TypeError(
                "`initial_params` must be a dict {component: {parameter: value}} (plus "
                f"'observation'); got {initial_params!r}."
            )
        unknown = sorted(set(initial_params) - set(priors))
        if unknown:
            raise ValueError(
                f"`initial_params` names {unknown}, not parameter groups of the model; they "
                f"are {sorted(priors)}."
            )
        start = {}
        for group, ps in priors.items():
            given = initial_params.get(group, {})
            extra = sorted(set(given) - set(ps))
            if extra:
                raise ValueError(
                    f"`initial_params[{group!r}]` names unknown parameters {extra}; they are "
                    f"{list(ps)}."
                )
            missing = [p for p in ps if p not in given]
            if missing:
                raise ValueError(f"`initial_params[{group!r}]` lacks {missing}.")
            start[group] = {p: jnp.asarray(given[p], y.dtype) for p in ps}
            for p, value in start[group].items():
                if not bool(jnp.all(priors[group][p].support(value))):
                    raise ValueError(
                        f"`initial_params[{group!r}][{p!r}]` = {value} is outside the support "
                        f"of the parameter ({priors[group][p].support})."
                    )
    unconstrained = {
        g: {p: transforms[g][p].inv(v) for p, v in ps.items()} for g, ps in start.items()
    }
    flat0, unravel = ravel_pytree(unconstrained)

    def constrain(u):
        return {g: {p: transforms[g][p](v) for p, v in ps.items()} for g, ps in u.items()}

    def negative_log_likelihood(params):
        ssm = model.ssm(
            params, data, y.shape[0], initial_mean=initial_mean, initial_cov=initial_cov
        )
        return -ssm.log_prob(y[:, None])

    objective = jax.jit(
        jax.value_and_grad(lambda x: negative_log_likelihood(constrain(unravel(x))))
    )

    def fun(x):
        value, grad = objective(jnp.asarray(x, flat0.dtype))
        return float(value), np.asarray(grad, dtype=float)

    result = scipy.optimize.minimize(
        fun, np.asarray(flat0, dtype=float), jac=True, method="L-BFGS-B",
        options={"maxiter": max_iterations, "gtol": gtol, "ftol": 1e-15},
    )  # fmt: skip
    params = constrain(unravel(jnp.asarray(result.x, flat0.dtype)))
    flat_params, unravel_params = ravel_pytree(params)

    def gradient_twice(flat):
        # Forward over reverse, the gradient also as the auxiliary output: one reverse pass
        # gives both the Hessian (its jacfwd) and the gradient.
        gradient = jax.grad(lambda f: negative_log_likelihood(unravel_params(f)))(flat)
        return gradient, gradient

    # Jitted: op-by-op dispatch of the Hessian through the filter takes a minute even for d = 5.
    hessian, gradient = jax.jit(jax.jacfwd(gradient_twice, has_aux=True))(flat_params)
    covariance = jnp.linalg.inv(hessian)
    variances = jnp.diagonal(covariance)
    positive = bool(jnp.all(jnp.linalg.eigvalsh(0.5 * (hessian + hessian.T)) > 0))
    errors = jnp.where(positive & (variances > 0), jnp.sqrt(jnp.abs(variances)), jnp.nan)
    finite = bool(np.isfinite(result.fun))
    converged = bool(result.success)
    message = str(result.message)
    if finite and positive and not converged:
        # L-BFGS-B also stops when its line search finds no decrease (ABNORMAL), which
        # near the optimum is rounding: the objective changes by a few units in its last
        # place and the gradient's rounding error decides. The decrease a Newton step
        # would still give, g^T H^-1 g / 2, tells the optimum from a real failure.
        decrease = 0.5 * float(gradient @ covariance @ gradient)
        precision = 1e3 * float(jnp.finfo(flat0.dtype).eps) * max(1.0, abs(float(result.fun)))
        if 0.0 <= decrease <= precision:
            converged = True
            message = (
                f"{message} (accepted: a Newton step would lower the objective by "
                f"{decrease:.2g}, below its rounding level {precision:.2g})"
            )
    warn_if(
        not finite,
        "fit_mle: the log-likelihood is not finite where L-BFGS-B stopped (a degenerate "
        "model for this series, e.g. a noise scale driven to 0); the estimate is not usable.",
    )
    warn_if(
        finite and not converged,
        f"fit_mle: L-BFGS-B did not converge ({result.message}); raise `max_iterations` or "
        "give `initial_params` closer to the optimum.",
    )
    warn_if(
        converged and not positive,
        "fit_mle: the Hessian at the optimum is not positive definite (a parameter at the "
        "boundary of its support, or not identified); standard errors are NaN.",
    )
    return MLEResult(
        params=params,
        standard_errors=unravel_params(errors),
        covariance=covariance,
        log_likelihood=-jnp.asarray(result.fun),
        converged=converged,
        num_iterations=int(result.nit),
        message=message,
    )
