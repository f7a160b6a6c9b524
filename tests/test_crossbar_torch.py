"""Torch backend of the crossbar model: bit for bit the numpy reference."""

from __future__ import annotations

import typing

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cimdse import crossbar_torch
from cimdse import crossbar_torch as ct
from cimdse.arch import Encoding, Mapping
from cimdse.crossbar import CrossbarSpec, mvm, program
from cimdse.crossbar_torch import KERNELS, TorchCrossbar, int_mm
from cimdse.errors import CimdseError

MAPPINGS = list(typing.get_args(Mapping))
ENCODINGS = list(typing.get_args(Encoding))


def _rand(rng, b, k, n, w_bits, a_bits, signed=False):
    wmax = 2 ** (w_bits - 1) - 1
    lo, hi = (-(2 ** (a_bits - 1)), 2 ** (a_bits - 1)) if signed else (0, 2**a_bits)
    return rng.integers(lo, hi, (b, k)), rng.integers(-wmax, wmax + 1, (k, n))


def _both(x, w, spec, w_bits=8, kernel=None, pack=True, split=True, **kw):
    """numpy and torch results (the torch kernel forced where exact), or the torch
    backend's refusal of an unsupported mapping."""
    ref = mvm(x, w, spec, w_bits=w_bits, **kw)
    if spec.mapping not in crossbar_torch.MAPPINGS:
        with pytest.raises(CimdseError, match="not supported by the torch crossbar backend"):
            ct.mvm(x, w, spec, w_bits=w_bits, **kw)
        return ref, ref
    return ref, ct.mvm(x, ct.program(w, spec, w_bits, kernel=kernel, pack=pack, split=split), **kw)


@settings(max_examples=80, deadline=None)
@given(
    rows=st.integers(2, 40),
    cell_bits=st.integers(1, 8),
    dac_bits=st.integers(1, 8),
    adc=st.sampled_from([None, "full_range", "clip", "shift"]),
    adc_bits=st.integers(1, 9),
    shift=st.integers(0, 6),
    mapping=st.sampled_from(MAPPINGS),
    encoding=st.sampled_from(ENCODINGS),
    w_bits=st.integers(2, 8),
    a_bits=st.integers(1, 9),
    signed=st.booleans(),
    k=st.integers(1, 70),
    n=st.integers(1, 9),
    b=st.integers(1, 6),
    active=st.integers(2, 40),
    fast=st.booleans(),
    seed=st.integers(0, 2**31),
    kernel=st.sampled_from(KERNELS),
    pack=st.booleans(),
    split=st.booleans(),
)
def test_torch_backend_is_bit_exact(
    rows,
    cell_bits,
    dac_bits,
    adc,
    adc_bits,
    shift,
    mapping,
    encoding,
    w_bits,
    a_bits,
    signed,
    k,
    n,
    b,
    active,
    fast,
    seed,
    kernel,
    pack,
    split,
):
    """Random specs over every mapping and encoding, ADC mode (small ADCs saturate
    often), forced kernel (used where its bound holds; cell/DAC bits above 7 leave
    int8), packing, and signed inputs."""
    if encoding == "flip" and mapping == "differential-row":
        encoding = "plain"  # flip needs unsigned column sums
    conv = {"adc_bits": None} if adc is None else {"adc_bits": adc_bits, "adc_mode": shift if adc == "shift" else adc}
    spec = CrossbarSpec(
        rows=rows,
        cols=16,  # the narrowest that holds one 8-bit weight's columns at 1-bit cells
        cell_bits=cell_bits,
        dac_bits=dac_bits,
        mapping=mapping,
        encoding=encoding,
        active_rows=min(active, rows),
        **conv,
    )
    signed = signed and a_bits >= 2
    x, w = _rand(np.random.default_rng(seed), b, k, n, w_bits, a_bits, signed)
    ref, got = _both(
        x,
        w,
        spec,
        w_bits=w_bits,
        kernel=kernel,
        pack=pack,
        split=split,
        a_bits=a_bits,
        signed_inputs=signed,
        fast_path=fast,
    )
    np.testing.assert_array_equal(got, ref)


