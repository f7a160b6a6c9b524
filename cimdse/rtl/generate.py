"""Verilog-2001 generation for one crossbar tile (design.md sections 3 and 8).

The tile is rendered from the template ``tile.v.in`` beside this file, every width
and constant computed here, in Python, from the spec and the layer's bits, and every
operand widened explicitly so that ``verilator --lint-only -Wall`` is clean with no
waivers; the result is parsed back with pyverilog as a lint (pyverilog's code
generator mangles the constructs the tile needs, its parser does not). The module
name is unique per parameterization (:func:`module_name`), the file named after it.

Micro-architecture (one MVM, ``S`` input slices MSB first, ``G`` row groups,
``T = ceil(cols_used / adcs)`` conversion steps):

- IDLE: ``in_ready`` is high; the input vector is latched on ``in_valid``.
- READ (1 cycle): the "analog" step. Rows of the current group are driven with the
  current d-bit slice of their input, every used column sums ``slice * cell`` over
  them (integer adders) and the sums go into sample-and-hold registers.
- CONV (T cycles): converter ``u`` converts column ``step * adcs + u`` (shift, round
  half up, saturate) and adds the code into that column's accumulator, shifted left
  by d first when a new input slice starts (Horner, MSB first).
- Flip encoding (ISAAC, ``encoding: flip``): a unit column (every used cell 1, hard-wired)
  is sampled with the data columns and converted first (slot 0 of the conversion order,
  so ``T = ceil((cols_used + 1) / adcs)``); its code is latched, and a column whose flip
  bit is set for the current row group (``prog_flip`` writes them) adds
  ``(2^c - 1) * unit - code`` instead of its code, as :func:`cimdse.crossbar.restore_flipped`.
- FINAL (1 cycle): each output combines its columns, ``+-2^(j*c + s)`` per polarity
  and weight slice, minus ``2^(b-1) * sum(x)`` for the offset mapping, into the
  output register; ``out_valid`` stays high until ``out_ready``. FINAL waits while
  the previous result is still unconsumed, so no result is lost or duplicated.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cimdse.arch import CrossbarSpec
from cimdse.costs import conversions, tile_cycles_per_mvm
from cimdse.crossbar import adc_code_range, adc_shift, cells_per_weight, input_slices, polarities, signed_sums
from cimdse.errors import CimdseError
from cimdse.files import write_text

GENERATOR_VERSION = "cimdse.rtl 2.0"


def _bits(n: int) -> int:
    """Width of an unsigned counter that holds 0..n (at least 1)."""
    return max(1, int(n).bit_length())


@dataclass(frozen=True)
class TileParams:
    """Every number the Verilog needs, derived once from the spec and the layer."""

    spec: CrossbarSpec
    w_bits: int
    a_bits: int
    k: int  # logical inputs
    n: int  # logical outputs

    @property
    def pol(self) -> int:
        return polarities(self.spec)

    @property
    def n_w(self) -> int:
        return cells_per_weight(self.spec, self.w_bits)

    @property
    def rows_used(self) -> int:
        return 2 * self.k if signed_sums(self.spec) else self.k

    @property
    def cols_used(self) -> int:
        return self.n * self.pol * self.n_w

    @property
    def active(self) -> int:
        return min(self.spec.active_rows_or_all, self.rows_used)

    @property
    def slices(self) -> int:
        return input_slices(self.spec, self.a_bits)

    @property
    def groups(self) -> int:
        return math.ceil(self.rows_used / self.spec.active_rows_or_all)

    @property
    def flip(self) -> bool:
        """ISAAC's flipped columns, with their unit column."""
        return self.spec.encoding == "flip"

    @property
    def steps(self) -> int:
        """ADC steps per read: the used columns plus the unit column of the flip encoding."""
        return math.ceil(conversions(self.spec, self.cols_used) / self.spec.adcs)

    @property
    def shift(self) -> int | None:
        return adc_shift(self.spec)

    @property
    def signed(self) -> bool:
        return signed_sums(self.spec)

    @property
    def psum_max(self) -> int:
        """Largest |partial sum| of one row group of this layer."""
        return self.active * (2**self.spec.dac_bits - 1) * (2**self.spec.cell_bits - 1)

    @property
    def psum_width(self) -> int:
        return _bits(self.psum_max) + (1 if self.signed else 0)

    @property
    def code_width(self) -> int:
        return self.psum_width if self.shift is None else int(self.spec.adc_bits or 0)

    @property
    def code_max(self) -> int:
        """Largest |ADC output code|."""
        if self.shift is None:
            return self.psum_max
        lo, hi = adc_code_range(self.spec)
        return max(-lo, hi)

    @property
    def value_max(self) -> int:
        """Largest |value a conversion adds|: the code, or a restored flipped column's
        ``(2^c - 1) * unit - code`` in [-code_max, (2^c - 1) * code_max]."""
        return self.code_max * (2**self.spec.cell_bits - 1 if self.flip else 1)

    @property
    def acc_max(self) -> int:
        """Largest |column accumulator|: values of every group and slice, slice i weighted 2^(i*d)."""
        d = self.spec.dac_bits
        return self.value_max * self.groups * ((2 ** (self.slices * d) - 1) // (2**d - 1))

    @property
    def acc_width(self) -> int:
        return self.acc_max.bit_length() + 1

    @property
    def offset(self) -> int:
        return 2 ** (self.w_bits - 1) if self.spec.mapping == "offset" else 0

    @property
    def xsum_width(self) -> int:
        return _bits(self.k * (2**self.a_bits - 1))

    @property
    def out_width(self) -> int:
        c, s = self.spec.cell_bits, self.shift or 0
        cols = sum(2 ** (j * c) for j in range(self.n_w)) * self.pol
        bound = 2**s * cols * self.acc_max + self.offset * self.k * (2**self.a_bits - 1)
        return bound.bit_length() + 1

    @property
    def cycles(self) -> int:
        return tile_cycles_per_mvm(self.spec, self.w_bits, self.a_bits, self.rows_used, self.cols_used)


def tile_params(spec: CrossbarSpec, w_bits: int, a_bits: int, k: int | None = None, n: int | None = None) -> TileParams:
    """Check a layer against the tile; ``k``/``n`` default to the shape that fills it."""
    if spec.nonideal.any:
        raise CimdseError("the RTL tile is exact: switch the spec's non-idealities off to generate or verify it")
    if not 2 <= w_bits <= 16:
        raise CimdseError(f"w_bits must be in 2..16 for the RTL tile (1-bit signed weights are all zero), got {w_bits}")
    if not 1 <= a_bits <= 16:
        raise CimdseError(f"a_bits must be in 1..16, got {a_bits}")
    pol, n_w = polarities(spec), cells_per_weight(spec, w_bits)
    per_out = pol * n_w
    row_mult = 2 if signed_sums(spec) else 1
    why = (
        f"{per_out} per output: {n_w} cell(s) of {spec.cell_bits} bit(s) per {w_bits}-bit weight"
        f"{' x 2 polarities' if pol == 2 else ''}, {spec.mapping} mapping"
    )
    if spec.cols < per_out:
        raise CimdseError(f"crossbar.cols = {spec.cols} is smaller than the columns one output needs ({why})")
    if n is not None and n < 1:
        raise CimdseError(f"a layer needs at least 1 output, got {n}")
    if k is not None and k < 1:
        raise CimdseError(f"a layer needs at least 1 input, got {k}")
    k = spec.rows // row_mult if k is None else k
    n = spec.cols // per_out if n is None else n
    if n * per_out > spec.cols:
        raise CimdseError(f"a layer of {n} output(s) needs {n * per_out} columns ({why}) but the tile has {spec.cols}")
    if k * row_mult > spec.rows:
        raise CimdseError(f"a layer of {k} input(s) needs {k * row_mult} rows but the tile has {spec.rows}")
    return TileParams(spec, w_bits, a_bits, k, n)


# ---------------------------------------------------------------- rendering
TEMPLATE = Path(__file__).with_name("tile.v.in")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def module_name(p: TileParams, *, _broken_rounding: bool = False) -> str:
    """``cimdse_tile_<rows>x<cols>_w<b>a<a>_<hash>``: unique per parameterization, the
    hash covering everything that shapes the Verilog (spec fields, layer bits and shape)."""
    s = p.spec
    key = (
        GENERATOR_VERSION,
        s.rows,
        s.cols,
        s.cell_bits,
        s.dac_bits,
        s.adc_bits,
        p.shift,
        s.adcs,
        s.active_rows_or_all,
        s.mapping,
        s.encoding,
        p.n_w,
        p.w_bits,
        p.a_bits,
        p.k,
        p.n,
        _broken_rounding,
    )
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:8]
    return f"cimdse_tile_{s.rows}x{s.cols}_w{p.w_bits}a{p.a_bits}_{digest}"


