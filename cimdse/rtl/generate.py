"""Verilog-2001 generation for one crossbar tile (design.md sections 3 and 8).

The tile is rendered from a template whose every width and constant is computed
here, in Python, from the spec and the layer's bits; the result is parsed back with
pyverilog as a lint (pyverilog's code generator mangles the signed and generate
constructs the tile needs, its parser does not).

Micro-architecture (one MVM, ``S`` input slices MSB first, ``G`` row groups,
``T = ceil(cols_used / adcs)`` conversion steps):

- IDLE: ``in_ready`` is high; the input vector is latched on ``in_valid``.
- READ (1 cycle): the "analog" step. Rows of the current group are driven with the
  current d-bit slice of their input, every used column sums ``slice * cell`` over
  them (integer adders) and the sums go into sample-and-hold registers.
- CONV (T cycles): converter ``u`` converts column ``step * adcs + u`` (shift, round
  half up, saturate) and adds the code into that column's accumulator, shifted left
  by d first when a new input slice starts (Horner, MSB first).
- FINAL (1 cycle): each output combines its columns, ``+-2^(j*c + s)`` per polarity
  and weight slice, minus ``2^(b-1) * sum(x)`` for the offset mapping, into the
  output register; ``out_valid`` stays high until ``out_ready``. FINAL waits while
  the previous result is still unconsumed, so no result is lost or duplicated.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cimdse.arch import CrossbarSpec
from cimdse.costs import tile_cycles_per_mvm
from cimdse.crossbar import adc_code_range, adc_shift, cells_per_weight, input_slices, polarities, signed_sums
from cimdse.errors import CimdseError
from cimdse.files import write_text

GENERATOR_VERSION = "cimdse.rtl 1.0"


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
    def steps(self) -> int:
        return math.ceil(self.cols_used / self.spec.adcs)

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
    def acc_max(self) -> int:
        """Largest |column accumulator|: codes of every group and slice, slice i weighted 2^(i*d)."""
        d = self.spec.dac_bits
        return self.code_max * self.groups * ((2 ** (self.slices * d) - 1) // (2**d - 1))

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
    if spec.encoding != "plain":
        raise CimdseError(
            f"the RTL tile does not implement encoding '{spec.encoding}' (ISAAC's flipped columns and their unit "
            "column); set crossbar.encoding=plain to generate or verify it"
        )
    if not 2 <= w_bits <= 16:
        raise CimdseError(f"w_bits must be in 2..16 for the RTL tile (1-bit signed weights are all zero), got {w_bits}")
    if not 1 <= a_bits <= 16:
        raise CimdseError(f"a_bits must be in 1..16, got {a_bits}")
    per_out = polarities(spec) * cells_per_weight(spec, w_bits)
    row_mult = 2 if signed_sums(spec) else 1
    k = spec.rows // row_mult if k is None else k
    n = spec.cols // per_out if n is None else n
    if n < 1 or n * per_out > spec.cols:
        raise CimdseError(
            f"a layer of {n} output(s) needs {max(n, 1) * per_out} columns ({per_out} per {w_bits}-bit weight) "
            f"but the tile has {spec.cols}"
        )
    if k < 1 or k * row_mult > spec.rows:
        raise CimdseError(f"a layer of {k} input(s) needs {max(k, 1) * row_mult} rows but the tile has {spec.rows}")
    return TileParams(spec, w_bits, a_bits, k, n)


# ---------------------------------------------------------------- rendering
def _slit(value: int, width: int) -> str:
    """A signed sized literal (Verilog-2001), negative values included."""
    return f"{width}'sd{value}" if value >= 0 else f"-{width}'sd{-value}"


def _header(p: TileParams, module: str) -> str:
    s = p.spec
    adc = "ideal" if p.shift is None else f"{s.adc_bits}-bit, mode {s.adc_mode}, shift {p.shift}"
    lines = [
        f"Generated by {GENERATOR_VERSION}. Do not edit; regenerate with `cimdse rtl`.",
        f"Module {module}: one RRAM crossbar tile, Verilog-2001.",
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
    return "\n".join("// " + line for line in lines)


def _adc_function(p: TileParams, broken_rounding: bool) -> str:
    pw, cw = p.psum_width, p.code_width
    s = p.shift
    if s is None:
        return (
            f"    // Ideal ADC: the partial sum itself.\n"
            f"    function [CODE_W-1:0] adc;  // code bits (two's complement when signed)\n"
            f"        input {'signed ' if p.signed else ''}[PSUM_W-1:0] sample;\n"
            f"        adc = sample;\n"
            f"    endfunction\n"
        )
    half = 0 if s == 0 or broken_rounding else 2 ** (s - 1)
    ew = max(pw, cw, s + 1) + 2
    lo, hi = adc_code_range(p.spec)
    what = "truncate (no rounding)" if broken_rounding and s > 0 else "round half up"
    if p.signed:
        body = (
            f"        t = sample + {_slit(half, ew)};\n"
            f"        t = t >>> {s};\n"
            f"        if (t > {_slit(hi, ew)}) adc = {_slit(hi, cw)};\n"
            f"        else if (t < {_slit(lo, ew)}) adc = {_slit(lo, cw)};\n"
            f"        else adc = t[CODE_W-1:0];\n"
        )
        sign = "signed "
    else:
        body = (
            f"        t = sample + {ew}'d{half};\n"
            f"        t = t >> {s};\n"
            f"        adc = (t > {ew}'d{hi}) ? {cw}'d{hi} : t[CODE_W-1:0];\n"
        )
        sign = ""
    return (
        f"    // ADC: code = clamp((p + {half}) >> {s}) in [{lo}, {hi}] ({what}, then saturate).\n"
        f"    function [CODE_W-1:0] adc;  // code bits (two's complement when signed)\n"
        f"        input {sign}[PSUM_W-1:0] sample;\n"
        f"        reg {sign}[{ew - 1}:0] t;\n"
        f"        begin\n{body}        end\n"
        f"    endfunction\n"
    )


def _output_exprs(p: TileParams) -> str:
    c, s = p.spec.cell_bits, p.shift or 0
    lines = []
    for n in range(p.n):
        terms = []
        for pol in range(p.pol):
            for j in range(p.n_w):
                col = (n * p.pol + pol) * p.n_w + j
                sh = j * c + s
                term = f"(acc[{col}] <<< {sh})" if sh else f"acc[{col}]"
                terms.append(("- " if pol else "+ ") + term)
        if p.offset:
            terms.append(f"- ($signed({{1'b0, xsum}}) <<< {p.w_bits - 1})")
        expr = " ".join(terms).removeprefix("+ ")
        lines.append(f"    wire signed [OUT_W-1:0] y{n} = {expr};")
    concat = ", ".join(f"y{n}" for n in reversed(range(p.n)))
    lines.append(f"    wire [N*OUT_W-1:0] y_all = {{{concat}}};")
    return "\n".join(lines)


def render(p: TileParams, module: str = "cimdse_tile", *, _broken_rounding: bool = False) -> str:
    """The Verilog text of the tile. ``_broken_rounding`` (private, for testing the
    testbench) makes the ADC truncate instead of rounding half up."""
    spec = p.spec
    sgn = "signed " if p.signed else ""
    row_in = "(r / 2)" if p.signed else "r"
    add = (
        "if (r % 2 == 0) psum = psum + prod;  // W+ row\n"
        "                        else psum = psum - prod;  // W- row, driven with opposite polarity"
        if p.signed
        else "psum = psum + prod;"
    )
    code_ext = "code" if p.signed else "{1'b0, code}"
    xsum_decl = "    reg  [XSUM_W-1:0] xsum;  // sum of the inputs, for the offset correction\n" if p.offset else ""
    xsum_set = "                        xsum <= sum_inputs(in_vec);\n" if p.offset else ""
    sum_fn = (
        "    function [XSUM_W-1:0] sum_inputs;\n"
        "        input [K*A_BITS-1:0] v;\n"
        "        integer i;\n"
        "        begin\n"
        "            sum_inputs = 0;\n"
        "            for (i = 0; i < K; i = i + 1) sum_inputs = sum_inputs + v[i*A_BITS +: A_BITS];\n"
        "        end\n"
        "    endfunction\n\n"
        if p.offset
        else ""
    )
    return f"""{_header(p, module)}

