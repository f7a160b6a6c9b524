"""Tables of one compiled policy: per layer, per digital op, and a one-row summary.

``latency_share`` (layers and ops) is each one's latency over the sum of all of them
(crossbar layers, digital ops, run-time written matmuls): where the time goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cimdse.policy import check_policy, uniform_policy

if TYPE_CHECKING:  # pragma: no cover
    from cimdse.compiler.evaluate import CompiledNetwork

LAYER_COLUMNS = [
    "name", "kind", "K", "N", "V", "groups", "w_bits", "a_bits", "cells_per_weight", "input_slices",
    "crossbars_per_copy", "replicas", "crossbars", "rows_used", "cols_used", "op_ns", "latency_s", "energy_j",
    "read_energy_j", "write_energy_j", "macs", "latency_share",
]  # fmt: skip
SUMMARY_COLUMNS = [
    "model", "arch", "input", "schedule", "mode", "latency_s", "energy_j", "area_mm2", "crossbars",
    "speedup_vs_w8a8", "w8a8_latency_s", "crossbar_latency_s", "digital_latency_s", "read_energy_j",
    "write_energy_j", "digital_energy_j", "programming_energy_j", "programming_s", "crossbars_needed",
    "chip_crossbars", "layers", "macs", "matmul_macs", "matmul_unit", "matmul_latency_s", "matmul_energy_j",
]  # fmt: skip
DIGITAL_COLUMNS = [
    "name", "kind", "category", "unit", "elements", "macs", "out_shape", "module", "after", "crossbars",
    "latency_s", "energy_j", "latency_share",
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
    everything_s = float(ev.layer_latency_s[0].sum()) + ev.digital_latency_s + ev.matmul_latency_s
    for r in rows:
        r["latency_share"] = r["latency_s"] / everything_s if everything_s > 0 else 0.0
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
        "macs": cn.network.crossbar_macs,
        "matmul_macs": cn.network.matmul_macs,
        "matmul_unit": cn.matmul_unit,
        "matmul_latency_s": ev.matmul_latency_s,
        "matmul_energy_j": ev.matmul_energy_j,
    }
    return pd.DataFrame(rows, columns=LAYER_COLUMNS), pd.DataFrame([summary], columns=SUMMARY_COLUMNS)


def digital_frame(cn: CompiledNetwork, policy: np.ndarray | None = None) -> pd.DataFrame:
    """The digital ops with the unit they run on, their latency and energy (the digital
    unit's totals shared by op count; run-time written matmuls costed apart) and their
    share of the latency of ``policy`` (default uniform W8A8) as in :func:`report`."""
    net = cn.network
    runtime = {m.name: m for m in cn.runtime_matmuls}
    digital_ops = sum(op.elements for op in net.digital_ops if op.name not in runtime)
    per_op_s = cn.digital_latency_s / digital_ops if digital_ops else 0.0
    per_op_j = cn.digital_energy_j / digital_ops if digital_ops else 0.0
    pol = policy if policy is not None else uniform_policy(8, 8, cn.n_layers)
    ev = cn.evaluate(pol)
    everything_s = float(ev.layer_latency_s[0].sum()) + ev.digital_latency_s + ev.matmul_latency_s
    rows = []
    for op in net.digital_ops:
        m = runtime.get(op.name)
        latency = m.latency_s if m else op.elements * per_op_s
        rows.append(
            {"name": op.name, "kind": op.kind, "category": op.category, "unit": "crossbar" if m else "digital",
             "elements": op.elements, "macs": op.macs, "out_shape": "x".join(str(v) for v in op.out_shape),
             "module": op.module, "after": op.after, "crossbars": m.crossbars if m else 0, "latency_s": latency,
             "energy_j": m.energy_j if m else op.elements * per_op_j,
             "latency_share": latency / everything_s if everything_s > 0 else 0.0}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=DIGITAL_COLUMNS)