def _lit(value: int, width: int, signed: bool = False) -> str:
    """A sized literal (negative values as the negation of a signed one)."""
    if signed:
        return f"{width}'sd{value}" if value >= 0 else f"-{width}'sd{-value}"
    if not 0 <= value < 2**width:
        raise ValueError(f"{value} does not fit {width} bits")
    return f"{width}'d{value}"


def _zext(expr: str, width: int, to: int) -> str:
    """``expr`` (``width`` bits) zero-extended to ``to`` bits, as an explicit concatenation."""
    if to < width:
        raise ValueError(f"cannot widen {width} bits to {to}")
    return expr if to == width else f"{{{to - width}'d0, {expr}}}"


def _sext(expr: str, width: int, to: int) -> str:
    """``expr`` (a name or select, ``width`` bits, two's complement) sign-extended to ``to`` bits."""
    if to < width:
        raise ValueError(f"cannot widen {width} bits to {to}")
    return expr if to == width else f"{{{{{to - width}{{{expr}[{width - 1}]}}}}, {expr}}}"


def _header(p: TileParams, module: str) -> str:
    s = p.spec
    adc = "ideal" if p.shift is None else f"{s.adc_bits}-bit, mode {s.adc_mode}, shift {p.shift}"
    lines = [
        f"Generated by {GENERATOR_VERSION}. Do not edit; regenerate with `cimdse rtl`.",
        f"Module {module}: one RRAM crossbar tile, Verilog-2001.",
        "The module name is unique per parameterization: the hash covers every parameter below.",
        f"Spec: rows {s.rows}, cols {s.cols}, cell_bits {s.cell_bits}, dac_bits {s.dac_bits}, "
        f"active_rows {s.active_rows_or_all}, adcs {s.adcs}, mapping {s.mapping}, ADC {adc}.",
        f"Layer: w_bits {p.w_bits}, a_bits {p.a_bits}, K {p.k} inputs, N {p.n} outputs; "
        f"{p.n_w} cell(s) per weight per polarity, {p.rows_used} rows and {p.cols_used} columns used.",
        f"Schedule: {p.slices} input slice(s) x {p.groups} row group(s) x (1 read + {p.steps} ADC steps) "
        f"+ 2 = {p.cycles} cycles per MVM.",
        f"Widths: partial sum {p.psum_width}, ADC code {p.code_width}, column accumulator {p.acc_width}, "
        f"output {p.out_width} (signed).",
        "Ports: prog_* writes cell (prog_row, prog_col) = prog_data, column (n*P + pol)*n_w + j holds",
        "slice j (LSB first) of polarity pol (0: W+, 1: W-) of output n; for differential-row, row 2k",
        "holds W+ and row 2k+1 W- of input k. in_vec element k is bits [k*a_bits +: a_bits]",
        "(unsigned); out_vec element n is bits [n*OUT_W +: OUT_W] (two's complement).",
    ]
    if p.flip:
        lines += [
            "Flip encoding (ISAAC): prog_flip = 1 writes bit prog_data[0] as the flip bit of row group prog_row,",
            "column prog_col (1: the group's cells of that column are stored as (2^c - 1) - cell); a unit column",
            "(every used cell 1) is converted first, and a flipped column adds (2^c - 1) * unit - code.",
        ]
    return "\n".join("// " + line for line in lines)