@settings(max_examples=25, deadline=None)
@given(
    mapping=st.sampled_from(MAPPINGS),
    flip=st.booleans(),
    adc_bits=st.sampled_from([None, 3, 6]),
    sigma=st.sampled_from([0.0, 0.05]),
    stuck=st.sampled_from([0.0, 0.02]),
    read=st.sampled_from([0.0, 0.03]),
    b=st.integers(1, 5),
    seed=st.integers(0, 1000),
)
def test_torch_backend_matches_seeded_nonidealities(mapping, flip, adc_bits, sigma, stuck, read, b, seed):
    conv = {"adc_bits": adc_bits} if adc_bits else {}
    if flip and mapping != "differential-row":
        conv["encoding"] = "flip"
    spec = CrossbarSpec(
        rows=16,
        cols=16,
        cell_bits=2,
        dac_bits=1,
        mapping=mapping,
        active_rows=8,
        nonideal={"conductance_sigma": sigma, "stuck_on_rate": stuck, "read_noise_sigma": read, "seed": seed},
        **conv,
    )
    x, w = _rand(np.random.default_rng(seed), b, 37, 5, 6, 4)
    ref, got = _both(x, w, spec, w_bits=6, a_bits=4, read_seed=seed + 3)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("kernel", KERNELS)
def test_saturating_clip_adc_by_hand(kernel):
    # 4 rows of 1-bit offset cells (stored g = w + 1 = 1), 2-bit clip ADC: p = 4 saturates to 3,
    # then the offset correction subtracts sum(x) = 4 -> -1 (as in the numpy model's test).
    spec = CrossbarSpec(rows=4, cols=8, cell_bits=1, dac_bits=1, adc_bits=2, adc_mode="clip", mapping="offset")
    xt = ct.program(np.zeros((4, 1), dtype=int), spec, 1, kernel=kernel)
    assert xt.kernel == kernel  # P_max = 4: every kernel is exact
    y = ct.mvm(torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]), xt, a_bits=1)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.int64
    assert y.tolist() == [[-1], [0]]


def test_lossless_columns_by_hand():
    # 4 rows of 1-bit cells (16 columns: an 8-bit weight's 14 fit), 1-bit DAC, 2-bit clip ADC
    # (codes 0..3). Output 0's W+ column holds four 1s (sums up to 4: saturates), output 1's
    # one 1 (sums up to 1: lossless); both W- columns are 0. Only output 0's W+ column stays in the sliced pipeline.
    spec = CrossbarSpec(rows=4, cols=16, cell_bits=1, dac_bits=1, adc_bits=2, adc_mode="clip")
    w = np.array([[1, 1], [1, 0], [1, 0], [1, 0]])
    xt = ct.program(w, spec, 2)
    assert xt.split.keep.tolist() == [0] and xt.split.dense[:, 1].tolist() == [1, 0, 0, 0]
    x = np.array([[1, 1, 1, 1], [1, 0, 0, 1]])
    assert ct.mvm(x, xt, a_bits=1).tolist() == [[3, 1], [2, 1]] == mvm(x, w, spec, w_bits=2, a_bits=1).tolist()
    # A 1-bit full-range ADC shifts by 2 (P_max 4 -> 3 bits): sums 0..1 round to code 0, so
    # output 1's W+ column (sums up to 1) and the zero W- columns add nothing; sums up to 4
    # (output 0) do not: codes (4 + 2) >> 2 = 1 and (2 + 2) >> 2 = 1, times 2^2.
    fr = spec.model_copy(update={"adc_bits": 1, "adc_mode": "full_range"})
    xt = ct.program(w, fr, 2)
    assert xt.split.keep.tolist() == [0] and not xt.split.dense.any()
    assert ct.mvm(x, xt, a_bits=1).tolist() == [[4, 0], [4, 0]] == mvm(x, w, fr, w_bits=2, a_bits=1).tolist()


@pytest.mark.parametrize("kernel", ["int8", "float32"])
def test_top_slice_of_8_bit_inputs_by_hand(kernel):
    # 3-bit DAC on 8-bit inputs: slices of 255 are 7, 7, 3 (bits 6-7 and a zero bit 8).
    # One row of cell 1, a 9-bit clip ADC that never saturates: y = 7 + 8 * 7 + 64 * 3 = 255.
    spec = CrossbarSpec(rows=4, cols=8, cell_bits=1, dac_bits=3, adc_bits=9, adc_mode="clip", mapping="offset")
    xt = ct.program(np.zeros((1, 1), dtype=int), spec, 1, kernel=kernel, split=False)  # cell = 0 + 1
    y = ct.mvm(np.array([[255], [128]]), xt, a_bits=8, fast_path=False)
    assert xt.kernel == kernel and (y + np.array([[255], [128]])).tolist() == [[255], [128]]


