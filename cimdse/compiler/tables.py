"""Tables of one compiled policy: per layer, per digital op, and a one-row summary.

``latency_share`` is where the time goes: a layer's crossbar time, or one digital op's
time (on the digital unit or on run-time written crossbars), over the latency of one
inference (the sum of every stage), so the shares of layers.csv and digital.csv add up
to 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cimdse import costs
from cimdse.costs import ENERGY_PARTS
from cimdse.policy import check_policy

if TYPE_CHECKING:  # pragma: no cover
    from cimdse.compiler.evaluate import CompiledNetwork

_PART_COLUMNS = [f"energy_{p}_j" for p in ENERGY_PARTS]
_LAYER_PARTS = [p for p in ENERGY_PARTS if p != "leakage"]  # leakage belongs to the chip, not a layer
LAYER_COLUMNS = [
    "name", "kind", "K", "N", "V", "groups", "w_bits", "a_bits", "cells_per_weight", "input_slices",
    "crossbars_per_copy", "replicas", "crossbars", "tiles", "rows_used", "cols_used", "op_ns", "latency_s",
    "digital_latency_s", "energy_j", *[f"energy_{p}_j" for p in _LAYER_PARTS], "macs", "latency_share",
]  # fmt: skip
SUMMARY_COLUMNS = [
    "model", "arch", "input", "schedule", "mode", "latency_s", "interval_s", "energy_j", *_PART_COLUMNS,
    "area_mm2", "occupied_area_mm2", "occupied_tiles", "resident_area_mm2", "resident_tiles", "crossbars",
    "speedup_vs_w8a8", "throughput_speedup_vs_w8a8", "w8a8_latency_s", "w8a8_interval_s", "crossbar_latency_s",
    "digital_latency_s", "programming_energy_j", "programming_s", "crossbars_needed", "chip_crossbars", "layers",
    "macs", "matmul_macs", "matmul_unit", "matmul_latency_s", "matmul_energy_j",
]  # fmt: skip
DIGITAL_COLUMNS = [
    "name", "kind", "category", "unit", "elements", "macs", "out_shape", "module", "layer", "crossbars",
    "latency_s", "energy_j", "latency_share",
]  # fmt: skip


def policy_tables(cn: CompiledNetwork, policy: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(layers_df, summary_df)`` for one policy [L, 2]."""
    pol = check_policy(policy, cn.n_layers, "policy", cn.network.names)
    if pol.ndim != 2:
        raise ValueError("policy_tables() takes one policy [L, 2]")
    ev = cn.evaluate(pol)
    tb = cn.tables
    per_tile = cn.arch.chip.crossbars_per_tile
    rows = []
    for i, layer in enumerate(cn.network.layers):
        w, a = int(pol[i, 0]), int(pol[i, 1])
        pl = tb.placements[i][w - 1]
        xbars = int(ev.layer_crossbars[0, i])
        row = {
            "name": layer.name, "kind": layer.kind, "K": layer.K, "N": layer.N, "V": layer.V,
            "groups": layer.groups, "w_bits": w, "a_bits": a, "cells_per_weight": pl.cells_per_weight,
            "input_slices": int(tb.input_slices[a - 1]), "crossbars_per_copy": pl.crossbars,
            "replicas": int(ev.replicas[0, i]), "crossbars": xbars,
            "tiles": -(-min(xbars, cn.arch.chip.crossbars) // per_tile), "rows_used": pl.rows_used,
            "cols_used": pl.cols_used, "op_ns": pl.op_ns, "latency_s": float(ev.layer_latency_s[0, i]),
            "digital_latency_s": float(ev.layer_digital_latency_s[0, i]),
            "energy_j": float(ev.layer_energy_j[0, i]), "macs": layer.macs,
        }  # fmt: skip
        for p in _LAYER_PARTS:
            row[f"energy_{p}_j"] = float(ev.layer_energy_parts_j[0, i, ENERGY_PARTS.index(p)])
        runtime_s = float(cn.runtime_ns[i]) * 1e-9 if cn.runtime_ns is not None else 0.0
        row["latency_share"] = (row["latency_s"] - row["digital_latency_s"] - runtime_s) / float(ev.latency_s[0])
        rows.append(row)
    fits = bool(ev.fits[0])
    summary = {
        "model": cn.network.name,
        "arch": cn.arch.name,
        "input": "x".join(str(d) for d in cn.network.input_shape),
        "schedule": cn.arch.chip.schedule if fits else "sequential",
        "mode": "resident" if fits else "re-programmed",
        "latency_s": float(ev.latency_s[0]),
        "interval_s": float(ev.interval_s[0]),
        "energy_j": float(ev.energy_j[0]),
        **{c: float(ev.energy_parts_j[0, j]) for j, c in enumerate(_PART_COLUMNS)},
        "area_mm2": ev.area_mm2,
        "occupied_area_mm2": float(ev.occupied_area_mm2[0]),
        "occupied_tiles": int(ev.occupied_tiles[0]),
        "resident_area_mm2": float(ev.resident_area_mm2[0]),
        "resident_tiles": int(ev.resident_tiles[0]),
        "crossbars": int(ev.crossbars[0]),
        "speedup_vs_w8a8": cn.w8a8_latency_s() / float(ev.latency_s[0]),
        "throughput_speedup_vs_w8a8": cn.w8a8_interval_s() / float(ev.interval_s[0]),
        "w8a8_latency_s": cn.w8a8_latency_s(),
        "w8a8_interval_s": cn.w8a8_interval_s(),
        "crossbar_latency_s": float(ev.crossbar_latency_s[0]),
        "digital_latency_s": float(ev.digital_latency_s[0]),
        "programming_energy_j": float(ev.programming_energy_j[0]),
        "programming_s": float(ev.programming_s[0]),
        "crossbars_needed": int(ev.crossbars_needed[0]),
        "chip_crossbars": cn.arch.chip.crossbars,
        "layers": cn.n_layers,
        "macs": cn.network.crossbar_macs,
        "matmul_macs": cn.network.matmul_macs,
        "matmul_unit": cn.matmul_unit,
        "matmul_latency_s": sum(m.latency_s for m in cn.runtime_matmuls),
        "matmul_energy_j": sum(m.energy_j for m in cn.runtime_matmuls),
    }
    return pd.DataFrame(rows, columns=LAYER_COLUMNS), pd.DataFrame([summary], columns=SUMMARY_COLUMNS)


def digital_frame(cn: CompiledNetwork, policy: np.ndarray) -> pd.DataFrame:
    """The digital ops of one policy [L, 2] with the unit they run on: the digital unit on
    the tiles of the layer they follow, or (activation x activation matmuls with
    ``matmul="crossbar"``) crossbars written at run time."""
    ev = cn.evaluate(policy)
    net = cn.network
    runtime = {m.name: m for m in cn.runtime_matmuls}
    index = {name: i for i, name in enumerate(net.names)}
    digital_pj = costs.constant(cn.arch.crossbar, "digital_pj_per_op")
    total_s = float(ev.latency_s[0])
    rows = []
    for op in net.digital_ops:
        m = runtime.get(op.name)
        i = index.get(op.layer, 0)
        if m is None:
            work = cn.digital_elements[i]
            latency = float(ev.layer_digital_latency_s[0, i]) * op.elements / work if work > 0 else 0.0
        else:
            latency = m.latency_s
        rows.append(
            {"name": op.name, "kind": op.kind, "category": op.category, "unit": "crossbar" if m else "digital",
             "elements": op.elements, "macs": op.macs, "out_shape": "x".join(str(v) for v in op.out_shape),
             "module": op.module, "layer": op.layer, "crossbars": m.crossbars if m else 0, "latency_s": latency,
             "energy_j": m.energy_j if m else op.elements * digital_pj * 1e-12,
             "latency_share": latency / total_s if total_s > 0 else 0.0}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=DIGITAL_COLUMNS)
