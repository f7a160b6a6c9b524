"""Non-dominated points and hypervolume in (speedup, accuracy): the plane that the
search ranks its methods in and the report draws. Plain numpy, below both.

Both objectives are maximized: ``speedup_vs_w8a8`` and the search-time validation
accuracy. The hypervolume of a set of points against the reference
``(speedup 1.0, accuracy bound)`` is the area of the union of the rectangles
``[1, s_i] x [bound, a_i]`` (speedup x pp), so only policies faster than W8A8 and
within the bound count, and a method scores higher by being faster at the same
accuracy *or* more accurate at the same speed. For points sorted by decreasing
speedup, ``HV = sum_i (s_i - s_{i+1}) * (max_{j <= i} a_j - bound)`` (with
``s_{n+1} = 1``), the staircase under the front.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hypervolume", "non_dominated"]


def non_dominated(speedup: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats in one objective while matching it in the other."""
    s, a = np.asarray(speedup, float), np.asarray(acc, float)
    ge = (s[None, :] >= s[:, None]) & (a[None, :] >= a[:, None])
    gt = (s[None, :] > s[:, None]) | (a[None, :] > a[:, None])
    return ~(ge & gt).any(axis=1)  # row i: some j at least as good in both, better in one


def hypervolume(speedup: np.ndarray, acc_pp: np.ndarray, bound_pp: float, ref_speedup: float = 1.0) -> float:
    """Area (speedup x pp) dominated by the points above ``(ref_speedup, bound_pp)``."""
    s = np.asarray(speedup, float)
    a = np.asarray(acc_pp, float)
    keep = (s > ref_speedup) & (a >= bound_pp)
    if not keep.any():
        return 0.0
    order = np.argsort(-s[keep], kind="stable")
    s, a = s[keep][order], a[keep][order]
    best = np.maximum.accumulate(a) - bound_pp
    widths = s - np.append(s[1:], ref_speedup)
    return float(np.sum(widths * best))
