"""The ``ppo`` method: the agent learns against a learned accuracy surrogate between
real evaluations (model-based RL in the Dyna style, Sutton 1991), and the real
evaluations go where they should grow the front.

1. **Start**: the untrained agent's samples (its wide prior keeps them mostly near
   W8A8) are evaluated until ``initial_evals`` distinct policies are in.
2. **Rounds**, until the budget is spent:

   a. fit the :class:`~cimdse.search.surrogate.AccuracySurrogate` on every policy
      this method has evaluated;
   b. ``updates_per_round`` PPO updates of the agent on batches of surrogate
      episodes: latency from the cost model (exact, for the whole batch in one
      call), accuracy from the surrogate, taken optimistically as in c (so the agent
      learns to propose what may turn out well, and the evaluations tell). Each episode draws a *condition*
      ``c ~ U(0, 1)``, seen in the observation, that sets an accuracy floor
      ``bound + c x max_acc_drop``; its return is ``log(speedup)`` at or above the
      floor and ``-1 - shortfall / max_acc_drop`` below it. One agent so learns the
      whole front, from "as fast as possible within the bound" (c = 0) to "as
      accurate as W8A8" (c = 1), instead of one point (a front-aware signal);
   c. the agent proposes ``candidates`` policies over a spread of conditions; the
      ``evals_per_round`` not yet evaluated ones with the largest hypervolume gain
      over this method's front so far are evaluated, their accuracy taken
      optimistically (surrogate mean + ``kappa`` x spread, but not above W8A8's) so
      the unsure ones get tried; chosen one after another, each assumed at its mean
      for the next.
      If no proposal gains anything, the most uncertain one is evaluated.
   d. where the accuracy is *coarse* (one validation sample, :func:`accuracy_step`,
      is at least ``_COARSE`` of the bound, e.g. 0.28 pp of 0.5 on digits' 360
      samples), the surrogate cannot resolve the front, and the candidates of c also
      hold ``_NEIGHBOURS`` neighbours of the evaluated front within the bound (one or
      two widths moved one step), chosen among by the same gain: the local
      exploitation TPE does, which finds the policies a sample's noise puts on the
      front (benchmarks/RESULTS.md, "Search fronts, fourth round"). Elsewhere
      (MNIST-1D's 2,000 samples: 0.05 pp of 0.3) the rounds are c alone.

Everything is seeded (the agent, the surrogate's bootstrap, the conditions).
"""

from __future__ import annotations

import numpy as np

from cimdse.policy import policy_key
from cimdse.search.agent import PPOAgent, SearchStats
from cimdse.search.episodes import EpisodeBatch
from cimdse.search.evaluator import MethodRecorder
from cimdse.search.fronts import hypervolume, non_dominated
from cimdse.search.space import SearchSpace
from cimdse.search.surrogate import AccuracySurrogate, accuracy_step

__all__ = ["neighbours", "ppo_search", "surrogate_return"]

_MAX_STALE = 20  # rounds in a row without a new policy: the agent has converged
_COARSE = 0.25  # an accuracy step at least this share of the bound (max_acc_drop) is coarse
_NEIGHBOURS = 1024  # neighbours of the front among the candidates per round, where the accuracy is coarse


