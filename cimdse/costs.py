"""Component area, power, energy and timing models.

Every constant carries its source beside it (:data:`cimdse.constants.CONSTANTS`). Models are small pure functions of a
crossbar/chip spec so that the compiler, the sweep and the reports share one truth.
A spec may override any constant by name (``crossbar.costs`` in the YAML file).

- ADC (``crossbar.adc_model``): conversion time ``(b + 1) / ((b_ref + 1) rate_ref)``
  (``sar``) or ``b * adc_ns_per_bit`` (``linear``); energy per conversion and area
  ``ref * (floor + (1 - floor) 2^(b - b_ref))`` with the survey's floors; an ideal ADC
  costs nothing.
- One crossbar operation: ``t_op = G (t_read + ceil(c' / adcs) t_adc)`` (or the max of
  the two with ``timing.adc_overlap``), energy by part (:data:`OP_PARTS`) as power x
  busy time, each DAC row once per input slice.
- Activation traffic per byte (eDRAM, bus + router), leakage as a fraction of the
  chip's power, writes ``parallel_writes`` crossbars at a time, and the chip's peak
  throughput at its native precision (:func:`peak`).

Units: area mm2, power mW, energy pJ, time ns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cimdse.constants import CONSTANTS, SURVEY

if TYPE_CHECKING:  # pragma: no cover
    from cimdse.arch import ArchSpec, CrossbarSpec

#: Energy per inference, by part: the first six are spent in every crossbar operation.
OP_PARTS = ("crossbar", "adc", "dac", "sample_hold", "shift_add", "registers")
ENERGY_PARTS = (*OP_PARTS, "buffer", "network", "digital", "write", "leakage")
NOT_MODELLED = "not modelled (ideal ADC)"


def constant(spec: CrossbarSpec, name: str) -> float:
    """A constant, or the spec's override of it."""
    if name in spec.costs:
        return float(spec.costs[name])
    return CONSTANTS[name].value


def source(spec: CrossbarSpec, name: str) -> str:
    return "arch file override" if name in spec.costs else CONSTANTS[name].source


# ---------------------------------------------------------------- scaling rules
def extra_columns(spec: CrossbarSpec) -> int:
    """Columns beyond ``cols`` on every crossbar: ISAAC's flipped-column encoding adds a
    unit column (all cells 1) whose sum restores the flipped columns."""
    return 1 if spec.encoding == "flip" else 0


def reference_columns(spec: CrossbarSpec) -> int:
    """Columns a weight group adds for the offset mapping (its reference column), unless the
    flip encoding's unit column gives the same sum of inputs."""
    return 1 if spec.mapping == "offset" and spec.encoding == "plain" else 0


def array_scale(spec: CrossbarSpec) -> float:
    """Array power and area scale with cell count (rows x cols, extra column included) relative to 128x128."""
    return spec.rows * (spec.cols + extra_columns(spec)) / (128 * 128)


def adc_conversion_ns(spec: CrossbarSpec) -> float:
    """Time of one conversion; 0 for an ideal ADC (not modelled).

    ``sar``: a SAR converter takes one cycle per bit plus one to sample (NeuroSim V1.4
    SarADC.cpp: (bits + 1) ns), its cycle set by the reference ADC's rate at its bits:
    ``t(b) = (b + 1) / ((b_ref + 1) * rate_ref)``. ``linear``: ``t(b) = b * adc_ns_per_bit``
    (PUMA's simulator, 12.5 ns per bit)."""
    if spec.adc_bits is None:
        return 0.0
    if spec.adc_model == "linear":
        return spec.adc_bits * constant(spec, "adc_ns_per_bit")
    ref = constant(spec, "adc_ref_bits")
    return (spec.adc_bits + 1) / ((ref + 1) * constant(spec, "adc_rate_gsps"))


def _ref_conversion_ns(spec: CrossbarSpec) -> float:
    """Conversion time of the reference ADC (its bits, the spec's law)."""
    ref = constant(spec, "adc_ref_bits")
    if spec.adc_model == "linear":
        return ref * constant(spec, "adc_ns_per_bit")
    return 1.0 / constant(spec, "adc_rate_gsps")


def _floor_scale(bits: int, ref_bits: float, floor: float) -> float:
    """``floor + (1 - floor) * 2^(bits - ref)``: a part that does not scale with bits (comparator,
    logic, references) plus a Walden term that doubles per bit (Murmann's survey)."""
    return floor + (1.0 - floor) * 2.0 ** (bits - ref_bits)


