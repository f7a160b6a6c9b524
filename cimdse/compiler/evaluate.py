"""Schedule and costs of a compiled network, for many policies at once (numpy).

``compile_network`` tabulates every layer's placement for w_bits = 1..8 (see
``mapping``); ``CompiledNetwork.evaluate`` then costs policies [P, L, 2] with table
lookups and array arithmetic only: no Python loop over policies or MVMs.

Model (design.md section 4), for layer l with t_l crossbars per copy, S_l input
slices, V_l MVMs and t_op the time of one crossbar operation (``costs.op_ns``):

- resident (sum of t_l <= X, the chip's crossbars): spare crossbars hold copies
  (``replication``), ``crossbar_l = V_l * S_l * t_op / copies_l``; programming is
  reported once, apart, ``chip.parallel_writes`` crossbars at a time.
- re-programmed (it does not fit): the layer runs in ``ceil(t_l / X)`` rounds of at most
  X crossbars, each programmed ``parallel_writes`` at a time and then computing
  ``V_l * S_l * t_op``; every inference writes every cell once.
- digital ops (pooling, add, concat, activations, unfolded norms, attention's
  activation x activation matmuls at one op per MAC, recurrent gates) run after the layer
  they follow, on the tiles that hold it: ``digital_l = E_l * digital_ns_per_op /
  (digital_lanes * tiles_l)``, ``tiles_l = ceil(crossbars_l / crossbars_per_tile)``.
  A layer's stage is ``crossbar_l + digital_l``.
- with ``matmul="crossbar"`` the activation x activation matmuls run instead on crossbars
  written at run time (``runtime``: write, then stream), added to the stage of the layer
  they follow; their energy counts as crossbar operations and writes.
- a layer gets at most ``Layer.copies_limit`` copies: V, or 1 for recurrent weights,
  whose time steps depend on each other.
- schedule: latency (one inference through every stage) is the sum of the stages;
  the interval between inferences is that sum when ``sequential`` (or re-programmed)
  and the slowest stage when ``pipelined``. Copies are allocated on the stage times
  as if both parts shrank with copies.
- energy per inference, by part (``costs.ENERGY_PARTS``): ``costs.op_energy_pj`` per
  crossbar operation (every crossbar of a copy, each input slice, each MVM: crossbar,
  ADC, DAC, sample-and-hold, shift-add, registers); buffer: activations read
  (``V K a`` bits, one im2col row per MVM) and written (``V N a`` bits) at
  ``edram_pj_per_byte``; network: the outputs over the tile bus and a router hop;
  digital: ``digital_pj_per_op`` per element op; write: re-programmed cells; leakage:
  ``leakage_fraction`` of the chip's power over the interval (the chip leaks while an
  inference occupies it; when pipelined each inference holds it one interval).
- area: the chip's; occupied: the tiles a policy's crossbars fill; resident: the
  smallest chip (tiles, plus its chip-level parts) that holds one copy of every layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from cimdse import costs
from cimdse.arch import ArchSpec
from cimdse.compiler.ir import Network
from cimdse.compiler.mapping import MappingTables, build_tables
from cimdse.compiler.replication import allocate_max, allocate_sum
from cimdse.compiler.runtime import MATMUL_UNITS, RuntimeMatmul, runtime_matmul
from cimdse.errors import CimdseError
from cimdse.policy import check_policy, uniform_policy

ENERGY_PARTS = costs.ENERGY_PARTS
_N_OP = len(costs.OP_PARTS)


@dataclass(frozen=True)
class Evaluation:
    """Costs of P policies: arrays [P], [P, L] or [P, L, parts]; seconds, joules, counts, mm2."""

    latency_s: np.ndarray  # [P] one inference through every stage, digital ops included
    interval_s: np.ndarray  # [P] between inferences (= latency unless pipelined and resident)
    energy_j: np.ndarray  # [P] per inference, every part (programming of resident weights not)
    leakage_j: np.ndarray  # [P] the chip's leakage over the interval
    crossbars: np.ndarray  # [P] crossbars occupied on the chip
    crossbars_needed: np.ndarray  # [P] one copy of every layer
    layer_latency_s: np.ndarray  # [P, L] the layer's stage: crossbars then its digital ops
    layer_digital_latency_s: np.ndarray  # [P, L]
    layer_energy_j: np.ndarray  # [P, L] every part but leakage
    layer_crossbars: np.ndarray  # [P, L] crossbars per copy x copies
    replicas: np.ndarray  # [P, L] copies (1 when re-programmed)
    fits: np.ndarray  # [P] weights resident
    crossbar_latency_s: np.ndarray  # [P] sum of the layers' crossbar time
    digital_latency_s: np.ndarray  # [P] sum of the layers' digital time
    programming_energy_j: np.ndarray  # [P] once, resident weights and copies (0 when re-programmed)
    programming_s: np.ndarray  # [P] once, parallel_writes crossbars at a time
    occupied_tiles: np.ndarray  # [P]
    occupied_area_mm2: np.ndarray  # [P] the occupied tiles' area
    resident_tiles: np.ndarray  # [P] the smallest chip holding every layer once
    resident_area_mm2: np.ndarray  # [P] that chip's area, chip-level parts included
    area_mm2: float  # the whole chip
    _by_part: Callable[[], np.ndarray] = field(repr=False, compare=False)

    @cached_property
    def layer_energy_parts_j(self) -> np.ndarray:
        """[P, L, parts] by ENERGY_PARTS (the leakage column is 0: it belongs to the chip)."""
        return self._by_part()

    @cached_property
    def energy_parts_j(self) -> np.ndarray:
        """[P, parts] by ENERGY_PARTS, summing to energy_j."""
        totals = self.layer_energy_parts_j.sum(axis=1)
        totals[:, ENERGY_PARTS.index("leakage")] = self.leakage_j
        return totals

    def part(self, name: str) -> np.ndarray:
        """Energy per inference of one part [P]."""
        return self.energy_parts_j[:, ENERGY_PARTS.index(name)]

    @property
    def digital_energy_j(self) -> np.ndarray:
        return self.part("digital")

    @property
    def write_energy_j(self) -> np.ndarray:
        return self.part("write")


@dataclass
class CompiledNetwork:
    """A network mapped onto an architecture; cheap to evaluate for any policy."""

    network: Network
    arch: ArchSpec
    tables: MappingTables
    area_power: costs.AreaPower
    digital_elements: np.ndarray  # [L] element ops run after each layer
    matmul_unit: str = "digital"
    runtime_matmuls: list[RuntimeMatmul] = field(default_factory=list)
    runtime_ns: np.ndarray | None = None  # [L] run-time written matmuls after each layer: latency
    runtime_pj: np.ndarray | None = None  # [L, OP_PARTS + 1] their energy: crossbar operations by part, writes
    _w8a8: tuple[float, float] | None = field(default=None, repr=False)

    @property
    def n_layers(self) -> int:
        return len(self.network.layers)

    @property
    def area_mm2(self) -> float:
        return self.area_power.chip_area_mm2

    @cached_property
    def _consts(self) -> dict[str, float]:
        spec, chip = self.arch.crossbar, self.arch.chip
        buf, net = costs.traffic_pj_per_byte(spec)
        return {
            "write_pj": costs.write_energy_pj(spec, 1),
            "digital_ns": costs.constant(spec, "digital_ns_per_op") / chip.digital_lanes,
            "digital_pj": costs.constant(spec, "digital_pj_per_op"),
            "buffer_pj": buf,
            "network_pj": net,
            "leak_mw": costs.constant(spec, "leakage_fraction") * self.area_power.chip_power_mw,
        }

    def evaluate(self, policies: np.ndarray) -> Evaluation:
        """Costs of ``policies`` [L, 2] or [P, L, 2] (w_bits, a_bits); always returns [P] arrays."""
        pol = check_policy(policies, self.n_layers, "policy", self.network.names)
        if pol.ndim == 2:
            pol = pol[None]
        tb, k, chip = self.tables, self._consts, self.arch.chip
        x, per_tile = chip.crossbars, chip.crossbars_per_tile
        rows = np.arange(self.n_layers)[None, :]
        wi, ai = pol[..., 0] - 1, pol[..., 1] - 1
        t = tb.crossbars[rows, wi]  # [P, L] crossbars per copy
        v = tb.V[None, :]
        mvm_ops = v * tb.input_slices[ai]  # crossbar operations per crossbar: V * S
        base_ns = mvm_ops * tb.op_ns[rows, wi]  # one copy, resident
        digital_work = self.digital_elements[None, :] * k["digital_ns"]  # [1, L] ns on one tile's lanes
        cells = tb.cells[rows, wi]
        needed = t.sum(axis=1)
        fits = needed <= x

        copies = np.ones_like(t)
        if fits.any():
            idx = np.flatnonzero(fits)
            spare = x - needed[idx]
            alloc = allocate_max if chip.schedule == "pipelined" else allocate_sum
            # a copy shortens both parts (more crossbars, and in time more tiles for the digital ops)
            stage_one = base_ns[idx] + digital_work / -(-t[idx] // per_tile)
            copies[idx] = alloc(stage_one, t[idx], tb.max_copies, spare)
        layer_xbars = t * copies
        rounds = -(-t // x)
        full, rest = t // x, t % x
        write_ns = full * costs.programming_ns(self.arch, x) + np.where(
            rest > 0, costs.programming_ns(self.arch, rest), 0.0
        )
        xbar_ns = np.where(fits[:, None], base_ns / copies, write_ns + rounds * base_ns)
        tiles = -(-np.minimum(layer_xbars, x) // per_tile)
        digital_ns = digital_work / tiles
        stage_ns = xbar_ns + digital_ns
        if self.runtime_ns is not None:  # activation x activation matmuls on run-time written crossbars
            stage_ns = stage_ns + self.runtime_ns[None, :]
        latency_ns = stage_ns.sum(axis=1)
        pipelined = fits & (chip.schedule == "pipelined")
        interval_ns = np.where(pipelined, stage_ns.max(axis=1), latency_ns)

        # energy [P, L] in pJ; its breakdown by part is computed only when asked for
        a = pol[..., 1]
        write_pj = np.where(fits[:, None], 0.0, cells * k["write_pj"])
        op_pj = mvm_ops * self._op_total_pj[rows, wi]
        layer_pj = op_pj + a * self._traffic_pj_per_bit[None, :] + self._digital_pj[None, :] + write_pj
        if self.runtime_pj is not None:  # run-time written matmuls: their operations and writes
            layer_pj = layer_pj + self.runtime_pj.sum(axis=1)[None, :]
        leakage_pj = k["leak_mw"] * interval_ns

        def by_part() -> np.ndarray:
            parts = np.zeros((*t.shape, len(ENERGY_PARTS)))
            parts[..., :_N_OP] = mvm_ops[..., None] * tb.op_energy_pj[rows, wi]
            out_bytes = v * tb.N[None, :] * a / 8
            in_bytes = v * tb.K_total[None, :] * a / 8
            parts[..., ENERGY_PARTS.index("buffer")] = (in_bytes + out_bytes) * k["buffer_pj"]
            parts[..., ENERGY_PARTS.index("network")] = out_bytes * k["network_pj"]
            parts[..., ENERGY_PARTS.index("digital")] = self._digital_pj[None, :]
            parts[..., ENERGY_PARTS.index("write")] = write_pj
            if self.runtime_pj is not None:
                parts[..., :_N_OP] += self.runtime_pj[None, :, :_N_OP]
                parts[..., ENERGY_PARTS.index("write")] += self.runtime_pj[None, :, _N_OP]
            return parts * 1e-12

        occupied = np.where(fits, layer_xbars.sum(axis=1), np.minimum(t.max(axis=1), x))
        occupied_tiles = -(-occupied // per_tile)
        resident_tiles = -(-needed // per_tile)
        tile_mm2 = self.area_power.tile_area_mm2
        programmed = np.where(fits, (cells * copies).sum(axis=1) * k["write_pj"], 0.0)
        return Evaluation(
            latency_s=latency_ns * 1e-9,
            interval_s=interval_ns * 1e-9,
            energy_j=(layer_pj.sum(axis=1) + leakage_pj) * 1e-12,
            leakage_j=leakage_pj * 1e-12,
            crossbars=occupied,
            crossbars_needed=needed,
            layer_latency_s=stage_ns * 1e-9,
            layer_digital_latency_s=digital_ns * 1e-9,
            layer_energy_j=layer_pj * 1e-12,
            layer_crossbars=layer_xbars,
            replicas=copies,
            fits=fits,
            crossbar_latency_s=xbar_ns.sum(axis=1) * 1e-9,
            digital_latency_s=digital_ns.sum(axis=1) * 1e-9,
            programming_energy_j=programmed * 1e-12,
            programming_s=np.where(fits, costs.programming_ns(self.arch, layer_xbars.sum(axis=1)), 0.0) * 1e-9,
            occupied_tiles=occupied_tiles,
            occupied_area_mm2=occupied_tiles * tile_mm2,
            resident_tiles=resident_tiles,
            resident_area_mm2=resident_tiles * tile_mm2 + self.area_power.chip_parts_area_mm2,
            area_mm2=self.area_mm2,
            _by_part=by_part,
        )

    @cached_property
    def _op_total_pj(self) -> np.ndarray:
        """[L, MAX_BITS] energy of one operation of every crossbar of a copy, all parts."""
        return self.tables.op_energy_pj.sum(axis=2)

    @cached_property
    def _traffic_pj_per_bit(self) -> np.ndarray:
        """[L] buffer and network energy per activation bit: V (K + N) reads and writes, V N sent."""
        tb, k = self.tables, self._consts
        return tb.V * ((tb.K_total + tb.N) * k["buffer_pj"] + tb.N * k["network_pj"]) / 8

    @cached_property
    def _digital_pj(self) -> np.ndarray:
        return self.digital_elements * self._consts["digital_pj"]

    def _w8a8_times(self) -> tuple[float, float]:
        if self._w8a8 is None:
            ev = self.evaluate(uniform_policy(8, 8, self.n_layers))
            self._w8a8 = (float(ev.latency_s[0]), float(ev.interval_s[0]))
        return self._w8a8

    def w8a8_latency_s(self) -> float:
        return self._w8a8_times()[0]

    def w8a8_interval_s(self) -> float:
        return self._w8a8_times()[1]

    def speedup_vs_w8a8(self, policies: np.ndarray) -> np.ndarray:
        """Latency of uniform W8A8 on the same arch over the policies' latency, [P]."""
        return self.w8a8_latency_s() / self.evaluate(policies).latency_s

    def throughput_speedup_vs_w8a8(self, policies: np.ndarray) -> np.ndarray:
        """Interval of uniform W8A8 over the policies' interval, [P] (= the latency speedup unless pipelined)."""
        return self.w8a8_interval_s() / self.evaluate(policies).interval_s


