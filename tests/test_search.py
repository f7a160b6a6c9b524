"""Search: env, reward, constraints, cache, baselines, Pareto front, PPO, and the
``cimdse search`` command end to end (tiny settings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

from cimdse import arch, models
from cimdse.cli import main
from cimdse.compiler import compile_network, trace
from cimdse.search import (
    BitWidthEnv,
    CachedEvaluator,
    CimAqReward,
    MethodRecorder,
    PolicyScorer,
    PPOAgent,
    PPOConfig,
    SearchSpace,
)
from cimdse.search.agent import read_agent
from cimdse.search.baselines import greedy_search, random_search, uniform_method
from cimdse.search.config import HISTORY_COLUMNS, SUMMARY_COLUMNS, SearchConfig
from cimdse.search.core import search_archs
from cimdse.search.dyna import ppo_search
from cimdse.search.episodes import AGENT_OBS_DIM, EpisodeBatch
from cimdse.search.finals import FinalScores
from cimdse.search.fronts import PARETO_COLUMNS, pareto_front


def _finals(val: float, test: float):
    """A final evaluator that scores every policy the same on every target."""
    return lambda policy, targets: [FinalScores(val, test, val, test) for _ in targets]


class ToyAccuracy:
    """Deterministic stand-in for QAT accuracy (tests only): every bit below 8 costs
    a little, activations of the first layer most; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, policy: np.ndarray) -> float:
        self.calls += 1
        p = np.asarray(policy)
        loss = 0.0008 * (8 - p[:, 0]).sum() + 0.0015 * (8 - p[:, 1]).sum() + 0.01 * (8 - p[0, 1])
        return float(0.98 - loss)


@pytest.fixture(scope="module")
def net():
    return trace(models.build("lenet"), (1, 8, 8))


@pytest.fixture(scope="module")
def demo(net):
    return compile_network(net, arch.load("demo"))


def _recorder(compiled, method="x", budget=10, acc=None, max_drop=1.0):
    cached = CachedEvaluator(acc or ToyAccuracy())
    scorer = PolicyScorer(compiled, cached, CimAqReward(max_drop), cached(np.full((compiled.n_layers, 2), 8)))
    return MethodRecorder(scorer, compiled.arch.name, method, budget)


# ---------------------------------------------------------------- env
def test_env_passes_gymnasium_checker(demo):
    env = BitWidthEnv(demo, SearchSpace(demo.n_layers, 2), _recorder(demo))
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs.shape == (14 + 6,)


def test_env_episode_scores_once_at_the_end(demo):
    rec = _recorder(demo)
    env = BitWidthEnv(demo, SearchSpace(demo.n_layers, 2), rec)
    env.reset(seed=0)
    rewards = []
    for i in range(demo.n_layers):
        obs, r, term, trunc, info = env.step(np.array([2, 1]))  # (4, 3)
        rewards.append(r)
        assert env.observation_space.contains(obs) and not trunc
        assert term == (i == demo.n_layers - 1)
    assert rewards[:-1] == [0.0] * (demo.n_layers - 1)
    assert info["outcome"].policy == ((4, 3),) * demo.n_layers
    assert rewards[-1] == pytest.approx(info["outcome"].reward)
    assert rec.count == 1


# ---------------------------------------------------------------- reward
def test_cimaq_reward_by_hand():
    r = CimAqReward(max_acc_drop=1.0)
    # ref 98 %, bound 97 %: at 97.5 % and 3x: 100 * 2 + 0.1 * 0.5
    assert r(3.0, 0.975, 0.98) == pytest.approx(200.05)
    # exactly on the bound counts as within it
    assert r.within_bound(0.97, 0.98) and r(2.0, 0.97, 0.98) == pytest.approx(100.0)
    # 2 pp short of the bound: -10 * 2, whatever the speedup
    assert r(10.0, 0.95, 0.98) == pytest.approx(-20.0)
    # W8A8 itself: speedup 1, margin 1 pp
    assert r(1.0, 0.98, 0.98) == pytest.approx(0.1)
    assert CimAqReward(0.0)(1.5, 0.98, 0.98) == pytest.approx(50.0)