def adc_energy_pj(spec: CrossbarSpec) -> float:
    """Energy of one conversion: the reference's (its power x its conversion time) scaled by
    :func:`_floor_scale` with the survey's energy floor; 0 for an ideal ADC."""
    if spec.adc_bits is None:
        return 0.0
    e_ref = constant(spec, "adc_power_mw") * _ref_conversion_ns(spec)
    return e_ref * _floor_scale(spec.adc_bits, constant(spec, "adc_ref_bits"), constant(spec, "adc_energy_floor"))


def adc_area_mm2(spec: CrossbarSpec) -> float:
    """Area of one ADC: the reference's scaled with the survey's area floor; 0 when ideal."""
    if spec.adc_bits is None:
        return 0.0
    ref = constant(spec, "adc_ref_bits")
    return constant(spec, "adc_area_mm2") * _floor_scale(spec.adc_bits, ref, constant(spec, "adc_area_floor"))


def adc_power_mw(spec: CrossbarSpec) -> float:
    """Power of one ADC converting back to back: energy per conversion over its time."""
    t = adc_conversion_ns(spec)
    return adc_energy_pj(spec) / t if t else 0.0


# ---------------------------------------------------------------- per-crossbar parts
@dataclass(frozen=True)
class Part:
    """One component kind: how many, and their total area and power."""

    name: str
    count: float
    area_mm2: float
    power_mw: float
    source: str


def crossbar_parts(spec: CrossbarSpec) -> list[Part]:
    """The array and its periphery, for one crossbar."""

    def part(name: str, count: float, key: str, scale: float = 1.0) -> Part:
        # ``key`` names a pair of constants, KEY_area_mm2... and KEY_power_mw...
        area_key, power_key = _pair(key)
        return Part(
            name,
            count,
            count * scale * constant(spec, area_key),
            count * scale * constant(spec, power_key),
            source(spec, power_key),
        )

    c = lambda n: constant(spec, n)  # noqa: E731
    cols = spec.cols + extra_columns(spec)
    if spec.adc_bits is None:
        adc = Part("adc", spec.adcs, 0.0, 0.0, NOT_MODELLED)
    else:
        law = f"{spec.adc_model} law, {spec.adc_bits} bits, floors: {SURVEY}"
        adc = Part("adc", spec.adcs, spec.adcs * adc_area_mm2(spec), spec.adcs * adc_power_mw(spec), law)
    return [
        part("array", 1, "array", array_scale(spec)),
        adc,
        # a d-bit DAC costed as 2^(d-1) 1-bit DACs (assumption)
        part("dac", spec.rows, "dac", 2.0 ** (spec.dac_bits - 1)),
        part("sample_hold", cols, "sh"),
        part("shift_add", c("shift_add_per_crossbar"), "shift_add"),
        part("input_register", spec.rows * c("in_reg_bits_per_row") / 8, "in_reg"),
        part("output_register", cols * c("out_reg_bits_per_col") / 8, "out_reg"),
    ]


def _pair(key: str) -> tuple[str, str]:
    if key in ("in_reg", "out_reg"):
        return f"{key}_area_mm2_per_byte", f"{key}_power_mw_per_byte"
    return f"{key}_area_mm2", f"{key}_power_mw"


def tile_parts(arch: ArchSpec) -> list[Part]:
    """Every component of one tile: its crossbars with periphery, plus the tile's own parts."""
    n = arch.chip.crossbars_per_tile
    parts = [
        Part(f"{p.name} (x{n} crossbars)", p.count * n, p.area_mm2 * n, p.power_mw * n, p.source)
        for p in crossbar_parts(arch.crossbar)
    ]
    parts += [
        Part(x.name, x.count, x.count * x.area_mm2, x.count * x.power_mw, x.source) for x in arch.chip.tile_components
    ]
    return parts


@dataclass(frozen=True)
class AreaPower:
    tile_area_mm2: float
    tile_power_mw: float
    chip_area_mm2: float
    chip_power_mw: float
    chip_parts_area_mm2: float  # chip-level parts (I/O links) outside the tiles