def compile_network(
    network: Network, arch: ArchSpec, *, matmul: str = "digital", matmul_bits: tuple[int, int] = (8, 8)
) -> CompiledNetwork:
    """Map every layer of ``network`` onto ``arch`` at every weight width; activation x
    activation matmuls on the digital unit (``matmul="digital"``, one op per MAC) or on
    crossbars written at run time (``"crossbar"``, at ``matmul_bits`` (w, a): the written
    operand's bits and the streamed one's), in the stage of the layer they follow."""
    if matmul not in MATMUL_UNITS:
        raise CimdseError(f"matmul unit {matmul!r}: expected one of {', '.join(MATMUL_UNITS)}")
    on_crossbar = matmul == "crossbar"
    runtime: list[RuntimeMatmul] = []
    runtime_ns = runtime_pj = None
    if on_crossbar:
        check_policy([list(matmul_bits)], 1, "matmul bits")
        index = {name: i for i, name in enumerate(network.names)}
        runtime_ns, runtime_pj = np.zeros(len(network.layers)), np.zeros((len(network.layers), _N_OP + 1))
        for op in network.digital_ops:
            if op.matmul:
                m = runtime_matmul(op, arch, *matmul_bits)
                runtime.append(m)
                i = index.get(op.layer, 0)
                runtime_ns[i] += m.latency_s * 1e9
                runtime_pj[i, :_N_OP] += m.op_energy_parts_j * 1e12
                runtime_pj[i, _N_OP] += m.write_energy_j * 1e12
    return CompiledNetwork(
        network=network,
        arch=arch,
        tables=build_tables(network.layers, arch.crossbar),
        area_power=costs.area_power(arch),
        digital_elements=np.array(network.digital_elements(skip_matmuls=on_crossbar), dtype=np.float64),
        matmul_unit=matmul,
        runtime_matmuls=runtime,
        runtime_ns=runtime_ns,
        runtime_pj=runtime_pj,
    )
