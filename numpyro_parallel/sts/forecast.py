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

from numpyro_parallel._checks import check_positive_int
from numpyro_parallel.sts.model import Sum, data_scale

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


def _check_series(y) -> jax.Array:
    y = jnp.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"`y` must have shape (T,); got {y.shape}.")
    return y


#: posterior draws evaluated side by side: memory is O(DRAW_BATCH T d²), not O(S T d²) (a
#: smoothed covariance for 1000 draws of a 13-state model over 500 months is 700 MB).
DRAW_BATCH = 64


def map_draws(fn, *draws: Any) -> Any:
    """``fn`` over the leading draw axis, ``DRAW_BATCH`` draws at a time (`jax.lax.map`)."""
    num_draws = jax.tree_util.tree_leaves(draws)[0].shape[0]
    return jax.lax.map(lambda args: fn(*args), draws, batch_size=min(num_draws, DRAW_BATCH))


def _draws(samples: dict[str, Any]) -> int:
    leaves = jax.tree_util.tree_leaves(samples)
    if not isinstance(samples, dict) or not leaves:
        raise TypeError("`samples` must be a dict of posterior draws, e.g. mcmc.get_samples().")
    return leaves[0].shape[0]


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
            leading draw axis S.
        y: ``(T,)`` observed series (NaN = missing).
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
    """
    y = _check_series(y)
    horizon = check_positive_int("horizon", horizon)
    num_draws = _draws(samples)
    T = y.shape[0]
    _check_designs(model, design_matrices, T + horizon)
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


def _check_designs(model: Sum, design_matrices, length: int) -> None:
    design_matrices = design_matrices or {}
    names = {c.name: c for c in model.components}
    for name, X in design_matrices.items():
        if name not in names or not hasattr(names[name], "design_matrix"):
            raise ValueError(f"`design_matrices` names {name!r}, not a regression component.")
        if jnp.shape(X)[0] != length:
            raise ValueError(
                f"`design_matrices[{name!r}]` must cover the series and the horizon "
                f"({length} rows); got {jnp.shape(X)[0]}."
            )
    for c in model.components:
        if hasattr(c, "design_matrix") and c.name not in design_matrices:
            raise ValueError(
                f"component {c.name!r} is a regression: pass its covariates for the series "
                f"and the horizon in `design_matrices[{c.name!r}]`."
            )


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
    """
    y = _check_series(y)
    horizon = check_positive_int("horizon", horizon, minimum=0)
    _draws(samples)
    length = y.shape[0] + horizon
    if horizon:
        _check_designs(model, design_matrices, length)
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
