"""Component area, power, energy and timing models.

Every constant carries its source beside it. Models are small pure functions of a
crossbar/chip spec so that the compiler, the sweep and the reports share one truth.
A spec may override any constant by name (``crossbar.costs`` in the YAML file).

Units: area mm2, power mW, energy pJ, time ns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cimdse.arch import ArchSpec, CrossbarSpec

ISAAC = "ISAAC ISCA'16 Table I (32 nm)"
CIMAQ = "CIM-AQ hardware_config.yaml (its own assumption)"


@dataclass(frozen=True)
class Constant:
    """A reference value with its unit and source. An override (``crossbar.costs``) must
    be a finite number > 0, or >= 0 where ``zero_ok`` says 0 means "not counted"."""

    value: float
    unit: str
    source: str
    zero_ok: bool = False


#: Reference constants. Scaling rules are in the functions below.
CONSTANTS: dict[str, Constant] = {
    # Crossbar array: one 128x128 array of 2-bit cells.
    "array_power_mw": Constant(0.3, "mW per 128x128 array", ISAAC),
    "array_area_mm2": Constant(25e-6, "mm2 per 128x128 array", ISAAC),
    # ADC: 8-bit, 1.2 GS/s SAR.
    "adc_power_mw": Constant(2.0, "mW per 8-bit ADC", ISAAC),
    "adc_area_mm2": Constant(0.0012, "mm2 per 8-bit ADC", ISAAC),
    "adc_ref_bits": Constant(8, "bits of the reference ADC", ISAAC),
    "adc_rate_gsps": Constant(1.2, "GS/s of the reference ADC", ISAAC),
    # DAC: 8x128 1-bit DACs cost 4 mW and 0.00017 mm2 together.
    "dac_power_mw": Constant(4.0 / 1024, "mW per 1-bit DAC", ISAAC),
    "dac_area_mm2": Constant(0.00017 / 1024, "mm2 per 1-bit DAC", ISAAC),
    # Sample-and-hold: 8x128 of them cost 10 uW and 0.00004 mm2.
    "sh_power_mw": Constant(0.01 / 1024, "mW per sample-and-hold", ISAAC),
    "sh_area_mm2": Constant(0.00004 / 1024, "mm2 per sample-and-hold", ISAAC),
    # Shift-and-add: 4 units per IMA (8 arrays) cost 0.2 mW and 0.00024 mm2.
    "shift_add_power_mw": Constant(0.05, "mW per shift-and-add unit", ISAAC),
    "shift_add_area_mm2": Constant(0.00006, "mm2 per shift-and-add unit", ISAAC),
    "shift_add_per_crossbar": Constant(0.5, "units per array", ISAAC),
    # Registers: IMA input register 2 KB (1.24 mW, 0.0021 mm2), output 256 B (0.23 mW, 0.00077 mm2).
    "in_reg_power_mw_per_byte": Constant(1.24 / 2048, "mW per byte", ISAAC),
    "in_reg_area_mm2_per_byte": Constant(0.0021 / 2048, "mm2 per byte", ISAAC),
    "out_reg_power_mw_per_byte": Constant(0.23 / 256, "mW per byte", ISAAC),
    "out_reg_area_mm2_per_byte": Constant(0.00077 / 256, "mm2 per byte", ISAAC),
    # Per array: 128 rows x 16-bit inputs = 256 B in; 256 B out shared by 8 arrays.
    "in_reg_bits_per_row": Constant(16, "bits buffered per row", ISAAC),
    "out_reg_bits_per_col": Constant(2, "bits buffered per column", ISAAC),
    # Timing.
    "read_ns": Constant(100.0, "ns per array read", ISAAC),
    "write_us": Constant(56.0, "us to program one array", CIMAQ),
    "write_pj_per_cell": Constant(
        10.0, "pJ per programmed cell", "Wong et al., Metal-Oxide RRAM, Proc. IEEE 2012 (order of magnitude)"
    ),
    # Digital unit for non-crossbar ops (pooling, add, activation).
    # 0 leaves the digital ops out (CIM-AQ's latency counts crossbar writes and MVMs only).
    "digital_ns_per_op": Constant(1.0 / 1.2, "ns per element op at 1.2 GHz, one lane", ISAAC, zero_ok=True),
    "digital_pj_per_op": Constant(
        0.4 / 1.2, "pJ per element op (max-pool unit 0.4 mW at 1.2 GHz)", ISAAC, zero_ok=True
    ),
}


def constant(spec: CrossbarSpec, name: str) -> float:
    """A constant, or the spec's override of it."""
    if name in spec.costs:
        return float(spec.costs[name])
    return CONSTANTS[name].value


def source(spec: CrossbarSpec, name: str) -> str:
    return "arch file override" if name in spec.costs else CONSTANTS[name].source


