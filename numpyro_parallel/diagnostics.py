"""ArviZ 1.x (xarray DataTree) output with a named ``time`` dimension.

`arviz.from_numpyro` stores one log-likelihood number per draw for a whole observed sequence.
State-space distributions of this package know their one-step-ahead predictive terms
``log p(y_t | y_{0:t-1})``; `from_numpyro` puts those in the ``log_likelihood`` group with dims
``(chain, draw, time)``, so that ``arviz.loo`` / WAIC see T observations rather than one, and
adds latent-state groups with dims ``(chain, draw, time, state)``.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import arviz
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import xarray as xr
from numpyro import handlers
from numpyro.infer import MCMC

from numpyro_parallel._checks import check_bool, check_positive_int
from numpyro_parallel._diagnostics_datasets import (
    _coords,
    smoothed_to_dataset,
    states_to_dataset,
)
from numpyro_parallel.fixed_point.result import STUCK_MIN_STEPS

__all__ = [
    "from_numpyro",
    "pointwise_log_likelihood",
    "smoothed_to_dataset",
    "states_to_dataset",
]


def _state_space_types() -> tuple[type, ...]:
    # Imported lazily: the distributions import jax-heavy modules and diagnostics is optional.
    from numpyro_parallel.ssm.hmm.distribution import DiscreteHMM
    from numpyro_parallel.ssm.kalman.distribution import LinearGaussianSSM
    from numpyro_parallel.ssm.nonlinear.distribution import NonlinearGaussianSSM

    return (LinearGaussianSSM, DiscreteHMM, NonlinearGaussianSSM)


def _check_samples(posterior_samples, batch_ndims) -> tuple[int, ...]:
    if not isinstance(posterior_samples, Mapping):
        raise TypeError(
            "`posterior_samples` must be a dict of arrays (site name -> draws); got "
            f"{type(posterior_samples).__name__}."
        )
    if not posterior_samples:
        raise ValueError("`posterior_samples` is empty.")
    batch_ndims = check_positive_int("batch_ndims", batch_ndims)
    shapes = {name: tuple(jnp.shape(value)) for name, value in posterior_samples.items()}
    leading = {shape[:batch_ndims] for shape in shapes.values()}
    if len(leading) != 1 or any(len(shape) < batch_ndims for shape in shapes.values()):
        raise ValueError(
            f"every entry of `posterior_samples` needs the same {batch_ndims} leading draw "
            f"dimension(s) (`batch_ndims`); got shapes {shapes}."
        )
    return leading.pop()


def _pointwise(model, posterior_samples, model_args, model_kwargs, batch_ndims):
    """Per-site log-likelihood terms and the names of the state-space (time-resolved) sites."""
    if not callable(model):
        raise TypeError(f"`model` must be a callable NumPyro model; got {type(model).__name__}.")
    batch_shape = _check_samples(posterior_samples, batch_ndims)
    flat = {
        k: jnp.reshape(v, (-1, *jnp.shape(v)[batch_ndims:])) for k, v in posterior_samples.items()
    }
    state_space = _state_space_types()
    time_sites: set[str] = set()

    def one(draw):
        missing: list[str] = []
        from_draw = lambda msg: _latent_value(msg, draw, missing)
        substituted = handlers.substitute(model, substitute_fn=from_draw)
        seeded = handlers.seed(substituted, jax.random.PRNGKey(0))
        trace = handlers.trace(seeded).get_trace(*model_args, **model_kwargs)
        if missing:
            raise ValueError(
                f"`posterior_samples` has no draws of the latent site(s) {sorted(set(missing))} "
                "of `model` "
                f"(got {sorted(draw)}); without them the log-likelihood would be evaluated "
                "at values drawn from the prior. Pass every latent site (`mcmc.get_samples()`)."
            )
        out = {}
        for name, site in trace.items():
            if site["type"] != "sample" or not site["is_observed"]:
                continue
            fn = site["fn"]
            terms = _time_terms(fn, site["value"], state_space)
            if terms is not None:
                time_sites.add(name)  # runs once, while tracing
                out[name] = terms
            else:
                out[name] = fn.log_prob(site["value"])
        return out

    result = jax.vmap(one)(flat)
    values = {k: v.reshape(*batch_shape, *v.shape[1:]) for k, v in result.items()}
    return values, time_sites


def _time_terms(fn: Any, value: Any, state_space: tuple[type, ...]) -> jax.Array | None:
    """Per-time log-likelihood terms ``(*batch, T)`` of a state-space site, also when NumPyro
    wrapped its distribution (a ``plate`` expands it, ``handlers.mask`` masks it,
    ``.to_event`` makes it `Independent`); None for any other distribution."""
    if isinstance(fn, state_space):
        terms = getattr(fn, "log_likelihood_terms", None)
        return None if terms is None else terms(value)
    if not isinstance(fn, dist.ExpandedDistribution | dist.MaskedDistribution | dist.Independent):
        return None
    terms = _time_terms(fn.base_dist, value, state_space)
    if terms is None:
        return None
    if isinstance(fn, dist.ExpandedDistribution):
        return jnp.broadcast_to(terms, (*fn.batch_shape, terms.shape[-1]))
    if isinstance(fn, dist.MaskedDistribution):
        mask = jnp.broadcast_to(jnp.asarray(fn._mask)[..., None], terms.shape)
        return jnp.where(mask, terms, 0.0)
    axes = tuple(range(-1 - fn.reinterpreted_batch_ndims, -1))
    return jnp.sum(terms, axis=axes)


def _latent_value(msg: dict, draw: Mapping, missing: list[str]) -> Any:
    """The draw's value of a latent sample site (observed sites keep their data); records
    latent sites the draw lacks in ``missing``."""
    if msg["type"] != "sample" or msg["is_observed"]:
        return None
    if msg["name"] not in draw:
        missing.append(msg["name"])
        return None
    return draw[msg["name"]]


def pointwise_log_likelihood(
    model: Callable,
    posterior_samples: dict[str, Any],
    *model_args,
    batch_ndims: int = 1,
    **model_kwargs,
) -> dict[str, jax.Array]:
    """Per-time log-likelihood terms of every observed site, for every posterior draw.

    Observed sites of the state-space distributions of this package (`LinearGaussianSSM`,
    `DiscreteHMM`, and `NonlinearGaussianSSM` once it has the method) contribute their
    one-step-ahead predictive terms ``log_likelihood_terms(y)``, shape ``(..., T)``; other
    observed sites contribute ``log_prob`` (shape: their batch shape).

    Args:
        model: NumPyro model.
        posterior_samples: dict of arrays with ``batch_ndims`` leading draw dimensions.
        *model_args: positional arguments of the model.
        batch_ndims: number of leading draw dimensions (2 for ``(chain, draw)``).
        **model_kwargs: keyword arguments of the model.

    Returns:
        Dict site name -> array with the draw dimensions in front.

    Raises:
        TypeError: ``model`` not callable, ``posterior_samples`` not a dict, ``batch_ndims``
            not an int.
        ValueError: empty ``posterior_samples``, draw dimensions that differ between sites,
            ``batch_ndims < 1``, a latent site of the model missing from
            ``posterior_samples`` (entries for observed sites are ignored: the model's data
            are used).
    """
    return _pointwise(model, posterior_samples, model_args, model_kwargs, batch_ndims)[0]


def _check_mcmc(mcmc) -> Callable:
    """The model of a run `numpyro.infer.MCMC`, or a clear `TypeError` / `ValueError`."""
    if not isinstance(mcmc, MCMC):
        raise TypeError(
            "from_numpyro needs a numpyro.infer.MCMC that has run; got "
            f"{type(mcmc).__name__}. (For SVI, sample the guide and call "
            "`pointwise_log_likelihood` and `arviz.from_dict` instead.)"
        )
    if getattr(mcmc, "_states", None) is None:
        raise ValueError(
            "from_numpyro needs a numpyro.infer.MCMC that has run; got an MCMC without "
            "samples (call `mcmc.run(...)` first)."
        )
    model = getattr(mcmc.sampler, "model", None)
    if model is None:
        raise ValueError(
            "from_numpyro needs an MCMC whose kernel has a NumPyro model (`mcmc.sampler.model`); "
            f"got kernel {type(mcmc.sampler).__name__} without one."
        )
    return model


def _batch_dims(name: str, shape: tuple[int, ...], observed: xr.Dataset | None) -> list[str]:
    """Dims of a site's log-likelihood batch ``shape``: those of its ``observed_data`` (ArviZ's
    plate names or the user's ``dims``) when the leading sizes match, else ``{name}_dim_{i}``."""
    if observed is not None and name in observed.data_vars:
        data = observed[name]
        if data.shape[: len(shape)] == shape:
            return list(data.dims[: len(shape)])
    return [f"{name}_dim_{i}" for i in range(len(shape))]


