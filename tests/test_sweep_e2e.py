"""Sweeps and reports end to end, against the real compiler: the command line, a kill
mid-sweep, a Dask cluster, and agreement with ``cimdse compile``."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cimdse import plots, sweep
from cimdse.cli import main

ROOT = Path(__file__).parents[1]

SMALL = """\
models: [lenet, mlp]
archs: [demo]
grid:
  crossbar.rows: [64, 128]
  crossbar.adcs: [4, 128]    # 128 ADCs on 64 columns: invalid at that grid point
bits: ["8,8", "4,4"]
policies: [short.yaml]       # two layers only: does not fit either network
"""


def read_rows(out: Path) -> list[dict[str, str]]:
    if not (out / "sweep.csv").exists():
        return []
    with open(out / "sweep.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def small_config(tmp_path):
    (tmp_path / "short.yaml").write_text("- [8, 8]\n- [4, 4]\n")
    path = tmp_path / "sweep.yaml"
    path.write_text(SMALL)
    return path


def test_cli_sweep_reports_invalid_points_and_agrees_with_compile(tmp_path, capsys, small_config):
    out = tmp_path / "out"
    assert main(["sweep", str(small_config), "--out", str(out), "--jobs", "1"]) == 0
    assert "24 points: 0 already done, 8 ok, 16 invalid" in capsys.readouterr().out
    rows = read_rows(out)
    assert len(rows) == 24 == len({r["point_id"] for r in rows})
    assert (out / "sweep.yaml").is_file()
    for r in rows:
        if r["crossbar.adcs"] == "128":
            assert "adcs (128) cannot exceed cols (64)" in r["status"]
        elif r["policy"]:
            assert r["status"].startswith("invalid: ") and "has 2 layers, the network has" in r["status"]
        else:
            assert r["status"] == "ok" and float(r["latency_s"]) > 0
    w8 = {(r["model"], r["crossbar.rows"]): r for r in rows if r["status"] == "ok" and r["bits"] == "8,8"}
    assert all(float(r["speedup_vs_w8a8"]) == pytest.approx(1.0) for r in w8.values())

    # The same point through `cimdse compile` gives the same numbers.
    point = next(r for r in rows if r["status"] == "ok" and r["bits"] == "4,4" and r["model"] == "lenet")
    cdir = tmp_path / "compiled"
    assert main([
        "compile", "--model", "lenet", "--arch", "demo", "--set", f"crossbar.rows={point['crossbar.rows']}",
        "--set", "crossbar.adcs=4", "--bits", "4,4", "--out", str(cdir),
    ]) == 0  # fmt: skip
    summary = pd.read_csv(cdir / "summary.csv").iloc[0]
    for col in ("latency_s", "interval_s", "energy_j", "area_mm2", "occupied_area_mm2", "resident_area_mm2",
                "crossbars", "speedup_vs_w8a8"):  # fmt: skip
        assert float(point[col]) == pytest.approx(float(summary[col]), rel=1e-9), col

    # Reports from both kinds of folder.
    plots.make_report(out)
    plots.make_report(cdir)
    for png in (out / "sweep_pareto.png", cdir / "compile_layers.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"
    assert "## Compile" in (cdir / "report.md").read_text()


KILL_CONFIG = """\
models: [lenet, mlp, resnet20]
archs: [demo]
grid:
  crossbar.rows: [32, 64, 128, 256]     # 32 < demo's active_rows: invalid points too
  crossbar.cell_bits: [1, 2, 4]
  crossbar.adc_bits: [4, 6, 8]
  chip.tiles: [2, 4]
bits: ["8,8", "4,4", "2,4"]
"""
KILL_POINTS = 3 * 4 * 3 * 3 * 2 * 3


def test_cli_sweep_killed_with_sigkill_resumes_with_every_point_once(tmp_path):
    config = tmp_path / "kill.yaml"
    config.write_text(KILL_CONFIG)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cimdse", "sweep", str(config), "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(read_rows(out)) < 10:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no rows appeared"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its pool workers
        proc.communicate()
    first = read_rows(out)
    assert 10 <= len(first) < KILL_POINTS, "the sweep finished before the kill; make it bigger"
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = read_rows(out)
    ids = [r["point_id"] for r in rows]
    assert len(ids) == len(set(ids)) == KILL_POINTS
    plan = sweep.plan(sweep.load_config(config), base=tmp_path)
    assert set(ids) == {p.id for p in plan.points}
    assert f"{KILL_POINTS} points: {len(first)} already done" in done.stdout  # nothing written twice
    assert rows[: len(first)] == first  # earlier rows untouched


def test_dask_local_cluster_with_the_real_evaluator(tmp_path, small_config):
    distributed = pytest.importorskip("distributed")
    plan = sweep.plan(sweep.load_config(small_config), base=tmp_path)
    sweep.run_sweep(plan, tmp_path / "local", progress=False)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        summary = sweep.run_sweep(plan, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False)
    assert summary.written == 24 and not summary.failed
    key = lambda r: r["point_id"]
    assert sorted(read_rows(tmp_path / "local"), key=key) == sorted(read_rows(tmp_path / "dask"), key=key)


def test_cli_sweep_on_a_dask_scheduler_address(tmp_path, small_config):
    """`--scheduler tcp://...` from a separate process; the workers are threads of this one."""
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None
    ) as cluster:
        cmd = [sys.executable, "-m", "cimdse", "sweep", str(small_config), "--out", str(out)]
        proc = subprocess.run(
            [*cmd, "--scheduler", cluster.scheduler_address], cwd=ROOT, capture_output=True, text=True, timeout=180
        )
    assert proc.returncode == 0, proc.stderr
    assert "24 points: 0 already done, 8 ok, 16 invalid" in proc.stdout
    assert len(read_rows(out)) == 24


def test_example_sweeps_run(tmp_path, capsys):
    out = tmp_path / "user"
    assert main(["sweep", str(ROOT / "examples" / "sweep_user.yaml"), "--out", str(out), "--jobs", "1"]) == 0
    assert "0 invalid" in capsys.readouterr().out
    rows = read_rows(out)
    mixed = [r for r in rows if r["policy"] == "policy_user_mixed.yaml"]
    assert mixed and all(float(r["speedup_vs_w8a8"]) > 1 for r in mixed)
