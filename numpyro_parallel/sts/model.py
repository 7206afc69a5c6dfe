"""`Sum`: a structural time-series model assembled from components, as a NumPyro model.

The components' blocks are stacked into one `LinearGaussianSSM` with a block-diagonal
transition matrix and a block-diagonal low-rank process-noise factor, so the states are
marginalised by the parallel square-root Kalman filter and NUTS samples only the component
parameters.

References: Harvey (1989), "Forecasting, structural time series models and the Kalman
filter"; Scott & Varian (2014), "Predicting the present with Bayesian structural time series".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from numpyro_parallel._checks import concrete
from numpyro_parallel.ssm.kalman.distribution import LinearGaussianSSM
from numpyro_parallel.strategy import StrategyLike, as_strategy
from numpyro_parallel.sts.components import (
    Component,
    ComponentSSM,
    DataScale,
    block_diag,
    positive_scale,
)

__all__ = ["Sum", "data_scale"]


def data_scale(y) -> DataScale:
    """Location (first observed value) and scale (standard deviation) of a series.

    Missing values (NaN) are ignored; a constant series gets scale 1.

    Args:
        y: ``(T,)`` or ``(T, 1)`` observations.
    """
    y = jnp.asarray(y).reshape(-1)
    observed = ~jnp.isnan(y)
    known = concrete(observed)
    if known is not None and not known.any():
        raise ValueError("`y` has no observed (non-NaN) values.")
    first = y[jnp.argmax(observed)]
    scale = jnp.sqrt(jnp.nanvar(y))
    scale = jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0)
    return DataScale(jnp.where(jnp.isnan(first), 0.0, first), scale)


def _time_expand(value: jnp.ndarray, base_ndim: int, num_steps: int) -> jnp.ndarray:
    if value.ndim == base_ndim:
        return jnp.broadcast_to(value, (num_steps, *value.shape))
    return value


class Sum:
    """A structural time-series model: the sum of components plus observation noise.

    Args:
        components: the `Component` instances; their names must be distinct.
        observation_noise: add ``ε_t ~ N(0, observation_scale²)`` (True) or observe the sum
            of the components exactly (False).
        observation_prior: prior of ``observation_scale``; default log-normal around 5% of the
            series' standard deviation.
        name: site name of the observations in `numpyro_model` (default ``"y"``).
        strategy: how the Kalman recursions run (`numpyro_parallel.strategy`): ``"auto"``
            (default), `Sequential()`, `Associative()` or `Blocked(block_size)`; it is the
            strategy of every `LinearGaussianSSM` the model builds (`ssm`), so of
            `numpyro_model`, `fit_mle`, `forecast`, `decompose` and `detect_anomalies`.

    Example:
        ```python
        from numpyro_parallel import sts
        model = sts.Sum([sts.LocalLinearTrend(), sts.Seasonal(period=12)])
        mcmc = MCMC(NUTS(model.numpyro_model), num_warmup=500, num_samples=500)
        mcmc.run(jax.random.PRNGKey(0), y)
        ```
    """

    def __init__(
        self,
        components: Sequence[Component],
        *,
        observation_noise: bool = True,
        observation_prior: dist.Distribution | None = None,
        name: str = "y",
        strategy: StrategyLike = "auto",
    ):
        components = list(components)
        if not components or not all(isinstance(c, Component) for c in components):
            raise TypeError(
                "`components` must be a non-empty sequence of numpyro_parallel.sts components; "
                f"got {components!r}."
            )
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be distinct; got {names}.")
        if sum(c.state_dim for c in components) == 0:
            raise ValueError("`components` must include at least one component with a state.")
        self.components = components
        self.observation_noise = bool(observation_noise)
        self.observation_prior = observation_prior
        self.name = name
        self.strategy = as_strategy(strategy)

    @property
    def state_dim(self) -> int:
        """Dimension of the stacked state."""
        return sum(c.state_dim for c in self.components)

    # ------------------------------------------------------------------ assembly
    def _observation_prior(self, data: DataScale) -> dist.Distribution:
        return self.observation_prior or dist.LogNormal(jnp.log(0.05 * data.scale), 1.0)

    def priors(self, data: DataScale) -> dict[str, dict[str, dist.Distribution]]:
        """Every parameter's prior (the user's or the data-scaled default), nested as `ssm`."""
        priors = {c.name: {p: c.prior(p, data) for p in c.parameter_names} for c in self.components}
        if self.observation_noise:
            priors["observation"] = {"scale": self._observation_prior(data)}
        return priors

    def sample_params(self, data: DataScale) -> dict[str, dict[str, Any]]:
        """Sample every component's parameters (and the observation scale) as NumPyro sites."""
        params = {c.name: c.sample_params(data) for c in self.components}
        if self.observation_noise:
            scale = numpyro.sample("observation_scale", self._observation_prior(data))
            params["observation"] = {"scale": scale}
        return params

    def ssm(
        self,
        params,
        data: DataScale,
        num_steps: int,
        *,
        initial_mean=None,
        initial_cov=None,
        design_matrices: dict[str, Any] | None = None,
    ) -> LinearGaussianSSM:
        """The `LinearGaussianSSM` of the sum for given parameters.

        Args:
            params: ``{component name: {parameter: value}}`` plus
                ``{"observation": {"scale": σ}}`` when there is observation noise.
            data: location/scale of the series (`data_scale`), which sets default initial
                states.
            num_steps: T.
            initial_mean: ``(d,)`` stacked initial state mean, overriding the components'
                defaults (e.g. a known initialisation to compare with statsmodels).
            initial_cov: ``(d, d)`` stacked initial covariance, likewise.
            design_matrices: ``{component name: (num_steps, k) covariates}`` replacing the
                regression components' design matrices (e.g. extended over a forecast
                horizon).

        Returns:
            The distribution over ``(num_steps, 1)`` observations.
        """
        expected = [c.name for c in self.components] + (["observation"] * self.observation_noise)
        missing = [name for name in expected if name not in params]
        if missing:
            raise ValueError(f"`params` lacks the parameters of {missing}; see `sample_params`.")
        built = self.component_blocks(params, data, num_steps, design_matrices)
        blocks = [b for b in built if b.initial_mean.shape[-1] > 0]
        varying_F = any(b.transition_matrix.ndim == 3 for b in blocks)
        varying_L = any(b.noise_factor.ndim == 3 for b in blocks)
        varying_H = any(b.observation_matrix.ndim == 2 for b in blocks)

        def stack(field, ndim, varying):
            parts = [getattr(b, field) for b in blocks]
            if varying:
                parts = [_time_expand(p, ndim, num_steps) for p in parts]
            return parts

        F = block_diag(stack("transition_matrix", 2, varying_F))
        L = block_diag(stack("noise_factor", 2, varying_L))
        H = jnp.concatenate(stack("observation_matrix", 1, varying_H), axis=-1)[..., None, :]
        m0 = jnp.concatenate([b.initial_mean for b in blocks])
        P0 = block_diag([b.initial_cov for b in blocks])
        if initial_mean is not None:
            m0 = jnp.asarray(initial_mean, F.dtype)
        if initial_cov is not None:
            P0 = jnp.asarray(initial_cov, F.dtype)
        c = jnp.concatenate(
            [jnp.broadcast_to(jnp.asarray(b.transition_offset, F.dtype), b.initial_mean.shape)
             for b in blocks]
        )  # fmt: skip
        offset = sum(jnp.asarray(b.observation_offset, F.dtype) for b in built)
        offset = offset[:, None] if jnp.ndim(offset) == 1 else jnp.broadcast_to(offset, (1,))
        if self.observation_noise:
            sigma = positive_scale("observation", params["observation"], "scale")
        else:
            sigma = 0.0
        R = jnp.asarray(sigma, F.dtype) ** 2 * jnp.ones((1, 1), F.dtype)
        return LinearGaussianSSM(
            m0,
            P0,
            F,
            None,
            H,
            R,
            num_steps,
            transition_cov_factor=L,
            transition_offset=c,
            observation_offset=offset,
            strategy=self.strategy,
        )

    def component_blocks(
        self,
        params,
        data: DataScale,
        num_steps: int,
        design_matrices: dict[str, Any] | None = None,
    ) -> list[ComponentSSM]:
        """Every component's `ComponentSSM` for ``params``, in model order (see `ssm`)."""
        design_matrices = design_matrices or {}
        built = []
        for c in self.components:
            args = (design_matrices[c.name],) if c.name in design_matrices else ()
            kwargs = {"num_steps": num_steps} if c.time_varying else {}
            built.append(c.build(params[c.name], data, *args, **kwargs))
        return built

    def params_from_samples(self, samples: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Nest flat NumPyro sites (``"trend_level_scale"``) as `ssm` expects."""
        params = {
            c.name: {p: samples[f"{c.name}_{p}"] for p in c.parameter_names}
            for c in self.components
        }
        if self.observation_noise:
            params["observation"] = {"scale": samples["observation_scale"]}
        return params

    # ------------------------------------------------------------------ NumPyro
    def numpyro_model(self, y=None, num_steps: int | None = None) -> None:
        """NumPyro model: component parameters, then the observations ``y`` (``(T,)``).

        Args:
            y: ``(T,)`` observed series (NaN = missing), or None to simulate.
            num_steps: T, required when ``y`` is None.
        """
        if y is None:
            if num_steps is None:
                raise ValueError("`num_steps` is required when `y` is None.")
            data = DataScale(jnp.asarray(0.0), jnp.asarray(1.0))
        else:
            y = jnp.asarray(y)
            if y.ndim != 1:
                raise ValueError(f"`y` must have shape (T,); got {y.shape}.")
            num_steps = y.shape[0]
            data = data_scale(y)
        params = self.sample_params(data)
        ssm = self.ssm(params, data, num_steps)
        obs = None if y is None else y[:, None]
        numpyro.sample(self.name, ssm, obs=obs)

    def log_prob(self, params, y) -> jax.Array:
        """Log-likelihood ``log p(y | params)`` with the default initial states."""
        y = jnp.asarray(y)
        return self.ssm(params, data_scale(y), y.shape[0]).log_prob(y[:, None])
