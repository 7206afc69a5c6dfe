"""Progress bars for long jitted loops, shown the way NumPyro's `MCMC` shows its own.

The loop reports from inside `jit` with `jax.debug.callback` (unordered, so it also works
under `vmap`; the bar only moves forward). Bars are off with ``progress_bar=False`` and when
the ``CI`` environment variable is set.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

__all__ = ["StageProgress", "iteration_progress", "progress_enabled", "tracing"]


def progress_enabled(progress_bar: Any) -> bool:
    """Whether to show a bar: ``progress_bar`` is True and ``CI`` is not set.

    Raises:
        TypeError: ``progress_bar`` is not a bool.
    """
    if not isinstance(progress_bar, bool):
        raise TypeError(f"`progress_bar` must be a bool; got {progress_bar!r}.")
    return progress_bar and not os.environ.get("CI")


def tracing(*trees: Any) -> bool:
    """Whether any leaf of ``trees`` is a tracer (a call under `jit` / `vmap` / `grad`).

    A bar opened while tracing would be closed before the compiled loop runs, so the
    functional APIs show one only when called eagerly.
    """
    import jax

    leaves = jax.tree_util.tree_leaves(trees)
    return any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


class StageProgress:
    """A bar over a fraction in [0, 1] (a tempering exponent, a converged prefix).

    Args:
        description: text before the bar.
        stage_name: what a stage is called in the postfix (``"stage"``, ``"iteration"``).
    """

    def __init__(self, description: str, stage_name: str = "stage"):
        self._description = description
        self._stage_name = stage_name
        self._bar = None  # opened by the first report: a call that fails first shows none

    def __call__(self, stage: Any, fraction: Any, acceptance: Any = None) -> None:
        """Host callback: move the bar to ``fraction``; show the stage (and acceptance)."""
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=1000, desc=self._description, bar_format="{l_bar}{bar}| {postfix}"
            )
        position = int(1000 * float(np.clip(np.max(fraction), 0.0, 1.0)))
        if position > self._bar.n:
            self._bar.update(position - self._bar.n)
        postfix = f"{self._stage_name} {int(np.max(stage))}"
        if acceptance is not None:
            postfix += f", acceptance {float(np.mean(acceptance)):.2f}"
        self._bar.set_postfix_str(postfix)

    def close(self) -> None:
        """Close the bar (if a report opened it)."""
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def iteration_progress(description: str, progress_bar: Any, *arguments: Any, strategy: Any = None):
    """A progress bar for the parallel iterations, or None under tracing / CI / when off, and
    for the sequential strategy (``strategy`` `Sequential()` or ``"sequential"``: nothing
    iterates).

    Yields the ``on_iteration(iteration, fraction)`` host callback for `_solve_recursion`;
    the bar closes once the results are ready.
    """
    from numpyro_parallel.strategy import Sequential

    sequential = isinstance(strategy, Sequential) or strategy == "sequential"
    enabled = progress_enabled(progress_bar) and not sequential and not tracing(*arguments)
    progress = StageProgress(description, stage_name="iteration") if enabled else None
    try:
        yield progress
    finally:
        if progress is not None:
            progress.close()
