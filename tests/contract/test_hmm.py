"""Bad-input matrix for the discrete-HMM API of `numpyro_parallel.ssm` (the failure contract)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from numpyro_parallel.ssm import (
    DiscreteHMM,
    hmm_filter,
    hmm_log_likelihood,
    hmm_sample_states,
    hmm_smoother,
    hmm_to_datatree,
    hmm_viterbi,
)
from numpyro_parallel.strategy import Blocked
from tests.contract.matrix import Case, case_params, is_nan, raises, returns, run_case

SSM = "numpyro_parallel.ssm."
K, T = 2, 4
INITIAL = jnp.array([0.3, -0.2])
TRANSITION = jnp.array([[0.5, -1.0], [-0.3, 0.2]])
LL = jnp.asarray(np.random.default_rng(0).normal(size=(T, K)))
Y = jnp.array([0.1, -0.4, 1.2, 0.7])
IMPOSSIBLE = jnp.full((T, K), -jnp.inf)  # no state can emit y_t


def _normal(means=(-1.0, 1.0), scale=1.0, **kwargs):
    return dist.Normal(jnp.asarray(means), scale, **kwargs)


def _hmm(**kwargs):
    return DiscreteHMM(INITIAL, TRANSITION, _normal(), **kwargs)


def _sticky():
    """States never switch and emit their own index: a switch in ``y`` is impossible."""
    never = jnp.array([[0.0, -jnp.inf], [-jnp.inf, 0.0]])
    return DiscreteHMM(INITIAL, never, dist.Categorical(probs=jnp.eye(K)))


SWITCH = jnp.array([0, 1, 0, 0])


def _poisson():
    return DiscreteHMM(INITIAL, TRANSITION, dist.Poisson(jnp.array([1.0, 5.0])))


def _poisson_calls(y) -> dict:
    """Every `DiscreteHMM` method that takes observations, called on ``y``."""
    model, key = _poisson(), jax.random.key(0)
    return {
        "log_prob": lambda: model.log_prob(y),
        "log_likelihood_terms": lambda: model.log_likelihood_terms(y),
        "filter": lambda: model.filter(y),
        "smooth": lambda: model.smooth(y),
        "viterbi": lambda: model.viterbi(y),
        "sample_states": lambda: model.sample_states(key, y, (2,)),
    }


# what must be NaN when a traced observation is not an integer
_NAN_PART = {
    "log_prob": lambda r: r,
    "log_likelihood_terms": lambda r: r,
    "filter": lambda r: r.filtered_probs,
    "smooth": lambda r: r.smoothed_probs,
    "viterbi": lambda r: r.log_joint,
}


def _functional_cases(name: str, fn, value) -> list[Case]:
    """The cases every functional ``hmm_*`` entry point shares; ``value`` extracts a float."""
    entry = SSM + name
    return [
        Case("T=0", entry, lambda: fn(INITIAL, TRANSITION, LL[:0]), raises(ValueError, "T >= 1")),
        Case("K=0", entry, lambda: fn(INITIAL[:0], TRANSITION[:0, :0], LL[:, :0]),
             raises(ValueError, "K >= 1")),
        Case("wrong-K-initial", entry, lambda: fn(jnp.zeros(3), TRANSITION, LL),
             raises(ValueError, "`initial_logits`")),
        Case("wrong-K-transition", entry, lambda: fn(INITIAL, jnp.zeros((3, 3)), LL),
             raises(ValueError, "`transition_logits`")),
        Case("wrong-T-transition", entry, lambda: fn(INITIAL, jnp.zeros((T + 1, K, K)), LL),
             raises(ValueError, "`transition_logits`")),
        Case("1d-log-likelihoods", entry, lambda: fn(INITIAL, TRANSITION, LL[:, 0]),
             raises(ValueError, "`log_likelihoods`")),
        Case("int-log-likelihoods", entry, lambda: fn(INITIAL, TRANSITION, jnp.zeros((T, K), int)),
             raises(TypeError, "`log_likelihoods`.*floating")),
        Case("bool-initial", entry, lambda: fn(jnp.ones(K, bool), TRANSITION, LL),
             raises(TypeError, "`initial_logits`")),
        Case("int-transition", entry, lambda: fn(INITIAL, [[0, 1], [1, 0]], LL),
             raises(TypeError, "`transition_logits`")),
        Case("nan-initial", entry, lambda: fn(INITIAL.at[0].set(jnp.nan), TRANSITION, LL),
             raises(ValueError, "`initial_logits`.*NaN")),
        Case("posinf-transition", entry, lambda: fn(INITIAL, TRANSITION.at[0, 1].set(jnp.inf), LL),
             raises(ValueError, "`transition_logits`")),
        Case("all-neginf-row", entry,
             lambda: fn(INITIAL, TRANSITION.at[1].set(-jnp.inf), LL),
             raises(ValueError, "`transition_logits`.*finite entry")),
        Case("nan-log-likelihoods", entry,
             lambda: fn(INITIAL, TRANSITION, LL.at[1, 0].set(jnp.nan)),
             raises(ValueError, "`log_likelihoods`.*NaN")),
        Case("posinf-log-likelihoods", entry,
             lambda: fn(INITIAL, TRANSITION, LL.at[1, 0].set(jnp.inf)),
             raises(ValueError, "`log_likelihoods`")),
        Case("strategy-unknown", entry, lambda: fn(INITIAL, TRANSITION, LL, strategy="tree"),
             raises(ValueError, "`strategy`")),
        Case("strategy-bool", entry, lambda: fn(INITIAL, TRANSITION, LL, strategy=True),
             raises(TypeError, "`strategy`")),
        Case("jit-nan-log-likelihoods", entry,
             lambda: value(jax.jit(lambda ll: fn(INITIAL, TRANSITION, ll))(
                 LL.at[2, 1].set(jnp.nan))),
             returns(is_nan)),
        Case("jit-nan-transition-seq", entry,
             lambda: value(jax.jit(lambda b: fn(INITIAL, b, LL, strategy="sequential"))(
                 TRANSITION.at[0, 0].set(jnp.nan))),
             returns(is_nan)),
        Case("jit-all-neginf-initial-assoc", entry,
             lambda: value(jax.jit(lambda a: fn(a, TRANSITION, LL, strategy="associative"))(
                 jnp.full(K, -jnp.inf))),
             returns(is_nan)),
    ]  # fmt: skip


def _first(x):
    return x[0] if isinstance(x, tuple) else x


CASES: list[Case] = [
    *_functional_cases("hmm_filter", hmm_filter, lambda r: r.log_likelihood),
    *_functional_cases("hmm_log_likelihood", hmm_log_likelihood, lambda r: r),
    *_functional_cases("hmm_smoother", hmm_smoother, lambda r: r.smoothed_probs),
    *_functional_cases("hmm_viterbi", hmm_viterbi, lambda r: r.log_joint),
    Case("impossible-data", SSM + "hmm_log_likelihood",
         lambda: hmm_log_likelihood(INITIAL, TRANSITION, IMPOSSIBLE),
         returns(lambda r: r == -jnp.inf)),
    Case("impossible-data-warns", SSM + "hmm_viterbi",
         lambda: hmm_viterbi(INITIAL, TRANSITION, IMPOSSIBLE),
         returns(lambda r: r.log_joint == -jnp.inf and not r.valid, warns=RuntimeWarning)),
    Case("impossible-data-flag", SSM + "ViterbiResult",
         lambda: jax.jit(hmm_viterbi)(INITIAL, TRANSITION, IMPOSSIBLE),
         returns(lambda r: r.log_joint == -jnp.inf and not r.valid)),
    Case("nan-under-jit-flag", SSM + "ViterbiResult",
         lambda: jax.jit(hmm_viterbi)(INITIAL, TRANSITION, LL.at[0, 0].set(jnp.nan)),
         returns(lambda r: is_nan(r.log_joint) and not r.valid)),
    Case("impossible-data-nan-probs", SSM + "HMMFilterResult",
         lambda: hmm_filter(INITIAL, TRANSITION, LL.at[2].set(-jnp.inf), strategy="sequential"),
         returns(lambda r: is_nan(r.filtered_probs[2:])
                 and not np.isnan(r.filtered_probs[:2]).any())),
    Case("impossible-data-nan-probs", SSM + "HMMSmootherResult",
         lambda: hmm_smoother(INITIAL, TRANSITION, LL.at[2].set(-jnp.inf), strategy=Blocked(2)),
         returns(lambda r: is_nan(r.smoothed_probs) and is_nan(r.filtered_probs[2:]))),
    Case("nan-under-jit", SSM + "HMMFilterResult",
         lambda: jax.jit(hmm_filter)(INITIAL, TRANSITION, LL.at[0, 0].set(jnp.nan)),
         returns(lambda r: is_nan(r.filtered_probs) and is_nan(r.log_likelihood_terms))),
    Case("T=0", SSM + "hmm_sample_states",
         lambda: hmm_sample_states(jax.random.key(0), INITIAL, TRANSITION, LL[:0]),
         raises(ValueError, "T >= 1")),
    Case("int-log-likelihoods", SSM + "hmm_sample_states",
         lambda: hmm_sample_states(jax.random.key(0), INITIAL, TRANSITION, jnp.zeros((T, K), int)),
         raises(TypeError, "`log_likelihoods`")),
    Case("negative-sample_shape", SSM + "hmm_sample_states",
         lambda: hmm_sample_states(jax.random.key(0), INITIAL, TRANSITION, LL, (-1,)),
         raises(ValueError, "`sample_shape`")),
    Case("impossible-data-warns", SSM + "hmm_sample_states",
         lambda: hmm_sample_states(jax.random.key(0), INITIAL, TRANSITION, IMPOSSIBLE, (2,)),
         returns(lambda r: r.shape == (2, T), warns=RuntimeWarning)),
    # DiscreteHMM
    Case("neginf-logits-validated", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(jnp.array([0.0, -jnp.inf]), jnp.array([[0.0, 0.0], [-jnp.inf, 0.0]]),
                             _normal(), validate_args=True).log_prob(Y),
         returns(lambda r: bool(np.isfinite(r)))),
    Case("T=0", SSM + "DiscreteHMM", lambda: _hmm().log_prob(Y[:0]),
         raises(ValueError, "`y`.*T >= 1")),
    Case("T=0-num_steps", SSM + "DiscreteHMM", lambda: _hmm(num_steps=0),
         raises(ValueError, "`num_steps`")),
    Case("float-num_steps", SSM + "DiscreteHMM", lambda: _hmm(num_steps=4.0),
         raises(TypeError, "`num_steps`")),
    Case("K=0", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(jnp.zeros(0), jnp.zeros((0, 0)), _normal(means=())),
         raises(ValueError, "`initial_logits`.*K >= 1")),
    Case("wrong-K-observation", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(INITIAL, TRANSITION, _normal(means=(0.0, 1.0, 2.0))),
         raises(ValueError, "`observation_dist`")),
    Case("wrong-K-transition", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(INITIAL, jnp.zeros((3, 3)), _normal()),
         raises(ValueError, "`transition_logits`")),
    Case("mismatched-T", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(INITIAL, jnp.zeros((5, K, K)), dist.Normal(jnp.zeros((4, K)), 1.0)),
         raises(ValueError, "time steps")),
    Case("mismatched-batch", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(jnp.zeros((3, K)), jnp.zeros((2, 1, K, K)), _normal()),
         raises(ValueError, "`initial_logits`.*`transition_logits`.*broadcast")),
    Case("int-logits", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(jnp.zeros(K, int), TRANSITION, _normal()),
         raises(TypeError, "`initial_logits`")),
    Case("nan-logits", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(INITIAL, TRANSITION.at[0, 0].set(jnp.nan), _normal()),
         raises(ValueError, "`transition_logits`")),
    Case("not-a-distribution", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(INITIAL, TRANSITION, "normal"),
         raises(TypeError, "`observation_dist`")),
    Case("T1-column-ambiguous", SSM + "DiscreteHMM", lambda: _hmm().log_prob(Y[:, None]),
         raises(ValueError, "`y`.*ambiguous")),
    Case("T1-column-fixed-T", SSM + "DiscreteHMM",
         lambda: _hmm(num_steps=T).log_prob(Y[:, None]),
         raises(ValueError, "`y` must have T = 4")),
    Case("wrong-event-shape", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(INITIAL, TRANSITION,
                             dist.MultivariateNormal(jnp.zeros((K, 2)), jnp.eye(2))).log_prob(
             jnp.zeros((T, 3))),
         raises(ValueError, "`y`")),
    Case("y-batch-mismatch", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(jnp.zeros((3, K)), TRANSITION, _normal()).log_prob(jnp.zeros((2, T))),
         raises(ValueError, "`y`.*broadcast")),
    Case("nan-emission-density", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(INITIAL, TRANSITION, _normal(scale=jnp.array([1.0, -1.0]),
                             validate_args=False)).log_prob(Y),
         returns(is_nan)),
    Case("nan-emission-terms", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(INITIAL, TRANSITION, _normal(scale=jnp.array([1.0, -1.0]),
                             validate_args=False)).log_likelihood_terms(Y),
         returns(is_nan)),
    Case("jit-nan-transition", SSM + "DiscreteHMM",
         lambda: jax.jit(lambda b: DiscreteHMM(INITIAL, b, _normal()).log_prob(Y))(
             TRANSITION.at[1, 1].set(jnp.nan)),
         returns(is_nan)),
    Case("impossible-viterbi-warns", SSM + "DiscreteHMM",
         lambda: _sticky().viterbi(SWITCH),
         returns(lambda r: r.path.shape == (T,) and not r.valid, warns=RuntimeWarning)),
    Case("impossible-log-prob", SSM + "DiscreteHMM", lambda: _sticky().log_prob(SWITCH),
         returns(lambda r: r == -jnp.inf)),
    Case("impossible-terms", SSM + "DiscreteHMM", lambda: _sticky().log_likelihood_terms(SWITCH),
         returns(lambda r: r[0] > -jnp.inf and r[1] == -jnp.inf)),
    Case("sample-without-T", SSM + "DiscreteHMM", lambda: _hmm().sample(jax.random.key(0)),
         raises(ValueError, "num_steps")),
    Case("negative-sample_shape", SSM + "DiscreteHMM",
         lambda: _hmm(num_steps=T).sample(jax.random.key(0), (-1,)),
         raises(ValueError, "`sample_shape`")),
    Case("negative-sample_shape-states", SSM + "DiscreteHMM",
         lambda: _hmm().sample_states(jax.random.key(0), Y, (-1,)),
         raises(ValueError, "`sample_shape`")),
    Case("int-sample_shape", SSM + "DiscreteHMM",
         lambda: (_hmm(num_steps=T).sample(jax.random.key(0), 3),
                  _hmm().sample_states(jax.random.key(0), Y, 3)),
         returns(lambda r: r[0].shape == (3, T) and r[1].shape == (3, T))),
    *[Case(f"non-integer-y-{method}", SSM + "DiscreteHMM", call, raises(ValueError, "`y`.*integer"))
      for method, call in _poisson_calls(jnp.array([2.5, 1.0, 0.0, jnp.nan])).items()],
    *[Case(f"jit-non-integer-y-{method}", SSM + "DiscreteHMM", lambda call=call: jax.jit(call)(),
           returns(lambda r, part=_NAN_PART[method]: is_nan(part(r))))
      for method, call in _poisson_calls(jnp.array([2.0, 1.0, 0.5, jnp.nan])).items()
      if method in _NAN_PART],
    Case("inf-count", SSM + "DiscreteHMM",
         lambda: _poisson().log_prob(jnp.array([2.0, jnp.inf, 0.0, 1.0])),
         raises(ValueError, "`y`.*integer")),
    Case("support-depends-on-parameters", SSM + "DiscreteHMM",
         lambda: DiscreteHMM(INITIAL, TRANSITION,
                             dist.Uniform(jnp.zeros(K), jnp.array([1.0, 2.0]))).log_prob(
             jnp.array([0.5, 1.5, 0.2])),
         returns(lambda r: bool(np.isfinite(r)))),
    # hmm_to_datatree
    Case("nothing", SSM + "hmm_to_datatree", lambda: hmm_to_datatree(),
         raises(ValueError, "at least one")),
    Case("nan-probs", SSM + "hmm_to_datatree",
         lambda: hmm_to_datatree(np.full((1, 2, T, K), np.nan)),
         raises(ValueError, "`state_probs`.*NaN")),
    Case("unnormalised-probs", SSM + "hmm_to_datatree",
         lambda: hmm_to_datatree(np.full((1, 2, T, K), 0.7)),
         raises(ValueError, "`state_probs`.*sum")),
    Case("int-probs", SSM + "hmm_to_datatree",
         lambda: hmm_to_datatree(np.ones((1, 2, T, 1), int)),
         raises(TypeError, "`state_probs`")),
    Case("T=0", SSM + "hmm_to_datatree", lambda: hmm_to_datatree(np.zeros((1, 2, 0, K))),
         raises(ValueError, "`state_probs`")),
    Case("float-path", SSM + "hmm_to_datatree",
         lambda: hmm_to_datatree(viterbi_path=np.zeros((1, 2, T))),
         raises(TypeError, "`viterbi_path`")),
    Case("negative-state", SSM + "hmm_to_datatree",
         lambda: hmm_to_datatree(state_samples=-np.ones((2, T), int)),
         raises(ValueError, "`state_samples`")),
    Case("bad-state_names", SSM + "hmm_to_datatree",
         lambda: hmm_to_datatree(np.full((2, T, K), 0.5), state_names=["a"]),
         raises(ValueError, "`state_names`")),
    Case("bad-datatree", SSM + "hmm_to_datatree",
         lambda: hmm_to_datatree(np.full((2, T, K), 0.5), datatree={"posterior": 1}),
         raises(TypeError, "`datatree`")),
    Case("empty-latent_group", SSM + "hmm_to_datatree",
         lambda: hmm_to_datatree(np.full((2, T, K), 0.5), latent_group=""),
         raises(TypeError, "`latent_group`")),
    Case("short-time_coords", SSM + "hmm_to_datatree",
         lambda: hmm_to_datatree(np.full((2, T, K), 0.5), time_coords=np.arange(T - 1)),
         raises(ValueError, "`time_coords`")),
]  # fmt: skip


@pytest.mark.parametrize("case", case_params(CASES))
def test_contract(case):
    run_case(case)
