"""Bit-exact functional model of an RRAM crossbar tile (design.md section 3).

A weight matrix ``w`` [K, N] of signed ``w_bits`` integers is *programmed* into cells
of ``cell_bits`` each (bit slicing, LSB first), per the spec's mapping; an input
matrix ``x`` [B, K] of ``a_bits`` integers is applied in slices of ``dac_bits``.
Every (input slice, weight slice, row group) gives integer column partial sums,
which pass through the ADC (shift, round half up, saturate) and are combined by
shift-and-add. With an ideal (or provably lossless) ADC the result is exactly
``x @ w``; that identity is what the tests check first.

ISAAC's flipped-column encoding (``encoding: flip``): in every row group, a column
whose cells sum to more than half their maximum ``n_g * (2^c - 1)`` is stored flipped,
``(2^c - 1) - cell``, so no column sum exceeds ``floor(A (2^c - 1) / 2)`` and the ADC
needs one bit less. A unit column (cells 1 on every used row) gives the group's sum of
inputs ``X``, and the flipped column's value is restored after the ADC as
``(2^c - 1) * ADC(X) - ADC(p')`` (:func:`restore_flipped`). The stored weights, and so
the lossless result, are unchanged.

Everything is vectorized over the batch, slices and groups: one batched GEMM per
call, in float32/float64 only where that is exact.

Two backends share one semantics: this module is the numpy reference, and
:mod:`cimdse.crossbar_torch` runs the same pipeline with torch kernels on CPU or CUDA,
bit for bit; it imports this module, never the reverse. What a mapping means is
stated once, here, and both backends read it: :func:`program` (weights -> cells, row signs, conductances),
:func:`_grouped_weights` (the signed cell matrix of each row group),
:func:`column_coefficients` (how a logical output's physical columns combine) and
:func:`digital_corrections` (what is subtracted digitally afterwards).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from cimdse.arch import CrossbarSpec, Nonideal
from cimdse.errors import CimdseError

Backend = Literal["numpy", "torch"]

__all__ = [
    "Backend",
    "CrossbarSpec",
    "Nonideal",
    "ProgrammedCrossbar",
    "adc_shift",
    "cells_per_weight",
    "column_coefficients",
    "digital_corrections",
    "input_slices",
    "mvm",
    "partial_sum_max",
    "program",
    "restore_flipped",
]

_F32_EXACT = 2**24
_F64_EXACT = 2**53
_MAX_ELEMENTS = 2**25  # partial-sum elements per chunk: bounds memory at a few hundred MB


# ---------------------------------------------------------------- closed forms
def polarities(spec: CrossbarSpec) -> int:
    """Column polarities (:attr:`CrossbarSpec.polarities`, owned by the spec)."""
    return spec.polarities


def cells_per_weight(spec: CrossbarSpec, w_bits: int) -> int:
    """Cells per weight per polarity (:meth:`CrossbarSpec.cells_per_weight`, owned by the spec)."""
    return spec.cells_per_weight(w_bits)


def input_slices(spec: CrossbarSpec, a_bits: int) -> int:
    """Crossbar operations per input vector: ceil(a / dac_bits)."""
    return math.ceil(a_bits / spec.dac_bits)


def physical_rows(spec: CrossbarSpec, k: int) -> int:
    return 2 * k if spec.mapping == "differential-row" else k


def physical_cols(spec: CrossbarSpec, n: int, w_bits: int) -> int:
    """Data columns of a layer (the cost model adds a reference column for offset)."""
    return n * polarities(spec) * cells_per_weight(spec, w_bits)


def partial_sum_max(spec: CrossbarSpec) -> int:
    """Largest magnitude one row group can produce at the ADC: A * (2^d - 1) * (2^c - 1);
    with the flip encoding (2^d - 1) * max(floor(A (2^c - 1) / 2), A), the unit column's A
    included."""
    a, xmax, m = spec.active_rows_or_all, 2**spec.dac_bits - 1, 2**spec.cell_bits - 1
    if spec.encoding == "flip":
        return xmax * max(a * m // 2, a)
    return a * xmax * m


def _restored_max(spec: CrossbarSpec) -> int:
    """Largest magnitude of a column value after the flip is undone: A * (2^d - 1) * (2^c - 1)."""
    return spec.active_rows_or_all * (2**spec.dac_bits - 1) * (2**spec.cell_bits - 1)


def signed_sums(spec: CrossbarSpec) -> bool:
    return spec.mapping == "differential-row"


def adc_shift(spec: CrossbarSpec) -> int | None:
    """Right shift applied before the ADC; None for an ideal ADC."""
    if spec.adc_bits is None:
        return None
    if isinstance(spec.adc_mode, int):
        return spec.adc_mode
    if spec.adc_mode == "clip":
        return 0
    extra = 1 if signed_sums(spec) else 0
    return max(0, partial_sum_max(spec).bit_length() + extra - spec.adc_bits)


def adc_code_range(spec: CrossbarSpec) -> tuple[int, int]:
    assert spec.adc_bits is not None
    if signed_sums(spec):
        return -(2 ** (spec.adc_bits - 1)), 2 ** (spec.adc_bits - 1) - 1
    return 0, 2**spec.adc_bits - 1


def adc_is_lossless(spec: CrossbarSpec) -> bool:
    """True when the ADC passes every possible partial sum unchanged."""
    s = adc_shift(spec)
    if s is None:
        return True
    lo, hi = adc_code_range(spec)
    pm = partial_sum_max(spec)
    return s == 0 and hi >= pm and (not signed_sums(spec) or lo <= -pm)


def adc(p: np.ndarray, spec: CrossbarSpec) -> np.ndarray:
    """The ADC of design.md section 3 on partial sums ``p``: the value passed on,
    ``clamp((p + h) >> s) << s`` with h = 2^(s-1) (round half up)."""
    s = adc_shift(spec)
    if s is None:
        return p
    code = np.array(p, dtype=np.float64)
    _adc_codes_inplace(code, s, adc_code_range(spec), exact_integers=False)
    return code * float(2**s)


def _adc_codes_inplace(p: np.ndarray, s: int, code_range: tuple[int, int], exact_integers: bool) -> None:
    """``clamp(floor(p / 2^s + 1/2))``: for integer p this is ``(p + 2^(s-1)) >> s``
    (and p itself when s = 0); real p (non-idealities) rounds to nearest."""
    if s > 0 or not exact_integers:
        p *= 1.0 / 2**s
        p += 0.5
        np.floor(p, out=p)
    np.clip(p, *code_range, out=p)


# ---------------------------------------------------------------- programming
def _check_range(name: str, arr: np.ndarray, lo: int, hi: int, bits: int) -> None:
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise CimdseError(f"{name} must lie in [{lo}, {hi}] for {bits} bits; got [{arr.min()}, {arr.max()}]")


def input_offset(
    shape: tuple[int, ...], k: int, a_bits: int, signed_inputs: bool, value_range: Callable[[], tuple[int, int]]
) -> int:
    """Check an input batch [B, K] against the layer, the same rule for every backend,
    and return what makes it unsigned: 2^(a-1) for signed (offset-encoded) inputs, else 0.
    ``value_range`` gives (min, max) of the batch; it is called only for a non-empty batch
    of the right shape, so a backend computes it once and only when needed."""
    if len(shape) != 2 or shape[1] != k:
        raise CimdseError(f"inputs must be [B, {k}], got shape {tuple(shape)}")
    if not 1 <= a_bits <= 16:
        raise CimdseError(f"a_bits must be in 1..16, got {a_bits}")
    half = 2 ** (a_bits - 1)
    lo, hi = (-half, half - 1) if signed_inputs else (0, 2**a_bits - 1)
    if shape[0]:
        vmin, vmax = value_range()
        if vmin < lo or vmax > hi:
            name = "signed inputs" if signed_inputs else "inputs"
            raise CimdseError(f"{name} must lie in [{lo}, {hi}] for {a_bits} bits; got [{vmin}, {vmax}]")
    return half if signed_inputs else 0


@dataclass(frozen=True)
class ProgrammedCrossbar:
    """A weight matrix programmed into cells: what the RTL is loaded with.

    ``cells`` holds integer cell values [polarities, n_w, physical rows, N] (what the
    weights mean); ``flip`` [row groups, polarities, n_w, N] marks the columns the flip
    encoding stores flipped (None without it); ``conductance`` the (possibly perturbed)
    real values of the stored cells the analog sum uses, or None when ideal.
    ``row_sign`` is +1/-1 per physical row (differential-row).
    """

    spec: CrossbarSpec
    w_bits: int
    cells: np.ndarray
    row_sign: np.ndarray
    conductance: np.ndarray | None
    weight_offset: int
    col_sums: np.ndarray  # sum over K of w, for the signed-input correction
    flip: np.ndarray | None = None

    @property
    def k(self) -> int:
        return self.cells.shape[2] // (2 if signed_sums(self.spec) else 1)

    @property
    def n(self) -> int:
        return self.cells.shape[3]

    @cached_property
    def stored_weights(self) -> np.ndarray:
        """The signed integer weights the cells hold [K, N], computed once per
        programming (the lossless path multiplies by it directly)."""
        return _stored_weights(self)

    @cached_property
    def stored_max(self) -> int:
        return int(np.abs(self.stored_weights).max(initial=0))

    def stored_cells(self) -> np.ndarray:
        """Cell values as stored [polarities, n_w, physical rows, N]: flipped columns flipped."""
        if self.flip is None:
            return self.cells
        return _apply_flip(self.cells, self.flip, self.spec)

    def physical_matrix(self, stored: bool = False) -> np.ndarray:
        """Cell values [physical rows, physical cols]; column (n * P + pol) * n_w + j
        holds slice j of polarity pol of output n; for differential-row, row 2k holds
        W+ and row 2k + 1 holds W- of logical row k. ``stored``: as the array holds
        them, flipped columns flipped (what a tile is programmed with)."""
        p, nw, kp, n = self.cells.shape
        cells = self.stored_cells() if stored else self.cells
        return cells.transpose(2, 3, 0, 1).reshape(kp, n * p * nw)

    def physical_flips(self) -> np.ndarray:
        """Flip bits [row groups, physical cols] in :meth:`physical_matrix`'s column
        order (all zero without the flip encoding)."""
        p, nw, kp, n = self.cells.shape
        if self.flip is None:
            return np.zeros((len(_group_index(self.spec, kp)), n * p * nw), dtype=bool)
        return self.flip.transpose(0, 3, 1, 2).reshape(self.flip.shape[0], n * p * nw)

    def crossbar_blocks(self) -> dict[tuple[int, int], np.ndarray]:
        """The physical matrix cut into rows x cols crossbars, zero-padded, keyed by
        (row block, column block)."""
        m = self.physical_matrix()
        r, c = self.spec.rows, self.spec.cols
        out = {}
        for bi in range(math.ceil(m.shape[0] / r)):
            for bj in range(math.ceil(m.shape[1] / c)):
                blk = np.zeros((r, c), dtype=np.int64)
                part = m[bi * r : (bi + 1) * r, bj * c : (bj + 1) * c]
                blk[: part.shape[0], : part.shape[1]] = part
                out[(bi, bj)] = blk
        return out


def program(w: Any, spec: CrossbarSpec, w_bits: int) -> ProgrammedCrossbar:
    """Slice signed integer weights ``w`` [K, N] into cells per the spec's mapping,
    applying the spec's seeded conductance variation and stuck-at faults
    (:func:`cimdse.crossbar_torch.program` holds the same on a torch device)."""
    w = _numpy(w)
    if w.ndim != 2:
        raise CimdseError(f"weights must be a 2-D [K, N] array, got shape {w.shape}")
    if not 1 <= w_bits <= 16:
        raise CimdseError(f"w_bits must be in 1..16, got {w_bits}")
    w = w.astype(np.int64)
    wmax = 2 ** (w_bits - 1) - 1
    _check_range("weights", w, -wmax, wmax, w_bits)
    c, nw = spec.cell_bits, cells_per_weight(spec, w_bits)
    mask = 2**c - 1
    shifts = (np.arange(nw) * c)[:, None, None]
    k, n = w.shape
    if spec.mapping == "differential-column":
        mags = np.stack([np.maximum(w, 0), np.maximum(-w, 0)])  # [2, K, N]
        cells = (mags[:, None] >> shifts) & mask  # [2, nw, K, N]
        row_sign = np.ones(k, dtype=np.int64)
        offset = 0
    elif spec.mapping == "differential-row":
        inter = np.empty((2 * k, n), dtype=np.int64)
        inter[0::2], inter[1::2] = np.maximum(w, 0), np.maximum(-w, 0)
        cells = ((inter[None] >> shifts) & mask)[None]  # [1, nw, 2K, N]
        row_sign = np.tile(np.array([1, -1], dtype=np.int64), k)
        offset = 0
    else:  # offset
        offset = 2 ** (w_bits - 1)
        cells = (((w + offset)[None] >> shifts) & mask)[None]
        row_sign = np.ones(k, dtype=np.int64)
    flip = _flip_mask(cells, spec) if spec.encoding == "flip" else None
    stored = cells if flip is None else _apply_flip(cells, flip, spec)
    conductance = _perturb(stored, spec.nonideal, mask) if spec.nonideal.any else None
    return ProgrammedCrossbar(spec, w_bits, cells, row_sign, conductance, offset, w.sum(axis=0), flip)


def _row_groups(spec: CrossbarSpec, kp: int) -> np.ndarray:
    """The row group [kp] of every physical row."""
    out = np.empty(kp, dtype=np.int64)
    for gi, rows in enumerate(_group_index(spec, kp)):
        out[rows[rows < kp]] = gi
    return out


def _flip_mask(cells: np.ndarray, spec: CrossbarSpec) -> np.ndarray:
    """[G, P, n_w, N]: a column of a row group is flipped when its cells sum to more than half
    their maximum, so that the stored sum is at most floor(n_g (2^c - 1) / 2)."""
    m = 2**spec.cell_bits - 1
    group = _row_groups(spec, cells.shape[2])
    n_groups = int(group.max()) + 1 if group.size else 0
    sums = np.zeros((n_groups, *cells.shape[:2], cells.shape[3]), dtype=np.int64)
    np.add.at(sums, group, cells.transpose(2, 0, 1, 3))
    rows = np.bincount(group, minlength=n_groups)[:, None, None, None]
    return 2 * sums > rows * m


def _apply_flip(cells: np.ndarray, flip: np.ndarray, spec: CrossbarSpec) -> np.ndarray:
    """Cells with the flipped columns of each row group stored as (2^c - 1) - cell."""
    m = 2**spec.cell_bits - 1
    per_row = flip[_row_groups(spec, cells.shape[2])].transpose(1, 2, 0, 3)  # [P, n_w, Kp, N]
    return np.where(per_row, m - cells, cells)


def restore_flipped(codes: np.ndarray, unit: np.ndarray, flip: np.ndarray, cell_bits: int) -> np.ndarray:
    """Undo the flip encoding after the ADC: a flipped column's value is ``(2^c - 1) * unit - code``.

    ``codes`` [G, ..., columns], ``unit`` [G, ..., 1] (the unit column's codes) and ``flip``
    [G, 1, ..., columns] as 0/1 broadcast together; only ``+``, ``-`` and ``*`` are used, so
    numpy and torch arrays both work."""
    return codes + flip * ((2**cell_bits - 1) * unit - 2 * codes)


def _numpy(a: Any) -> np.ndarray:
    """A numpy view of an array or (CPU or CUDA) tensor."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def column_coefficients(xb: ProgrammedCrossbar) -> np.ndarray:
    """Signed shift-and-add weight of each physical column of one output, int64
    [P * n_w] in column order (polarity, weight slice): +-2^(j * c)."""
    p, nw = xb.cells.shape[:2]
    return ((2 ** (np.arange(nw, dtype=np.int64) * xb.spec.cell_bits))[None, :] * np.array([1, -1])[:p, None]).ravel()


def digital_corrections(xb: ProgrammedCrossbar, a_bits: int, signed_inputs: bool) -> tuple[int, np.ndarray | None]:
    """What is subtracted digitally from the shift-added result, per mapping and input
    encoding: ``y -= per_input_sum * sum_k(x_enc[., k]) + per_column[n]``, with
    ``x_enc`` the (offset-encoded) inputs the crossbar saw. The weight offset of the
    offset mapping multiplies the input sums; offset-encoded signed inputs add
    ``2^(a-1) * sum_k w[k, n]`` per column."""
    per_column = (2 ** (a_bits - 1)) * xb.col_sums if signed_inputs else None
    return xb.weight_offset, per_column


def batch_chunk(groups: int, cols: int, slices: int) -> int:
    """Input vectors per chunk of the sliced pipeline (bounds its partial-sum memory;
    read noise is drawn per chunk, so both backends chunk alike)."""
    return max(1, _MAX_ELEMENTS // (groups * cols * slices))


def read_noise_rng(spec: CrossbarSpec, read_seed: int | None) -> np.random.Generator:
    """The generator of one call's read noise (both backends draw from it)."""
    return np.random.default_rng(spec.nonideal.seed + 1 if read_seed is None else read_seed)


def _perturb(cells: np.ndarray, ni: Nonideal, mask: int) -> np.ndarray:
    """Conductance variation and stuck-at faults, fixed per programmed crossbar."""
    rng = np.random.default_rng(ni.seed)
    g = cells.astype(np.float64)
    if ni.conductance_sigma:
        g *= 1.0 + ni.conductance_sigma * rng.standard_normal(g.shape)
    if ni.stuck_on_rate or ni.stuck_off_rate:
        u = rng.random(g.shape)
        g[u < ni.stuck_off_rate] = 0.0
        g[(u >= ni.stuck_off_rate) & (u < ni.stuck_off_rate + ni.stuck_on_rate)] = float(mask)
    return g


# ---------------------------------------------------------------- execution
def _group_index(spec: CrossbarSpec, kp: int) -> np.ndarray:
    """[G, A] physical-row indices of each row group; ``kp`` marks padding."""
    r, a = spec.rows, spec.active_rows_or_all
    groups = []
    for b0 in range(0, kp, r):
        b1 = min(b0 + r, kp)
        groups += [np.arange(g0, min(g0 + a, b1)) for g0 in range(b0, b1, a)]
    idx = np.full((len(groups), min(a, kp)), kp, dtype=np.int64)
    for gi, rows in enumerate(groups):
        idx[gi, : len(rows)] = rows
    return idx


def _float_type(bound: float) -> type[np.floating]:
    """The narrowest float type in which integers up to ``bound`` are exact."""
    if bound < _F32_EXACT:
        return np.float32
    if bound < _F64_EXACT:
        return np.float64
    raise CimdseError(f"values up to {bound:.3g} exceed exact float64 range; use fewer bits or rows")


def _stored_weights(xb: ProgrammedCrossbar) -> np.ndarray:
    """The signed integer weight each logical row/column pair really holds."""
    p, nw, kp, n = xb.cells.shape
    scale = 2 ** (np.arange(nw) * xb.spec.cell_bits)
    stored = np.einsum("pjkn,j->pkn", xb.cells, scale)
    stored = stored[0] - stored[1] if p == 2 else stored[0] * xb.row_sign[:, None]
    return stored[0::2] + stored[1::2] if signed_sums(xb.spec) else stored


def _grouped_weights(xb: ProgrammedCrossbar, dtype: type[np.floating]) -> tuple[np.ndarray, np.ndarray | None]:
    """Signed cell matrix per row group [G, A, P*nw*N] (plus the unit column last with the
    flip encoding), and the gather index of the groups (None when the groups simply tile
    the rows in order)."""
    p, nw, kp, n = xb.cells.shape
    idx = _group_index(xb.spec, kp)
    mat = xb.stored_cells() if xb.conductance is None else xb.conductance
    mat = mat.transpose(2, 0, 1, 3).reshape(kp, p * nw * n) * xb.row_sign[:, None]
    if xb.flip is not None:
        mat = np.concatenate([mat, np.ones((kp, 1), dtype=mat.dtype)], axis=1)
    mat = mat.astype(dtype)
    if idx.size == kp and np.array_equal(idx.ravel(), np.arange(kp)):
        return mat.reshape(idx.shape[0], idx.shape[1], -1), None
    mat = np.concatenate([mat, np.zeros((1, mat.shape[1]), dtype=dtype)], axis=0)
    return mat[idx], idx


def mvm(
    x: Any,
    w: Any,
    spec: CrossbarSpec | None = None,
    *,
    w_bits: int = 8,
    a_bits: int = 8,
    signed_inputs: bool = False,
    read_seed: int | None = None,
    fast_path: bool = True,
) -> np.ndarray:
    """Matrix-vector products ``x @ w`` as the crossbar computes them.

    ``x`` is int [B, K] (unsigned ``a_bits``, or signed with ``signed_inputs``);
    ``w`` is int [K, N] signed ``w_bits``, or a crossbar already programmed with
    :func:`program` (then ``spec`` and ``w_bits`` come from it). Returns int64
    [B, N]. ``fast_path=False`` runs the sliced pipeline even when the ADC is
    lossless (for verification); the result is the same.
    :func:`cimdse.crossbar_torch.mvm` gives the same with torch kernels.
    """
    if isinstance(w, ProgrammedCrossbar):
        xb = w
    elif spec is None:
        raise CimdseError("mvm needs a spec to program raw weights")
    else:
        xb = program(w, spec, w_bits)
    x = _numpy(x)
    squeeze = x.ndim == 1
    x = np.atleast_2d(x)
    offset = input_offset(x.shape, xb.k, a_bits, signed_inputs, lambda: (int(x.min()), int(x.max())))
    if offset:
        x = x.astype(np.int64) + offset
    if fast_path and xb.conductance is None and adc_is_lossless(xb.spec):
        y = _lossless_mvm(x, xb, a_bits)
    else:
        y = _sliced_mvm(x, xb, a_bits, read_seed)
    per_input_sum, per_column = digital_corrections(xb, a_bits, signed_inputs)
    if per_input_sum:
        y -= per_input_sum * x.sum(axis=1, keepdims=True, dtype=np.int64)
    if per_column is not None:
        y -= per_column[None, :]
    return y[0] if squeeze else y


def _lossless_mvm(x: np.ndarray, xb: ProgrammedCrossbar, a_bits: int) -> np.ndarray:
    """Lossless ADC: the shift-and-add of exact partial sums is the integer product."""
    dtype = _float_type(x.shape[1] * (2**a_bits - 1) * float(xb.stored_max))
    return (x.astype(dtype) @ xb.stored_weights.astype(dtype, copy=False)).astype(np.int64)  # exact: integral


def _sliced_mvm(x: np.ndarray, xb: ProgrammedCrossbar, a_bits: int, read_seed: int | None) -> np.ndarray:
    """Every (row group, input slice, weight slice, polarity) partial sum through the
    ADC, then shift-and-add; one batched GEMM per chunk of the batch."""
    spec = xb.spec
    nx = input_slices(spec, a_bits)
    p, nw, kp, n = xb.cells.shape
    ideal = xb.conductance is None
    dtype = np.float32 if ideal and partial_sum_max(spec) < _F32_EXACT else np.float64
    wg, idx = _grouped_weights(xb, dtype)
    g = wg.shape[0]
    chunk = batch_chunk(g, wg.shape[2], nx)
    rng = read_noise_rng(spec, read_seed)
    parts = [_sliced_chunk(x[i : i + chunk], xb, wg, idx, nx, dtype, rng) for i in range(0, len(x), chunk)]
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _sliced_chunk(
    x: np.ndarray,
    xb: ProgrammedCrossbar,
    wg: np.ndarray,
    idx: np.ndarray | None,
    nx: int,
    dtype: type[np.floating],
    rng: np.random.Generator,
) -> np.ndarray:
    spec = xb.spec
    d, c = spec.dac_bits, spec.cell_bits
    p, nw, kp, n = xb.cells.shape
    g, a, _ = wg.shape
    b = x.shape[0]
    # Input slices on physical rows (duplicated for differential-row): [nx, B, Kp].
    small = x.astype(np.uint16)  # inputs are range-checked to at most 16 bits
    xs = ((small[None] >> (np.arange(nx, dtype=np.uint16)[:, None, None] * d)) & (2**d - 1)).astype(dtype)
    if signed_sums(spec):
        xs = np.repeat(xs, 2, axis=2)
    if idx is None:  # groups tile the rows in order: a view, no gather
        xg = xs.reshape(nx * b, g, a).transpose(1, 0, 2)
    else:
        xs = np.concatenate([xs, np.zeros((nx, b, 1), dtype=dtype)], axis=2)
        xg = xs.reshape(nx * b, kp + 1)[:, idx].transpose(1, 0, 2)
    psum = np.matmul(xg, wg)  # [G, nx*B, P*nw*N]
    if xb.conductance is not None:
        if spec.nonideal.read_noise_sigma:
            var = np.matmul(xg**2, wg**2)
            psum += spec.nonideal.read_noise_sigma * np.sqrt(var) * rng.standard_normal(psum.shape)
        if spec.adc_bits is not None and not signed_sums(spec):
            np.maximum(psum, 0.0, out=psum)  # a column current cannot be negative
    s = adc_shift(spec)
    if s is not None:  # ADC codes in place; the 2^s goes into the shift-and-add coefficients
        _adc_codes_inplace(psum, s, adc_code_range(spec), exact_integers=xb.conductance is None)
    lo, hi = adc_code_range(spec) if s is not None else (-partial_sum_max(spec), partial_sum_max(spec))
    if xb.flip is not None:
        flip = xb.flip.reshape(g, 1, p * nw * n).astype(psum.dtype)
        psum = restore_flipped(psum[..., :-1], psum[..., -1:], flip, spec.cell_bits)
        hi = max(hi, _restored_max(spec))
    codes = psum.reshape(g, nx, b, p * nw, n)
    if max(-lo, hi) * 2.0 ** (nw * c + 1) >= _F32_EXACT:
        codes = codes.astype(np.float64)
    # Shift-and-add over weight slices and polarities (exact in ``dtype``), then over
    # groups and input slices in float64.
    coef = column_coefficients(xb).astype(np.float64)
    acc = codes[:, :, :, 0, :] * coef.flat[0]
    for q in range(1, p * nw):
        acc += codes[:, :, :, q, :] * coef.flat[q]
    scale = 2.0 ** (np.arange(nx) * d + (s or 0))
    y = np.einsum("gibn,i->bn", acc.astype(np.float64), scale)
    return np.rint(y).astype(np.int64)
