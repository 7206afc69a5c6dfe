"""ArviZ 1.x (xarray DataTree) output for hidden-state posteriors of discrete HMMs.

Hidden-state quantities computed per posterior draw (smoothed state probabilities from
`numpyro_parallel.ssm.hmm.distribution.DiscreteHMM.smooth`, Viterbi paths from `.viterbi`,
posterior path samples from `.sample_states`) are stored with named dimensions
``(chain, draw, time, state)`` in their own DataTree group, next to the groups written by
`arviz.from_numpyro`. Inference itself is that of Hassan, Särkkä & García-Fernández (2021),
"Temporal parallelization of inference in hidden Markov models".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # xarray is imported on first use: `import numpyro_parallel` stays light
    import xarray as xr

__all__ = ["hmm_to_datatree"]


def _with_chain(name: str, array, core_ndim: int, core: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == core_ndim + 1:  # (draw, ...) -> one chain
        array = array[None]
    if array.ndim != core_ndim + 2 or 0 in array.shape[2:]:
        raise ValueError(
            f"`{name}` must have shape (chain, draw, {core}) or (draw, {core}) with T, K >= 1; "
            f"got {array.shape}."
        )
    return array


def _check_probs(probs: np.ndarray) -> None:
    if not np.issubdtype(probs.dtype, np.floating):
        raise TypeError(f"`state_probs` must be a floating-point array; got dtype {probs.dtype}.")
    if not np.all(np.isfinite(probs)):
        raise ValueError(
            "`state_probs` contains NaN or inf (a draw whose smoother failed, or whose data "
            "have probability zero); drop or fix those draws first."
        )
    tolerance = 1e-4 if probs.dtype == np.float32 else 1e-8
    if np.any(probs < -tolerance) or np.any(np.abs(probs.sum(-1) - 1) > tolerance * 10):
        raise ValueError(
            "`state_probs` must hold probabilities in [0, 1] that sum to 1 over the state axis "
            "(the last one); got values outside [0, 1] or sums != 1."
        )


def _check_paths(name: str, paths: np.ndarray, num_states: int | None) -> None:
    if not np.issubdtype(paths.dtype, np.integer):
        raise TypeError(f"`{name}` must be an integer array of states; got dtype {paths.dtype}.")
    high = "K - 1" if num_states is None else f"K - 1 = {num_states - 1}"
    if np.any(paths < 0) or (num_states is not None and np.any(paths >= num_states)):
        raise ValueError(f"`{name}` must hold states between 0 and {high}.")


def hmm_to_datatree(
    state_probs=None,
    viterbi_path=None,
    state_samples=None,
    *,
    time_coords: Sequence | None = None,
    state_names: Sequence | None = None,
    latent_group: str = "hidden_states",
    datatree: xr.DataTree | None = None,
) -> xr.DataTree:
    """Hidden-state posteriors as an ArviZ DataTree group with dims (chain, draw, time, state).

    Args:
        state_probs: ``(chain, draw, T, K)`` (or ``(draw, T, K)``) posterior state
            probabilities ``p(z_t = k | y, theta)`` for each posterior draw ``theta``, or
            the `HMMSmootherResult` of `DiscreteHMM.smooth` vmapped over the draws (its
            ``smoothed_probs`` are used).
        viterbi_path: ``(chain, draw, T)`` (or ``(draw, T)``) most likely paths, one per draw,
            or the vmapped `ViterbiResult` of `DiscreteHMM.viterbi` (its ``path``).
        state_samples: ``(chain, draw, T)`` (or ``(draw, T)``) posterior state paths.
        time_coords: coordinate values of the ``time`` dimension (default ``0..T-1``).
        state_names: coordinate values of the ``state`` dimension (default ``0..K-1``).
        latent_group: name of the DataTree group that receives the variables (the same
            argument as in `numpyro_parallel.diagnostics.from_numpyro`).
        datatree: an existing DataTree (e.g. from `arviz.from_numpyro`) to add the group to;
            it is not modified, a new tree is returned.

    Returns:
        A DataTree with variables ``state_probs`` (chain, draw, time, state),
        ``viterbi_path`` and ``state_samples`` (chain, draw, time), whichever were given,
        in the group ``latent_group``.

    Raises:
        TypeError: non-float ``state_probs``, non-integer paths, a ``datatree`` that is not an
            `xarray.DataTree`, an empty or non-string ``latent_group``.
        ValueError: wrong shapes, T = 0 or K = 0, non-finite or non-normalised
            ``state_probs``, states outside ``0..K-1``, coordinates of the wrong length.
    """
    if not isinstance(latent_group, str) or not latent_group:
        raise TypeError(f"`latent_group` must be a non-empty str; got {latent_group!r}.")
    import xarray as xr

    if datatree is not None and not isinstance(datatree, xr.DataTree):
        raise TypeError(f"`datatree` must be an xarray.DataTree; got {type(datatree).__name__}.")
    variables = {}
    num_states = None
    state_probs = getattr(state_probs, "smoothed_probs", state_probs)
    viterbi_path = getattr(viterbi_path, "path", viterbi_path)
    if state_probs is not None:
        probs = _with_chain("state_probs", state_probs, 2, "T, K")
        _check_probs(probs)
        num_states = probs.shape[-1]
        variables["state_probs"] = (("chain", "draw", "time", "state"), probs)
    for name, value in (("viterbi_path", viterbi_path), ("state_samples", state_samples)):
        if value is not None:
            paths = _with_chain(name, value, 1, "T")
            _check_paths(name, paths, num_states)
            variables[name] = (("chain", "draw", "time"), paths)
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
        "time": np.arange(num_steps) if time_coords is None else np.asarray(time_coords),
    }
    if len(coords["time"]) != num_steps:
        raise ValueError(
            f"`time_coords` must have length T = {num_steps}; got {len(coords['time'])}."
        )
    if state_probs is not None:
        num_states = shapes["state_probs"][3]
        coords["state"] = np.arange(num_states) if state_names is None else np.asarray(state_names)
        if len(coords["state"]) != num_states:
            raise ValueError(
                f"`state_names` must have length K = {num_states}; got {len(coords['state'])}."
            )
    dataset = xr.Dataset(variables, coords=coords)
    tree = xr.DataTree() if datatree is None else datatree.copy()
    tree[latent_group] = xr.DataTree(dataset)
    return tree
