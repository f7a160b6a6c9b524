"""Activation x activation matmuls (attention's ``Q K^T`` and ``A V``) on crossbars
written at run time, the alternative to the digital unit.

Neither operand is a static weight, so each inference writes the right operand
(``K^T``: head dim x keys; ``V``: keys x head dim) into crossbars before the left one
streams through them. For a matmul of ``b`` instances (heads x windows) of
``[M, K] @ [K, N]`` at (w_bits, a_bits), one instance is placed like a layer with
``K x N`` weights and ``V = M`` MVMs (``mapping.place``: t crossbars, ``cells``,
``t_op``, ``E_op``), and with the instances on crossbars of their own, all written in
parallel (a pool beside the resident weights, ``b x t`` crossbars):

    latency = t_write + M * S * t_op                   (S = input slices of a_bits)
    energy  = b * (cells * E_write_cell + M * S * E_op)

with ``t_write`` and ``E_write_cell`` from the cost model (``costs.write_ns``,
``costs.write_energy_pj``). With microsecond writes this is far slower than the
digital unit, which is why digital is the default.
"""

from __future__ import annotations

from dataclasses import dataclass

from cimdse import costs
from cimdse.arch import CrossbarSpec
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
    energy_j: float
    write_energy_j: float


def runtime_matmul(op: DigitalOp, spec: CrossbarSpec, w_bits: int, a_bits: int) -> RuntimeMatmul:
    """Place and cost ``op`` (which must carry ``matmul`` dimensions) per the module's model."""
    b, M, K, N = op.matmul
    pl = place(Layer(op.name, "matmul", K, N, M), spec, w_bits)
    s = input_slices(spec, a_bits)
    write_pj = b * costs.write_energy_pj(spec, pl.cells)
    return RuntimeMatmul(
        name=op.name,
        crossbars=b * pl.crossbars,
        cells=b * pl.cells,
        latency_s=(costs.write_ns(spec) + M * s * pl.op_ns) * 1e-9,
        energy_j=(write_pj + b * M * s * pl.op_energy_pj) * 1e-12,
        write_energy_j=write_pj * 1e-12,
    )