@pytest.mark.parametrize("kernel", ["int8", "float32", "float64"])
@pytest.mark.parametrize(
    "case, update, packed_adc",
    [
        # 64-row groups of 2-bit cells, 1-bit DAC, 6-bit full-range ADC (shift 2): codes <= 48, so 5
        # groups' codes sum in one 8-bit field; 600 rows = 10 groups, summed 5 at a time
        ("full range, 10 groups", {}, True),
        ("differential-row: bias", {"mapping": "differential-row"}, True),
        ("clip: saturates", {"adc_mode": "clip"}, False),
        ("ideal ADC: field sums need 8 bits", {"adc_bits": None}, False),
        ("5-bit slices: field by field", {"dac_bits": 5, "rows": 8}, True),
    ],
)
def test_fused_cpu_pipeline_branches(monkeypatch, kernel, case, update, packed_adc):
    """The CPU pipeline's branches (packed ADC and group sums, or field by field; the
    input rows' multiply spread, or field by field; several chunks), each kernel forced
    where exact, against the numpy model."""
    monkeypatch.setattr(crossbar_torch, "CPU_FUSED_BYTES", 2**15)  # several chunks
    spec = CrossbarSpec(rows=64, cols=64, cell_bits=2, dac_bits=1, adc_bits=6, adc_mode="full_range").model_copy(
        update=update
    )
    x, w = _rand(np.random.default_rng(3), 50, 600, 3, 8, 8)
    xt = ct.program(w, spec, 8, kernel=kernel, split=False)
    plan = ct._plan(xt, 8)
    fields = ct._fields(xt, plan)
    saturating = plan.s is not None and xt.saturates
    assert (not saturating and (fields.gmax >= 2 or xt.groups == 1)) == packed_adc, case
    if case.startswith("full range"):
        assert xt.groups == 10 and fields.gmax == 5 and (xt.kernel != "float32" or xt.layout.pack == 3)
    if case.startswith("5-bit") and xt.layout.pack > 1:
        assert fields.spread is None  # 2^(m d) values too many to prove the multiply spread
    np.testing.assert_array_equal(ct.mvm(x, xt, a_bits=8, fast_path=False), mvm(x, w, spec, a_bits=8))


def _layout(spec, kernel, pack=True):
    xt = ct.program(np.ones((10, 2), dtype=int), spec, 8, kernel=kernel, pack=pack)
    return xt.kernel, xt.layout.pack, xt.layout.row


@pytest.mark.parametrize(
    "rows, cells, dac, mapping, forced, expected",
    [
        # 256 rows, 2-bit cells, 1-bit DAC, 6-bit ADC: P_max = 256*1*3 = 768, s = 10 - 6 = 4,
        # h = 8: fields up to 776 (10 bits); float32 packs 24 // 10 = 2, float64 53 // 10 = 5;
        # float16 holds 776 <= 2^11; bfloat16 (2^8) does not.
        (256, 2, 1, "differential-column", "float32", ("float32", 2, 8)),
        (256, 2, 1, "differential-column", "float64", ("float64", 5, 8)),
        (256, 2, 1, "differential-column", "float16", ("float16", 1, 8)),
        (256, 2, 1, "differential-column", "int8", ("int8", 1, 8)),
        # 64 rows: P_max = 192, s = 2, h = 2: 194 (8 bits): float32 packs 3; bfloat16 holds 194 <= 2^8.
        (64, 2, 1, "offset", "float32", ("float32", 3, 2)),
        (64, 2, 1, "offset", "bfloat16", ("bfloat16", 1, 2)),
        # differential-row: signed sums in [-192, 192], one more ADC bit: s = 8 + 1 - 6 = 3, h = 4,
        # bias 192 (a multiple of 2^3): row 196, fields up to 388 (9 bits); float32 packs 2;
        # bfloat16 (256) is not exact, float16 is.
        (64, 2, 1, "differential-row", "float32", ("float32", 2, 196)),
        (64, 2, 1, "differential-row", "float16", ("float16", 1, 196)),
        # 255-valued cells: not int8; 64 * 255 + h fits float32.
        (64, 8, 1, "offset", "int8", ("float32", 1, None)),
    ],
)
def test_kernels_follow_bounds_worked_by_hand(rows, cells, dac, mapping, forced, expected):
    spec = CrossbarSpec(rows=rows, cols=256, cell_bits=cells, dac_bits=dac, adc_bits=6, mapping=mapping)
    kernel, pack, row = _layout(spec, forced)
    assert kernel == expected[0] if expected[2] is not None else kernel != "int8"
    if expected[2] is not None:
        assert (pack, row) == expected[1:]