# ---------------------------------------------------------------- constraints
def test_constraints_first_last_and_cell_multiple(demo):
    space = SearchSpace(demo.n_layers, cell_bits=2, first_last_8bit=True, weight_cell_multiple=True)
    rec = _recorder(demo)
    env = BitWidthEnv(demo, space, rec)
    env.reset(seed=0)
    for _ in range(demo.n_layers):  # the lowest action: (2, 2); then odd weights: (3, 5)
        *_, info = env.step(np.array([0, 0]))
    pol = np.array(info["outcome"].policy)
    assert pol[0].tolist() == [8, 8] and pol[-1].tolist() == [8, 8]
    assert pol[1:-1].tolist() == [[2, 2], [2, 2]]
    assert space.project_layer(1, 3, 5) == (4, 5)  # 3 is between 2 and 4: ties go up
    assert space.project_layer(1, 7, 1) == (8, 2)
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = space.sample(rng)
        assert space.is_legal(p) and (p[:, 0] % 2 == 0).all()
        assert p[0].tolist() == [8, 8] and p[-1].tolist() == [8, 8]
    assert space.uniform(3, 3)[1].tolist() == [4, 3]


def test_space_rejects_impossible_ranges():
    from cimdse.errors import CimdseError

    with pytest.raises(CimdseError, match="multiple of cell_bits"):
        SearchSpace(4, cell_bits=4, min_bits=2, max_bits=3, weight_cell_multiple=True)
    with pytest.raises(CimdseError, match="bit range"):
        SearchSpace(4, min_bits=5, max_bits=4)


# ---------------------------------------------------------------- cache
def test_cache_hit_avoids_reevaluation(demo):
    toy = ToyAccuracy()
    rec = _recorder(demo, acc=toy)
    assert toy.calls == 1  # the W8A8 reference
    p = np.full((demo.n_layers, 2), 4)
    a = rec(p)
    b = rec(p.copy())
    assert a == b and toy.calls == 2 and rec.count == 1 and len(rec.rows) == 1
    other = MethodRecorder(rec.scorer, "demo", "y", 5)  # another method, same shared cache
    other(p)
    assert toy.calls == 2 and other.count == 1
    assert rec.scorer.accuracy.hits == 1  # the repeat within a method never reaches the cache


# ---------------------------------------------------------------- baselines
@pytest.mark.parametrize("budget", [1, 7, 40])
def test_baselines_respect_the_budget(demo, budget):
    space = SearchSpace(demo.n_layers, 2)
    rec = _recorder(demo, "random", budget)
    random_search(rec, space, np.random.default_rng(0))
    assert rec.count == budget
    rec = _recorder(demo, "greedy", budget)
    greedy_search(rec, space)
    assert 1 <= rec.count <= budget
    rec = _recorder(demo, "uniform4", 1)
    uniform_method(rec, space, 4)
    assert rec.count == 1 and rec.rows[0]["policy"] == " ".join(["4/4"] * demo.n_layers)


def test_greedy_lowers_insensitive_layers_within_the_bound(demo):
    space = SearchSpace(demo.n_layers, 2)
    rec = _recorder(demo, "greedy", 200, max_drop=2.0)
    greedy_search(rec, space)
    best = rec.best()
    assert best.within_bound and best.speedup > 1.8  # pooling and ReLUs stay on each layer's one tile
    assert np.array(best.policy)[0, 1] >= 6  # the sensitive first-layer activations stay wide


def test_random_search_stops_when_the_space_is_spent(demo):
    space = SearchSpace(demo.n_layers, 2, min_bits=7, max_bits=8, first_last_8bit=True)
    rec = _recorder(demo, "random", 100)
    random_search(rec, space, np.random.default_rng(0))
    assert rec.count == space.size() == 16


# ---------------------------------------------------------------- Pareto
def test_pareto_front_by_hand():
    rows = [
        ("a", "m1", "p1", 1.0, 0.99),
        ("a", "m1", "p2", 2.0, 0.98),
        ("a", "m2", "p3", 1.5, 0.97),  # dominated by p2
        ("a", "m2", "p4", 3.0, 0.90),
        ("a", "m2", "p2", 2.0, 0.98),  # p2 again, by another method: counted once
        ("a", "m3", "p5", 2.0, 0.98),  # ties p2: both kept
        ("a", "m3", "p6", 0.9, 0.99),  # dominated by p1 (same accuracy, slower)
        ("b", "m1", "p3", 1.5, 0.97),  # alone on arch b
    ]
    df = pd.DataFrame(rows, columns=["arch", "method", "policy", "speedup_vs_w8a8", "val_acc"])
    df["episode"], df["latency_s"], df["reward"] = 0, 1.0, 0.0
    front = pareto_front(df)
    assert list(front.columns) == PARETO_COLUMNS
    got = list(zip(front.arch, front.policy, front.method, strict=True))
    assert got == [("a", "p4", "m2"), ("a", "p2", "m1"), ("a", "p5", "m3"), ("a", "p1", "m1"), ("b", "p3", "m1")]