def _adc_function(p: TileParams, broken_rounding: bool) -> str:
    """The ADC of design.md section 3 on a PSUM_W-bit sample (two's complement when
    the sums are signed): shift, round half up, saturate."""
    pw, cw = p.psum_width, p.code_width
    s = p.shift
    if s is None:
        return (
            "    // Ideal ADC: the partial sum itself.\n"
            "    function [CODE_W-1:0] adc;\n"
            "        input [PSUM_W-1:0] sample;\n"
            "        adc = sample;\n"
            "    endfunction\n"
        )
    half = 0 if s == 0 or broken_rounding else 2 ** (s - 1)
    ew = max(pw, cw, s + 1) + 2
    lo, hi = adc_code_range(p.spec)
    what = "truncate (no rounding)" if broken_rounding and s > 0 else "round half up"
    shift = f"t >>> {s}" if p.signed else f"t >> {s}"
    if p.signed:
        body = (
            f"            t = {_sext('sample', pw, ew)} + {_lit(half, ew)};\n"
            f"            t = {shift};\n"
            f"            if (t > {_lit(hi, ew, True)}) adc = {_lit(hi, cw)};\n"
            f"            else if (t < {_lit(lo, ew, True)}) adc = {_lit(2**cw + lo, cw)};\n"
            f"            else adc = t[CODE_W-1:0];\n"
        )
    else:
        body = (
            f"            t = {_zext('sample', pw, ew)} + {_lit(half, ew)};\n"
            f"            t = {shift};\n"
            f"            adc = (t > {_lit(hi, ew)}) ? {_lit(hi, cw)} : t[CODE_W-1:0];\n"
        )
    return (
        f"    // ADC: code = clamp((p + {half}) >> {s}) in [{lo}, {hi}] ({what}, then saturate).\n"
        f"    function [CODE_W-1:0] adc;  // code bits (two's complement when signed)\n"
        f"        input [PSUM_W-1:0] sample;\n"
        f"        reg {'signed ' if p.signed else ''}[{ew - 1}:0] t;\n"
        f"        begin\n{body}        end\n"
        f"    endfunction\n"
    )


