"""Tables of one compiled policy: per layer, per digital op, and a one-row summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cimdse.policy import check_policy

if TYPE_CHECKING:  # pragma: no cover
    from cimdse.compiler.evaluate import CompiledNetwork

LAYER_COLUMNS = [
    "name", "kind", "K", "N", "V", "groups", "w_bits", "a_bits", "cells_per_weight", "input_slices",
    "crossbars_per_copy", "replicas", "crossbars", "rows_used", "cols_used", "op_ns", "latency_s", "energy_j",
    "read_energy_j", "write_energy_j", "macs",
]  # fmt: skip
SUMMARY_COLUMNS = [
    "model", "arch", "input", "schedule", "mode", "latency_s", "energy_j", "area_mm2", "crossbars",
    "speedup_vs_w8a8", "w8a8_latency_s", "crossbar_latency_s", "digital_latency_s", "read_energy_j",
    "write_energy_j", "digital_energy_j", "programming_energy_j", "programming_s", "crossbars_needed",
    "chip_crossbars", "layers", "macs",
]  # fmt: skip


def policy_tables(cn: CompiledNetwork, policy: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(layers_df, summary_df)`` for one policy [L, 2]."""
    pol = check_policy(policy, cn.n_layers, "policy", cn.network.names)
    if pol.ndim != 2:
        raise ValueError("report() takes one policy [L, 2]")
    ev = cn.evaluate(pol)
    tb = cn.tables
    rows = []
    for i, layer in enumerate(cn.network.layers):
        w, a = int(pol[i, 0]), int(pol[i, 1])
        pl = tb.placements[i][w - 1]
        s = int(tb.input_slices[a - 1])
        read_j = layer.V * s * pl.op_energy_pj * 1e-12
        rows.append(
            {
                "name": layer.name, "kind": layer.kind, "K": layer.K, "N": layer.N, "V": layer.V,
                "groups": layer.groups, "w_bits": w, "a_bits": a, "cells_per_weight": pl.cells_per_weight,
                "input_slices": s, "crossbars_per_copy": pl.crossbars, "replicas": int(ev.replicas[0, i]),
                "crossbars": int(ev.layer_crossbars[0, i]), "rows_used": pl.rows_used, "cols_used": pl.cols_used,
                "op_ns": pl.op_ns, "latency_s": float(ev.layer_latency_s[0, i]),
                "energy_j": float(ev.layer_energy_j[0, i]), "read_energy_j": read_j,
                "write_energy_j": float(ev.layer_energy_j[0, i]) - read_j, "macs": layer.macs,
            }
        )  # fmt: skip
    fits = bool(ev.fits[0])
    summary = {
        "model": cn.network.name,
        "arch": cn.arch.name,
        "input": "x".join(str(d) for d in cn.network.input_shape),
        "schedule": cn.arch.chip.schedule if fits else "sequential",
        "mode": "resident" if fits else "re-programmed",
        "latency_s": float(ev.latency_s[0]),
        "energy_j": float(ev.energy_j[0]),
        "area_mm2": ev.area_mm2,
        "crossbars": int(ev.crossbars[0]),
        "speedup_vs_w8a8": cn.w8a8_latency_s() / float(ev.latency_s[0]),
        "w8a8_latency_s": cn.w8a8_latency_s(),
        "crossbar_latency_s": float(ev.crossbar_latency_s[0]),
        "digital_latency_s": ev.digital_latency_s,
        "read_energy_j": float(ev.read_energy_j[0]),
        "write_energy_j": float(ev.write_energy_j[0]),
        "digital_energy_j": ev.digital_energy_j,
        "programming_energy_j": float(ev.programming_energy_j[0]),
        "programming_s": float(ev.programming_s[0]),
        "crossbars_needed": int(ev.crossbars_needed[0]),
        "chip_crossbars": cn.arch.chip.crossbars,
        "layers": cn.n_layers,
        "macs": sum(layer.macs for layer in cn.network.layers),
    }
    return pd.DataFrame(rows, columns=LAYER_COLUMNS), pd.DataFrame([summary], columns=SUMMARY_COLUMNS)


def digital_frame(cn: CompiledNetwork) -> pd.DataFrame:
    """The digital ops with their latency and energy on the digital unit."""
    df = cn.network.digital_frame()
    per_op_s = cn.digital_latency_s / max(1, int(df["elements"].sum())) if len(df) else 0.0
    per_op_j = cn.digital_energy_j / max(1, int(df["elements"].sum())) if len(df) else 0.0
    df["latency_s"] = df["elements"] * per_op_s
    df["energy_j"] = df["elements"] * per_op_j
    return df
