"""Several search runs (seeds) side by side: per arch and method, the mean, standard
deviation (``ddof=1``; 0 for one run), minimum and maximum over runs of the
hypervolume, the chosen policy's speedup and test-accuracy drop, and how often that
policy was within the bound; plus each method's hypervolume relative to the best
method's mean on that arch. Reads each run's ``summary.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cimdse.errors import CimdseError

__all__ = ["COMPARE_COLUMNS", "compare_runs", "read_summaries"]

_NEEDED = ("arch", "method", "evaluations", "hypervolume", "speedup_vs_w8a8", "acc_drop_pp", "within_bound")
COMPARE_COLUMNS = [
    "arch", "method", "runs", "evaluations",
    "hypervolume_mean", "hypervolume_std", "hypervolume_min", "hypervolume_max", "hypervolume_vs_best",
    "speedup_mean", "speedup_std", "acc_drop_pp_mean", "acc_drop_pp_std", "within_bound_share",
]  # fmt: skip


def read_summaries(runs: Sequence[str | Path]) -> pd.DataFrame:
    """The runs' summary.csv rows, with a ``run`` column (the folder)."""
    if not runs:
        raise CimdseError("give at least one search output folder")
    frames = []
    for run in runs:
        path = Path(run) / "summary.csv"
        if not path.is_file():
            raise CimdseError(f"{run}: no summary.csv (not a search output folder)")
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError) as err:
            raise CimdseError(f"{path}: unreadable ({err})") from None
        missing = [c for c in _NEEDED if c not in df.columns]
        if missing:
            raise CimdseError(f"{path}: lacks column(s) {', '.join(missing)} (written by an older cimdse?)")
        for col in ("evaluations", "hypervolume", "speedup_vs_w8a8", "acc_drop_pp"):
            if not pd.api.types.is_numeric_dtype(df[col]):
                raise CimdseError(f"{path}: column {col} is not numeric")
        frames.append(df.assign(run=str(run)))
    return pd.concat(frames, ignore_index=True)


def compare_runs(runs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per (arch, method) over the runs (see the module doc)."""
    df = read_summaries(runs)
    df["within_bound"] = df["within_bound"].astype(str).str.lower().isin(("true", "1"))
    g = df.groupby(["arch", "method"], sort=False)
    out = pd.DataFrame(
        {
            "runs": g["run"].nunique(),
            "evaluations": g["evaluations"].mean(),
            "hypervolume_mean": g["hypervolume"].mean(),
            "hypervolume_std": g["hypervolume"].std(ddof=1).fillna(0.0),
            "hypervolume_min": g["hypervolume"].min(),
            "hypervolume_max": g["hypervolume"].max(),
            "speedup_mean": g["speedup_vs_w8a8"].mean(),
            "speedup_std": g["speedup_vs_w8a8"].std(ddof=1).fillna(0.0),
            "acc_drop_pp_mean": g["acc_drop_pp"].mean(),
            "acc_drop_pp_std": g["acc_drop_pp"].std(ddof=1).fillna(0.0),
            "within_bound_share": g["within_bound"].mean(),
        }
    ).reset_index()
    best = out.groupby("arch")["hypervolume_mean"].transform("max")
    out["hypervolume_vs_best"] = (out["hypervolume_mean"] / best.where(best > 0)).fillna(0.0)
    return out[COMPARE_COLUMNS]
