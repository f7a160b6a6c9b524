"""Torch backend of the crossbar model: bit for bit the numpy reference."""

from __future__ import annotations

import typing

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cimdse import crossbar_torch
from cimdse.arch import Encoding, Mapping
from cimdse.crossbar import CrossbarSpec, mvm, program
from cimdse.crossbar_torch import TorchCrossbar, int_mm
from cimdse.errors import CimdseError

MAPPINGS = list(typing.get_args(Mapping))
ENCODINGS = list(typing.get_args(Encoding))


def _rand(rng, b, k, n, w_bits, a_bits, signed=False):
    wmax = 2 ** (w_bits - 1) - 1
    lo, hi = (-(2 ** (a_bits - 1)), 2 ** (a_bits - 1)) if signed else (0, 2**a_bits)
    return rng.integers(lo, hi, (b, k)), rng.integers(-wmax, wmax + 1, (k, n))


def _both(x, w, spec, **kw):
    """numpy and torch results, or the torch backend's refusal of an unsupported mapping."""
    ref = mvm(x, w, spec, **kw)
    if spec.mapping not in crossbar_torch.MAPPINGS:
        with pytest.raises(CimdseError, match="not supported by the torch crossbar backend"):
            mvm(x, w, spec, backend="torch", **kw)
        return ref, ref
    return ref, mvm(x, w, spec, backend="torch", **kw)


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
):
    """Random specs over every mapping and encoding, ADC mode (small ADCs saturate
    often), kernel (cell/DAC bits above 7 leave int8) and signed inputs."""
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
    ref, got = _both(x, w, spec, w_bits=w_bits, a_bits=a_bits, signed_inputs=signed, fast_path=fast)
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


def test_saturating_clip_adc_by_hand():
    # 4 rows of 1-bit offset cells (stored g = w + 1 = 1), 2-bit clip ADC: p = 4 saturates to 3,
    # then the offset correction subtracts sum(x) = 4 -> -1 (as in the numpy model's test).
    spec = CrossbarSpec(rows=4, cols=8, cell_bits=1, dac_bits=1, adc_bits=2, adc_mode="clip", mapping="offset")
    y = mvm(
        torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
        np.zeros((4, 1), dtype=int),
        spec,
        w_bits=1,
        a_bits=1,
        backend="torch",
    )
    assert isinstance(y, torch.Tensor) and y.dtype == torch.int64
    assert y.tolist() == [[-1], [0]]


def test_kernels_are_chosen_by_exactness_bound():
    base = dict(rows=64, cols=64, adc_bits=6)
    w = np.ones((10, 2), dtype=int)
    assert TorchCrossbar(program(w, CrossbarSpec(**base, cell_bits=2, dac_bits=1), 8)).kernel == "int8"
    # 255-valued cells do not fit int8; P_max = 64 * 1 * 255 < 2^24 fits float32.
    assert TorchCrossbar(program(w, CrossbarSpec(**base, cell_bits=8, dac_bits=1), 8)).kernel == "float32"
    # P_max = 4096 * 255 * 255 > 2^24: float64.
    big = CrossbarSpec(rows=4096, cols=64, adc_bits=6, cell_bits=8, dac_bits=8)
    assert TorchCrossbar(program(w, big, 8)).kernel == "float64"
    noisy = CrossbarSpec(**base, nonideal={"conductance_sigma": 0.1})
    assert TorchCrossbar(program(w, noisy, 8)).kernel == "float64"


def test_lossless_path_centres_operands_exactly():
    # a = 8 inputs reach 255 (> int8): the product runs on x - 128 and adds 128 * sum_k w back.
    # Offset weights are stored as g = w + 128 in [1, 255]: centred by 128 too.
    rng = np.random.default_rng(4)
    x, w = _rand(rng, 9, 300, 7, 8, 8)
    for mapping in MAPPINGS:
        spec = CrossbarSpec(rows=128, cols=64, mapping=mapping)
        xt = program(w, spec, 8, backend="torch")
        assert xt.lossless_operands(8)[0] == "int8"
        np.testing.assert_array_equal(mvm(x, xt, a_bits=8), x @ w)
    x16 = rng.integers(0, 2**16, (3, 300))
    spec = CrossbarSpec(rows=128, cols=64)
    assert program(w, spec, 8, backend="torch").lossless_operands(16)[0] == "float64"
    np.testing.assert_array_equal(mvm(x16, w, spec, a_bits=16, backend="torch"), x16 @ w)


def test_lossless_path_centres_inputs_where_int_mm_takes_int8_only(monkeypatch):
    # CUDA's _int_mm takes int8 only: 8-bit inputs run as x - 128, and 128 * sum_k w is added back.
    monkeypatch.setattr(crossbar_torch, "uint8_inputs", lambda device: False)
    x, w = _rand(np.random.default_rng(5), 6, 90, 4, 8, 8)
    for mapping in MAPPINGS:
        xt = program(w, CrossbarSpec(rows=64, cols=64, mapping=mapping), 8, backend="torch")
        assert xt.lossless_operands(8)[2] == 128
        np.testing.assert_array_equal(mvm(x, xt, a_bits=8), x @ w)


def test_padded_int_mm_matches_unpadded():
    # The CUDA shape rules (rows > 16, K and N multiples of 8) are met by zero padding.
    gen = torch.Generator().manual_seed(0)
    for m, k, n in [(1, 1, 1), (5, 13, 3), (40, 64, 17)]:
        a = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=gen)
        b = torch.randint(-127, 128, (k, n), dtype=torch.int8, generator=gen)
        out = int_mm(a, b, pad=True)
        assert out.shape == (m, n)
        assert torch.equal(out.long(), a.long() @ b.long())


def test_unsupported_mapping_raises(monkeypatch):
    monkeypatch.setattr(crossbar_torch, "MAPPINGS", frozenset({"offset"}))
    spec = CrossbarSpec(rows=8, cols=8, mapping="differential-row")
    with pytest.raises(CimdseError, match="mapping 'differential-row' is not supported by the torch"):
        mvm(np.ones((1, 3), dtype=int), np.ones((3, 2), dtype=int), spec, backend="torch")


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
        mvm(x, np.ones((3, 2), dtype=int), CrossbarSpec(rows=8, cols=8), backend="torch")


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
    for backend in ("numpy", "torch"):
        with pytest.raises(CimdseError) as err:
            mvm(x, w, spec, a_bits=a_bits, signed_inputs=signed, backend=backend)
        assert str(err.value) == msg, backend


def test_unknown_backend_is_rejected():
    with pytest.raises(CimdseError, match="backend must be"):
        mvm(np.ones((1, 3), dtype=int), np.ones((3, 2), dtype=int), CrossbarSpec(rows=8, cols=8), backend="jax")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_numpy():
    rng = np.random.default_rng(7)
    for mapping in MAPPINGS:
        for adc in ({"adc_bits": 6}, {"adc_bits": 4, "adc_mode": "clip"}, {}):
            spec = CrossbarSpec(rows=64, cols=64, cell_bits=2, dac_bits=1, mapping=mapping, active_rows=32, **adc)
            x, w = _rand(rng, 33, 150, 11, 8, 8)
            xt = program(w, spec, 8, backend="torch", device="cuda")
            y = mvm(torch.from_numpy(x).cuda(), xt, a_bits=8)
            assert y.is_cuda
            np.testing.assert_array_equal(y.cpu().numpy(), mvm(x, w, spec))
