"""Fronts: which evaluated policies are non-dominated in (speedup, accuracy), and how
much of that plane a method's policies cover.

The point math (``non_dominated``, ``hypervolume``) lives in :mod:`cimdse.pareto`,
shared with the report; here it is applied to search histories.
"""

from __future__ import annotations

import pandas as pd

from cimdse.pareto import hypervolume, non_dominated

__all__ = ["PARETO_COLUMNS", "hypervolume", "non_dominated", "pareto_front"]

PARETO_COLUMNS = ["arch", "method", "policy", "latency_s", "speedup_vs_w8a8", "val_acc", "reward"]


def pareto_front(history: pd.DataFrame) -> pd.DataFrame:
    """Non-dominated (speedup_vs_w8a8, val_acc) points per arch over all methods.

    A policy found by several methods counts once (its first row); points with the
    same speedup and accuracy are all kept (neither dominates). Sorted by arch, then
    by decreasing speedup.
    """
    if history.empty:
        return pd.DataFrame(columns=PARETO_COLUMNS)
    keep = []
    for _, group in history.drop_duplicates(["arch", "policy"]).groupby("arch", sort=False):
        keep.append(group[non_dominated(group["speedup_vs_w8a8"].to_numpy(), group["val_acc"].to_numpy())])
    front = pd.concat(keep)
    front = front.sort_values(["arch", "speedup_vs_w8a8", "val_acc"], ascending=[True, False, False], kind="stable")
    return front[PARETO_COLUMNS].reset_index(drop=True)
