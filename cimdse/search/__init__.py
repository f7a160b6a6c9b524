"""Mixed-precision search: per-layer (w_bits, a_bits) that trade latency on an arch
against accuracy.

    space.py      allowed widths and constraints (first/last 8-bit, cell multiples)
    reward.py     CIM-AQ's reward, accuracies in pp
    evaluator.py  scoring (cost model + cached accuracy), budget and history per method
    env.py        gymnasium env, one step per layer
    agent.py      stable-baselines3 PPO, seeded, checkpointed
    baselines.py  uniform k/k, random, greedy per-layer sensitivity
    accuracy.py   the real evaluators (fake-quant / hardware-accurate, optional QAT)
    run.py        a whole search over archs and methods, its CSVs and YAML
"""

from cimdse.search.agent import PPOAgent, PPOConfig
from cimdse.search.env import BitWidthEnv
from cimdse.search.evaluator import AccuracyEvaluator, CachedEvaluator, MethodRecorder, Outcome, PolicyScorer
from cimdse.search.reward import CimAqReward, RewardFn
from cimdse.search.run import sweep_point
from cimdse.search.space import SearchSpace

__all__ = [
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
    "SearchSpace",
    "sweep_point",
]
