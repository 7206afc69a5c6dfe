"""Structural time-series components as linear-Gaussian state-space blocks.

Each component maps its parameter values to a `ComponentSSM`: a transition block, a low-rank
noise factor (``Q = L Lᵀ`` with ``L`` of shape ``(d, r)``, never a singular dense covariance),
an observation row and an initial state distribution. `numpyro_parallel.sts.Sum` stacks the
blocks into one `LinearGaussianSSM`. Components also declare default priors scaled to the data
(`Component.sample_params`), in the spirit of TensorFlow Probability's ``sts`` module.

Conventions follow statsmodels' ``UnobservedComponents`` (Harvey 1989, "Forecasting,
structural time series models and the Kalman filter"; Durbin & Koopman 2012, "Time Series
Analysis by State Space Methods", §3.2): ``y_t = Σ_c H_c x_{c,t} + ε_t``, the first
observation sees the initial state directly.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from numpyro_parallel._checks import concrete, nan_unless
from numpyro_parallel.sts._validate import shape_matches

__all__ = [
    "Component",
    "ComponentSSM",
    "DataScale",
    "LocalLevel",
    "LocalLinearTrend",
    "block_diag",
    "positive_scale",
]


class ComponentSSM(NamedTuple):
    """One component's state-space block (univariate observation).

    Attributes:
        transition_matrix: ``(d, d)`` or ``(T, d, d)``.
        noise_factor: ``(d, r)`` or ``(T, d, r)``; the process-noise covariance is ``L Lᵀ``.
        observation_matrix: ``(d,)`` or ``(T, d)``: the component's contribution is
            ``observation_matrix @ x_t``.
        initial_mean: ``(d,)``.
        initial_cov: ``(d, d)``.
        observation_offset: ``()`` or ``(T,)`` contribution that is not a state (static
            regression).
        transition_offset: ``(d,)`` constant added to the next state (a mean slope), or 0.
    """

    transition_matrix: jnp.ndarray
    noise_factor: jnp.ndarray
    observation_matrix: jnp.ndarray
    initial_mean: jnp.ndarray
    initial_cov: jnp.ndarray
    observation_offset: jnp.ndarray | float = 0.0
    transition_offset: jnp.ndarray | float = 0.0


class DataScale(NamedTuple):
    """Location and scale of the observed series, used to scale default priors."""

    initial: float
    scale: float


def _scale_prior(scale: float) -> dist.Distribution:
    # Weakly informative, as TFP's sts defaults: the noise scale is a small fraction of the
    # series' scale, with a wide log-normal spread.
    return dist.LogNormal(jnp.log(0.05 * scale), 1.0)


def positive_scale(component: str, params: dict[str, Any], parameter: str) -> jnp.ndarray:
    """``params[parameter]`` checked to be a finite scale >= 0.

    Concrete invalid values raise `ValueError`; traced ones become NaN (NaN log-density).
    """
    value = jnp.asarray(params[parameter])
    known = concrete(value)
    if known is not None and not (np.all(np.isfinite(known)) and np.all(known >= 0)):
        raise ValueError(f"`{component}_{parameter}` must be a finite scale >= 0; got {known}.")
    return nan_unless(jnp.isfinite(value) & (value >= 0), value)


class Component:
    """Base class: a named block with parameters and default priors.

    Subclasses set ``parameter_names`` and implement `state_dim`, `build` and, when the
    default priors should differ, `default_prior`; a parameter that is not a scalar also
    needs `parameter_shape`.

    Args:
        name: prefix of the component's NumPyro sample sites (``"{name}_{parameter}"``).
        priors: optional mapping from parameter name to a NumPyro distribution, overriding the
            data-scaled defaults; its shape (batch and event) must be the parameter's
            (`parameter_shape`).

    Raises:
        TypeError: ``name`` not a non-empty string; a prior that is not a NumPyro
            distribution.
        ValueError: ``priors`` names an unknown parameter.
    """

    parameter_names: tuple[str, ...] = ()
    #: True when `build` needs ``num_steps`` (a time-varying block, e.g. multi-step seasons).
    time_varying: bool = False

    def __init__(self, name: str, priors: dict[str, dist.Distribution] | None = None):
        if not isinstance(name, str) or not name:
            raise TypeError(f"`name` must be a non-empty string; got {name!r}.")
        priors = dict(priors or {})
        unknown = set(priors) - set(self.parameter_names)
        if unknown:
            raise ValueError(
                f"`priors` names unknown parameters {sorted(unknown)} of {type(self).__name__}; "
                f"its parameters are {list(self.parameter_names)}."
            )
        for parameter, prior in priors.items():
            if not isinstance(prior, dist.Distribution):
                raise TypeError(
                    f"`priors[{parameter!r}]` of {type(self).__name__} must be a "
                    f"numpyro.distributions.Distribution; got {prior!r}."
                )
        self.name = name
        self.priors = priors

    def parameter_shape(self, parameter: str) -> tuple[int, ...]:
        """Shape of one value of ``parameter`` (default: a scalar)."""
        return ()

    def check_prior_shapes(self) -> None:
        """Raise `ValueError` when a prior override has the wrong shape (see `prior`)."""
        for parameter in self.priors:
            self.prior(parameter, None)

    @property
    def state_dim(self) -> int:
        """Dimension of the component's state."""
        raise NotImplementedError

    def default_prior(self, parameter: str, data: DataScale) -> dist.Distribution:
        """Default prior of ``parameter`` given the series' location and scale."""
        return _scale_prior(data.scale)

    def prior(self, parameter: str, data: DataScale) -> dist.Distribution:
        """The prior of ``parameter``: the user's override, else `default_prior`.

        Raises:
            ValueError: an override whose shape (batch + event) is not `parameter_shape`.
        """
        given = self.priors.get(parameter)
        if given is None:
            return self.default_prior(parameter, data)
        expected = tuple(self.parameter_shape(parameter))
        shape = tuple(given.batch_shape + given.event_shape)
        if not shape_matches(shape, expected):
            raise ValueError(
                f"the prior of `{self.name}_{parameter}` ({type(self).__name__} {self.name!r}) "
                f"must have shape {expected} (batch + event shape); got {shape}. A vector "
                "parameter needs e.g. `dist.Uniform(-jnp.ones(p), jnp.ones(p)).to_event(1)`."
            )
        return given

    def sample_params(self, data: DataScale) -> dict[str, Any]:
        """Sample the component's parameters as NumPyro sites ``{name}_{parameter}``."""
        return {
            parameter: numpyro.sample(f"{self.name}_{parameter}", self.prior(parameter, data))
            for parameter in self.parameter_names
        }

    def initial_state(self, data: DataScale) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Default initial state: centred at zero with the series' scale (TFP's choice)."""
        d = self.state_dim
        return jnp.zeros(d), (data.scale**2) * jnp.eye(d)

    def build(self, params: dict[str, Any], data: DataScale) -> ComponentSSM:
        """The component's state-space block for parameter values ``params``."""
        raise NotImplementedError


