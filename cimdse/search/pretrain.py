"""Transfer: one agent pre-trained over the zoo's small networks and the presets against
accuracy surrogates drawn from a prior, so that the ``ppo`` method starts on a new
network from an agent that already knows what a front of bit widths tends to look like
(which layers buy latency, where residency lies, that activations of the first layer
are often the sensitive ones) instead of from nothing; the Dyna loop
(:mod:`cimdse.search.dyna`) then fine-tunes it on the user's network.

**Tasks**: every (network, preset) of :data:`PRETRAIN_NETS` x :data:`PRETRAIN_ARCHS`,
compiled from layer shapes alone (no dataset, no weights). Each PPO update draws, under
the seed: a task; its constraints (first and last layer pinned at 8/8 with probability
1/4, weights a multiple of the cell with 1/4); a bound ``max_acc_drop`` from
(0.3, 0.5, 1.0) pp; and 16 surrogates ("truths") from the prior below. Its 128 episodes
are dyna.py's (2b): a condition ``c ~ U(0, 1)`` per episode, latency from the real cost
model, :func:`~cimdse.search.dyna.surrogate_return`; the accuracy of each policy is its
loss's :data:`PRETRAIN_OPTIMISM` quantile over the 16 truths, taken optimistically
(the 25 % least loss), as dyna.py's agent trains on the surrogate's optimistic accuracy.

**Prior** over :class:`~cimdse.search.surrogate.AccuracySurrogate`'s model
(``acc = ref * exp(-sum alpha[l, d] * f_g(bits))``, ``alpha`` the loss at 2 bits)::

    ref ~ U(0.90, 0.995)
    growth g_d (weights, activations), each from (2, 3, 4) with probabilities (0.15, 0.25, 0.6)
    m ~ U(-2.4, -1.8)                                   the network's level, log10
    per (layer, dim): insensitive with probability 0.35: log10 alpha ~ U(-4, -3)
                      else                              log10 alpha ~ N(m, 0.4)
    first layer's activations (the input), with probability 1/2: alpha x 10 ** U(0.5, 1.5)

Source: the surrogate fitted on the policies within 3 pp of W8A8 of two default
``cimdse search`` runs (all five methods, seed 0, demo). digits/lenet (1,012 policies):
growths (4, 3), alpha 0.0058..0.0147, log10 mean -2.03, spread 0.12, none below 1e-3.
MNIST-1D/cnn1d (718 policies): growths (4, 4), the first layer's activations 0.24, the
other alphas 0..0.021, 8 of 18 below 1e-3, log10 mean -2.81 (floored at 1e-4), spread
0.99. The levels bracket both; the insensitive share and the input's boost are cnn1d's;
the growths favour the 4 both fits chose. (Over every policy, collapsed ones included,
the fits give the same picture: lenet 0.007..0.020, cnn1d's input 0.59.)

The agent cannot see ``alpha`` (its observation is the layer's and the arch's features,
:mod:`cimdse.search.episodes`), so it learns what does well over the prior, per layer
kind, arch and condition: a starting point, not an answer. Trained on each truth's
exact accuracy instead (one truth per update), it learned to hedge: one safe policy
(7-bit weights, 5-bit activations everywhere, ~1.3x) at every condition, and its
searches fell far below the untrained agent's (benchmarks/RESULTS.md, "Search fronts,
fifth round"). The optimistic quantile, flat initial logits and a larger entropy bonus
(:data:`PRETRAIN_PPO`) keep it a broad proposer.

Deterministic under the seed (tasks, prior draws, the agent's own generators): a
rebuild gives the same file, byte for byte. ~20 CPU s on one core, torch 1 thread. The
shipped agent (``cimdse/search/data/agent_pretrained.pt``, :func:`pretrained_agent`)
is rebuilt with ``cimdse pretrain-agent --out cimdse/search/data/agent_pretrained.pt``
(the defaults here: :data:`PRETRAIN_UPDATES` updates, seed 0).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from cimdse.search.agent import AgentFile, PPOAgent, read_agent
from cimdse.search.config import PPOConfig
from cimdse.search.dyna import surrogate_return
from cimdse.search.episodes import AGENT_OBS_DIM, EpisodeBatch
from cimdse.search.space import SearchSpace
from cimdse.search.surrogate import GROWTHS, AccuracySurrogate

__all__ = [
    "PRETRAIN_ARCHS",
    "PRETRAIN_NETS",
    "PRETRAIN_OPTIMISM",
    "PRETRAIN_PPO",
    "PRETRAIN_UPDATES",
    "PriorDraw",
    "draw_prior",
    "pretrain_agent",
    "pretrained_agent",
    "pretrained_path",
]

#: the zoo's small networks whose layer shapes the compiler gives without a dataset
#: (the lstm is left out: its weights cannot be quantized; the ImageNet ones are large)
PRETRAIN_NETS = ("mlp", "lenet", "cnn1d", "vit", "resnet20")
PRETRAIN_ARCHS = ("demo", "cim-aq", "isaac", "puma")
PRETRAIN_UPDATES = 400
PRETRAIN_SEED = 0
#: the pre-training's own PPO settings (the search then runs on the user's): flat initial
#: logits (no wide prior) and a larger entropy bonus keep the agent a broad proposer
PRETRAIN_PPO = {"ent_coef": 0.05, "wide_prior": 0.0}
#: the agent trains on each policy's accuracy at this quantile over the truths drawn
#: (optimistic, as dyna.py's agent trains on the surrogate's optimistic accuracy)
PRETRAIN_OPTIMISM = 0.75
_GROWTH_P = (0.15, 0.25, 0.6)  # of GROWTHS (2, 3, 4)
_DROPS = (0.3, 0.5, 1.0)  # bounds, pp
_FILE = "agent_pretrained.pt"
_TRUTHS = 16  # surrogates drawn per update, over which the optimistic quantile is taken


@dataclass(frozen=True)
class PriorDraw:
    """One drawn accuracy truth for a network of ``len(alpha) // 2`` layers."""

    ref: float
    growth: tuple[float, float]
    alpha: np.ndarray  # [2L], layer-major, weights then activations


