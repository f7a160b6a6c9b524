"""Architecture specs: presets, YAML round trip, overrides and rejected specs."""

from __future__ import annotations

import pytest
import yaml

from cimdse import arch, costs
from cimdse.errors import CimdseError


@pytest.mark.parametrize("name", arch.PRESET_NAMES)
def test_preset_yaml_round_trip(name, tmp_path):
    spec = arch.load(name)
    path = tmp_path / f"{name}.yaml"
    arch.save(spec, path)
    assert arch.load(path) == spec


def test_isaac_tile_and_chip_match_table_one():
    ap = costs.area_power(arch.load("isaac"))
    assert ap.tile_area_mm2 == pytest.approx(0.372, rel=0.05)
    assert ap.tile_power_mw == pytest.approx(330.0, rel=0.05)
    assert ap.chip_area_mm2 == pytest.approx(85.4, rel=0.05)
    assert ap.chip_power_mw == pytest.approx(65.8e3, rel=0.05)


def test_overrides_apply_dotted_keys():
    spec = arch.load("demo", ["crossbar.rows=128", "crossbar.adc_bits=null", "crossbar.adc_mode=ideal", "chip.tiles=2"])
    assert spec.crossbar.rows == 128 and spec.crossbar.adc_bits is None and spec.chip.tiles == 2


def test_adc_mode_defaults_to_full_range_with_bits():
    spec = arch.CrossbarSpec(rows=8, cols=8, adc_bits=4)
    assert spec.adc_mode == "full_range"


def test_an_ideal_adc_is_one_setting():
    """Overriding adc_bits alone or adc_mode alone brings the other along."""
    ideal = arch.load("demo", ["crossbar.adc_bits=null"]).crossbar  # demo is clip mode
    assert ideal.adc_bits is None and ideal.adc_mode == "ideal"
    ideal = arch.load("demo", ["crossbar.adc_mode=ideal"]).crossbar
    assert ideal.adc_bits is None and ideal.adc_mode == "ideal"
    real = arch.load("cim-aq", ["crossbar.adc_bits=6"]).crossbar  # cim-aq is ideal
    assert real.adc_bits == 6 and real.adc_mode == "full_range"
    clip = arch.load("demo", ["crossbar.adc_bits=4"]).crossbar  # a real ADC keeps its mode
    assert clip.adc_bits == 4 and clip.adc_mode == "clip"
    assert arch.load("demo", ["crossbar.adc_bits=4", "crossbar.adc_mode=3"]).crossbar.adc_mode == 3


def test_active_rows_default_to_rows():
    for name in arch.PRESET_NAMES:  # no preset pins active_rows to its rows
        data = yaml.safe_load(arch.preset_path(name).read_text())
        assert data["crossbar"].get("active_rows") in (None,), name
    spec = arch.load("demo", ["crossbar.rows=24"]).crossbar
    assert spec.rows == 24 and spec.active_rows is None and spec.active_rows_or_all == 24
    assert arch.load("demo", ["crossbar.active_rows=16"]).crossbar.active_rows_or_all == 16


def test_every_cost_constant_is_checked():
    """The check covers whatever CONSTANTS holds: each accepts a positive value, refuses a
    negative one, and refuses 0 unless the constant says 0 means "not counted"."""
    assert {k for k, c in costs.CONSTANTS.items() if c.zero_ok} >= {"digital_ns_per_op"}  # cim-aq needs it
    for key, const in costs.CONSTANTS.items():
        if key in arch.Timing.model_fields:  # a spec field's default: set there, not in costs
            with pytest.raises(CimdseError, match=rf"{key} is set by crossbar\.timing\.{key}, not here"):
                arch.load("demo", [f"crossbar.costs.{key}={const.value * 2}"])
            continue
        spec = arch.load("demo", [f"crossbar.costs.{key}={const.value * 2}"])
        assert costs.constant(spec.crossbar, key) == const.value * 2
        with pytest.raises(CimdseError, match=rf"{key} = -1\.0: must be a finite number"):
            arch.load("demo", [f"crossbar.costs.{key}=-1"])
        if const.zero_ok:
            assert costs.constant(arch.load("demo", [f"crossbar.costs.{key}=0"]).crossbar, key) == 0
        else:
            with pytest.raises(CimdseError, match=rf"{key} = 0\.0: must be a finite number > 0"):
                arch.load("demo", [f"crossbar.costs.{key}=0"])


def test_cost_overrides_change_costs():
    a = arch.load("demo")
    b = arch.load("demo", ["crossbar.costs.adc_power_mw=4.0"])
    assert costs.area_power(b).tile_power_mw > costs.area_power(a).tile_power_mw


