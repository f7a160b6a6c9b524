"""Reference cost constants, each with its unit and source: the table an architecture
spec validates its overrides against (``crossbar.costs``) and the cost models in
:mod:`cimdse.costs` read. It sits below both, so neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

ISAAC = "ISAAC ISCA'16 Table I (32 nm)"
CIMAQ = "CIM-AQ hardware_config.yaml (its own assumption)"
PUMA_SIM = "puma-simulator include/constants.py"
SURVEY = "Accelergy ADC plug-in, fit to Murmann's ADC survey 1997-2023 (32 nm, 1 GS/s)"


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
    # ADC: the reference converter, 8-bit SAR at 1.28 GS/s (2 mW, 0.0012 mm2): 1.5625 pJ per conversion.
    "adc_power_mw": Constant(2.0, "mW per reference ADC converting continuously", ISAAC),
    "adc_area_mm2": Constant(0.0012, "mm2 per reference ADC", ISAAC),
    "adc_ref_bits": Constant(8, "bits of the reference ADC", ISAAC),
    "adc_rate_gsps": Constant(1.28, "GS/s of the reference ADC", "ISAAC ISCA'16 section 6 (1.28 GS/s; Table I: 1.2)"),
    # Survey fit: E(b) = 0.867 + 0.00329 * 2^b pJ (0.92 / 1.07 / 1.71 pJ at 4 / 6 / 8 bits), so at the
    # 8-bit reference 0.867 / 1.71 = 0.507 of the energy does not scale with bits; the area,
    # about 5,000 um2 at 4 bits and 6,000 um2 at 8, keeps 0.82 of itself.
    "adc_energy_floor": Constant(0.507, "fraction of the reference energy not scaling with bits", SURVEY),
    "adc_area_floor": Constant(0.82, "fraction of the reference area not scaling with bits", SURVEY),
    "adc_ns_per_bit": Constant(12.5, "ns per converted bit (adc_model linear)", PUMA_SIM),
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
    # Activation traffic per byte.
    "edram_pj_per_byte": Constant(
        17.2 / 32, "pJ per byte read or written", f"{PUMA_SIM}: 0.0172 nJ per 256-bit access"
    ),
    "bus_pj_per_byte": Constant(
        7.0 / (48 * 1.2), "pJ per byte on the tile bus", "ISAAC ISCA'16 Table I: 7 mW, 384 wires at 1.2 GHz"
    ),
    "router_pj_per_byte": Constant(
        42.0 / (8 * 4 * 1.2),
        "pJ per byte through a router",
        "ISAAC ISCA'16 Table I: 42 mW, 8 ports x 32 bits at 1.2 GHz",
    ),
    # Leakage: the simulator's units leak 10 % of their power (ADC 0.2 of 2 mW, DAC, shift-add, sigmoid).
    "leakage_fraction": Constant(0.1, "fraction of the chip's power that leaks", PUMA_SIM),
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