def draw_prior(n_layers: int, rng: np.random.Generator) -> PriorDraw:
    """A surrogate drawn from the prior of the module doc."""
    ref = float(rng.uniform(0.90, 0.995))
    growth = (float(rng.choice(GROWTHS, p=_GROWTH_P)), float(rng.choice(GROWTHS, p=_GROWTH_P)))
    level = rng.uniform(-2.4, -1.8)
    k = 2 * n_layers
    log_alpha = np.where(rng.random(k) < 0.35, rng.uniform(-4.0, -3.0, k), rng.normal(level, 0.4, k))
    if rng.random() < 0.5:
        log_alpha[1] += rng.uniform(0.5, 1.5)
    return PriorDraw(ref, growth, 10.0**log_alpha)


@dataclass
class _Task:
    name: str
    compiled: object  # CompiledNetwork
    w8a8: float


def _tasks(nets: Sequence[str], archs: Sequence[str]) -> list[_Task]:
    from cimdse import arch
    from cimdse.compiler import compile_network, trace_spec

    out = []
    for net_name in nets:
        network = trace_spec(net_name)
        for a in archs:
            compiled = compile_network(network, arch.load(a))
            out.append(_Task(f"{net_name}@{a}", compiled, float(compiled.w8a8_latency_s())))
    return out


def pretrain_agent(
    updates: int = PRETRAIN_UPDATES,
    seed: int = PRETRAIN_SEED,
    config: PPOConfig | None = None,
    nets: Sequence[str] = PRETRAIN_NETS,
    archs: Sequence[str] = PRETRAIN_ARCHS,
    min_bits: int = 2,
    max_bits: int = 8,
    optimism: float = PRETRAIN_OPTIMISM,
    progress: Callable[[int, int], None] | None = None,
) -> PPOAgent:
    """An agent after ``updates`` PPO updates on the tasks of the module doc;
    ``progress(done, updates)`` after each. ``config``: default :data:`PRETRAIN_PPO`."""
    cfg = config or PPOConfig(**PRETRAIN_PPO)  # type: ignore[arg-type]
    tasks = _tasks(nets, archs)
    rng = np.random.default_rng([seed, 2])
    agent = PPOAgent(AGENT_OBS_DIM, max_bits - min_bits + 1, cfg, seed=seed)
    for done in range(updates):
        task = tasks[int(rng.integers(len(tasks)))]
        compiled = task.compiled
        space = SearchSpace(
            compiled.n_layers, compiled.arch.crossbar.cell_bits, min_bits, max_bits,
            bool(rng.random() < 0.25), bool(rng.random() < 0.25) and compiled.arch.crossbar.cell_bits <= max_bits,
        )  # fmt: skip
        drop = float(rng.choice(_DROPS))
        cond = rng.random(cfg.episodes_per_update)
        ro = agent.rollout(EpisodeBatch(compiled, space), cond)
        loss = np.empty((_TRUTHS, len(cond)))  # pp below W8A8, per drawn truth
        for t in range(_TRUTHS):
            truth = draw_prior(compiled.n_layers, rng)
            model = AccuracySurrogate(compiled.n_layers, 1.0, max_bits, min_bits)
            model.growth, model.alpha = truth.growth, truth.alpha
            loss[t] = 100 * (1.0 - model.predict(ro.policies)[0])
        ref = 100 * rng.uniform(0.90, 0.995)
        acc = ref - np.quantile(loss, 1.0 - optimism, axis=0) * ref / 100
        speedup = task.w8a8 / compiled.evaluate(ro.policies).latency_s
        agent.update(ro, surrogate_return(speedup, acc, cond, ref - drop, drop))
        if progress is not None:
            progress(done + 1, updates)
    return agent


def pretrained_path() -> Path:
    """Where the shipped pre-trained agent lies (inside the package)."""
    return Path(str(resources.files("cimdse.search").joinpath("data", _FILE)))


@functools.cache
def _shipped() -> AgentFile | None:
    path = pretrained_path()
    return read_agent(path) if path.is_file() else None


def pretrained_agent(config: PPOConfig, n_choices: int) -> AgentFile | None:
    """The shipped agent to start the ``ppo`` method from, with ``config`` as its
    settings (the user's ``--ppo``, not the pre-training's), or None when it does not
    apply: ``config.pretrained`` off, no file shipped, another ``net_arch`` or another
    number of widths (a ``--min-bits``/``--max-bits`` range other than 2..8)."""
    if not config.pretrained:
        return None
    shipped = _shipped()
    if shipped is None or shipped.n_choices != n_choices or shipped.obs_dim != AGENT_OBS_DIM:
        return None
    if tuple(shipped.config.net_arch) != tuple(config.net_arch):
        return None
    # copies: the optimizer's state is loaded by reference and updated in place, and the
    # file is read once per process (two searches in one process start from the same agent)
    return dataclasses.replace(
        shipped, config=config, policy={k: v.clone() for k, v in shipped.policy.items()},
        optimizer=copy.deepcopy(shipped.optimizer),
    )  # fmt: skip