@pytest.mark.parametrize(
    "overrides, msg",
    [
        (["crossbar.rowz=3"], r"crossbar\.rowz: unknown key"),
        (["crossbar.rows=0"], r"crossbar\.rows: Input should be greater than 0"),
        (["crossbar.rows=abc"], r"crossbar\.rows: Input should be a valid integer"),
        (["crossbar.adc_bits=null", "crossbar.adc_mode=clip"], "adc_mode 'ideal' goes with adc_bits null"),
        (["crossbar.adc_mode=clip", "crossbar.adc_bits=null"], "adc_mode 'ideal' goes with adc_bits null"),
        (["crossbar.costs.adc_rate_gsps=0"], r"crossbar\.costs: adc_rate_gsps = 0\.0: must be a finite number > 0"),
        (["crossbar.costs.adc_power_mw=-5"], r"adc_power_mw = -5\.0: must be a finite number > 0 \(mW per "),
        (["crossbar.costs.adc_area_mm2=.nan"], r"adc_area_mm2 = nan: must be a finite number > 0"),
        (["crossbar.costs.write_pj_per_cell=.inf"], r"write_pj_per_cell = inf: must be a finite number > 0"),
        (["crossbar.costs.read_ns=50"], r"read_ns is set by crossbar\.timing\.read_ns"),
        (["crossbar.costs.adc_power_mw=lots"], r"crossbar\.costs\.adc_power_mw: Input should be a valid number"),
        (["crossbar.costs.adc_power_mw=true"], r"adc_power_mw: True is not a number"),
        (["crossbar.adcs=1000"], r"adcs \(1000\) cannot exceed cols"),
        (["crossbar.active_rows=500"], "active_rows .* cannot exceed rows"),
        (["crossbar.mapping=diagonal"], r"crossbar\.mapping: Input should be"),
        (["crossbar.adc_mode=99"], "explicit ADC shift"),
        (["crossbar.costs.nonsense=1"], "unknown cost constant"),
        (["crossbar.nonideal.stuck_on_rate=0.7", "crossbar.nonideal.stuck_off_rate=0.7"], "at most 1"),
        (["chip.schedule=parallel"], r"chip\.schedule"),
        (["rows"], "expected KEY=VALUE"),
    ],
)
def test_bad_specs_are_rejected_with_their_rule(overrides, msg):
    with pytest.raises(CimdseError, match=msg):
        arch.load("demo", overrides)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("crossbar:\n  rows: [1, 2\n  cols: 3\n")
    with pytest.raises(CimdseError, match=r"bad\.yaml: line \d+, column \d+: malformed YAML"):
        arch.load(path)


def test_missing_file_and_wrong_shape(tmp_path):
    with pytest.raises(CimdseError, match="no such architecture file or preset"):
        arch.load(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(CimdseError, match="expected a mapping"):
        arch.load(path)


def test_cli_arch_show_prints_sources_and_totals(run_cli):
    proc = run_cli("arch", "show", "isaac", check=True)
    assert "ISAAC ISCA'16 Table I" in proc.stdout
    assert "tile total" in proc.stdout and "0.372" in proc.stdout


def test_cli_bad_spec_exits_2_without_traceback(run_cli, tmp_path):
    proc = run_cli("arch", "show", "demo", "--set", "crossbar.cell_bits=9")
    assert proc.returncode == 2
    assert "crossbar.cell_bits" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "x.yaml"
    bad.write_text("crossbar: {rows: 8, cols: 8, typo: 1}\n")
    proc = run_cli("arch", "show", str(bad))
    assert proc.returncode == 2 and "crossbar.typo: unknown key" in proc.stderr


def test_cli_arch_list(run_cli):
    out = run_cli("arch", "list", check=True).stdout
    for name in arch.PRESET_NAMES:
        assert name in out


def test_cycle_level_timing_uses_the_tile_formula():
    spec = arch.load("demo", ["crossbar.timing.cycle_ns=2.0", "crossbar.active_rows=16"]).crossbar
    # 64 rows in groups of 16 -> G = 4; 40 columns over 4 ADCs -> 10 steps.
    assert costs.tile_slice_cycles(spec, 64, 40) == 4 * (1 + 10)
    assert costs.op_ns(spec, 64, 40) == 2.0 * 44
    # A whole W8A8 MVM on the tile: 8 slices of that, plus accept and combine cycles.
    assert costs.tile_cycles_per_mvm(spec, 8, 8, 64, 40) == 8 * 44 + 2
    with pytest.raises(CimdseError, match="op_ns or cycle_ns"):
        arch.load("demo", ["crossbar.timing.cycle_ns=2.0", "crossbar.timing.op_ns=5"])


def test_cli_bad_cost_override_exits_2_and_writes_nothing(tmp_path, capsys):
    from cimdse.cli import main

    out = tmp_path / "out"
    args = ["compile", "--model", "lenet", "--arch", "demo", "--bits", "4,4", "--out", str(out)]
    assert main([*args, "--set", "crossbar.costs.adc_power_mw=-5"]) == 2
    err = capsys.readouterr().err
    assert "crossbar.costs: adc_power_mw = -5.0: must be a finite number > 0" in err and err.count("\n") == 1
    assert not out.exists()
