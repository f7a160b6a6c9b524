"""The generated tile: generation, lint, the cycle formula, and cocotb simulations
under Icarus that compare it bit-exactly with the functional model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cimdse import arch, costs
from cimdse.arch import CrossbarSpec
from cimdse.errors import CimdseError
from cimdse.rtl import GENERATOR_VERSION, generate, lint, render, tile_cycles_per_mvm, tile_params
from cimdse.rtl.verify import iverilog_lint, simulate

REPO = Path(__file__).resolve().parents[1]
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")


def _spec(**kw) -> CrossbarSpec:
    return CrossbarSpec(**kw)


# (id, spec fields, w_bits, a_bits, expect ADC saturation in the run)
PARAM_SETS = [
    (
        "rows24-nonpow2-groups-adcs3-fullrange",
        dict(rows=24, cols=20, cell_bits=2, dac_bits=1, adc_bits=4, adc_mode="full_range", adcs=3, active_rows=10),
        4,
        3,
        False,
    ),
    (
        "cell1-dac2-clip-offset",
        dict(rows=16, cols=16, cell_bits=1, dac_bits=2, adc_bits=3, adc_mode="clip", adcs=2, mapping="offset"),
        3,
        4,
        True,
    ),
    (
        "cell3-dac2-fullrange-a-not-multiple-of-d",
        dict(rows=12, cols=18, cell_bits=3, dac_bits=2, adc_bits=5, adc_mode="full_range", adcs=1),
        6,
        5,
        True,  # full range still clips the top: (252 + 4) >> 3 = 32 > 31
    ),
    (
        "clip-diffcol-adcs4-saturates",
        dict(rows=8, cols=16, cell_bits=2, dac_bits=1, adc_bits=3, adc_mode="clip", adcs=4),
        5,
        4,
        True,
    ),
    (
        "offset-explicit-shift-adcs5",
        dict(rows=10, cols=12, cell_bits=2, dac_bits=1, adc_bits=2, adc_mode=2, adcs=5, mapping="offset"),
        4,
        6,
        True,
    ),
    (
        "diffrow-fullrange-groups",
        dict(
            rows=14,
            cols=8,
            cell_bits=2,
            dac_bits=1,
            adc_bits=4,
            adc_mode="full_range",
            adcs=2,
            active_rows=6,
            mapping="differential-row",
        ),
        5,
        4,
        False,
    ),
    (
        "diffrow-clip-signed-saturation",
        dict(rows=12, cols=6, cell_bits=2, dac_bits=2, adc_bits=3, adc_mode="clip", adcs=3, mapping="differential-row"),
        4,
        4,
        True,
    ),
    (
        "ideal-adc-cell3-dac3-offset",
        dict(rows=9, cols=10, cell_bits=3, dac_bits=3, mapping="offset"),
        8,
        8,
        False,
    ),
]


# ---------------------------------------------------------------- generation
def test_header_states_parameters_and_version():
    spec = arch.load("demo").crossbar
    text = render(tile_params(spec, 8, 8), "cimdse_tile_demo")
    head = text.split("`timescale")[0]
    assert GENERATOR_VERSION in head
    for item in (
        "rows 64",
        "cols 64",
        "cell_bits 2",
        "dac_bits 1",
        "adcs 4",
        "differential-column",
        "6-bit, mode clip, shift 0",
        "w_bits 8",
        "a_bits 8",
        "138 cycles per MVM",
    ):
        assert item in head, item


@pytest.mark.parametrize("name", ["demo", "isaac"])
def test_checked_in_rtl_is_current(name, tmp_path):
    """rtl/ holds exactly what the generator writes today for the presets at W8A8."""
    module = f"cimdse_tile_{name}"
    fresh = tmp_path / f"{module}_w8a8.v"
    plain = ["crossbar.encoding=plain"] if name == "isaac" else []  # the tile has no flipped columns
    generate(arch.load(name, plain).crossbar, 8, 8, fresh, module=module)
    checked_in = REPO / "rtl" / fresh.name
    assert checked_in.read_text() == fresh.read_text(), f"regenerate with: cimdse rtl --arch {name} --out rtl"


@needs_icarus
@pytest.mark.parametrize("case", PARAM_SETS, ids=[c[0] for c in PARAM_SETS])
def test_generated_verilog_is_lint_clean(case, tmp_path):
    _, fields, w, a, _ = case
    path = tmp_path / "tile.v"
    generate(_spec(**fields), w, a, path)  # pyverilog parses it back
    iverilog_lint(path, tmp_path)  # iverilog -g2001 -Wall: no warnings


def test_pyverilog_lint_rejects_bad_verilog(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module m(input wire a); assign = a; endmodule\n")
    with pytest.raises(CimdseError, match="pyverilog"):
        lint(bad)


@pytest.mark.parametrize(
    ("fields", "w", "a", "k", "n", "match"),
    [
        (dict(rows=8, cols=8), 1, 8, None, None, "w_bits must be in 2..16"),
        (dict(rows=8, cols=8), 17, 8, None, None, "w_bits must be in 2..16"),
        (dict(rows=8, cols=8), 8, 0, None, None, "a_bits must be in 1..16"),
        (dict(rows=8, cols=4), 8, 8, None, None, "needs 8 columns"),
        (dict(rows=8, cols=16), 8, 8, 9, None, "needs 9 rows"),
        (dict(rows=8, cols=16, mapping="differential-row"), 8, 8, 5, None, "needs 10 rows"),
        (dict(rows=8, cols=16), 8, 8, None, 3, "needs 24 columns"),
        (dict(rows=8, cols=16, nonideal={"stuck_on_rate": 0.1}), 8, 8, None, None, "non-idealities"),
    ],
)
def test_bad_layers_are_clear_errors(fields, w, a, k, n, match):
    with pytest.raises(CimdseError, match=match):
        tile_params(_spec(**fields), w, a, k, n)


def test_default_shape_fills_the_tile():
    p = tile_params(arch.load("isaac", ["crossbar.encoding=plain"]).crossbar, 8, 8)  # offset: 4 cells per weight
    assert (p.k, p.n, p.rows_used, p.cols_used) == (128, 32, 128, 128)
    p = tile_params(_spec(rows=14, cols=8, mapping="differential-row"), 5, 4)
    assert (p.k, p.n, p.rows_used, p.cols_used) == (7, 4, 14, 8)


# ---------------------------------------------------------------- cycle formula
def test_cycle_formula_closed_form():
    spec = _spec(rows=24, cols=20, dac_bits=2, adc_bits=4, adcs=3, active_rows=10)
    # S = ceil(5/2) = 3 slices, G = ceil(24/10) = 3 groups, T = ceil(20/3) = 7 steps
    assert tile_cycles_per_mvm(spec, 4, 5, 24, 20) == 3 * 3 * (1 + 7) + 2
    assert tile_cycles_per_mvm(spec, 4, 5, 5, 1) == 3 * 1 * (1 + 1) + 2
    with pytest.raises(ValueError):
        tile_cycles_per_mvm(spec, 4, 5, 25, 20)


def test_cost_model_timing_uses_the_cycle_formula():
    spec = arch.load("demo").crossbar
    cycles = tile_cycles_per_mvm(spec, 8, 8, 64, 64)
    assert costs.tile_mvm_ns(spec, 8, 8, 64, 64, clock_ghz=2.0) == cycles / 2.0
    # With a 1-cycle read and 1-cycle conversions the formula is section 4's
    # S * t_op plus the input and output cycles.
    unit = spec.model_copy(update={"timing": spec.timing.model_copy(update={"read_ns": 1.0})})
    unit = unit.model_copy(update={"costs": {"adc_rate_gsps": 1.0, "adc_ref_bits": 6}})  # 1 ns at 6 bits
    assert cycles == 8 * costs.op_ns(unit, 64, 64) + 2


# ---------------------------------------------------------------- simulation
@needs_icarus
@pytest.mark.parametrize("case", PARAM_SETS, ids=[c[0] for c in PARAM_SETS])
def test_tile_matches_model(case, tmp_path):
    """Random weights and inputs (all-zero and all-max included), random
    back-pressure: bit-exact outputs, none lost or duplicated, cycles = formula."""
    _, fields, w, a, saturates = case
    spec = _spec(**fields)
    res = simulate(spec, w, a, tmp_path, vectors=16, seed=7)
    s = res.summary
    assert res.ok, s
    assert s["mismatches"] == 0 and s["received"] == 16
    assert s["cycles_measured"] == [tile_cycles_per_mvm(spec, w, a, res.params.rows_used, res.params.cols_used)]
    assert s["interval_measured"] == [res.params.cycles]
    assert (s["saturated_conversions"] > 0) == saturates, s["saturated_conversions"]


@needs_icarus
def test_testbench_catches_a_truncating_adc(tmp_path):
    """A checker that cannot fail is worthless: an ADC that truncates instead of
    rounding half up must make the cocotb run fail."""
    spec = _spec(rows=16, cols=16, cell_bits=2, dac_bits=1, adc_bits=3, adc_mode="full_range", adcs=2)
    assert tile_params(spec, 4, 4).shift and tile_params(spec, 4, 4).shift > 0  # rounding matters
    res = simulate(spec, 4, 4, tmp_path, vectors=10, seed=1, _broken_rounding=True)
    assert not res.passed and not res.ok
    assert res.summary["mismatches"] > 0


# ---------------------------------------------------------------- CLI
def test_cli_rtl_writes_verilog(run_cli, tmp_path):
    proc = run_cli("rtl", "--arch", "demo", "--w-bits", "4", "--a-bits", "3", "--out", str(tmp_path), check=True)
    out = tmp_path / "cimdse_tile_demo_w4a3.v"
    assert out.exists() and "module cimdse_tile_demo" in out.read_text()
    assert "53 cycles per MVM" in proc.stdout


def test_cli_rtl_bad_layer_is_one_message(run_cli, tmp_path):
    proc = run_cli("rtl", "--arch", "demo", "--w-bits", "20", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "w_bits must be in 2..16" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.v"))


@needs_icarus
def test_cli_verify_prints_table(run_cli, tmp_path):
    proc = run_cli(
        "verify",
        "--arch",
        "demo",
        "--set",
        "crossbar.rows=20",
        "--set",
        "crossbar.active_rows=20",
        "--set",
        "crossbar.cols=16",
        "--w-bits",
        "4",
        "--a-bits",
        "3",
        "--vectors",
        "6",
        check=True,
        cwd=tmp_path,  # from any working folder, as an installed command runs
    )
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["parameter", "set", "vectors"]
    row = lines[1].split()
    assert row[:3] == ["demo", "W4A3", "K=20"] and row[-1] == "ok"
    assert row[4:6] == ["6", "0"]  # vectors, mismatches
    assert row[7] == row[8]  # cycles measured == formula


def test_cli_verify_without_icarus_says_how_to_install(monkeypatch, capsys):
    from cimdse.cli import main

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name in ("iverilog", "vvp") else real_which(name))
    assert main(["verify", "--arch", "demo"]) == 2
    assert "apt-get install iverilog" in capsys.readouterr().err