def _log_likelihood_dataset(terms, time_sites, time_coords, observed=None) -> xr.Dataset:
    """Dims ``(chain, draw, [site batch dims], time)`` for state-space sites; the dims of the
    site's ``observed`` data (ArviZ's, from plates or ``dims=``) or ``{name}_dim_{i}`` for the
    others (and for the batch dims). State-space sites share the ``time`` dim when their length
    is that of ``time_coords`` (or of the first such site); others get ``{name}_time``."""
    time_length = None if time_coords is None else len(time_coords)
    variables = {}
    for name, value in terms.items():
        value = np.asarray(value)
        if name in time_sites:
            length = value.shape[-1]
            time_length = length if time_length is None else time_length
            time_dim = "time" if length == time_length else f"{name}_time"
            extra = [*_batch_dims(name, value.shape[2:-1], observed), time_dim]
        else:
            extra = _batch_dims(name, value.shape[2:], observed)
        variables[name] = (("chain", "draw", *extra), value)
        if np.issubdtype(value.dtype, np.floating) and np.any(np.isnan(value)):
            warnings.warn(
                f"the pointwise log-likelihood of site {name!r} contains NaN (invalid "
                "parameters in some draws): loo / waic results will be meaningless.",
                RuntimeWarning,
                stacklevel=3,
            )
    ds = xr.Dataset(variables)
    if observed is not None:
        shared = [d for d in ds.dims if d in observed.coords and d != "time"]
        ds = ds.assign_coords({d: observed.coords[d].values for d in shared})
    if "time" in ds.dims:
        if time_coords is None and observed is not None and "time" in observed.coords:
            labels = observed.coords["time"].values  # the user's `coords={"time": ...}`
            time_coords = labels if labels.shape == (ds.sizes["time"],) else None
        ds = ds.assign_coords(time=_coords("time_coords", ds.sizes["time"], time_coords))
    elif time_coords is not None and time_sites:
        raise ValueError(
            f"`time_coords` has {time_length} entries but no state-space site has that many "
            f"time steps: {{{', '.join(f'{n!r}: {terms[n].shape[-1]}' for n in time_sites)}}}."
        )
    return ds


