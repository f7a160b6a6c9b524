"""Plots and a ``report.md`` from a result folder, whichever command wrote it.

The kind of folder is told by the files it holds:

- sweep:   ``sweep.csv``                   -> latency vs area with the Pareto front per model
- compile: ``layers.csv`` + ``summary.csv`` -> per-layer latency and energy breakdown
- search:  ``best_policy.yaml`` and/or ``history.csv`` (episode, method, arch, policy,
  latency_s, speedup_vs_w8a8, val_acc, reward) -> bits-per-layer heatmap, search progress

A folder holding several kinds gets every section. Matplotlib is used through its
object API on the Agg canvas: no display, no global pyplot state. Every file is
written through a temporary name and renamed, so a killed report leaves none half-written.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cimdse.errors import CimdseError
from cimdse.files import atomic_write, output_dir, read_csv
from cimdse.pareto import non_dominated
from cimdse.policy import parse_policy_text, read_policy

SWEEP_FILES = ("sweep.csv",)
COMPILE_FILES = ("layers.csv", "summary.csv")
SEARCH_FILES = ("best_policy.yaml", "history.csv")  # either one
HISTORY_COLUMNS = ("episode", "method", "arch", "policy", "latency_s", "speedup_vs_w8a8", "val_acc", "reward")
MAX_BAR_LAYERS = 60  # beyond this, the per-layer plot shows the slowest layers only


# ---------------------------------------------------------------- files
def _save(fig: Any, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _read_csv(path: Path, required: Sequence[str], numeric: Sequence[str] = ()) -> pd.DataFrame:
    """The CSV with its ``required`` columns and at least one row, none cut short
    (:func:`cimdse.files.read_csv`); ``numeric`` columns (those present) must hold
    numbers or nothing: a plot of text would be nonsense, not a report."""
    df = read_csv(path, "result table", required)
    for col in (c for c in numeric if c in df.columns):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise CimdseError(f"{path}: column {col}, row {row + 1}: {df[col].iloc[row]!r} is not a number")
        df[col] = values
    return df


def detect(folder: str | Path) -> list[str]:
    """The kinds of result a folder holds: any of 'sweep', 'compile', 'search'."""
    folder = Path(folder)
    kinds = []
    if all((folder / f).is_file() for f in SWEEP_FILES):
        kinds.append("sweep")
    if all((folder / f).is_file() for f in COMPILE_FILES):
        kinds.append("compile")
    if any((folder / f).is_file() for f in SEARCH_FILES):
        kinds.append("search")
    return kinds


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return ""
        return f"{v:.4g}"
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def markdown_table(df: pd.DataFrame, max_rows: int = 20) -> str:
    """A GitHub table without pandas' optional tabulate dependency."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.head(max_rows).iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]).replace("|", "\\|") for c in cols) + " |")
    if len(df) > max_rows:
        lines.append(f"\n({len(df) - max_rows} more rows not shown)")
    return "\n".join(lines)