def _flip_values(p: TileParams, rw: int, cwid: int) -> dict[str, str]:
    """The template's flip-encoding parts: empty for the plain encoding, which then
    renders exactly as a tile without them."""
    slot = f"{_zext('step', _bits(p.steps - 1), 32)} * ADCS + u"
    if not p.flip:
        empty = ("flip_port", "flip_decl", "flip_write", "unit_fn", "unit_read", "unit_latch")
        return {key: "" for key in empty} | {
            "restore_fn": "",
            "conv_note": "column step*ADCS + u",
            "conv_what": "code",
            "slot_col": slot,
            "conv_value": f"widen(adc(sh[{slot}]))",
        }
    spec = p.spec
    slot = f"{slot} - 1"  # slot 0 is the unit column; an unsigned -1 fails the range check
    addr = f"{_zext('prog_row', rw, 32)} * COLS_USED + {_zext('prog_col', cwid, 32)}"
    guards = []
    if p.groups - 1 < 2**rw - 1:
        guards.append(f"prog_row <= {_lit(p.groups - 1, rw)}")
    if p.cols_used - 1 < 2**cwid - 1:
        guards.append(f"prog_col <= {_lit(p.cols_used - 1, cwid)}")
    write = ["prog_en", "prog_flip", *guards]
    gw, tw = _bits(p.groups - 1), _bits(p.steps - 1)
    drive = f"xin[r * SLICE_BITS + {_zext('slice', _bits(p.slices - 1), 32)} * DAC_BITS +: DAC_BITS]"
    unit_fn = [
        "",
        "    // The unit column (cell 1 on every used row): the group's sum of input slices.",
        "    function [PSUM_W-1:0] unit_sum;",
        f"        input [{gw - 1}:0] g;  // row group",
        "        integer r;",
        "        begin",
        f"            unit_sum = {_lit(0, p.psum_width)};",
        "            /* verilator unroll_disable */",
        "            for (r = 0; r < ROWS_USED; r = r + 1) begin",
        f"                if (r / ACTIVE == {_zext('g', gw, 32)})",
        f"                    unit_sum = unit_sum + {_zext(drive, spec.dac_bits, p.psum_width)};",
        "            end",
        "        end",
        "    endfunction",
    ]
    restore_fn = [
        "    // The unit column's code: converted first (slot 0, at step 0), then held.",
        f"    wire [CODE_W-1:0] unit_code = (step == {_lit(0, tw)}) ? adc(sh_unit) : unit_q;",
        "",
        "    // A flipped column restored after the ADC: (2^c - 1) * unit - code (crossbar.restore_flipped).",
        "    function [ACC_W-1:0] restore;",
        "        input [CODE_W-1:0] code;",
        "        input [CODE_W-1:0] unit;",
        "        input flipped;",
        f"        restore = flipped ? widen(unit) * {_lit(2**spec.cell_bits - 1, p.acc_width)} - widen(code)"
        " : widen(code);",
        "    endfunction",
        "",
        "",
    ]
    return {
        "flip_port": "\n    input  wire prog_flip,                    // 1: write a flip bit (group, column)",
        "flip_decl": (
            "\n    reg  flips [0:GROUPS*COLS_USED-1];           // flip bit of (row group g, column c): g*COLS_USED + c"
            "\n    reg  [PSUM_W-1:0] sh_unit;                   // sample-and-hold of the unit column"
            "\n    reg  [CODE_W-1:0] unit_q;                    // the unit column's code, latched at step 0"
        ),
        "flip_write": f"\n        if ({' && '.join(write)}) flips[{addr}] <= prog_data[0];",
        "unit_fn": "\n".join(unit_fn) + "\n",
        "unit_read": "\n            sh_unit <= unit_sum(grp);",
        "unit_latch": f"\n            if (step == {_lit(0, tw)}) unit_q <= unit_code;  // slot 0: the unit column",
        "restore_fn": "\n".join(restore_fn),
        "conv_note": "slot step*ADCS + u (0: the unit column, q: column q-1)",
        "conv_what": "code (restored if flipped)",
        "slot_col": slot,
        "conv_value": f"restore(adc(sh[{slot}]), unit_code, flips[{_zext('grp', gw, 32)} * COLS_USED + {slot}])",
    }