`timescale 1ns / 1ps

module {module} (
    input  wire clk,
    input  wire rst,                          // synchronous, active high
    // weight programming: one cell per cycle
    input  wire prog_en,
    input  wire [{_bits(spec.rows - 1) - 1}:0] prog_row,
    input  wire [{_bits(spec.cols - 1) - 1}:0] prog_col,
    input  wire [{spec.cell_bits - 1}:0] prog_data,
    // input vector: K unsigned A_BITS-bit activations
    input  wire in_valid,
    output wire in_ready,
    input  wire [{p.k * p.a_bits - 1}:0] in_vec,
    // output vector: N signed OUT_W-bit results
    output reg  out_valid,
    input  wire out_ready,
    output reg  [{p.n * p.out_width - 1}:0] out_vec
);
    localparam ROWS = {spec.rows};            // physical rows of the array
    localparam COLS = {spec.cols};            // physical columns of the array
    localparam CELL_BITS = {spec.cell_bits};
    localparam DAC_BITS = {spec.dac_bits};
    localparam ADCS = {spec.adcs};
    localparam K = {p.k};
    localparam N = {p.n};
    localparam A_BITS = {p.a_bits};
    localparam ROWS_USED = {p.rows_used};
    localparam COLS_USED = {p.cols_used};
    localparam ACTIVE = {spec.active_rows_or_all};           // rows driven at once
    localparam SLICES = {p.slices};
    localparam SLICE_BITS = {p.slices * spec.dac_bits};      // A_BITS padded to whole slices
    localparam GROUPS = {p.groups};
    localparam STEPS = {p.steps};             // ADC steps per read: ceil(COLS_USED / ADCS)
    localparam PSUM_W = {p.psum_width};
    localparam CODE_W = {p.code_width};
    localparam ACC_W = {p.acc_width};
    localparam OUT_W = {p.out_width};
    localparam XSUM_W = {p.xsum_width};

    localparam S_IDLE = 2'd0, S_READ = 2'd1, S_CONV = 2'd2, S_FINAL = 2'd3;

    reg  [1:0] state;
    reg  [{_bits(p.slices - 1) - 1}:0] slice;      // current input slice, MSB first
    reg  [{_bits(p.groups - 1) - 1}:0] grp;        // current row group
    reg  [{_bits(p.steps - 1) - 1}:0] step;       // current ADC step
    reg  [K*SLICE_BITS-1:0] xin;      // latched inputs, zero-padded to whole slices
{xsum_decl}
    reg  [CELL_BITS-1:0] cells [0:ROWS*COLS-1];  // the array: cell (r, c) at r*COLS + c
    reg  {sgn}[PSUM_W-1:0] sh [0:COLS_USED-1];  // sample-and-hold of the column sums
    reg  signed [ACC_W-1:0] acc [0:COLS_USED-1]; // per-column shift-and-add

    assign in_ready = (state == S_IDLE);

{_adc_function(p, _broken_rounding)}
    function [K*SLICE_BITS-1:0] pad_inputs;
        input [K*A_BITS-1:0] v;
        integer i;
        begin
            pad_inputs = 0;
            for (i = 0; i < K; i = i + 1) pad_inputs[i*SLICE_BITS +: SLICE_BITS] = v[i*A_BITS +: A_BITS];
        end
    endfunction

{sum_fn}    // Weight programming.
    always @(posedge clk) begin
        if (prog_en) cells[prog_row * COLS + prog_col] <= prog_data;
    end

    // READ: drive the current group's rows with their input slice; every column sums
    // slice * cell over them (the analog bit-line sum, as integer adders).
    integer r, c;
    reg [DAC_BITS-1:0] drive;
    reg [DAC_BITS+CELL_BITS-1:0] prod;
    reg {sgn}[PSUM_W-1:0] psum;
    always @(posedge clk) begin
        if (state == S_READ) begin
            for (c = 0; c < COLS_USED; c = c + 1) begin
                psum = 0;
                for (r = 0; r < ROWS_USED; r = r + 1) begin
                    if (r / ACTIVE == grp) begin
                        drive = xin[{row_in}*SLICE_BITS + slice*DAC_BITS +: DAC_BITS];
                        prod = drive * cells[r*COLS + c];
                        {add}
                    end
                end
                sh[c] <= psum;
            end
        end
    end

    // CONV: converter u converts column step*ADCS + u; its accumulator shifts by
    // DAC_BITS at the first group of each slice (MSB-first Horner) and adds the code.
    integer u, col;
    reg {sgn}[CODE_W-1:0] code;
    always @(posedge clk) begin
        if (state == S_IDLE && in_valid) begin
            for (col = 0; col < COLS_USED; col = col + 1) acc[col] <= 0;
        end else if (state == S_CONV) begin
            for (u = 0; u < ADCS; u = u + 1) begin
                col = step * ADCS + u;
                if (col < COLS_USED) begin
                    code = adc(sh[col]);
                    acc[col] <= ((grp == 0) ? (acc[col] <<< DAC_BITS) : acc[col]) + {code_ext};
                end
            end
        end
    end

    // FINAL: combine each output's columns (sign per polarity, 2^(j*CELL_BITS) per
    // weight slice, 2^shift of the ADC{", minus the weight offset times the input sum" if p.offset else ""}).
{_output_exprs(p)}

    // Control and the output handshake.
    always @(posedge clk) begin
        if (rst) begin
            state <= S_IDLE;
            slice <= 0;
            grp <= 0;
            step <= 0;
            out_valid <= 1'b0;
        end else begin
            if (out_valid && out_ready) out_valid <= 1'b0;
            case (state)
                S_IDLE:
                    if (in_valid) begin
                        xin <= pad_inputs(in_vec);
{xsum_set}                        slice <= SLICES - 1;
                        grp <= 0;
                        state <= S_READ;
                    end
                S_READ: begin
                    step <= 0;
                    state <= S_CONV;
                end
                S_CONV:
                    if (step == STEPS - 1) begin
                        step <= 0;
                        if (grp == GROUPS - 1) begin
                            grp <= 0;
                            if (slice == 0) state <= S_FINAL;
                            else begin
                                slice <= slice - 1;
                                state <= S_READ;
                            end
                        end else begin
                            grp <= grp + 1;
                            state <= S_READ;
                        end
                    end else begin
                        step <= step + 1;
                    end
                default:  // S_FINAL: wait until the previous result is taken
                    if (!out_valid || out_ready) begin
                        out_vec <= y_all;
                        out_valid <= 1'b1;
                        state <= S_IDLE;
                    end
            endcase
        end
    end
endmodule
"""


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


def generate(
    spec: CrossbarSpec,
    w_bits: int,
    a_bits: int,
    path: str | Path,
    *,
    module: str = "cimdse_tile",
    k: int | None = None,
    n: int | None = None,
    check: bool = True,
    _broken_rounding: bool = False,
) -> TileParams:
    """Write the tile's Verilog to ``path`` (atomically) and lint it with pyverilog."""
    p = tile_params(spec, w_bits, a_bits, k, n)
    path = Path(path)
    write_text(render(p, module, _broken_rounding=_broken_rounding), path)
    if check:
        lint(path)
    return p
