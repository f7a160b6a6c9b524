"""Rewards: what a search maximizes, given a policy's speedup and accuracy.

Accuracies are fractions in [0, 1]; the bound and margins are in percentage points
(pp) so that ``max_acc_drop=0.5`` means half a point below the W8A8 model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["REWARDS", "CimAqReward", "RewardFn", "make_reward"]


class RewardFn(Protocol):
    """``reward(speedup, val_acc, ref_acc)``: larger is better."""

    max_acc_drop: float

    def __call__(self, speedup: float, val_acc: float, ref_acc: float) -> float: ...

    def within_bound(self, val_acc: float, ref_acc: float) -> bool: ...


@dataclass(frozen=True)
class CimAqReward:
    """CIM-AQ's reward as its later code has it (rpelke/cim-aq-dev,
    ``linear_quantize_env.py``), with accuracies in pp. (jmkle/cim-aq's earlier
    version kept HAQ's ``0.1 x (acc - org)`` under a hard latency wall.)

    With ``bound = 100 * ref_acc - max_acc_drop``:

    - below the bound: ``-shortfall_weight * (bound - acc)``: the further below, the worse,
      whatever the speedup, so the search first learns to stay accurate;
    - at or above it: ``speedup_weight * (speedup - 1) + margin_weight * (acc - bound)``,
      i.e. ``100 * (1 / cost_ratio - 1) + 0.1 * margin``: speedup dominates, a
      little accuracy above the bound breaks ties.
    """

    max_acc_drop: float = 0.5
    speedup_weight: float = 100.0
    margin_weight: float = 0.1
    shortfall_weight: float = 10.0

    def bound_pp(self, ref_acc: float) -> float:
        return 100.0 * ref_acc - self.max_acc_drop

    def within_bound(self, val_acc: float, ref_acc: float) -> bool:
        # a small tolerance: accuracies are ratios of counts and the bound is decimal
        return 100.0 * val_acc >= self.bound_pp(ref_acc) - 1e-9

    def __call__(self, speedup: float, val_acc: float, ref_acc: float) -> float:
        gap = 100.0 * val_acc - self.bound_pp(ref_acc)
        if not self.within_bound(val_acc, ref_acc):
            return self.shortfall_weight * gap
        return self.speedup_weight * (speedup - 1.0) + self.margin_weight * max(gap, 0.0)


#: reward name (``--reward``) -> its class, built with ``max_acc_drop``
REWARDS: dict[str, type] = {"cim-aq": CimAqReward}


def make_reward(name: str, max_acc_drop: float) -> RewardFn:
    return REWARDS[name](max_acc_drop)
