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
- non-idealities: float64 GEMMs as in numpy; read noise is drawn from the same numpy
  generator per chunk (:func:`cimdse.crossbar.read_noise_rng`, same chunking), the
  same float operations follow in the same order. The analog sums are real there;
  codes can differ only when a sum lies within float64 rounding of a code boundary
  (BLAS summation order), which seeded tests do not meet.

A lossless ADC (and ideal cells) takes the fast path, as in numpy: one int8 GEMM of
the centred operands, ``x @ W = (x - c_x) @ (W - c_w) + c_w * sum_k x + c_x * sum_k W
- K c_x c_w``, exact while ``K * 128 * 128 < 2^31``; else float32/float64 by the same
bound as numpy's.

Mappings: every mapping that :mod:`cimdse.crossbar` expresses through the shared
pieces above runs here; :data:`MAPPINGS` lists those verified bit for bit (the
property tests run each), and any other raises instead of silently differing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cimdse import crossbar as cb
from cimdse.errors import CimdseError

__all__ = ["MAPPINGS", "TorchCrossbar", "mvm"]

MAPPINGS = frozenset({"differential-column", "differential-row", "offset"})

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


def int_mm(a: torch.Tensor, b: torch.Tensor, pad: bool | None = None) -> torch.Tensor:
    """``a @ b`` of int8 matrices with int32 accumulation. ``pad`` (default: on
    CUDA) zero-pads to cuBLASLt's shape rules (rows > 16, inner and column counts
    multiples of 8); zeros add nothing to any sum, so the result is the same."""
    if pad is None:
        pad = a.is_cuda
    if not pad:
        return torch._int_mm(a, b)
    m, k = a.shape
    n = b.shape[1]
    mp, kp, np_ = max(24, -(-m // 8) * 8), -(-k // 8) * 8, -(-n // 8) * 8
    ap = torch.zeros((mp, kp), dtype=torch.int8, device=a.device)
    ap[:m, :k] = a
    bp = torch.zeros((kp, np_), dtype=torch.int8, device=b.device)
    bp[:k, :n] = b
    return torch._int_mm(ap, bp)[:m, :n]


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
        self.index = None if idx is None else torch.from_numpy(idx).to(self.device)
        self.coef = [int(v) for v in cb.column_coefficients(programmed)]
        # the flip encoding's columns per row group [G, 1, data columns]; the unit column is the last
        self.flip = (
            None
            if programmed.flip is None
            else torch.from_numpy(programmed.flip.reshape(programmed.flip.shape[0], 1, -1).astype(np.int64)).to(
                self.device
            )
        )
        self._lossless: tuple | None = None

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
        cx = 0 if a_bits <= 7 else 128
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


def _check_range(name: str, x: torch.Tensor, lo: int, hi: int, bits: int) -> None:
    if x.numel():
        xmin, xmax = (int(v) for v in torch.aminmax(x))
        if xmin < lo or xmax > hi:
            raise CimdseError(f"{name} must lie in [{lo}, {hi}] for {bits} bits; got [{xmin}, {xmax}]")


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
    if x.dim() != 2 or x.shape[1] != xt.k:
        raise CimdseError(f"inputs must be [B, {xt.k}], got shape {tuple(x.shape)}")
    if not 1 <= a_bits <= 16:
        raise CimdseError(f"a_bits must be in 1..16, got {a_bits}")
    if signed_inputs:
        half = 2 ** (a_bits - 1)
        _check_range("signed inputs", x, -half, half - 1, a_bits)
        x = x + half
    else:
        _check_range("inputs", x, 0, 2**a_bits - 1, a_bits)
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
    y = int_mm((x - cx).to(torch.int8), w).to(torch.int64)
    if cx:
        y += cx * colsum[None, :]
    if cw:
        y += cw * x.sum(dim=1, keepdim=True) - cx * cw * x.shape[1]
    return y


def _input_slices(x: torch.Tensor, xt: TorchCrossbar, a_bits: int, nx: int, dtype: torch.dtype) -> torch.Tensor:
    """[nx * B, physical rows] input slices, LSB first (each duplicated onto the row
    pair for differential-row), in the GEMM's operand type."""
    d = xt.spec.dac_bits
    small = x.to(torch.uint8) if a_bits <= 8 else x.to(torch.int32)  # x is range-checked to a_bits
    mask = 2**d - 1
    xs = torch.stack([(small >> (i * d)) & mask for i in range(nx)])
    # int8 kernel: slices are at most 127, so the uint8 bytes are the int8 values.
    xs = xs.view(torch.int8) if dtype == torch.int8 and xs.dtype == torch.uint8 else xs.to(dtype)
    if cb.signed_sums(xt.spec):
        xs = xs.repeat_interleave(2, dim=2)
    return xs.reshape(nx * x.shape[0], -1)


def _sliced(x: torch.Tensor, xt: TorchCrossbar, a_bits: int, read_seed: int | None) -> torch.Tensor:
    spec = xt.spec
    nx = cb.input_slices(spec, a_bits)
    g, _, cols = xt.weights.shape
    chunk = cb.batch_chunk(g, cols, nx)
    rng = cb.read_noise_rng(spec, read_seed) if spec.nonideal.read_noise_sigma else None
    parts = [_sliced_chunk(x[i : i + chunk], xt, a_bits, nx, rng) for i in range(0, x.shape[0], chunk)]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _code_bound(xt: TorchCrossbar, s: int | None) -> int:
    if s is None:
        bound = cb.partial_sum_max(xt.spec)
    else:
        lo, hi = cb.adc_code_range(xt.spec)
        bound = max(-lo, hi)
    return bound * (2**xt.spec.cell_bits - 1) if xt.flip is not None else bound  # (2^c - 1) * unit - code


def _sliced_chunk(
    x: torch.Tensor, xt: TorchCrossbar, a_bits: int, nx: int, rng: np.random.Generator | None
) -> torch.Tensor:
    spec, xb = xt.spec, xt.programmed
    d = spec.dac_bits
    g, a, cols = xt.weights.shape
    b, n = x.shape[0], xt.n
    q = len(xt.coef)
    s = cb.adc_shift(spec)
    ideal = xb.conductance is None
    xs = _input_slices(x, xt, a_bits, nx, xt.weights.dtype)
    if xt.index is not None:
        xs = torch.cat([xs, xs.new_zeros((xs.shape[0], 1))], dim=1)
    noise = None
    if rng is not None:  # one draw per chunk, shaped as numpy's [G, nx*B, cols]
        noise = torch.from_numpy(rng.standard_normal((g, nx * b, cols))).to(xt.device)
    scale = [2 ** (i * d + (s or 0)) for i in range(nx)]
    # Integer shift-and-add when every code is an integer; int32 while that is exact.
    integer = ideal or s is not None
    bound = g * _code_bound(xt, s) * sum(abs(c) for c in xt.coef) * sum(scale)
    acc_dtype = torch.int32 if bound < _I32 else torch.int64
    if integer:
        y = torch.zeros((b, n), dtype=acc_dtype, device=xt.device)
    else:
        y = torch.zeros((b, n), dtype=torch.float64, device=xt.device)
    for gi in range(g):
        xg = xs[:, gi * a : (gi + 1) * a] if xt.index is None else xs.index_select(1, xt.index[gi])
        wg = xt.weights[gi]
        p = int_mm(xg, wg) if xt.kernel == "int8" else xg @ wg
        if not ideal:
            if noise is not None:
                var = (xg * xg) @ (wg * wg)
                p += spec.nonideal.read_noise_sigma * torch.sqrt(var) * noise[gi]
            if s is not None and not cb.signed_sums(spec):
                p.clamp_(min=0.0)  # a column current cannot be negative
        if s is not None:
            _adc_codes_(p, s, cb.adc_code_range(spec), exact_integers=ideal)
        if integer and p.dtype != acc_dtype:
            p = p.to(acc_dtype)  # integer-valued codes; exact
        if xt.flip is not None:
            p = cb.restore_flipped(p[:, :-1], p[:, -1:], xt.flip[gi].to(p.dtype), spec.cell_bits)
        codes = p.view(nx, b, q, n)
        t = codes[:, :, 0, :] * xt.coef[0]
        for qi in range(1, q):
            t.add_(codes[:, :, qi, :], alpha=xt.coef[qi])
        for i in range(nx):
            y.add_(t[i], alpha=scale[i])
    return y.to(torch.int64) if integer else torch.round(y).to(torch.int64)


def _adc_codes_(p: torch.Tensor, s: int, code_range: tuple[int, int], exact_integers: bool) -> None:
    """In place, as :func:`cimdse.crossbar._adc_codes_inplace`: ``(p + 2^(s-1)) >> s``
    for integer sums, ``floor(p / 2^s + 1/2)`` for real ones, then saturate."""
    lo, hi = code_range
    if p.is_floating_point():
        if s > 0 or not exact_integers:
            p.mul_(1.0 / 2**s).add_(0.5).floor_()
    elif s > 0:
        p.add_(2 ** (s - 1)).bitwise_right_shift_(s)
    if lo == 0 and not p.is_floating_point():
        p.clamp_max_(hi)  # integer sums of unsigned mappings are never negative
    else:
        p.clamp_(lo, hi)
