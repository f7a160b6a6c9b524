"""Parameter sweeps: a YAML config becomes a grid of points, evaluated in parallel, one CSV row each.

    cfg = load_config("sweep.yaml")                 # config: schema and checks
    sweep_plan = plan(cfg, base="folder/of/config") # plan: units of points, CSV columns
    summary = run_sweep(sweep_plan, "runs/sweep", jobs=4)   # run: resumable, crash-safe

One responsibility per module: ``config`` (schema), ``plan`` (points and units),
``evaluate`` (one unit with the real compiler, in workers), ``log`` (``sweep.csv``),
``execute`` (serial, process pool, Dask), ``run`` (ties them together).
"""

from cimdse.sweep.config import CONFIG_COPY, SearchOptions, SweepConfig, check_grid_key, load_config, save_config
from cimdse.sweep.evaluate import Evaluator, UnitResult, evaluate_unit, one_line, search_hook
from cimdse.sweep.log import CSV_NAME, LOCK_NAME, ResultLog
from cimdse.sweep.plan import MAX_POINTS, METRICS, SEARCH_METRICS, Plan, Point, Unit, plan
from cimdse.sweep.run import SweepSummary, run_sweep

__all__ = [
    "CONFIG_COPY",
    "CSV_NAME",
    "LOCK_NAME",
    "MAX_POINTS",
    "METRICS",
    "SEARCH_METRICS",
    "Evaluator",
    "Plan",
    "Point",
    "ResultLog",
    "SearchOptions",
    "SweepConfig",
    "SweepSummary",
    "Unit",
    "UnitResult",
    "check_grid_key",
    "evaluate_unit",
    "load_config",
    "one_line",
    "plan",
    "run_sweep",
    "save_config",
    "search_hook",
]