_ARVIZ_NUMPYRO_MODULES = ("distributions", "handlers", "infer.initialization", "ops.pytree")


def _bind_numpyro_submodules() -> None:
    """Make the NumPyro submodules ArviZ's converter reads as attributes reachable.

    ArviZ loads ``numpyro`` through `lazy_loader`; a submodule imported later can then be in
    ``sys.modules`` without being an attribute of its parent (``numpyro.infer.initialization``
    after ``import arviz`` first), and ``arviz.from_numpyro`` fails with an AttributeError.
    """
    for name in _ARVIZ_NUMPYRO_MODULES:
        parent = "numpyro"
        for part in name.split("."):
            module = importlib.import_module(f"{parent}.{part}")
            if getattr(sys.modules[parent], part, None) is not module:
                setattr(sys.modules[parent], part, module)
            parent = f"{parent}.{part}"


def _warn_stuck_chains(samples: dict) -> None:
    """`RuntimeWarning` naming the chains (of at least `STUCK_MIN_STEPS` draws) in which no
    site ever changed: every proposal was rejected."""
    arrays = [np.asarray(v) for v in samples.values()]
    if not arrays or arrays[0].ndim < 2 or arrays[0].shape[1] < STUCK_MIN_STEPS:
        return
    moved = np.zeros(arrays[0].shape[0], bool)
    for a in arrays:
        moved |= np.any(a != a[:, :1], axis=tuple(range(1, a.ndim)))
    if not np.all(moved):
        warnings.warn(
            f"from_numpyro: chain(s) {np.flatnonzero(~moved).tolist()} never moved: all "
            f"{arrays[0].shape[1]} draws are identical (every proposal was rejected: a step "
            "size far too large with adaptation off, or a start where the density is zero or "
            "NaN nearby). Their R-hat and ESS are meaningless.",
            RuntimeWarning,
            stacklevel=3,
        )


