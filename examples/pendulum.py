"""Noisy pendulum: parallel iterated extended / sigma-point Kalman smoothers.

The classic example of Särkkä's "Bayesian Filtering and Smoothing" (as set up by Yaghoobi et
al. 2021): state (angle, angular velocity), Euler-discretised dynamics with white-noise
acceleration, observations ``y = sin(angle) + N(0, r^2)``::

    x_{t+1} = [x1 + x2 dt, x2 - g sin(x1) dt] + w_t,
    w_t ~ N(0, q_c [[dt^3/3, dt^2/2], [dt^2/2, dt]])

with dt = 0.0125, g = 9.81, q_c = 1, r = 0.3. We simulate a trajectory, smooth it with every
linearisation method (parallel and sequential) and compare the RMSE with the classical
(non-iterated) extended smoother, ours and cuthbert's when it is installed.

Run: ``python examples/pendulum.py [--fast] [--output-dir outputs]``.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from numpyro_parallel.ssm.kalman.inference import kalman_smoother
from numpyro_parallel.ssm.nonlinear.distribution import NonlinearGaussianSSM
from numpyro_parallel.ssm.nonlinear.smoother import (
    filter_linearization,
    iterated_smoother,
)

DT, G, Q_C, R_STD = 0.0125, 9.81, 1.0, 0.3


def transition_fn(x):
    return jnp.stack([x[0] + x[1] * DT, x[1] - G * jnp.sin(x[0]) * DT])


def observation_fn(x):
    return jnp.sin(x[:1])


def cuthbert_extended_smoother(model, y):
    """cuthbert's sequential EKF + RTS smoother on our convention (y_0 sees x_0), or None."""
    try:
        from cuthbert import filter as cuthbert_filter
        from cuthbert import smoother as cuthbert_smoother
        from cuthbert.gaussian import moments
    except ImportError:
        return None
    chol_q, chol_r = model.transition_chol[0], model.observation_chol[0]

    def dynamics(state, inputs):
        first = inputs["t"] == 0  # identity step: cuthbert's prior sits one step before y_0
        return (
            lambda x: (
                jnp.where(first, x, transition_fn(x)),
                jnp.where(first, 0.0 * chol_q, chol_q),
            )
        ), state.mean

    def observation(state, inputs):
        return (lambda x: (observation_fn(x), chol_r)), state.mean, inputs["y"]

    inputs = {"t": jnp.arange(y.shape[0]), "y": y}
    with jax.numpy_rank_promotion("allow"):
        filt = moments.build_filter(
            model.initial_mean, model.initial_chol, dynamics, observation, associative=False
        )
        states = cuthbert_filter(filt, inputs, filt.init_prepare(), parallel=False)
        smoothed = cuthbert_smoother(moments.build_smoother(dynamics), states, inputs)
    return smoothed.mean[1:]


def timed(fn, *args):
    out = jax.block_until_ready(fn(*args))  # compile + run
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="small problem, few methods")
    parser.add_argument("--output-dir", default="outputs")
    parser.add_argument("--num-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    num_steps = args.num_steps or (200 if args.fast else 1000)
    methods = (
        ["extended", "cubature"]
        if args.fast
        else [
            "extended",
            "unscented",
            "cubature",
            "gauss_hermite",
        ]
    )

    Q = Q_C * jnp.array([[DT**3 / 3, DT**2 / 2], [DT**2 / 2, DT]])
    ssm = NonlinearGaussianSSM(
        jnp.array([1.5, 0.0]),
        0.1 * jnp.eye(2),
        transition_fn,
        Q,
        observation_fn,
        jnp.array([[R_STD**2]]),
        num_steps,
    )
    x_true, y = ssm.simulate(jax.random.PRNGKey(args.seed))
    model = ssm.model

    def rmse(mean):
        return float(jnp.sqrt(jnp.mean((mean - x_true) ** 2)))

    rows, estimates = [], {}
    eks = jax.jit(lambda y: kalman_smoother(filter_linearization(model, y), y).mean)
    mean, seconds = timed(eks, y)
    rows.append(("extended (EKS, not iterated)", "sequential", "-", rmse(mean), seconds))
    estimates["EKS"] = mean
    theirs = cuthbert_extended_smoother(model, y)
    if theirs is not None:
        rows.append(("cuthbert EKS (not iterated)", "sequential", "-", rmse(theirs), float("nan")))
    else:
        print("cuthbert not installed: skipping its extended smoother")

    for method in methods:
        modes = ("auto", "sequential") if not args.fast or method == "extended" else ("auto",)
        for strategy in modes:
            run = jax.jit(
                lambda y, method=method, strategy=strategy: iterated_smoother(
                    model,
                    y,
                    method=method,
                    max_iterations=50,
                    strategy=strategy,
                )
            )
            res, seconds = timed(run, y)
            parallel = strategy == "auto"
            mode = "parallel" if parallel else "sequential"
            note = f"{int(res.num_iterations)}{'' if bool(res.converged) else ' (not converged)'}"
            rows.append((f"iterated {method}", mode, note, rmse(res.mean), seconds))
            if parallel:
                estimates[method] = res.mean

    # The distribution's approximate log-likelihood, with the smoother's diagnostics (it is
    # NaN, with a RuntimeWarning outside jit, when the iterations do not converge).
    log_lik, res = jax.jit(ssm.log_prob_and_smooth)(y)
    print(f"Pendulum, T = {num_steps}, float64, device {jax.devices()[0].device_kind}")
    print(
        f"NonlinearGaussianSSM.log_prob = {float(log_lik):.3f} (converged {bool(res.converged)}"
        f" after {int(res.num_iterations)} iterations from the default 'filter' start)"
    )
    print(f"{'smoother':32s} {'mode':11s} {'iterations':>16s} {'RMSE':>8s} {'time [s]':>9s}")
    for name, mode, iters, err, seconds in rows:
        print(f"{name:32s} {mode:11s} {iters:>16s} {err:8.4f} {seconds:9.4f}")

    os.makedirs(args.output_dir, exist_ok=True)
    t = np.arange(num_steps) * DT
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(t, np.sin(x_true[:, 0]), "k", lw=2, label="true sin(angle)")
    ax.plot(t, y[:, 0], ".", color="0.6", ms=3, label="observations")
    for name, mean in estimates.items():
        ax.plot(t, np.sin(mean[:, 0]), lw=1, label=name)
    ax.set_xlabel("time [s]")
    ax.set_ylabel("sin(angle)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Noisy pendulum: iterated smoothers (parallel)")
    fig.tight_layout()
    path = os.path.join(args.output_dir, "pendulum.png")
    fig.savefig(path, dpi=120)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
