"""Naive covariance-form Kalman filter and RTS smoother in NumPy loops (test reference only).

Written independently of the package: plain covariance updates, missing components handled by
selecting the observed rows, no square roots, no scans.
"""

import numpy as np


def _at(a, t, base_ndim):
    a = np.asarray(a)
    return a[t] if a.ndim == base_ndim + 1 else a


def kalman_filter(m0, P0, F, Q, H, R, y, c=None, dd=None):
    """Returns filtered means (T,d), covariances (T,d,d), predictive log-lik terms (T,)."""
    y = np.asarray(y, dtype=np.float64)
    T = y.shape[0]
    n = np.asarray(m0).shape[0]
    means, covs, terms = [], [], []
    m, P = np.asarray(m0, float), np.asarray(P0, float)
    for t in range(T):
        if t > 0:
            Ft = _at(F, t - 1, 2)
            ct = np.zeros(n) if c is None else _at(c, t - 1, 1)
            m = Ft @ m + ct
            P = Ft @ P @ Ft.T + _at(Q, t - 1, 2)
        Ht, Rt = _at(H, t, 2), _at(R, t, 2)
        dt = np.zeros(Ht.shape[0]) if dd is None else _at(dd, t, 1)
        obs = ~np.isnan(y[t])
        if obs.any():
            Ho, Ro = Ht[obs], Rt[np.ix_(obs, obs)]
            r = y[t][obs] - Ho @ m - dt[obs]
            S = Ho @ P @ Ho.T + Ro
            K = P @ Ho.T @ np.linalg.inv(S)
            _, logdet = np.linalg.slogdet(2 * np.pi * S)
            terms.append(-0.5 * (r @ np.linalg.solve(S, r) + logdet))
            m = m + K @ r
            P = P - K @ S @ K.T
        else:
            terms.append(0.0)
        means.append(m)
        covs.append(P)
    return np.array(means), np.array(covs), np.array(terms)


def rts_smoother(m0, P0, F, Q, H, R, y, c=None, dd=None):
    """Returns smoothed means (T,d) and covariances (T,d,d)."""
    means, covs, _ = kalman_filter(m0, P0, F, Q, H, R, y, c, dd)
    T, n = means.shape
    ms, Ps = means.copy(), covs.copy()
    for t in range(T - 2, -1, -1):
        Ft = _at(F, t, 2)
        ct = np.zeros(n) if c is None else _at(c, t, 1)
        mp = Ft @ means[t] + ct
        Pp = Ft @ covs[t] @ Ft.T + _at(Q, t, 2)
        G = covs[t] @ Ft.T @ np.linalg.inv(Pp)
        ms[t] = means[t] + G @ (ms[t + 1] - mp)
        Ps[t] = covs[t] + G @ (Ps[t + 1] - Pp) @ G.T
    return ms, Ps


def joint_log_density_brute_force(m0, P0, F, Q, H, R, y):
    """log p(y) from the joint Gaussian of all observations (time-invariant F, Q, H, R)."""
    y = np.asarray(y, float)
    T = y.shape[0]
    n = len(m0)
    # Build the joint covariance of stacked states, then of observations.
    mean_x = [np.asarray(m0, float)]
    for _ in range(1, T):
        mean_x.append(F @ mean_x[-1])
    cov_x = np.zeros((T * n, T * n))
    Pt = [np.asarray(P0, float)]
    for _ in range(1, T):
        Pt.append(F @ Pt[-1] @ F.T + Q)
    for s in range(T):
        for t in range(s, T):
            block = np.linalg.matrix_power(F, t - s) @ Pt[s]
            cov_x[t * n : (t + 1) * n, s * n : (s + 1) * n] = block
            cov_x[s * n : (s + 1) * n, t * n : (t + 1) * n] = block.T
    Hb = np.kron(np.eye(T), H)
    mu = Hb @ np.concatenate(mean_x)
    S = Hb @ cov_x @ Hb.T + np.kron(np.eye(T), R)
    r = y.reshape(-1) - mu
    _, logdet = np.linalg.slogdet(2 * np.pi * S)
    return -0.5 * (r @ np.linalg.solve(S, r) + logdet)


def random_model(rng, T, d, p, time_varying=True, offsets=True):
    """Random, reasonably conditioned model as NumPy arrays (covariance form)."""

    def spd(n, size=None):
        a = rng.normal(size=(*(size or ()), n, n))
        return a @ np.swapaxes(a, -1, -2) / n + 0.3 * np.eye(n)

    size = (T,) if time_varying else ()
    model = {
        "initial_mean": rng.normal(size=d),
        "initial_cov": spd(d),
        "transition_matrix": 0.9 * rng.normal(size=(*size, d, d)) / np.sqrt(d),
        "transition_cov": spd(d, size),
        "observation_matrix": rng.normal(size=(*size, p, d)),
        "observation_cov": spd(p, size),
    }
    if offsets:
        model["transition_offset"] = rng.normal(size=(*size, d))
        model["observation_offset"] = rng.normal(size=(*size, p))
    return model


def _run(fn, model, y):
    return fn(
        model["initial_mean"],
        model["initial_cov"],
        model["transition_matrix"],
        model["transition_cov"],
        model["observation_matrix"],
        model["observation_cov"],
        y,
        model.get("transition_offset"),
        model.get("observation_offset"),
    )


def filter_model(model, y):
    """Run `kalman_filter` on a `random_model` dict."""
    return _run(kalman_filter, model, y)


def smooth_model(model, y):
    """Run `rts_smoother` on a `random_model` dict."""
    return _run(rts_smoother, model, y)