def test_kernel_falls_back_where_the_forced_one_is_not_exact():
    # bfloat16 holds integers to 256 only: 776 is out of its range, so the measured choice runs
    spec = CrossbarSpec(rows=256, cols=256, cell_bits=2, dac_bits=1, adc_bits=6)
    assert _layout(spec, "bfloat16")[0] != "bfloat16"
    # P_max = 4096 * 255 * 255 > 2^24: float64 only (no packing room: 2^32 needs 33 bits, 53 // 33 = 1).
    big = CrossbarSpec(rows=4096, cols=64, adc_bits=6, cell_bits=8, dac_bits=8)
    assert _layout(big, "float32")[:2] == ("float64", 1)
    noisy = CrossbarSpec(rows=64, cols=64, adc_bits=6, nonideal={"conductance_sigma": 0.1})
    assert TorchCrossbar(program(np.ones((10, 2), dtype=int), noisy, 8)).kernel == "float64"


def test_kernel_override_from_the_environment(monkeypatch):
    spec = CrossbarSpec(rows=64, cols=64, cell_bits=2, dac_bits=1, adc_bits=6)
    for kernel in KERNELS:
        monkeypatch.setenv(ct.ENV_KERNEL, kernel)
        assert ct.program(np.ones((10, 2), dtype=int), spec, 8).kernel == kernel
    monkeypatch.setenv(ct.ENV_KERNEL, "int4")
    with pytest.raises(CimdseError, match="CIMDSE_GEMM='int4': expected one of int8, float32"):
        ct.program(np.ones((10, 2), dtype=int), spec, 8)


def test_int8_needs_the_probe_where_int16_pair_sums_could_saturate(monkeypatch):
    # A CPU without VNNI (oneDNN's AVX2 int8 GEMM, e.g. ONEDNN_MAX_CPU_ISA=AVX2) adds pairs
    # of (x + 128) * w in saturating int16: 2 * (1 + 128) * 8 = 2,064 cannot saturate (1-bit
    # DAC, 2-bit cells, offset row 8), 2 * (127 + 128) * 127 = 64,770 can.
    monkeypatch.setattr(crossbar_torch, "int8_full_range", lambda device=None: False)
    ok = CrossbarSpec(rows=256, cols=256, cell_bits=2, dac_bits=1, adc_bits=6)
    assert _layout(ok, "int8")[0] == "int8"
    wide = CrossbarSpec(rows=8, cols=256, cell_bits=7, dac_bits=7, adc_bits=6)
    assert _layout(wide, "int8")[0] != "int8"
    monkeypatch.setenv(ct.ENV_KERNEL, "int8")
    x, w = _rand(np.random.default_rng(1), 5, 40, 3, 8, 8)
    xt = ct.program(w, CrossbarSpec(rows=64, cols=64), 8)
    assert xt.lossless_operands(8)[0] != "int8"  # 8-bit inputs x 8-bit weights: the probe decides
    np.testing.assert_array_equal(ct.mvm(x, xt, a_bits=8), x @ w)


def test_int8_probe_is_cached():
    assert isinstance(ct.int8_full_range("cpu"), bool)
    assert "cpu" in ct._INT8_FULL


def test_calibration_measures_every_kernel_once():
    times = ct.gemm_times("cpu")
    assert set(times) == set(KERNELS) and all(t > 0 for t in times.values())
    assert ct.gemm_times("cpu") is times  # cached per process


@pytest.mark.parametrize("kernel", ["int8", "float32", "float64"])
def test_lossless_path_centres_operands_exactly(monkeypatch, kernel):
    # a = 8 inputs reach 255 (> int8): the int8 product runs on x - 128 and adds 128 * sum_k w back.
    # Offset weights are stored as g = w + 128 in [1, 255]: centred by 128 too.
    # K = 200: 200 * 255 * 255 < 2^24 (offset weights stored up to 255), so float32 is exact too.
    monkeypatch.setenv(ct.ENV_KERNEL, kernel)
    rng = np.random.default_rng(4)
    x, w = _rand(rng, 9, 200, 7, 8, 8)
    for mapping in MAPPINGS:
        spec = CrossbarSpec(rows=128, cols=64, mapping=mapping)
        xt = ct.program(w, spec, 8)
        if kernel != "int8" or ct.int8_full_range("cpu"):
            assert xt.lossless_operands(8)[0] == kernel
        else:  # a CPU whose int8 GEMM can saturate on 8-bit operands (no VNNI): not used here
            assert xt.lossless_operands(8)[0] != "int8"
        np.testing.assert_array_equal(ct.mvm(x, xt, a_bits=8), x @ w)
    x16 = rng.integers(0, 2**16, (3, 200))
    spec = CrossbarSpec(rows=128, cols=64)
    assert ct.program(w, spec, 8).lossless_operands(16)[0] == "float64"
    np.testing.assert_array_equal(ct.mvm(x16, w, spec, a_bits=16), x16 @ w)


