"""Running a planned sweep: skip the points already logged, run the rest, log each row."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cimdse.errors import CimdseError
from cimdse.files import output_dir
from cimdse.sweep.config import SweepConfig, save_config
from cimdse.sweep.evaluate import Evaluator, check_search_options, evaluate_unit, one_line, search_hook
from cimdse.sweep.execute import dask, dask_client, pool, serial
from cimdse.sweep.log import ResultLog
from cimdse.sweep.plan import Plan, Point


@dataclass
class SweepSummary:
    total: int
    already_done: int = 0
    ok: int = 0
    invalid: int = 0
    failed: list[str] = field(default_factory=list)  # "point_id: message" not written, retried by a rerun
    csv_path: Path | None = None

    @property
    def written(self) -> int:
        return self.ok + self.invalid


def _row(p: Point, res: Mapping[str, Any], grid_keys: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "point_id": p.id,
        "model": p.model,
        "input": "x".join(map(str, p.input)),
        "arch": p.arch,
        "bits": p.bits,
        "policy": p.policy,
    }
    row.update(dict(p.grid))
    row.update({k: v for k, v in res.items() if k != "policy" or p.search})
    return row


def _log_unit(
    unit: Any,
    result: dict[str, Any],
    grid_keys: Any,
    log: ResultLog,
    summary: SweepSummary,
    on_row: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Append one finished unit's rows to the log and count them."""
    for p in unit.points:
        res = result.get(p.id)
        if res is None:
            summary.failed.append(f"{p.id}: the evaluator returned no result")
            continue
        row = _row(p, res, grid_keys)
        log.append(row)
        if row.get("status") == "ok":
            summary.ok += 1
        else:
            summary.invalid += 1
        if on_row is not None:
            on_row(row)


def run_sweep(
    sweep_plan: Plan,
    out_dir: str | Path,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    evaluator: Evaluator = evaluate_unit,
    progress: Callable[[int, int], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    config: SweepConfig | None = None,
    config_path: str | Path | None = None,
) -> SweepSummary:
    """Evaluate every point of the plan not yet in ``out_dir/sweep.csv`` and append it.

    ``jobs`` 1 runs in this process; more uses a local process pool; ``scheduler`` (a
    Dask address) sends units to that cluster instead. ``progress(done, total)`` is
    called as points finish (the CLI draws a bar with it). ``config``, when given, is
    saved as ``out_dir/sweep.yaml``.
    """
    if jobs < 1:
        raise CimdseError(f"--jobs {jobs}: must be at least 1")
    out = Path(out_dir)
    if sweep_plan.has_search:
        search_hook()  # fail now, before any point runs
        check_search_options([ref for _, ref, _ in sweep_plan.models], dict(sweep_plan.search))
    client = dask_client(scheduler) if scheduler else None
    log = ResultLog(out, sweep_plan.columns)
    try:
        output_dir(out)
        done = log.open()
    except BaseException:
        if client is not None:
            client.close()
        raise
    if config is not None:
        save_config(config, out, config_path)
    summary = SweepSummary(total=len(sweep_plan.points), csv_path=log.path)
    try:
        if done:  # a first pass counts what a previous run finished; units are made again below, one at a time
            summary.already_done = sum(p.id in done for p in sweep_plan.points)
        total, finished = summary.total - summary.already_done, 0
        todo = (
            u.with_points(rest, str(out / "search"))
            for u in sweep_plan.units
            if (rest := [p for p in u.points if p.id not in done])
        )
        units_left = -(-total // max(1, sweep_plan.points_per_unit))  # at least; exact when none is half done
        if client is not None:
            stream = dask(todo, evaluator, client)
        elif jobs > 1 and units_left > 1:
            stream = pool(todo, evaluator, min(jobs, units_left))
        else:
            stream = serial(todo, evaluator)
        for unit, result in stream:
            finished += len(unit.points)
            if isinstance(result, BaseException):
                summary.failed += [f"{p.id}: {type(result).__name__}: {one_line(result)}" for p in unit.points]
            else:
                _log_unit(unit, result, sweep_plan.grid_keys, log, summary, on_row)
            if progress:
                progress(finished, total)
    finally:
        log.close()
    return summary
