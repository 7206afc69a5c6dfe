"""Naive NumPy references for discrete HMM inference (float64, no JAX).

`forward_reference` is the textbook log-sum-exp forward recursion; `enumerate_reference`
enumerates all K^T state paths (tiny T and K only). Conventions as in
`numpyro_parallel.ssm.hmm.inference`: transition ``[t]`` maps ``z_t`` to ``z_{t+1}``, the last is
unused.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import logsumexp


def _normalise(initial_logits, transition_logits, num_steps):
    log_initial = np.asarray(initial_logits, np.float64)
    log_initial = log_initial - logsumexp(log_initial)
    log_transition = np.asarray(transition_logits, np.float64)
    log_transition = log_transition - logsumexp(log_transition, axis=-1, keepdims=True)
    if log_transition.ndim == 2:
        log_transition = np.broadcast_to(log_transition, (num_steps, *log_transition.shape))
    return log_initial, log_transition


def forward_reference(initial_logits, transition_logits, log_likelihoods):
    """Sequential log-space forward pass: (log-likelihood, filtered probabilities (T, K))."""
    log_likelihoods = np.asarray(log_likelihoods, np.float64)
    num_steps = log_likelihoods.shape[0]
    log_initial, log_transition = _normalise(initial_logits, transition_logits, num_steps)
    log_alpha = log_initial + log_likelihoods[0]
    filtered = [np.exp(log_alpha - logsumexp(log_alpha))]
    for t in range(1, num_steps):
        log_alpha = logsumexp(log_alpha[:, None] + log_transition[t - 1], axis=0)
        log_alpha = log_alpha + log_likelihoods[t]
        filtered.append(np.exp(log_alpha - logsumexp(log_alpha)))
    return logsumexp(log_alpha), np.stack(filtered)


def _all_paths(initial_logits, transition_logits, log_likelihoods):
    """Every one of the K^T paths (P, T) and its log joint density log p(z, y) (P,)."""
    log_likelihoods = np.asarray(log_likelihoods, np.float64)
    num_steps, num_states = log_likelihoods.shape
    log_initial, log_transition = _normalise(initial_logits, transition_logits, num_steps)
    paths = np.array(list(itertools.product(range(num_states), repeat=num_steps)))
    log_joint = log_initial[paths[:, 0]] + log_likelihoods[0, paths[:, 0]]
    for t in range(1, num_steps):
        log_joint = log_joint + log_transition[t - 1, paths[:, t - 1], paths[:, t]]
        log_joint = log_joint + log_likelihoods[t, paths[:, t]]
    return paths, log_joint


def enumerate_reference(initial_logits, transition_logits, log_likelihoods):
    """Exhaustive enumeration: (log-likelihood, marginals (T, K), best path, best log joint).

    Data of probability zero: log-likelihood -inf and NaN marginals."""
    paths, log_joint = _all_paths(initial_logits, transition_logits, log_likelihoods)
    num_steps, num_states = np.shape(log_likelihoods)
    log_evidence = logsumexp(log_joint)
    with np.errstate(invalid="ignore"):  # -inf - (-inf) when every path is impossible
        weights = np.exp(log_joint - log_evidence)
    marginals = np.zeros((num_steps, num_states))
    for t in range(num_steps):
        np.add.at(marginals[t], paths[:, t], weights)
    best = int(np.argmax(log_joint))
    return log_evidence, marginals, paths[best], log_joint[best]


def enumerate_path_probabilities(initial_logits, transition_logits, log_likelihoods):
    """All K^T paths (P, T) and their posterior probabilities (P,) (prior if likelihoods = 0)."""
    paths, log_joint = _all_paths(initial_logits, transition_logits, log_likelihoods)
    return paths, np.exp(log_joint - logsumexp(log_joint))
