"""Sweep machinery: config validation, grid expansion, the crash-safe CSV, resume, and
the three executors (in-process, local pool, Dask), with a stand-in evaluator."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
from sweep_fakes import broken_evaluator, fake_evaluator

from cimdse import sweep
from cimdse.cli import main
from cimdse.errors import CimdseError

CONFIG = """\
models: [mlp, lenet]
archs: [demo]
grid:
  crossbar.rows: [64, 128]
  crossbar.adcs: [4, 128]   # 128 ADCs on a 64-column crossbar is invalid
bits: ["8,8", "4,4", "2,4"]
"""
N_POINTS = 2 * 1 * 2 * 2 * 3


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def make_plan(tmp_path: Path, text: str = CONFIG) -> sweep.Plan:
    path = write(tmp_path, text)
    return sweep.plan(sweep.load_config(path), base=tmp_path, where=str(path))


def read_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "sweep.csv", newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- config
@pytest.mark.parametrize(
    "text, message",
    [
        ("models: [mlp]\narchs: [demo]\nbits: ['8,8']\ncolour: red\n", "colour: unknown key"),
        ("models: []\narchs: [demo]\nbits: ['8,8']\n", "models: List should have at least 1 item"),
        ("models: [mlp]\narchs: [demo]\nbits: ['8;8']\n", "bits '8;8': expected W,A"),
        ("models: [mlp]\narchs: [demo]\nbits: ['8,0']\n", "a_bits = 0 outside 1..8"),
        ("models: [mlp]\narchs: [demo]\n", "give at least one of 'bits', 'policies' or 'search'"),
        ("models: [mlp, mlp]\narchs: [demo]\nbits: ['8,8']\n", "'mlp' is listed twice"),
        ("models: [mlp]\narchs: [demo]\nbits: ['8,8']\ngrid: {crossbar.rowz: [1]}\n", "has no field 'rowz'"),
        ("models: [mlp]\narchs: [demo]\nbits: ['8,8']\ngrid: {crossbar: [1]}\n", "is a section"),
        ("models: [mlp]\narchs: [demo]\nbits: ['8,8']\ngrid: {crossbar.rows: []}\n", "empty value list"),
        ("models: [mlp]\narchs: [demo]\nbits: ['8,8']\nsearch: {}\n", "search.episodes: Field required"),
        ("models: [mlp\narchs: [demo]\n", "malformed YAML"),
        ("- mlp\n", "expected a mapping"),
    ],
)
def test_bad_configs_get_one_clear_message(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(CimdseError, match=None) as err:
        sweep.load_config(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_grid_keys_may_reach_into_free_form_sections():
    sweep.check_grid_key("crossbar.costs.adc_power_mw")
    sweep.check_grid_key("crossbar.timing.read_ns")
    with pytest.raises(ValueError, match="is a value, not a section"):
        sweep.check_grid_key("crossbar.rows.x")


def test_plan_expands_the_cross_product_with_stable_unique_ids(tmp_path):
    plan = make_plan(tmp_path)
    assert len(plan.units) == 2 * 2 * 2
    ids = [p.id for p in plan.points]
    assert len(ids) == N_POINTS == len(set(ids))
    (tmp_path / "elsewhere").mkdir()
    again = make_plan(tmp_path / "elsewhere")
    assert [p.id for p in again.points] == ids  # ids do not depend on where the sweep runs
    assert plan.columns == [
        "point_id", "model", "input", "arch", "crossbar.rows", "crossbar.adcs", "bits", "policy",
        "latency_s", "interval_s", "energy_j", "area_mm2", "occupied_area_mm2", "resident_area_mm2",
        "crossbars", "speedup_vs_w8a8", "status",
    ]  # fmt: skip
    assert plan.points[0].input == (1, 8, 8)


def test_plan_checks_models_archs_and_files_up_front(tmp_path):
    with pytest.raises(CimdseError, match="unknown model 'nosuchnet'"):
        make_plan(tmp_path, "models: [nosuchnet]\narchs: [demo]\nbits: ['8,8']\n")
    with pytest.raises(CimdseError, match="no such architecture file or preset"):
        make_plan(tmp_path, "models: [mlp]\narchs: [nosuch.yaml]\nbits: ['8,8']\n")
    with pytest.raises(CimdseError, match="nope.yaml: no such policy file"):
        make_plan(tmp_path, "models: [mlp]\narchs: [demo]\npolicies: [nope.yaml]\n")
    (tmp_path / "net.py").write_text("import torch\ndef make():\n    return torch.nn.Linear(4, 2)\n")
    with pytest.raises(CimdseError, match="give its shape under 'input:'"):
        make_plan(tmp_path, "models: ['net.py:make']\narchs: [demo]\nbits: ['8,8']\n")
    plan = make_plan(
        tmp_path, "models: ['net.py:make', mlp]\ninput: {'net.py:make': 4}\narchs: [demo]\nbits: ['8,8']\n"
    )
    assert plan.units[0].model_ref == f"{tmp_path / 'net.py'}:make"  # relative to the config file
    assert [u.input for u in plan.units] == [(4,), (1, 8, 8)]


# ---------------------------------------------------------------- running
def test_serial_sweep_writes_every_point_once_and_reports_invalid_ones(tmp_path):
    plan = make_plan(tmp_path)
    out = tmp_path / "out"
    calls: list[tuple[int, int]] = []
    summary = sweep.run_sweep(plan, out, evaluator=fake_evaluator, progress=lambda d, t: calls.append((d, t)))
    rows = read_rows(out)
    assert len(rows) == N_POINTS == summary.written
    assert calls[-1] == (N_POINTS, N_POINTS) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert {r["point_id"] for r in rows} == {p.id for p in plan.points}
    bad = [r for r in rows if r["crossbar.adcs"] == "128"]
    assert len(bad) == summary.invalid == N_POINTS // 2
    assert all(r["status"].startswith("invalid: ") and "adcs (128) cannot exceed cols" in r["status"] for r in bad)
    assert all(r["latency_s"] == "" for r in bad)
    good = [r for r in rows if r["status"] == "ok"]
    assert {r["bits"] for r in good} == {"8,8", "4,4", "2,4"}
    assert all(float(r["latency_s"]) > 0 for r in good)


def test_rerun_computes_nothing_and_a_cut_last_line_is_redone(tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    monkeypatch.setenv("CIMDSE_FAKE_CALLS", str(calls))
    plan = make_plan(tmp_path)
    out = tmp_path / "out"
    sweep.run_sweep(plan, out, evaluator=fake_evaluator, progress=False)
    assert len(calls.read_text().split()) == N_POINTS
    again = sweep.run_sweep(plan, out, evaluator=fake_evaluator, progress=False)
    assert again.already_done == N_POINTS and again.written == 0
    assert len(calls.read_text().split()) == N_POINTS

    # A kill in the middle of a write leaves a partial last line: it is trimmed and redone.
    data = (out / "sweep.csv").read_bytes()
    (out / "sweep.csv").write_bytes(data[:-25])
    third = sweep.run_sweep(plan, out, evaluator=fake_evaluator, progress=False)
    assert third.written == 1
    rows = read_rows(out)
    assert len(rows) == N_POINTS == len({r["point_id"] for r in rows})
    assert (out / "sweep.csv").read_bytes() == data  # same row, same bytes


def test_header_cut_by_a_kill_is_rewritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.csv").write_text("point_id,mod")
    sweep.run_sweep(make_plan(tmp_path), out, evaluator=fake_evaluator, progress=False)
    assert len(read_rows(out)) == N_POINTS


def test_a_folder_of_another_sweep_is_refused(tmp_path):
    out = tmp_path / "out"
    sweep.run_sweep(make_plan(tmp_path), out, evaluator=fake_evaluator, progress=False)
    other = make_plan(tmp_path, "models: [mlp]\narchs: [demo]\nbits: ['8,8']\n")
    with pytest.raises(CimdseError, match="written by a different sweep"):
        sweep.run_sweep(other, out, evaluator=fake_evaluator, progress=False)


def test_two_sweeps_cannot_write_one_folder_at_once(tmp_path):
    plan = make_plan(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    first = sweep.ResultLog(out, plan.columns)
    first.open()
    try:
        with pytest.raises(CimdseError, match="another sweep is writing"):
            sweep.run_sweep(plan, out, evaluator=fake_evaluator, progress=False)
    finally:
        first.close()


def test_evaluator_bugs_are_not_written_so_a_rerun_retries_them(tmp_path):
    plan = make_plan(tmp_path)
    out = tmp_path / "out"
    summary = sweep.run_sweep(plan, out, evaluator=broken_evaluator, progress=False)
    assert len(summary.failed) == N_POINTS and "RuntimeError: simulated bug" in summary.failed[0]
    assert read_rows(out) == []
    assert sweep.run_sweep(plan, out, evaluator=fake_evaluator, progress=False).written == N_POINTS


def test_local_pool_gives_the_same_rows_as_serial(tmp_path):
    plan = make_plan(tmp_path)
    sweep.run_sweep(plan, tmp_path / "a", evaluator=fake_evaluator, progress=False)
    sweep.run_sweep(plan, tmp_path / "b", jobs=2, evaluator=fake_evaluator, progress=False)
    key = lambda r: r["point_id"]
    assert sorted(read_rows(tmp_path / "a"), key=key) == sorted(read_rows(tmp_path / "b"), key=key)


def test_dask_cluster_gives_the_same_rows_as_serial(tmp_path):
    distributed = pytest.importorskip("distributed")
    plan = make_plan(tmp_path)
    sweep.run_sweep(plan, tmp_path / "a", evaluator=fake_evaluator, progress=False)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        summary = sweep.run_sweep(
            plan, tmp_path / "b", scheduler=cluster.scheduler_address, evaluator=fake_evaluator, progress=False
        )
    assert summary.written == N_POINTS and not summary.failed
    key = lambda r: r["point_id"]
    assert sorted(read_rows(tmp_path / "a"), key=key) == sorted(read_rows(tmp_path / "b"), key=key)


def test_unreachable_scheduler_is_one_message_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(CimdseError, match="cannot reach the Dask scheduler"):
        sweep.run_sweep(make_plan(tmp_path), out, scheduler="tcp://127.0.0.1:9", evaluator=fake_evaluator)
    assert not out.exists()


DRIVER = """\
import sys
sys.path.insert(0, {tests!r})
from sweep_fakes import fake_evaluator
from cimdse import sweep
from cimdse.cli import main
if __name__ == "__main__":  # spawned pool workers import this file too
    cfg = sweep.load_config({config!r})
    plan = sweep.plan(cfg, base={base!r})
    s = sweep.run_sweep(plan, {out!r}, jobs=2, evaluator=fake_evaluator, progress=False)
    print(s.already_done, s.written)
