"""Naive float64 references for the SMC tests: Kalman log-likelihood and RTS smoother.

Plain NumPy loops, textbook covariance form (Särkkä 2013, "Bayesian Filtering and Smoothing",
chapters 4 and 8); missing observations (rows of NaN) are skipped.
"""

from __future__ import annotations

import numpy as np


def kalman_loglik_and_rts(m0, P0, F, Q, H, R, ys):
    """Exact log p(y_{0:T-1}) and smoothing means/covariances of a time-invariant LGSSM.

    x_0 ~ N(m0, P0), x_{t+1} = F x_t + N(0, Q), y_t = H x_t + N(0, R).
    """
    m0, P0, F, Q, H, R, ys = (np.asarray(a, dtype=np.float64) for a in (m0, P0, F, Q, H, R, ys))
    T = ys.shape[0]
    d = m0.shape[0]
    ms, Ps, mps, Pps = [], [], [], []
    m, P = m0, P0
    loglik = 0.0
    for t in range(T):
        if t > 0:
            m, P = F @ m, F @ P @ F.T + Q
        mps.append(m)
        Pps.append(P)
        y = ys[t]
        if not np.all(np.isnan(y)):
            S = H @ P @ H.T + R
            r = y - H @ m
            loglik += -0.5 * (r @ np.linalg.solve(S, r) + np.linalg.slogdet(2 * np.pi * S)[1])
            K = P @ H.T @ np.linalg.inv(S)
            m = m + K @ r
            P = (np.eye(d) - K @ H) @ P
        ms.append(m)
        Ps.append(P)
    sm, sP = [ms[-1]], [Ps[-1]]
    for t in range(T - 2, -1, -1):
        G = Ps[t] @ F.T @ np.linalg.inv(Pps[t + 1])
        sm.insert(0, ms[t] + G @ (sm[0] - mps[t + 1]))
        sP.insert(0, Ps[t] + G @ (sP[0] - Pps[t + 1]) @ G.T)
    return loglik, np.array(sm), np.array(sP)


def simulate_lgssm(rng, m0, P0, F, Q, H, R, T):
    """Simulate states and observations with NumPy."""
    x = rng.multivariate_normal(m0, P0)
    xs, ys = [], []
    for t in range(T):
        if t > 0:
            x = F @ x + rng.multivariate_normal(np.zeros(len(m0)), Q)
        xs.append(x)
        ys.append(H @ x + rng.multivariate_normal(np.zeros(R.shape[0]), R))
    return np.array(xs), np.array(ys)


def offspring_counts(indices, num_particles):
    """Offspring counts (..., N) of ancestor index arrays (..., M)."""
    indices = np.asarray(indices)
    flat = indices.reshape(-1, indices.shape[-1])
    counts = np.stack([np.bincount(row, minlength=num_particles) for row in flat])
    return counts.reshape(*indices.shape[:-1], num_particles)


def lgssm_joint_posterior(m0, P0, F, Q, H, R, ys):
    """Mean (T*d,) and covariance of x_{0:T-1} | y by brute-force Gaussian conditioning."""
    m0, P0, F, Q, H, R, ys = (np.asarray(a, dtype=np.float64) for a in (m0, P0, F, Q, H, R, ys))
    T, d = ys.shape[0], m0.shape[0]
    # x = A @ (x0, w_1, ..., w_{T-1}) with independent Gaussian blocks.
    A = np.zeros((T * d, T * d))
    for t in range(T):
        for s in range(t + 1):
            A[t * d : (t + 1) * d, s * d : (s + 1) * d] = np.linalg.matrix_power(F, t - s)
    block = np.zeros((T * d, T * d))
    block[:d, :d] = P0
    for t in range(1, T):
        block[t * d : (t + 1) * d, t * d : (t + 1) * d] = Q
    mean_w = np.concatenate([m0, np.zeros((T - 1) * d)])
    mx = A @ mean_w
    Px = A @ block @ A.T
    observed = [t for t in range(T) if not np.all(np.isnan(ys[t]))]
    p = H.shape[0]
    Hb = np.zeros((len(observed) * p, T * d))
    for k, t in enumerate(observed):
        Hb[k * p : (k + 1) * p, t * d : (t + 1) * d] = H
    Rb = np.kron(np.eye(len(observed)), R)
    yb = np.concatenate([ys[t] for t in observed])
    S = Hb @ Px @ Hb.T + Rb
    K = Px @ Hb.T @ np.linalg.inv(S)
    return mx + K @ (yb - Hb @ mx), Px - K @ S @ K.T
