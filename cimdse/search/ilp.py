"""Sensitivity + integer programming, in the style of HAWQ-V3 (Yao et al., ICML 2021).

HAWQ-V3 gives each layer and width a sensitivity (Hessian trace times the
quantization perturbation), then picks one width per layer with an ILP (PuLP+GLPK)
that minimizes the total sensitivity under one budget (latency, size or BOPs), and
sweeps the budget to trade accuracy for speed. Here:

1. **Sensitivity, measured**: ``d[l, dim, b]`` is the validation accuracy lost when
   only layer ``l``'s weights (dim 0) or activations (dim 1) drop to ``b`` bits and
   everything else stays at the widest legal width. Probes go breadth-first (every
   (layer, dim) one width lower, then the next width, ...), spend at most
   ``probe_share`` of the budget, and stop lowering a (layer, dim) once it falls
   below the accuracy bound; these probes are ordinary evaluations and count
   against the method's budget. This covers activations, whose width sets a
   crossbar's input slices (HAWQ-V3's Hessian covers weights only). Losses are
   floored at 0, made monotone (a narrower width loses at least as much) and,
   below the last probed width, extrapolated as ``4x`` per bit (quantization noise
   power grows ``4x`` per bit removed), plus ``1e-6`` per bit so that free
   reductions are only taken when they buy latency.
2. **Latency per layer and choice**: ``lat[l, (w, a)]``, the cost model's latency
   of layer ``l`` when every layer is at ``(w, a)``. Exact for a re-programmed
   chip (latency is a sum of independent layer terms, e.g. the ``cim-aq`` preset);
   with resident weights a layer's replication depends on the others', so it is
   an estimate, and every solution is costed exactly when evaluated.
3. **ILP** (``scipy.optimize.milp``, HiGHS): binary ``x[l, c]`` per layer and legal
   (w, a) pair, ``sum_c x[l, c] = 1``, ``sum lat[l, c] x[l, c] <= T``, minimize
   ``sum (d[l, 0, w] + d[l, 1, a]) x[l, c]``. The budget ``T`` sweeps from the
   widest policy's latency down to the fastest one's, geometrically, in van der
   Corput order (coarse first, then ever finer), and each new solution is
   evaluated until the method's budget is spent or the sweep stops finding new
   ones (a family of allocations ordered by budget has fewer members than the
   budget on small networks, so the method may spend less). HAWQ-V3 also ties the widths of
   residual branches that meet in an add; the networks' layers are left free here.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from cimdse.search.evaluator import MethodRecorder
from cimdse.search.space import SearchSpace

__all__ = ["ilp_search", "measure_sensitivity", "solve_allocation"]

_NOISE_GROWTH = 4.0  # per bit removed
_TIE_BREAK = 1e-6  # per bit removed


def measure_sensitivity(recorder: MethodRecorder, space: SearchSpace, probe_budget: int) -> np.ndarray:
    """Accuracy lost ``d[L, 2, max_bits + 1]`` per (layer, dim, width), from at most
    ``probe_budget`` single-layer probes (see the module doc)."""
    top = space.top()
    ref = recorder(top).val_acc
    n_bits = space.max_bits + 1
    measured = np.full((space.n_layers, 2, n_bits), np.nan)
    for i in range(space.n_layers):
        for d in (0, 1):
            measured[i, d, top[i, d]] = 0.0
    frontier = {(i, d): int(top[i, d]) for i in range(space.n_layers) for d in (0, 1)}
    while frontier and recorder.count < probe_budget:
        for i, d in sorted(frontier):
            if recorder.count >= probe_budget:
                break
            allowed = space.choices(i)[d]
            below = [b for b in allowed if b < frontier[(i, d)]]
            if not below:
                del frontier[(i, d)]
                continue
            cand = top.copy()
            cand[i, d] = max(below)
            out = recorder(cand)
            measured[i, d, cand[i, d]] = ref - out.val_acc
            if out.within_bound:
                frontier[(i, d)] = int(cand[i, d])
            else:
                del frontier[(i, d)]
    return _complete(measured, space)


def _complete(measured: np.ndarray, space: SearchSpace) -> np.ndarray:
    """Floor at 0, make monotone in width, extrapolate below the last probe, add the tie-break."""
    out = np.zeros_like(measured)
    for i in range(measured.shape[0]):
        for d in (0, 1):
            worst, last = 0.0, None
            for b in range(space.max_bits, 0, -1):
                v = measured[i, d, b]
                if not np.isnan(v):
                    worst, last = max(worst, float(v)), b
                    out[i, d, b] = worst
                elif last is None:
                    out[i, d, b] = 0.0  # above the widest legal width: unused
                else:
                    out[i, d, b] = max(worst, 1e-4) * _NOISE_GROWTH ** (last - b)
            out[i, d, 1:] += _TIE_BREAK * (space.max_bits - np.arange(1, measured.shape[2]))
    return out


def _layer_latency(recorder: MethodRecorder, pairs: list[tuple[int, int]]) -> np.ndarray:
    """``lat[P, L]``: each layer's latency when every layer is at pair p."""
    policies = np.array([[p] * recorder.scorer.compiled.n_layers for p in pairs], dtype=np.int64)
    return np.asarray(recorder.scorer.compiled.evaluate(policies).layer_latency_s, dtype=float)


