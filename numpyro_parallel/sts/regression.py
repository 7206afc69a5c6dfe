"""Regression and autoregressive components (see `numpyro_parallel.sts.components`).

The autoregressive component is parametrised by partial autocorrelations in ``(-1, 1)``,
mapped to coefficients by the Durbin–Levinson recursion, so every parameter value is
stationary (Monahan 1984, "A note on enforcing stationarity in autoregressive-moving average
models"); its initial state is the stationary distribution.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from numpyro_parallel._checks import check_finite, check_positive_int, concrete, nan_unless
from numpyro_parallel.sts._validate import as_float_array
from numpyro_parallel.sts.components import Component, ComponentSSM, DataScale, positive_scale

__all__ = ["Autoregressive", "DynamicRegression", "Regression", "coefficients_from_pacf"]


def coefficients_from_pacf(pacf: jnp.ndarray) -> jnp.ndarray:
    """AR coefficients ``φ_1..φ_p`` from partial autocorrelations in ``(-1, 1)``.

    Args:
        pacf: ``(p,)`` partial autocorrelations.

    Returns:
        ``(p,)`` coefficients of a stationary AR(p) process; NaN when a traced partial
        autocorrelation is outside ``(-1, 1)``.

    Raises:
        ValueError: concrete ``pacf`` not a vector with entries in ``(-1, 1)``.
    """
    pacf = jnp.asarray(pacf)
    if pacf.ndim != 1:
        raise ValueError(f"`pacf` must have shape (p,); got {pacf.shape}.")
    known = concrete(pacf)
    if known is not None and not np.all(np.abs(known) < 1):
        raise ValueError(f"`pacf` entries must lie in (-1, 1); got {known}.")
    pacf = nan_unless(jnp.abs(pacf) < 1, pacf)
    phi = jnp.zeros((0,), pacf.dtype)
    for k in range(pacf.shape[-1]):
        rho = pacf[k]
        phi = jnp.concatenate([phi - rho * phi[::-1], rho[None]])
    return phi


def stationary_cov(F: jnp.ndarray, Q: jnp.ndarray) -> jnp.ndarray:
    # P = F P Fᵀ + Q  <=>  (I - F ⊗ F) vec P = vec Q  (p² unknowns; p is small).
    p = F.shape[-1]
    vec = jnp.linalg.solve(jnp.eye(p * p, dtype=F.dtype) - jnp.kron(F, F), Q.reshape(-1))
    P = vec.reshape(p, p)
    return 0.5 * (P + P.T)


def design(name: str, design_matrix) -> jnp.ndarray:
    """``design_matrix`` as a finite floating ``(T, k)`` array with T, k >= 1.

    Raises:
        TypeError: not an array of real numbers (booleans and strings included).
        ValueError: not ``(T, k)`` or ``(T,)``, no rows or no columns, NaN or inf.
    """
    X = as_float_array(name, design_matrix)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"`{name}` must have shape (T, k) or (T,); got {X.shape}.")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"`{name}` needs at least one row and one column; got shape {X.shape}.")
    check_finite(name, X)
    return X


def column_scales(name: str, X: jnp.ndarray) -> jnp.ndarray:
    """Scale of each covariate for the weight priors, with a floor for constant columns.

    A column's standard deviation, where it varies; a column constant in the fit period
    (``c`` at every step) gets ``|c|``, an all-zero one 1 (one unit of the covariate), with a
    `RuntimeWarning`: such a column carries no information about its weight beyond the prior
    (a constant is not told apart from the level), so the prior alone decides its effect when
    the covariate changes over a forecast.
    """
    std = jnp.std(X, axis=0)
    magnitude = jnp.max(jnp.abs(X), axis=0)
    constant = std <= 64 * jnp.finfo(X.dtype).eps * magnitude  # zero up to rounding
    known = concrete(constant)
    if known is not None and known.any():
        columns = np.flatnonzero(known).tolist()
        warnings.warn(
            f"`{name}` columns {columns} are constant in the fit period: the data say nothing "
            "about their weights apart from the level, so their prior (sd = the series' scale "
            "over the column's magnitude, or over 1 for an all-zero column) alone decides "
            "their effect when they change, e.g. over a forecast.",
            RuntimeWarning,
            stacklevel=3,
        )
    floor = jnp.where(magnitude > 0, magnitude, 1.0)
    return jnp.where(constant, floor, std)


class Autoregressive(Component):
    """Stationary AR(p) component ``z_t = Σ_i φ_i z_{t-i} + σ ε_t`` in companion form.

    Args:
        order: p >= 1.
        name: site prefix (default ``"ar"``).
        priors: overrides for ``pacf`` (shape ``(p,)``, in ``(-1, 1)``; a scalar prior only
            for p = 1) and ``scale``.

    Raises:
        TypeError, ValueError: ``order`` not an int >= 1; a ``pacf`` value or prior of
            another shape than ``(p,)`` (the latter when the component joins a `Sum`).
    """

    parameter_names = ("pacf", "scale")

    def __init__(self, order: int, name: str = "ar", priors=None):
        self.order = check_positive_int("order", order)
        super().__init__(name, priors)

    @property
    def state_dim(self) -> int:
        return self.order

    def parameter_shape(self, parameter: str) -> tuple[int, ...]:
        return (self.order,) if parameter == "pacf" else ()

    def default_prior(self, parameter: str, data: DataScale) -> dist.Distribution:
        if parameter == "pacf":
            return dist.Uniform(-jnp.ones(self.order), jnp.ones(self.order)).to_event(1)
        return dist.LogNormal(jnp.log(0.1 * data.scale), 1.0)

    def build(self, params, data):
        p = self.order
        pacf = jnp.atleast_1d(jnp.asarray(params["pacf"]))
        if pacf.shape != (p,):
            raise ValueError(
                f"`{self.name}_pacf` (Autoregressive({p}) {self.name!r}) must have shape "
                f"({p},); got {jnp.shape(params['pacf'])}."
            )
        phi = coefficients_from_pacf(pacf)
        scale = positive_scale(self.name, params, "scale")
        F = jnp.zeros((p, p), phi.dtype).at[0].set(phi)
        if p > 1:
            F = F.at[1:, :-1].set(jnp.eye(p - 1, dtype=phi.dtype))
        factor = jnp.zeros((p, 1), phi.dtype).at[0, 0].set(scale)
        cov = stationary_cov(F, factor @ factor.T)
        H = jnp.zeros(p, phi.dtype).at[0].set(1.0)
        return ComponentSSM(F, factor, H, jnp.zeros(p, phi.dtype), cov)


class Regression(Component):
    """Static regression ``Xₜ β`` on known covariates (no state; an observation offset).

    The default prior of the weights is ``N(0, (series scale / column scale)²)``, the column
    scale being the covariate's standard deviation over the fit period (see `default_prior`).

    Args:
        design_matrix: ``(T, k)`` covariates for the fit period (``(T,)`` for one); finite
            real numbers (integers are converted), T, k >= 1.
        name: site prefix (default ``"regression"``).
        priors: override for ``weights`` (shape ``(k,)``).

    Raises:
        TypeError: ``design_matrix`` not real numbers.
        ValueError: ``design_matrix`` not ``(T, k)``, empty, or with NaN or inf.

    Warns:
        RuntimeWarning: a column constant over the fit period (e.g. a dummy that switches on
            only in the forecast period): the data say nothing about its weight apart from
            the level, so its (finite) prior alone sets its effect.
    """

    parameter_names = ("weights",)

    def __init__(self, design_matrix, name: str = "regression", priors=None):
        self.design_matrix = design("design_matrix", design_matrix)
        super().__init__(name, priors)
        self._column_scales = column_scales("design_matrix", self.design_matrix)

    @property
    def state_dim(self) -> int:
        return 0

    def parameter_shape(self, parameter: str) -> tuple[int, ...]:
        return (self.design_matrix.shape[1],)

    def default_prior(self, parameter: str, data: DataScale) -> dist.Distribution:
        """``weights ~ N(0, (series scale / column scale)²)`` independently.

        The column scale is the column's standard deviation over the fit period; a column
        constant there has none, and gets its magnitude (1 for an all-zero column) instead,
        so that its weight's prior stays finite (a warning at construction says so).
        """
        k = self.design_matrix.shape[1]
        return dist.Normal(jnp.zeros(k), data.scale / self._column_scales).to_event(1)

    def build(self, params, data, design_matrix=None):
        X = self.design_matrix if design_matrix is None else design("design_matrix", design_matrix)
        weights = jnp.atleast_1d(jnp.asarray(params["weights"]))
        if weights.shape != (X.shape[1],):
            raise ValueError(
                f"`{self.name}_weights` must have shape ({X.shape[1]},); got {weights.shape}."
            )
        empty = jnp.zeros((0, 0), X.dtype)
        offset = X @ weights
        return ComponentSSM(
            empty, jnp.zeros((0, 0), X.dtype), jnp.zeros(0), jnp.zeros(0), empty, offset
        )


class DynamicRegression(Component):
    """Random-walk coefficients ``β_{t+1} = β_t + σ η_t`` on covariates: ``Xₜ βₜ``.

    Args:
        design_matrix: ``(T, k)`` covariates for the fit period; finite real numbers,
            T, k >= 1.
        name: site prefix (default ``"dynamic_regression"``).
        priors: override for ``drift_scale``.
    """

    parameter_names = ("drift_scale",)

    def __init__(self, design_matrix, name: str = "dynamic_regression", priors=None):
        self.design_matrix = design("design_matrix", design_matrix)
        super().__init__(name, priors)

    @property
    def state_dim(self) -> int:
        return self.design_matrix.shape[1]

    def build(self, params, data, design_matrix=None):
        X = self.design_matrix if design_matrix is None else design("design_matrix", design_matrix)
        k = X.shape[1]
        mean, cov = self.initial_state(data)
        scale = positive_scale(self.name, params, "drift_scale")
        return ComponentSSM(jnp.eye(k), scale * jnp.eye(k), X, mean, cov)
