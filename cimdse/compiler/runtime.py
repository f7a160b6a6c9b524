"""Activation x activation matmuls (attention's ``Q K^T`` and ``A V``) on crossbars
written at run time, the alternative to the digital unit.

Neither operand is a static weight, so each inference writes the right operand
(``K^T``: head dim x keys; ``V``: keys x head dim) into crossbars before the left one
streams through them. For a matmul of ``b`` instances (heads x windows) of
``[M, K] @ [K, N]`` at (w_bits, a_bits), one instance is placed like a layer with
``K x N`` weights and ``V = M`` MVMs (``mapping.place``: t crossbars, ``cells``,
``t_op``, ``E_op`` by part), and the instances on crossbars of their own (a pool beside
the resident weights, ``b x t`` crossbars), written ``chip.parallel_writes`` at a time
like every other programming, then streamed in parallel:

    latency = T_prog(b * t) + M * S * t_op             (S = input slices of a_bits)
    energy  = b * (cells * E_write_cell + M * S * E_op)

with ``T_prog`` and ``E_write_cell`` from the cost model (``costs.programming_ns``,
``costs.write_energy_pj``). With microsecond writes this is far slower than the
digital unit, which is why digital is the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimdse import costs
from cimdse.arch import ArchSpec
from cimdse.compiler.ir import DigitalOp, Layer
from cimdse.compiler.mapping import place
from cimdse.crossbar import input_slices

MATMUL_UNITS = ("digital", "crossbar")


@dataclass(frozen=True)
class RuntimeMatmul:
    """Costs of one activation x activation matmul on run-time written crossbars."""

    name: str
    crossbars: int  # all instances
    cells: int  # written per inference, all instances
    latency_s: float
    op_energy_parts_j: np.ndarray  # [len(costs.OP_PARTS)] the crossbar operations, by part
    write_energy_j: float

    @property
    def energy_j(self) -> float:
        return float(self.op_energy_parts_j.sum()) + self.write_energy_j


def runtime_matmul(op: DigitalOp, arch: ArchSpec, w_bits: int, a_bits: int) -> RuntimeMatmul:
    """Place and cost ``op`` (which must carry ``matmul`` dimensions) per the module's model."""
    spec = arch.crossbar
    b, M, K, N = op.matmul
    pl = place(Layer(op.name, "matmul", K, N, M), spec, w_bits)
    s = input_slices(spec, a_bits)
    return RuntimeMatmul(
        name=op.name,
        crossbars=b * pl.crossbars,
        cells=b * pl.cells,
        latency_s=(float(costs.programming_ns(arch, b * pl.crossbars)) + M * s * pl.op_ns) * 1e-9,
        op_energy_parts_j=b * M * s * np.asarray(pl.op_energy_pj, dtype=np.float64) * 1e-12,
        write_energy_j=b * costs.write_energy_pj(spec, pl.cells) * 1e-12,
    )