def area_power(arch: ArchSpec) -> AreaPower:
    tile = tile_parts(arch)
    ta = sum(p.area_mm2 for p in tile)
    tp = sum(p.power_mw for p in tile)
    extra_a = sum(x.count * x.area_mm2 for x in arch.chip.chip_components)
    extra_p = sum(x.count * x.power_mw for x in arch.chip.chip_components)
    return AreaPower(ta, tp, ta * arch.chip.tiles + extra_a, tp * arch.chip.tiles + extra_p, extra_a)


# ---------------------------------------------------------------- timing and energy
def row_groups(spec: CrossbarSpec, rows_used: int) -> int:
    """Sequential activations of one crossbar: its used rows in groups of active_rows."""
    return math.ceil(min(rows_used, spec.rows) / spec.active_rows_or_all)


def conversions(spec: CrossbarSpec, cols_used: int) -> int:
    """Columns one row-group read converts: the used ones plus the encoding's extra column."""
    return cols_used + extra_columns(spec)


def op_ns(spec: CrossbarSpec, rows_used: int, cols_used: int) -> float:
    """One crossbar operation (one input slice through one crossbar), unless the spec fixes it:
    ``t_op = G * (t_read + T * t_adc)`` with ``T = ceil(conversions / adcs)`` and ``t_adc`` from
    the ADC model; with ``timing.adc_overlap`` the sample-and-hold lets the next read overlap
    the conversions, so ``t_op = G * max(t_read, T * t_adc)`` (ISAAC's pipeline)."""
    if spec.timing.op_ns is not None:
        return spec.timing.op_ns
    if spec.timing.cycle_ns is not None:
        return tile_slice_cycles(spec, rows_used, conversions(spec, cols_used)) * spec.timing.cycle_ns
    conv = math.ceil(conversions(spec, cols_used) / spec.adcs) * adc_conversion_ns(spec)
    read = spec.timing.read_ns
    return row_groups(spec, rows_used) * (max(read, conv) if spec.timing.adc_overlap else read + conv)


def op_energy_pj(spec: CrossbarSpec, rows_used: int, cols_used: int) -> np.ndarray:
    """Energy of one crossbar operation by part (:data:`OP_PARTS`), in pJ:

    - crossbar: array power x read time, per row-group read;
    - adc: conversions (columns x row groups) x :func:`adc_energy_pj`;
    - dac: each used row driven once per input slice, DAC power x read time;
    - sample_hold: one sample per conversion, its power x read time;
    - shift_add: one accumulation per conversion, the units' power x the reference conversion time;
    - registers: input and output registers' power x the operation's time.

    Powers are ISAAC's at full activity (mW x ns = pJ)."""
    c = lambda n: constant(spec, n)  # noqa: E731
    g = row_groups(spec, rows_used)
    read = spec.timing.read_ns
    samples = conversions(spec, cols_used) * g
    reg_mw = spec.rows * c("in_reg_bits_per_row") / 8 * c("in_reg_power_mw_per_byte") + (
        spec.cols + extra_columns(spec)
    ) * c("out_reg_bits_per_col") / 8 * c("out_reg_power_mw_per_byte")
    return np.array(
        [
            c("array_power_mw") * array_scale(spec) * read * g,
            samples * adc_energy_pj(spec),
            rows_used * 2.0 ** (spec.dac_bits - 1) * c("dac_power_mw") * read,
            samples * c("sh_power_mw") * read,
            samples * c("shift_add_per_crossbar") * c("shift_add_power_mw") / c("adc_rate_gsps"),
            reg_mw * op_ns(spec, rows_used, cols_used),
        ]
    )


def write_energy_pj(spec: CrossbarSpec, cells: int) -> float:
    return cells * constant(spec, "write_pj_per_cell")


def write_ns(spec: CrossbarSpec) -> float:
    """Time to program one crossbar (all its rows)."""
    return spec.timing.write_us * 1e3