def neighbours(space: SearchSpace, parents: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` legal neighbours [n, L, 2] of ``parents`` [P, L, 2]: a random parent after one
    or two moves, each of a random (layer, weights|activations) width one allowed step up
    or down (a step off the range leaves it as it is; the same width may move twice)."""
    out = np.empty((n, space.n_layers, 2), dtype=np.int64)
    for j in range(n):
        p = np.array(parents[int(rng.integers(len(parents)))], dtype=np.int64)
        for _ in range(1 + int(rng.random() < 0.5)):
            layer, dim = int(rng.integers(space.n_layers)), int(rng.integers(2))
            allowed = space.choices(layer)[dim]
            i = allowed.index(int(p[layer, dim])) + (1 if rng.random() < 0.5 else -1)
            if 0 <= i < len(allowed):
                p[layer, dim] = allowed[i]
        out[j] = p
    return out


def surrogate_return(speedup: np.ndarray, acc_pp: np.ndarray, cond: np.ndarray, bound_pp: float, span: float):
    """An episode's return for the agent (see the module doc, 2b)."""
    gap = np.asarray(acc_pp) - (bound_pp + np.asarray(cond) * span)
    return np.where(gap >= 0, np.log(np.maximum(speedup, 1e-3)), -1.0 + np.maximum(gap / span, -5.0))


def _optimistic(mean: np.ndarray, spread: np.ndarray, kappa: float, ref: float) -> np.ndarray:
    """Mean + kappa x spread, but not above W8A8's accuracy: a policy may turn out within
    the bound; more accurate than W8A8 would only be an evaluation's noise."""
    return np.minimum(mean + kappa * spread, np.maximum(mean, ref))


def _select(
    speedup: np.ndarray, opt_pp: np.ndarray, mean_pp: np.ndarray, spread: np.ndarray,
    front: tuple[np.ndarray, np.ndarray], bound_pp: float, k: int,
) -> list[int]:  # fmt: skip
    """Indices of up to ``k`` candidates, by hypervolume gain over ``front`` (see 2c)."""
    fs, fa = front
    chosen: list[int] = []
    for _ in range(k):
        base = hypervolume(fs, fa, bound_pp)
        gains = np.array(
            [
                -1.0 if i in chosen else hypervolume(np.append(fs, s), np.append(fa, a), bound_pp) - base
                for i, (s, a) in enumerate(zip(speedup, opt_pp, strict=True))
            ]
        )
        if gains.size == 0:
            break
        best = int(np.argmax(gains))
        if gains[best] <= 1e-12:  # nothing promising: the least known
            free = [i for i in range(len(speedup)) if i not in chosen]
            if not free:
                break
            best = max(free, key=lambda i: spread[i])
        chosen.append(best)
        fs, fa = np.append(fs, speedup[best]), np.append(fa, mean_pp[best])
        keep = non_dominated(fs, fa)
        fs, fa = fs[keep], fa[keep]
    return chosen


def ppo_search(recorder: MethodRecorder, space: SearchSpace, agent: PPOAgent, seed: int = 0) -> SearchStats:
    """Spend ``recorder``'s budget as the module doc says; returns the agent's statistics."""
    cfg = agent.config
    scorer = recorder.scorer
    episodes = EpisodeBatch(scorer.compiled, space)
    rng = np.random.default_rng([seed, 1])
    budget = min(recorder.budget, space.size())
    n_layers = space.n_layers
    ref = scorer.ref_acc
    bound = scorer.reward.bound_pp(ref)
    span = max(float(scorer.reward.max_acc_drop), 0.05)
    stats = SearchStats()

    n0 = min(cfg.initial_evals or max(8, 2 * n_layers), max(1, budget // 4))
    for _ in range(50):
        if recorder.count >= n0:
            break
        for policy in agent.rollout(episodes, rng.random(cfg.candidates)).policies:
            if recorder.count >= n0:
                break
            if not recorder.seen(policy):
                recorder(policy)

    surrogate = AccuracySurrogate(n_layers, ref, space.max_bits, space.min_bits, seed=seed)
    per_round = cfg.evals_per_round or max(1, budget // 40)
    stale = 0
    while recorder.count < budget and stale < _MAX_STALE:
        outs = list(recorder.outcomes.values())
        accs = np.array([o.val_acc for o in outs])
        step = accuracy_step(accs)
        coarse = 100 * step >= _COARSE * span
        surrogate.fit(np.array([o.policy for o in outs]), accs)
        for _ in range(cfg.updates_per_round):
            cond = rng.random(cfg.episodes_per_update)
            ro = agent.rollout(episodes, cond)
            acc = _optimistic(*surrogate.predict(ro.policies), cfg.kappa, ref)
            agent.update(ro, surrogate_return(scorer.speedup(ro.policies), 100 * acc, cond, bound, span))
            stats.updates += 1
        cond = (np.arange(cfg.candidates) + rng.random()) / cfg.candidates
        proposals = agent.rollout(episodes, cond).policies
        fresh: dict = {}
        for p in proposals:
            key = policy_key(p)
            if key not in fresh and not recorder.seen(p):
                fresh[key] = p
        fs = np.array([o.speedup for o in outs])
        fa = 100 * accs
        keep = non_dominated(fs, fa)
        if coarse:
            parents = keep & (fa >= bound) if (keep & (fa >= bound)).any() else keep
            for p in neighbours(space, np.array([outs[i].policy for i in np.flatnonzero(parents)]), _NEIGHBOURS, rng):
                key = policy_key(p)
                if key not in fresh and not recorder.seen(p):
                    fresh[key] = p
        stats.rounds += 1
        if not fresh:
            stale += 1
            continue
        stale = 0
        cands = np.array(list(fresh.values()))
        speed = scorer.speedup(cands)
        mean, spread = surrogate.predict(cands)
        picks = _select(
            speed, 100 * _optimistic(mean, spread, cfg.kappa, ref), 100 * mean, spread, (fs[keep], fa[keep]), bound,
            min(per_round, budget - recorder.count),
        )  # fmt: skip
        for i in picks:
            recorder(cands[i])
    stats.episodes = agent.episodes
    return stats