"""


@pytest.mark.slow  # test_sweep_e2e does the same through the command line with the real compiler
def test_sigkill_mid_sweep_then_rerun_holds_every_point_exactly_once(tmp_path):
    """The machinery alone, in a local pool: kill the whole process group mid-run."""
    plan = make_plan(tmp_path)
    out = tmp_path / "out"
    script = tmp_path / "driver.py"
    tests_dir = str(Path(__file__).parent)
    script.write_text(
        DRIVER.format(tests=tests_dir, config=str(tmp_path / "sweep.yaml"), base=str(tmp_path), out=str(out))
    )
    calls = tmp_path / "calls"
    root = str(Path(__file__).parents[1])  # this checkout, not an installed copy
    env = {**os.environ, "PYTHONPATH": root, "CIMDSE_FAKE_SLEEP": "0.3", "CIMDSE_FAKE_CALLS": str(calls)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(read_rows(out) if (out / "sweep.csv").exists() else []) >= 3:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no rows appeared")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = read_rows(out)
    assert 3 <= len(first) < N_POINTS
    env["CIMDSE_FAKE_SLEEP"] = "0"
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = read_rows(out)
    ids = [r["point_id"] for r in rows]
    assert len(ids) == len(set(ids)) == N_POINTS
    assert set(ids) == {p.id for p in plan.points}
    assert done.stdout.split() == [str(len(first)), str(N_POINTS - len(first))]
    # Units killed in flight ran twice; a unit whose rows were written never did.
    written_first = {r["point_id"] for r in first}
    rerun_calls = calls.read_text().split()
    assert not written_first & set(rerun_calls[len(rerun_calls) - (N_POINTS - len(first)) :])


# ---------------------------------------------------------------- search hook
def test_search_sweeps_say_they_need_the_search_module(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cimdse.search", None)  # import fails as if absent
    plan = make_plan(tmp_path, "models: [mlp]\narchs: [demo]\nsearch: {episodes: 3}\n")
    with pytest.raises(CimdseError, match="search sweeps need the search module"):
        sweep.run_sweep(plan, tmp_path / "out", evaluator=fake_evaluator)
    assert not (tmp_path / "out").exists()


def test_search_points_go_through_the_hook(tmp_path, monkeypatch):
    seen = []

    def sweep_point(model_ref, input_shape, arch, options, out_dir):
        seen.append((model_ref, input_shape, arch.crossbar.rows, options, out_dir))
        return {"latency_s": 1.0, "energy_j": 2.0, "area_mm2": 3.0, "crossbars": 4, "speedup_vs_w8a8": 1.5,
                "val_acc": 0.9, "policy": str(out_dir / "best_policy.yaml")}  # fmt: skip

    def sweep_options(model_ref, options):
        seen.append(("checked", model_ref, options))

    stand_in = types.SimpleNamespace(sweep_point=sweep_point, sweep_options=sweep_options)
    monkeypatch.setitem(sys.modules, "cimdse.search", stand_in)
    text = "models: [mlp]\narchs: [demo]\ngrid: {crossbar.rows: [64, 128]}\nbits: ['8,8']\n"
    text += "search: {episodes: 3, lr: 0.1}\n"
    plan = make_plan(tmp_path, text)
    assert "val_acc" in plan.columns
    sweep.run_sweep(plan, tmp_path / "out", progress=False)  # the real evaluator
    rows = read_rows(tmp_path / "out")
    searched = [r for r in rows if r["val_acc"]]
    assert [r["crossbar.rows"] for r in searched] == ["64", "128"]
    assert all(r["policy"].endswith("best_policy.yaml") and r["latency_s"] == "1.0" for r in searched)
    assert seen[0] == ("checked", "mlp", {"episodes": 3, "lr": 0.1})  # before any point ran
    assert seen[1][3] == {"episodes": 3, "lr": 0.1} and seen[1][1] == (1, 8, 8)
    assert {r["bits"] for r in rows if not r["val_acc"]} == {"8,8"}


def test_bad_cost_values_in_the_grid_are_invalid_points_not_crashes(tmp_path):
    """A zero ADC rate used to divide by zero in the worker: a crash that a rerun retries.
    It is bad input at that grid point, so the point is written, invalid, once."""
    text = "models: [mlp]\narchs: [demo]\nbits: ['8,8']\n"
    text += "grid: {crossbar.costs.adc_rate_gsps: [0, .nan, -1, 1.2]}\n"
    summary = sweep.run_sweep(make_plan(tmp_path, text), tmp_path / "out", progress=False)  # the real evaluator
    assert summary.failed == [] and (summary.ok, summary.invalid) == (1, 3)
    rows = {r["crossbar.costs.adc_rate_gsps"]: r for r in read_rows(tmp_path / "out")}
    assert rows["1.2"]["status"] == "ok" and float(rows["1.2"]["energy_j"]) > 0
    for value, shown in (("0", "0.0"), ("nan", "nan"), ("-1", "-1.0")):
        status = rows[value]["status"]
        assert status.startswith("invalid: ") and f"adc_rate_gsps = {shown}: must be a finite number > 0" in status
    again = sweep.run_sweep(make_plan(tmp_path, text), tmp_path / "out", progress=False)
    assert again.already_done == 4 and again.written == 0


# ---------------------------------------------------------------- the command
@pytest.mark.parametrize(
    "text, message",
    [
        ("models: [mlp\n", "malformed YAML"),
        ("models: [mlp]\narchs: [demo]\nbits: ['8,8']\nextra: 1\n", "extra: unknown key"),
        ("models: [nosuchnet]\narchs: [demo]\nbits: ['8,8']\n", "unknown model 'nosuchnet'"),
        ("models: [mlp]\narchs: [demo]\nbits: ['8,9']\n", "a_bits = 9 outside 1..8"),
    ],
)
def test_cli_bad_config_is_one_message_exit_2_and_no_files(tmp_path, capsys, text, message):
    path = write(tmp_path, text)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("cimdse: error: ")
    assert not out.exists()


def test_cli_missing_config_and_bad_jobs(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "cannot read sweep config" in capsys.readouterr().err
    path = write(tmp_path, "models: [mlp]\narchs: [demo]\nbits: ['8,8']\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--jobs", "0"]) == 2
    assert "--jobs 0: must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_as_a_process_prints_no_traceback(tmp_path, run_cli):
    path = write(tmp_path, "models: [mlp]\narchs: [demo]\nbits: ['8,8']\ncolour: red\n")
    proc = run_cli("sweep", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"cimdse: error: {path}: colour: unknown key (known: " + ", ".join(sweep.SweepConfig.model_fields) + ")"
    ]
