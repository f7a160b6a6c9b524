"""Functional crossbar model: exactness, ADC semantics, signed inputs, non-idealities."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cimdse.crossbar import (
    CrossbarSpec,
    adc,
    adc_shift,
    cells_per_weight,
    mvm,
    partial_sum_max,
    program,
)
from cimdse.errors import CimdseError

MAPPINGS = ["differential-column", "differential-row", "offset"]


def _rand(rng, b, k, n, w_bits, a_bits):
    wmax = 2 ** (w_bits - 1) - 1
    return rng.integers(0, 2**a_bits, (b, k)), rng.integers(-wmax, wmax + 1, (k, n))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(2, 40),
    extra_cols=st.integers(0, 26),
    cell_bits=st.integers(1, 4),
    dac_bits=st.integers(1, 3),
    mapping=st.sampled_from(MAPPINGS),
    w_bits=st.integers(2, 8),
    a_bits=st.integers(1, 8),
    k=st.integers(1, 70),
    n=st.integers(1, 9),
    b=st.integers(1, 6),
    active=st.integers(2, 40),
    seed=st.integers(0, 2**31),
)
def test_ideal_adc_is_exact_product(
    rows, extra_cols, cell_bits, dac_bits, mapping, w_bits, a_bits, k, n, b, active, seed
):
    # the narrowest crossbar a spec may have holds one output of an 8-bit weight
    cols = (2 if mapping == "differential-column" else 1) * -(-(8 if mapping == "offset" else 7) // cell_bits)
    cols += extra_cols
    spec = CrossbarSpec(
        rows=rows, cols=cols, cell_bits=cell_bits, dac_bits=dac_bits, mapping=mapping, active_rows=min(active, rows)
    )
    x, w = _rand(np.random.default_rng(seed), b, k, n, w_bits, a_bits)
    expected = x @ w
    # The sliced pipeline (per row group, slice and polarity) and the fast path agree.
    np.testing.assert_array_equal(mvm(x, w, spec, w_bits=w_bits, a_bits=a_bits, fast_path=False), expected)
    np.testing.assert_array_equal(mvm(x, w, spec, w_bits=w_bits, a_bits=a_bits), expected)


@settings(max_examples=30, deadline=None)
@given(mapping=st.sampled_from(MAPPINGS), a_bits=st.integers(2, 8), seed=st.integers(0, 2**31))
def test_signed_inputs_use_offset_encoding_exactly(mapping, a_bits, seed):
    rng = np.random.default_rng(seed)
    spec = CrossbarSpec(rows=16, cols=32, cell_bits=2, dac_bits=1, mapping=mapping)
    half = 2 ** (a_bits - 1)
    x = rng.integers(-half, half, (4, 23))
    w = rng.integers(-7, 8, (23, 5))
    y = mvm(x, w, spec, w_bits=4, a_bits=a_bits, signed_inputs=True, fast_path=False)
    np.testing.assert_array_equal(y, x @ w)


def test_lossless_finite_adc_is_exact():
    # 8 active rows, 1-bit DAC, 2-bit cells: P_max = 24 fits a 5-bit clip ADC.
    spec = CrossbarSpec(rows=32, cols=32, cell_bits=2, dac_bits=1, adc_bits=5, adc_mode="clip", active_rows=8)
    x, w = _rand(np.random.default_rng(1), 7, 50, 6, 8, 8)
    np.testing.assert_array_equal(mvm(x, w, spec, fast_path=False), x @ w)


def test_full_range_shift_formula():
    spec = CrossbarSpec(rows=64, cols=64, cell_bits=2, dac_bits=1, adc_bits=6, adc_mode="full_range")
    assert partial_sum_max(spec) == 64 * 1 * 3 == 192
    assert adc_shift(spec) == 8 - 6  # bitlen(192) = 8
    signed = spec.model_copy(update={"mapping": "differential-row"})
    assert adc_shift(signed) == 8 + 1 - 6
    assert adc_shift(spec.model_copy(update={"adc_mode": "clip"})) == 0
    assert adc_shift(spec.model_copy(update={"adc_mode": 3})) == 3


def test_adc_rounds_half_up_and_saturates_by_hand():
    spec = CrossbarSpec(rows=64, cols=64, cell_bits=2, dac_bits=1, adc_bits=6, adc_mode="full_range")  # s = 2
    p = np.array([0, 1, 2, 3, 5, 6, 7, 190, 192, 251, 252], dtype=float)
    # code = min((p + 2) >> 2, 63), value = code << 2
    expected = np.array([0, 0, 4, 4, 4, 8, 8, 192, 192, 252, 252], dtype=float)
    np.testing.assert_array_equal(adc(p, spec), expected)
    clip = spec.model_copy(update={"adc_mode": "clip"})  # s = 0, saturate at 63
    np.testing.assert_array_equal(adc(np.array([0.0, 62, 63, 64, 190]), clip), [0, 62, 63, 63, 63])
    signed = spec.model_copy(update={"mapping": "differential-row", "adc_mode": "clip", "adc_bits": 4})
    np.testing.assert_array_equal(adc(np.array([-20.0, -8, -3, 7, 9]), signed), [-8, -8, -3, 7, 7])


def test_clip_adc_by_hand_on_one_crossbar():
    # One row group of 4 rows, 1-bit cells and inputs, 2-bit clip ADC: column sums saturate at 3.
    spec = CrossbarSpec(rows=4, cols=8, cell_bits=1, dac_bits=1, adc_bits=2, adc_mode="clip", mapping="offset")
    w = np.array([[0], [0], [0], [0]])  # 1-bit offset: stored g = w + 1 = 1 on every row
    x = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    # p = 4 saturates to 3 for the first vector; offset correction subtracts sum(x) = 4 -> -1.
    np.testing.assert_array_equal(mvm(x, w, spec, w_bits=1, a_bits=1), [[-1], [0]])


def test_full_range_adc_loses_only_rounding():
    spec = CrossbarSpec(rows=64, cols=64, cell_bits=2, dac_bits=1, adc_bits=6, adc_mode="full_range")
    x, w = _rand(np.random.default_rng(3), 16, 64, 8, 8, 8)
    y = mvm(x, w, spec)
    assert not np.array_equal(y, x @ w)
    # Each (slice, cell) term is off by at most 2 (half of 2^s), weighted by 2^(i + 2j), twice (two polarities).
    bound = 2 * sum(2 ** (i + 2 * j) * 2 for i in range(8) for j in range(cells_per_weight(spec, 8)))
    assert np.abs(y - x @ w).max() <= bound


def test_programmed_matrix_layout():
    spec = CrossbarSpec(rows=8, cols=16, cell_bits=2, dac_bits=1)
    w = np.array([[5, -3], [0, 7]])  # 4-bit weights: magnitude 3 bits -> 2 cells
    xb = program(w, spec, 4)
    m = xb.physical_matrix()
    assert m.shape == (2, 2 * 2 * 2)
    # output 0: W+ slices (5 = 01|01) then W- slices (0)
    np.testing.assert_array_equal(m[0, :4], [1, 1, 0, 0])
    # output 1: W+ = 0, W- = 3 = 11|00
    np.testing.assert_array_equal(m[0, 4:], [0, 0, 3, 0])
    blocks = xb.crossbar_blocks()
    assert list(blocks) == [(0, 0)] and blocks[(0, 0)].shape == (8, 16)


def test_count_sign_bit_adds_a_cell():
    spec = CrossbarSpec(rows=8, cols=8, cell_bits=4, dac_bits=1, count_sign_bit=True)
    assert cells_per_weight(spec, 8) == 2
    assert cells_per_weight(spec.model_copy(update={"count_sign_bit": False}), 8) == 2  # ceil(7/4)
    assert cells_per_weight(spec, 4) == 1 and cells_per_weight(spec.model_copy(update={"cell_bits": 2}), 4) == 2


def test_nonidealities_are_seeded_and_zero_when_off():
    base = dict(rows=32, cols=32, cell_bits=2, dac_bits=1, adc_bits=8)
    x, w = _rand(np.random.default_rng(5), 8, 40, 4, 6, 4)
    ideal = mvm(x, w, CrossbarSpec(**base), w_bits=6, a_bits=4)
    zero = CrossbarSpec(**base, nonideal={"conductance_sigma": 0, "stuck_on_rate": 0, "read_noise_sigma": 0, "seed": 9})
    np.testing.assert_array_equal(mvm(x, w, zero, w_bits=6, a_bits=4), ideal)
    noisy = CrossbarSpec(
        **base, nonideal={"conductance_sigma": 0.1, "stuck_off_rate": 0.01, "read_noise_sigma": 0.02, "seed": 9}
    )
    a = mvm(x, w, noisy, w_bits=6, a_bits=4)
    b = mvm(x, w, noisy, w_bits=6, a_bits=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, ideal)
    other = noisy.model_copy(update={"nonideal": noisy.nonideal.model_copy(update={"seed": 10})})
    assert not np.array_equal(mvm(x, w, other, w_bits=6, a_bits=4), a)


def test_stuck_on_cells_read_as_maximum():
    spec = CrossbarSpec(rows=8, cols=8, cell_bits=2, dac_bits=1, nonideal={"stuck_on_rate": 1.0})
    xb = program(np.zeros((4, 1), dtype=int), spec, 3)
    assert np.all(xb.conductance == 3.0)


@pytest.mark.parametrize(
    "x, w, msg",
    [
        (np.full((1, 3), 300), np.ones((3, 2), dtype=int), "inputs must lie in"),
        (np.ones((1, 3), dtype=int), np.full((3, 2), 200), "weights must lie in"),
        (np.ones((1, 4), dtype=int), np.ones((3, 2), dtype=int), "inputs must be"),
    ],
)
def test_out_of_range_operands_are_rejected(x, w, msg):
    with pytest.raises(CimdseError, match=msg):
        mvm(x, w, CrossbarSpec(rows=8, cols=8), w_bits=8, a_bits=8)