# ---------------------------------------------------------------- PPO
def test_ppo_spends_the_budget_and_checkpoints(demo, tmp_path):
    space = SearchSpace(demo.n_layers, 2)
    cfg = PPOConfig(episodes_per_update=16, n_epochs=2, candidates=32)
    rec = _recorder(demo, "ppo", 12)
    agent = PPOAgent(AGENT_OBS_DIM, space.n_choices, cfg, seed=0)
    stats = ppo_search(rec, space, agent)
    assert rec.count == 12 and stats.updates >= 1 and agent.episodes == 16 * stats.updates
    path = agent.save(tmp_path / "agent.pt")
    rec2 = _recorder(demo, "ppo", 5)
    again = PPOAgent(AGENT_OBS_DIM, space.n_choices, seed=1, saved=read_agent(path))
    assert again.config == cfg and again.episodes == agent.episodes
    ppo_search(rec2, space, again)
    assert rec2.count == 5
    from cimdse.errors import CimdseError

    with pytest.raises(CimdseError, match="does not fit"):  # another action space: refused
        PPOAgent(AGENT_OBS_DIM, SearchSpace(demo.n_layers, 2, min_bits=4).n_choices, saved=read_agent(path))


def test_ppo_masks_pinned_and_illegal_widths(demo):
    space = SearchSpace(demo.n_layers, 2, first_last_8bit=True, weight_cell_multiple=True)
    episodes = EpisodeBatch(demo, space)
    agent = PPOAgent(AGENT_OBS_DIM, space.n_choices, PPOConfig(wide_prior=0.0), seed=0)
    policies = agent.rollout(episodes, np.linspace(0, 1, 200)).policies
    assert (policies[:, 0] == 8).all() and (policies[:, -1] == 8).all()  # pinned: never anything else
    assert (policies[:, 1:-1, 0] % 2 == 0).all()  # weights a multiple of the 2-bit cell, by the mask
    assert set(np.unique(policies[:, 1:-1, 0])) == {2, 4, 6, 8} and len(np.unique(policies[:, 1:-1, 1])) == 7
    assert all(space.is_legal(p) for p in policies)


def test_surrogate_recovers_an_additive_sensitivity_model():
    from cimdse.search.surrogate import AccuracySurrogate

    rng = np.random.default_rng(0)
    alpha = np.array([0.3, 0.05, 0.0, 0.2, 0.1, 0.0])  # (layer, dim), layer-major
    policies = rng.integers(2, 9, size=(80, 3, 2))
    truth = AccuracySurrogate(3, 0.9)
    truth.alpha = alpha
    accs, _ = truth.predict(policies)
    fitted = AccuracySurrogate(3, 0.9).fit(policies, accs)
    assert fitted.growth == (4.0, 4.0)  # the growth it was made with, chosen by k-fold error
    np.testing.assert_allclose(fitted.alpha, alpha, atol=2e-3)
    mean, spread = fitted.predict(policies[:5])
    np.testing.assert_allclose(mean, accs[:5], atol=1e-3)
    assert (spread < 1e-3).all()  # no noise, a tight bootstrap


def test_surrogate_return_by_hand():
    from cimdse.search.dyna import surrogate_return

    # bound 90 pp, span 0.5 pp: condition 0 -> floor 90.0, condition 1 -> floor 90.5
    speedup, acc, cond = np.array([2.0, 2.0, 3.0]), np.array([90.2, 90.2, 89.9]), np.array([0.0, 1.0, 0.0])
    got = surrogate_return(speedup, acc, cond, 90.0, 0.5)
    np.testing.assert_allclose(got, [np.log(2.0), -1.0 - 0.3 / 0.5, -1.0 - 0.1 / 0.5])


def test_accuracy_step():
    from cimdse.search.surrogate import accuracy_step

    # counts out of 360 (as float32, as torch measures them): one sample is 1/360
    accs = np.array([355, 354, 352, 349, 300], dtype=np.float32) / np.float32(360)
    assert accuracy_step(accs) == pytest.approx(1 / 360)
    assert accuracy_step(np.array([0.5, 0.75])) == pytest.approx(1 / 4)
    assert accuracy_step(np.array([0.9])) == 0.0  # one value says nothing
    assert accuracy_step(np.array([0.9, np.pi / 4, np.e / 3, np.sqrt(0.5)])) == 0.0  # not counts (n <= 20,000)


