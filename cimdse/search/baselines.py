"""Baselines, each spending at most the same budget of distinct evaluated policies.

- ``uniform8``: W8A8 everywhere, what 8-bit CIM compilers do (one evaluation);
  ``uniform2`` .. ``uniform7`` likewise at k/k;
- ``random``: uniformly random legal policies;
- ``greedy``: per-layer sensitivity, then greedy lowering (see :func:`greedy_search`).

All take a :class:`~cimdse.search.evaluator.MethodRecorder`, which scores, caches,
counts and records; projection onto the constraints is the
:class:`~cimdse.search.space.SearchSpace`'s.
"""

from __future__ import annotations

import numpy as np

from cimdse.search.config import UNIFORM_BITS
from cimdse.search.evaluator import MethodRecorder
from cimdse.search.space import SearchSpace

__all__ = ["UNIFORM_BITS", "greedy_search", "random_search", "uniform_method"]


def uniform_method(recorder: MethodRecorder, space: SearchSpace, bits: int) -> None:
    """``bits``/``bits`` on every layer (projected onto the constraints)."""
    recorder(space.uniform(bits, bits))


def random_search(recorder: MethodRecorder, space: SearchSpace, rng: np.random.Generator) -> None:
    """Distinct random legal policies until the budget is spent (or the space is)."""
    budget = min(recorder.budget, space.size())
    attempts = 0
    while recorder.count < budget and attempts < 100 * recorder.budget:
        attempts += 1
        policy = space.sample(rng)
        if not recorder.seen(policy):
            recorder(policy)


def _lower(space: SearchSpace, layer: int, dim: int, bits: int) -> int | None:
    """The next allowed width below ``bits`` for (layer, dim), or None."""
    allowed = space.choices(layer)[dim]
    below = [b for b in allowed if b < bits]
    return max(below) if below else None


def greedy_search(recorder: MethodRecorder, space: SearchSpace) -> None:
    """Per-layer sensitivity, then greedy lowering within the accuracy bound.

    1. Start from the widest legal policy (8/8).
    2. Sensitivity: lower each (layer, weight|activation) alone, one allowed step at a
       time from 8, recording the accuracy; a (layer, dim) stops being probed when it
       leaves the bound. At most half the budget goes here.
    3. Greedy: from 8/8, repeatedly take the step (one (layer, dim) one width lower)
       with the largest latency gain per unit of measured sensitivity (accuracy lost
       by that step alone, floored at a small value); keep it if the combined policy
       stays within the bound, else freeze that (layer, dim). Stop when nothing can be
       lowered or the budget is spent.
    """
    top = space.top()
    ref = recorder(top)
    scorer = recorder.scorer
    # sensitivity[(layer, dim)][bits] = accuracy with only that (layer, dim) at bits
    sens: dict[tuple[int, int], dict[int, float]] = {}
    frontier = {(i, d): int(top[i, d]) for i in range(space.n_layers) for d in (0, 1)}
    probe_budget = max(1, recorder.budget // 2)
    while frontier and recorder.count < probe_budget:
        for i, d in sorted(frontier):
            if recorder.count >= probe_budget:
                break
            nxt = _lower(space, i, d, frontier[(i, d)])
            if nxt is None:
                del frontier[(i, d)]
                continue
            cand = top.copy()
            cand[i, d] = nxt
            out = recorder(cand)
            sens.setdefault((i, d), {int(top[i, d]): ref.val_acc})[nxt] = out.val_acc
            if out.within_bound:
                frontier[(i, d)] = nxt
            else:
                del frontier[(i, d)]

    current = top.copy()
    frozen: set[tuple[int, int]] = set()
    base_latency = float(scorer.latency(current)[0])
    while not recorder.exhausted:
        moves: list[tuple[float, int, int, int]] = []
        cands = []
        for i in range(space.n_layers):
            for d in (0, 1):
                if (i, d) in frozen:
                    continue
                nxt = _lower(space, i, d, int(current[i, d]))
                if nxt is None:
                    continue
                cand = current.copy()
                cand[i, d] = nxt
                cands.append((i, d, nxt, cand))
        if not cands:
            break
        lat = scorer.latency(np.stack([c[3] for c in cands]))
        for (i, d, nxt, _), new_latency in zip(cands, lat, strict=True):
            gain = max(base_latency - float(new_latency), 0.0)
            table = sens.get((i, d), {})
            cur_bits = int(current[i, d])
            if nxt in table and cur_bits in table:
                cost = max(table[cur_bits] - table[nxt], 0.0)
            elif nxt in table:
                cost = max(ref.val_acc - table[nxt], 0.0)
            else:
                cost = 0.05  # not probed: assume a moderate loss
            moves.append((gain / (cost + 1e-3), i, d, nxt))
        moves.sort(key=lambda m: (-m[0], m[1], m[2]))
        _, i, d, nxt = moves[0]
        cand = current.copy()
        cand[i, d] = nxt
        out = recorder(cand)
        if out.within_bound:
            current = cand
            base_latency = out.latency_s
        else:
            frozen.add((i, d))