def test_lossless_path_centres_inputs_where_int_mm_takes_int8_only(monkeypatch):
    # CUDA's _int_mm takes int8 only: 8-bit inputs run as x - 128, and 128 * sum_k w is added back.
    if not ct.int8_full_range("cpu"):
        pytest.skip("this CPU's int8 GEMM is not exact over the whole int8 range (no VNNI)")
    monkeypatch.setattr(crossbar_torch, "uint8_inputs", lambda device: False)
    monkeypatch.setenv(ct.ENV_KERNEL, "int8")
    x, w = _rand(np.random.default_rng(5), 6, 90, 4, 8, 8)
    for mapping in MAPPINGS:
        xt = ct.program(w, CrossbarSpec(rows=64, cols=64, mapping=mapping), 8)
        assert xt.lossless_operands(8)[2] == 128
        np.testing.assert_array_equal(ct.mvm(x, xt, a_bits=8), x @ w)


def test_padded_int_mm_matches_unpadded():
    # The CUDA shape rules (rows > 16, K and N multiples of 8) are met by zero padding.
    gen = torch.Generator().manual_seed(0)
    for m, k, n in [(1, 1, 1), (5, 13, 3), (40, 64, 17)]:  # small operands: exact without VNNI too
        a = torch.randint(-8, 9, (m, k), dtype=torch.int8, generator=gen)
        b = torch.randint(-8, 9, (k, n), dtype=torch.int8, generator=gen)
        out = int_mm(a, b, pad=True)
        assert out.shape == (m, n)
        assert torch.equal(out.long(), a.long() @ b.long())


@pytest.mark.parametrize("adc", [{"adc_bits": 6}, {"adc_bits": 3, "adc_mode": "clip"}, {}])
def test_cublaslt_layout_runs_on_cpu_too(monkeypatch, adc):
    # CUDA's int8 layout (K and columns zero-padded to multiples of 8, B column-major), run
    # on CPU: 5 outputs x 4 cells x 2 polarities = 40 columns; 37 rows of 16-row groups
    # give groups of 16 (+1 offset row) -> K' = 24.
    monkeypatch.setattr(crossbar_torch, "cublaslt_layout", lambda device: True)
    spec = CrossbarSpec(rows=16, cols=64, cell_bits=2, dac_bits=1, **adc)
    x, w = _rand(np.random.default_rng(9), 21, 37, 5, 8, 8)
    for n in (5, 3):  # 40 and 24 columns, K' = 24
        xt = ct.program(w[:, :n], spec, 8, kernel="int8", split=False)
        assert xt.kernel == "int8" and xt.weights.stride(1) == 1 and xt.k_gemm % 8 == 0
        np.testing.assert_array_equal(ct.mvm(x, xt, a_bits=8, fast_path=False), mvm(x, w[:, :n], spec))
    for kernel in ("float32", "float16"):  # padded too (tensor cores), row-major
        xt = ct.program(w, spec.model_copy(update={"cell_bits": 3}), 8, kernel=kernel, split=False)
        assert xt.kernel == kernel and xt.k_gemm % 8 == 0 and xt.weights.shape[2] == 32
        np.testing.assert_array_equal(
            ct.mvm(x, xt, a_bits=8, fast_path=False), mvm(x, w, spec.model_copy(update={"cell_bits": 3}))
        )
    spec3 = spec.model_copy(update={"cell_bits": 3})  # 3 cells x 2 polarities x 5 = 30 columns -> 32
    xt = ct.program(w, spec3, 8, kernel="int8", split=False)
    assert xt.weights.shape[2] == 32
    np.testing.assert_array_equal(ct.mvm(x, xt, a_bits=8, fast_path=False), mvm(x, w, spec3))


def test_column_major_keeps_values():
    b = torch.arange(12, dtype=torch.int8).view(3, 4)
    cm = ct.column_major(b)
    assert cm.stride() == (1, 3) and torch.equal(cm, b)
    assert ct.column_major(cm) is cm


