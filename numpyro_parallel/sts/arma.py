"""ARMA(p, q) component in state-space form (see `numpyro_parallel.sts.components`).

``z_t = φ_1 z_{t-1} + ... + φ_p z_{t-p} + ε_t + θ_1 ε_{t-1} + ... + θ_q ε_{t-q}``,
``ε_t ~ N(0, σ²)``, written with ``r = max(p, q + 1)`` states in Harvey's form (Harvey 1989,
"Forecasting, structural time series models and the Kalman filter", §3.4; the form of
statsmodels' ``SARIMAX``): transition with ``φ`` in the first column and ones on the
superdiagonal, noise factor ``σ (1, θ_1, ..., θ_{r-1})ᵀ`` (rank one), observation of the first
state. Both polynomials are parametrised by partial autocorrelations in ``(-1, 1)`` (Monahan
1984, "A note on enforcing stationarity in autoregressive-moving average models"): ``φ`` is
stationary and ``θ`` invertible for every parameter value, and the initial state is the
stationary distribution.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpyro.distributions as dist

from numpyro_parallel._checks import check_positive_int
from numpyro_parallel.sts.components import Component, ComponentSSM, DataScale, positive_scale
from numpyro_parallel.sts.regression import coefficients_from_pacf, stationary_cov

__all__ = ["ARMA", "ma_coefficients_from_pacf"]


def ma_coefficients_from_pacf(pacf: jnp.ndarray) -> jnp.ndarray:
    """MA coefficients ``θ_1..θ_q`` of an invertible MA(q) from values in ``(-1, 1)``.

    ``1 + θ_1 B + ... + θ_q B^q`` is invertible exactly when ``-θ`` are the coefficients of a
    stationary AR(q), so ``θ = -coefficients_from_pacf(pacf)``.

    Args:
        pacf: ``(q,)`` values in ``(-1, 1)``.

    Returns:
        ``(q,)`` coefficients; NaN when a traced value is outside ``(-1, 1)``.

    Raises:
        ValueError: concrete ``pacf`` not a vector with entries in ``(-1, 1)``.
    """
    return -coefficients_from_pacf(pacf)


class ARMA(Component):
    """Stationary, invertible ARMA(p, q) component in Harvey's state-space form.

    Parameters (NumPyro sites ``{name}_{parameter}``): ``ar_pacf`` ``(p,)`` and ``ma_pacf``
    ``(q,)`` in ``(-1, 1)`` (uniform priors; only those of a positive order exist) and the
    innovation ``scale`` σ (log-normal around 10% of the series' scale).

    Args:
        ar_order: p >= 0.
        ma_order: q >= 0 (p + q >= 1).
        name: site prefix (default ``"arma"``).
        priors: overrides for ``ar_pacf`` (shape ``(p,)``), ``ma_pacf`` (``(q,)``) and
            ``scale``.

    Raises:
        ValueError, TypeError: orders that are not ints >= 0, or both zero; a prior of the
            wrong shape (when the component joins a `Sum`).
    """

    def __init__(self, ar_order: int, ma_order: int, name: str = "arma", priors=None):
        self.ar_order = check_positive_int("ar_order", ar_order, minimum=0)
        self.ma_order = check_positive_int("ma_order", ma_order, minimum=0)
        if self.ar_order + self.ma_order == 0:
            raise ValueError("`ar_order` and `ma_order` must not both be 0 (that is white noise).")
        names = ("ar_pacf",) * (self.ar_order > 0) + ("ma_pacf",) * (self.ma_order > 0)
        self.parameter_names = (*names, "scale")
        super().__init__(name, priors)

    @property
    def state_dim(self) -> int:
        return max(self.ar_order, self.ma_order + 1)

    def parameter_shape(self, parameter: str) -> tuple[int, ...]:
        return {"ar_pacf": (self.ar_order,), "ma_pacf": (self.ma_order,)}.get(parameter, ())

    def default_prior(self, parameter: str, data: DataScale) -> dist.Distribution:
        if parameter in ("ar_pacf", "ma_pacf"):
            order = self.ar_order if parameter == "ar_pacf" else self.ma_order
            return dist.Uniform(-jnp.ones(order), jnp.ones(order)).to_event(1)
        return dist.LogNormal(jnp.log(0.1 * data.scale), 1.0)

    def coefficients(self, params: dict[str, Any]) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``(φ (p,), θ (q,))`` for the parameter values ``params``."""
        scale = jnp.asarray(params["scale"])
        dtype = jnp.result_type(scale.dtype, float)
        phi, theta = jnp.zeros(0, dtype), jnp.zeros(0, dtype)
        if self.ar_order:
            phi = coefficients_from_pacf(jnp.atleast_1d(jnp.asarray(params["ar_pacf"], dtype)))
        if self.ma_order:
            pacf = jnp.atleast_1d(jnp.asarray(params["ma_pacf"], dtype))
            theta = ma_coefficients_from_pacf(pacf)
        for name, values, order in (("ar_pacf", phi, self.ar_order),
                                    ("ma_pacf", theta, self.ma_order)):  # fmt: skip
            if values.shape != (order,):
                raise ValueError(
                    f"`{self.name}_{name}` must have shape ({order},); got {values.shape}."
                )
        return phi, theta

    def build(self, params, data):
        phi, theta = self.coefficients(params)
        scale = positive_scale(self.name, params, "scale")
        r, dtype = self.state_dim, phi.dtype
        F = jnp.zeros((r, r), dtype).at[: self.ar_order, 0].set(phi)
        if r > 1:
            F = F.at[:-1, 1:].set(jnp.eye(r - 1, dtype=dtype))
        loadings = jnp.zeros(r, dtype).at[0].set(1.0).at[1 : self.ma_order + 1].set(theta)
        factor = (scale * loadings)[:, None]
        cov = stationary_cov(F, factor @ factor.T)
        H = jnp.zeros(r, dtype).at[0].set(1.0)
        return ComponentSSM(F, factor, H, jnp.zeros(r, dtype), cov)