def test_neighbours_move_one_or_two_widths_one_legal_step():
    from cimdse.search.dyna import neighbours

    space = SearchSpace(4, cell_bits=2, first_last_8bit=True, weight_cell_multiple=True)
    parent = np.array([[8, 8], [4, 5], [2, 2], [8, 8]])
    out = neighbours(space, parent[None], 200, np.random.default_rng(0))
    assert out.shape == (200, 4, 2)
    assert all(space.is_legal(p) for p in out)
    diff = np.abs(out - parent)
    assert (diff[:, [0, 3]] == 0).all()  # pinned layers stay at 8/8
    assert set(np.unique((diff > 0).sum(axis=(1, 2)))) <= {0, 1, 2}
    assert 2 in diff[:, :, 0] and set(np.unique(diff[:, :, 0])) <= {0, 2, 4}  # steps of a cell (2 bits), <= 2
    assert 1 in diff[:, :, 1] and set(np.unique(diff[:, :, 1])) <= {0, 1, 2}
    assert (out[:, 2] >= 2).all()  # nothing below the narrowest


def test_search_archs_rows_per_arch_and_method(net):
    cfg = SearchConfig(episodes=6, ppo=PPOConfig(episodes_per_update=8, n_epochs=1, candidates=16))
    toy = ToyAccuracy()
    res = search_archs(net, [arch.load("demo"), arch.load("cim-aq")], cfg, lambda a: toy, _finals(0.9, 0.9))
    s = res.summary
    assert list(s.columns) == SUMMARY_COLUMNS
    methods = ["uniform8", "uniform7", "uniform6", "uniform5", "uniform4", "uniform3", "uniform2"]
    methods += ["greedy", "ilp", "random", "tpe", "ppo"]
    assert list(zip(s.arch, s.method, strict=True)) == [(a, m) for a in ("demo", "cim-aq") for m in methods]
    assert (s.evaluations[s.method.isin(["ppo", "random", "tpe", "ilp"])] == 6).all()
    assert (s.evaluations[s.method.str.startswith("uniform")] == 1).all()
    h = res.history
    assert list(h.columns) == HISTORY_COLUMNS
    counts = h.groupby(["arch", "method"]).size()
    assert all(counts[(a, m)] == n for a, m, n in zip(s.arch, s.method, s.evaluations, strict=True))
    assert set(res.best) == {"demo", "cim-aq"}


def test_final_choice_is_the_fastest_top_policy_within_the_bound_on_validation(net):
    cfg = SearchConfig(episodes=20, final_top_k=3, ppo=PPOConfig(episodes_per_update=8, n_epochs=1, candidates=16))
    finetuned: list[tuple] = []

    def final_eval(policy: np.ndarray, targets) -> list[FinalScores]:
        assert targets == [None]  # fake-quant: one score, whatever the arch
        finetuned.append(tuple(map(tuple, policy)))
        val = 0.9 if policy.mean() >= 5.5 else 0.8  # low-bit policies fail the bound after fine-tuning
        # the test accuracy plays no part in the choice; it falls 0.5 pp per bit below 8 on average
        test = 0.9 - 0.005 * (8 - policy.mean())
        return [FinalScores(val, test, val, test)]

    res = search_archs(net, [arch.load("demo")], cfg, lambda a: ToyAccuracy(), final_eval)
    assert len(finetuned) == len(set(finetuned))  # each distinct policy fine-tuned once
    assert ((8, 8),) * len(net.layers) in finetuned  # the W8A8 reference
    h, s = res.history, res.summary
    for _, row in s.iterrows():
        top = h[h.method == row.method].sort_values("reward", ascending=False, kind="stable").head(3)
        ok = top[[np.mean([int(b) for b in p.replace("/", " ").split()]) >= 5.5 for p in top.policy]]
        assert row.within_bound == (not ok.empty)
        if ok.empty:  # none within: the most accurate, all equal here, so the top one
            assert row["rank"] == 1 and row.final_val_acc == 0.8
        else:
            assert row.speedup_vs_w8a8 == ok.speedup_vs_w8a8.max() and row.final_val_acc == 0.9
        chosen = h[(h.method == row.method) & (h.speedup_vs_w8a8 == row.speedup_vs_w8a8)].policy.iloc[0]
        mean_bits = np.mean([int(b) for b in chosen.replace("/", " ").split()])
        assert row.acc_drop_pp == pytest.approx(100 * 0.005 * (8 - mean_bits))  # W8A8 tests at 0.9
    assert (s.acc_drop_pp > 0).any()  # not all the chosen policies are W8A8
    best = res.best["demo"]
    assert best["within_bound"]
    assert best["speedup_vs_w8a8"] == s[s.within_bound].speedup_vs_w8a8.max()