def test_unsupported_mapping_raises(monkeypatch):
    monkeypatch.setattr(crossbar_torch, "MAPPINGS", frozenset({"offset"}))
    spec = CrossbarSpec(rows=8, cols=8, mapping="differential-row")
    with pytest.raises(CimdseError, match="mapping 'differential-row' is not supported by the torch"):
        ct.mvm(np.ones((1, 3), dtype=int), np.ones((3, 2), dtype=int), spec)


@pytest.mark.parametrize(
    "x, msg",
    [
        (np.full((1, 3), 300), "inputs must lie in"),
        (np.ones((1, 4), dtype=int), "inputs must be"),
        (np.ones((1, 3)), "inputs must be an integer array"),
    ],
)
def test_bad_inputs_are_rejected(x, msg):
    with pytest.raises(CimdseError, match=msg):
        ct.mvm(x, np.ones((3, 2), dtype=int), CrossbarSpec(rows=8, cols=8))


@pytest.mark.parametrize(
    "x, signed, a_bits, msg",
    [
        (np.full((2, 3), 8), True, 4, "signed inputs must lie in [-8, 7] for 4 bits; got [8, 8]"),
        (np.full((2, 3), -1), False, 4, "inputs must lie in [0, 15] for 4 bits; got [-1, -1]"),
        (np.ones((2, 4), dtype=int), False, 4, "inputs must be [B, 3], got shape (2, 4)"),
        (np.ones((2, 3), dtype=int), False, 17, "a_bits must be in 1..16, got 17"),
    ],
)
def test_both_backends_reject_bad_inputs_with_the_same_message(x, signed, a_bits, msg):
    spec, w = CrossbarSpec(rows=8, cols=8), np.ones((3, 2), dtype=int)
    for run in (mvm, ct.mvm):
        with pytest.raises(CimdseError) as err:
            run(x, w, spec, a_bits=a_bits, signed_inputs=signed)
        assert str(err.value) == msg, run


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("kernel", KERNELS)
def test_cuda_matches_numpy(monkeypatch, kernel):
    monkeypatch.setenv(ct.ENV_KERNEL, kernel)
    rng = np.random.default_rng(7)
    for mapping in MAPPINGS:
        for adc in ({"adc_bits": 6}, {"adc_bits": 4, "adc_mode": "clip"}, {}):
            spec = CrossbarSpec(rows=64, cols=64, cell_bits=2, dac_bits=1, mapping=mapping, active_rows=32, **adc)
            x, w = _rand(rng, 33, 150, 11, 8, 8)
            xt = ct.program(w, spec, 8, device="cuda")
            y = ct.mvm(torch.from_numpy(x).cuda(), xt, a_bits=8)
            assert y.is_cuda
            np.testing.assert_array_equal(y.cpu().numpy(), mvm(x, w, spec))
            np.testing.assert_array_equal(ct.mvm(x, xt, a_bits=8, fast_path=False), mvm(x, w, spec))


@cuda
@pytest.mark.parametrize("m, k", [(1360, 64), (5456, 80), (65536, 64), (65536, 80), (17, 8), (1, 3), (1000, 257)])
def test_cuda_int_mm_at_awkward_shapes(m, k):
    # cuBLASLt rejected a row-major int8 B at m = 1360, 5456, 65536 with k = 64, 80
    gen = torch.Generator().manual_seed(m + k)
    for n in (24, 40, 7):
        a = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=gen)
        b = torch.randint(-127, 128, (k, n), dtype=torch.int8, generator=gen)
        got = int_mm(a.cuda(), b.cuda())
        assert torch.equal(got.cpu().long(), a.long() @ b.long())


@cuda
def test_cuda_network_shapes_run_every_kernel(monkeypatch):
    # a 64-row array with 1360 and 5456 vectors (k = 64 and 80 after grouping)
    spec = CrossbarSpec(rows=64, cols=64, cell_bits=2, dac_bits=1, adc_bits=6)
    rng = np.random.default_rng(3)
    for kernel in KERNELS:
        monkeypatch.setenv(ct.ENV_KERNEL, kernel)
        for b, k in ((1360, 64), (5456, 80)):
            x, w = _rand(rng, b, k, 9, 8, 8)
            got = ct.mvm(torch.from_numpy(x).cuda(), ct.program(w, spec, 8, device="cuda"), a_bits=8)
            np.testing.assert_array_equal(got.cpu().numpy(), mvm(x, w, spec))
