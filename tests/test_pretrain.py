"""The pre-trained search agent: the shipped file, the pre-training's determinism, and
the ``ppo`` method starting from it by default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cimdse import arch, models
from cimdse.compiler import compile_network, trace
from cimdse.search import PPOAgent, PPOConfig, SearchSpace
from cimdse.search.agent import read_agent
from cimdse.search.config import SearchConfig
from cimdse.search.episodes import AGENT_OBS_DIM, EpisodeBatch
from cimdse.search.evaluator import CachedEvaluator, MethodRecorder, PolicyScorer
from cimdse.search.methods import MethodContext, run_method
from cimdse.search.pretrain import draw_prior, pretrain_agent, pretrained_agent, pretrained_path
from cimdse.search.reward import CimAqReward


@pytest.fixture(scope="module")
def demo():
    return compile_network(trace(models.build("lenet"), (1, 8, 8)), arch.load("demo"))


def test_shipped_agent_loads_with_the_agents_shapes():
    shipped = read_agent(pretrained_path())
    assert (shipped.obs_dim, shipped.n_choices) == (AGENT_OBS_DIM, 7) and shipped.episodes > 0
    fresh = PPOAgent(AGENT_OBS_DIM, 7, PPOConfig(), seed=0).state().policy
    assert {k: tuple(v.shape) for k, v in shipped.policy.items()} == {k: tuple(v.shape) for k, v in fresh.items()}
    # the user's settings, the shipped weights; none where it does not fit
    start = pretrained_agent(PPOConfig(kappa=2.0), 7)
    assert start is not None and start.config.kappa == 2.0
    assert all(torch.equal(start.policy[k], shipped.policy[k]) for k in shipped.policy)
    assert pretrained_agent(PPOConfig(pretrained=False), 7) is None
    assert pretrained_agent(PPOConfig(net_arch=(32,)), 7) is None
    assert pretrained_agent(PPOConfig(), 5) is None


@pytest.mark.parametrize("name,shape", [("lenet", (1, 8, 8)), ("cnn1d", (1, 40)), ("mlp", (1, 8, 8))])
@pytest.mark.parametrize("preset", ["demo", "cim-aq", "isaac", "puma"])
def test_observation_has_one_size_and_range_on_every_network_and_arch(name, shape, preset):
    compiled = compile_network(trace(models.build(name), shape), arch.load(preset))
    episodes = EpisodeBatch(compiled, SearchSpace(compiled.n_layers, compiled.arch.crossbar.cell_bits))
    cond = np.linspace(0, 1, 3)
    for layer in range(compiled.n_layers):
        obs = episodes.obs(layer, np.full((3, 2), 4), cond, np.full(3, 1e9))
        assert obs.shape == (3, AGENT_OBS_DIM) and obs.min() >= 0.0 and obs.max() <= 1.0


def test_prior_draws_are_seeded_and_in_the_fitted_range():
    a, b = draw_prior(9, np.random.default_rng(3)), draw_prior(9, np.random.default_rng(3))
    assert a.growth == b.growth and np.array_equal(a.alpha, b.alpha)
    alphas = np.concatenate([draw_prior(9, np.random.default_rng(s)).alpha for s in range(200)])
    assert alphas.min() >= 1e-4 and alphas.max() < 3.0  # 10^-4 .. 10^(-1.8 + 4 x 0.4 + 1.5)
    assert 0.25 < np.mean(alphas < 1e-3) < 0.45  # the insensitive share, 0.35 (+ N's far tail)
    assert 0.005 < np.median(alphas[alphas > 1e-3]) < 0.02  # lenet's 0.006..0.015


def test_pretraining_is_deterministic_under_a_seed(demo):
    cfg = PPOConfig(episodes_per_update=16, n_epochs=1)

    def run(seed: int) -> dict[str, torch.Tensor]:
        return pretrain_agent(3, seed, cfg, nets=("lenet", "mlp"), archs=("demo", "cim-aq")).state().policy

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _run_ppo(demo, ppo: PPOConfig, tmp_path, budget: int = 4, agent_from=None):
    """The ppo method on lenet@demo, no PPO update (``updates_per_round=0``): the agent
    it saves is the one it started from."""
    acc = CachedEvaluator(lambda p: 0.98 - 0.002 * float((8 - np.asarray(p)).sum()))
    scorer = PolicyScorer(demo, acc, CimAqReward(0.5), 0.98)
    rec = MethodRecorder(scorer, "demo", "ppo", budget)
    config = SearchConfig(model="lenet", episodes=budget, ppo=ppo)
    ctx = MethodContext(demo, config, 0, agent_from=agent_from, agent_to=tmp_path / "agent.pt")
    run_method("ppo", rec, SearchSpace(demo.n_layers, 2), ctx)
    return read_agent(tmp_path / "agent.pt"), rec


def test_ppo_starts_from_the_shipped_agent_unless_told_not_to(demo, tmp_path):
    shipped = read_agent(pretrained_path())
    used, rec = _run_ppo(demo, PPOConfig(updates_per_round=0), tmp_path)
    assert rec.count == 4 and used.episodes == shipped.episodes
    assert all(torch.equal(used.policy[k], shipped.policy[k]) for k in shipped.policy)
    fresh, _ = _run_ppo(demo, PPOConfig(updates_per_round=0, pretrained=False), tmp_path)
    assert fresh.episodes == 0 and not all(torch.equal(fresh.policy[k], shipped.policy[k]) for k in shipped.policy)
    given = PPOAgent(AGENT_OBS_DIM, 7, PPOConfig(updates_per_round=0), seed=5).state()  # --agent-from: first
    kept, _ = _run_ppo(demo, PPOConfig(updates_per_round=0), tmp_path, agent_from=given)
    assert kept.episodes == 0 and all(torch.equal(kept.policy[k], given.policy[k]) for k in given.policy)


def test_ppo_option_parses_the_pretrained_switch():
    from cimdse.cli.search_cmd import _ppo_config
    from cimdse.errors import CimdseError

    assert _ppo_config([]).pretrained is True
    assert _ppo_config(["pretrained=0"]).pretrained is False and _ppo_config(["pretrained=yes"]).pretrained is True
    with pytest.raises(CimdseError, match="not a valid pretrained"):
        _ppo_config(["pretrained=maybe"])


def test_cli_pretrain_agent_writes_a_loadable_agent(tmp_path, capsys):
    from cimdse.cli import main

    out = tmp_path / "a.pt"
    args = ["pretrain-agent", "--out", str(out), "--updates", "1", "--ppo", "episodes_per_update=8", "--quiet"]
    assert main(args) == 0
    agent = read_agent(out)
    assert agent.episodes == 8 and agent.config.ent_coef == 0.05 and "wrote" in capsys.readouterr().out
    assert main(["pretrain-agent", "--out", str(tmp_path), "--quiet"]) == 2  # a folder: one message, no traceback