def programming_ns(arch: ArchSpec, crossbars: np.ndarray | int) -> np.ndarray:
    """Time to program ``crossbars``: ``chip.parallel_writes`` of them at a time."""
    return -(-np.asarray(crossbars) // arch.chip.writes_at_once) * write_ns(arch.crossbar)


def traffic_pj_per_byte(spec: CrossbarSpec) -> tuple[float, float]:
    """(buffer, network) energy per byte of activations: an eDRAM access, and the tile bus plus a router hop."""
    c = lambda n: constant(spec, n)  # noqa: E731
    return c("edram_pj_per_byte"), c("bus_pj_per_byte") + c("router_pj_per_byte")


# ---------------------------------------------------------------- peak figures
@dataclass(frozen=True)
class Peak:
    """Peak throughput and efficiency at ``bits``-bit weights and inputs, every crossbar
    busy with full blocks of weights; an op is a multiply or an add (2 per MAC)."""

    bits: int
    peak_gops: float
    area_mm2: float
    power_w: float

    @property
    def gops_per_mm2(self) -> float:
        return self.peak_gops / self.area_mm2

    @property
    def gops_per_w(self) -> float:
        return self.peak_gops / self.power_w if self.power_w else math.inf


def peak(arch: ArchSpec, bits: int | None = None) -> Peak:
    """Ops per second with all crossbars computing: each holds ``R x n`` weights (``n`` outputs
    of ``cells_per_weight x polarities`` columns) and takes ``ceil(bits / dac_bits)`` operations
    of :func:`op_ns` per input vector, so ``GOPS = 2 R n X / (S t_op)``."""
    from cimdse.crossbar import cells_per_weight, polarities  # sibling layer: closed forms only

    spec, b = arch.crossbar, bits or arch.chip.native_bits
    per_weight = cells_per_weight(spec, b) * polarities(spec)
    ref = reference_columns(spec)
    data_cols = spec.cols - ref
    outputs: float = data_cols // per_weight if data_cols >= per_weight else data_cols / per_weight
    cols_used = spec.cols if data_cols < per_weight else int(outputs) * per_weight + ref
    rows = spec.rows // 2 if spec.mapping == "differential-row" else spec.rows
    t_mvm = math.ceil(b / spec.dac_bits) * op_ns(spec, spec.rows, cols_used)
    ap = area_power(arch)
    gops = 2 * rows * outputs * arch.chip.crossbars / t_mvm
    return Peak(b, gops, ap.chip_area_mm2, ap.chip_power_mw * 1e-3)


# ---------------------------------------------------------------- cycle-level tile timing
def tile_cycles_per_mvm(spec: CrossbarSpec, w_bits: int, a_bits: int, rows_used: int, cols_used: int) -> int:
    """Clock cycles of one MVM on the generated RTL tile (``cimdse.rtl``), back to back.

    The tile accepts the input vector (1 cycle); then for each of the S = ceil(a / d)
    input slices and each of the G row groups it samples all column sums (1 cycle) and
    converts the ``cols_used`` columns (plus the flip encoding's unit column,
    :func:`conversions`) with its ``adcs`` converters in T = ceil(conversions / adcs)
    cycles; a last cycle combines the columns into outputs:

        cycles = S * G * (1 + T) + 2

    This is design section 4's ``t_op = G * (t_read + T * t_adc)`` per slice with one
    cycle per read and per conversion. ``rows_used`` and ``cols_used`` are physical
    rows and columns. ``w_bits`` sets no cycles (it is in ``cols_used``); it is taken
    so that callers pass one layer's full description and it is range-checked here.
    """
    if not 1 <= w_bits <= 16 or not 1 <= a_bits <= 16:
        raise ValueError(f"w_bits and a_bits must be in 1..16, got {w_bits} and {a_bits}")
    if not 1 <= rows_used <= spec.rows or not 1 <= cols_used <= spec.cols:
        raise ValueError(f"rows_used {rows_used} / cols_used {cols_used} must be in 1..{spec.rows} / 1..{spec.cols}")
    slice_cycles = tile_slice_cycles(spec, rows_used, conversions(spec, cols_used))
    return math.ceil(a_bits / spec.dac_bits) * slice_cycles + 2


def tile_slice_cycles(spec: CrossbarSpec, rows_used: int, cols_used: int) -> int:
    """Cycles the RTL tile spends on one input slice: G row-group reads, each followed by
    ceil(cols_used / adcs) ADC steps. The cost model's cycle-level timing
    (``timing.cycle_ns``) and :func:`tile_cycles_per_mvm` share it."""
    return row_groups(spec, rows_used) * (1 + math.ceil(cols_used / spec.adcs))


def tile_mvm_ns(
    spec: CrossbarSpec, w_bits: int, a_bits: int, rows_used: int, cols_used: int, clock_ghz: float
) -> float:
    """Cycle-level time of one MVM on the RTL tile at ``clock_ghz``: the cycle formula
    of :func:`tile_cycles_per_mvm` over the clock, so that cost model and RTL agree."""
    return tile_cycles_per_mvm(spec, w_bits, a_bits, rows_used, cols_used) / clock_ghz