# ---------------------------------------------------------------- scaling rules
def array_scale(spec: CrossbarSpec) -> float:
    """Array power and area scale with cell count (rows x cols) relative to 128x128."""
    return spec.rows * spec.cols / (128 * 128)


def adc_scale(bits: int | None, ref_bits: float) -> float:
    """ADC energy per conversion and area scale as 2^bits (Walden figure of merit,
    Murmann's ADC survey: SAR energy doubles per extra bit). An ideal ADC is costed
    as the reference."""
    if bits is None:  # an "ideal" ADC is costed as the reference converter
        return 1.0
    return 2.0 ** (bits - ref_bits)


def adc_ns(spec: CrossbarSpec) -> float:
    """Time of one ADC conversion."""
    return 1.0 / constant(spec, "adc_rate_gsps")


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
    return [
        part("array", 1, "array", array_scale(spec)),
        part("adc", spec.adcs, "adc", adc_scale(spec.adc_bits, c("adc_ref_bits"))),
        # a d-bit DAC costed as 2^(d-1) 1-bit DACs (assumption)
        part("dac", spec.rows, "dac", 2.0 ** (spec.dac_bits - 1)),
        part("sample_hold", spec.cols, "sh"),
        part("shift_add", c("shift_add_per_crossbar"), "shift_add"),
        part("input_register", spec.rows * c("in_reg_bits_per_row") / 8, "in_reg"),
        part("output_register", spec.cols * c("out_reg_bits_per_col") / 8, "out_reg"),
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


def area_power(arch: ArchSpec) -> AreaPower:
    tile = tile_parts(arch)
    ta = sum(p.area_mm2 for p in tile)
    tp = sum(p.power_mw for p in tile)
    extra_a = sum(x.count * x.area_mm2 for x in arch.chip.chip_components)
    extra_p = sum(x.count * x.power_mw for x in arch.chip.chip_components)
    return AreaPower(ta, tp, ta * arch.chip.tiles + extra_a, tp * arch.chip.tiles + extra_p)


# ---------------------------------------------------------------- timing and energy
def row_groups(spec: CrossbarSpec, rows_used: int) -> int:
    """Sequential activations of one crossbar: its used rows in groups of active_rows."""
    return math.ceil(min(rows_used, spec.rows) / spec.active_rows_or_all)


def op_ns(spec: CrossbarSpec, rows_used: int, cols_used: int) -> float:
    """One crossbar operation (one input slice through one crossbar): design section 4,
    ``t_op = G * (t_read + ceil(cols_used / adcs) * t_adc)``, unless the spec fixes it."""
    if spec.timing.op_ns is not None:
        return spec.timing.op_ns
    if spec.timing.cycle_ns is not None:
        return tile_slice_cycles(spec, rows_used, cols_used) * spec.timing.cycle_ns
    conversions = math.ceil(cols_used / spec.adcs)
    return row_groups(spec, rows_used) * (spec.timing.read_ns + conversions * adc_ns(spec))


def op_energy_pj(spec: CrossbarSpec, rows_used: int, cols_used: int) -> float:
    """Energy of one crossbar operation: array read, DACs, conversions, shift-add.
    Power x busy time of each part, with ISAAC's powers (mW x ns = pJ)."""
    c = lambda n: constant(spec, n)  # noqa: E731
    g = row_groups(spec, rows_used)
    read = spec.timing.read_ns
    array = c("array_power_mw") * array_scale(spec) * read * g
    dac = rows_used * 2.0 ** (spec.dac_bits - 1) * c("dac_power_mw") * read * g
    conversions = cols_used * g
    e_conv = c("adc_power_mw") * adc_scale(spec.adc_bits, c("adc_ref_bits")) * adc_ns(spec)
    adc = conversions * e_conv
    shift_add = conversions * c("shift_add_power_mw") * adc_ns(spec)
    return array + dac + adc + shift_add


def write_energy_pj(spec: CrossbarSpec, cells: int) -> float:
    return cells * constant(spec, "write_pj_per_cell")


def write_ns(spec: CrossbarSpec) -> float:
    """Time to program one crossbar (all its rows)."""
    return spec.timing.write_us * 1e3


# ---------------------------------------------------------------- cycle-level tile timing
def tile_cycles_per_mvm(spec: CrossbarSpec, w_bits: int, a_bits: int, rows_used: int, cols_used: int) -> int:
    """Clock cycles of one MVM on the generated RTL tile (``cimdse.rtl``), back to back.

    The tile accepts the input vector (1 cycle); then for each of the S = ceil(a / d)
    input slices and each of the G row groups it samples all column sums (1 cycle) and
    converts the ``cols_used`` columns with its ``adcs`` converters in
    T = ceil(cols_used / adcs) cycles; a last cycle combines the columns into outputs:

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
    return math.ceil(a_bits / spec.dac_bits) * tile_slice_cycles(spec, rows_used, cols_used) + 2


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
