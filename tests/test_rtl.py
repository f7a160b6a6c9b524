"""The generated tile: generation, lint (pyverilog, iverilog and verilator -Wall),
the cycle formula, cocotb simulations under Icarus and Verilator that compare it
bit-exactly with the functional model, and a trained layer run on tile instances."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cimdse import arch, costs
from cimdse.arch import CrossbarSpec
from cimdse.errors import CimdseError
from cimdse.rtl import GENERATOR_VERSION, generate, lint, module_name, render, tile_cycles_per_mvm, tile_params
from cimdse.rtl.verify import iverilog_lint, simulate, verilator_env, verilator_lint

REPO = Path(__file__).resolve().parents[1]
# CI sets CIMDSE_REQUIRE_SIMULATORS: there a missing simulator fails the tests instead of skipping them.
REQUIRED = bool(os.environ.get("CIMDSE_REQUIRE_SIMULATORS"))
needs_icarus = pytest.mark.skipif(
    not REQUIRED and shutil.which("iverilog") is None, reason="Icarus Verilog not installed"
)


def _has_verilator() -> bool:
    try:
        verilator_env()
    except CimdseError:
        return False
    return True


needs_verilator = pytest.mark.skipif(not REQUIRED and not _has_verilator(), reason="Verilator not installed")
PRESETS = ["demo", "isaac", "puma", "cim-aq"]


def _preset(name: str, **update) -> CrossbarSpec:
    """A preset's crossbar with its own settings (isaac: offset mapping, flip encoding),
    ``update`` changing some (reduced rows/cols for a fast simulation)."""
    return arch.load(name).crossbar.model_copy(update=update)


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
    (  # ISAAC's encoding: 16 rows x 3 (2-bit cells) / 2 = 24 at most in a flipped column, 5 bits lossless
        "flip-offset-lossless",
        dict(
            rows=16,
            cols=16,
            cell_bits=2,
            dac_bits=1,
            adc_bits=5,
            adc_mode="full_range",
            adcs=1,
            mapping="offset",
            encoding="flip",
        ),
        4,
        4,
        False,
    ),
    (
        "flip-diffcol-groups-adcs3-clip",
        dict(
            rows=20,
            cols=18,
            cell_bits=2,
            dac_bits=2,
            adc_bits=3,
            adc_mode="clip",
            adcs=3,
            active_rows=7,
            encoding="flip",
        ),
        5,
        3,
        True,
    ),
]


# ---------------------------------------------------------------- generation
def test_header_states_parameters_and_version():
    spec = arch.load("demo").crossbar
    p = tile_params(spec, 8, 8)
    text = render(p)
    head = text.split("`timescale")[0]
    assert GENERATOR_VERSION in head
    module = module_name(p)
    assert re.fullmatch(r"cimdse_tile_64x64_w8a8_[0-9a-f]{8}", module)
    assert f"module {module} (" in text and f"Module {module}:" in head
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


def test_checked_in_rtl_is_current(tmp_path):
    """rtl/ holds exactly what the generator writes today for demo and isaac at W8A8
    (isaac with its flipped columns)."""
    fresh = [generate(_preset(name), 8, 8, tmp_path) for name in ("demo", "isaac")]
    assert sorted(p.name for p in (REPO / "rtl").glob("*.v")) == sorted(t.path.name for t in fresh)
    for t in fresh:
        checked_in = REPO / "rtl" / t.path.name
        assert checked_in.read_text() == t.path.read_text(), (
            "regenerate with: cimdse rtl --arch demo --out rtl; cimdse rtl --arch isaac --out rtl"
        )


def test_cli_rtl_writes_isaac_with_flipped_columns(run_cli, tmp_path):
    """isaac's own settings: offset mapping (4 two-bit cells per 8-bit weight: 32 outputs on
    128 columns) and the flip encoding, whose unit column is one more conversion per read:
    8 slices x (1 read + 129 ADC steps) + 2 = 1042 cycles."""
    proc = run_cli("rtl", "--arch", "isaac", "--out", str(tmp_path), check=True)
    (out,) = tmp_path.glob("*.v")
    assert "K=128 inputs, N=32 outputs, 128x128 cells used, 1042 cycles per MVM" in proc.stdout
    text = out.read_text()
    assert "input  wire prog_flip" in text and "unit_sum(grp)" in text and "Flip encoding (ISAAC)" in text


def test_module_names_are_unique_per_parameterization():
    demo = arch.load("demo").crossbar
    names = {
        module_name(tile_params(demo, 8, 8)),
        module_name(tile_params(demo, 4, 3)),
        module_name(tile_params(demo, 8, 8, k=32)),
        module_name(tile_params(demo.model_copy(update={"adc_mode": "full_range"}), 8, 8)),
        module_name(tile_params(demo.model_copy(update={"adcs": 8}), 8, 8)),
    }
    assert len(names) == 5
    # the same parameters give the same name; costs and timings do not shape the Verilog
    slow = demo.model_copy(update={"timing": demo.timing.model_copy(update={"read_ns": 999.0})})
    assert module_name(tile_params(slow, 8, 8)) == module_name(tile_params(demo, 8, 8))


@needs_icarus
def test_two_tiles_elaborate_in_one_design(tmp_path):
    demo = arch.load("demo").crossbar
    a = generate(demo, 8, 8, tmp_path)
    b = generate(demo, 4, 3, tmp_path)
    proc = subprocess.run(
        ["iverilog", "-g2001", "-Wall", "-o", str(tmp_path / "both.vvp"), str(a.path), str(b.path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


@needs_icarus
@pytest.mark.parametrize("case", PARAM_SETS, ids=[c[0] for c in PARAM_SETS])
def test_generated_verilog_is_lint_clean(case, tmp_path):
    _, fields, w, a, _ = case
    tile = generate(_spec(**fields), w, a, tmp_path)  # pyverilog parses it back
    iverilog_lint(tile.path, tmp_path)  # iverilog -g2001 -Wall: no warnings


@needs_verilator
def test_verilator_wall_is_clean_on_presets_and_corners(tmp_path):
    """verilator --lint-only -Wall, no waivers: every preset at W8A8 and W4A3, and
    every parameter corner the simulations use."""
    tiles = [generate(_preset(name), w, a, tmp_path, check=False) for name in PRESETS for w, a in ((8, 8), (4, 3))]
    tiles += [generate(_spec(**fields), w, a, tmp_path, check=False) for _, fields, w, a, _ in PARAM_SETS]
    for tile in tiles:
        verilator_lint(tile.path)


@needs_verilator
def test_verilator_lint_reports_warnings(tmp_path):
    """The lint check can fail: a width mismatch is reported."""
    bad = tmp_path / "bad.v"
    bad.write_text("module bad (input wire [3:0] a, output wire [7:0] y);\n    assign y = a;\nendmodule\n")
    with pytest.raises(CimdseError, match="WIDTHEXPAND"):
        verilator_lint(bad)


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
        (
            dict(rows=8, cols=8),
            12,  # the spec holds an 8-bit weight's columns; a 12-bit one needs 2 x 6
            8,
            None,
            None,
            r"crossbar.cols = 8 is smaller than the columns one output needs \(12 per",
        ),
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
    # the flip encoding converts the unit column too: T = ceil((20 + 1) / 3) = 7 = ceil((18 + 1) / 3)
    flip = spec.model_copy(update={"encoding": "flip"})
    assert tile_cycles_per_mvm(flip, 4, 5, 24, 20) == 3 * 3 * (1 + 7) + 2
    assert tile_cycles_per_mvm(flip, 4, 5, 24, 18) == 3 * 3 * (1 + 7) + 2
    assert tile_cycles_per_mvm(flip.model_copy(update={"adcs": 1}), 4, 5, 24, 20) == 3 * 3 * (1 + 21) + 2


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
    res = simulate(spec, w, a, tmp_path, vectors=16, stream=8, seed=7)
    s = res.summary
    assert res.ok, s
    assert s["mismatches"] == 0 and s["received"] == 24 and s["stream_vectors"] == 8
    assert s["cycles_measured"] == [tile_cycles_per_mvm(spec, w, a, res.params.rows_used, res.params.cols_used)]
    assert s["interval_measured"] == [res.params.cycles]
    assert (s["saturated_conversions"] > 0) == saturates, s["saturated_conversions"]
    if spec.encoding == "flip":  # the restore is exercised: some columns flipped, some not
        from cimdse.rtl.bench.tile_model import TileModel, random_weights

        flips = TileModel(res.params, random_weights(res.params, np.random.default_rng(7))).xb.physical_flips()
        assert 0 < flips.sum() < flips.size


@needs_icarus
@pytest.mark.parametrize("name", PRESETS)
def test_preset_tile_matches_model_at_reduced_size(name, tmp_path):
    """Every preset with its own settings (mapping, cells, DAC, ADC, encoding) at W8A8 on a
    16x16 array: bit-exact and cycles = formula (the full size runs in a slow test)."""
    spec = _preset(name, rows=16, cols=16, active_rows=None)
    res = simulate(spec, 8, 8, tmp_path, vectors=4, stream=2, seed=5)
    assert res.ok, res.summary
    assert res.summary["cycles_measured"] == [res.params.cycles]
    assert res.params.flip == (name == "isaac")


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=needs_verilator)])
@pytest.mark.parametrize("name", PRESETS)
def test_preset_tile_matches_model_at_full_size(name, simulator, tmp_path):
    if simulator == "icarus" and not REQUIRED and shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog not installed")
    res = simulate(_preset(name), 8, 8, tmp_path, simulator=simulator, vectors=3, stream=2, seed=5)
    assert res.ok, res.summary
    assert res.summary["cycles_measured"] == [res.params.cycles]


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
    (out,) = tmp_path.glob("*.v")
    module = out.stem  # the file is named after its module
    assert re.fullmatch(r"cimdse_tile_64x64_w4a3_[0-9a-f]{8}", module)
    assert f"module {module} (" in out.read_text()
    assert "53 cycles per MVM" in proc.stdout


def test_cli_rtl_too_few_columns_names_the_spec(run_cli, tmp_path):
    proc = run_cli(
        "rtl", "--arch", "demo", "--set", "crossbar.cols=1", "--set", "crossbar.adcs=1", "--out", str(tmp_path)
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "crossbar: cols (1) cannot hold one output of an 8-bit weight: it takes 8 columns" in proc.stderr
    assert "(4 cell(s) of 2 bit(s) x 2 polarities, differential-column mapping)" in proc.stderr
    assert not list(tmp_path.glob("*.v"))


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
    assert lines[0].split()[:3] == ["parameter", "set", "vectors"] and lines[0].endswith("(icarus)")
    row = lines[1].split()
    assert row[:3] == ["demo", "W4A3", "K=20"] and row[-1] == "ok"
    assert row[4:6] == ["26", "0"]  # vectors (6 checked + 20 streamed), mismatches
    assert row[7] == row[8] == "17"  # cycles measured == formula: 3 slices x (1 + ceil(16 / 4)) + 2


def test_cli_verify_without_icarus_says_how_to_install(monkeypatch, capsys):
    from cimdse.cli import main

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name in ("iverilog", "vvp") else real_which(name))
    assert main(["verify", "--arch", "demo"]) == 2
    assert "apt-get install iverilog" in capsys.readouterr().err


# ---------------------------------------------------------------- Verilator
VERILATOR_SET = PARAM_SETS[1]  # cell1-dac2-clip-offset: 16x16, offset mapping, saturating ADC


@needs_verilator
def test_cli_verify_under_verilator(run_cli, tmp_path):
    """The same bench under Verilator: bit-exact, cycles = formula, from the CLI."""
    _, fields, w, a, _ = VERILATOR_SET
    sets = [f"crossbar.{k}={v}" for k, v in fields.items()] + ["crossbar.active_rows=16"]
    args = [x for s in sets for x in ("--set", s)]
    proc = run_cli(
        "verify",
        "--arch",
        "demo",
        *args,
        "--w-bits",
        str(w),
        "--a-bits",
        str(a),
        "--vectors",
        "8",
        "--stream",
        "16",
        "--simulator",
        "verilator",
        check=True,
        cwd=tmp_path,
    )
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("(verilator)")
    row = lines[1].split()
    assert row[-1] == "ok" and row[4:6] == ["24", "0"]
    # offset, 3 cells of 1 bit per 3-bit weight: N = 16 // 3 = 5 outputs on 15 columns, K = 16;
    # 2 slices of 2 bits x (1 read + ceil(15 / 2) ADC steps) + 2 = 20
    assert row[2:4] == ["K=16", "N=5"]
    assert row[7] == row[8] == "20"


@needs_verilator
@pytest.mark.slow
@pytest.mark.parametrize("case", PARAM_SETS, ids=[c[0] for c in PARAM_SETS])
def test_tile_matches_model_under_verilator(case, tmp_path):
    _, fields, w, a, saturates = case
    res = simulate(_spec(**fields), w, a, tmp_path, simulator="verilator", vectors=16, stream=8, seed=7)
    assert res.ok, res.summary
    assert res.summary["cycles_measured"] == [res.params.cycles]


def test_verify_rejects_an_unknown_simulator():
    from cimdse.rtl.verify import require_simulator

    with pytest.raises(CimdseError, match="unknown simulator 'vcs'"):
        require_simulator("vcs")


# ---------------------------------------------------------------- a trained layer on the tiles
@pytest.fixture(scope="module")
def lenet_checkpoint(tmp_path_factory) -> Path:
    """A small LeNet trained on the embedded digits at W4A4 (few epochs: the weights
    and activations are real, the accuracy does not matter here)."""
    from cimdse.cli import main

    out = tmp_path_factory.mktemp("lenet")
    args = ["train", "--model", "lenet", "--dataset", "digits", "--bits", "4,4", "--epochs", "2"]
    assert main([*args, "--qat-epochs", "1", "--out", str(out), "--quiet"]) == 0
    return out / "checkpoint.pt"


IDEAL = ["crossbar.adc_bits=null", "crossbar.adc_mode=ideal"]


@needs_icarus
def test_cli_verify_conv_layer_of_a_checkpoint(run_cli, lenet_checkpoint, tmp_path):
    """features.0 (3x3 conv, K = 9, N = 16) on 8x16 tiles: 2 row blocks (8 + 1 inputs)
    x 4 column splits (4 outputs of 4 columns at W4), one image = 64 pixels."""
    sets = ["crossbar.rows=8", "crossbar.active_rows=8", "crossbar.cols=16", *IDEAL]
    proc = run_cli(
        "verify",
        "--checkpoint",
        str(lenet_checkpoint),
        "--layer",
        "features.0",
        "--arch",
        "demo",
        *[x for s in sets for x in ("--set", s)],
        "--images",
        "1",
        "--vectors",
        "2",
        check=True,
        cwd=tmp_path,
    )
    out = proc.stdout
    assert "features.0: K=9 N=16, 64 input vectors from 1 image(s); 8 tile instance(s)" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+g0 r\d c\d ", line)]
    assert len(rows) == 8 and {r[3] for r in rows} == {"0-7", "8-8"}
    assert all(r[7] == "0" for r in rows)  # no mismatch on any tile
    assert "(the compiler counts 8 crossbar(s))" in out
    assert "RTL vs functional model (whole layer):   0 of 1024 output values differ" in out
    assert "RTL vs fake-quant integer product:       0 of 1024 differ" in out
    assert "RTL dequantized vs fake-quant output:    identical" in out
    assert out.rstrip().endswith("result: ok")


LINEAR_SETS = ["crossbar.rows=32", "crossbar.cols=16"]


@needs_icarus
def test_linear_layer_of_a_checkpoint(lenet_checkpoint, tmp_path):
    """classifier.3 (K = 64, N = 10) on 32x16 tiles: 2 row blocks x 3 column splits
    (4 + 4 + 2 outputs); with an ideal ADC the RTL equals the fake-quant layer."""
    from cimdse.rtl.layer import run_layer

    res = run_layer(
        lenet_checkpoint, "classifier.3", tmp_path, arch_name="demo", overrides=LINEAR_SETS + IDEAL, images=3, vectors=1
    )
    assert [(i.row_block, i.col_block, i.rows, i.outputs) for i in res.instances] == [
        (r, c, (32 * r, 32 * r + 32), (4 * c, min(10, 4 * c + 4))) for r in range(2) for c in range(3)
    ]
    assert res.ok and res.lossless and res.vectors == 3
    assert res.vs_model == 0 and res.vs_fake_quant == 0 and res.float_equal


@needs_icarus
@pytest.mark.slow
def test_linear_layer_with_a_lossy_adc(lenet_checkpoint, tmp_path):
    """With a 3-bit clipping ADC the RTL equals the functional model, and both differ
    from the fake-quant layer in the same values."""
    from cimdse.rtl.layer import run_layer

    lossy = ["crossbar.adc_bits=3", "crossbar.adc_mode=clip"]
    res = run_layer(
        lenet_checkpoint, "classifier.3", tmp_path, arch_name="demo", overrides=LINEAR_SETS + lossy, images=3, vectors=1
    )
    assert res.ok and not res.lossless and res.vs_model == 0
    assert res.model_vs_fake_quant > 0 and res.vs_fake_quant == res.model_vs_fake_quant


def test_layer_errors_are_clear(lenet_checkpoint, tmp_path):
    from cimdse.rtl.layer import run_layer

    with pytest.raises(CimdseError, match="no crossbar layer 'nope'.*features.0"):
        run_layer(lenet_checkpoint, "nope", tmp_path)


# ---------------------------------------------------------------- synthesis
needs_yosys = pytest.mark.skipif(not REQUIRED and shutil.which("yosys") is None, reason="yosys not installed")


@needs_yosys
def test_synthesis_of_the_demo_tile_and_a_flip_corner(run_cli, tmp_path):
    """The demo tile's digital part (its full array takes yosys minutes) and, through
    `cimdse rtl --synth`, a whole 8x8 flip corner: no latches, flip-flops bounded by the
    registers counted by hand."""
    from cimdse.rtl.synth import synth_digital_part

    p = tile_params(arch.load("demo").crossbar, 4, 4)
    digital = synth_digital_part(p)
    # registers by hand: xin 64 x 4, acc 64 columns x 11 bits (code <= 63, x 15 over 4 slices),
    # out 16 x 15 bits, out_valid 1, state 2, slice 2, step 4 (grp is constant: 1 group)
    assert (p.acc_width, p.out_width, p.steps) == (11, 15, 16)
    hand = 64 * 4 + 64 * 11 + 16 * 15 + 1 + 2 + 2 + 4
    assert digital.latches == 0 and 0.5 * hand < digital.flip_flops <= hand and digital.logic > 0

    fields = dict(rows=8, cols=8, cell_bits=2, dac_bits=1, adc_bits=4, adc_mode="full_range", encoding="flip")
    sets = [x for k, v in fields.items() for x in ("--set", f"crossbar.{k}={v}")]
    proc = run_cli(
        "rtl", "--arch", "demo", *sets, "--w-bits", "3", "--a-bits", "2", "--out", str(tmp_path), "--synth", check=True
    )
    found = {
        m.group(1): tuple(map(int, m.group(2, 3, 4, 5)))
        for m in re.finditer(
            r"yosys synth (digital part|tile) +\S+: +(\d+) cells \((\d+) flip-flops, (\d+) latches, "
            r"(\d+) logic\)",
            proc.stdout,
        )
    }
    (part_cells, part_ffs, part_latches, _), (cells, ffs, latches, logic) = found["digital part"], found["tile"]
    assert latches == 0 == part_latches and cells == ffs + logic > part_cells
    # the array (8 rows x 8 columns x 2 bits) and the 8 flip bits (1 group x 8 columns) are in the whole tile only
    assert ffs >= part_ffs + 8 * 8 * 2 + 8
    assert len(list(tmp_path.glob("*.v"))) == 1  # the digital part is synthesized from a temporary file


def test_parse_stat_reads_the_last_report():
    from cimdse.rtl.synth import SynthStats, parse_stat

    text = (
        "   Number of cells:  3\n     $_AND_  1\n     $_DFF_P_  2\n"
        "   Number of cells:  4\n     $_XOR_  1\n     $_SDFFE_PP0P_  2\n     $_DLATCH_P_  1\n"
    )
    s = SynthStats(parse_stat(text))
    assert (s.total, s.flip_flops, s.latches, s.logic) == (4, 2, 1, 1)
    with pytest.raises(CimdseError, match="no cell statistics"):
        parse_stat("nothing")


# ---------------------------------------------------------------- a whole network on the tiles
def test_network_checks_every_layer_and_catches_a_wrong_tile(lenet_checkpoint, tmp_path, monkeypatch):
    """The network path with the simulator replaced by the functional model (exact:
    every layer 0 mismatches, predictions equal), then with one output of one vector of
    features.3 off by one: that layer reports 1 vector of 1 image, and the run fails."""
    from cimdse.rtl import network
    from cimdse.rtl.layer import tile_instances

    calls = []

    def tiles(layer, x_all, spec, root, **kw):
        calls.append((layer.name, x_all.shape))
        y = network.model_product(layer, x_all, spec)
        if wrong and layer.name == "features.3":
            y[5, 3] += 1
        instances = tile_instances(layer, spec)
        for inst in instances:  # each tile ran clean, at the formula's cycles
            inst.mismatches, inst.cycles, inst.formula = 0, [70], 70
        return y, instances

    monkeypatch.setattr(network, "run_tiles", tiles)
    wrong = False
    run = network.run_network(lenet_checkpoint, tmp_path, images=3, simulator="icarus")
    # 3 images: 3 x 64 pixels, 3 x 16, then one vector per image; demo tiles hold 16 outputs of 64 rows
    assert calls == [
        ("features.0", (192, 9)),
        ("features.3", (48, 144)),
        ("classifier.1", (3, 128)),
        ("classifier.3", (3, 64)),
    ]
    assert [(lay.tiles, lay.vectors, lay.mismatches) for lay in run.layers] == [
        (1, 192, 0),
        (6, 48, 0),
        (8, 3, 0),
        (1, 3, 0),
    ]
    assert run.predictions_equal and run.ok
    calls.clear()
    wrong = True
    run = network.run_network(lenet_checkpoint, tmp_path, images=3, simulator="icarus")
    f3 = run.layers[1]
    assert (f3.mismatches, f3.images_differing) == (1, 1) and not run.ok
    assert run.failure().startswith("layer features.3: 1 vector(s) differ")


def test_cli_verify_layer_needs_a_checkpoint(run_cli, tmp_path):
    proc = run_cli("verify", "--layer", "features.0", cwd=tmp_path)
    assert proc.returncode == 2 and "--layer needs --checkpoint" in proc.stderr and "Traceback" not in proc.stderr


@needs_verilator
@pytest.mark.slow
def test_cli_verify_whole_network_under_verilator(run_cli, lenet_checkpoint, tmp_path):
    """LeNet W4A4 on the demo tiles, 16 test images through every layer under Verilator:
    0 mismatches in every layer, predictions identical to the crossbar model's."""
    proc = run_cli(
        "verify",
        "--checkpoint",
        str(lenet_checkpoint),
        "--images",
        "16",
        "--simulator",
        "verilator",
        check=True,
        cwd=tmp_path,
    )
    out = proc.stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] and "." in line.split()[0]}
    # layer kind bits tiles modules vectors mismatch images cycles build_s sim_s
    assert [rows[n][3:8] for n in ("features.0", "features.3", "classifier.1", "classifier.3")] == [
        ["1", "1", "1024", "0", "0"],
        ["6", "2", "256", "0", "0"],
        ["8", "1", "16", "0", "0"],  # the 64x16 module of features.3: built once
        ["1", "1", "16", "0", "0"],
    ]
    assert "0 differ from the functional model" in out
    assert "predictions: RTL vs crossbar model 16 of 16 identical" in out
    assert out.rstrip().endswith("result: ok")
