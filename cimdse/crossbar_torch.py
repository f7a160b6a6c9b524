"""Torch backend of the crossbar model: the numpy reference's semantics
(:mod:`cimdse.crossbar`, design.md section 3), bit for bit, on CPU or CUDA.

Programming is shared, not re-implemented: :func:`cimdse.crossbar.program` slices the
weights into cells and applies the seeded variation; :class:`TorchCrossbar` moves its
signed cell matrix per row group (``crossbar._grouped_weights``), the shift-and-add
column coefficients (``crossbar.column_coefficients``) and the digital corrections
(``crossbar.digital_corrections``) to a device, once. A call then runs

    p[g, i, b, col] = sum over rows r of group g of  xs_i[b, r] * cell[r, col]      (GEMM)
    code            = clamp((p + h) >> s, lo, hi)                                     (ADC)
    y[b, n]         = sum over g, i, q of  2^(i d + s) * coef_q * code[g, i, b, q, n]
                      - corrections

with ``xs_i`` the i-th ``dac_bits`` slice of the inputs and ``q`` the (polarity,
weight slice) columns of output n. Kernels, each used only where its exactness bound
holds (checked per crossbar, not assumed):

- ``int8``: ``torch._int_mm`` (int32 accumulation) when input slices and cells fit
  int8 (``2^d - 1 <= 127``, ``2^c - 1 <= 127``); exact since ``|p| <= P_max < 2^31``.
  On CPU with AVX-512 VNNI it is ~4x faster than a float32 GEMM of the same shape;
  on CUDA the operands are zero-padded to its shape rules (M > 16, K and N multiples
  of 8), which does not change a sum.
- ``float32`` GEMM when ``P_max < 2^24``, else ``float64``.
- ideal cells: the inputs are sliced once per call (batch-major, so chunks of the
  batch are views); each chunk's partial sums of all row groups go into one tensor;
  with the int8 kernel the ADC's rounding offset ``h`` is part of the GEMM (one more
  input fixed at 1 and one more cell row holding ``h`` per group), so the ADC is one
  in-place shift, and saturation is skipped where no sum can reach it (a full-range
  ADC); the shift-and-add then runs over groups, input slices and columns in int32
  (int64 where int32 could overflow). Exact integers throughout, so any order is.
- non-idealities: float64 GEMMs as in numpy; read noise is drawn from the same numpy
  generator per chunk (:func:`cimdse.crossbar.read_noise_rng`, same chunking), the
  same float operations follow in the same order. The analog sums are real there;
  codes can differ only when a sum lies within float64 rounding of a code boundary
  (BLAS summation order), which seeded tests do not meet.

A lossless ADC (and ideal cells) takes the fast path, as in numpy: one int8 GEMM of
the centred operands (on CPU, 8-bit inputs enter it as uint8, uncentred),

    x @ W = (x - c_x) @ (W - c_w) + c_w * sum_k x + c_x * sum_k W - K c_x c_w,

exact while ``K * 128 * 128 < 2^31``; else float32/float64 by numpy's bound.

ISAAC's flip encoding rides on the same shared pieces: the unit column is one more
column of the GEMM, and the flipped columns are restored after the ADC with
:func:`cimdse.crossbar.restore_flipped`, the numpy model's own function.

Mappings: every mapping that :mod:`cimdse.crossbar` expresses through the shared
pieces above runs here; :data:`MAPPINGS` lists those verified bit for bit (the
property tests run each), and any other raises instead of silently differing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cimdse import crossbar as cb
from cimdse.errors import CimdseError

__all__ = ["MAPPINGS", "TorchCrossbar", "mvm"]

MAPPINGS = frozenset({"differential-column", "differential-row", "offset"})

CHUNK_ELEMENTS = 2**21  # partial sums per chunk (all groups): the ADC passes stay in cache
_I32 = 2**31
_F32 = 2**24
_F64 = 2**53
_INT8_MAX = 127


def _device(device: Any) -> torch.device:
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, ValueError):
        raise CimdseError(f"device {device!r}: expected cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CimdseError("device cuda: no CUDA device is available here (use cpu)")
    return dev


def int_mm(a: torch.Tensor, b: torch.Tensor, pad: bool | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` of int8 matrices with int32 accumulation (into ``out`` when given).
    ``pad`` (default: on CUDA) zero-pads to cuBLASLt's shape rules (rows > 16, inner
    and column counts multiples of 8); zeros add nothing to any sum, so the result is
    the same."""
    if pad is None:
        pad = a.is_cuda
    if not pad:
        return torch._int_mm(a, b) if out is None else torch._int_mm(a, b, out=out)
    m, k = a.shape
    n = b.shape[1]
    mp, kp, np_ = max(24, -(-m // 8) * 8), -(-k // 8) * 8, -(-n // 8) * 8
    ap = torch.zeros((mp, kp), dtype=torch.int8, device=a.device)
    ap[:m, :k] = a
    bp = torch.zeros((kp, np_), dtype=torch.int8, device=b.device)
    bp[:k, :n] = b
    res = torch._int_mm(ap, bp)[:m, :n]
    return res if out is None else out.copy_(res)


def uint8_inputs(device: torch.device) -> bool:
    """Whether ``torch._int_mm`` takes uint8 left operands on ``device`` (CPU: yes)."""
    return device.type == "cpu"


class TorchCrossbar:
    """A programmed crossbar (:class:`cimdse.crossbar.ProgrammedCrossbar`, the shared
    programming) held on a torch device in the operand types its kernels need."""

    def __init__(self, programmed: cb.ProgrammedCrossbar, device: Any = None) -> None:
        spec = programmed.spec
        if spec.mapping not in MAPPINGS:
            raise CimdseError(
                f"mapping {spec.mapping!r} is not supported by the torch crossbar backend "
                f"(supported: {', '.join(sorted(MAPPINGS))}); use backend='numpy'"
            )
        self.programmed = programmed
        self.device = _device(device)
        d, c = spec.dac_bits, spec.cell_bits
        pmax = cb.partial_sum_max(spec)
        ideal = programmed.conductance is None
        if not ideal:
            self.kernel = "float64"
        elif 2**d - 1 <= _INT8_MAX and 2**c - 1 <= _INT8_MAX and pmax < _I32:
            self.kernel = "int8"
        else:
            self.kernel = "float32" if pmax < _F32 else "float64"
        wg, idx = cb._grouped_weights(programmed, np.float64 if not ideal else np.int64)
        self.weights = torch.from_numpy(np.ascontiguousarray(wg)).to(self.device, self._dtype(self.kernel))
        # Row groups as column ranges of the input slices: in order, possibly after zero
        # padding at the end (a short last group), else gathered by index.
        kp = programmed.cells.shape[2]
        flat = None if idx is None else idx.ravel()
        self.pad = 0
        self.index = None
        if flat is not None and np.array_equal(flat[:kp], np.arange(kp)) and np.all(flat[kp:] == kp):
            self.pad = flat.size - kp
        elif flat is not None:
            self.index = torch.from_numpy(idx).to(self.device)
        self.coef = [int(v) for v in cb.column_coefficients(programmed)]
        # the flip encoding's columns per row group [G, 1, data columns]; the unit column is the last
        self.flip = (
            None
            if programmed.flip is None
            else torch.from_numpy(programmed.flip.reshape(programmed.flip.shape[0], 1, -1).astype(np.int32)).to(
                self.device
            )
        )
        self._lossless: tuple | None = None
        # The ADC's rounding offset h = 2^(s-1) folded into the int8 GEMM: each row group
        # gets one more input fixed at 1 and one more cell row holding h, so the GEMM
        # returns p + h and the ADC is one shift. (Groups in order only; h <= 127.)
        s = cb.adc_shift(spec)
        self.round_row = self.kernel == "int8" and self.index is None and s is not None and 0 < s <= 7
        if self.round_row:
            g, _, cols = self.weights.shape
            h = torch.full((g, 1, cols), 2 ** (s - 1), dtype=torch.int8, device=self.device)
            self.weights = torch.cat([self.weights, h], dim=1)
        # Saturation is skipped where no partial sum can reach it (a full-range ADC).
        self.saturates = True
        if s is not None:
            lo, hi = cb.adc_code_range(spec)
            h = 2 ** (s - 1) if s else 0
            low = 0 if not cb.signed_sums(spec) else (-pmax + h) >> s
            self.saturates = ideal is False or (pmax + h) >> s > hi or low < lo

    # ------------------------------------------------------------ description
    @property
    def spec(self) -> cb.CrossbarSpec:
        return self.programmed.spec

    @property
    def w_bits(self) -> int:
        return self.programmed.w_bits

    @property
    def k(self) -> int:
        return self.programmed.k

    @property
    def n(self) -> int:
        return self.programmed.n

    @property
    def cells(self) -> np.ndarray:
        return self.programmed.cells

    @property
    def conductance(self) -> np.ndarray | None:
        return self.programmed.conductance

    def on(self, device: Any) -> bool:
        dev = _device(device)
        return dev.type == self.device.type and (dev.index is None or dev.index == self.device.index)

    def physical_matrix(self) -> np.ndarray:
        return self.programmed.physical_matrix()

    @staticmethod
    def _dtype(kernel: str) -> torch.dtype:
        return {"int8": torch.int8, "float32": torch.float32, "float64": torch.float64}[kernel]

    def lossless_operands(self, a_bits: int) -> tuple:
        """(kernel, centred stored weights, c_x, c_w, sum_k W) for the lossless path."""
        if self._lossless is not None and self._lossless[0] == a_bits:
            return self._lossless[1]
        stored = self.programmed.stored_weights
        k = stored.shape[0]
        smax = self.programmed.stored_max
        bound = k * (2**a_bits - 1) * float(smax)
        cb._float_type(bound)  # the numpy reference's range check, same message
        # CPU: unsigned 8-bit inputs go to _int_mm as uint8 as they are; CUDA takes int8 only.
        cx = 0 if a_bits <= 7 or (a_bits == 8 and uint8_inputs(self.device)) else 128
        lo, hi = (int(stored.min()), int(stored.max())) if stored.size else (0, 0)
        cw = 0 if lo >= -_INT8_MAX and hi <= _INT8_MAX else 128 if lo >= 0 and hi <= 255 else None
        if a_bits <= 8 and cw is not None and k * 128 * 128 < _I32:
            w = torch.from_numpy(stored - cw).to(self.device, torch.int8)
            ops = ("int8", w, cx, cw, torch.from_numpy(stored.sum(axis=0)).to(self.device))
        else:
            kernel = "float32" if bound < _F32 else "float64"
            ops = (kernel, torch.from_numpy(stored).to(self.device, self._dtype(kernel)), 0, 0, None)
        self._lossless = (a_bits, ops)
        return ops


# ---------------------------------------------------------------- execution
def _as_tensor(x: Any, device: torch.device) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise CimdseError(f"inputs must be an integer array, got {t.dtype}")
    return t.to(device, torch.int64)


def _value_range(x: torch.Tensor) -> tuple[int, int]:
    xmin, xmax = torch.aminmax(x)
    return int(xmin), int(xmax)


def mvm(
    x: Any,
    xt: TorchCrossbar,
    *,
    a_bits: int = 8,
    signed_inputs: bool = False,
    read_seed: int | None = None,
    fast_path: bool = True,
) -> Any:
    """:func:`cimdse.crossbar.mvm` on a :class:`TorchCrossbar`: int64 [B, N], a tensor
    on the crossbar's device for a tensor ``x``, else a numpy array."""
    numpy_out = not isinstance(x, torch.Tensor)
    x = _as_tensor(x, xt.device)
    squeeze = x.dim() == 1
    if squeeze:
        x = x.unsqueeze(0)
    offset = cb.input_offset(tuple(x.shape), xt.k, a_bits, signed_inputs, lambda: _value_range(x))
    if offset:
        x = x + offset
    xb = xt.programmed
    if fast_path and xb.conductance is None and cb.adc_is_lossless(xb.spec):
        y = _lossless(x, xt, a_bits)
    else:
        y = _sliced(x, xt, a_bits, read_seed)
    per_input_sum, per_column = cb.digital_corrections(xb, a_bits, signed_inputs)
    if per_input_sum:
        y -= per_input_sum * x.sum(dim=1, keepdim=True)
    if per_column is not None:
        y -= torch.from_numpy(per_column).to(y.device)[None, :]
    y = y[0] if squeeze else y
    return y.cpu().numpy() if numpy_out else y


def _lossless(x: torch.Tensor, xt: TorchCrossbar, a_bits: int) -> torch.Tensor:
    kernel, w, cx, cw, colsum = xt.lossless_operands(a_bits)
    if kernel != "int8":
        dt = TorchCrossbar._dtype(kernel)
        return (x.to(dt) @ w).to(torch.int64)  # exact: integral sums below the type's bound
    a = x.to(torch.uint8) if cx == 0 and a_bits == 8 else (x - cx).to(torch.int8)
    y = int_mm(a, w).to(torch.int64)
    if cx:
        y += cx * colsum[None, :]
    if cw:
        y += cw * x.sum(dim=1, keepdim=True) - cx * cw * x.shape[1]
    return y


def _input_slices(x: torch.Tensor, xt: TorchCrossbar, shifts: torch.Tensor) -> torch.Tensor:
    """Input slices, LSB first, on physical rows (each input on both rows of its pair
    for differential-row), in the GEMM's operand type, batch-major: [B, nx, G, A (+1)]
    for row groups in order (a short last group zero-padded; with the rounding row, a
    last input whose every slice is 1), else [B, nx, physical rows + 1] (a zero row
    for the gather). The layout is made on the inputs, then sliced in one pass."""
    d, nx = xt.spec.dac_bits, shifts.shape[0]
    small = x.to(shifts.dtype)  # x is range-checked to a_bits: uint8 up to 8 bits, else int32
    if cb.signed_sums(xt.spec):
        small = small.repeat_interleave(2, dim=1)
    pad = torch.nn.functional.pad
    if xt.index is not None:
        small = pad(small, (0, 1))
    else:
        small = pad(small, (0, xt.pad)).view(x.shape[0], xt.weights.shape[0], -1)
        if xt.round_row:  # sum_i 2^(i d) < 2^a: every d-bit slice of it is 1
            small = pad(small, (0, 1), value=sum(2 ** (i * d) for i in range(nx)))
    xs = small.unsqueeze(1) >> shifts.view(1, nx, *([1] * (small.dim() - 1)))
    xs &= 2**d - 1
    # int8 kernel: slices are at most 127, so the uint8 bytes are the int8 values.
    return xs.view(torch.int8) if xt.kernel == "int8" and xs.dtype == torch.uint8 else xs.to(xt.weights.dtype)


@dataclass(frozen=True)
class _Plan:
    """What one call's chunks share."""

    nx: int
    s: int | None
    code_range: tuple[int, int]
    scale: list[int]  # 2^(i d + s) per input slice
    acc_dtype: torch.dtype  # of the integer shift-and-add (int32 while exact)


def _sliced(x: torch.Tensor, xt: TorchCrossbar, a_bits: int, read_seed: int | None) -> torch.Tensor:
    spec = xt.spec
    nx = cb.input_slices(spec, a_bits)
    g, _, cols = xt.weights.shape
    s = cb.adc_shift(spec)
    scale = [2 ** (i * spec.dac_bits + (s or 0)) for i in range(nx)]
    code_bound = cb.partial_sum_max(spec) if s is None else max(abs(v) for v in cb.adc_code_range(spec))
    if xt.flip is not None:
        code_bound *= 2**spec.cell_bits - 1  # a restored flipped column: (2^c - 1) * unit - code
    bound = g * code_bound * sum(abs(c) for c in xt.coef) * sum(scale)
    plan = _Plan(
        nx=nx,
        s=s,
        code_range=cb.adc_code_range(spec) if s is not None else (0, 0),
        scale=scale,
        acc_dtype=torch.int32 if bound < _I32 else torch.int64,
    )
    shifts = (torch.arange(nx, device=xt.device) * spec.dac_bits).to(torch.uint8 if a_bits <= 8 else torch.int32)
    if xt.programmed.conductance is None:
        xs = _input_slices(x, xt, shifts)  # once: chunks are views of it
        chunk = max(1, CHUNK_ELEMENTS // (g * cols * nx))
        parts = [_ideal_chunk(xs[i : i + chunk], xt, plan) for i in range(0, x.shape[0], chunk)]
    else:
        rng = cb.read_noise_rng(spec, read_seed) if spec.nonideal.read_noise_sigma else None
        chunk = cb.batch_chunk(g, cols, nx)  # numpy's chunks: read noise is drawn per chunk
        parts = [_real_chunk(x[i : i + chunk], xt, plan, shifts, rng) for i in range(0, x.shape[0], chunk)]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _gemm(xg: torch.Tensor, w: torch.Tensor, kernel: str, out: torch.Tensor | None = None) -> torch.Tensor:
    if kernel == "int8":
        return int_mm(xg, w, out=out)
    return torch.matmul(xg, w) if out is None else torch.matmul(xg, w, out=out)


def _ideal_chunk(xs: torch.Tensor, xt: TorchCrossbar, plan: _Plan) -> torch.Tensor:
    """Ideal cells: integer partial sums of every group in one tensor [G, B*nx, cols]
    (rows batch-major), one ADC pass, then the shift-and-add over groups, input slices
    (contiguous) and columns; all exact integers, so the order is free."""
    g, _, cols = xt.weights.shape
    b, nx, n, q = xs.shape[0], plan.nx, xt.n, len(xt.coef)
    rows = xs.reshape(b * nx, *xs.shape[2:])  # a view: xs is a batch slice of a contiguous tensor
    dtype = torch.int32 if xt.kernel == "int8" else xt.weights.dtype
    p = torch.empty((g, b * nx, cols), dtype=dtype, device=xt.device)
    for gi in range(g):
        xg = rows[:, gi, :] if xt.index is None else rows.index_select(1, xt.index[gi])
        _gemm(xg, xt.weights[gi], xt.kernel, out=p[gi])
    if plan.s is not None:
        _adc_codes_(p, plan.s, plan.code_range, True, xt.round_row, xt.saturates)
    if p.dtype != plan.acc_dtype:
        p = p.to(plan.acc_dtype)  # integer-valued; exact
    if xt.flip is not None:
        p = cb.restore_flipped(p[..., :-1], p[..., -1:], xt.flip.to(p.dtype), xt.spec.cell_bits)
    codes = (p[0] if g == 1 else p.sum(0, dtype=plan.acc_dtype)).view(b, nx, q * n)
    t = codes[:, 0, :] * plan.scale[0]
    for i in range(1, nx):
        t.add_(codes[:, i, :], alpha=plan.scale[i])
    t = t.view(b, q, n)
    y = t[:, 0, :] * xt.coef[0]
    for qi in range(1, q):
        y.add_(t[:, qi, :], alpha=xt.coef[qi])
    return y.to(torch.int64)


def _real_chunk(
    x: torch.Tensor, xt: TorchCrossbar, plan: _Plan, shifts: torch.Tensor, rng: np.random.Generator | None
) -> torch.Tensor:
    """Non-ideal cells, as numpy's ``_sliced_chunk`` does it: float64 partial sums per
    group with rows (input slice, vector), read noise from the same draws, the ADC on
    real sums, and (without an ADC) numpy's order of the real shift-and-add."""
    spec = xt.spec
    g, _, cols = xt.weights.shape
    b, nx, n, q, s = x.shape[0], plan.nx, xt.n, len(xt.coef), plan.s
    xs = _input_slices(x, xt, shifts).transpose(0, 1)
    xs = xs.reshape(nx * b, *xs.shape[2:])
    noise = None
    if rng is not None:  # one draw per chunk, shaped as numpy's [G, nx*B, cols]
        noise = torch.from_numpy(rng.standard_normal((g, nx * b, cols))).to(xt.device)
    integer = s is not None
    y = torch.zeros((b, n), dtype=plan.acc_dtype if integer else torch.float64, device=xt.device)
    for gi in range(g):
        xg = xs[:, gi, :] if xt.index is None else xs.index_select(1, xt.index[gi])
        wg = xt.weights[gi]
        p = xg @ wg
        if noise is not None:
            var = (xg * xg) @ (wg * wg)
            p += spec.nonideal.read_noise_sigma * torch.sqrt(var) * noise[gi]
        if s is not None and not cb.signed_sums(spec):
            p.clamp_(min=0.0)  # a column current cannot be negative
        if integer:
            _adc_codes_(p, s, plan.code_range, False, False, True)
        if xt.flip is not None:
            p = cb.restore_flipped(p[:, :-1], p[:, -1:], xt.flip[gi].to(p.dtype), spec.cell_bits)
        if integer:  # ADC codes: integers, exact in any order
            codes = p.to(plan.acc_dtype).view(nx, b, q * n)
            t = codes[0] * plan.scale[0]
            for i in range(1, nx):
                t.add_(codes[i], alpha=plan.scale[i])
            t = t.view(b, q, n)
            for qi in range(q):
                y.add_(t[:, qi, :], alpha=xt.coef[qi])
        else:  # real sums: numpy's order, columns first
            codes = p.view(nx, b, q, n)
            t = codes[:, :, 0, :] * xt.coef[0]
            for qi in range(1, q):
                t.add_(codes[:, :, qi, :], alpha=xt.coef[qi])
            for i in range(nx):
                y.add_(t[i], alpha=plan.scale[i])
    return y.to(torch.int64) if integer else torch.round(y).to(torch.int64)


def _adc_codes_(
    p: torch.Tensor, s: int, code_range: tuple[int, int], exact_integers: bool, rounded: bool, saturates: bool
) -> None:
    """In place, as :func:`cimdse.crossbar._adc_codes_inplace`: ``(p + 2^(s-1)) >> s``
    for integer sums (``rounded``: the GEMM added 2^(s-1) already), ``floor(p / 2^s +
    1/2)`` for real ones, then saturate (where it can happen)."""
    lo, hi = code_range
    if p.is_floating_point():
        if s > 0 or not exact_integers:
            p.mul_(1.0 / 2**s).add_(0.5).floor_()
        p.clamp_(lo, hi)
        return
    if s > 0:
        if not rounded:
            p.add_(2 ** (s - 1))
        p.bitwise_right_shift_(s)
    if not saturates:
        return
    if lo == 0:
        p.clamp_max_(hi)  # integer sums of unsigned mappings are never negative
    else:
        p.clamp_(lo, hi)
