"""Policies (cimdse.policy): every format loads to the same [L, 2] array; every problem
is named; the bit ranges per use are the ones every module applies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from cimdse import policy as pol
from cimdse.compiler import trace_spec
from cimdse.errors import CimdseError
from cimdse.policy import check_policy, load_policy, parse_bits, uniform_policy

NAMES = ["features.0", "features.3", "classifier.1", "classifier.3"]
EXPECTED = np.array([[8, 8], [4, 6], [2, 3], [8, 1]])


@pytest.fixture(scope="module")
def lenet():
    net = trace_spec("lenet")
    assert net.names == NAMES
    return net


@pytest.mark.parametrize(
    "filename, text",
    [
        ("p.yaml", "features.0: [8, 8]\nfeatures.3: [4, 6]\nclassifier.1: [2, 3]\nclassifier.3: [8, 1]\n"),
        (
            "p.yml",
            "features.0: {w_bits: 8, a_bits: 8}\nfeatures.3: {a_bits: 6, w_bits: 4}\n"
            "classifier.1: {w_bits: 2, a_bits: 3}\nclassifier.3: {w_bits: 8, a_bits: 1}\n",
        ),
        ("p.json", json.dumps(dict(zip(NAMES, EXPECTED.tolist(), strict=True)))),
        ("p.json", json.dumps(EXPECTED.tolist())),
        ("p.yaml", "- [8, 8]\n- [4, 6]\n- [2, 3]\n- [8, 1]\n"),
        ("p.yaml", "classifier.3: [8, 1]\nclassifier.1: [2, 3]\nfeatures.3: [4, 6]\nfeatures.0: [8, 8]\n"),
    ],
)
def test_text_formats(tmp_path, lenet, filename, text):
    path = tmp_path / filename
    path.write_text(text)
    np.testing.assert_array_equal(load_policy(path, lenet), EXPECTED)
    np.testing.assert_array_equal(load_policy(str(path), NAMES), EXPECTED)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float64])
def test_npy_haq_format(tmp_path, lenet, dtype):
    path = tmp_path / "strategy.npy"
    np.save(path, EXPECTED.astype(dtype))
    got = load_policy(path, lenet.layers)
    np.testing.assert_array_equal(got, EXPECTED)
    assert got.dtype == np.int64


@pytest.mark.parametrize(
    "filename, content, message",
    [
        ("p.yaml", "- [8, 8]\n- [4, 6]\n", "has 2 layers, the network has 4"),
        ("p.yaml", "conv1: [4, 4]\n", r"unknown layer name\(s\) \['conv1'\]"),
        ("p.yaml", "features.0: [8, 8]\n", r"no bit widths for 3 layer\(s\)"),
        ("p.yaml", "- [8, 8]\n- [4, 9]\n- [2, 3]\n- [8, 1]\n", "entry 1: a_bits = 9 outside 1..8"),
        ("p.yaml", "- [0, 8]\n- [4, 6]\n- [2, 3]\n- [8, 1]\n", "entry 0: w_bits = 0 outside 1..8"),
        ("p.yaml", "- [8, 8, 8]\n", r"expected \[w_bits, a_bits\]"),
        ("p.yaml", "- [8.5, 8]\n", "whole numbers"),
        ("p.yaml", "- [true, 8]\n", "whole numbers"),
        ("p.yaml", "- {w: 8, a: 8}\n", r"expected \{w_bits: W, a_bits: A\}"),
        ("p.yaml", "just text\n", "expected a mapping"),
        ("p.yaml", "[]\n", "the policy is empty"),
        ("p.yaml", "a: [1, 2\n", "malformed YAML"),
        ("p.json", "{", "malformed JSON"),
        ("p.npy", "not an array", "not a readable .npy"),
    ],
)
def test_text_errors_name_file_and_problem(tmp_path, lenet, filename, content, message):
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(CimdseError, match=message) as info:
        load_policy(path, lenet)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((3, 2), 4), "has 3 layers, the network has 4"),
        (np.full(4, 4), r"expected shape \[layers, 2\]"),
        (np.full((4, 3), 4), r"expected shape \[layers, 2\]"),
        (np.array([[8, 8], [4, 6], [2, 3], [8, 12]]), r"layer 3 \(classifier.3\): a_bits = 12 outside 1..8"),
        (np.array([[8, 8], [4.5, 6], [2, 3], [8, 1]]), "whole numbers"),
        (np.array([[True, True]] * 4), "integer bit widths"),
    ],
)
def test_npy_errors(tmp_path, lenet, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(CimdseError, match=message):
        load_policy(path, lenet)


def test_missing_file_and_pickled_npy(tmp_path, lenet):
    with pytest.raises(CimdseError, match="no such policy file"):
        load_policy(tmp_path / "nope.yaml", lenet)
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CimdseError, match="not a readable .npy"):
        load_policy(path, lenet)


def test_uniform_bits_and_batches():
    np.testing.assert_array_equal(uniform_policy(4, 8, 3), [[4, 8]] * 3)
    assert parse_bits("4,8") == (4, 8) and parse_bits("4") == (4, 4) and parse_bits("2/3") == (2, 3)
    for bad, msg in [("4,9", "outside 1..8"), ("a,b", "expected W,A"), ("1,2,3", "two numbers")]:
        with pytest.raises(CimdseError, match=msg):
            parse_bits(bad)
    with pytest.raises(CimdseError, match="outside 1..8"):
        uniform_policy(0, 8, 3)
    batch = check_policy(np.ones((5, 3, 2)), 3)
    assert batch.shape == (5, 3, 2) and batch.dtype == np.int64


def test_one_source_of_bit_ranges():
    """The compiler maps 1..8 bits; quantization needs weights of 2 bits or more (a
    symmetric 1-bit grid is {0}); a search range must be quantizable in both columns."""
    assert (pol.COST.w_bits, pol.COST.a_bits) == ((1, 8), (1, 8))
    assert (pol.QUANT.w_bits, pol.QUANT.a_bits) == ((2, 8), (1, 8))
    assert parse_bits("1,1") == (1, 1)
    with pytest.raises(CimdseError, match=r"--bits '1,4': w_bits = 1 outside 2\.\.8 \(the widths quantization"):
        parse_bits("1,4", pol.QUANT)
    assert parse_bits("2,1", pol.QUANT) == (2, 1)
    pol.check_search_range(2, 8)
    pol.check_search_range(5, 5)
    for lo, hi in ((1, 1), (1, 8), (3, 2), (2, 9)):
        with pytest.raises(CimdseError, match=rf"bit range {lo}\.\.{hi}: need 2 <= min <= max <= 8"):
            pol.check_search_range(lo, hi)


def test_parse_bits_refuses_what_is_not_two_whole_numbers():
    for bad, msg in [("4.5,4", "whole numbers"), ("", "whole numbers"), ("4,,4", "whole numbers"),
                     ("-3,4", r"w_bits = -3 outside 1\.\.8"), ("99999999999999999999", "w_bits = 9999")]:  # fmt: skip
        with pytest.raises(CimdseError, match=msg):
            parse_bits(bad)


def test_save_then_read_round_trips_in_every_reader(tmp_path, lenet):
    path = pol.save_policy(EXPECTED, NAMES, tmp_path / "p.yaml")
    assert path.read_text().splitlines()[0] == "features.0:" or path.read_text().startswith("features.0: [8, 8]")
    names, bits = pol.read_policy(path)
    assert names == NAMES
    np.testing.assert_array_equal(bits, EXPECTED)
    np.testing.assert_array_equal(load_policy(path, lenet), EXPECTED)
    assert pol.policy_mapping(EXPECTED, NAMES)["classifier.1"] == [2, 3]


def test_a_document_with_metadata_beside_its_policy(tmp_path, lenet):
    """The search's best_policy.yaml: a ``policy:`` key beside arch, speedup, ..."""
    path = tmp_path / "best_policy.yaml"
    doc = {"arch": "demo", "policy": pol.policy_mapping(EXPECTED, NAMES), "archs": {"demo": {"speedup": 2.0}}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    np.testing.assert_array_equal(load_policy(path, lenet), EXPECTED)
    assert pol.read_policy(path)[0] == NAMES


def test_policy_text_round_trip_and_errors():
    text = pol.policy_text(EXPECTED)
    assert text == "8/8 4/6 2/3 8/1"
    np.testing.assert_array_equal(pol.parse_policy_text(text), EXPECTED)
    for bad, msg in [("[[8, 8]]", "not a policy written as w/a"), ("", "not a policy"), (float("nan"), "not a policy"),
                     ("8/8 0/4", r"layer 1: w_bits = 0 outside 1\.\.8")]:  # fmt: skip
        with pytest.raises(CimdseError, match=msg):
            pol.parse_policy_text(bad)


def test_quantization_range_applies_to_files_and_mappings(tmp_path, lenet):
    path = tmp_path / "p.yaml"
    path.write_text("- [1, 8]\n- [4, 6]\n- [2, 3]\n- [8, 1]\n")
    np.testing.assert_array_equal(load_policy(path, lenet)[0], [1, 8])  # the compiler can cost it
    with pytest.raises(CimdseError, match=r"entry 0: w_bits = 1 outside 2\.\.8"):
        load_policy(path, lenet, pol.QUANT)  # quantization cannot train it
    got = pol.as_policy(dict(zip(NAMES, EXPECTED.tolist(), strict=True)), NAMES, pol.QUANT)
    np.testing.assert_array_equal(got, EXPECTED)
