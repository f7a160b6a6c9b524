"""Mixed-precision search: per-layer (w_bits, a_bits) that trade latency on an arch
against accuracy.

    space.py      allowed widths and constraints (first/last 8-bit, cell multiples)
    reward.py     CIM-AQ's reward, accuracies in pp
    evaluator.py  scoring (cost model + cached accuracy), budget and history per method
    env.py        gymnasium env, one step per layer; owns the observation (the ppo method
                  runs it batched through episodes.py; the env is for agents of one's own)
    agent.py      sb3-contrib's MaskablePPO on our batched episodes, saved as tensors + JSON settings
    episodes.py   batched episodes: observations, masks of legal widths
    surrogate.py  the learned accuracy surrogate (HAWQ-style, fitted by NNLS, bootstrap spread)
    dyna.py       the ppo method: the agent trains on the surrogate, real evaluations by hypervolume gain
    pretrain.py   the agent it starts from: pre-trained over the zoo and presets on surrogates drawn
                  from a prior (shipped as data/agent_pretrained.pt; `cimdse pretrain-agent`)
    history.py    history.csv as the search goes, and resuming from it
    baselines.py  uniform k/k, random, greedy per-layer sensitivity
    tpe.py        Optuna's TPE sampler over the same choices
    ilp.py        HAWQ-V3-style measured sensitivity + ILP swept over latency budgets
    methods.py    the methods by name, their order and budgets
    fronts.py     Pareto fronts and hypervolume
    finals.py     final fine-tune, the choice on validation, the summary table
    config.py     SearchConfig, progress events, table columns
    core.py       every method on every arch with injected evaluators (search_archs)
    accuracy.py   the real evaluators (integer model / crossbar model, optional QAT)
    run.py        the real run: dataset, float model, evaluators, files
    compare.py    mean and spread over seeds of several runs' summaries
"""

from importlib import import_module

#: public name -> its module; imported on first use, so light users (``cimdse report``
#: reading fronts) do not pay for torch
_API = {
    "SEARCH_METHODS": "config", "SearchConfig": "config", "SearchEvent": "config",
    "PPOAgent": "agent", "PPOConfig": "config", "BitWidthEnv": "env",
    "AccuracyEvaluator": "evaluator", "CachedEvaluator": "evaluator", "MethodRecorder": "evaluator",
    "Outcome": "evaluator", "PolicyScorer": "evaluator", "SearchResult": "core", "search_archs": "core",
    "hypervolume": "fronts", "pareto_front": "fronts", "CimAqReward": "reward", "RewardFn": "reward",
    "run_search": "run", "sweep_point": "run", "sweep_options": "config", "SearchSpace": "space",
}  # fmt: skip


def __getattr__(name: str) -> object:
    if name in _API:
        return getattr(import_module(f"cimdse.search.{_API[name]}"), name)
    raise AttributeError(f"module 'cimdse.search' has no attribute {name!r}")


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
    "sweep_options",
    "sweep_point",
]
