"""ArviZ 1.x (xarray DataTree) output for hidden-state posteriors of discrete HMMs.

Hidden-state quantities computed per posterior draw (smoothed state probabilities from
`numpyro_parallel.ssm.hmm_distribution.DiscreteHMM.smooth`, Viterbi paths from `.viterbi`,
posterior path samples from `.sample_states`) are stored with named dimensions
``(chain, draw, time, state)`` in their own DataTree group, next to the groups written by
`arviz.from_numpyro`. Inference itself is that of Hassan, Särkkä & García-Fernández (2021),
"Temporal parallelization of inference in hidden Markov models".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

__all__ = ["hmm_to_datatree"]


def _with_chain(name: str, array, core_ndim: int, core: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == core_ndim + 1:  # (draw, ...) -> one chain
        array = array[None]
    if array.ndim != core_ndim + 2:
        raise ValueError(
            f"`{name}` must have shape (chain, draw, {core}) or (draw, {core}); got {array.shape}."
        )
    return array


def hmm_to_datatree(
    state_probs=None,
    viterbi_path=None,
    state_samples=None,
    *,
    time: Sequence | None = None,
    state_names: Sequence | None = None,
    group: str = "hidden_states",
    datatree: xr.DataTree | None = None,
) -> xr.DataTree:
    """Hidden-state posteriors as an ArviZ DataTree group with dims (chain, draw, time, state).

    Args:
        state_probs: ``(chain, draw, T, K)`` (or ``(draw, T, K)``) posterior state
            probabilities ``p(z_t = k | y, theta)`` for each posterior draw ``theta``.
        viterbi_path: ``(chain, draw, T)`` (or ``(draw, T)``) most likely paths, one per draw.
        state_samples: ``(chain, draw, T)`` (or ``(draw, T)``) posterior state paths.
        time: coordinate values of the ``time`` dimension (default ``0..T-1``).
        state_names: coordinate values of the ``state`` dimension (default ``0..K-1``).
        group: name of the DataTree group that receives the variables.
        datatree: an existing DataTree (e.g. from `arviz.from_numpyro`) to add the group to;
            it is not modified, a new tree is returned.

    Returns:
        A DataTree with variables ``state_probs`` (chain, draw, time, state),
        ``viterbi_path`` and ``state_samples`` (chain, draw, time), whichever were given,
        in the group ``group``.
    """
    variables = {}
    if state_probs is not None:
        probs = _with_chain("state_probs", state_probs, 2, "T, K")
        variables["state_probs"] = (("chain", "draw", "time", "state"), probs)
    for name, value in (("viterbi_path", viterbi_path), ("state_samples", state_samples)):
        if value is not None:
            variables[name] = (("chain", "draw", "time"), _with_chain(name, value, 1, "T"))
    if not variables:
        raise ValueError("give at least one of `state_probs`, `viterbi_path`, `state_samples`.")
    shapes = {name: value[1].shape for name, value in variables.items()}
    leading = {shape[:3] for shape in shapes.values()}
    if len(leading) != 1:
        raise ValueError(f"inconsistent (chain, draw, time) shapes: {shapes}.")
    num_chains, num_draws, num_steps = leading.pop()
    coords = {
        "chain": np.arange(num_chains),
        "draw": np.arange(num_draws),
        "time": np.arange(num_steps) if time is None else np.asarray(time),
    }
    if len(coords["time"]) != num_steps:
        raise ValueError(f"`time` must have length T = {num_steps}; got {len(coords['time'])}.")
    if state_probs is not None:
        num_states = shapes["state_probs"][3]
        coords["state"] = np.arange(num_states) if state_names is None else np.asarray(state_names)
        if len(coords["state"]) != num_states:
            raise ValueError(
                f"`state_names` must have length K = {num_states}; got {len(coords['state'])}."
            )
    dataset = xr.Dataset(variables, coords=coords)
    tree = xr.DataTree() if datatree is None else datatree.copy()
    tree[group] = xr.DataTree(dataset)
    return tree
