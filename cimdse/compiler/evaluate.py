"""Schedule and costs of a compiled network, for many policies at once (numpy).

``compile_network`` tabulates every layer's placement for w_bits = 1..8 (see
``mapping``); ``CompiledNetwork.evaluate`` then costs policies [P, L, 2] with table
lookups and array arithmetic only: no Python loop over policies or MVMs.

Model (design.md section 4), for layer l with t_l crossbars per copy, S_l input
slices, V_l MVMs and t_op the time of one crossbar operation (``costs.op_ns``):

- resident (sum of t_l <= X, the chip's crossbars): spare crossbars hold copies
  (``replication``), ``latency_l = V_l * S_l * t_op / copies_l``; programming is
  reported once, apart, assuming one crossbar written at a time.
- re-programmed (it does not fit): ``latency_l = ceil(t_l / X) * (t_write + V_l * S_l * t_op)``
  and every inference writes every cell once.
- schedule: ``sequential`` sums the layers; ``pipelined`` (resident only, else
  sequential) reports the slowest stage, the digital unit being one more stage.
- digital ops (pooling, add, concat, activations, unfolded norms) cost
  ``digital_ns_per_op`` and ``digital_pj_per_op`` per element op, on one digital lane
  per tile (ISAAC puts a max-pool and sigmoid unit in every tile); they are part of
  the totals and reported apart.
- energy: one ``costs.op_energy_pj`` per crossbar operation (every crossbar of a copy,
  each input slice, each MVM), ``costs.write_energy_pj`` per programmed cell, digital ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from cimdse import costs
from cimdse.arch import ArchSpec
from cimdse.compiler.ir import Network
from cimdse.compiler.mapping import MappingTables, build_tables
from cimdse.compiler.replication import allocate_max, allocate_sum
from cimdse.policy import check_policy, uniform_policy

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass(frozen=True)
class Evaluation:
    """Costs of P policies: arrays [P] or [P, L]; seconds, joules, crossbar counts."""

    latency_s: np.ndarray  # [P] per inference, digital unit included
    energy_j: np.ndarray  # [P] per inference, digital unit included (programming of resident weights not)
    crossbars: np.ndarray  # [P] crossbars occupied on the chip
    crossbars_needed: np.ndarray  # [P] one copy of every layer
    layer_latency_s: np.ndarray  # [P, L]
    layer_energy_j: np.ndarray  # [P, L] crossbar reads (+ writes when re-programmed)
    layer_crossbars: np.ndarray  # [P, L] crossbars per copy x copies
    replicas: np.ndarray  # [P, L] copies (1 when re-programmed)
    fits: np.ndarray  # [P] weights resident
    crossbar_latency_s: np.ndarray  # [P] the crossbar layers under the schedule
    read_energy_j: np.ndarray  # [P]
    write_energy_j: np.ndarray  # [P] per inference (0 when resident)
    programming_energy_j: np.ndarray  # [P] once, resident weights and copies (0 when re-programmed)
    programming_s: np.ndarray  # [P] once, one crossbar written at a time
    area_mm2: float
    digital_latency_s: float
    digital_energy_j: float


@dataclass
class CompiledNetwork:
    """A network mapped onto an architecture; cheap to evaluate for any policy."""

    network: Network
    arch: ArchSpec
    tables: MappingTables
    area_mm2: float
    digital_latency_s: float
    digital_energy_j: float
    _w8a8: float | None = field(default=None, repr=False)

    @property
    def n_layers(self) -> int:
        return len(self.network.layers)

    @cached_property
    def _consts(self) -> tuple[float, float, int]:
        spec = self.arch.crossbar
        return costs.write_ns(spec), costs.write_energy_pj(spec, 1), self.arch.chip.crossbars

    def evaluate(self, policies: np.ndarray) -> Evaluation:
        """Costs of ``policies`` [L, 2] or [P, L, 2] (w_bits, a_bits); always returns [P] arrays."""
        pol = check_policy(policies, self.n_layers, "policy", self.network.names)
        if pol.ndim == 2:
            pol = pol[None]
        tb = self.tables
        t_write_ns, write_pj_per_cell, x = self._consts
        rows = np.arange(self.n_layers)[None, :]
        wi, ai = pol[..., 0] - 1, pol[..., 1] - 1
        t = tb.crossbars[rows, wi]  # [P, L] crossbars per copy
        v = tb.V[None, :]
        mvm_ops = v * tb.input_slices[ai]  # crossbar operations per crossbar: V * S
        base_ns = mvm_ops * tb.op_ns[rows, wi]  # one copy, resident
        read_pj = mvm_ops * tb.op_energy_pj[rows, wi]
        cells = tb.cells[rows, wi]
        needed = t.sum(axis=1)
        fits = needed <= x

        copies = np.ones_like(t)
        if fits.any():
            idx = np.flatnonzero(fits)
            spare = x - needed[idx]
            alloc = allocate_max if self.arch.chip.schedule == "pipelined" else allocate_sum
            copies[idx] = alloc(base_ns[idx], t[idx], tb.V, spare)
        rounds = -(-t // x)
        layer_ns = np.where(fits[:, None], base_ns / copies, rounds * (t_write_ns + base_ns))
        write_pj = np.where(fits[:, None], 0.0, cells * write_pj_per_cell)
        layer_pj = read_pj + write_pj

        seq_ns = layer_ns.sum(axis=1)
        digital_ns = self.digital_latency_s * 1e9
        if self.arch.chip.schedule == "pipelined":
            xbar_ns = np.where(fits, layer_ns.max(axis=1), seq_ns)
            total_ns = np.where(fits, np.maximum(xbar_ns, digital_ns), seq_ns + digital_ns)
        else:
            xbar_ns = seq_ns
            total_ns = seq_ns + digital_ns
        layer_xbars = t * copies
        occupied = np.where(fits, layer_xbars.sum(axis=1), np.minimum(t.max(axis=1), x))
        programmed = np.where(fits, (cells * copies).sum(axis=1) * write_pj_per_cell, 0.0)
        return Evaluation(
            latency_s=total_ns * 1e-9,
            energy_j=layer_pj.sum(axis=1) * 1e-12 + self.digital_energy_j,
            crossbars=occupied,
            crossbars_needed=needed,
            layer_latency_s=layer_ns * 1e-9,
            layer_energy_j=layer_pj * 1e-12,
            layer_crossbars=layer_xbars,
            replicas=copies,
            fits=fits,
            crossbar_latency_s=xbar_ns * 1e-9,
            read_energy_j=read_pj.sum(axis=1) * 1e-12,
            write_energy_j=write_pj.sum(axis=1) * 1e-12,
            programming_energy_j=programmed * 1e-12,
            programming_s=np.where(fits, layer_xbars.sum(axis=1) * t_write_ns, 0.0) * 1e-9,
            area_mm2=self.area_mm2,
            digital_latency_s=self.digital_latency_s,
            digital_energy_j=self.digital_energy_j,
        )

    def w8a8_latency_s(self) -> float:
        if self._w8a8 is None:
            self._w8a8 = float(self.evaluate(uniform_policy(8, 8, self.n_layers)).latency_s[0])
        return self._w8a8

    def speedup_vs_w8a8(self, policies: np.ndarray) -> np.ndarray:
        """Latency of uniform W8A8 on the same arch over the policies' latency, [P]."""
        return self.w8a8_latency_s() / self.evaluate(policies).latency_s

    def report(self, policy: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Per-layer and summary tables of one policy [L, 2]."""
        from cimdse.compiler.tables import policy_tables

        return policy_tables(self, policy)


def compile_network(network: Network, arch: ArchSpec) -> CompiledNetwork:
    """Map every layer of ``network`` onto ``arch`` at every weight width."""
    spec = arch.crossbar
    elements = sum(op.elements for op in network.digital_ops)
    return CompiledNetwork(
        network=network,
        arch=arch,
        tables=build_tables(network.layers, spec),
        area_mm2=costs.area_power(arch).chip_area_mm2,
        digital_latency_s=elements * costs.constant(spec, "digital_ns_per_op") / arch.chip.tiles * 1e-9,
        digital_energy_j=elements * costs.constant(spec, "digital_pj_per_op") * 1e-12,
    )
