"""Mapping of one layer copy onto crossbars (design.md section 4), for every weight width.

A layer's ``K x N`` weight matrix becomes ``rows x cols`` physical cells: rows = K
(2K for differential-row), cols = N * cells per weight * polarities (+1 reference
column for offset, unless ISAAC's flipped-column encoding gives every crossbar a unit
column that serves as it). It is cut into ``ceil(rows / R) x ceil(cols / C)`` crossbars.

Grouped and depthwise convs map each group's ``K x N/groups`` matrix on its own.
When one group fits in a crossbar, ``p = min(R // rows_g, C // cols_g)`` groups are
packed block-diagonally into each crossbar (each group drives its own rows and reads
its own columns, so one crossbar operation serves all p of them); otherwise every
group is cut into crossbars like a dense layer.

Everything the cost model needs depends on w_bits only through this placement, so
it is tabulated once per layer for w_bits = 1..8 and the evaluation of a policy is a
table lookup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cimdse import costs
from cimdse.arch import CrossbarSpec
from cimdse.compiler.ir import Layer
from cimdse.crossbar import cells_per_weight, input_slices, physical_cols, physical_rows
from cimdse.policy import MAX_BITS


@dataclass(frozen=True)
class Placement:
    """One copy of a layer at one weight width."""

    w_bits: int
    cells_per_weight: int
    group_rows: int  # physical rows of one group's matrix
    group_cols: int  # physical columns of one group's matrix, reference column included
    groups_per_crossbar: int  # block-diagonal packing; 1 when a group spans several crossbars
    crossbars: int  # t_l
    rows_used: int  # of the fullest crossbar
    cols_used: int
    op_ns: float  # one crossbar operation of the fullest crossbar: all crossbars run in parallel
    op_energy_pj: np.ndarray  # [parts] one operation of every crossbar of the copy (one input slice)
    cells: int  # programmed cells


def _dense_energy(spec: CrossbarSpec, rows: int, cols: int) -> np.ndarray:
    """One operation on every crossbar of a rows x cols matrix (edge crossbars partly used)."""
    r_blocks, c_blocks = math.ceil(rows / spec.rows), math.ceil(cols / spec.cols)
    r_sizes = [(r_blocks - 1, spec.rows), (1, rows - (r_blocks - 1) * spec.rows)]
    c_sizes = [(c_blocks - 1, spec.cols), (1, cols - (c_blocks - 1) * spec.cols)]
    return sum(
        (nr * nc * costs.op_energy_pj(spec, r, c) for nr, r in r_sizes for nc, c in c_sizes if nr and nc),
        np.zeros(len(costs.OP_PARTS)),
    )


def place(layer: Layer, spec: CrossbarSpec, w_bits: int) -> Placement:
    """Where one copy of ``layer`` goes at ``w_bits``."""
    g = layer.groups
    rows = physical_rows(spec, layer.K)
    cols = physical_cols(spec, layer.n_per_group, w_bits) + costs.reference_columns(spec)
    if rows <= spec.rows and cols <= spec.cols:  # groups packed block-diagonally
        p = min(spec.rows // rows, spec.cols // cols, g)
        full, rest = divmod(g, p)
        t = full + (1 if rest else 0)
        rows_used, cols_used = p * rows, p * cols
        energy = full * costs.op_energy_pj(spec, rows_used, cols_used)
        if rest:
            energy += costs.op_energy_pj(spec, rest * rows, rest * cols)
    else:  # each group cut into crossbars on its own
        p = 1
        t = g * math.ceil(rows / spec.rows) * math.ceil(cols / spec.cols)
        rows_used, cols_used = min(rows, spec.rows), min(cols, spec.cols)
        energy = g * _dense_energy(spec, rows, cols)
    return Placement(
        w_bits=w_bits,
        cells_per_weight=cells_per_weight(spec, w_bits),
        group_rows=rows,
        group_cols=cols,
        groups_per_crossbar=p,
        crossbars=t,
        rows_used=rows_used,
        cols_used=cols_used,
        op_ns=costs.op_ns(spec, rows_used, cols_used),
        op_energy_pj=energy,
        cells=g * rows * cols,
    )


@dataclass(frozen=True)
class MappingTables:
    """Placements of every layer tabulated by weight width: arrays [L, MAX_BITS],
    column ``w - 1`` (``op_energy_pj`` [L, MAX_BITS, parts]); ``input_slices`` [MAX_BITS] by
    ``a - 1``; ``V`` [L]."""

    placements: list[list[Placement]]
    crossbars: np.ndarray
    cells_per_weight: np.ndarray
    op_ns: np.ndarray
    op_energy_pj: np.ndarray
    cells: np.ndarray
    input_slices: np.ndarray
    V: np.ndarray
    max_copies: np.ndarray  # [L] copies that can work in parallel (V, or 1 for recurrent weights)
    N: np.ndarray  # [L] outputs per MVM
    K_total: np.ndarray  # [L] inputs per MVM, all groups


def build_tables(layers: Sequence[Layer], spec: CrossbarSpec) -> MappingTables:
    placements = [[place(layer, spec, w) for w in range(1, MAX_BITS + 1)] for layer in layers]

    def table(attr: str, dtype: type) -> np.ndarray:
        values = np.array([[getattr(p, attr) for p in row] for row in placements], dtype=dtype)
        return values.reshape(len(layers), MAX_BITS, *values.shape[2:])

    return MappingTables(
        placements=placements,
        crossbars=table("crossbars", np.int64),
        cells_per_weight=table("cells_per_weight", np.int64),
        op_ns=table("op_ns", np.float64),
        op_energy_pj=table("op_energy_pj", np.float64),
        cells=table("cells", np.int64),
        input_slices=np.array([input_slices(spec, a) for a in range(1, MAX_BITS + 1)], dtype=np.int64),
        V=np.array([layer.V for layer in layers], dtype=np.int64),
        max_copies=np.array([layer.copies_limit for layer in layers], dtype=np.int64),
        N=np.array([layer.N for layer in layers], dtype=np.int64),
        K_total=np.array([layer.K * layer.groups for layer in layers], dtype=np.int64),
    )
