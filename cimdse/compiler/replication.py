"""Replication of resident layers on spare crossbars, vectorized across policies.

Copy ``d`` of a layer (``t`` crossbars per copy, latency ``B`` alone, ``V`` MVMs)
brings its latency from ``B/d`` to ``B/(d+1)``, a gain per crossbar of
``B / (t d (d+1))``, which falls with ``d``. So the greedy "add the copy with the
largest gain per crossbar while it fits" takes copies in one global order of
falling gain, and the copies it takes before the first that does not fit are
exactly those whose gain is at least a threshold: ``d = floor((1 + sqrt(1 + 4 B /
(t lambda))) / 2)``. A bisection on ``lambda`` (all policies at once) finds that
prefix; the greedy then continues round by round (each round: the best copy that
still fits, per policy) until no copy fits. The result is the plain greedy's, at a
cost of a few dozen [P, L] array operations instead of one step per crossbar.

A layer never gets more copies than MVMs (``d <= V``): a linear layer with V = 1
gains nothing from a copy.

For the pipelined schedule the objective is the slowest stage, so the allocation
minimizes ``max(B / d)`` instead: the smallest ``T`` with
``sum t * (ceil(B / T) - 1) <= spare``, again by bisection.
"""

from __future__ import annotations

import numpy as np

_BISECT_STEPS = 24
_MAX_FILL_ROUNDS = 512


def _copies_at(q: np.ndarray, vmax: np.ndarray) -> np.ndarray:
    """Copies whose gain ratio clears the threshold: the largest d with d(d-1) <= q, in [1, vmax]."""
    d = np.floor((1.0 + np.sqrt(1.0 + 4.0 * q)) * 0.5)
    d -= d * (d - 1.0) > q * (1 + 1e-12)  # guard the square root's rounding
    return np.clip(d, 1.0, vmax)


def allocate_sum(base: np.ndarray, cost: np.ndarray, vmax: np.ndarray, spare: np.ndarray) -> np.ndarray:
    """Copies [P, L] (>= 1) minimizing ``sum(base / copies)`` greedily within ``spare`` [P] crossbars."""
    base = np.asarray(base, dtype=np.float64)
    cost_f = np.asarray(cost, dtype=np.float64)
    vmax_f = np.broadcast_to(np.asarray(vmax, dtype=np.float64), base.shape)
    spare_f = np.asarray(spare, dtype=np.float64)
    ratio = base / cost_f  # gain per crossbar of copy d is ratio / (d (d - 1)) for d >= 2
    # Bisection on log(lambda): the hi end always fits (takes nothing more).
    log_hi = np.log(ratio.max(axis=1) / 2.0) + 1e-9
    log_lo = np.log((ratio / (vmax_f * (vmax_f + 1.0))).min(axis=1)) - 1e-9
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (log_hi + log_lo)
        d = _copies_at(ratio * np.exp(-mid)[:, None], vmax_f)
        fits = ((d - 1.0) * cost_f).sum(axis=1) <= spare_f
        log_hi = np.where(fits, mid, log_hi)
        log_lo = np.where(fits, log_lo, mid)
    copies = _copies_at(ratio * np.exp(-log_hi)[:, None], vmax_f)
    left = spare_f - ((copies - 1.0) * cost_f).sum(axis=1)
    # Greedy finish: one copy per round and policy, the best that still fits.
    active = np.arange(base.shape[0])
    for _ in range(_MAX_FILL_ROUNDS):
        if active.size == 0:
            break
        d = copies[active]
        c = cost_f[active]
        gain = ratio[active] / (d * (d + 1.0))
        ok = (c <= left[active, None]) & (d < vmax_f[active])
        gain = np.where(ok, gain, -1.0)
        best = gain.argmax(axis=1)
        take = gain[np.arange(active.size), best] > 0
        active, best = active[take], best[take]
        copies[active, best] += 1.0
        left[active] -= cost_f[active, best]
    return copies.astype(np.int64)


def allocate_max(base: np.ndarray, cost: np.ndarray, vmax: np.ndarray, spare: np.ndarray) -> np.ndarray:
    """Copies [P, L] (>= 1) minimizing ``max(base / copies)`` within ``spare`` [P] crossbars."""
    base = np.asarray(base, dtype=np.float64)
    cost_f = np.asarray(cost, dtype=np.float64)
    vmax_f = np.broadcast_to(np.asarray(vmax, dtype=np.float64), base.shape)
    spare_f = np.asarray(spare, dtype=np.float64)

    def copies_for(target: np.ndarray) -> np.ndarray:
        return np.clip(np.ceil(base / target[:, None] * (1 - 1e-12)), 1.0, vmax_f)

    log_hi = np.log(base.max(axis=1)) + 1e-9  # one copy each: always fits
    log_lo = np.log((base / vmax_f).max(axis=1)) - 1e-9
    for _ in range(2 * _BISECT_STEPS):
        mid = 0.5 * (log_hi + log_lo)
        fits = ((copies_for(np.exp(mid)) - 1.0) * cost_f).sum(axis=1) <= spare_f
        log_hi = np.where(fits, mid, log_hi)
        log_lo = np.where(fits, log_lo, mid)
    return copies_for(np.exp(log_hi)).astype(np.int64)