def _output_exprs(p: TileParams) -> str:
    c, s, ow = p.spec.cell_bits, p.shift or 0, p.out_width
    lines = []
    for n in range(p.n):
        terms = []
        for pol in range(p.pol):
            for j in range(p.n_w):
                col = (n * p.pol + pol) * p.n_w + j
                sh = j * c + s
                wide = _sext(f"acc[{col}]", p.acc_width, ow)
                term = f"({wide} << {sh})" if sh else wide
                terms.append(("- " if pol else "+ ") + term)
        if p.offset:
            terms.append(f"- ({_zext('xsum', p.xsum_width, ow)} << {p.w_bits - 1})")
        expr = " ".join(terms).removeprefix("+ ")
        lines.append(f"    wire [OUT_W-1:0] y{n} = {expr};")
    concat = ", ".join(f"y{n}" for n in reversed(range(p.n)))
    lines.append(f"    wire [{p.n * ow - 1}:0] y_all = {{{concat}}};")
    return "\n".join(lines)


def _fill(template: str, values: dict[str, str]) -> str:
    """Replace every ``{{name}}``; an unknown or unused name is a generator bug."""
    used: set[str] = set()

    def sub(m: re.Match[str]) -> str:
        used.add(m.group(1))
        return values[m.group(1)]

    text = _PLACEHOLDER.sub(sub, template)
    if set(values) - used:
        raise ValueError(f"template lacks {sorted(set(values) - used)}")
    return text


