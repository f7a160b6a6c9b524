"""Scoring policies: latency from the compiled cost model, accuracy from an injected
evaluator (cached by policy), reward; and per-method bookkeeping of the budget.

The accuracy evaluator is anything with ``__call__(policy [L, 2]) -> float`` (a val
accuracy in [0, 1]); :mod:`cimdse.search.accuracy` has the real ones (fake-quant
with optional fine-tune, or hardware-accurate). Keeping it injected keeps the env,
the agent and the baselines independent of training.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from cimdse.compiler import CompiledNetwork
from cimdse.policy import PolicyKey, policy_key, policy_text
from cimdse.search.reward import RewardFn

__all__ = [
    "AccuracyEvaluator",
    "CachedEvaluator",
    "MethodRecorder",
    "Outcome",
    "PolicyKey",
    "PolicyScorer",
    "policy_key",
    "policy_text",
]


class AccuracyEvaluator(Protocol):
    """Validation accuracy (fraction) of the network quantized at ``policy`` [L, 2]."""

    def __call__(self, policy: np.ndarray) -> float: ...


class CachedEvaluator:
    """Wraps an evaluator so a policy seen before is never evaluated again.

    One instance may be shared by all methods and archs when the accuracy does not
    depend on the arch (fake-quant), so a policy found by two methods costs once.
    """

    def __init__(self, evaluator: AccuracyEvaluator) -> None:
        self.evaluator = evaluator
        self.cache: dict[PolicyKey, float] = {}
        self.hits = 0
        self.misses = 0
        self.seconds = 0.0  # spent in the wrapped evaluator (wall)
        self.cpu_seconds = 0.0  # and this process's CPU time there

    def preload(self, known: dict[PolicyKey, float]) -> None:
        """Accuracies measured before (a resumed search's history); not counted as misses."""
        for key, acc in known.items():
            self.cache.setdefault(key, float(acc))

    def __contains__(self, policy: np.ndarray) -> bool:
        return policy_key(policy) in self.cache

    def __call__(self, policy: np.ndarray) -> float:
        key = policy_key(policy)
        if key in self.cache:
            self.hits += 1
        else:
            self.misses += 1
            t0, c0 = time.perf_counter(), time.process_time()
            self.cache[key] = float(self.evaluator(np.asarray(policy)))
            self.seconds += time.perf_counter() - t0
            self.cpu_seconds += time.process_time() - c0
        return self.cache[key]


@dataclass(frozen=True)
class Outcome:
    """A scored policy; ``speedup`` is over uniform W8A8 on the same arch."""

    policy: PolicyKey
    latency_s: float
    speedup: float
    val_acc: float
    reward: float
    within_bound: bool


class PolicyScorer:
    """Latency, speedup, accuracy and reward of policies on one compiled arch."""

    def __init__(self, compiled: CompiledNetwork, accuracy: CachedEvaluator, reward: RewardFn, ref_acc: float) -> None:
        self.compiled = compiled
        self.accuracy = accuracy
        self.reward = reward
        self.ref_acc = ref_acc

    def latency(self, policies: np.ndarray) -> np.ndarray:
        """Latency [P] of policies [P, L, 2] (or [L, 2]); cheap, no accuracy."""
        return self.compiled.evaluate(policies).latency_s

    def speedup(self, policies: np.ndarray) -> np.ndarray:
        return self.compiled.w8a8_latency_s() / self.latency(policies)

    def __call__(self, policy: np.ndarray) -> Outcome:
        latency = float(self.latency(policy)[0])
        speedup = self.compiled.w8a8_latency_s() / latency
        acc = self.accuracy(policy)
        return Outcome(
            policy_key(policy),
            latency,
            speedup,
            acc,
            float(self.reward(speedup, acc, self.ref_acc)),
            self.reward.within_bound(acc, self.ref_acc),
        )


Progress = Callable[[str, str, Outcome], None]  # (arch, method, outcome), once per new policy
RowSink = Callable[[dict], None]  # a history row, as soon as it is made


@dataclass
class MethodRecorder:
    """One method's evaluations on one arch: counts unique policies against the budget
    and keeps a history row for each. Repeats are scored (from the cache) but neither
    counted nor recorded again."""

    scorer: PolicyScorer
    arch: str
    method: str
    budget: int
    progress: Progress | None = None
    sink: RowSink | None = None
    outcomes: dict[PolicyKey, Outcome] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.outcomes)

    @property
    def exhausted(self) -> bool:
        return self.count >= self.budget

    def seen(self, policy: np.ndarray) -> bool:
        return policy_key(policy) in self.outcomes

    def __call__(self, policy: np.ndarray, episode: int | None = None) -> Outcome:
        key = policy_key(policy)
        if key in self.outcomes:
            return self.outcomes[key]
        out = self.scorer(policy)
        self.outcomes[key] = out
        row = {
            "episode": self.count - 1 if episode is None else episode,
            "method": self.method,
            "arch": self.arch,
            "policy": policy_text(key),
            "latency_s": out.latency_s,
            "speedup_vs_w8a8": out.speedup,
            "val_acc": out.val_acc,
            "reward": out.reward,
        }
        self.rows.append(row)
        if self.sink is not None:
            self.sink(row)
        if self.progress is not None:
            self.progress(self.arch, self.method, out)
        return out

    def best(self) -> Outcome | None:
        """Highest reward; ties go to the first found."""
        top = self.top(1)
        return top[0] if top else None

    def top(self, k: int) -> list[Outcome]:
        """The ``k`` highest-reward policies, best first; ties go to the first found."""
        ranked = sorted(self.outcomes.values(), key=lambda o: -o.reward)  # stable: first found first
        return ranked[:k]
