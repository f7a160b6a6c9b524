"""``cimdse report``: each kind of folder gives its plots and a report.md."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sweep_fakes import fake_evaluator

from cimdse import plots, sweep
from cimdse.cli import main
from cimdse.errors import CimdseError
from cimdse.policy import parse_policy_text, policy_text

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 2000


@pytest.fixture
def sweep_dir(tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(
        "models: [mlp, lenet]\narchs: [demo]\n"
        "grid: {crossbar.rows: [64, 128], crossbar.cell_bits: [1, 2], crossbar.adcs: [4, 128]}\n"
        "bits: ['8,8', '4,4']\n"
    )
    plan = sweep.plan(sweep.load_config(cfg), base=tmp_path)
    out = tmp_path / "run"
    sweep.run_sweep(plan, out, evaluator=fake_evaluator, progress=False)
    return out


def write_compile(folder, n_layers: int = 4):
    folder.mkdir(parents=True, exist_ok=True)
    layers = pd.DataFrame(
        {
            "name": [f"layer{i}" for i in range(n_layers)],
            "kind": "conv2d",
            "K": 9,
            "N": 16,
            "V": 36,
            "w_bits": 8,
            "a_bits": 4,
            "crossbars": 2,
            "replicas": 1,
            "latency_s": np.linspace(1e-6, 4e-6, n_layers),
            "energy_j": np.linspace(2e-9, 1e-9, n_layers),
        }
    )
    layers.to_csv(folder / "layers.csv", index=False)
    summary = pd.DataFrame(
        [
            {
                "model": "lenet",
                "arch": "demo",
                "latency_s": 1e-5,
                "energy_j": 6e-9,
                "area_mm2": 0.4,
                "crossbars": 8,
                "speedup_vs_w8a8": 1.0,
            }
        ]  # fmt: skip
    )
    summary.to_csv(folder / "summary.csv", index=False)
    return folder


def write_search(folder, with_policy: bool = True, with_history: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    if with_policy:
        (folder / "best_policy.yaml").write_text(
            "conv1: [8, 8]\nconv2: {w_bits: 4, a_bits: 6}\nfc1: [3, 4]\nfc2: [8, 8]\n"
        )
    if with_history:
        rng = np.random.default_rng(0)
        rows = []
        for method in ("ppo", "random"):
            for ep in range(30):
                pol = rng.integers(2, 9, size=(4, 2))
                rows.append({
                    "episode": ep, "method": method, "arch": "demo", "policy": policy_text(pol),
                    "latency_s": 1e-5 / pol.mean(), "speedup_vs_w8a8": 8 / pol.mean(), "val_acc": 0.9 + 0.001 * ep,
                    "reward": rng.normal(),
                })  # fmt: skip
        pd.DataFrame(rows).to_csv(folder / "history.csv", index=False)
    return folder


def test_detects_kinds_by_the_files_held(tmp_path, sweep_dir):
    assert plots.detect(sweep_dir) == ["sweep"]
    assert plots.detect(write_compile(tmp_path / "c")) == ["compile"]
    assert plots.detect(write_search(tmp_path / "s", with_history=False)) == ["search"]
    assert plots.detect(write_search(tmp_path / "h", with_policy=False)) == ["search"]
    assert plots.detect(tmp_path / "nothing") == []


def test_sweep_report_has_a_pareto_plot_and_table(sweep_dir):
    files = plots.make_report(sweep_dir)
    assert is_png(sweep_dir / "sweep_pareto.png")
    md = (sweep_dir / "report.md").read_text()
    assert "![latency vs area](sweep_pareto.png)" in md and "### Pareto front" in md
    assert "32 points: 16 ok, 16 invalid" in md and "adcs (128) cannot exceed cols" in md
    front = pd.read_csv(sweep_dir / "pareto.csv")
    assert set(front["model"]) == {"mlp", "lenet"}
    ok = pd.read_csv(sweep_dir / "sweep.csv").query("status == 'ok'")
    for _, r in front.iterrows():  # nothing on the front is beaten on both axes
        same = ok[ok["model"] == r["model"]]
        assert not ((same["latency_s"] < r["latency_s"]) & (same["area_mm2"] < r["area_mm2"])).any()
    assert sweep_dir / "report.md" in files
    # and against the area each point occupies, which a small network leaves mostly idle
    assert is_png(sweep_dir / "sweep_occupied.png") and sweep_dir / "sweep_occupied.png" in files
    assert "![latency vs occupied area](sweep_occupied.png)" in md
    assert (ok["occupied_area_mm2"] < ok["area_mm2"]).all() and (ok["resident_area_mm2"] <= ok["area_mm2"]).all()


def test_pareto_mask():
    x = np.array([1.0, 2.0, 3.0, 2.0, 1.0])
    y = np.array([5.0, 3.0, 1.0, 4.0, 6.0])
    assert plots.pareto_mask(x, y).tolist() == [True, True, True, False, False]


def test_compile_report_breaks_latency_and_energy_down_per_layer(tmp_path):
    folder = write_compile(tmp_path / "c")
    plots.make_report(folder, tmp_path / "elsewhere")
    assert is_png(tmp_path / "elsewhere" / "compile_layers.png")
    md = (tmp_path / "elsewhere" / "report.md").read_text()
    assert "## Compile" in md and "layer3" in md and "| lenet | demo |" in md
    assert not (folder / "report.md").exists()


def test_compile_report_of_a_big_network_shows_the_slowest_layers(tmp_path):
    folder = write_compile(tmp_path / "c", n_layers=plots.MAX_BAR_LAYERS + 5)
    plots.make_report(folder)
    assert is_png(folder / "compile_layers.png")


def test_search_report_from_policy_and_history(tmp_path):
    folder = write_search(tmp_path / "s")
    plots.make_report(folder)
    assert is_png(folder / "search_policy.png") and is_png(folder / "search_progress.png")
    md = (folder / "report.md").read_text()
    assert "Best policy from best_policy.yaml: 4 layers, mean 5.75 weight bits" in md
    assert "| ppo |" in md and "| random |" in md


def test_search_report_from_history_alone_takes_the_best_episode(tmp_path):
    folder = write_search(tmp_path / "s", with_policy=False)
    plots.make_report(folder)
    assert is_png(folder / "search_policy.png")
    assert "Best policy from history.csv, episode" in (folder / "report.md").read_text()


def test_search_report_from_policy_alone(tmp_path):
    folder = write_search(tmp_path / "s", with_history=False)
    (folder / "best_policy.yaml").write_text("policy: [[8, 8], [2, 4]]\nspeedup_vs_w8a8: 2.0\n")
    plots.make_report(folder)
    assert is_png(folder / "search_policy.png") and not (folder / "search_progress.png").exists()


def test_search_report_from_history_alone_reads_the_best_policy_cell(tmp_path):
    folder = write_search(tmp_path / "h", with_policy=False)
    plots.make_report(folder)
    md = (folder / "report.md").read_text()
    hist = pd.read_csv(folder / "history.csv")
    best = parse_policy_text(hist.loc[hist["reward"].idxmax(), "policy"])
    assert f"mean {best[:, 0].mean():.2f} weight bits and {best[:, 1].mean():.2f} activation bits" in md


@pytest.mark.parametrize(
    "policy_yaml, message",
    [
        ("conv1: [99, 8]\nconv2: [4, 4]\n", r"layer conv1: w_bits = 99 outside 1\.\.8"),
        ("policy: [[8, 8], [-3, 4]]\n", r"entry 1: w_bits = -3 outside 1\.\.8"),
        ("policy: [[8, 8], [4.5, 4]]\n", "whole numbers"),
        ("conv1: [8, 8\n", r"line 2, column 1: malformed YAML"),
    ],
)
def test_report_refuses_a_best_policy_out_of_range(tmp_path, capsys, policy_yaml, message):
    folder = write_search(tmp_path / "s", with_history=False)
    (folder / "best_policy.yaml").write_text(policy_yaml)
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err
    assert sorted(p.name for p in folder.iterdir()) == ["best_policy.yaml"]  # nothing written


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("speedup_vs_w8a8", "fast", r"column speedup_vs_w8a8, row 4: 'fast' is not a number"),
        ("reward", "high", r"column reward, row 4: 'high' is not a number"),
        ("policy", "8,8;4,2", r"episode \d+: '8,8;4,2' is not a policy written as w/a per layer"),
        ("policy", "8/8 99/4 8/8 8/8", r"layer 1: w_bits = 99 outside 1\.\.8"),
    ],
)
def test_report_refuses_a_history_with_bad_cells(tmp_path, capsys, column, value, message):
    folder = write_search(tmp_path / "s", with_policy=False)
    hist = pd.read_csv(folder / "history.csv")
    hist[column] = hist[column].astype(object)
    rows = slice(None) if column == "policy" else 3
    hist.loc[rows, column] = value
    hist.to_csv(folder / "history.csv", index=False)
    assert main(["report", str(folder), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (tmp_path / "r").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["history.csv"]


def test_a_failing_section_leaves_an_earlier_report_as_it_was(tmp_path):
    folder = write_search(tmp_path / "s")
    plots.make_report(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    (folder / "best_policy.yaml").write_text("conv1: [0, 8]\n")
    with pytest.raises(CimdseError, match="w_bits = 0 outside"):
        plots.make_report(folder)
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert after.keys() == before.keys()
    assert {k: v for k, v in after.items() if k != "best_policy.yaml"} == {
        k: v for k, v in before.items() if k != "best_policy.yaml"
    }


def test_folders_without_results_and_bad_files_are_one_message(tmp_path):
    with pytest.raises(CimdseError, match="holds no results to report"):
        plots.make_report(tmp_path)
    with pytest.raises(CimdseError, match="no such folder"):
        plots.make_report(tmp_path / "missing")
    (tmp_path / "sweep.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CimdseError, match="missing column"):
        plots.make_report(tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_report_cli(tmp_path, capsys):
    folder = write_search(tmp_path / "s")
    assert main(["report", str(folder)]) == 0
    assert str(folder / "report.md") in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_search_report_shows_fronts_and_hypervolume(tmp_path):
    folder = write_search(tmp_path / "s")
    rows = [{"arch": "demo", "method": m, "evaluations": 30, "front_size": 3, "hypervolume": hv,
             "speedup_vs_w8a8": 2.0, "final_val_acc": 0.9, "test_acc": 0.9, "acc_drop_pp": 0.1}
            for m, hv in (("ppo", 12.5), ("random", 7.25))]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)
    plots.make_report(folder)
    assert is_png(folder / "search_fronts.png")
    md = (folder / "report.md").read_text()
    assert "### Fronts" in md and "12.5" in md and "7.25" in md
