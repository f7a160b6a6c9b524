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

from collections.abc import Callable

import numpy as np

_BISECT_STEPS = 14
_MAX_FILL_ROUNDS = 512


def _smallest_feasible(
    feasible: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, guesses: list[np.ndarray]
) -> np.ndarray:
    """Per row, (nearly) the smallest x in [lo, hi] with ``feasible(x)``, for a ``feasible``
    that holds above a threshold and at ``hi``: the guesses narrow the bracket, then
    a bisection on log x."""
    log_lo, log_hi = np.log(lo), np.log(hi)
    for guess in guesses:
        g = np.clip(np.log(guess), log_lo, log_hi)
        ok = feasible(np.exp(g))
        log_hi = np.where(ok, g, log_hi)
        log_lo = np.where(ok, log_lo, g)
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (log_lo + log_hi)
        ok = feasible(np.exp(mid))
        log_hi = np.where(ok, mid, log_hi)
        log_lo = np.where(ok, log_lo, mid)
    return np.exp(log_hi)


def allocate_sum(base: np.ndarray, cost: np.ndarray, vmax: np.ndarray, spare: np.ndarray) -> np.ndarray:
    """Copies [P, L] (>= 1) minimizing ``sum(base / copies)`` greedily within ``spare`` [P] crossbars."""
    base = np.asarray(base, dtype=np.float64)
    cost_f = np.asarray(cost, dtype=np.float64)
    vmax_f = np.asarray(vmax, dtype=np.float64)[None, :]
    spare_f = np.asarray(spare, dtype=np.float64)
    ratio = base / cost_f  # the gain per crossbar of copy d >= 2 is ratio / (d (d - 1))
    budget = spare_f + cost_f.sum(axis=1)  # crossbars for all copies, the first ones included

    ratio32, cost32, vmax32 = ratio.astype(np.float32), cost_f.astype(np.float32), vmax_f.astype(np.float32)

    def copies_at(lam: np.ndarray, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        # the largest d with d (d - 1) <= ratio / lambda, in [1, V]
        q = ratio[rows] * (1.0 / lam)[:, None]
        d = np.floor(0.5 + np.sqrt(0.25 + q))
        d -= d * (d - 1.0) > q  # guard the square root's rounding
        return np.minimum(np.maximum(d, 1.0), vmax_f)

    def feasible(lam: np.ndarray) -> np.ndarray:
        # the same count in float32, in place: only steers the bisection (the greedy finish is exact)
        d = ratio32 * (1.0 / lam).astype(np.float32)[:, None]
        d += 0.25
        np.sqrt(d, out=d)
        d += 0.5
        np.floor(d, out=d)
        np.minimum(d, vmax32, out=d)
        return np.einsum("pl,pl->p", d, cost32) <= budget

    # Without the V cap, copies lie in [sqrt(q), sqrt(q) + 1]: two guesses bracket lambda.
    root = np.sqrt(base * cost_f).sum(axis=1)
    guesses = [(root / budget) ** 2, (root / np.maximum(spare_f, 0.5)) ** 2]
    lo = (ratio / (vmax_f * (vmax_f + 1.0))).min(axis=1) * 0.5
    hi = ratio.max(axis=1)
    lam = _smallest_feasible(feasible, lo, hi, guesses)
    copies = copies_at(lam)
    left = budget - (copies * cost_f).sum(axis=1)
    for _ in range(60):  # float32 let the bisection overshoot by a hair: step back up in float64
        over = np.flatnonzero(left < 0)
        if over.size == 0:
            break
        lam[over] *= 1.0 + 1e-5
        copies[over] = copies_at(lam[over], over)
        left[over] = budget[over] - (copies[over] * cost_f[over]).sum(axis=1)
    # Greedy finish: one copy per round and policy, the best that still fits.
    active = np.flatnonzero(left > 0)
    for _ in range(_MAX_FILL_ROUNDS):
        if active.size == 0:
            break
        d = copies[active]
        c = cost_f[active]
        ok = (c <= left[active, None]) & (d < vmax_f)
        gain = np.where(ok, ratio[active] / (d * (d + 1.0)), -1.0)
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
    vmax_f = np.asarray(vmax, dtype=np.float64)[None, :]
    spare_f = np.asarray(spare, dtype=np.float64)
    budget = spare_f + cost_f.sum(axis=1)

    def copies_for(target: np.ndarray) -> np.ndarray:
        return np.minimum(np.ceil(base * (1.0 / target)[:, None] * (1 - 1e-12)), vmax_f)

    def feasible(target: np.ndarray) -> np.ndarray:
        return (copies_for(target) * cost_f).sum(axis=1) <= budget

    # Without the V cap, ceil(B / T) lies in [B / T, B / T + 1]: two guesses bracket T.
    work = (base * cost_f).sum(axis=1)
    guesses = [work / budget, work / np.maximum(spare_f, 0.5)]
    lo = (base / vmax_f).max(axis=1)
    hi = base.max(axis=1) * (1 + 1e-9)  # one copy each: always fits
    return copies_for(_smallest_feasible(feasible, lo, hi, guesses)).astype(np.int64)
