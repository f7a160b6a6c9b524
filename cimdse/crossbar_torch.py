"""Torch backend of the crossbar model: the numpy reference's semantics
(:mod:`cimdse.crossbar`, design.md section 3), bit for bit, on CPU or CUDA.

Programming is shared, not re-implemented: :func:`cimdse.crossbar.program` slices the
weights into cells and applies the seeded variation; :class:`TorchCrossbar` moves its
signed cell matrix per row group (``crossbar._grouped_weights``), the shift-and-add
column coefficients (``crossbar.column_coefficients``) and the digital corrections
(``crossbar.digital_corrections``) to a device, once. The import runs one way: this
module reads :mod:`cimdse.crossbar`, never the reverse. A call then runs

    p[g, b, i, col] = r + sum over rows of group g of  xs_i[b, row] * cell[row, col]   (one batched GEMM)
    code            = clamp((p >> s) - r_b, lo, hi)                                      (ADC)
    y[b, n]         = sum over g, i, q of  2^(i d + s) * coef_q * code[g, b, i, q, n]
                      - corrections

with ``xs_i`` the i-th ``dac_bits`` slice of the inputs, ``q`` the (polarity, weight
slice) columns of output n, and ``r = h + r_b`` added by one more GEMM row (an input
fixed at 1 against a cell row holding ``r``): the ADC's rounding offset ``h = 2^(s-1)``
and, for signed sums (differential-row), a bias ``r_b`` (a multiple of ``2^s``, at
least ``P_max``) that makes every sum non-negative, so the ADC is a shift and a mask.

**Kernels** (:data:`KERNELS`), each used only where its exactness bound holds, derived
per crossbar from the operands' ranges (cells ``<= 2^c - 1``, slices ``<= 2^d - 1``,
every sum and partial sum in ``[0, F]`` with ``F = P_max + r`` the field maximum, and
``P_max`` bounding ``sum |x||w|``, hence any partial sum in any order):

- ``int8``: ``torch._int_mm`` (int32 accumulation) per row group, when slices, cells
  and ``r`` fit int8 and ``F < 2^31``, and the CPU's int8 GEMM cannot saturate on them
  (:func:`int8_exact`: without VNNI oneDNN may sum pairs of products in int16; probed).
  On CUDA, B is column-major (cuBLASLt rejects a row-major int8 B at some shapes) and
  operands are zero-padded to its shape rules.
- ``float32`` / ``float64``: one batched GEMM over all row groups, exact while
  ``F <= 2^24`` / ``2^53`` (every integer up to that is a float, so any summation
  order is exact). **Packing**: with a field of ``f = bits(F)`` bits, ``m = floor(24 /
  f)`` input slices share one GEMM row, ``sum_j 2^(j f) xs_(i m + j)``; the sums come
  back as ``sum_j 2^(j f) p_j``, exact (``< 2^(m f) <= 2^24``) and the fields split off
  with shifts and masks. That divides the GEMM's work by ``m`` (2 for a 256-row array
  of 2-bit cells and a 1-bit DAC, 3 for 64 rows).
- ``float16`` / ``bfloat16``: batched, exact while ``F <= 2^11`` / ``2^8`` (the output
  type's integers; partial sums are bounded by F, so reduced-precision accumulation
  cannot round either).

Which one runs is measured, not assumed: :func:`gemm_times` times each kernel on a
typical crossbar GEMM once per device and thread count (a fraction of a second, cached
per process), and each crossbar takes the exact kernel with the least cost per
product: GEMM time / packing factor + the time of the ADC's field split, measured too
(:func:`post_times`; packing does not divide it, and int64 fields double it).
``CIMDSE_GEMM=int8|float32|float64|float16|bfloat16`` forces a kernel wherever it is
exact (tests, benchmarks). On CUDA only memory bounds a chunk of the batch.

**CPU pipeline** (:func:`_fused_part`; every pass in place, on chunks of a few MiB
that stay in cache): the packed rows are built from the inputs' bytes by shifts and
masks (``m`` slices spread into ``m`` fields by one multiply and one mask, proved on
every value); the GEMM's rows run (packed slice, vector) per group; the offset ``r``
is added to every slice field after the GEMM (not a GEMM row: no operand column to
fill). Where no code can saturate, the ADC is ``(p >> s) & mask`` on whole packed
words, the codes of up to ``gmax = floor((2^f - 1) / code_max)`` row groups are summed
while packed (no field can carry into the next), and each packed word is unpacked
into the shift-and-add by ``m - 1`` shifted adds (:func:`_codes_packed`); else (a
saturating ADC) field by field: shift, mask, clamp, group sum, scaled add.

Non-idealities: float64 GEMMs as in numpy; read noise is drawn from the same numpy
generator per chunk (:func:`cimdse.crossbar.read_noise_rng`, same chunking), the same
float operations follow in the same order. The analog sums are real there; codes can
differ only when a sum lies within float64 rounding of a code boundary (BLAS
summation order), which seeded tests do not meet.

A lossless ADC (and ideal cells) takes the fast path, as in numpy: one GEMM of the
(centred, for int8) operands,

    x @ W = (x - c_x) @ (W - c_w) + c_w * sum_k x + c_x * sum_k W - K c_x c_w,

int8 while ``K * 128 * 128 < 2^31``, float32/float64 by numpy's bound; the measured
fastest of those that are exact.

ISAAC's flip encoding rides on the same shared pieces: the unit column is one more
column of the GEMM, and the flipped columns are restored after the ADC with
:func:`cimdse.crossbar.restore_flipped`, the numpy model's own function.

Mappings: every mapping that :mod:`cimdse.crossbar` expresses through the shared
pieces above runs here; :data:`MAPPINGS` lists those verified bit for bit (the
property tests run each), and any other raises instead of silently differing.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cimdse import crossbar as cb
from cimdse.errors import CimdseError

__all__ = ["ENV_KERNEL", "KERNELS", "MAPPINGS", "TorchCrossbar", "gemm_times", "mvm", "program"]

MAPPINGS = frozenset({"differential-column", "differential-row", "offset"})
KERNELS = ("int8", "float32", "float64", "float16", "bfloat16")
ENV_KERNEL = "CIMDSE_GEMM"

CPU_CHUNK_ELEMENTS = 2**21  # partial sums per chunk on CPU (all groups): the ADC passes stay in cache
CUDA_CHUNK_ELEMENTS = 2**28  # on CUDA only memory bounds a chunk (1 GiB of int32 sums)
_I32 = 2**31
_INT8_MAX = 127
# integers up to 2^mantissa are exact in each float type
_MANTISSA = {"float16": 11, "bfloat16": 8, "float32": 24, "float64": 53}
_DTYPES = {
    "int8": torch.int8,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def _device(device: Any) -> torch.device:
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, ValueError):
        raise CimdseError(f"device {device!r}: expected cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CimdseError("device cuda: no CUDA device is available here (use cpu)")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


# ---------------------------------------------------------------- kernels
def column_major(b: torch.Tensor) -> torch.Tensor:
    """``b`` with column-major storage (same values): the int8 B layout cuBLASLt takes
    at every shape."""
    return b if b.dim() == 2 and b.stride(0) == 1 and b.stride(1) >= b.shape[0] else b.t().contiguous().t()


def int_mm(a: torch.Tensor, b: torch.Tensor, pad: bool | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` of int8 matrices with int32 accumulation (into ``out`` when given).
    On CUDA (or with ``pad``) B is made column-major and the operands zero-padded to
    cuBLASLt's shape rules (rows > 16, inner and column counts multiples of 8); zeros
    add nothing to any sum, so the result is the same."""
    cuda = a.is_cuda
    if pad is None:
        pad = cuda
    if not pad:
        return torch._int_mm(a, b) if out is None else torch._int_mm(a, b, out=out)
    m, k = a.shape
    n = b.shape[1]
    mp, kp, np_ = max(17, m), -(-k // 8) * 8, -(-n // 8) * 8
    if (mp, kp) != (m, k):
        ap = torch.zeros((mp, kp), dtype=torch.int8, device=a.device)
        ap[:m, :k] = a
        a = ap
    if (kp, np_) != (k, n):
        bp = torch.zeros((kp, np_), dtype=torch.int8, device=b.device)
        bp[:k, :n] = b
        b = bp
    b = column_major(b) if cuda else b
    if out is not None and (mp, np_) == (m, n) and out.is_contiguous():
        return torch._int_mm(a, b, out=out)
    res = torch._int_mm(a, b)[:m, :n]
    return res if out is None else out.copy_(res)


def cublaslt_layout(device: torch.device) -> bool:
    """Whether GEMM operands are padded to multiples of 8 (and int8 B column-major), as
    cuBLASLt's int8 and tensor-core kernels need (CUDA)."""
    return device.type == "cuda"


def uint8_inputs(device: torch.device) -> bool:
    """Whether ``torch._int_mm`` takes uint8 left operands on ``device`` (CPU: yes)."""
    return device.type == "cpu"


_INT8_FULL: dict[str, bool] = {}
_I16 = 2**15 - 1


def int8_full_range(device: Any = None) -> bool:
    """Whether ``torch._int_mm`` is exact over the whole int8 (and, on CPU, uint8) range
    on ``device``. Without AVX-512 VNNI, oneDNN may add pairs of u8 x s8 products in
    saturating int16 (``vpmaddubsw``, s8 inputs shifted by +128), which 2 * 255 * 127
    overflows; so it is probed once per device with the extreme operands."""
    dev = _device(device)
    key = str(dev)
    if key not in _INT8_FULL:
        ok, n = True, 64
        probes = [(255, 127, torch.uint8), (-128, -127, torch.int8), (127, 127, torch.int8), (-128, 127, torch.int8)]
        try:
            for a_val, b_val, dtype in probes:
                if dtype == torch.uint8 and not uint8_inputs(dev):
                    continue
                a = torch.full((32, n), a_val, dtype=dtype, device=dev)
                b = torch.full((n, 32), b_val, dtype=torch.int8, device=dev)
                ok = ok and bool((int_mm(a, b) == n * a_val * b_val).all())
        except RuntimeError:
            ok = False
        _INT8_FULL[key] = ok
    return _INT8_FULL[key]


def int8_exact(a_max: int, b_max: int, device: Any) -> bool:
    """Whether an int8 GEMM of operands in [0, a_max] x [-b_max, b_max] is exact on
    ``device``: always when even int16 pair sums of +128-shifted inputs cannot saturate
    (``2 (a_max + 128) b_max <= 2^15 - 1``), else when the probe says so."""
    if a_max > _INT8_MAX or b_max > _INT8_MAX:
        return False
    return 2 * (a_max + 128) * b_max <= _I16 or int8_full_range(device)


def _float32_is_ieee(device: torch.device) -> bool:
    """float32 GEMMs are exact only when not run in TF32 (or bf16) by a global setting."""
    if device.type == "cuda":
        return not torch.backends.cuda.matmul.allow_tf32
    try:
        return torch.backends.mkldnn.matmul.fp32_precision in ("ieee", "none")
    except AttributeError:  # older torch: no reduced-precision float32 on CPU
        return True


def kernel_override() -> str | None:
    """The kernel ``CIMDSE_GEMM`` forces (where exact), or None."""
    name = os.environ.get(ENV_KERNEL, "").strip().lower()
    if not name:
        return None
    if name not in KERNELS:
        raise CimdseError(f"{ENV_KERNEL}={name!r}: expected one of {', '.join(KERNELS)}")
    return name


_TIMES: dict[tuple[str, int], dict[str, float]] = {}


def gemm_times(device: Any = None) -> dict[str, float]:
    """Seconds per GEMM of each kernel on ``device`` for typical crossbar shapes
    (slices of 0/1 against 2-bit cells; a 64- and a 256-row group), measured once per
    process, device and thread count: after a warm-up call (oneDNN and cuBLAS set up
    their kernels on the first), the best of 5 rounds, the kernels interleaved within a
    round (so a burst of load elsewhere hits all alike); a kernel whose first timed call
    takes 20x the fastest one's is not timed further, and one that fails there gets inf."""
    dev = _device(device)
    key = (str(dev), torch.get_num_threads())
    if key in _TIMES:
        return _TIMES[key]
    cuda = dev.type == "cuda"
    rows = 262144 if cuda else 1024
    gen = torch.Generator().manual_seed(0)
    runs: dict[str, Any] = {}
    times: dict[str, float] = {}
    for kernel in KERNELS:
        if kernel == "float32" and not _float32_is_ieee(dev):
            times[kernel] = float("inf")
            continue
        calls = []
        for k in (72, 264) if cuda else (65, 257):  # a 64- and a 256-row group, one offset row (CUDA: padded)
            a = torch.randint(0, 2, (1, rows, k), generator=gen).to(dev, _DTYPES[kernel])
            w = torch.randint(0, 4, (1, k, 256), generator=gen).to(dev, _DTYPES[kernel])
            if kernel == "int8":
                w8 = column_major(w[0]) if cuda else w[0]
                calls.append(lambda a=a[0], w=w8: int_mm(a, w))
            else:
                calls.append(lambda a=a, w=w: torch.bmm(a, w))
        try:
            _elapsed(calls, dev)
            first = _elapsed(calls, dev)
        except RuntimeError:
            times[kernel] = float("inf")
            continue
        times[kernel] = first
        runs[kernel] = calls
    fastest = min(times.values())
    runs = {k: c for k, c in runs.items() if times[k] <= 20 * fastest}
    for _ in range(5):
        for kernel, calls in runs.items():
            times[kernel] = min(times[kernel], _elapsed(calls, dev))
    _TIMES[key] = times
    return times


def _elapsed(calls: list, dev: torch.device) -> float:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for fn in calls:
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0


_POST: dict[tuple[str, int], dict[torch.dtype, float]] = {}
POST_PASSES = 8  # passes over the partial sums in the split's type: conversion, split, clamp, group sum, ...


def post_times(device: Any = None) -> dict[torch.dtype, float]:
    """Seconds of the ADC's field split (shift and mask) over as many int32 / int64
    partial sums as :func:`gemm_times`' GEMMs produce: the per-sum work after the
    GEMM, which packing does not divide (and int64 fields double)."""
    dev = _device(device)
    key = (str(dev), torch.get_num_threads())
    if key not in _POST:
        n = 2 * 256 * (262144 if dev.type == "cuda" else 1024)
        out = {}
        for dtype in (torch.int32, torch.int64):
            t = torch.ones(n, dtype=dtype, device=dev)
            calls = [lambda t=t: (t >> 3).bitwise_and_(63)]
            _elapsed(calls, dev)
            out[dtype] = min(_elapsed(calls, dev) for _ in range(3))
        _POST[key] = out
    return _POST[key]


def choose_kernel(costs: dict[str, tuple[float, torch.dtype | None]], device: torch.device) -> str:
    """The exact kernel (``costs``: kernel -> (GEMMs per product: 1 / slices packed,
    the type the ADC's fields are split in, or None), only exact ones) forced by
    ``CIMDSE_GEMM``, else the one measured fastest: GEMM time / packing + split time."""
    forced = kernel_override()
    if forced in costs:
        return forced
    times = gemm_times(device)
    post = post_times(device) if any(work is not None for _, work in costs.values()) else {}

    def cost(k: str) -> tuple[float, int]:
        share, work = costs[k]
        after = POST_PASSES * post[work] if work is not None else 0.0
        return times.get(k, float("inf")) * share + after, KERNELS.index(k)

    return min(costs, key=cost)


@dataclass(frozen=True)
class _Layout:
    """How one ideal crossbar's partial sums are computed: the kernel, how many input
    slices share a GEMM row (``pack``, fields of ``field_bits``), the per-sum offset
    ``row`` (rounding + bias) the extra GEMM row adds (or the ADC adds, ``row_in_gemm``
    False), and the bias ``bias`` subtracted after the shift."""

    kernel: str
    pack: int
    field_bits: int
    row: int
    row_in_gemm: bool
    bias: int


def _ideal_layout(spec: cb.CrossbarSpec, device: torch.device, pack: bool) -> _Layout:
    d, c = spec.dac_bits, spec.cell_bits
    pmax = cb.partial_sum_max(spec)
    s = cb.adc_shift(spec)
    h = 2 ** (s - 1) if s else 0
    unit = 2 ** (s or 0)
    bias = -(-pmax // unit) * unit if cb.signed_sums(spec) else 0
    row = h + bias
    field_max = pmax + row  # every sum and partial sum lies in [0, field_max] (with the row)
    operand = max(2**d - 1, 2**c - 1, row)
    costs: dict[str, tuple[float, torch.dtype | None]] = {}
    if field_max < _I32 and int8_exact(2**d - 1, max(2**c - 1, row if row <= _INT8_MAX else 0), device):
        costs["int8"] = (1.0, torch.int32)
    packs: dict[str, int] = {}
    for kernel, mant in _MANTISSA.items():
        if field_max <= 2**mant and operand <= 2**mant:
            packs[kernel] = max(1, mant // field_max.bit_length()) if pack and kernel in ("float32", "float64") else 1
            wide = packs[kernel] * field_max.bit_length() > 31  # as _adc_fields splits them
            costs[kernel] = (1.0 / packs[kernel], torch.int64 if wide else torch.int32)
    if not costs:
        raise CimdseError(f"partial sums up to {field_max:.3g} exceed exact float64 range; use fewer bits or rows")
    kernel = choose_kernel(costs, device)
    # on CPU the row is added after the GEMM (one in-cache pass; :func:`_fused_part`)
    in_gemm = row > 0 and (kernel != "int8" or row <= _INT8_MAX) and cublaslt_layout(device)
    return _Layout(kernel, packs.get(kernel, 1), field_max.bit_length(), row, in_gemm, bias)


@dataclass(frozen=True)
class _Split:
    """Columns the sliced pipeline can leave out: ``handled`` [G, cols] marks the (row
    group, column) pairs whose ADC is the identity (every possible partial sum inside
    the code range, shift 0: their shift-added value is the exact product, folded into
    one dense matrix ``dense`` [K, N], coefficients applied, on logical rows) or
    constant 0 (every possible sum rounds to code 0: they add nothing); ``keep`` lists
    the columns with another pair, left for the sliced pipeline; ``out`` and ``coef``
    the output and coefficient of every column."""

    handled: np.ndarray
    dense: np.ndarray
    keep: np.ndarray
    out: np.ndarray
    coef: np.ndarray


def _lossless_columns(
    programmed: cb.ProgrammedCrossbar, wg: np.ndarray, idx: np.ndarray | None, coef: list[int]
) -> _Split | None:
    """The (group, column) pairs of an ideal crossbar that need no slicing, or None
    (none; or the flip encoding, whose columns share its unit column). Every partial
    sum of a pair lies in ``[(2^d - 1) * sum of its negative cells, (2^d - 1) * sum of
    its positive cells]``. With a shift-0 (clip) ADC, a pair whose range lies in the
    code range is lossless: the ADC passes every sum unchanged, and sum_i 2^(i d) p_i =
    x . cells exactly. With any ADC, a pair whose range rounds to code 0 throughout
    adds nothing. Trained weights are mostly small, so most of their higher cell slices
    are such (90-94 % of cnn1d's columns on the demo tile's clip ADC)."""
    spec = programmed.spec
    s = cb.adc_shift(spec)
    if programmed.conductance is not None or programmed.flip is not None or s is None:
        return None
    lo, hi = cb.adc_code_range(spec)
    dmax = 2**spec.dac_bits - 1
    pos = dmax * np.clip(wg, 0, None).sum(axis=1)
    neg = dmax * np.clip(wg, None, 0).sum(axis=1)
    h = 2 ** (s - 1) if s else 0
    lossless = (pos <= hi) & (neg >= lo) if s == 0 else np.zeros(pos.shape, dtype=bool)  # [G, cols]
    dead = (pos + h < 2**s) & (neg + h >= 0)  # floor((p + h) / 2^s) = 0 for every p in range
    handled = lossless | dead
    if not handled.any():
        return None
    g, a, cols = wg.shape
    n = programmed.n
    q_of, n_of = np.arange(cols) // n, np.arange(cols) % n
    col_coef = np.asarray(coef, dtype=np.int64)[q_of]
    per_out = (wg * (lossless * col_coef)[:, None, :]).reshape(g, a, -1, n).sum(axis=2)  # [G, A, N]
    kp = programmed.cells.shape[2]
    rows = np.arange(g * a).reshape(g, a) if idx is None else idx  # physical row of each group row
    phys = np.zeros((max(kp, g * a) + 1, n), dtype=np.int64)
    np.add.at(phys, rows.ravel(), per_out.reshape(g * a, n))
    phys = phys[:kp]
    dense = phys[0::2] + phys[1::2] if cb.signed_sums(spec) else phys
    keep = np.flatnonzero(~handled.all(axis=0))
    return _Split(handled, dense, keep, n_of, col_coef)


class TorchCrossbar:
    """A programmed crossbar (:class:`cimdse.crossbar.ProgrammedCrossbar`, the shared
    programming) held on a torch device in the operand types its kernels need.
    ``kernel`` forces a GEMM kernel (where exact; default: measured, or ``CIMDSE_GEMM``);
    ``pack=False`` keeps one input slice per GEMM row; ``split=False`` runs every column
    through the sliced pipeline (see :func:`_lossless_columns`)."""

    def __init__(
        self,
        programmed: cb.ProgrammedCrossbar,
        device: Any = None,
        *,
        kernel: str | None = None,
        pack: bool = True,
        split: bool = True,
    ) -> None:
        spec = programmed.spec
        if spec.mapping not in MAPPINGS:
            raise CimdseError(
                f"mapping {spec.mapping!r} is not supported by the torch crossbar backend "
                f"(supported: {', '.join(sorted(MAPPINGS))}); use backend='numpy'"
            )
        self.programmed = programmed
        self.device = _device(device)
        ideal = programmed.conductance is None
        wg, idx = cb._grouped_weights(programmed, np.float64 if not ideal else np.int64)
        g, a, cols = wg.shape
        kp = programmed.cells.shape[2]
        flat = None if idx is None else idx.ravel()
        # Row groups as column ranges of the inputs: in order, possibly after zero padding
        # at the end (a short last group), else gathered by index (a zero input at kp).
        self.pad = 0
        self.index = None
        if flat is not None and np.array_equal(flat[:kp], np.arange(kp)) and np.all(flat[kp:] == kp):
            self.pad = flat.size - kp
        elif flat is not None:
            self.index = torch.from_numpy(idx).to(self.device)
        self.coef = [int(v) for v in cb.column_coefficients(programmed)]
        self.groups, self.rows, self.cols = g, a, cols
        # the flip encoding's columns per row group [G, 1, 1, data columns]; the unit column is the last
        self.flip = (
            None
            if programmed.flip is None
            else torch.from_numpy(programmed.flip.reshape(g, 1, 1, -1).astype(np.int32)).to(self.device)
        )
        self._lossless: tuple | None = None
        self._split_ops: tuple | None = None
        self.split = None
        self.saturates = True
        if not ideal:
            self.layout = None
            self.kernel = "float64"
            self.weights = torch.from_numpy(np.ascontiguousarray(wg)).to(self.device, torch.float64)
            return
        self.split = _lossless_columns(programmed, wg, idx, self.coef) if split else None
        if self.split is not None:
            keep = self.split.keep
            wg = wg[:, :, keep] * ~self.split.handled[:, None, keep]  # handled pairs: dense, or nothing
            cols = self.cols = int(keep.size)
            self.split_out = torch.from_numpy(self.split.out[keep]).to(self.device)
            self.split_coef = torch.from_numpy(self.split.coef[keep])
        lay = _ideal_layout(spec, self.device, pack)
        if kernel is not None:
            old = os.environ.get(ENV_KERNEL)
            os.environ[ENV_KERNEL] = kernel
            try:
                lay = _ideal_layout(spec, self.device, pack)
            finally:
                os.environ.pop(ENV_KERNEL) if old is None else os.environ.__setitem__(ENV_KERNEL, old)
        self.layout = lay
        self.kernel = lay.kernel
        # GEMM operand [G, K', cols']: the cell rows, the offset row, zero padding (on CUDA:
        # K' and cols' multiples of 8, as cuBLASLt's int8 and tensor-core kernels need; int8
        # B column-major per group).
        k_gemm = a + (1 if lay.row_in_gemm else 0)
        pad8 = cublaslt_layout(self.device)
        cuda_int8 = lay.kernel == "int8" and pad8
        self.k_gemm = -(-k_gemm // 8) * 8 if pad8 else k_gemm
        cols_gemm = -(-cols // 8) * 8 if pad8 else cols
        w = np.zeros((g, self.k_gemm, cols_gemm), dtype=np.int64)
        w[:, :a, :cols] = wg
        if lay.row_in_gemm:
            w[:, a, :cols] = lay.row
        wt = torch.from_numpy(w).to(self.device, _DTYPES[lay.kernel])
        self.weights = wt.transpose(1, 2).contiguous().transpose(1, 2) if cuda_int8 else wt
        # Saturation is skipped where no partial sum can reach it (a full-range ADC).
        s = cb.adc_shift(spec)
        if s is not None:
            lo, hi = cb.adc_code_range(spec)
            pmax = cb.partial_sum_max(spec)
            h = 2 ** (s - 1) if s else 0
            low = 0 if not cb.signed_sums(spec) else (-pmax + h) >> s
            self.saturates = (pmax + h) >> s > hi or low < lo

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

    def lossless_operands(self, a_bits: int) -> tuple:
        """(kernel, centred stored weights, c_x, c_w, sum_k W) for the lossless path."""
        if self._lossless is None or self._lossless[0] != a_bits:
            self._lossless = (a_bits, _dense_operands(self.programmed.stored_weights, a_bits, self.device))
        return self._lossless[1]

    def split_operands(self, a_bits: int) -> tuple:
        """:meth:`lossless_operands` of the lossless columns' dense matrix."""
        assert self.split is not None
        if self._split_ops is None or self._split_ops[0] != a_bits:
            self._split_ops = (a_bits, _dense_operands(self.split.dense, a_bits, self.device))
        return self._split_ops[1]


def _dense_operands(stored: np.ndarray, a_bits: int, device: torch.device) -> tuple:
    """(kernel, centred integer matrix, c_x, c_w, sum_k W) of an exact product of
    ``a_bits`` inputs with ``stored`` [K, N]: int8 (centred) or float32/float64, the
    measured fastest of those that are exact."""
    k = stored.shape[0]
    smax = int(np.abs(stored).max(initial=0))
    bound = k * (2**a_bits - 1) * float(smax)
    cb._float_type(bound)  # the numpy reference's range check, same message
    # CPU: unsigned 8-bit inputs go to _int_mm as uint8 as they are; CUDA takes int8 only.
    cx = 0 if a_bits <= 7 or (a_bits == 8 and uint8_inputs(device)) else 128
    lo, hi = (int(stored.min()), int(stored.max())) if stored.size else (0, 0)
    cw = 0 if lo >= -_INT8_MAX and hi <= _INT8_MAX else 128 if lo >= 0 and hi <= 255 else None
    costs = {kern: (1.0, None) for kern in ("float32", "float64") if bound <= 2 ** _MANTISSA[kern]}
    if a_bits <= 8 and cw is not None and k * 128 * 128 < _I32 and int8_full_range(device):
        costs["int8"] = (1.0, None)
    kernel = choose_kernel(costs, device)
    if kernel == "int8":
        w = torch.from_numpy(stored - cw).to(device, torch.int8)
        w = column_major(w) if device.type == "cuda" else w
        return ("int8", w, cx, cw, torch.from_numpy(stored.sum(axis=0)).to(device))
    return (kernel, torch.from_numpy(stored).to(device, _DTYPES[kernel]), 0, 0, None)


def program(w: Any, spec: cb.CrossbarSpec, w_bits: int, *, device: Any = None, **kw: Any) -> TorchCrossbar:
    """:func:`cimdse.crossbar.program` held on ``device`` (default CPU)."""
    return TorchCrossbar(cb.program(cb._numpy(w), spec, w_bits), device, **kw)


# ---------------------------------------------------------------- execution
def _as_tensor(x: Any, device: torch.device) -> torch.Tensor:
    """The inputs on ``device`` as a signed integer tensor: int16 and int32 stay as they
    are (less memory to pass over than int64), 8-bit types widen to int16, others to int64."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise CimdseError(f"inputs must be an integer array, got {t.dtype}")
    dtype = t.dtype if t.dtype in (torch.int16, torch.int32) else torch.int16 if t.element_size() == 1 else torch.int64
    return t.to(device, dtype)


def _value_range(x: torch.Tensor) -> tuple[int, int]:
    xmin, xmax = torch.aminmax(x)
    return int(xmin), int(xmax)


def mvm(
    x: Any,
    w: Any,
    spec: cb.CrossbarSpec | None = None,
    *,
    w_bits: int = 8,
    a_bits: int = 8,
    signed_inputs: bool = False,
    read_seed: int | None = None,
    fast_path: bool = True,
    device: Any = None,
) -> Any:
    """:func:`cimdse.crossbar.mvm` with torch kernels: ``w`` is a :class:`TorchCrossbar`,
    a :class:`cimdse.crossbar.ProgrammedCrossbar` or raw weights with ``spec``. Returns
    int64 [B, N]: a tensor on the crossbar's device for a tensor ``x``, else a numpy
    array. ``fast_path=False`` skips the whole-crossbar lossless shortcut; the columns
    :func:`_lossless_columns` takes out stay out (``TorchCrossbar(..., split=False)``
    slices every column)."""
    if isinstance(w, TorchCrossbar):
        xt = w if device is None or w.on(device) else TorchCrossbar(w.programmed, device)
    elif isinstance(w, cb.ProgrammedCrossbar):
        xt = TorchCrossbar(w, device)
    elif spec is None:
        raise CimdseError("mvm needs a spec to program raw weights")
    else:
        xt = program(w, spec, w_bits, device=device)
    numpy_out = not isinstance(x, torch.Tensor)
    x = _as_tensor(x, xt.device)
    squeeze = x.dim() == 1
    if squeeze:
        x = x.unsqueeze(0)
    offset = cb.input_offset(tuple(x.shape), xt.k, a_bits, signed_inputs, lambda: _value_range(x))
    if 2**a_bits - 1 > torch.iinfo(x.dtype).max:  # the offset-encoded inputs must fit
        x = x.to(torch.int64)
    if offset:
        x = x + offset
    xb = xt.programmed
    if fast_path and xb.conductance is None and cb.adc_is_lossless(xb.spec):
        y = _lossless(x, xt, a_bits)
    elif xb.conductance is None:
        y = _ideal(x, xt, a_bits)
    else:
        y = _real(x, xt, a_bits, read_seed)
    per_input_sum, per_column = cb.digital_corrections(xb, a_bits, signed_inputs)
    if per_input_sum:
        y -= per_input_sum * x.sum(dim=1, keepdim=True)
    if per_column is not None:
        y -= torch.from_numpy(per_column).to(y.device)[None, :]
    y = y[0] if squeeze else y
    return y.cpu().numpy() if numpy_out else y


def _lossless(x: torch.Tensor, xt: TorchCrossbar, a_bits: int) -> torch.Tensor:
    return _dense(x, xt.lossless_operands(a_bits), a_bits)


def _dense(x: torch.Tensor, ops: tuple, a_bits: int) -> torch.Tensor:
    kernel, w, cx, cw, colsum = ops
    if kernel != "int8":
        return (x.to(w.dtype) @ w).to(torch.int64)  # exact: integral sums below the type's bound
    a = x.to(torch.uint8) if cx == 0 and a_bits == 8 else (x - cx).to(torch.int8)
    y = int_mm(a, w).to(torch.int64)
    if cx:
        y += cx * colsum[None, :]
    if cw:
        y += cw * x.sum(dim=1, keepdim=True) - cx * cw * x.shape[1]
    return y


def _physical_inputs(x: torch.Tensor, xt: TorchCrossbar, dtype: torch.dtype) -> torch.Tensor:
    """Inputs on physical rows (each input on both rows of its pair for
    differential-row), per row group: [G, B, A] (padding rows 0)."""
    small = x.to(dtype)
    if cb.signed_sums(xt.spec):
        small = small.repeat_interleave(2, dim=1)
    pad = torch.nn.functional.pad
    if xt.index is not None:
        small = pad(small, (0, 1))[:, xt.index]  # [B, G, A]
    else:
        small = pad(small, (0, xt.pad)).view(x.shape[0], xt.groups, -1)
    return small.transpose(0, 1)


def _ideal_slices(x: torch.Tensor, xt: TorchCrossbar, nx: int, a_bits: int) -> torch.Tensor:
    """The GEMM's left operand [G, B, nx / pack, K'] in its type: input slices, LSB
    first, ``pack`` of them per row as fields of ``field_bits`` (added in the float
    type: exact, every value is an integer below 2^mantissa); then the offset row's
    input (1 in every field) and zero padding. For int8, the slices are cut from the
    inputs' bytes read as int8 (an arithmetic shift keeps the low bits a mask takes,
    while no slice reaches past bit 7) straight into the operand."""
    lay = xt.layout
    d, m, f = xt.spec.dac_bits, lay.pack, lay.field_bits
    nxp = -(-nx // m)
    int8 = xt.weights.dtype == torch.int8
    small_t = torch.uint8 if a_bits <= 8 else torch.int32  # inputs are range-checked to a_bits
    small = _physical_inputs(x, xt, small_t)  # [G, B, A]
    if int8 and small_t == torch.uint8 and (a_bits <= 7 or nx * d <= 8):
        small, small_t = small.view(torch.int8), torch.int8
    g, b, a = small.shape
    shifts = torch.arange(nx, device=x.device, dtype=small_t).mul_(d).view(1, 1, -1, 1)
    out = torch.empty((g, b, nxp, xt.k_gemm), dtype=xt.weights.dtype, device=x.device)
    if xt.k_gemm > a:
        out[..., a:].zero_()
    dst = out[..., :a]
    if m == 1 and small_t == out.dtype:
        torch.bitwise_and(small.unsqueeze(2) >> shifts, 2**d - 1, out=dst)
    else:
        xs = (small.unsqueeze(2) >> shifts).bitwise_and_(2**d - 1)  # [G, B, nx, A]
        dst[:, :, :nxp].copy_(xs[:, :, 0::m])
        for j in range(1, m):
            part = xs[:, :, j::m]
            dst[:, :, : part.shape[2]].add_(part, alpha=2 ** (j * f))
    if lay.row_in_gemm:
        out[..., a] = sum(2 ** (j * f) for j in range(m))
    return out


@dataclass(frozen=True)
class _Plan:
    """What one call's chunks share."""

    nx: int
    s: int | None
    code_range: tuple[int, int]
    scale: list[int]  # 2^(i d + s) per input slice
    acc_dtype: torch.dtype  # of the integer shift-and-add (int32 while exact)


def _plan(xt: TorchCrossbar, a_bits: int) -> _Plan:
    spec = xt.spec
    nx = cb.input_slices(spec, a_bits)
    s = cb.adc_shift(spec)
    scale = [2 ** (i * spec.dac_bits + (s or 0)) for i in range(nx)]
    code_bound = cb.partial_sum_max(spec) if s is None else max(abs(v) for v in cb.adc_code_range(spec))
    if xt.flip is not None:
        code_bound *= 2**spec.cell_bits - 1  # a restored flipped column: (2^c - 1) * unit - code
    bound = xt.groups * code_bound * sum(abs(c) for c in xt.coef) * sum(scale)
    return _Plan(
        nx=nx,
        s=s,
        code_range=cb.adc_code_range(spec) if s is not None else (0, 0),
        scale=scale,
        acc_dtype=torch.int32 if bound < _I32 else torch.int64,
    )


def _ideal(x: torch.Tensor, xt: TorchCrossbar, a_bits: int) -> torch.Tensor:
    """Ideal cells: the lossless columns in one dense GEMM (:func:`_lossless_columns`);
    for the others the slices are built once; per chunk of the batch, one batched GEMM
    (int8: one per group), the ADC on packed fields, and the shift-and-add; exact
    integers throughout, so any order is."""
    fused = not cublaslt_layout(xt.device) and xt.flip is None
    if xt.split is None:
        if fused:
            return _fused_part(x, xt, a_bits, torch.zeros((x.shape[0], xt.n), dtype=torch.int64))
        return _sliced_part(x, xt, a_bits)
    y = _dense(x, xt.split_operands(a_bits), a_bits)
    if xt.cols and fused:
        _fused_part(x, xt, a_bits, y)
    elif xt.cols:
        y += _sliced_part(x, xt, a_bits)
    return y


def _sliced_part(x: torch.Tensor, xt: TorchCrossbar, a_bits: int) -> torch.Tensor:
    plan = _plan(xt, a_bits)
    xs = _ideal_slices(x, xt, plan.nx, a_bits)
    g, b, nxp, _ = xs.shape
    cols = xt.weights.shape[2]
    per_vector = g * max(nxp * cols, plan.nx * xt.cols)
    limit = CUDA_CHUNK_ELEMENTS if xt.device.type == "cuda" else CPU_CHUNK_ELEMENTS
    chunk = max(1, limit // per_vector)
    parts = [_ideal_chunk(xs[:, i : i + chunk], xt, plan) for i in range(0, b, chunk)]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _ideal_chunk(xs: torch.Tensor, xt: TorchCrossbar, plan: _Plan) -> torch.Tensor:
    lay = xt.layout
    g, b, nxp, kg = xs.shape
    rows = xs.reshape(g, b * nxp, kg)  # a view: each group's rows are contiguous
    if lay.kernel == "int8":
        p = torch.empty((g, b * nxp, xt.weights.shape[2]), dtype=torch.int32, device=xt.device)
        for gi in range(g):
            int_mm(rows[gi], xt.weights[gi], out=p[gi])
    else:
        p = torch.bmm(rows, xt.weights)
    codes = _adc_fields(p, xt, plan, b)  # [G, b, nx, cols]
    if xt.flip is not None:
        codes = cb.restore_flipped(codes[..., :-1], codes[..., -1:], xt.flip.to(codes.dtype), xt.spec.cell_bits)
    return _shift_add(codes, xt, plan)


def _shift_add(codes: torch.Tensor, xt: TorchCrossbar, plan: _Plan) -> torch.Tensor:
    """sum over g, i, q of 2^(i d + s) coef_q code[g, b, i, q, n] -> int64 [b, n]:
    groups summed first (a contiguous reduction), then slices and columns by in-place
    scaled adds (a generic multi-axis reduction is several times slower on CPU)."""
    g, nx = codes.shape[0], codes.shape[2]
    c = codes[0] if g == 1 else codes.sum(0, dtype=plan.acc_dtype)  # [b, nx, q*n]
    t = c[:, 0] * plan.scale[0]
    for i in range(1, nx):
        t.add_(c[:, i], alpha=plan.scale[i])
    return _to_outputs(t, xt, torch.zeros((t.shape[0], xt.n), dtype=torch.int64, device=t.device))


def _work_dtype(xt: TorchCrossbar, plan: _Plan) -> torch.dtype:
    """The integer type the packed sums are split and converted in: int32 unless the
    shift-and-add needs int64 or the ``pack`` fields of a word take more than 31 bits."""
    wide = plan.acc_dtype == torch.int64 or xt.layout.pack * xt.layout.field_bits > 31
    return torch.int64 if wide else torch.int32


def _adc_fields(p: torch.Tensor, xt: TorchCrossbar, plan: _Plan, b: int) -> torch.Tensor:
    """ADC codes [G, b, nx, cols] in the shift-and-add's type from the GEMM's sums
    [G, b * nxp, cols'] (each a packed sum of ``pack`` fields holding ``p + row``)."""
    lay = xt.layout
    g = p.shape[0]
    m, f, s = lay.pack, lay.field_bits, plan.s or 0
    work = _work_dtype(xt, plan)
    p = p[..., : xt.cols]  # without cuBLASLt's padding columns
    p = p.to(work) if p.dtype != work else p.contiguous()
    if lay.row and not lay.row_in_gemm:  # into every field
        p = p + lay.row * sum(2 ** (j * f) for j in range(m))
    if m > 1:
        sh = (torch.arange(m, device=p.device, dtype=work) * f + s).view(1, 1, 1, m, 1)
        codes = (p.view(g, b, -1, 1, xt.cols) >> sh).bitwise_and_(2 ** (f - s) - 1)  # p is contiguous
        codes = codes.view(g, b, -1, xt.cols)[:, :, : plan.nx]
    else:
        codes = p >> s if s else p  # p is a temporary of this call: changed in place below
        codes = codes.view(g, b, plan.nx, xt.cols)
    if lay.bias:
        codes.sub_(lay.bias >> s)
    if plan.s is not None and xt.saturates:
        lo, hi = plan.code_range
        codes.clamp_(max=hi) if lo == 0 else codes.clamp_(lo, hi)
    return codes.to(plan.acc_dtype) if codes.dtype != plan.acc_dtype else codes


def _real(x: torch.Tensor, xt: TorchCrossbar, a_bits: int, read_seed: int | None) -> torch.Tensor:
    spec = xt.spec
    plan = _plan(xt, a_bits)
    shifts = (torch.arange(plan.nx, device=xt.device) * spec.dac_bits).to(torch.int32)
    rng = cb.read_noise_rng(spec, read_seed) if spec.nonideal.read_noise_sigma else None
    chunk = cb.batch_chunk(xt.groups, xt.cols, plan.nx)  # numpy's chunks: read noise is drawn per chunk
    parts = [_real_chunk(x[i : i + chunk], xt, plan, shifts, rng) for i in range(0, x.shape[0], chunk)]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _real_slices(x: torch.Tensor, xt: TorchCrossbar, shifts: torch.Tensor) -> torch.Tensor:
    """float64 input slices [G, nx * B, A], rows (input slice, vector) as numpy's."""
    small = _physical_inputs(x, xt, torch.int32)  # [G, B, A]
    xs = (small.unsqueeze(1) >> shifts.view(1, -1, 1, 1)) & (2**xt.spec.dac_bits - 1)  # [G, nx, B, A]
    return xs.to(torch.float64).reshape(small.shape[0], -1, small.shape[2])


def _real_chunk(
    x: torch.Tensor, xt: TorchCrossbar, plan: _Plan, shifts: torch.Tensor, rng: np.random.Generator | None
) -> torch.Tensor:
    """Non-ideal cells, as numpy's ``_sliced_chunk`` does it: float64 partial sums of all
    groups in one batched GEMM with rows (input slice, vector), read noise from the same
    draws, the ADC on real sums, and (without an ADC) numpy's order of the real
    shift-and-add."""
    spec = xt.spec
    g, cols = xt.groups, xt.cols
    b, nx, n, q, s = x.shape[0], plan.nx, xt.n, len(xt.coef), plan.s
    xs = _real_slices(x, xt, shifts)
    p = torch.bmm(xs, xt.weights)  # [G, nx*B, cols]
    if rng is not None:  # one draw per chunk, shaped as numpy's [G, nx*B, cols]
        noise = torch.from_numpy(rng.standard_normal((g, nx * b, cols))).to(xt.device)
        var = torch.bmm(xs * xs, xt.weights * xt.weights)
        p += spec.nonideal.read_noise_sigma * torch.sqrt(var) * noise
    if s is not None and not cb.signed_sums(spec):
        p.clamp_(min=0.0)  # a column current cannot be negative
    if s is not None:
        _adc_codes_(p, s, plan.code_range)
    if xt.flip is not None:
        flip = xt.flip.view(g, 1, -1).to(p.dtype)
        p = cb.restore_flipped(p[..., :-1], p[..., -1:], flip, spec.cell_bits)
    if s is not None:  # ADC codes: integers, exact in any order
        return _shift_add(p.to(plan.acc_dtype).view(g, nx, b, q * n).transpose(1, 2), xt, plan)
    codes = p.view(g, nx, b, q, n)  # real sums: numpy's order, columns first
    t = codes[:, :, :, 0, :] * xt.coef[0]
    for qi in range(1, q):
        t.add_(codes[:, :, :, qi, :], alpha=xt.coef[qi])
    y = torch.zeros((b, n), dtype=torch.float64, device=xt.device)
    for gi in range(g):
        for i in range(nx):
            y.add_(t[gi, i], alpha=plan.scale[i])
    return torch.round(y).to(torch.int64)


def _adc_codes_(p: torch.Tensor, s: int, code_range: tuple[int, int]) -> None:
    """In place, as :func:`cimdse.crossbar._adc_codes_inplace` on real sums:
    ``clamp(floor(p / 2^s + 1/2))``."""
    p.mul_(1.0 / 2**s).add_(0.5).floor_()
    p.clamp_(*code_range)


# ---------------------------------------------------------------- CPU: fused in-cache pipeline
CPU_FUSED_BYTES = 2**22  # operand, sums and codes of one chunk: the passes over them stay in cache


@dataclass(frozen=True)
class _Fields:
    """How the CPU pipeline builds packed input rows and takes ADC codes out of packed
    sums (see :func:`_fused_part`): ``spread`` (multiplier, mask) turns ``m`` adjacent
    ``d``-bit slices of an input into ``m`` fields of ``f`` bits with one multiply and one
    mask (None: field by field), ``code_mask`` keeps each field's code bits after the
    ADC's shift, ``gmax`` row groups' codes can be summed while packed (every field's sum
    stays below ``2^f``), ``unpack`` the coefficients ``2^(j d) - 2^(f + (j-1) d)`` that
    turn a packed word into ``sum_j 2^(j d) field_j`` from its shifts by ``j f``."""

    spread: tuple[int, int] | None
    code_mask: int
    gmax: int
    unpack: list[int]


@functools.cache
def _spread(m: int, d: int, f: int) -> tuple[int, int] | None:
    """(multiplier, mask) that spread ``m`` ``d``-bit slices into ``m`` fields of ``f``
    bits, ``((u * mult) & mask)``, if that is exact for every value ``u`` of ``m * d``
    bits (tried, up to 16 bits); else None."""
    if m < 2 or m * d > 16:
        return None
    mult = sum(2 ** (j * (f - d)) for j in range(m))
    mask = sum((2**d - 1) << (j * f) for j in range(m))
    u = np.arange(2 ** (m * d), dtype=np.int64)
    want = sum(((u >> (j * d)) & (2**d - 1)) << (j * f) for j in range(m))
    limit = 2**31 if m * f <= 31 else 2**63  # the product must fit the work type (int32 or int64)
    ok = np.array_equal((u * mult) & mask, want) and (2 ** (m * d) - 1) * mult < limit
    return (mult, mask) if ok else None


def _fields(xt: TorchCrossbar, plan: _Plan) -> _Fields:
    lay, d = xt.layout, xt.spec.dac_bits
    m, f, s = lay.pack, lay.field_bits, plan.s or 0
    spread = _spread(m, d, f)
    cmax = (cb.partial_sum_max(xt.spec) + lay.row) >> s  # a field's largest code
    code_mask = sum((2 ** (f - s) - 1) << (j * f) for j in range(m))
    unpack = [2 ** (j * d) - 2 ** (f + (j - 1) * d) for j in range(1, m)]
    return _Fields(spread, code_mask, max(1, (2**f - 1) // max(1, cmax)), unpack)


def _fused_part(x: torch.Tensor, xt: TorchCrossbar, a_bits: int, out: torch.Tensor) -> torch.Tensor:
    """The sliced columns on CPU, chunk by chunk so that every pass stays in cache; rows
    of a group's GEMM in (packed slice k, vector b) order. Per chunk: the packed input
    rows by a few integer passes (:func:`_packed_rows`), one batched GEMM (int8: one per
    group), the offset ``row`` added to every field in place, then either (an ADC that
    cannot saturate, and field sums of ``gmax >= 2`` groups that fit their fields) the
    ADC on whole packed words (shift, mask), the row groups summed while packed, and
    one unpack per packed word into the shift-and-add; or field by field (shift, mask,
    clamp, group sum, shift-and-add). Exact integers throughout. Adds into ``out``
    (int64 [B, N]) and returns it."""
    plan = _plan(xt, a_bits)
    lay = xt.layout
    fields = _fields(xt, plan)
    nxp = -(-plan.nx // lay.pack)
    g, cols = xt.groups, xt.cols
    b = x.shape[0]
    work = _work_dtype(xt, plan).itemsize
    sums = 2 if lay.pack > 1 else 1  # the sums, and (field by field) the codes of one field
    per_vector = g * (nxp * (xt.rows * xt.weights.element_size() + sums * cols * work) + xt.rows * work)
    chunk = max(1, CPU_FUSED_BYTES // per_vector)
    small = torch.uint8 if a_bits <= 8 else torch.int16 if a_bits <= 15 else torch.int32  # inputs are < 2^a_bits
    phys = _physical_inputs(x, xt, small).contiguous()  # [G, B, A]
    for i in range(0, b, chunk):
        _fused_chunk(phys[:, i : i + chunk], xt, plan, fields, nxp, out[i : i + chunk])
    return out


def _packed_rows(phys: torch.Tensor, xt: TorchCrossbar, plan: _Plan, fields: _Fields, nxp: int) -> torch.Tensor:
    """The GEMM's left operand [G, nxp * b, A] in the kernel's type: row (k, b) holds
    ``sum_j 2^(j f) xs_(k m + j)[b]`` (slices LSB first, ``m`` per row). One slice per
    row: shift and mask in the inputs' own small type, straight into the operand."""
    g, b, a = phys.shape
    d, m, f = xt.spec.dac_bits, xt.layout.pack, xt.layout.field_bits
    out = torch.empty((g, nxp, b, a), dtype=xt.weights.dtype)
    if m == 1:
        t = torch.empty_like(phys)
        for k in range(nxp):
            torch.bitwise_right_shift(phys, k * d, out=t)
            if out.dtype.is_floating_point:
                out[:, k].copy_(t.bitwise_and_(2**d - 1))
            else:
                torch.bitwise_and(t, 2**d - 1, out=out[:, k])
        return out.view(g, nxp * b, a)
    t = torch.empty((g, b, a), dtype=torch.int64 if m * f > 31 else torch.int32)
    u = torch.empty_like(t) if fields.spread is None else None
    for k in range(nxp):
        torch.bitwise_right_shift(phys, k * m * d, out=t)
        if fields.spread is not None:
            mult, mask = fields.spread
            t.bitwise_and_(2 ** (m * d) - 1).mul_(mult).bitwise_and_(mask)
            out[:, k].copy_(t)
            continue
        assert u is not None
        acc = torch.bitwise_and(t, 2**d - 1)
        for j in range(1, m):
            torch.bitwise_right_shift(t, j * d, out=u)
            acc.add_(u.bitwise_and_(2**d - 1).bitwise_left_shift_(j * f))
        out[:, k].copy_(acc)
    return out.view(g, nxp * b, a)


def _fused_chunk(
    phys: torch.Tensor, xt: TorchCrossbar, plan: _Plan, fields: _Fields, nxp: int, out: torch.Tensor
) -> None:
    lay = xt.layout
    g, b, _ = phys.shape
    m, f = lay.pack, lay.field_bits
    rows = _packed_rows(phys, xt, plan, fields, nxp)
    work = _work_dtype(xt, plan)
    if lay.kernel == "int8":
        q = torch.empty((g, nxp * b, xt.cols), dtype=torch.int32)
        for gi in range(g):
            int_mm(rows[gi], xt.weights[gi], out=q[gi])
        q = q.to(work) if work != torch.int32 else q
    else:
        q = torch.bmm(rows, xt.weights).to(work)
    q = q.view(g, nxp, b, xt.cols)
    for k in range(nxp) if lay.row else ():  # into every field that holds a slice (the others stay 0)
        q[:, k].add_(lay.row * sum(2 ** (j * f) for j in range(min(m, plan.nx - k * m))))
    acc = torch.zeros((b, xt.cols), dtype=torch.int64 if work == torch.int64 else plan.acc_dtype)
    if plan.s is not None and xt.saturates or fields.gmax < 2 and g > 1:
        _codes_by_field(q, xt, plan, acc)
    else:
        _codes_packed(q, xt, plan, fields, acc)
    _to_outputs(acc, xt, out)


def _codes_packed(q: torch.Tensor, xt: TorchCrossbar, plan: _Plan, fields: _Fields, acc: torch.Tensor) -> None:
    """ADC and shift-and-add on packed words (no code can saturate): ``(q >> s) & mask``
    leaves each field's code in place; groups are summed ``gmax`` at a time, packed;
    and a packed word of codes ``c_j`` gives ``sum_j 2^(j d) c_j = S + sum_(j>=1)
    (2^(j d) - 2^(f + (j-1) d)) (S >> j f)`` (with ``S >> j f = c_j + 2^f (S >> (j+1) f)``),
    an exact integer below ``2^(m f)`` at every step. The bias (a constant code) comes
    off at the end."""
    lay = xt.layout
    g, nxp = q.shape[:2]
    m, f, s = lay.pack, lay.field_bits, plan.s or 0
    if s:
        q.bitwise_right_shift_(s).bitwise_and_(fields.code_mask)
    tmp = torch.empty_like(q[0, 0])
    word = torch.empty_like(q[0, 0])
    for g0 in range(0, g, fields.gmax):
        sg = q[g0]
        for gi in range(g0 + 1, min(g, g0 + fields.gmax)):
            sg.add_(q[gi])
        for k in range(nxp):
            word.copy_(sg[k])
            for j, c in enumerate(fields.unpack, start=1):
                if k * m + j < plan.nx:
                    word.add_(torch.bitwise_right_shift(sg[k], j * f, out=tmp), alpha=c)
            acc.add_(word, alpha=plan.scale[k * m])
    if lay.bias:
        acc.sub_((lay.bias >> s) * g * sum(plan.scale))


def _codes_by_field(q: torch.Tensor, xt: TorchCrossbar, plan: _Plan, acc: torch.Tensor) -> None:
    """ADC field by field (shift, mask, bias, clamp), each summed over the groups and
    added with its slice's scale."""
    lay = xt.layout
    g, nxp = q.shape[:2]
    m, f, s = lay.pack, lay.field_bits, plan.s or 0
    lo, hi = plan.code_range
    c = torch.empty_like(q) if m > 1 else q  # one field: q itself, in place
    for j in range(m):
        if m == 1:
            if s:
                c.bitwise_right_shift_(s)
        else:
            src = torch.bitwise_right_shift(q, j * f + s, out=c) if j * f + s else q
            torch.bitwise_and(src, 2 ** (f - s) - 1, out=c)
        if lay.bias:
            c.sub_(lay.bias >> s)
        if plan.s is not None and xt.saturates:
            c.clamp_(max=hi) if lo == 0 else c.clamp_(lo, hi)
        sg = c[0]
        for gi in range(1, g):
            sg.add_(c[gi])
        for k in range(nxp):
            if k * m + j < plan.nx:
                acc.add_(sg[k], alpha=plan.scale[k * m + j])


def _to_outputs(t: torch.Tensor, xt: TorchCrossbar, out: torch.Tensor) -> torch.Tensor:
    """Columns [b, cols] (shift-added) -> added into the outputs ``out`` (int64 [b, N]),
    each column times its coefficient; returns ``out``."""
    if xt.split is not None:  # the kept columns: each to its output with its coefficient
        t.mul_(xt.split_coef.to(t.device, t.dtype))
        return out.index_add_(1, xt.split_out, t.to(out.dtype))
    t = t.view(t.shape[0], len(xt.coef), xt.n)
    for qi in range(len(xt.coef)):
        out.add_(t[:, qi], alpha=xt.coef[qi])
    return out
