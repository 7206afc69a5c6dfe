"""`Sum`: a structural time-series model assembled from components, as a NumPyro model.

The components' blocks are stacked into one `LinearGaussianSSM` with a block-diagonal
transition matrix and a block-diagonal low-rank process-noise factor, so the states are
marginalised by the parallel square-root Kalman filter and NUTS samples only the component
parameters.

References: Harvey (1989), "Forecasting, structural time series models and the Kalman
filter"; Scott & Varian (2014), "Predicting the present with Bayesian structural time series".
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from numpyro_parallel._checks import check_bool, check_positive_int, concrete
from numpyro_parallel.ssm.kalman.distribution import LinearGaussianSSM
from numpyro_parallel.strategy import StrategyLike, as_strategy
from numpyro_parallel.sts._validate import (
    as_float_array,
    check_distinct_sites,
    check_initial_state,
    check_series,
)
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
    y = as_float_array("y", y).reshape(-1)
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
        components: the `Component` instances; their names must be distinct, not
            ``"observation"`` (the observation noise's group), and their sites
            (``"{component}_{parameter}"``) must not collide.
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

    Raises:
        TypeError: ``components`` not components, ``observation_noise`` not a bool,
            ``observation_prior`` not a NumPyro distribution, ``name`` not a string.
        ValueError: clashing component or site names; a prior override of the wrong shape;
            no component with a state.
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
        if "observation" in names:
            raise ValueError(
                "a component may not be named 'observation' (the group of the observation "
                "noise's parameters); rename it."
            )
        if sum(c.state_dim for c in components) == 0:
            raise ValueError("`components` must include at least one component with a state.")
        if observation_prior is not None and not isinstance(observation_prior, dist.Distribution):
            raise TypeError(
                "`observation_prior` must be a numpyro.distributions.Distribution; got "
                f"{observation_prior!r}."
            )
        if not isinstance(name, str) or not name:
            raise TypeError(f"`name` must be a non-empty string; got {name!r}.")
        for c in components:
            c.check_prior_shapes()
        self.components = components
        self.observation_noise = check_bool("observation_noise", observation_noise)
        self.observation_prior = observation_prior
        self.name = name
        self.strategy = as_strategy(strategy)
        check_distinct_sites(
            [site for site, _ in self._sites()] + [name],
            "'{component}_{parameter}', 'observation_scale'",
        )

    def _sites(self) -> list[tuple[str, tuple[int, ...]]]:
        sites = [
            (f"{c.name}_{p}", tuple(c.parameter_shape(p)))
            for c in self.components
            for p in c.parameter_names
        ]
        return sites + [("observation_scale", ())] * self.observation_noise

    def site_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{NumPyro site: shape of one value}`` of the model's parameters."""
        return dict(self._sites())

    @property
    def state_dim(self) -> int:
        """Dimension of the stacked state."""
        return sum(c.state_dim for c in self.components)

    def warn_if_short(self, num_steps: int) -> bool:
        """Warn (`RuntimeWarning`) when a seasonal cycle is longer than the series.

        A seasonal effect is only identified from at least one full cycle (``period *
        season_length`` steps; two or more to tell it from the level's drift): over a shorter
        series its prior alone sets the seasons that were never observed. Returns whether it
        warned.
        """
        short = [
            f"{c.name!r} (cycle of {cycle:g} steps)"
            for c in self.components
            if (cycle := getattr(c, "cycle_length", None)) is not None and cycle > num_steps
        ]
        if short:
            warnings.warn(
                f"the series has {num_steps} time points, fewer than one cycle of the seasonal "
                f"component(s) {', '.join(short)}: the seasons not observed are set by the "
                "prior alone.",
                RuntimeWarning,
                stacklevel=3,
            )
        return bool(short)

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
        initial_mean, initial_cov = check_initial_state(self.state_dim, initial_mean, initial_cov)
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
            if hasattr(c, "design_matrix"):
                rows = jnp.shape(args[0] if args else c.design_matrix)[0]
                if rows != num_steps:
                    where = (
                        f"`design_matrices[{c.name!r}]`"
                        if args
                        else f"the `design_matrix` of component {c.name!r}"
                    )
                    raise ValueError(
                        f"{where} has {rows} rows, but the series has {num_steps} time points "
                        "(with a forecast: the series plus the horizon); give one row per step."
                    )
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
            num_steps = check_positive_int("num_steps", num_steps)
            data = DataScale(jnp.asarray(0.0), jnp.asarray(1.0))
        else:
            y = check_series(y)
            num_steps = y.shape[0]
            data = data_scale(y)
        self.warn_if_short(num_steps)
        params = self.sample_params(data)
        ssm = self.ssm(params, data, num_steps)
        obs = None if y is None else y[:, None]
        numpyro.sample(self.name, ssm, obs=obs)

    def log_prob(self, params, y) -> jax.Array:
        """Log-likelihood ``log p(y | params)`` with the default initial states."""
        y = check_series(y)
        return self.ssm(params, data_scale(y), y.shape[0]).log_prob(y[:, None])
