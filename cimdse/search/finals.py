"""The final fine-tune and the choice it makes.

The search ranks policies by reward, whose accuracy is the (cheap, pessimistic)
search-time estimate. Each method's ``final_top_k`` highest-reward policies, and
W8A8, are fine-tuned in full (a policy shared by methods once), and the method's
result is the fastest of them whose fine-tuned *validation* accuracy is within the
bound of the fine-tuned W8A8 model's (if none is, the most accurate of them). The
arch's best policy is chosen the same way among the methods' results. The test
split is never used to choose: its accuracy is only reported.

With hardware-accurate evaluation the fine-tuned model is measured on each arch's
crossbar model, and those accuracies decide (so a lossy ADC changes the choice);
the same model's integer-model accuracies (the ``fq_*`` columns, named for the
fake-quant model they measure exactly) are reported beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cimdse.arch import ArchSpec
from cimdse.search.config import SUMMARY_COLUMNS, Progress, SearchEvent
from cimdse.search.evaluator import MethodRecorder, Outcome, PolicyKey, policy_key
from cimdse.search.fronts import hypervolume, non_dominated
from cimdse.search.reward import RewardFn

__all__ = ["FinalEval", "FinalScores", "best_per_arch", "choose", "method_front", "run_finals", "summary_table"]


@dataclass(frozen=True)
class FinalScores:
    """Accuracies after the final fine-tune: ``val``/``test`` decide and are reported
    (on the crossbar model with hardware-accurate evaluation), ``fq_*`` are the same
    model's integer-model accuracies (:mod:`cimdse.quant.exact`)."""

    val: float
    test: float
    fq_val: float
    fq_test: float


#: ``final_eval(policy, targets)``: fine-tune once, then one :class:`FinalScores` per
#: target, an arch (measured on its crossbar model) or None (the integer model)
FinalEval = Callable[[np.ndarray, Sequence[ArchSpec | None]], list[FinalScores]]


def run_finals(
    recorders: Sequence[MethodRecorder],
    top_k: int,
    n_layers: int,
    final_eval: FinalEval,
    targets: Sequence[ArchSpec | None],
    progress: Progress | None = None,
) -> tuple[list[list[Outcome]], dict[PolicyKey, list[FinalScores]]]:
    """Each recorder's top ``top_k`` policies, and their (and W8A8's) final scores per target."""
    tops = [rec.top(top_k) for rec in recorders]
    todo = list(dict.fromkeys([policy_key(np.full((n_layers, 2), 8))] + [o.policy for top in tops for o in top]))
    finals: dict[PolicyKey, list[FinalScores]] = {}
    for i, key in enumerate(todo):
        finals[key] = final_eval(np.asarray(key, dtype=np.int64), targets)
        if progress is not None:
            progress(SearchEvent("finetune", i + 1, len(todo)))
    return tops, finals


def choose(
    candidates: Sequence[Outcome], val_of: Callable[[Outcome], float], reward: RewardFn, ref_val: float
) -> Outcome:
    """The fastest candidate whose final validation accuracy is within the bound
    (ties: the earlier, i.e. higher-reward, one); if none is, the most accurate."""
    ok = [o for o in candidates if reward.within_bound(val_of(o), ref_val)]
    if ok:
        return max(ok, key=lambda o: o.speedup)
    return max(candidates, key=val_of)


def method_front(rec: MethodRecorder) -> tuple[int, float, float]:
    """(points of the method's own front above the reference, its hypervolume, the share
    of those points whose weights are resident on the chip: a front that crosses from
    re-programmed to resident has a latency cliff in it, see benchmarks/RESULTS.md)."""
    outs = list(rec.outcomes.values())
    if not outs:
        return 0, 0.0, float("nan")
    s = np.array([o.speedup for o in outs])
    a = 100.0 * np.array([o.val_acc for o in outs])
    bound = rec.scorer.reward.bound_pp(rec.scorer.ref_acc)
    front = non_dominated(s, a) & (s > 1.0) & (a >= bound)
    if not front.any():
        return 0, 0.0, float("nan")
    policies = np.array([o.policy for o, f in zip(outs, front, strict=True) if f])
    resident = float(np.mean(rec.scorer.compiled.evaluate(policies).fits))
    return int(front.sum()), hypervolume(s, a, bound), resident


def summary_table(
    recorders: Sequence[MethodRecorder],
    tops: Sequence[Sequence[Outcome]],
    scores_of: Callable[[MethodRecorder, PolicyKey], FinalScores],
    reward: RewardFn,
    n_layers: int,
) -> tuple[pd.DataFrame, list[Outcome]]:
    """A row per (arch, method) (see :data:`SUMMARY_COLUMNS`) and each row's chosen outcome."""
    w8a8 = policy_key(np.full((n_layers, 2), 8))
    rows, picks = [], []
    for rec, top in zip(recorders, tops, strict=True):
        if not top:
            continue
        ref = scores_of(rec, w8a8)
        pick = choose(top, lambda o, rec=rec: scores_of(rec, o.policy).val, reward, ref.val)
        final = scores_of(rec, pick.policy)
        front_size, hv, front_resident = method_front(rec)
        rows.append(
            {
                "arch": rec.arch,
                "method": rec.method,
                "evaluations": rec.count,
                "front_size": front_size,
                "hypervolume": hv,
                "front_resident": front_resident,
                "rank": 1 + list(top).index(pick),
                "speedup_vs_w8a8": pick.speedup,
                "resident": bool(rec.scorer.compiled.evaluate(np.asarray(pick.policy)).fits[0]),
                "val_acc": pick.val_acc,
                "final_val_acc": final.val,
                "within_bound": reward.within_bound(final.val, ref.val),
                "test_acc": final.test,
                "acc_drop_pp": 100.0 * (ref.test - final.test),
                "fq_final_val_acc": final.fq_val,
                "fq_test_acc": final.fq_test,
            }
        )
        picks.append(pick)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS), picks


def best_per_arch(
    summary: pd.DataFrame,
    picks: Sequence[Outcome],
    scores_of_arch: Callable[[str, PolicyKey], FinalScores],
    reward: RewardFn,
    layer_names: Sequence[str],
) -> dict[str, dict]:
    """Per arch, the methods' results chosen among the same way (first method wins ties)."""
    best: dict[str, dict] = {}
    w8a8 = policy_key(np.full((len(layer_names), 2), 8))
    for arch in dict.fromkeys(summary["arch"]):
        idx = [i for i, a in enumerate(summary["arch"]) if a == arch]
        ref = scores_of_arch(arch, w8a8)
        pick = choose([picks[i] for i in idx], lambda o, a=arch: scores_of_arch(a, o.policy).val, reward, ref.val)
        row = summary.iloc[next(i for i in idx if picks[i] is pick)]
        final = scores_of_arch(arch, pick.policy)
        best[arch] = {
            "method": row["method"],
            "rank": int(row["rank"]),
            "reward": float(pick.reward),
            "speedup_vs_w8a8": float(pick.speedup),
            "latency_s": float(pick.latency_s),
            "val_acc": float(pick.val_acc),
            "final_val_acc": float(final.val),
            "within_bound": bool(reward.within_bound(final.val, ref.val)),
            "w8a8_final_val_acc": float(ref.val),  # the reference within_bound is judged against
            "test_acc": float(final.test),
            "acc_drop_pp": float(row["acc_drop_pp"]),
            "fq_final_val_acc": float(final.fq_val),
            "fq_test_acc": float(final.fq_test),
            "policy": {name: [w, a] for name, (w, a) in zip(layer_names, pick.policy, strict=True)},
        }
    return best
