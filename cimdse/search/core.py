"""A whole search with injected accuracy evaluators: every method on every arch at
the same budget, then the final fine-tune and choice (:mod:`cimdse.search.finals`).

:func:`search_archs` runs anywhere (tests give it stand-in evaluators);
:func:`cimdse.search.run.run_search` builds the real ones. With fake-quant accuracy
one cached evaluator serves every arch (a policy found twice, on any arch, costs
once); with hardware-accurate accuracy each arch has its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cimdse.arch import ArchSpec
from cimdse.compiler import CompiledNetwork, Network, compile_network
from cimdse.search.agent import AgentFile
from cimdse.search.config import HISTORY_COLUMNS, Progress, SearchConfig, SearchEvent
from cimdse.search.evaluator import (
    AccuracyEvaluator,
    CachedEvaluator,
    MethodRecorder,
    Outcome,
    PolicyKey,
    PolicyScorer,
    RowSink,
)
from cimdse.search.finals import FinalEval, FinalScores, best_per_arch, run_finals, summary_table
from cimdse.search.fronts import pareto_front
from cimdse.search.methods import MethodContext, method_budget, method_order, run_method
from cimdse.search.reward import RewardFn, make_reward
from cimdse.search.space import SearchSpace

__all__ = ["SearchResult", "search_archs", "unique_labels"]


@dataclass
class SearchResult:
    history: pd.DataFrame
    pareto: pd.DataFrame
    summary: pd.DataFrame
    best: dict[str, dict]  # arch -> method, policy (by layer), speedup, accuracies
    ref_val_acc: float  # search-time W8A8 validation accuracy (of the first arch)
    timings: dict[str, float]  # wall seconds per phase ("<phase>_s")
    resumed: int = 0  # evaluations found in the history of an interrupted run
    cpu_timings: dict[str, float] = field(default_factory=dict)  # this process's CPU seconds, same keys


def unique_labels(archs: Sequence[ArchSpec]) -> list[str]:
    """Arch names, with ``-2``, ``-3`` ... added to repeats."""
    labels: list[str] = []
    for spec in archs:
        label, n = spec.name, 1
        while label in labels:
            n += 1
            label = f"{spec.name}-{n}"
        labels.append(label)
    return labels


def _space(n_layers: int, spec: ArchSpec, config: SearchConfig) -> SearchSpace:
    return SearchSpace(
        n_layers, spec.crossbar.cell_bits, config.min_bits, config.max_bits,
        config.first_last_8bit, config.weight_cell_multiple,
    )  # fmt: skip


class _Counter:
    """Counts new evaluations for the progress bar and tracks the best speedup within the bound."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.progress, self.done = total, progress, 0
        self.best: dict[str, float] = {}

    def __call__(self, arch: str, method: str, out: Outcome) -> None:
        self.done += 1
        if out.within_bound:
            self.best[arch] = max(self.best.get(arch, 0.0), out.speedup)
        if self.progress is not None:
            self.progress(SearchEvent("search", self.done, self.total, arch, method, self.best.get(arch)))


def _search_arch(
    label: str,
    compiled: CompiledNetwork,
    acc: CachedEvaluator,
    reward: RewardFn,
    ctx: MethodContext,
    methods: Sequence[str],
    counter: _Counter,
    timings: dict[str, float],
    cpu: dict[str, float],
    sink: RowSink | None = None,
) -> tuple[list[MethodRecorder], float]:
    """Every method on one arch; returns their recorders and the W8A8 reference accuracy."""
    ref_acc = acc(np.full((compiled.n_layers, 2), 8))
    scorer = PolicyScorer(compiled, acc, reward, ref_acc)
    space = _space(compiled.n_layers, compiled.arch, ctx.config)
    recorders = []
    for method in methods:
        rec = MethodRecorder(scorer, label, method, method_budget(method, ctx.config), counter, sink)
        t0, c0, e0, ec0 = time.perf_counter(), time.process_time(), acc.seconds, acc.cpu_seconds
        run_method(method, rec, space, ctx)
        key = "ppo_s" if method == "ppo" else "baselines_s"
        timings[key] += time.perf_counter() - t0 - (acc.seconds - e0)  # the method's own time
        cpu[key] += time.process_time() - c0 - (acc.cpu_seconds - ec0)
        recorders.append(rec)
    return recorders, ref_acc


