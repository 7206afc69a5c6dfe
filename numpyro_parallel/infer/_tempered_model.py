"""Split a NumPyro model into a log-prior and a log-likelihood on a flat unconstrained vector.

Used by the tempered SMC runner (`numpyro_parallel.infer.tempered`), which also needs to know
that every latent site has a proper prior it can draw from (the particles start from the prior).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn
from numpyro.primitives import Messenger

__all__ = ["check_model_arguments", "latent_sites", "split_model"]


def check_model_arguments(model: Any, model_args: Any, model_kwargs: Any) -> dict:
    """Raise `TypeError` unless ``model`` is callable, ``model_args`` a tuple, kwargs a dict."""
    if not callable(model):
        raise TypeError(f"`model` must be a callable NumPyro model; got {type(model).__name__}.")
    if not isinstance(model_args, tuple):
        raise TypeError(f"`model_args` must be a tuple; got {type(model_args).__name__}.")
    if model_kwargs is None:
        return {}
    if not isinstance(model_kwargs, dict):
        raise TypeError(f"`model_kwargs` must be a dict; got {type(model_kwargs).__name__}.")
    return model_kwargs


def split_model(
    rng_key: jax.Array, model: Callable, model_args: tuple = (), model_kwargs: dict | None = None
) -> tuple[Callable, Callable, Callable, Callable]:
    """Log-prior and log-likelihood of a NumPyro model on a flat unconstrained vector.

    Unlike ``numpyro.infer.util.initialize_model`` this does not search for a point of finite
    log-density, so it also splits models whose likelihood is zero or NaN everywhere (the
    tempered SMC runner reports those through its result flags).

    Args:
        rng_key: PRNG key used to trace the model once.
        model: NumPyro model.
        model_args: positional arguments of the model.
        model_kwargs: keyword arguments of the model.

    Returns:
        ``(logprior_fn, loglikelihood_fn, unravel_fn, postprocess_fn)``: the first two act on a
        flat vector z; ``logprior_fn(z) + loglikelihood_fn(z)`` is minus NumPyro's potential
        energy; ``unravel_fn(z)`` gives the unconstrained dict and ``postprocess_fn(z)`` the
        constrained values (deterministic sites included).

    Raises:
        TypeError: ``model`` is not callable, ``model_args`` not a tuple or ``model_kwargs``
            not a dict.
    """
    model_kwargs = check_model_arguments(model, model_args, model_kwargs)
    seeded = handlers.substitute(handlers.seed(model, rng_key), substitute_fn=init_to_uniform)
    trace = handlers.trace(seeded).get_trace(*model_args, **model_kwargs)
    values = {
        name: site["value"]
        for name, site in trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    }
    z0 = unconstrain_fn(model, model_args, model_kwargs, values)
    flat, unravel_fn = ravel_pytree(z0)

    def loglikelihood_fn(z):
        params = constrain_fn(model, model_args, model_kwargs, unravel_fn(z))
        trace = handlers.trace(handlers.substitute(model, data=params)).get_trace(
            *model_args, **model_kwargs
        )
        total = jnp.zeros((), dtype=flat.dtype)
        for site in trace.values():
            if site["type"] == "sample" and site["is_observed"]:
                log_prob = site["fn"].log_prob(site["value"])
                if site.get("scale") is not None:
                    log_prob = site["scale"] * log_prob
                total = total + jnp.sum(log_prob)
        return total

    # hide the model's observed sites (not the log-Jacobian factors NumPyro adds for transforms)
    observed = {name for name, site in trace.items() if _is_observed(site)}
    prior_model = handlers.block(model, hide_fn=lambda site: site["name"] in observed)

    def logprior_fn(z):
        return -potential_energy(prior_model, model_args, model_kwargs, unravel_fn(z))

    def postprocess_fn(z):
        return constrain_fn(
            model, model_args, model_kwargs, unravel_fn(z), return_deterministic=True
        )

    return logprior_fn, loglikelihood_fn, unravel_fn, postprocess_fn


def _is_observed(site: dict) -> bool:
    return site["type"] == "sample" and bool(site["is_observed"])


class _CheckSampleable(Messenger):
    """Raise a `ValueError` naming the first latent site whose prior cannot be sampled."""

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        try:
            jax.eval_shape(msg["fn"].sample, jax.random.key(0))
        except NotImplementedError:
            raise ValueError(
                f"`model`: the prior of latent site {msg['name']!r} ({type(msg['fn']).__name__}) "
                "cannot be sampled. Tempered SMC starts its particles from the prior, so it "
                "needs a proper prior it can draw from at every latent site; replace the "
                "improper prior by a proper one or use MCMC."
            ) from None


def latent_sites(rng_key: jax.Array, model: Callable, model_args: tuple, model_kwargs: dict):
    """Names of the latent sample sites, after checking that each prior can be sampled.

    Raises:
        ValueError: the model has no latent sample site, or a latent site's prior cannot be
            sampled (improper, e.g. ``dist.ImproperUniform``; the message names the site).
    """
    checked = handlers.seed(_CheckSampleable(model), rng_key)
    trace = handlers.trace(checked).get_trace(*model_args, **model_kwargs)
    latent = [
        name for name, site in trace.items() if site["type"] == "sample" and not site["is_observed"]
    ]
    if not latent:
        raise ValueError(
            "`model` has no latent sample sites (every `numpyro.sample` is observed): there is "
            "no posterior to sample; compute the likelihood directly instead."
        )
    return latent