def test_finetune_only_policies_near_the_bound(monkeypatch):
    from cimdse.search import accuracy

    class FakePolicyEvaluator:
        layer_names = ["a", "b"]

        def __init__(self, *args) -> None:
            self.finetuned = 0

        def __call__(self, policy, finetune_epochs=0, seed=None, hardware=None) -> float:
            self.finetuned += finetune_epochs > 0
            return 0.98 - 0.02 * (8 - int(np.min(policy))) + 0.01 * (finetune_epochs > 0)

    monkeypatch.setattr(accuracy, "PolicyEvaluator", FakePolicyEvaluator)
    acc = accuracy.QATAccuracy(None, None, finetune_epochs=1, finetune_within_pp=3.0)
    assert acc(np.full((2, 2), 7)) == pytest.approx(0.97)  # 2 pp below W8A8 when calibrated: fine-tuned
    assert acc(np.full((2, 2), 6)) == pytest.approx(0.94)  # 4 pp below: calibration only
    assert acc.screened_out == 1 and acc.policy_evaluator.finetuned == 1
    every = accuracy.QATAccuracy(None, None, finetune_epochs=1)
    assert every(np.full((2, 2), 6)) == pytest.approx(0.95)


# ---------------------------------------------------------------- CLI
TINY = ["--episodes", "4", "--pretrain-epochs", "1", "--final-epochs", "1", "--ppo", "episodes_per_update=8"]


def test_cli_search_end_to_end_two_archs_deterministic(tmp_path, capsys):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = ["search", "--arch", "demo", "--arch", "cim-aq", *TINY, "--out", str(out), "--quiet"]
        assert main(args) == 0
        runs.append(out)
    out = runs[0]
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS
    assert list(pd.read_csv(out / "pareto.csv").columns) == PARETO_COLUMNS
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert len(summary) == 2 * 12 and set(summary.arch) == {"demo", "cim-aq"}
    assert summary.test_acc.between(0, 1).all()
    best = yaml.safe_load((out / "best_policy.yaml").read_text())
    assert set(best["archs"]) == {"demo", "cim-aq"} and best["arch"] == "demo"
    assert best["policy"] == best["archs"]["demo"]["policy"]
    plain = yaml.safe_load((out / "best_policy_demo.yaml").read_text())
    assert list(plain) == ["features.0", "features.3", "classifier.1", "classifier.3"]
    assert (out / "agent_demo.pt").is_file() and (out / "float_model.pt").is_file()
    assert (runs[0] / "history.csv").read_bytes() == (runs[1] / "history.csv").read_bytes()
    printed = capsys.readouterr().out
    assert "uniform8" in printed and "ppo" in printed