# ---------------------------------------------------------------- sweep
def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points no other point beats in both x and y (both minimized)."""
    order = np.lexsort((y, x))
    mask = np.zeros(len(x), dtype=bool)
    best_y = math.inf
    for i in order:
        if y[i] < best_y:
            mask[i] = True
            best_y = y[i]
    return mask


def _pareto_figure(ok: pd.DataFrame, area: str, path: Path) -> tuple[pd.Series, Path]:
    """Latency against ``area`` per model with its Pareto front, saved to ``path``; returns
    the front as a mask over ``ok``, and the file."""
    pareto = pd.Series(False, index=ok.index)
    models = list(dict.fromkeys(ok["model"]))
    ncols = min(len(models), 2)
    nrows = math.ceil(len(models) / ncols)
    fig = _figure(6.0 * ncols, 4.2 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    series = "bits" if ok["bits"].notna().any() else "policy"
    for ax, model in zip(axes, models, strict=False):
        sub = ok[ok["model"] == model]
        mask = pareto_mask(sub[area].to_numpy(float), sub["latency_s"].to_numpy(float))
        pareto.loc[sub.index[mask]] = True
        for name, grp in sub.groupby(sub[series].fillna(sub["policy"]).astype(str), sort=True):
            ax.scatter(grp[area], grp["latency_s"] * 1e6, s=18, alpha=0.75, label=f"{series} {name}")
        front = sub[mask].sort_values(area)
        ax.step(front[area], front["latency_s"] * 1e6, where="post", color="black", lw=1.2, label="Pareto front")
        ax.scatter(front[area], front["latency_s"] * 1e6, s=46, facecolors="none", edgecolors="black")
        for axis, col in (("x", area), ("y", "latency_s")):
            vals = sub[col].to_numpy(float)
            if vals.min() > 0 and vals.max() / vals.min() > 20:
                getattr(ax, f"set_{axis}scale")("log")
        ax.set_xlabel(AREAS[area][0])
        ax.set_ylabel("latency per inference (µs)")
        ax.set_title(f"{model}: {len(sub)} points, {int(mask.sum())} on the front")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(models) :]:
        ax.set_visible(False)
    return pareto, _save(fig, path)


AREAS = {"area_mm2": ("chip area (mm²)", "sweep_pareto.png"), "occupied_area_mm2": ("occupied area (mm²)",
                                                                                    "sweep_occupied.png")}  # fmt: skip


def sweep_section(folder: Path, out: Path) -> tuple[str, list[Path]]:
    df = _read_csv(
        folder / "sweep.csv",
        ["point_id", "model", "arch", "latency_s", "area_mm2", "status"],
        numeric=["latency_s", "interval_s", "energy_j", "area_mm2", "occupied_area_mm2", "resident_area_mm2",
                 "crossbars", "speedup_vs_w8a8", "val_acc"],
    )  # fmt: skip
    fixed = {"point_id", "model", "input", "arch", "bits", "policy", "latency_s", "interval_s", "energy_j",
             "area_mm2", "occupied_area_mm2", "resident_area_mm2", "crossbars", "speedup_vs_w8a8", "val_acc",
             "status"}  # fmt: skip
    grid_keys = [c for c in df.columns if c not in fixed]
    ok = df[df["status"] == "ok"].copy()
    md = [
        "## Sweep",
        "",
        f"{len(df)} points: {len(ok)} ok, {len(df) - len(ok)} invalid (their status column says why).",
        "",
    ]
    files: list[Path] = []
    if ok.empty:
        return "\n".join(md), files
    areas = [c for c in AREAS if c in ok.columns and ok[c].notna().all()]
    for area in areas:
        front_mask, path = _pareto_figure(ok, area, out / AREAS[area][1])
        files.append(path)
        if area == "area_mm2":
            ok["pareto"] = front_mask
    front = ok[ok["pareto"]].sort_values(["model", "area_mm2"])
    cols = [c for c in ["model", "arch", *grid_keys, "bits", "policy", "latency_s", "area_mm2", "energy_j",
                        "speedup_vs_w8a8"] if c in front.columns]  # fmt: skip
    files.append(atomic_write(out / "pareto.csv", lambda p: front[["point_id", *cols]].to_csv(p, index=False)))
    md += [
        "Latency against chip area for every valid point; the black line is the Pareto front "
        "(no other point is both smaller and faster).",
        "",
        "![latency vs area](sweep_pareto.png)",
        "",
        *(
            [
                "Latency against the area of the tiles each point occupies (a small network or policy "
                "leaves tiles idle; this is the front to size a chip by).",
                "",
                "![latency vs occupied area](sweep_occupied.png)",
                "",
            ]
            if "occupied_area_mm2" in areas
            else []
        ),
        "### Pareto front",
        "",
        markdown_table(front[cols], max_rows=40),
        "",
    ]
    if len(ok) < len(df):
        bad = df[df["status"] != "ok"]["status"].str.replace(r"^invalid: ", "", regex=True)
        md += ["### Invalid points", "", markdown_table(bad.value_counts().rename_axis("reason").reset_index()), ""]
    return "\n".join(md), files


# ---------------------------------------------------------------- compile
def compile_section(folder: Path, out: Path) -> tuple[str, list[Path]]:
    layers = _read_csv(folder / "layers.csv", ["name", "latency_s", "energy_j"], numeric=["latency_s", "energy_j"])
    summary = _read_csv(folder / "summary.csv", ["latency_s", "energy_j"], numeric=["latency_s", "energy_j"])
    if summary.empty:
        raise CimdseError(f"{folder / 'summary.csv'}: has no rows")
    s = summary.iloc[0]
    title = " on ".join(str(s[c]) for c in ("model", "arch") if c in summary.columns) or folder.name
    if "mode" in summary.columns:
        title += f" ({s['mode']})"
    shown = layers
    note = ""
    if len(layers) > MAX_BAR_LAYERS:
        shown = layers.nlargest(MAX_BAR_LAYERS, "latency_s").sort_index()
        note = f" ({MAX_BAR_LAYERS} slowest of {len(layers)} layers)"
    labels = [
        f"{r['name']} w{r['w_bits']}a{r['a_bits']}" if {"w_bits", "a_bits"} <= set(layers.columns) else str(r["name"])
        for _, r in shown.iterrows()
    ]
    fig = _figure(11.0, 1.2 + 0.24 * len(shown))
    ax_l, ax_e = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(shown))
    lat_total, en_total = float(layers["latency_s"].sum()), float(layers["energy_j"].sum())
    ax_l.barh(y, shown["latency_s"] * 1e6, color="tab:blue")
    ax_e.barh(y, shown["energy_j"] * 1e6, color="tab:orange")
    ax_l.set_yticks(y, labels, fontsize=7)
    ax_l.invert_yaxis()
    ax_l.set_xlabel("latency (µs)")
    ax_e.set_xlabel("energy (µJ)")
    ax_l.set_title(f"latency per layer, {lat_total * 1e6:.4g} µs in crossbar layers")
    ax_e.set_title(f"energy per layer, {en_total * 1e6:.4g} µJ in crossbar layers")
    for ax in (ax_l, ax_e):
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"{title}{note}")
    files = [_save(fig, out / "compile_layers.png")]
    head = [c for c in ("model", "arch", "input", "mode", "latency_s", "energy_j", "area_mm2", "crossbars",
                        "speedup_vs_w8a8") if c in summary.columns]  # fmt: skip
    top = layers.assign(latency_share=layers["latency_s"] / lat_total if lat_total else np.nan)
    cols = [c for c in ("name", "kind", "w_bits", "a_bits", "crossbars", "replicas", "latency_s", "latency_share",
                        "energy_j") if c in top.columns]  # fmt: skip
    md = [
        "## Compile",
        "",
        markdown_table(summary[head]),
        "",
        "![per-layer latency and energy](compile_layers.png)",
        "",
        "### Slowest layers",
        "",
        markdown_table(top.nlargest(10, "latency_s")[cols]),
        "",
    ]
    return "\n".join(md), files


# ---------------------------------------------------------------- search
def _heatmap(names: list[str], bits: np.ndarray, title: str, out: Path) -> Path:
    from matplotlib import colormaps

    fig = _figure(max(5.0, 0.42 * len(names) + 2.0), 2.6)
    ax = fig.subplots()
    im = ax.imshow(bits.T, cmap=colormaps["viridis"], vmin=1, vmax=8, aspect="auto")
    ax.set_yticks([0, 1], ["weights", "activations"])
    ax.set_xticks(np.arange(len(names)), names, rotation=60, ha="right", fontsize=7)
    if len(names) <= 80:
        for (i, j), v in np.ndenumerate(bits):
            ax.text(i, j, str(v), ha="center", va="center", fontsize=7, color="white" if v < 5 else "black")
    fig.colorbar(im, ax=ax, label="bits", ticks=range(1, 9))
    ax.set_title(title)
    return _save(fig, out)


def search_section(folder: Path, out: Path) -> tuple[str, list[Path]]:
    md = ["## Search", ""]
    files: list[Path] = []
    hist = None
    if (folder / "history.csv").is_file():
        hist = _read_csv(
            folder / "history.csv",
            ["episode", "policy", "speedup_vs_w8a8", "reward"],
            numeric=["episode", "latency_s", "speedup_vs_w8a8", "val_acc", "reward"],
        )
        if "method" not in hist.columns:
            hist["method"] = "search"
    best_row = None
    if hist is not None and not hist.empty:
        key = "reward" if hist["reward"].notna().any() else "speedup_vs_w8a8"
        best_row = hist.loc[hist[key].idxmax()]

    names: list[str] | None = None
    bits: np.ndarray | None = None
    source = ""
    if (folder / "best_policy.yaml").is_file():
        file_names, bits = read_policy(folder / "best_policy.yaml")
        names = file_names or [f"L{i}" for i in range(len(bits))]
        source = "best_policy.yaml"
    elif best_row is not None:
        where = f"{folder / 'history.csv'}: episode {best_row['episode']}"
        bits = parse_policy_text(best_row["policy"], where=where)
        names = [f"L{i}" for i in range(len(bits))]
        source = f"history.csv, episode {best_row['episode']} ({best_row['method']})"
    if bits is not None and names is not None:
        files.append(_heatmap(names, bits, f"best policy: bits per layer ({source})", out / "search_policy.png"))
        w_mean, a_mean = bits.mean(axis=0)
        md += [
            f"Best policy from {source}: {len(names)} layers, mean {w_mean:.2f} weight bits and "
            f"{a_mean:.2f} activation bits.",
            "",
            "![bits per layer](search_policy.png)",
            "",
        ]

    if hist is not None and not hist.empty:
        fig = _figure(11.0, 3.8)
        ax_r, ax_s = fig.subplots(1, 2)
        for method, grp in hist.sort_values("episode").groupby("method", sort=False):
            ax_r.scatter(grp["episode"], grp["reward"], s=8, alpha=0.5, label=str(method))
            ax_r.plot(grp["episode"], grp["reward"].cummax(), lw=1.2)
            ax_s.plot(grp["episode"], _in_bound(grp).cummax().ffill(), lw=1.5, label=str(method))
        ax_r.set_title("reward per episode (line: best so far)")
        ax_s.set_title("best speedup over W8A8 so far, within the accuracy bound")
        for ax, ylabel in ((ax_r, "reward"), (ax_s, "speedup vs W8A8")):
            ax.set_xlabel("episode")
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        files.append(_save(fig, out / "search_progress.png"))
        agg = {"episodes": ("episode", "count"), "best_reward": ("reward", "max"),
               "best_speedup": ("speedup_vs_w8a8", "max")}  # fmt: skip
        if "val_acc" in hist.columns:
            agg["best_val_acc"] = ("val_acc", "max")
        per_method = hist.groupby("method", sort=False).agg(**agg).reset_index()
        per_method["best_speedup_in_bound"] = [_in_bound(g).max() for _, g in hist.groupby("method", sort=False)]
        md += ["![search progress](search_progress.png)", "", "### Per method", "", markdown_table(per_method), ""]
        if best_row is not None:
            cols = [c for c in HISTORY_COLUMNS if c in hist.columns and c != "policy"]
            md += ["### Best episode", "", markdown_table(best_row[cols].to_frame().T), ""]
    if (folder / "summary.csv").is_file() and hist is not None and not hist.empty:
        summary = _read_csv(folder / "summary.csv", ["arch", "method", "evaluations", "hypervolume"])
        files.append(_fronts_plot(hist, out / "search_fronts.png"))
        cols = [c for c in ("arch", "method", "evaluations", "front_size", "hypervolume", "speedup_vs_w8a8",
                            "final_val_acc", "test_acc", "acc_drop_pp") if c in summary.columns]  # fmt: skip
        md += [
            "### Fronts",
            "",
            "Each method's non-dominated (speedup, validation accuracy) policies; hypervolume: the area "
            "(speedup x pp) they dominate above speedup 1.0 and the accuracy bound.",
            "",
            "![fronts](search_fronts.png)",
            "",
            markdown_table(summary[cols]),
            "",
        ]
    return "\n".join(md), files


def _fronts_plot(hist: pd.DataFrame, out: Path) -> Path:
    """Per arch, each method's own non-dominated points as a staircase."""
    archs = list(dict.fromkeys(hist["arch"])) if "arch" in hist.columns else [None]
    fig = _figure(5.5 * len(archs), 4.0)
    axes = np.atleast_1d(fig.subplots(1, len(archs)))
    for ax, arch in zip(axes, archs, strict=True):
        rows = hist if arch is None else hist[hist["arch"] == arch]
        for method, grp in rows.groupby("method", sort=False):
            s, a = grp["speedup_vs_w8a8"].to_numpy(float), 100.0 * grp["val_acc"].to_numpy(float)
            keep = non_dominated(s, a)
            order = np.argsort(s[keep])
            ax.step(s[keep][order], a[keep][order], where="post", marker="o", ms=3, lw=1.2, label=str(method))
        ax.set_xlabel("speedup vs W8A8")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(f"fronts per method{'' if arch is None else ' on ' + str(arch)}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out)


def _in_bound(rows: pd.DataFrame) -> pd.Series:
    """Speedups of the policies within the search's accuracy bound (NaN elsewhere): the
    search's reward is negative exactly when a policy falls below the bound."""
    if rows["reward"].isna().all():
        return rows["speedup_vs_w8a8"]
    return rows["speedup_vs_w8a8"].where(rows["reward"] >= 0)


# ---------------------------------------------------------------- entry point
SECTIONS = {"sweep": sweep_section, "compile": compile_section, "search": search_section}


def make_report(folder: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write the plots and ``report.md`` for every kind of result in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CimdseError(f"{folder}: no such folder")
    kinds = detect(folder)
    if not kinds:
        raise CimdseError(
            f"{folder}: holds no results to report: expected sweep.csv (sweep), layers.csv + summary.csv "
            "(compile), or best_policy.yaml / history.csv (search)"
        )
    out_dir = Path(out) if out else folder
    created = not out_dir.exists()
    staging = Path(tempfile.mkdtemp(prefix=".report.", dir=output_dir(out_dir)))
    # every file is made in a staging folder and moved in only once all sections worked
    try:
        parts = [f"# Report: {folder.resolve().name}", ""]
        made: list[Path] = []
        for kind in kinds:
            text, files = SECTIONS[kind](folder, staging)
            parts.append(text)
            made += files
        text = "\n".join(parts).rstrip() + "\n"
        made.append(atomic_write(staging / "report.md", lambda p: p.write_text(text)))
        for f in made:
            os.replace(f, out_dir / f.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return [out_dir / f.name for f in made]
