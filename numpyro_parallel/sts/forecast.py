"""Forecasting and decomposition for structural time-series models.

A forecast is a smoother over the series extended by ``horizon`` missing values: filtering to
the end of the data is the parallel Kalman filter (O(log T) depth), and the future steps are
the filter's predictions, because missing observations carry no information. Draws of future
observations come from the parallel forward-filter backward-sampler on the same extended
series. Everything is vmapped over the posterior draws.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from numpyro_parallel._checks import check_bool, check_positive_int, check_rng_key
from numpyro_parallel.sts._validate import (
    check_initial_state,
    check_samples,
    check_series,
)
from numpyro_parallel.sts.model import Sum, data_scale
from numpyro_parallel.sts.regression import design

__all__ = ["Contribution", "Forecast", "decompose", "forecast"]


class Forecast(NamedTuple):
    """Posterior predictive forecast over a horizon h, for S posterior draws.

    Attributes:
        mean: ``(S, h)`` predictive means ``E[y_{T+k} | y, θ_s]``.
        variance: ``(S, h)`` predictive variances (with observation noise when requested).
        samples: ``(S, h)`` one predictive draw per posterior draw.
    """

    mean: jax.Array
    variance: jax.Array
    samples: jax.Array


class Contribution(NamedTuple):
    """One component's smoothed contribution ``H_c x_{c,t}`` for S posterior draws.

    Attributes:
        mean: ``(S, T + h)`` smoothed means (h: `decompose`'s forecast horizon, default 0).
        variance: ``(S, T + h)`` smoothed variances.
    """

    mean: jax.Array
    variance: jax.Array


def _check_model(model: Any) -> Sum:
    if not isinstance(model, Sum):
        raise TypeError(f"`model` must be a numpyro_parallel.sts.Sum; got {type(model).__name__}.")
    return model


#: posterior draws evaluated side by side: memory is O(DRAW_BATCH T d²), not O(S T d²) (a
#: smoothed covariance for 1000 draws of a 13-state model over 500 months is 700 MB).
DRAW_BATCH = 64


def map_draws(fn, *draws: Any) -> Any:
    """``fn`` over the leading draw axis, ``DRAW_BATCH`` draws at a time (`jax.lax.map`)."""
    num_draws = jax.tree_util.tree_leaves(draws)[0].shape[0]
    return jax.lax.map(lambda args: fn(*args), draws, batch_size=min(num_draws, DRAW_BATCH))


def _draws(model: Sum, samples: dict[str, Any], prefix: str = "") -> int:
    """S, after checking that ``samples`` holds every site of ``model`` with S draws."""
    return check_samples(samples, model.site_shapes(), prefix)


def forecast(
    model: Sum,
    samples: dict[str, Any],
    y,
    horizon: int,
    rng_key: jax.Array,
    *,
    design_matrices: dict[str, Any] | None = None,
    observation_noise: bool = True,
    initial_mean=None,
    initial_cov=None,
) -> Forecast:
    """Posterior predictive forecast of ``horizon`` steps after the series.

    Args:
        model: the `Sum` that was fitted.
        samples: posterior draws keyed by site name (``mcmc.get_samples()``), each with a
            leading draw axis S (flat draws: not ``get_samples(group_by_chain=True)``).
        y: ``(T,)`` observed series (NaN = missing; integer counts become floats).
        horizon: number of future steps h >= 1.
        rng_key: PRNG key for the predictive draws.
        design_matrices: ``{component name: (T + h, k)}`` covariates over the fit period AND
            the horizon, for regression components.
        observation_noise: include observation noise (predictive for ``y``) or not (the
            latent signal).
        initial_mean: optional ``(d,)`` initial state mean replacing the components'
            defaults (see `Sum.ssm`).
        initial_cov: optional ``(d, d)`` initial state covariance, likewise.

    Returns:
        A `Forecast`.

    Raises:
        TypeError: ``model`` not a `Sum`; ``samples`` not a dict; ``y`` or a design matrix
            not real numbers (integer series are converted to floats); ``observation_noise``
            not a bool; ``rng_key`` not a key.
        ValueError: ``y`` not ``(T,)``, holding inf or no observed value; ``horizon`` < 1;
            ``samples`` lacking a site of the model, or sites without a common leading draw
            axis (draws grouped by chain included: pass ``mcmc.get_samples()``); a
            regression without ``design_matrices``, or design matrices of the wrong size,
            non-finite, or for unknown components; an invalid ``initial_mean`` or
            ``initial_cov``.
    """
    model = _check_model(model)
    y = check_series(y)
    horizon = check_positive_int("horizon", horizon)
    num_draws = _draws(model, samples)
    observation_noise = check_bool("observation_noise", observation_noise)
    check_rng_key(rng_key)
    T = y.shape[0]
    design_matrices = _check_designs(model, design_matrices, T + horizon)
    initial_mean, initial_cov = check_initial_state(model.state_dim, initial_mean, initial_cov)
    y_ext = jnp.concatenate([y, jnp.full((horizon,), jnp.nan, y.dtype)])[:, None]
    data = data_scale(y)
    keys = jax.random.split(rng_key, num_draws)

    def one(draw, key):
        params = model.params_from_samples(draw)
        ssm = model.ssm(
            params,
            data,
            T + horizon,
            design_matrices=design_matrices,
            initial_mean=initial_mean,
            initial_cov=initial_cov,
        )
        prm = ssm.params
        filtered = ssm.filter(y_ext)
        H = prm.observation_matrix[T:, 0]
        offset = prm.observation_offset[T:, 0]
        cov = filtered.cov[T:]
        mean = jnp.einsum("td,td->t", H, filtered.mean[T:]) + offset
        noise_var = prm.observation_chol[T:, 0, 0] ** 2 if observation_noise else 0.0
        variance = jnp.einsum("td,tde,te->t", H, cov, H) + noise_var
        key_states, key_noise = jax.random.split(key)
        states = ssm.sample_states(key_states, y_ext)[T:]
        draw_y = jnp.einsum("td,td->t", H, states) + offset
        if observation_noise:
            draw_y = draw_y + jnp.sqrt(noise_var) * jax.random.normal(key_noise, (horizon,))
        return mean, variance, draw_y

    return Forecast(*map_draws(one, samples, keys))


def _check_designs(
    model: Sum, design_matrices, length: int, *, required: bool = True
) -> dict[str, jax.Array]:
    """The covariates of ``length`` steps, checked (finite, k columns) before any tracing.

    Args:
        model: the `Sum`.
        design_matrices: ``{regression component: (length, k)}`` or None.
        length: T + h.
        required: whether every regression component needs one (a forecast), or the
            components' own design matrices stand in (a decomposition of the fit period).
    """
    if design_matrices is None:
        design_matrices = {}
    if not isinstance(design_matrices, dict):
        raise TypeError(
            "`design_matrices` must be a dict {regression component: (T + h, k) covariates}; "
            f"got {type(design_matrices).__name__}."
        )
    regressions = {c.name: c for c in model.components if hasattr(c, "design_matrix")}
    checked = {}
    for name, X in design_matrices.items():
        if name not in regressions:
            raise ValueError(
                f"`design_matrices` names {name!r}, not a regression component of the model; "
                f"its regression components are {sorted(regressions)}."
            )
        X = design(f"design_matrices[{name!r}]", X)
        if X.shape[0] != length:
            raise ValueError(
                f"`design_matrices[{name!r}]` must cover the series and the horizon "
                f"({length} rows); got {X.shape[0]}."
            )
        k = regressions[name].design_matrix.shape[1]
        if X.shape[1] != k:
            raise ValueError(
                f"`design_matrices[{name!r}]` must have the {k} columns of the component's "
                f"design matrix; got {X.shape[1]}."
            )
        checked[name] = X
    for name in regressions:
        if required and name not in checked:
            raise ValueError(
                f"component {name!r} is a regression: pass its covariates for the series "
                f"and the horizon in `design_matrices[{name!r}]`."
            )
    return checked


def decompose(
    model: Sum,
    samples: dict[str, Any],
    y,
    *,
    horizon: int = 0,
    design_matrices: dict[str, Any] | None = None,
) -> dict[str, Contribution]:
    """Smoothed contribution of every component, for every posterior draw.

    With ``horizon > 0`` the contributions continue over the forecast period (the series is
    extended by missing values, as in `forecast`): the smoother's predictions of each
    component, whose variances grow with the horizon.

    Args:
        model: the fitted `Sum`.
        samples: posterior draws keyed by site name, leading draw axis S.
        y: ``(T,)`` observed series (NaN = missing).
        horizon: number of future steps h >= 0 to decompose after the series.
        design_matrices: ``{component name: (T + h, k)}`` covariates over the fit period and
            the horizon, required for regression components when ``horizon > 0``.

    Returns:
        ``{component name: Contribution}`` with ``(S, T + h)`` fields; the contributions'
        means add up to the smoothed signal.

    Raises:
        TypeError, ValueError: as `forecast` (``horizon`` may be 0; then ``design_matrices``
            is optional and, when given, covers the T fitted steps).
    """
    model = _check_model(model)
    y = check_series(y)
    horizon = check_positive_int("horizon", horizon, minimum=0)
    _draws(model, samples)
    length = y.shape[0] + horizon
    design_matrices = _check_designs(model, design_matrices, length, required=horizon > 0)
    y_ext = jnp.concatenate([y, jnp.full((horizon,), jnp.nan, y.dtype)])
    data = data_scale(y)

    def one(draw):
        params = model.params_from_samples(draw)
        ssm = model.ssm(params, data, length, design_matrices=design_matrices)
        smoothed = ssm.smooth(y_ext[:, None])
        H = ssm.params.observation_matrix[:, 0]
        blocks = model.component_blocks(params, data, length, design_matrices)
        out, start = {}, 0
        for c, built in zip(model.components, blocks, strict=True):
            stop = start + c.state_dim
            Hc, m = H[:, start:stop], smoothed.mean[:, start:stop]
            P = smoothed.cov[:, start:stop, start:stop]
            offset = jnp.broadcast_to(jnp.asarray(built.observation_offset, y.dtype), (length,))
            mean = jnp.einsum("td,td->t", Hc, m) + offset
            out[c.name] = Contribution(mean, jnp.einsum("td,tde,te->t", Hc, P, Hc))
            start = stop
        return out

    return map_draws(one, samples)
