"""ArviZ 1.x (xarray DataTree) output with a named ``time`` dimension.

`arviz.from_numpyro` stores one log-likelihood number per draw for a whole observed sequence.
State-space distributions of this package know their one-step-ahead predictive terms
``log p(y_t | y_{0:t-1})``; `from_numpyro` puts those in the ``log_likelihood`` group with dims
``(chain, draw, time)``, so that ``arviz.loo`` / WAIC see T observations rather than one, and
adds latent-state groups with dims ``(chain, draw, time, state)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import arviz
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from numpyro import handlers

__all__ = [
    "from_numpyro",
    "pointwise_log_likelihood",
    "smoothed_to_dataset",
    "states_to_dataset",
]


def pointwise_log_likelihood(
    model: Callable,
    posterior_samples: dict[str, Any],
    *model_args,
    batch_ndims: int = 1,
    **model_kwargs,
) -> dict[str, jax.Array]:
    """Per-time log-likelihood terms of every observed site, for every posterior draw.

    Sites whose distribution has a ``log_likelihood_terms`` method (`LinearGaussianSSM`,
    `DiscreteHMM`, ...) contribute their one-step-ahead predictive terms ``(..., T)``; other
    observed sites contribute ``log_prob`` (shape: their batch shape).

    Args:
        model: NumPyro model.
        posterior_samples: dict of arrays with ``batch_ndims`` leading draw dimensions.
        *model_args: positional arguments of the model.
        batch_ndims: number of leading draw dimensions (2 for ``(chain, draw)``).
        **model_kwargs: keyword arguments of the model.

    Returns:
        Dict site name -> array with the draw dimensions in front.
    """
    if not posterior_samples:
        raise ValueError("`posterior_samples` is empty.")
    first = next(iter(posterior_samples.values()))
    batch_shape = tuple(jnp.shape(first)[:batch_ndims])
    flat = {
        k: jnp.reshape(v, (-1, *jnp.shape(v)[batch_ndims:])) for k, v in posterior_samples.items()
    }

    def one(draw):
        seeded = handlers.seed(handlers.substitute(model, data=draw), jax.random.PRNGKey(0))
        trace = handlers.trace(seeded).get_trace(*model_args, **model_kwargs)
        out = {}
        for name, site in trace.items():
            if site["type"] != "sample" or not site["is_observed"]:
                continue
            fn = site["fn"]
            terms = getattr(fn, "log_likelihood_terms", None)
            out[name] = terms(site["value"]) if terms is not None else fn.log_prob(site["value"])
        return out

    result = jax.vmap(one)(flat)
    return {k: v.reshape(*batch_shape, *v.shape[1:]) for k, v in result.items()}


def _coords(name: str, size: int, values: Sequence | None) -> np.ndarray:
    if values is None:
        return np.arange(size)
    values = np.asarray(values)
    if values.shape != (size,):
        raise ValueError(f"`{name}` must have {size} entries; got shape {values.shape}.")
    return values


def states_to_dataset(
    samples,
    *,
    name: str = "states",
    time_coords: Sequence | None = None,
    state_names: Sequence | None = None,
) -> xr.Dataset:
    """Latent trajectories as a Dataset with dims ``(chain, draw, time, state)``.

    Args:
        samples: array ``(T, d)``, ``(draw, T, d)`` or ``(chain, draw, T, d)``.
        name: variable name.
        time_coords: optional T time labels (years, dates, ...).
        state_names: optional d state labels.

    Returns:
        An `xarray.Dataset`.
    """
    samples = np.asarray(samples)
    if samples.ndim not in (2, 3, 4):
        raise ValueError(
            "`samples` must have shape (T, d), (draw, T, d) or (chain, draw, T, d); "
            f"got {samples.shape}."
        )
    dims = ("chain", "draw", "time", "state")[4 - samples.ndim :]
    coords = {
        "time": _coords("time_coords", samples.shape[-2], time_coords),
        "state": _coords("state_names", samples.shape[-1], state_names),
    }
    return xr.Dataset({name: (dims, samples)}, coords=coords)


def smoothed_to_dataset(
    mean,
    cov,
    *,
    time_coords: Sequence | None = None,
    state_names: Sequence | None = None,
) -> xr.Dataset:
    """Smoothed (or filtered) Gaussian marginals as a Dataset.

    Args:
        mean: ``(..., T, d)`` means (leading dims are ``draw`` or ``chain, draw``).
        cov: ``(..., T, d, d)`` covariances.
        time_coords: optional T time labels.
        state_names: optional d state labels.

    Returns:
        Dataset with ``mean`` and ``sd`` ``(..., time, state)`` and ``cov``
        ``(..., time, state, state_bis)``.
    """
    mean, cov = np.asarray(mean), np.asarray(cov)
    if cov.shape != (*mean.shape, mean.shape[-1]):
        raise ValueError(f"`cov` must have shape {(*mean.shape, mean.shape[-1])}; got {cov.shape}.")
    ds = states_to_dataset(mean, name="mean", time_coords=time_coords, state_names=state_names)
    dims = ds["mean"].dims
    ds["sd"] = (dims, np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1)))
    ds["cov"] = ((*dims, "state_bis"), cov)
    return ds.assign_coords(state_bis=ds["state"].values)


def from_numpyro(
    mcmc,
    *,
    model_args: tuple | None = None,
    model_kwargs: dict | None = None,
    time_coords: Sequence | None = None,
    latent_states=None,
    state_names: Sequence | None = None,
    latent_group: str = "latent_states",
    **from_numpyro_kwargs,
):
    """`arviz.from_numpyro` plus a time-resolved ``log_likelihood`` group and latent states.

    Args:
        mcmc: a fitted `numpyro.infer.MCMC`.
        model_args: model arguments (default: those of the last ``mcmc.run``).
        model_kwargs: model keyword arguments (default: those of the last ``mcmc.run``).
        time_coords: optional labels of the time axis.
        latent_states: optional ``(chain, draw, T, d)`` trajectories (e.g. from
            ``LinearGaussianSSM.sample_states`` per draw) stored in ``latent_group``.
        state_names: optional labels of the state axis.
        latent_group: name of the group for ``latent_states``.
        **from_numpyro_kwargs: forwarded to `arviz.from_numpyro`.

    Returns:
        An `xarray.DataTree` with ``posterior``, ``sample_stats``, ``observed_data``,
        ``log_likelihood`` (dims ``chain, draw, time`` for state-space sites) and optionally
        ``latent_group``.
    """
    tree = arviz.from_numpyro(mcmc, **from_numpyro_kwargs)
    args = mcmc._args if model_args is None else model_args  # set by MCMC.run
    kwargs = mcmc._kwargs if model_kwargs is None else model_kwargs
    samples = mcmc.get_samples(group_by_chain=True)
    terms = pointwise_log_likelihood(mcmc.sampler.model, samples, *args, batch_ndims=2, **kwargs)
    variables = {}
    for name, value in terms.items():
        value = np.asarray(value)
        extra = [f"{name}_dim_{i}" for i in range(value.ndim - 2)]
        if value.ndim == 3:
            extra = ["time"]
        variables[name] = (("chain", "draw", *extra), value)
    ds = xr.Dataset(variables)
    if "time" in ds.dims:
        ds = ds.assign_coords(time=_coords("time_coords", ds.sizes["time"], time_coords))
    tree["log_likelihood"] = xr.DataTree(ds)
    if latent_states is not None:
        states = states_to_dataset(latent_states, time_coords=time_coords, state_names=state_names)
        tree[latent_group] = xr.DataTree(states)
    return tree
