"""The methods a search runs, by name: each spends one :class:`MethodRecorder`'s
budget on one arch. Uniform k/k and a user policy are one evaluation each; ``ppo``,
``tpe``, ``ilp``, ``random`` and ``greedy`` spend ``episodes`` distinct evaluations.
The order (:func:`method_order`) puts the cheap, deterministic baselines first so a
shared accuracy cache is warm the same way in every run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cimdse.compiler import CompiledNetwork
from cimdse.search.agent import AgentFile, PPOAgent
from cimdse.search.baselines import greedy_search, random_search, uniform_method
from cimdse.search.config import SEARCH_METHODS, UNIFORM_BITS, SearchConfig
from cimdse.search.dyna import ppo_search
from cimdse.search.episodes import AGENT_OBS_DIM
from cimdse.search.evaluator import MethodRecorder
from cimdse.search.ilp import ilp_search
from cimdse.search.pretrain import pretrained_agent
from cimdse.search.space import SearchSpace
from cimdse.search.tpe import tpe_search

__all__ = ["MethodContext", "method_budget", "method_order", "run_method"]

_RUN_ORDER = ("greedy", "ilp", "random", "tpe", "ppo")


def method_order(config: SearchConfig, with_user: bool) -> list[str]:
    """``user``, the uniform k/k, then the chosen searching methods."""
    uniform = [f"uniform{k}" for k in UNIFORM_BITS]
    return (["user"] if with_user else []) + uniform + [m for m in _RUN_ORDER if m in config.methods]


def method_budget(method: str, config: SearchConfig) -> int:
    return config.episodes if method in SEARCH_METHODS else 1


@dataclass
class MethodContext:
    """What a method may need besides its recorder and space."""

    compiled: CompiledNetwork
    config: SearchConfig
    arch_index: int
    user_policy: np.ndarray | None = None
    agent_from: AgentFile | None = None
    agent_to: Path | None = None


def _ppo(rec: MethodRecorder, space: SearchSpace, ctx: MethodContext) -> None:
    """The Dyna search from ``--agent-from``'s agent, else the shipped pre-trained one
    (unless ``--ppo pretrained=0``), else an untrained one."""
    start = ctx.agent_from if ctx.agent_from is not None else pretrained_agent(ctx.config.ppo, space.n_choices)
    agent = PPOAgent(AGENT_OBS_DIM, space.n_choices, ctx.config.ppo, seed=ctx.config.seed, saved=start)
    ppo_search(rec, space, agent, seed=ctx.config.seed + 7919 * ctx.arch_index)
    if ctx.agent_to is not None:
        agent.save(ctx.agent_to)


_METHODS: dict[str, Callable[[MethodRecorder, SearchSpace, MethodContext], object]] = {
    "user": lambda rec, space, ctx: rec(ctx.user_policy),
    "random": lambda rec, space, ctx: random_search(
        rec, space, np.random.default_rng([ctx.config.seed, ctx.arch_index])
    ),
    "greedy": lambda rec, space, ctx: greedy_search(rec, space),
    "tpe": lambda rec, space, ctx: tpe_search(rec, space, seed=ctx.config.seed + 7919 * ctx.arch_index),
    "ilp": lambda rec, space, ctx: ilp_search(rec, space),
    "ppo": _ppo,
}


def run_method(method: str, rec: MethodRecorder, space: SearchSpace, ctx: MethodContext) -> None:
    """Run ``method`` until ``rec``'s budget is spent (or the method has nothing new)."""
    if method.startswith("uniform"):
        uniform_method(rec, space, int(method.removeprefix("uniform")))
    else:
        _METHODS[method](rec, space, ctx)