def solve_allocation(cost: list[np.ndarray], latency: list[np.ndarray], budget: float) -> list[int] | None:
    """The choice per layer minimizing ``sum cost`` with ``sum latency <= budget``
    (``cost[l]``, ``latency[l]``: one entry per legal choice of layer l); None if infeasible."""
    sizes = [len(c) for c in cost]
    n = sum(sizes)
    c = np.concatenate(cost)
    lat = np.concatenate(latency)
    rows = np.zeros((len(sizes), n))
    start = 0
    for layer, size in enumerate(sizes):
        rows[layer, start : start + size] = 1.0
        start += size
    constraints = [LinearConstraint(rows, 1.0, 1.0), LinearConstraint(lat[None, :], -np.inf, budget)]
    res = milp(c, integrality=np.ones(n), bounds=Bounds(0, 1), constraints=constraints)
    if res.x is None:
        return None
    picks, start = [], 0
    for size in sizes:
        picks.append(int(np.argmax(res.x[start : start + size])))
        start += size
    return picks


def _van_der_corput(k: int) -> float:
    """The k-th (k >= 1) point of the base-2 van der Corput sequence in (0, 1)."""
    q, denom = 0.0, 1.0
    while k:
        denom *= 2.0
        k, bit = divmod(k, 2)
        q += bit / denom
    return q


def ilp_search(recorder: MethodRecorder, space: SearchSpace, *, probe_share: float = 0.5, max_stale: int = 48) -> int:
    """Measure sensitivities, then evaluate the ILP's allocations over a sweep of
    latency budgets until the budget is spent, or ``max_stale`` budgets in a row gave
    no new policy (the sweep has found the family's members; a fine budget grid only
    repeats them); returns the number of ILP solves."""
    budget = min(recorder.budget, space.size())
    sens = measure_sensitivity(recorder, space, max(1, int(probe_share * budget)))
    pairs = sorted({(w, a) for i in range(space.n_layers) for w in space.choices(i)[0] for a in space.choices(i)[1]})
    lat_all = _layer_latency(recorder, pairs)
    scale = float(lat_all.sum(axis=1).max()) or 1.0
    choices, cost, latency = [], [], []
    for i in range(space.n_layers):
        ws, as_ = space.choices(i)
        legal = [(w, a) for w, a in pairs if w in ws and a in as_]
        choices.append(legal)
        cost.append(np.array([sens[i, 0, w] + sens[i, 1, a] for w, a in legal]))
        latency.append(np.array([lat_all[pairs.index(p), i] for p in legal]) / scale)
    hi = sum(float(lat.max()) for lat in latency)
    lo = sum(float(lat.min()) for lat in latency)
    solves, stale = 0, 0
    while recorder.count < budget and stale < max_stale:
        u = 1.0 if solves == 0 else _van_der_corput(solves)
        target = hi * (lo / hi) ** u if lo > 0 else hi * (1.0 - u)
        picks = solve_allocation(cost, latency, target * (1 + 1e-9))
        solves += 1
        policy = None if picks is None else np.array([choices[i][p] for i, p in enumerate(picks)], dtype=np.int64)
        if policy is None or recorder.seen(policy):
            stale += 1
            continue
        stale = 0
        recorder(policy)
    return solves