def test_cli_search_continues_from_agent_and_float_model(tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["search", *TINY, "--methods", "ppo", "--out", str(first), "--quiet"]) == 0
    second = tmp_path / "second"
    args = ["search", *TINY, "--methods", "ppo", "--agent-from", str(first), "--from", str(first / "float_model.pt")]
    assert main([*args, "--out", str(second), "--quiet"]) == 0
    assert not (second / "float_model.pt").exists()  # the float model came from --from
    assert set(pd.read_csv(second / "summary.csv").method) >= {"ppo", "uniform8"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--arch", "nosuch"], "nosuch"),
        (["--episodes", "0"], "--episodes 0"),
        (["--policy", "POLICY"], "has 2 layers, the network has 4"),
        (["--ppo", "bogus=1"], "--ppo 'bogus=1'"),
        (["--model", "nosuchmodel"], "unknown model"),
        (["--agent-from", "missing.zip"], "missing.zip"),
        (["--min-bits", "1", "--max-bits", "1"], "bit range 1..1: need 2 <= min <= max <= 8"),
        (["--min-bits", "1"], "bit range 1..8: need 2 <= min <= max <= 8"),
        (["--policy", "W1POLICY"], "entry 0: w_bits = 1 outside 2..8"),
        (["--arch", "cim-aq", "--cell-multiple", "--min-bits", "2", "--max-bits", "3"], "multiple of cell_bits=4"),
        (["--from", "missing.pt"], "m.pt: no such checkpoint"),
        (["--device", "tpu"], "--device 'tpu': expected cpu or cuda"),
    ],
)
def test_cli_search_bad_input_exits_2_without_files(tmp_path, capsys, extra, message):
    policy = tmp_path / "short.yaml"
    policy.write_text("[[4, 4], [4, 4]]\n")
    w1 = tmp_path / "w1.yaml"
    w1.write_text("[[1, 4], [4, 4], [4, 4], [4, 4]]\n")
    paths = {"POLICY": policy, "W1POLICY": w1, "missing.zip": tmp_path / "missing.zip", "missing.pt": tmp_path / "m.pt"}
    extra = [str(paths[e]) if e in paths else e for e in extra]
    out = tmp_path / "out"
    assert main(["search", *TINY, *extra, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_sweep_point_runs_one_search(tmp_path):
    from cimdse.errors import CimdseError
    from cimdse.search import sweep_point

    opts = {"episodes": 2, "pretrain_epochs": 1, "final_epochs": 0, "methods": ["random"]}
    row = sweep_point("lenet", None, arch.load("demo"), opts, tmp_path / "p")
    assert set(row) == {
        "latency_s", "interval_s", "energy_j", "area_mm2", "occupied_area_mm2", "resident_area_mm2", "crossbars",
        "speedup_vs_w8a8", "val_acc", "policy",
    }  # fmt: skip
    assert yaml.safe_load(Path(row["policy"]).read_text())  # the best policy file
    with pytest.raises(CimdseError, match="unknown"):
        sweep_point("lenet", None, arch.load("demo"), {"episodes": 2, "lr": 0.1}, tmp_path / "q")


# ---------------------------------------------------------------- fronts, TPE, ILP, comparison
def test_hypervolume_by_hand():
    from cimdse.search.fronts import hypervolume

    s = [2.0, 3.0, 1.5, 4.0, 0.9, 2.5]
    a = [99.0, 98.0, 99.5, 96.0, 99.9, 97.9]  # 4x is below the bound, 0.9x slower than W8A8, 2.5x dominated
    # union of [1, 3] x [97.5, 98], [1, 2] x [98, 99], [1, 1.5] x [99, 99.5]: 1 + 1 + 0.25
    assert hypervolume(s, a, 97.5) == pytest.approx(2.25)
    assert hypervolume([4.0], [96.0], 97.5) == 0.0 and hypervolume([], [], 97.5) == 0.0
    assert hypervolume([2.0], [97.5], 97.5) == 0.0  # on the bound: zero height


def test_tpe_and_ilp_spend_the_budget_on_legal_policies(demo):
    from cimdse.search.ilp import ilp_search
    from cimdse.search.tpe import tpe_search

    space = SearchSpace(demo.n_layers, 2, first_last_8bit=True)
    for run in (lambda r: tpe_search(r, space, seed=3), lambda r: ilp_search(r, space)):
        rec = _recorder(demo, budget=30)
        run(rec)
        assert rec.count == 30
        assert all(space.is_legal(np.array(o.policy)) for o in rec.outcomes.values())
    first, again = _recorder(demo, budget=15), _recorder(demo, budget=15)
    tpe_search(first, space, seed=3)
    tpe_search(again, space, seed=3)
    assert list(first.outcomes) == list(again.outcomes)  # seeded


def test_ilp_allocation_by_hand():
    from cimdse.search.ilp import solve_allocation

    # two layers, two choices each (0: wide, 1: narrow); narrow saves 3 (layer 0) or 2 (layer 1)
    cost = [np.array([0.0, 1.0]), np.array([0.0, 5.0])]
    latency = [np.array([4.0, 1.0]), np.array([4.0, 2.0])]
    assert solve_allocation(cost, latency, 8.0) == [0, 0]
    assert solve_allocation(cost, latency, 6.0) == [1, 0]  # the cheap layer gives way first
    assert solve_allocation(cost, latency, 3.0) == [1, 1]
    assert solve_allocation(cost, latency, 2.0) is None


def test_ilp_follows_the_measured_sensitivity(demo):
    """Layer 0's activations are the costly ones in ToyAccuracy: the ILP keeps them widest longest."""
    from cimdse.search.ilp import ilp_search, measure_sensitivity

    space = SearchSpace(demo.n_layers, 2)
    rec = _recorder(demo, budget=200, max_drop=5.0)
    sens = measure_sensitivity(rec, space, 100)
    # ToyAccuracy: a bit of layer-0 activation costs 0.0015 + 0.01, a weight bit 0.0008
    assert sens[0, 1, 7] == pytest.approx(0.0115, abs=1e-5)
    assert sens[1, 0, 6] == pytest.approx(0.0016, abs=1e-5)
    rec = _recorder(demo, budget=40, max_drop=5.0)
    ilp_search(rec, space)
    fast = [o for o in rec.outcomes.values() if o.speedup > 1.5]
    assert fast and np.mean([o.policy[0][1] for o in fast]) > np.mean([o.policy[1][1] for o in fast])


def test_compare_runs_mean_and_spread(tmp_path):
    from cimdse.search.compare import compare_runs

    for i, (hv, sp) in enumerate([(2.0, 3.0), (4.0, 5.0)]):
        run = tmp_path / f"s{i}"
        run.mkdir()
        rows = [
            {"arch": "demo", "method": "ppo", "evaluations": 10, "hypervolume": hv, "speedup_vs_w8a8": sp,
             "acc_drop_pp": 0.1 * i, "within_bound": i == 0},
            {"arch": "demo", "method": "tpe", "evaluations": 10, "hypervolume": 1.5, "speedup_vs_w8a8": 2.0,
             "acc_drop_pp": 0.0, "within_bound": True},
        ]  # fmt: skip
        pd.DataFrame(rows).to_csv(run / "summary.csv", index=False)
        (run / "search_config.yaml").write_text(f"dataset: digits\nmodel: lenet\nepisodes: 10\nseed: {i}\n")
    t = compare_runs([tmp_path / "s0", tmp_path / "s1"]).set_index("method")
    assert t.loc["ppo", "hypervolume_mean"] == 3.0 and t.loc["ppo", "hypervolume_std"] == pytest.approx(2**0.5)
    assert t.loc["tpe", "hypervolume_vs_best"] == 0.5 and t.loc["ppo", "within_bound_share"] == 0.5
    assert t.loc["ppo", "runs"] == 2 and t.loc["ppo", "speedup_mean"] == 4.0
    assert main(["compare", str(tmp_path / "s0"), str(tmp_path / "nothere")]) == 2


# ---------------------------------------------------------------- hardware in the loop
def test_lossy_adc_changes_the_chosen_policy():
    """A constructed case, all real: an MLP on digits, uniform k/k only, on the demo chip
    with 4-bit clip-mode ADCs. Fake quantization picks a 3-bit policy; on the crossbar
    model that policy falls outside the bound (its partial sums saturate the ADC), so
    the hardware-in-the-loop search keeps a wider one, and reports both accuracies."""
    import torch

    from cimdse.data import load_dataset
    from cimdse.quant.train import pretrain
    from cimdse.search.accuracy import QATAccuracy, final_scores

    torch.set_num_threads(1)
    splits = load_dataset("digits")
    model = pretrain(models.build("mlp"), splits, 10, 0)
    mlp = trace(model, (1, 8, 8))
    lossy = arch.load("demo", ["crossbar.adc_bits=4"])
    runs = {}
    for mode in ("fake-quant", "hardware"):
        cfg = SearchConfig(methods=(), final_epochs=1, final_top_k=1, max_acc_drop=1.0, accuracy=mode)
        hw = mode == "hardware"
        fq = QATAccuracy(model, splits)
        runs[mode] = search_archs(
            mlp,
            [lossy],
            cfg,
            lambda spec, hw=hw: QATAccuracy(model, splits, hardware=spec if hw else None),
            lambda policy, targets, fq=fq: final_scores(fq, policy, targets, 1, 0),
            arch_dependent=hw,
        )
    fq_best, hw_best = runs["fake-quant"].best["demo"], runs["hardware"].best["demo"]
    assert fq_best["policy"] != hw_best["policy"]
    assert fq_best["speedup_vs_w8a8"] > hw_best["speedup_vs_w8a8"] and hw_best["within_bound"]
    s = runs["hardware"].summary.set_index("method")
    chosen_by_fq = s.loc[fq_best["method"]]
    assert not chosen_by_fq["within_bound"]  # measured on the crossbars, the fake-quant choice fails
    assert chosen_by_fq["fq_final_val_acc"] > chosen_by_fq["final_val_acc"] + 0.02  # the ADC's cost, shown beside
    fq_sum = runs["fake-quant"].summary
    assert (fq_sum["final_val_acc"] == fq_sum["fq_final_val_acc"]).all()


def test_ppo_agent_is_seeded_masked_after_training_and_round_trips(demo, tmp_path):
    import torch

    space = SearchSpace(demo.n_layers, 2, first_last_8bit=True, weight_cell_multiple=True)
    episodes = EpisodeBatch(demo, space)
    cfg = PPOConfig(episodes_per_update=32, n_epochs=2, learning_rate=0.01, wide_prior=0.0)
    cond = np.linspace(0, 1, 100)

    def trained(seed: int) -> PPOAgent:  # two SB3 updates rewarding narrow weights: they push on the masks
        agent = PPOAgent(AGENT_OBS_DIM, space.n_choices, cfg, seed=seed)
        for _ in range(2):
            ro = agent.rollout(episodes, cond[:32])
            agent.update(ro, -ro.policies[:, :, 0].sum(axis=1) / 10.0)
        return agent

    torch_rng, numpy_rng = torch.get_rng_state(), np.random.get_state()[1].copy()
    a, b = trained(0), trained(0)
    got = a.rollout(episodes, cond).policies
    assert torch.equal(torch.get_rng_state(), torch_rng) and (np.random.get_state()[1] == numpy_rng).all()
    assert a.episodes == 64 and np.array_equal(got, b.rollout(episodes, cond).policies)  # a seed, one agent
    assert not np.array_equal(got, trained(1).rollout(episodes, cond).policies)
    assert (got[:, [0, -1]] == 8).all() and (got[:, 1:-1, 0] % 2 == 0).all()  # never an illegal width
    assert got[:, 1:-1, 0].mean() < 4.0  # it learned: narrow weights (uniform over 2, 4, 6, 8 would be 5)

    again = PPOAgent(AGENT_OBS_DIM, space.n_choices, seed=0, saved=read_agent(a.save(tmp_path / "a.pt")))
    for name, t in a.state().policy.items():
        assert torch.equal(again.state().policy[name], t)
    greedy = [x.rollout(episodes, cond, greedy=True).policies for x in (a, again)]
    assert np.array_equal(*greedy)
    fresh = PPOAgent(AGENT_OBS_DIM, space.n_choices, cfg, seed=4)
    loaded = PPOAgent(AGENT_OBS_DIM, space.n_choices, seed=4, saved=read_agent(fresh.save(tmp_path / "f.pt")))
    assert np.array_equal(fresh.rollout(episodes, cond).policies, loaded.rollout(episodes, cond).policies)


def test_ppo_wide_prior_starts_near_w8a8(demo):
    import torch

    space = SearchSpace(demo.n_layers, 2)
    obs = torch.as_tensor(EpisodeBatch(demo, space).obs(0, None, np.zeros(1)))

    def probs(agent: PPOAgent) -> torch.Tensor:  # [2, n]: weight and activation widths 2..8
        with torch.no_grad():
            dist = agent.policy.get_distribution(obs)
        return torch.cat([d.probs for d in dist.distributions])

    wide = probs(PPOAgent(AGENT_OBS_DIM, space.n_choices, PPOConfig(wide_prior=3.0), seed=0))
    assert float(wide[0, -1] / wide[0, 0]) == pytest.approx(np.exp(3.0), rel=0.3)  # logits 0 .. 3, plus the weights'
    flat = probs(PPOAgent(AGENT_OBS_DIM, space.n_choices, PPOConfig(wide_prior=0.0), seed=0))
    assert float(flat.max() / flat.min()) < 1.5


def test_cli_search_mnist1d_default_model_all_methods(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIMDSE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "m1d"
    args = ["search", "--dataset", "mnist1d:train=200,val=100,test=100", "--methods", "ppo,tpe,ilp,random,greedy"]
    assert main([*args, *TINY, "--final-top-k", "1", "--out", str(out), "--quiet"]) == 0
    s = pd.read_csv(out / "summary.csv")
    assert list(s.method) == [f"uniform{k}" for k in range(8, 1, -1)] + ["greedy", "ilp", "random", "tpe", "ppo"]
    assert (s.evaluations[~s.method.str.startswith("uniform")] == 4).all() and (s.hypervolume >= 0).all()
    config = yaml.safe_load((out / "search_config.yaml").read_text())
    assert config["model"] == "cnn1d" and len(yaml.safe_load((out / "best_policy_demo.yaml").read_text())) == 9
    assert main(["compare", str(out), str(out)]) == 0
    assert "hypervolume_mean" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_search_hardware_accuracy_reports_both(tmp_path):
    out = tmp_path / "hw"
    args = ["search", "--accuracy", "hardware", "--arch", "demo", "--set", "crossbar.adc_bits=4", "--methods", "random"]
    assert main([*args, *TINY, "--final-top-k", "1", "--out", str(out), "--quiet"]) == 0
    s = pd.read_csv(out / "summary.csv")
    assert s.fq_final_val_acc.between(0, 1).all() and (s.fq_final_val_acc != s.final_val_acc).any()
    best = yaml.safe_load((out / "best_policy.yaml").read_text())["archs"]["demo"]
    assert {"fq_final_val_acc", "fq_test_acc"} <= set(best)


def test_search_help_names_no_none_default(run_cli):
    """Options whose default depends on the dataset say so instead of '(default: None)'."""
    proc = run_cli("search", "--help", check=True)
    text = " ".join(proc.stdout.split())
    assert "(default: None)" not in text
    assert "float pre-training epochs (default: per dataset, above)" in text
    assert "--device DEVICE cpu or cuda: pre-training, QAT fine-tunes and accuracy evaluations" in text
