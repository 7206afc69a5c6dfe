"""Seasonal component: dummy (optionally with seasons lasting several steps) or trigonometric.

Dummy form (Harvey 1989, §2.3.4; statsmodels' ``seasonal``): ``s - 1`` states,
``γ_{t+1} = -Σ_{j<s} γ_{t+1-j} + ω_t``. With ``season_length = k > 1`` each season lasts ``k``
steps (TensorFlow Probability's ``num_steps_per_season``, e.g. a day-of-week effect on hourly
data): the effect moves on, with noise, only at season boundaries (steps ``t`` with
``t % k == 0``) and is held fixed in between, so the transition is time-varying.

Trigonometric form (statsmodels' ``freq_seasonal``; Durbin & Koopman 2012, §3.2.1): for each
harmonic ``j = 1..num_harmonics`` a pair of states rotated by ``2πj/s`` per step, each with
independent noise of scale ``drift_scale``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from numpyro_parallel._checks import check_positive_int, check_real
from numpyro_parallel.sts.components import Component, ComponentSSM, block_diag, positive_scale

__all__ = ["Seasonal"]


class Seasonal(Component):
    """Seasonal effect with ``period`` seasons, in dummy or trigonometric form.

    Args:
        period: number of seasons in a full cycle (an integer ``s >= 2``; any finite real
            ``> 1`` in trigonometric form, where it counts steps). A series shorter than one
            cycle does not identify the seasons: `Sum` warns when it is fitted to one.
        num_harmonics: number of harmonics for the trigonometric form; None for dummy form.
        season_length: steps per season in dummy form (default 1); the cycle then lasts
            ``period * season_length`` steps and the series starts at the start of a season.
        name: site prefix (default ``"seasonal"``).
        priors: overrides for ``drift_scale`` (the scale of the change at each boundary).

    Raises:
        TypeError, ValueError: invalid ``period``, ``num_harmonics`` or ``season_length``, or
            ``season_length > 1`` together with ``num_harmonics``.
    """

    parameter_names = ("drift_scale",)

    def __init__(
        self,
        period,
        num_harmonics: int | None = None,
        name: str = "seasonal",
        priors=None,
        *,
        season_length: int = 1,
    ):
        super().__init__(name, priors)
        self.season_length = check_positive_int("season_length", season_length)
        if num_harmonics is None:
            self.period = check_positive_int("period", period, minimum=2)
        else:
            self.period = check_real("period", period, low=1.0)
            if self.period.is_integer():
                self.period = int(self.period)
            num_harmonics = check_positive_int("num_harmonics", num_harmonics)
            if num_harmonics > period / 2:
                raise ValueError(
                    f"`num_harmonics` must be at most period / 2 = {period / 2}; "
                    f"got {num_harmonics}."
                )
            if self.season_length > 1:
                raise ValueError(
                    "`season_length` > 1 needs the dummy form (num_harmonics=None); a "
                    "trigonometric season over k steps is `period=period * k`."
                )
        self.num_harmonics = num_harmonics

    @property
    def time_varying(self) -> bool:
        """Seasons lasting several steps make the block time-varying."""
        return self.season_length > 1

    @property
    def cycle_length(self) -> float:
        """Steps in one full seasonal cycle (``period * season_length``)."""
        return self.period * self.season_length

    @property
    def state_dim(self) -> int:
        if self.num_harmonics is None:
            return self.period - 1
        return 2 * self.num_harmonics

    def build(self, params, data, *, num_steps: int | None = None) -> ComponentSSM:
        """The block for ``params``; ``num_steps`` (T) is required when ``season_length > 1``."""
        mean, cov = self.initial_state(data)
        scale = positive_scale(self.name, params, "drift_scale")
        d = self.state_dim
        if self.num_harmonics is None:
            F = jnp.zeros((d, d)).at[0].set(-1.0).at[1:, :-1].set(jnp.eye(d - 1))
            factor = jnp.zeros((d, 1)).at[0, 0].set(scale)
            H = jnp.zeros(d).at[0].set(1.0)
            if self.time_varying:
                F, factor = self._held_between_boundaries(F, factor, num_steps)
            return ComponentSSM(F, factor, H, mean, cov)
        blocks = []
        for j in range(1, self.num_harmonics + 1):
            angle = 2 * math.pi * j / self.period
            c, s = math.cos(angle), math.sin(angle)
            blocks.append(jnp.array([[c, s], [-s, c]]))
        F = block_diag(blocks)
        factor = scale * jnp.eye(d)
        H = jnp.tile(jnp.array([1.0, 0.0]), self.num_harmonics)
        return ComponentSSM(F, factor, H, mean, cov)

    def _held_between_boundaries(self, F, factor, num_steps):
        if num_steps is None:
            raise ValueError(f"component {self.name!r} (season_length > 1) needs `num_steps`.")
        # Transition [t] maps x_t to x_{t+1}: the season moves on when t + 1 starts a season.
        boundary = (jnp.arange(num_steps) + 1) % self.season_length == 0
        eye = jnp.eye(F.shape[-1], dtype=F.dtype)
        F_t = jnp.where(boundary[:, None, None], F, eye)
        factor_t = jnp.where(boundary[:, None, None], factor, jnp.zeros_like(factor))
        return F_t, factor_t