class LocalLevel(Component):
    """Random-walk level ``μ_{t+1} = μ_t + η_t``, ``η_t ~ N(0, level_scale²)``.

    Args:
        name: site prefix (default ``"level"``).
        priors: overrides for ``level_scale``.
    """

    parameter_names = ("level_scale",)

    def __init__(self, name: str = "level", priors=None):
        super().__init__(name, priors)

    @property
    def state_dim(self) -> int:
        return 1

    def initial_state(self, data: DataScale):
        return jnp.array([data.initial]), jnp.array([[data.scale**2]])

    def build(self, params, data):
        mean, cov = self.initial_state(data)
        scale = positive_scale(self.name, params, "level_scale")
        return ComponentSSM(jnp.eye(1), scale.reshape(1, 1), jnp.ones(1), mean, cov)


class LocalLinearTrend(Component):
    """Level and slope: ``μ_{t+1} = μ_t + β_t + η_t``, ``β_{t+1} = β_t + ζ_t``.

    Args:
        name: site prefix (default ``"trend"``).
        priors: overrides for ``level_scale`` and ``slope_scale``.
    """

    parameter_names = ("level_scale", "slope_scale")

    def __init__(self, name: str = "trend", priors=None):
        super().__init__(name, priors)

    @property
    def state_dim(self) -> int:
        return 2

    def initial_state(self, data: DataScale):
        return jnp.array([data.initial, 0.0]), (data.scale**2) * jnp.eye(2)

    def build(self, params, data):
        mean, cov = self.initial_state(data)
        level = positive_scale(self.name, params, "level_scale")
        factor = jnp.diag(jnp.stack([level, positive_scale(self.name, params, "slope_scale")]))
        F = jnp.array([[1.0, 1.0], [0.0, 1.0]])
        return ComponentSSM(F, factor, jnp.array([1.0, 0.0]), mean, cov)


class SemiLocalLinearTrend(LocalLinearTrend):
    """Level with an AR(1) slope around a mean slope (TFP's ``SemiLocalLinearTrend``).

    ``μ_{t+1} = μ_t + β_t + η_t`` and ``β_{t+1} = slope_mean + φ (β_t - slope_mean) + ζ_t``
    with ``|φ| < 1``: the slope reverts to ``slope_mean``, so long-horizon forecasts widen
    linearly rather than quadratically as with `LocalLinearTrend` (whose state, initial state
    and noise it shares).

    Args:
        name: site prefix (default ``"trend"``).
        priors: overrides for ``level_scale``, ``slope_mean``, ``slope_scale`` and
            ``autoregressive_coef`` (default ``Uniform(-1, 1)``).
    """

    parameter_names = ("level_scale", "slope_mean", "slope_scale", "autoregressive_coef")

    def default_prior(self, parameter: str, data: DataScale) -> dist.Distribution:
        if parameter == "slope_mean":
            return dist.Normal(0.0, 0.1 * data.scale)
        if parameter == "autoregressive_coef":
            return dist.Uniform(-1.0, 1.0)
        return _scale_prior(data.scale)

    def build(self, params, data):
        trend = super().build(params, data)
        dtype = trend.noise_factor.dtype
        phi = jnp.asarray(params["autoregressive_coef"], dtype)
        known = concrete(phi)
        if known is not None and not (np.isfinite(known) and abs(known) < 1):
            raise ValueError(f"`{self.name}_autoregressive_coef` must lie in (-1, 1); got {known}.")
        phi = nan_unless(jnp.abs(phi) < 1, phi)
        slope_mean = jnp.asarray(params["slope_mean"], dtype)
        F = trend.transition_matrix.astype(dtype).at[1, 1].set(phi)
        offset = jnp.stack([jnp.zeros_like(slope_mean), (1.0 - phi) * slope_mean])
        return trend._replace(transition_matrix=F, transition_offset=offset)


def block_diag(blocks: list[jnp.ndarray]) -> jnp.ndarray:
    """Block-diagonal matrix (stack) from blocks with equal leading shapes."""
    rows = sum(b.shape[-2] for b in blocks)
    cols = sum(b.shape[-1] for b in blocks)
    out = jnp.zeros((*blocks[0].shape[:-2], rows, cols), blocks[0].dtype)
    i = j = 0
    for b in blocks:
        out = out.at[..., i : i + b.shape[-2], j : j + b.shape[-1]].set(b)
        i, j = i + b.shape[-2], j + b.shape[-1]
    return out
