"""Mixed-precision search: per-layer (w_bits, a_bits) that trade latency on an arch
against accuracy.

    space.py      allowed widths and constraints (first/last 8-bit, cell multiples)
    reward.py     CIM-AQ's reward, accuracies in pp
    evaluator.py  scoring (cost model + cached accuracy), budget and history per method
    env.py        gymnasium env, one step per layer
    agent.py      stable-baselines3 PPO, seeded, checkpointed
    baselines.py  uniform k/k, random, greedy per-layer sensitivity
    tpe.py        Optuna's TPE sampler over the same choices
    ilp.py        HAWQ-V3-style measured sensitivity + ILP swept over latency budgets
    methods.py    the methods by name, their order and budgets
    fronts.py     Pareto fronts and hypervolume
    finals.py     final fine-tune, the choice on validation, the summary table
    config.py     SearchConfig, progress events, table columns
    core.py       every method on every arch with injected evaluators (search_archs)
    accuracy.py   the real evaluators (fake-quant / hardware-accurate, optional QAT)
    run.py        the real run: dataset, float model, evaluators, files
    compare.py    mean and spread over seeds of several runs' summaries
"""

from cimdse.search.agent import PPOAgent, PPOConfig
from cimdse.search.config import SEARCH_METHODS, SearchConfig, SearchEvent
from cimdse.search.core import SearchResult, search_archs
from cimdse.search.env import BitWidthEnv
from cimdse.search.evaluator import AccuracyEvaluator, CachedEvaluator, MethodRecorder, Outcome, PolicyScorer
from cimdse.search.fronts import hypervolume, pareto_front
from cimdse.search.reward import CimAqReward, RewardFn
from cimdse.search.run import run_search, sweep_point
from cimdse.search.space import SearchSpace

__all__ = [
    "SEARCH_METHODS",
    "AccuracyEvaluator",
    "BitWidthEnv",
    "CachedEvaluator",
    "CimAqReward",
    "MethodRecorder",
    "Outcome",
    "PPOAgent",
    "PPOConfig",
    "PolicyScorer",
    "RewardFn",
    "SearchConfig",
    "SearchEvent",
    "SearchResult",
    "SearchSpace",
    "hypervolume",
    "pareto_front",
    "run_search",
    "search_archs",
    "sweep_point",
]