def render(p: TileParams, module: str | None = None, *, _broken_rounding: bool = False) -> str:
    """The Verilog text of the tile (``module`` defaults to :func:`module_name`).
    ``_broken_rounding`` (private, for testing the testbench) makes the ADC truncate
    instead of rounding half up."""
    spec = p.spec
    module = module or module_name(p, _broken_rounding=_broken_rounding)
    rw, cwid = _bits(spec.rows - 1), _bits(spec.cols - 1)
    aw = max(_bits(spec.rows * spec.cols - 1), spec.cols.bit_length())  # holds the address and COLS
    sw, gw, tw = _bits(p.slices - 1), _bits(p.groups - 1), _bits(p.steps - 1)
    prod_w = _bits((2**spec.dac_bits - 1) * (2**spec.cell_bits - 1))
    guards = []  # out-of-range addresses write nothing (only needed when a port can exceed its range)
    if spec.rows != 2**rw:
        guards.append(f"prog_row <= {_lit(spec.rows - 1, rw)}")
    if spec.cols != 2**cwid:
        guards.append(f"prog_col <= {_lit(spec.cols - 1, cwid)}")
    ext = _sext if p.signed else _zext
    prod_term = _zext("prod", prod_w, p.psum_width)
    accumulate = (
        f"if (r % 2 == 0) column_sum = column_sum + {prod_term};  // W+ row\n"
        f"                    else column_sum = column_sum - {prod_term};  // W- row, opposite polarity"
        if p.signed
        else f"column_sum = column_sum + {prod_term};"
    )
    xsum = bool(p.offset)
    values = {
        "header": _header(p, module),
        "module": module,
        "prog_row_msb": str(rw - 1),
        "prog_col_msb": str(cwid - 1),
        "cell_msb": str(spec.cell_bits - 1),
        "in_msb": str(p.k * p.a_bits - 1),
        "out_msb": str(p.n * p.out_width - 1),
        "rows": str(spec.rows),
        "cols": str(spec.cols),
        "cell_bits": str(spec.cell_bits),
        "dac_bits": str(spec.dac_bits),
        "adcs": str(spec.adcs),
        "k": str(p.k),
        "a_bits": str(p.a_bits),
        "rows_used": str(p.rows_used),
        "cols_used": str(p.cols_used),
        "active": str(spec.active_rows_or_all),
        "slice_bits": str(p.slices * spec.dac_bits),
        "prod_width": str(prod_w),
        "psum_width": str(p.psum_width),
        "psum_signedness": " (two's complement)" if p.signed else "",
        "code_width": str(p.code_width),
        "acc_width": str(p.acc_width),
        "out_width": str(p.out_width),
        "xsum_param": f"    localparam XSUM_W = {p.xsum_width};           // sum of the inputs\n" if xsum else "",
        "slice_msb": str(sw - 1),
        "grp_msb": str(gw - 1),
        "step_msb": str(tw - 1),
        "xsum_decl": "    reg  [XSUM_W-1:0] xsum;  // sum of the inputs, for the offset correction\n" if xsum else "",
        "prog_guard_note": ": addresses outside the array write nothing" if guards else "",
        "addr_msb": str(aw - 1),
        "prog_addr": f"{_zext('prog_row', rw, aw)} * {_lit(spec.cols, aw)} + {_zext('prog_col', cwid, aw)}",
        "prog_write": " && ".join(["prog_en", *(["!prog_flip"] if p.flip else []), *guards]),
        "psum_zero": _lit(0, p.psum_width),
        "grp_int": _zext("grp", gw, 32),
        "row_input": "(r / 2)" if p.signed else "r",
        "slice_int": _zext("slice", sw, 32),
        "drive_ext": _zext("drive", spec.dac_bits, prod_w),
        "cell_ext": _zext("cells[r * COLS + col]", spec.cell_bits, prod_w),
        "accumulate": accumulate,
        "adc_function": _adc_function(p, _broken_rounding),
        "widen_note": " (sign-extended: the sums are signed)" if p.signed else "",
        "widen_expr": ext("code", p.code_width, p.acc_width),
        "acc_zero": _lit(0, p.acc_width),
        "grp_zero": _lit(0, gw),
        "xsum_fn_note": ", and their sum" if xsum else "",
        "xin_zero": _lit(0, p.k * p.slices * spec.dac_bits),
        "pad_element": _zext("v[i*A_BITS +: A_BITS]", p.a_bits, p.slices * spec.dac_bits),
        "xsum_fn": (
            "    function [XSUM_W-1:0] sum_inputs;\n"
            "        input [K*A_BITS-1:0] v;\n"
            "        integer i;\n"
            "        begin\n"
            f"            sum_inputs = {_lit(0, p.xsum_width)};\n"
            "            for (i = 0; i < K; i = i + 1)\n"
            f"                sum_inputs = sum_inputs + {_zext('v[i*A_BITS +: A_BITS]', p.a_bits, p.xsum_width)};\n"
            "        end\n"
            "    endfunction\n"
            if xsum
            else ""
        ),
        "offset_note": ", minus the weight offset times the input sum" if xsum else "",
        "outputs": _output_exprs(p),
        "slice_zero": _lit(0, sw),
        "step_zero": _lit(0, tw),
        "xsum_set": "                        xsum <= sum_inputs(in_vec);\n" if xsum else "",
        "slice_last": _lit(p.slices - 1, sw),
        "slice_one": _lit(1, sw),
        "step_last": _lit(p.steps - 1, tw),
        "step_one": _lit(1, tw),
        "grp_last": _lit(p.groups - 1, gw),
        "grp_one": _lit(1, gw),
        "groups_param": f"    localparam GROUPS = {p.groups};            // row groups\n" if p.flip else "",
        **_flip_values(p, rw, cwid),
    }
    return _fill(TEMPLATE.read_text(), values)