def search_archs(
    network: Network,
    archs: Sequence[ArchSpec],
    config: SearchConfig,
    make_accuracy: Callable[[ArchSpec], AccuracyEvaluator],
    final_eval: FinalEval,
    *,
    arch_dependent: bool = False,
    user_policy: np.ndarray | None = None,
    agent_from: Callable[[str], AgentFile | None] | None = None,
    agent_to: Callable[[str], Path] | None = None,
    progress: Progress | None = None,
    known: Mapping[str, Mapping[PolicyKey, float]] | None = None,
    on_row: RowSink | None = None,
) -> SearchResult:
    """Every method on every arch, then the final fine-tune of each method's top
    ``config.final_top_k`` policies and the choice among them.

    :param make_accuracy: the accuracy evaluator for an arch; called once when
        ``arch_dependent`` is False (its cache is then shared by all archs)
    :param final_eval: fine-tunes a policy and scores it per target (see
        :data:`~cimdse.search.finals.FinalEval`); targets are the archs when
        ``arch_dependent``, else ``[None]`` (fake quantization)
    :param user_policy: an extra policy [L, 2] reported as method ``user``
    :param agent_from: the agent checkpoint to continue from, per arch label (or None)
    :param agent_to: where to save each arch's agent after its search
    :param known: accuracies measured before, per arch label and policy (a resumed
        search's history, :mod:`cimdse.search.history`): found in the cache, not evaluated
    :param on_row: called with each history row as it is made (the history log)
    """
    t_start, c_start = time.perf_counter(), time.process_time()
    labels = unique_labels(archs)
    n = len(network.layers)
    reward = make_reward(config.reward, config.max_acc_drop)
    methods = method_order(config, user_policy is not None)
    counter = _Counter(len(labels) * sum(method_budget(m, config) for m in methods), progress)
    timings = {"evaluations_s": 0.0, "ppo_s": 0.0, "baselines_s": 0.0}
    cpu = dict.fromkeys(timings, 0.0)
    known = known or {}
    shared = None if arch_dependent else CachedEvaluator(make_accuracy(archs[0]))
    if shared is not None:
        for accs in known.values():
            shared.preload(dict(accs))
    evaluators: dict[str, CachedEvaluator] = {}
    recorders: list[MethodRecorder] = []
    ref_acc = math.nan
    for a_idx, (label, spec) in enumerate(zip(labels, archs, strict=True)):
        if shared is None:
            evaluators[label] = CachedEvaluator(make_accuracy(spec))
            evaluators[label].preload(dict(known.get(label, {})))
        else:
            evaluators[label] = shared
        ctx = MethodContext(
            compile_network(network, spec), config, a_idx, user_policy,
            agent_from(label) if agent_from is not None else None,
            agent_to(label) if agent_to is not None else None,
        )  # fmt: skip
        recs, acc = _search_arch(
            label, ctx.compiled, evaluators[label], reward, ctx, methods, counter, timings, cpu, on_row
        )  # fmt: skip
        recorders += recs
        ref_acc = acc if a_idx == 0 else ref_acc
    distinct = {id(e): e for e in evaluators.values()}.values()
    timings["evaluations_s"] = sum(e.seconds for e in distinct)
    cpu["evaluations_s"] = sum(e.cpu_seconds for e in distinct)

    t0, c0 = time.perf_counter(), time.process_time()
    targets: list[ArchSpec | None] = list(archs) if arch_dependent else [None]
    tops, finals = run_finals(recorders, config.final_top_k, n, final_eval, targets, progress)
    timings["final_finetune_s"] = time.perf_counter() - t0
    cpu["final_finetune_s"] = time.process_time() - c0
    index = {label: (i if arch_dependent else 0) for i, label in enumerate(labels)}

    def scores_of_arch(arch: str, key) -> FinalScores:
        return finals[key][index[arch]]

    summary, picks = summary_table(recorders, tops, lambda rec, key: scores_of_arch(rec.arch, key), reward, n)
    best = best_per_arch(summary, picks, scores_of_arch, reward, network.names)
    history = pd.DataFrame([r for rec in recorders for r in rec.rows], columns=HISTORY_COLUMNS)
    timings["total_s"] = time.perf_counter() - t_start
    cpu["total_s"] = time.process_time() - c_start
    return SearchResult(history, pareto_front(history), summary, best, ref_acc, timings, cpu_timings=cpu)