def from_numpyro(
    mcmc,
    *,
    model_args: tuple | None = None,
    model_kwargs: dict | None = None,
    time_coords: Sequence | None = None,
    latent_states=None,
    state_names: Sequence | None = None,
    latent_group: str = "latent_states",
    log_likelihood: bool = True,
    **from_numpyro_kwargs,
):
    """`arviz.from_numpyro` plus a time-resolved ``log_likelihood`` group and latent states.

    Observed sites whose distribution is a state-space distribution of this package
    (`LinearGaussianSSM`, `DiscreteHMM`; `NonlinearGaussianSSM` once it has
    ``log_likelihood_terms``) get one log-likelihood term per time step, dims
    ``(chain, draw, time)``, so ``arviz.loo`` counts T observations. Other observed sites (and
    the batch dims of state-space sites) take the dims of their ``observed_data``, as ArviZ's
    own log-likelihood does (plate names, or ``dims=``), else ``{name}_dim_0, ...``.

    Args:
        mcmc: a `numpyro.infer.MCMC` that has run.
        model_args: model arguments (default: those of the last ``mcmc.run``).
        model_kwargs: model keyword arguments (default: those of the last ``mcmc.run``).
        time_coords: optional labels of the time axis.
        latent_states: optional ``(chain, draw, T, d)`` trajectories (e.g. from
            ``LinearGaussianSSM.sample_states`` per draw) stored in ``latent_group``.
        state_names: optional labels of the state axis.
        latent_group: name of the group for ``latent_states``.
        log_likelihood: whether to add the ``log_likelihood`` group (ArviZ's own
            ``log_likelihood=`` is not used: this group replaces it).
        **from_numpyro_kwargs: forwarded to `arviz.from_numpyro`.

    Returns:
        An `xarray.DataTree` with ``posterior``, ``sample_stats``, ``observed_data``,
        ``log_likelihood`` (unless ``log_likelihood=False``) and optionally ``latent_group``.

    Warns:
        RuntimeWarning: a chain of at least 50 draws never moved (all its draws identical),
            or pointwise log-likelihoods are NaN.

    Raises:
        TypeError: ``mcmc`` is not a `numpyro.infer.MCMC` (e.g. an SVI result).
        ValueError: an MCMC that has not run, ``time_coords`` / ``latent_states`` /
            ``state_names`` whose lengths do not match the data.
    """
    model = _check_mcmc(mcmc)
    if not isinstance(latent_group, str) or not latent_group:
        raise TypeError(f"`latent_group` must be a non-empty str; got {latent_group!r}.")
    log_likelihood = check_bool("log_likelihood", log_likelihood)
    _bind_numpyro_submodules()
    tree = arviz.from_numpyro(mcmc, **from_numpyro_kwargs)
    args = mcmc._args if model_args is None else tuple(model_args)  # set by MCMC.run
    kwargs = mcmc._kwargs if model_kwargs is None else dict(model_kwargs)
    samples = mcmc.get_samples(group_by_chain=True)
    _warn_stuck_chains(samples)
    terms, time_sites = _pointwise(model, samples, args, kwargs, 2) if log_likelihood else ({}, {})
    if terms:
        observed = tree["observed_data"].dataset if "observed_data" in tree.children else None
        tree["log_likelihood"] = xr.DataTree(
            _log_likelihood_dataset(terms, time_sites, time_coords, observed)
        )
    if latent_states is not None:
        states = states_to_dataset(latent_states, time_coords=time_coords, state_names=state_names)
        chains_draws = tuple(next(iter(samples.values())).shape[:2])
        if states["states"].ndim != 4 or states["states"].shape[:2] != chains_draws:
            raise ValueError(
                f"`latent_states` must have shape (chain, draw, T, d) with (chain, draw) = "
                f"{chains_draws}; got {states['states'].shape}."
            )
        tree[latent_group] = xr.DataTree(states)
    return tree
