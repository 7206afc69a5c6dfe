"""`MultiSeries`: several series, each a structural model (`Sum`), fitted in one NumPyro model.

Given the parameters the series are independent. The joint model is one `LinearGaussianSSM`
with ``p`` observations per time step: block-diagonal transition, low-rank process-noise factor
and observation matrices, so one parallel Kalman filter marginalises every series' states (each
series may miss values at its own time points). The NumPyro model samples each series'
parameters under the series' name (sites ``"{series}_{component}_{parameter}"``), so priors can
be shared or made hierarchical by a user's own model around `ssm`. Forecasts and
decompositions factorise over the series and reuse the univariate `forecast` and `decompose`.

Reference: Harvey (1989), "Forecasting, structural time series models and the Kalman filter",
ch. 8 (multivariate structural models; here the seemingly unrelated case without correlated
disturbances).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.handlers import scope

from numpyro_parallel._checks import check_positive_int, concrete
from numpyro_parallel.ssm.kalman.distribution import LinearGaussianSSM
from numpyro_parallel.strategy import StrategyLike, as_strategy
from numpyro_parallel.sts._validate import (
    as_float_array,
    check_distinct_sites,
    check_samples,
    check_series,
)
from numpyro_parallel.sts.components import DataScale, block_diag
from numpyro_parallel.sts.forecast import Contribution, Forecast, decompose, forecast
from numpyro_parallel.sts.model import Sum, data_scale

__all__ = ["MultiSeries"]


class MultiSeries:
    """Independent structural models for the ``p`` columns of a ``(T, p)`` series.

    Args:
        models: ``{series name: Sum}`` in column order.
        name: site name of the ``(T, p)`` observations in `numpyro_model` (default ``"y"``).
        strategy: how the joint Kalman recursions run (`numpyro_parallel.strategy`).

    Example:
        ```python
        model = sts.MultiSeries({
            "north": sts.Sum([sts.LocalLevel(), sts.Seasonal(period=12)]),
            "south": sts.Sum([sts.LocalLinearTrend()]),
        })
        mcmc = MCMC(NUTS(model.numpyro_model), num_warmup=500, num_samples=500)
        mcmc.run(jax.random.PRNGKey(0), y)   # y: (T, 2), NaN = missing
        fc = model.forecast(mcmc.get_samples(), y, 12, jax.random.PRNGKey(1))  # (S, 12, 2)
        ```

    Raises:
        TypeError: ``models`` not a non-empty mapping from names to `Sum`.
        ValueError: a series name that is not an identifier; two series whose sites
            (``"{series}_{component}_{parameter}"``) collide.
    """

    def __init__(
        self, models: Mapping[str, Sum], *, name: str = "y", strategy: StrategyLike = "auto"
    ):
        if not isinstance(models, Mapping) or not models:
            raise TypeError(f"`models` must be a non-empty {{name: sts.Sum}} dict; got {models!r}.")
        for series, model in models.items():
            if not isinstance(series, str) or not series.isidentifier():
                raise ValueError(
                    f"`models` keys must be identifiers (site prefixes); got {series!r}."
                )
            if not isinstance(model, Sum):
                raise TypeError(
                    f"`models[{series!r}]` must be an sts.Sum; got {type(model).__name__}."
                )
        if not isinstance(name, str) or not name:
            raise TypeError(f"`name` must be a non-empty string; got {name!r}.")
        sites = [f"{series}_{site}" for series, m in models.items() for site in m.site_shapes()]
        check_distinct_sites([*sites, name], "'{series}_{component}_{parameter}'")
        self.models = dict(models)
        self.name = name
        self.strategy = as_strategy(strategy)

    @property
    def num_series(self) -> int:
        """Number of series p."""
        return len(self.models)

    @property
    def state_dim(self) -> int:
        """Dimension of the stacked state."""
        return sum(m.state_dim for m in self.models.values())

    def _check_y(self, y) -> jax.Array:
        y = as_float_array("y", y)
        if y.ndim != 2 or y.shape[1] != self.num_series:
            raise ValueError(f"`y` must have shape (T, {self.num_series}); got {y.shape}.")
        y = check_series(y, ndim=2)
        known = concrete(y)
        if known is not None:
            for i, series in enumerate(self.models):
                if np.all(np.isnan(known[:, i])):
                    raise ValueError(
                        f"`y[:, {i}]` (series {series!r}) has no observed (non-NaN) values."
                    )
        return y

    def _check_samples(self, samples: Any) -> None:
        if not isinstance(samples, Mapping):
            raise TypeError(
                "`samples` must be a dict of posterior draws, e.g. mcmc.get_samples(); got "
                f"{type(samples).__name__}."
            )
        sizes = {
            series: check_samples(
                self._series_samples(samples, series), model.site_shapes(), f"{series}_"
            )
            for series, model in self.models.items()
        }
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"`samples` sites must share the leading draw axis; got {sizes} draws by series."
            )

    def _check_design_series(self, design_matrices) -> dict[str, Any]:
        if design_matrices is None:
            return {}
        if not isinstance(design_matrices, Mapping):
            raise TypeError(
                "`design_matrices` must be a dict {series: {component: covariates}}; got "
                f"{type(design_matrices).__name__}."
            )
        unknown = sorted(set(design_matrices) - set(self.models))
        if unknown:
            raise ValueError(
                f"`design_matrices` names {unknown}, not series of the model; they are "
                f"{list(self.models)}."
            )
        return dict(design_matrices)

    def data_scales(self, y) -> dict[str, DataScale]:
        """`data_scale` of every column of ``y`` (``(T, p)``)."""
        y = self._check_y(y)
        return {series: data_scale(y[:, i]) for i, series in enumerate(self.models)}

    def sample_params(self, data: Mapping[str, DataScale]) -> dict[str, Any]:
        """Sample every series' parameters as sites ``"{series}_{component}_{parameter}"``."""
        params = {}
        for series, model in self.models.items():
            with scope(prefix=series, divider="_"):
                params[series] = model.sample_params(data[series])
        return params

    def params_from_samples(self, samples: Mapping[str, Any]) -> dict[str, Any]:
        """Nest flat NumPyro sites as `ssm` expects (``{series: {component: {...}}}``)."""
        return {
            series: model.params_from_samples(self._series_samples(samples, series))
            for series, model in self.models.items()
        }

    @staticmethod
    def _series_samples(samples: Mapping[str, Any], series: str) -> dict[str, Any]:
        prefix = f"{series}_"
        return {k[len(prefix) :]: v for k, v in samples.items() if k.startswith(prefix)}

    def ssm(self, params, data: Mapping[str, DataScale], num_steps: int) -> LinearGaussianSSM:
        """The joint `LinearGaussianSSM` over ``(num_steps, p)`` observations.

        Args:
            params: ``{series: Sum parameters}`` (see `Sum.ssm`).
            data: ``{series: DataScale}`` (`data_scales`).
            num_steps: T.
        """
        missing = [series for series in self.models if series not in params]
        if missing:
            raise ValueError(f"`params` lacks the parameters of the series {missing}.")
        parts = [
            model.ssm(params[s], data[s], num_steps).params for s, model in self.models.items()
        ]

        def diag(field):
            return block_diag([getattr(part, field) for part in parts])

        def concat(field):
            return jnp.concatenate([getattr(part, field) for part in parts], axis=-1)

        return LinearGaussianSSM(
            concat("initial_mean"),
            transition_matrix=diag("transition_matrix"),
            observation_matrix=diag("observation_matrix"),
            num_steps=num_steps,
            initial_cov_factor=diag("initial_chol"),
            transition_cov_factor=diag("transition_chol"),
            observation_cov_factor=diag("observation_chol"),
            transition_offset=concat("transition_offset"),
            observation_offset=concat("observation_offset"),
            strategy=self.strategy,
        )

    def numpyro_model(self, y=None, num_steps: int | None = None) -> None:
        """NumPyro model: every series' parameters, then the ``(T, p)`` observations.

        Args:
            y: ``(T, p)`` observed series (NaN = missing), or None to simulate.
            num_steps: T, required when ``y`` is None.
        """
        if y is None:
            if num_steps is None:
                raise ValueError("`num_steps` is required when `y` is None.")
            num_steps = check_positive_int("num_steps", num_steps)
            data = {s: DataScale(jnp.asarray(0.0), jnp.asarray(1.0)) for s in self.models}
        else:
            y = self._check_y(y)
            num_steps, data = y.shape[0], self.data_scales(y)
        for model in self.models.values():
            model.warn_if_short(num_steps)
        ssm = self.ssm(self.sample_params(data), data, num_steps)
        numpyro.sample(self.name, ssm, obs=y)

    def log_prob(self, params, y) -> jax.Array:
        """Joint log-likelihood ``log p(y | params)`` with the default initial states."""
        y = self._check_y(y)
        return self.ssm(params, self.data_scales(y), y.shape[0]).log_prob(y)

    def forecast(
        self,
        samples: Mapping[str, Any],
        y,
        horizon: int,
        rng_key: jax.Array,
        *,
        design_matrices: Mapping[str, Any] | None = None,
        observation_noise: bool = True,
    ) -> Forecast:
        """Posterior predictive forecast of every series (see `numpyro_parallel.sts.forecast`).

        Args:
            samples: posterior draws of `numpyro_model`'s sites, leading draw axis S.
            y: ``(T, p)`` observed series.
            horizon: number of future steps h >= 1.
            rng_key: PRNG key.
            design_matrices: ``{series: {component: (T + h, k)}}`` for regression components.
            observation_noise: include observation noise or not (the latent signals).

        Returns:
            A `Forecast` with ``(S, h, p)`` fields.
        """
        y = self._check_y(y)
        self._check_samples(samples)
        design_matrices = self._check_design_series(design_matrices)
        keys = jax.random.split(rng_key, self.num_series)
        parts = [
            forecast(
                model,
                self._series_samples(samples, series),
                y[:, i],
                horizon,
                keys[i],
                design_matrices=design_matrices.get(series),
                observation_noise=observation_noise,
            )
            for i, (series, model) in enumerate(self.models.items())
        ]
        return Forecast(*(jnp.stack(fields, axis=-1) for fields in zip(*parts, strict=True)))

    def decompose(
        self,
        samples: Mapping[str, Any],
        y,
        *,
        horizon: int = 0,
        design_matrices: Mapping[str, Any] | None = None,
    ) -> dict[str, dict[str, Contribution]]:
        """Every series' component contributions (see `numpyro_parallel.sts.decompose`).

        Returns:
            ``{series: {component: Contribution}}`` with ``(S, T + horizon)`` fields.
        """
        y = self._check_y(y)
        self._check_samples(samples)
        design_matrices = self._check_design_series(design_matrices)
        return {
            series: decompose(model, self._series_samples(samples, series), y[:, i],
                              horizon=horizon, design_matrices=design_matrices.get(series))
            for i, (series, model) in enumerate(self.models.items())
        }  # fmt: skip
