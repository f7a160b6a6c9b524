"""Search files under attack and interruption: agent files that carry code, a search
killed mid-run and rerun, a rerun with other settings, a full disk, and the printed
accuracy reference (tiny settings on digits/lenet)."""

from __future__ import annotations

import base64
import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from cimdse.cli import main
from cimdse.errors import CimdseError
from cimdse.search.agent import PPOAgent, PPOConfig, read_agent
from cimdse.search.episodes import AGENT_OBS_DIM
from cimdse.search.history import HistoryLog

ROOT = Path(__file__).parents[1]
TINY = ["--episodes", "4", "--pretrain-epochs", "1", "--final-epochs", "1", "--ppo", "episodes_per_update=8"]
RESULT_FILES = ["history.csv", "pareto.csv", "summary.csv", "best_policy.yaml", "best_policy_demo.yaml"]
RESULT_FILES += ["search_config.yaml", "agent_demo.pt"]


class _Payload:
    """Unpickling this writes ``marker``: the proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _sb3_zip_with_payload(path: Path, marker: Path) -> None:
    """An agent .zip as stable-baselines3 writes it, one ':serialized:' entry a payload."""
    blob = base64.b64encode(pickle.dumps(_Payload(marker))).decode()
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": blob}, "n_envs": 1}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", json.dumps(data))
        z.writestr("policy.pth", b"")
        z.writestr("_stable_baselines3_version", "2.9.2")


@pytest.mark.parametrize("kind", ["sb3-zip", "torch-pickle"])
def test_agent_file_with_a_code_payload_is_refused_and_runs_nothing(tmp_path, capsys, kind):
    marker = tmp_path / "MARKER"
    evil = tmp_path / "agent_demo.pt"
    if kind == "sb3-zip":
        _sb3_zip_with_payload(evil, marker)
    else:  # a torch file whose pickle builds an object, not tensors
        torch.save({"settings": "{}", "policy": {"w": _Payload(marker)}}, evil)
    out = tmp_path / "out"
    args = ["search", *TINY, "--methods", "ppo", "--agent-from", str(evil), "--out", str(out), "--quiet"]
    code = main(args)
    assert not marker.exists(), "a payload in the agent file ran"
    err = capsys.readouterr().err
    assert code == 2 and "not loaded" in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_agent_saved_as_data_round_trips(tmp_path):
    agent = PPOAgent(AGENT_OBS_DIM, 7, PPOConfig(episodes_per_update=8, ent_coef=0.02), seed=0)
    agent.optimizer.step()  # an optimizer state to keep
    agent.episodes = 24
    path = agent.save(tmp_path / "a.pt")
    doc = torch.load(path, weights_only=True)  # data only
    assert json.loads(doc["settings"])["ppo"]["ent_coef"] == 0.02
    again = PPOAgent(AGENT_OBS_DIM, 7, seed=3, saved=read_agent(path))
    assert again.config == agent.config and again.episodes == 24
    for name, t in agent.state().policy.items():
        assert torch.equal(again.state().policy[name], t)
    settings = json.loads(doc["settings"]) | {"version": 2}  # the hand-written PPO's tensors: other names
    torch.save({**doc, "settings": json.dumps(settings)}, tmp_path / "v2.pt")
    with pytest.raises(CimdseError, match="agent file version 2, this cimdse reads 3"):
        read_agent(tmp_path / "v2.pt")
    (tmp_path / "junk.pt").write_bytes(b"not an agent")
    with pytest.raises(CimdseError, match="not a cimdse agent file"):
        read_agent(tmp_path / "junk.pt")


def test_agent_from_a_folder_without_the_arch_is_refused_before_pretraining(tmp_path, capsys):
    (tmp_path / "agents").mkdir()
    out = tmp_path / "out"
    args = ["search", *TINY, "--methods", "ppo", "--agent-from", str(tmp_path / "agents"), "--out", str(out)]
    assert main(args) == 2
    assert "has no agent for arch 'demo'" in capsys.readouterr().err
    assert not out.exists()  # no float_model.pt: refused before pre-training
    _sb3_zip_with_payload(tmp_path / "agents" / "agent_demo.zip", tmp_path / "MARKER")  # an older run's folder
    assert main(args) == 2
    assert "agent_demo.zip is an older cimdse's stable-baselines3 agent, not loaded" in capsys.readouterr().err
    assert not (tmp_path / "MARKER").exists() and not out.exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny search (random only) and what it printed."""
    out = tmp_path_factory.mktemp("finished") / "out"
    args = ["search", *TINY, "--methods", "random", "--out", str(out), "--quiet"]
    proc = subprocess.run([sys.executable, "-m", "cimdse", *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out, args, proc.stdout


def test_printed_bound_names_the_reference_within_bound_is_judged_against(finished):
    out, _, printed = finished
    summary = pd.read_csv(out / "summary.csv")
    ref = summary[summary.method == "uniform8"].final_val_acc.iloc[0]  # the fine-tuned W8A8
    bound_line = next(line for line in printed.splitlines() if line.startswith("bound:"))
    assert f"demo {ref:.4f}" in bound_line and "within_bound" in printed


def test_rerun_with_other_settings_is_refused_unless_overwrite(finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    args = [a if a != str(finished[0]) else str(out) for a in finished[1]]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*args, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "other settings (seed)" in err and "--overwrite" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    assert main([*args, "--seed", "1", "--overwrite"]) == 0
    assert "seed: 1" in (out / "search_config.yaml").read_text()


def test_rerun_of_a_finished_search_resumes_with_every_evaluation_done(finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    args = [a if a != str(finished[0]) else str(out) for a in finished[1]]
    rows = len(pd.read_csv(out / "history.csv"))
    assert main(args) == 0
    assert f"resuming: {rows} evaluations done" in capsys.readouterr().err
    for name in ("history.csv", "summary.csv", "pareto.csv"):
        assert (out / name).read_bytes() == (finished[0] / name).read_bytes()


@pytest.mark.parametrize("where", ["history", "results"])
def test_full_disk_is_one_message_and_leaves_a_resumable_history(finished, tmp_path, capsys, monkeypatch, where):
    from cimdse.search import run

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "history":  # the 6th evaluation's line: half written, then the disk is full
        calls = {"n": 0}
        real = HistoryLog._write

        def write(self, data: bytes) -> None:
            calls["n"] += 1
            if calls["n"] == 6:
                os.write(self._fd, data[:10])
                raise full
            real(self, data)

        monkeypatch.setattr(HistoryLog, "_write", write)
    else:  # the final files

        def write_csv(df, path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        monkeypatch.setattr(run, "write_csv", write_csv)
    out = tmp_path / "out"
    args = [a if a != str(finished[0]) else str(out) for a in finished[1]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err and err.count("\n") == 1
    text = (out / "history.csv").read_text()
    assert text.endswith("\n")
    logged = pd.read_csv(out / "history.csv")
    assert len(logged) == (5 if where == "history" else len(pd.read_csv(finished[0] / "history.csv")))
    monkeypatch.undo()
    assert main(args) == 0
    assert f"resuming: {len(logged)} evaluations done" in capsys.readouterr().err
    for name in ("history.csv", "summary.csv"):
        assert (out / name).read_bytes() == (finished[0] / name).read_bytes()


KILL_ARGS = ["--episodes", "25", "--pretrain-epochs", "1", "--final-epochs", "1", "--methods", "random,tpe,ppo"]
KILL_ARGS += ["--ppo", "episodes_per_update=8", "--quiet"]


def _rows(path: Path) -> int:
    return max(0, path.read_text().count("\n") - 1) if path.exists() else 0


def test_search_killed_mid_run_and_rerun_ends_as_one_never_interrupted(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    cmd = [sys.executable, "-m", "cimdse", "search", *KILL_ARGS]
    assert main(["search", *KILL_ARGS, "--out", str(ref)]) == 0
    total = _rows(ref / "history.csv")
    proc = subprocess.Popen([*cmd, "--out", str(out)], cwd=ROOT, start_new_session=True, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _rows(out / "history.csv") < 40:  # in TPE's trials (7 uniform, 25 random first)
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no history appeared"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    first = _rows(out / "history.csv")
    assert 40 <= first < total, "the search finished before the kill"
    assert not (out / "summary.csv").exists()
    again = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {first} evaluations done" in again.stderr
    for name in RESULT_FILES:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    a, b = (torch.load(d / "float_model.pt", weights_only=True)["state_dict"] for d in (out, ref))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # (its bytes name the temp file)


def test_timing_has_every_phase_in_wall_and_cpu_seconds_and_the_true_total(finished):
    out, _, printed = finished
    t = pd.read_csv(out / "timing.csv")
    phases = ["prepare", "pretrain", "evaluations", "ppo", "baselines", "final_finetune", "other", "total"]
    assert list(t.phase) == phases
    assert list(t.columns) == ["phase", "seconds", "cpu_seconds"] and (t.cpu_seconds >= 0).all()
    parts = t[t.phase != "total"]
    total = t[t.phase == "total"].iloc[0]
    assert total.seconds >= parts.seconds.sum() - 1e-6  # pre-training included in the total
    assert "pretrain" in printed and "wall/CPU" in printed
    summary = pd.read_csv(out / "summary.csv")
    assert summary.resident.isin([True, False]).all()


def test_seed_moves_the_searches_not_the_measurements(finished, tmp_path):
    out, args, _ = finished
    runs = []
    for seed in ("0", "7"):
        run = tmp_path / seed
        base = [a if a != str(out) else str(run) for a in args]
        base[base.index("random")] = "random,ilp"
        assert main([*base, "--seed", seed, "--from", str(out / "float_model.pt")]) == 0
        runs.append(pd.read_csv(run / "history.csv"))
    fixed = [h[h.method.str.startswith("uniform") | (h.method == "ilp")] for h in runs]
    assert fixed[0].drop(columns="episode").equals(fixed[1].drop(columns="episode"))  # same float model: same
    assert not runs[0][runs[0].method == "random"].policy.equals(runs[1][runs[1].method == "random"].policy)
