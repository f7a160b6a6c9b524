"""Several search runs (seeds) side by side: per arch and method, the mean, standard
deviation (``ddof=1``; 0 for one run), minimum and maximum over runs of the
hypervolume, the chosen policy's speedup and test-accuracy drop, and how often that
policy was within the bound; plus each method's hypervolume relative to the best
method's mean on that arch. Reads each run's ``summary.csv`` and ``search_config.yaml``.

Only runs of one experiment are compared: they may differ in their seed (and where
their data lay), nothing else that shapes the result (:data:`SAME_SETTINGS`, and the
archs and methods of their summaries); a summary row cut short or holding no number
where one belongs is refused, not averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cimdse.errors import CimdseError
from cimdse.files import read_csv, read_yaml

__all__ = ["COMPARE_COLUMNS", "SAME_SETTINGS", "compare_runs", "read_summaries"]

_NEEDED = ("arch", "method", "evaluations", "hypervolume", "speedup_vs_w8a8", "acc_drop_pp", "within_bound")
_NUMBERS = ("evaluations", "hypervolume", "speedup_vs_w8a8", "acc_drop_pp")
#: search settings (``search_config.yaml``) that compared runs must share
SAME_SETTINGS = (
    "dataset", "model", "max_acc_drop", "episodes", "finetune_epochs", "finetune_within_pp", "final_epochs",
    "final_top_k", "pretrain_epochs", "accuracy", "hardware_aware", "min_bits", "max_bits", "first_last_8bit",
    "weight_cell_multiple", "reward",
)  # fmt: skip
COMPARE_COLUMNS = [
    "arch", "method", "runs", "evaluations",
    "hypervolume_mean", "hypervolume_std", "hypervolume_min", "hypervolume_max", "hypervolume_vs_best",
    "speedup_mean", "speedup_std", "acc_drop_pp_mean", "acc_drop_pp_std", "within_bound_share",
]  # fmt: skip


def read_summaries(runs: Sequence[str | Path]) -> pd.DataFrame:
    """The runs' summary.csv rows, with a ``run`` column (the folder); the runs must be
    of one experiment (see the module doc)."""
    if not runs:
        raise CimdseError("give at least one search output folder")
    frames = []
    settings: list[dict] = []
    for run in runs:
        path = Path(run) / "summary.csv"
        if not path.is_file():
            raise CimdseError(f"{run}: no summary.csv (not a search output folder)")
        df = read_csv(path, "search summary", _NEEDED)
        for col in _NUMBERS:
            values = pd.to_numeric(df[col], errors="coerce")
            if values.isna().any():
                row = int(values.isna().to_numpy().argmax()) + 1
                raw = df[col].iloc[row - 1]
                shown = "an empty cell" if pd.isna(raw) else repr(str(raw))
                raise CimdseError(f"{path}: row {row}, column {col}: {shown} is not a number")
            df[col] = values
        flags = df["within_bound"].astype(str).str.lower()
        if not flags.isin(("true", "false")).all():
            row = int((~flags.isin(("true", "false"))).to_numpy().argmax()) + 1
            raise CimdseError(f"{path}: row {row}, column within_bound: expected True or False")
        df["within_bound"] = flags == "true"
        if df.duplicated(["arch", "method"]).any():
            raise CimdseError(f"{path}: an (arch, method) pair has two rows")
        settings.append(_settings(Path(run)))
        frames.append(df.assign(run=str(run)))
    _check_same(runs, settings, frames)
    return pd.concat(frames, ignore_index=True)


def _settings(run: Path) -> dict:
    path = run / "search_config.yaml"
    if not path.is_file():
        raise CimdseError(f"{run}: no search_config.yaml (not a search output folder, or an older cimdse's)")
    data = read_yaml(path, "search settings")
    if not isinstance(data, dict):
        raise CimdseError(f"{path}: expected a mapping of search settings")
    return data


def _check_same(runs: Sequence[str | Path], settings: list[dict], frames: list[pd.DataFrame]) -> None:
    """Refuse runs of different experiments, naming the first setting that differs."""
    first = runs[0]
    for run, other, df in zip(runs[1:], settings[1:], frames[1:], strict=True):
        for key in SAME_SETTINGS:
            if settings[0].get(key) != other.get(key):
                raise CimdseError(
                    f"{first} and {run} are different experiments: {key} {settings[0].get(key)!r} vs "
                    f"{other.get(key)!r} (compare runs that differ only in their seed)"
                )
        for what in ("arch", "method"):
            mine, theirs = list(dict.fromkeys(frames[0][what])), list(dict.fromkeys(df[what]))
            if sorted(mine) != sorted(theirs):
                raise CimdseError(
                    f"{first} and {run} are different experiments: {what}s {', '.join(map(str, mine))} vs "
                    f"{', '.join(map(str, theirs))} (or a summary.csv lost rows)"
                )
        if len(df) != len(frames[0]):
            raise CimdseError(f"{first} and {run}: {len(frames[0])} vs {len(df)} summary rows (a summary lost rows?)")


def compare_runs(runs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per (arch, method) over the runs (see the module doc)."""
    df = read_summaries(runs)
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
