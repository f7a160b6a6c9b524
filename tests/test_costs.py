"""Cost model: ADC laws, energy by part pinned by hand, latency vs interval, area, write
parallelism, the flipped-column encoding and the peak figures against ISAAC's Table IV."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from torch import nn

from cimdse import arch, costs
from cimdse.compiler import compile_network, policy_tables, trace
from cimdse.compiler.frontend import trace_spec
from cimdse.crossbar import adc_is_lossless, adc_shift, mvm, partial_sum_max, restore_flipped
from cimdse.errors import CimdseError
from cimdse.policy import uniform_policy
from cimdse.rtl.generate import tile_params

# Reference numbers used below, written out: ISAAC's ADC is 2 mW at 1.28 GS/s, so one
# 8-bit conversion is 2 / 1.28 = 1.5625 pJ and takes 1 / 1.28 = 0.78125 ns; a 1-bit DAC is
# 4 mW / 1024 and a sample-and-hold 0.01 mW / 1024, both over a 100 ns read.
E8 = 2.0 / 1.28
T8 = 1.0 / 1.28
DAC_PJ = 4.0 / 1024 * 100
SH_PJ = 0.01 / 1024 * 100
SA_PJ = 0.5 * 0.05 / 1.28  # half a shift-and-add unit per crossbar, per conversion
EDRAM_PJ_B = 17.2 / 32
NET_PJ_B = 7.0 / (48 * 1.2) + 42.0 / (8 * 4 * 1.2)
DIGITAL_NS = 1.0 / 1.2


# ---------------------------------------------------------------- ADC laws
def test_sar_adc_time_energy_and_area_depend_on_bits_with_a_floor():
    spec = arch.load("isaac").crossbar
    at = lambda b: spec.model_copy(update={"adc_bits": b})  # noqa: E731
    assert costs.adc_conversion_ns(at(8)) == pytest.approx(T8)
    assert costs.adc_conversion_ns(at(4)) == pytest.approx(5 / 9 * T8)  # (bits + 1) cycles
    assert costs.adc_energy_pj(at(8)) == pytest.approx(E8)
    assert costs.adc_energy_pj(at(4)) == pytest.approx(E8 * (0.507 + 0.493 / 16))
    assert costs.adc_energy_pj(at(1)) > 0.507 * E8  # the floor: fewer bits never cost nothing
    assert costs.adc_area_mm2(at(4)) == pytest.approx(0.0012 * (0.82 + 0.18 / 16))
    assert costs.adc_power_mw(at(8)) == pytest.approx(2.0)
    # the survey's own points, 0.92 / 1.07 / 1.71 pJ at 4 / 6 / 8 bits, within 3 % when anchored at 8 bits
    survey = {4: 0.92, 6: 1.07, 8: 1.71}
    for b, pj in survey.items():
        assert costs.adc_energy_pj(at(b)) / E8 == pytest.approx(pj / 1.71, rel=0.03)
    linear = spec.model_copy(update={"adc_model": "linear", "adc_bits": 6})
    assert costs.adc_conversion_ns(linear) == 6 * 12.5  # PUMA's simulator: 12.5 ns per bit


def test_ideal_adc_costs_nothing_and_says_not_modelled():
    spec = arch.load("cim-aq").crossbar
    assert costs.adc_conversion_ns(spec) == costs.adc_energy_pj(spec) == costs.adc_area_mm2(spec) == 0.0
    adc = next(p for p in costs.crossbar_parts(spec) if p.name == "adc")
    assert adc.area_mm2 == adc.power_mw == 0.0 and "not modelled" in adc.source
    assert costs.op_energy_pj(spec, 256, 256)[costs.OP_PARTS.index("adc")] == 0.0


def test_crossbar_operation_time_uses_the_adc_model():
    demo = arch.load("demo").crossbar  # 6-bit ADC, 4 per crossbar, reads not overlapped
    t6 = 7 / 9 * T8
    assert costs.op_ns(demo, 64, 64) == pytest.approx(100 + 16 * t6)
    four = demo.model_copy(update={"adc_bits": 4})
    assert costs.op_ns(four, 64, 64) == pytest.approx(100 + 16 * 5 / 9 * T8)
    assert costs.op_ns(four, 64, 64) < costs.op_ns(demo, 64, 64)
    isaac = arch.load("isaac").crossbar  # 129 conversions overlapped with the 100 ns read
    assert costs.op_ns(isaac, 128, 128) == pytest.approx(max(100, 129 * T8))
    assert costs.op_ns(isaac, 128, 64) == pytest.approx(100)


# ---------------------------------------------------------------- energy pinned by hand
def test_one_crossbar_operation_energy_by_hand():
    """isaac, a full 128 x 128 crossbar plus its unit column, one 1-bit input slice."""
    got = dict(zip(costs.OP_PARTS, costs.op_energy_pj(arch.load("isaac").crossbar, 128, 128), strict=True))
    t_op = 129 * T8  # 100.78 ns: the conversions outlast the read
    expected = {
        "crossbar": 0.3 * (128 * 129 / 16384) * 100,  # 30.23 pJ
        "adc": 129 * E8,  # 201.56 pJ
        "dac": 128 * DAC_PJ,  # 50 pJ: each row once
        "sample_hold": 129 * SH_PJ,
        "shift_add": 129 * SA_PJ,
        "registers": (256 * 1.24 / 2048 + 129 * 2 / 8 * 0.23 / 256) * t_op,  # 2 B per row in, 2 bits per column out
    }
    for part, pj in expected.items():
        assert got[part] == pytest.approx(pj), part
    assert sum(got.values()) == pytest.approx(302.98, abs=0.01)


def test_dac_energy_counts_each_row_once_per_slice():
    """demo with 8 active rows: 8 row groups of the 64 rows, still 64 rows driven, 25 pJ."""
    spec = arch.load("demo", ["crossbar.active_rows=8"]).crossbar
    e = costs.op_energy_pj(spec, 64, 64)
    assert e[costs.OP_PARTS.index("dac")] == pytest.approx(64 * DAC_PJ) == pytest.approx(25.0)
    assert e[costs.OP_PARTS.index("adc")] == pytest.approx(8 * 64 * E8 * (0.507 + 0.493 / 4))  # 8 reads x 64 columns


def _demo_op_pj(rows: int, cols: int) -> tuple[float, float]:
    """(time, energy) of one demo crossbar operation, by hand: 64x64, 2-bit cells, 6-bit ADC x 4."""
    t6, e6 = 7 / 9 * T8, E8 * (0.507 + 0.493 / 4)
    t_op = 100 + math.ceil(cols / 4) * t6
    energy = (
        0.3 * 0.25 * 100  # the 64x64 array is a quarter of 128x128
        + cols * e6
        + rows * DAC_PJ
        + cols * SH_PJ
        + cols * SA_PJ
        + (64 * 2 * 1.24 / 2048 + 64 * 0.25 * 0.23 / 256) * t_op
    )
    return t_op, energy


def test_one_layer_energy_by_hand():
    """Linear 64 -> 10 at W4A4 on demo: 3 magnitude bits -> 2 cells x 2 polarities -> 40 columns
    on one crossbar, 4 input slices; traffic 32 B in, 5 B out."""
    cn = compile_network(trace(nn.Sequential(nn.Linear(64, 10)), (64,), "one"), arch.load("demo"))
    ev = cn.evaluate(uniform_policy(4, 4, 1))
    t_op, op_pj = _demo_op_pj(64, 40)
    parts = dict(zip(costs.ENERGY_PARTS, ev.layer_energy_parts_j[0, 0] * 1e12, strict=True))
    assert sum(parts[p] for p in costs.OP_PARTS) == pytest.approx(4 * op_pj)
    assert parts["buffer"] == pytest.approx((32 + 5) * EDRAM_PJ_B)
    assert parts["network"] == pytest.approx(5 * NET_PJ_B)
    assert parts["digital"] == parts["write"] == parts["leakage"] == 0.0
    assert ev.layer_latency_s[0, 0] == pytest.approx(4 * t_op * 1e-9)
    assert ev.layer_energy_j[0, 0] * 1e12 == pytest.approx(4 * op_pj + 37 * EDRAM_PJ_B + 5 * NET_PJ_B)


def test_small_network_energy_and_latency_by_hand():
    """Linear 64 -> 32, ReLU, Linear 32 -> 10 at W4A4 on demo (sequential, resident)."""
    net = trace(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), (64,), "small")
    cn = compile_network(net, arch.load("demo"))
    layers_df, summary_df = policy_tables(cn, uniform_policy(4, 4, 2))
    s = summary_df.iloc[0]
    # layer 0: 32 outputs x 4 columns = 128 columns -> 2 full crossbars; layer 1: 32 rows x 40 columns
    t0, e0 = _demo_op_pj(64, 64)
    t1, e1 = _demo_op_pj(32, 40)
    relu_ns = 32 * DIGITAL_NS  # on the one tile holding layer 0, one lane
    latency_ns = 4 * t0 + relu_ns + 4 * t1
    assert s["latency_s"] == s["interval_s"] == pytest.approx(latency_ns * 1e-9)
    assert s["energy_crossbar_j"] + s["energy_adc_j"] + s["energy_dac_j"] + s["energy_sample_hold_j"] + s[
        "energy_shift_add_j"
    ] + s["energy_registers_j"] == pytest.approx(4 * (2 * e0 + e1) * 1e-12)
    assert s["energy_buffer_j"] == pytest.approx(((32 + 16) + (16 + 5)) * EDRAM_PJ_B * 1e-12)
    assert s["energy_network_j"] == pytest.approx((16 + 5) * NET_PJ_B * 1e-12)
    assert s["energy_digital_j"] == pytest.approx(32 * 0.4 / 1.2 * 1e-12)
    chip_mw = costs.area_power(cn.arch).chip_power_mw
    assert s["energy_leakage_j"] == pytest.approx(0.1 * chip_mw * latency_ns * 1e-12)
    parts = [c for c in summary_df.columns if c.startswith("energy_") and c != "energy_j"]
    assert s["energy_j"] == pytest.approx(sum(s[c] for c in parts))
    assert list(layers_df["digital_latency_s"]) == pytest.approx([relu_ns * 1e-9, 0.0])
    # area: 3 crossbars fill one of the 4 tiles; the smallest resident chip is that one tile
    tile_mm2 = costs.area_power(cn.arch).tile_area_mm2
    assert (s["occupied_tiles"], s["resident_tiles"]) == (1, 1)
    assert s["occupied_area_mm2"] == pytest.approx(tile_mm2) and s["resident_area_mm2"] == pytest.approx(tile_mm2)


# ---------------------------------------------------------------- schedule, digital ops, area, writes
def test_pipelined_latency_sums_stages_and_interval_is_the_slowest(resnet18):
    cn = compile_network(resnet18, arch.load("isaac"))
    ev = cn.evaluate(uniform_policy(8, 8, len(resnet18)))
    assert ev.fits[0]
    assert ev.latency_s[0] == pytest.approx(ev.layer_latency_s[0].sum())
    assert ev.interval_s[0] == pytest.approx(ev.layer_latency_s[0].max())
    assert ev.interval_s[0] < ev.latency_s[0] / 5
    seq = compile_network(resnet18, arch.load("isaac", ["chip.schedule=sequential"])).evaluate(
        uniform_policy(8, 8, len(resnet18))
    )
    assert seq.interval_s[0] == seq.latency_s[0] == pytest.approx(seq.layer_latency_s[0].sum())


def test_digital_ops_run_on_the_tiles_of_their_layer(resnet18):
    cn = compile_network(resnet18, arch.load("isaac"))
    ev = cn.evaluate(uniform_policy(8, 8, len(resnet18)))
    tiles = np.ceil(ev.layer_crossbars[0] / 96)
    expected = cn.digital_elements * DIGITAL_NS / (2 * tiles)  # 2 lanes per tile
    np.testing.assert_allclose(ev.layer_digital_latency_s[0], expected * 1e-9)
    by = dict(zip(resnet18.names, resnet18.digital_elements(), strict=True))
    assert by["conv1"] == 64 * 112 * 112 + 64 * 56 * 56 * 9  # its ReLU and the 3x3 max-pool after it
    more = compile_network(resnet18, arch.load("isaac", ["chip.digital_lanes=8"])).evaluate(
        uniform_policy(8, 8, len(resnet18))
    )
    assert more.digital_latency_s[0] < ev.digital_latency_s[0]


def test_occupied_and_resident_area(resnet18):
    a = arch.load("isaac")
    ap = costs.area_power(a)
    ev = compile_network(resnet18, a).evaluate(uniform_policy(4, 4, len(resnet18)))
    assert ev.occupied_tiles[0] == math.ceil(ev.crossbars[0] / 96)
    assert ev.occupied_area_mm2[0] == pytest.approx(ev.occupied_tiles[0] * ap.tile_area_mm2)
    assert ev.resident_tiles[0] == math.ceil(ev.crossbars_needed[0] / 96) < ev.occupied_tiles[0]
    assert ev.resident_area_mm2[0] == pytest.approx(ev.resident_tiles[0] * ap.tile_area_mm2 + 22.88)
    # that smallest chip does hold the network, one tile less does not
    for tiles, fits in ((int(ev.resident_tiles[0]), True), (int(ev.resident_tiles[0]) - 1, False)):
        small = compile_network(resnet18, arch.load("isaac", [f"chip.tiles={tiles}"]))
        assert small.evaluate(uniform_policy(4, 4, len(resnet18))).fits[0] == fits


def test_one_write_parallelism_for_both_programming_paths(resnet18):
    pol = uniform_policy(8, 8, len(resnet18))
    for w in (1, 7):
        cn = compile_network(resnet18, arch.load("isaac", [f"chip.parallel_writes={w}"]))
        ev = cn.evaluate(pol)
        assert ev.programming_s[0] == pytest.approx(math.ceil(ev.crossbars[0] / w) * 56e-6)
    default = compile_network(resnet18, arch.load("isaac")).evaluate(pol)  # one crossbar per tile at a time
    assert default.programming_s[0] == pytest.approx(math.ceil(default.crossbars[0] / 168) * 56e-6)


# ---------------------------------------------------------------- flipped-column encoding
def test_flip_encoding_makes_isaac_lossless_at_8_bits():
    spec = arch.load("isaac").crossbar
    plain = arch.load("isaac", ["crossbar.encoding=plain"]).crossbar
    assert partial_sum_max(plain) == 128 * 3 == 384 and adc_shift(plain) == 1 and not adc_is_lossless(plain)
    assert partial_sum_max(spec) == 192 and adc_shift(spec) == 0 and adc_is_lossless(spec)
    rng = np.random.default_rng(5)
    for k in (128, 200, 45):
        w = rng.integers(-127, 128, (k, 24))
        w[:, 0] = 127  # columns of large cells: stored flipped
        x = rng.integers(0, 256, (6, k))
        x[0] = 255
        np.testing.assert_array_equal(mvm(x, w, spec, w_bits=8, a_bits=8, fast_path=False), x @ w)
        assert np.abs(mvm(x, w, plain, w_bits=8, a_bits=8) - x @ w).max() > 0


def test_flipped_columns_are_stored_flipped_and_restored_after_the_adc():
    spec = arch.CrossbarSpec(rows=4, cols=8, cell_bits=2, adc_bits=3, mapping="offset", encoding="flip")
    from cimdse.crossbar import program

    w = np.array([[7], [7], [-8 + 1], [0]])  # offset 8: stored 15, 15, 1, 8 -> cells (LSB, MSB)
    xb = program(w, spec, 4)
    cells = xb.cells[0, :, :, 0]  # [n_w, rows]
    np.testing.assert_array_equal(cells, [[3, 3, 1, 0], [3, 3, 0, 2]])
    # column sums 7 and 8 against the half maximum 4 * 3 / 2 = 6: both flipped
    assert xb.flip[0, 0, :, 0].tolist() == [True, True]
    np.testing.assert_array_equal(xb.stored_cells()[0, :, :, 0], [[0, 0, 2, 3], [0, 0, 3, 1]])
    # after the ADC: 3 * unit - code restores the sum of the unflipped cells
    codes, unit = np.array([[5.0, 4.0]]), np.array([[3.0]])
    np.testing.assert_array_equal(restore_flipped(codes, unit, np.array([[1.0, 0.0]]), 2), [[4.0, 4.0]])
    x = np.array([[1, 1, 1, 0], [1, 0, 1, 1]])
    np.testing.assert_array_equal(mvm(x, xb, a_bits=1, fast_path=False), x @ w)


def test_flip_costs_its_extra_column_in_the_model_and_the_rtl():
    spec = arch.load("isaac").crossbar
    plain = arch.load("isaac", ["crossbar.encoding=plain"]).crossbar
    e, ep = costs.op_energy_pj(spec, 128, 128), costs.op_energy_pj(plain, 128, 128)
    i = costs.OP_PARTS.index("adc")
    assert e[i] == pytest.approx(ep[i] * 129 / 128)
    assert (
        costs.area_power(arch.load("isaac")).tile_area_mm2
        > costs.area_power(arch.load("isaac", ["crossbar.encoding=plain"])).tile_area_mm2
    )
    # the RTL tile converts the unit column too: one more ADC step per read (1 ADC)
    assert tile_params(spec, 8, 8).steps == tile_params(plain, 8, 8).steps + 1 == 129
    with pytest.raises(CimdseError, match="needs unsigned column sums"):
        arch.load("isaac", ["crossbar.mapping=differential-row"])


# ---------------------------------------------------------------- peak figures
def test_isaac_peak_matches_table_iv():
    pk = costs.peak(arch.load("isaac"))
    assert pk.bits == 16
    # 16-bit weights over 8 cells: 16 per crossbar of 128 rows; 16 slices of 129 * 0.78125 ns
    assert pk.peak_gops == pytest.approx(2 * 128 * 16 * 16128 / (16 * 129 * T8))
    assert pk.gops_per_mm2 == pytest.approx(478.95, rel=0.05)
    assert pk.gops_per_w == pytest.approx(627.5, rel=0.05)


def test_arch_show_prints_peak_figures_and_json(run_cli):
    out = run_cli("arch", "show", "isaac", check=True).stdout
    assert "peak at 16-bit ops" in out and "GOPS/s/mm2" in out and "GOPS/W" in out
    data = json.loads(run_cli("arch", "show", "isaac", "--json", check=True).stdout)
    assert {"spec", "area_mm2", "power_w", "peak_gops", "gops_per_mm2", "gops_per_w", "precision_bits"} <= set(data)
    assert data["precision_bits"] == 16 and data["spec"]["crossbar"]["encoding"] == "flip"
    assert data["gops_per_mm2"] == pytest.approx(costs.peak(arch.load("isaac")).gops_per_mm2)


# ---------------------------------------------------------------- invariants
def test_cimaq_latency_is_untouched_and_its_adc_costs_nothing(resnet18):
    cn = compile_network(resnet18, arch.load("cim-aq"))
    assert round(float(cn.speedup_vs_w8a8(uniform_policy(4, 4, len(resnet18)))[0]), 2) == 2.86
    ev = cn.evaluate(uniform_policy(8, 8, len(resnet18)))
    assert ev.part("adc")[0] == 0.0 and ev.digital_latency_s[0] == 0.0


def test_isaac_w4a4_speeds_up_the_zoo_cnns(resnet18):
    for net in (resnet18, trace_spec("resnet20")):
        cn = compile_network(net, arch.load("isaac"))
        pol = uniform_policy(4, 4, len(net))
        assert cn.speedup_vs_w8a8(pol)[0] > 1.3 and cn.throughput_speedup_vs_w8a8(pol)[0] > 1.1


@pytest.fixture(scope="module")
def resnet18():
    return trace_spec("resnet18")


def test_torch_backend_follows_the_flip_encoding():
    from cimdse import crossbar as cb
    from cimdse import crossbar_torch as ct

    rng = np.random.default_rng(2)
    for sets in ([], ["crossbar.adc_bits=6", "crossbar.active_rows=50"], ["crossbar.nonideal.read_noise_sigma=0.01"]):
        spec = arch.load("isaac", sets).crossbar
        w = rng.integers(-127, 128, (300, 12))
        w[:, 0] = 127
        x = rng.integers(0, 256, (7, 300))
        xb = cb.program(w, spec, 8)
        expected = cb.mvm(x, xb, a_bits=8, fast_path=False)
        np.testing.assert_array_equal(ct.mvm(x, ct.TorchCrossbar(xb), a_bits=8, fast_path=False), expected)


def test_puma_peak_from_its_simulator_structure():
    pk = costs.peak(arch.load("puma"))
    # offset weights: a reference column leaves 127 data columns, 15 weights of 8 cells;
    # 121 columns at 1 GS/s outlast the 100 ns read; 138 tiles x 128 crossbars
    assert pk.peak_gops == pytest.approx(2 * 128 * 15 * 138 * 128 / (16 * 121.0))
    ap = costs.area_power(arch.load("puma"))
    assert ap.chip_area_mm2 == pytest.approx(138 * ap.tile_area_mm2 + 22.88)
