"""One process of the two-process `jax.distributed` check run by `tests/test_sharded.py`.

Usage: ``python tests/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (two CPU devices per process). Each
process joins the multi-controller runtime on ``localhost:PORT`` (CPU collectives over
Gloo), runs the Kalman log-likelihood and its gradient, the HMM log-likelihood and a Newton
(DEER) solve of a nonlinear recursion (`newton_problem`) with the time axis sharded over
every process's devices, and prints the (replicated) results as JSON.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")


def newton_problem(num_steps: int = 13):
    """``(step, initial_state, inputs)`` of a contracting nonlinear recursion."""
    weights = jnp.array([[0.5, -0.3], [0.2, 0.6]])
    inputs = jnp.asarray(np.random.default_rng(6).normal(size=(num_steps, 2)))
    return (lambda x, u: (jnp.tanh(weights @ x + u), None)), jnp.zeros(2), inputs


def main(argv=None) -> None:
    process_id, num_processes, port = map(int, (sys.argv[1:] if argv is None else argv))
    jax.distributed.initialize(
        f"localhost:{port}", num_processes=num_processes, process_id=process_id
    )
    from jax.sharding import NamedSharding, PartitionSpec

    from numpyro_parallel import Sharded
    from numpyro_parallel.fixed_point import solve_recursion
    from numpyro_parallel.ssm import hmm_log_likelihood, kalman_filter
    from tests.sharded_worker import hmm_args, lgssm

    strategy = Sharded()  # every device of every process
    params, y = lgssm(13)
    loglik = lambda prm: kalman_filter(prm, y, strategy=strategy).log_likelihood
    value, grad = jax.jit(jax.value_and_grad(loglik))(params)
    hmm = jax.jit(lambda a: hmm_log_likelihood(*a, strategy=strategy))(hmm_args(13))
    # The fixed-point loop across processes (ppermute, pmin, all-gathers over Gloo); the
    # states are gathered onto every device so that each process can read them.
    step, x0, inputs = newton_problem()
    replicated = NamedSharding(strategy.resolved_mesh(), PartitionSpec())
    solve = lambda u: solve_recursion(step, x0, u, strategy=strategy).states
    states = jax.jit(solve, out_shardings=replicated)(inputs)
    out = {
        "process_id": process_id,
        "num_devices": len(jax.devices()),
        "num_local_devices": len(jax.local_devices()),
        "kalman_log_likelihood": float(value),
        "kalman_gradient": [jax.device_get(g).tolist() for g in grad],
        "hmm_log_likelihood": float(hmm),
        "newton_states": np.asarray(states.addressable_data(0)).tolist(),
    }
    print(json.dumps(out))
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