def lint(path: str | Path) -> None:
    """Parse a generated file with pyverilog; a CimdseError names the problem."""
    from pyverilog.vparser.parser import ParseError, VerilogCodeParser

    path = Path(path)
    # pyverilog writes its preprocessor output and parser tables to files: keep them
    # in a private folder so that parallel runs do not collide.
    with tempfile.TemporaryDirectory(prefix="cimdse-lint-") as tmp:
        parser = VerilogCodeParser([str(path)], preprocess_output=str(Path(tmp) / "pp.v"), outputdir=tmp, debug=False)
        try:
            parser.parse(preprocess_output=str(Path(tmp) / "pp.v"), debug=0)
        except ParseError as err:
            raise CimdseError(f"{path}: pyverilog cannot parse the generated Verilog: {err}") from None


@dataclass(frozen=True)
class GeneratedTile:
    """A tile written to disk: its parameters, module name and file (named after the module)."""

    params: TileParams
    module: str
    path: Path


def generate(
    spec: CrossbarSpec,
    w_bits: int,
    a_bits: int,
    folder: str | Path,
    *,
    k: int | None = None,
    n: int | None = None,
    check: bool = True,
    _broken_rounding: bool = False,
) -> GeneratedTile:
    """Write the tile's Verilog to ``folder/<module>.v`` (atomically) and lint it with pyverilog."""
    p = tile_params(spec, w_bits, a_bits, k, n)
    module = module_name(p, _broken_rounding=_broken_rounding)
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / f"{module}.v"
    write_text(render(p, module, _broken_rounding=_broken_rounding), path)
    if check:
        lint(path)
    return GeneratedTile(p, module, path)


def render_digital_part(p: TileParams) -> tuple[str, str]:
    """(module name, Verilog) of the tile's digital part alone, for synthesis figures:
    the same text as :func:`render` with the converters' codes arriving on a port
    ``code_in`` (converter u's code at bits ``[u*CODE_W +: CODE_W]``) instead of coming
    out of the ADC function, so the array, the column sums, the sample-and-hold and the
    ADC are neither written nor read, and synthesis drops them. What stays: input latch and slice
    selection, the flip restore, the shift-and-add accumulators, the output combination
    and register, and the control."""
    module = module_name(p) + "_digital"
    text = render(p, module)
    slot = f"{_zext('step', _bits(p.steps - 1), 32)} * ADCS + u" + (" - 1" if p.flip else "")
    code_w = p.code_width
    swaps = [
        (f"adc(sh[{slot}])", f"code_in[u*{code_w} +: {code_w}]"),
        (
            f"    output reg  [{p.n * p.out_width - 1}:0] out_vec\n);",
            f"    output reg  [{p.n * p.out_width - 1}:0] out_vec,\n"
            f"    input  wire [{p.spec.adcs * code_w - 1}:0] code_in  // the converters' codes\n);",
        ),
    ]
    # Nothing writes the array or the samples either (synthesis would map them first).
    swaps.append(("cells[prog_addr] <= prog_data;", ";"))
    swaps.append(("sh[c] <= column_sum(c);", ";"))
    if p.flip:
        swaps += [("adc(sh_unit)", f"code_in[{code_w - 1}:0]"), ("sh_unit <= unit_sum(grp);", ";")]
    for old, new in swaps:
        if old not in text:  # pragma: no cover - the template and this function agree
            raise ValueError(f"the tile text lacks {old!r}")
        text = text.replace(old, new)
    return module, text
