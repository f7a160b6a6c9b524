"""Datasets: the embedded digits split, and the local-file loaders on files written here."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from cimdse.data import load_dataset, read_idx, stratified_split
from cimdse.errors import CimdseError


def test_digits_split_is_fixed_stratified_and_scaled():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.sizes() == (1078, 360, 359) and sum(a.sizes()) == 1797
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.test.tensors[1], b.test.tensors[1])
    x = a.train.tensors[0]
    assert x.dtype == torch.float32 and float(x.min()) == 0.0 and float(x.max()) == 1.0
    counts = torch.bincount(a.test.tensors[1], minlength=10)
    assert int(counts.min()) >= 34 and int(counts.max()) <= 38  # about 20 % of each class
    other = load_dataset("digits", seed=1)
    assert not torch.equal(other.train.tensors[1], a.train.tensors[1])


def test_stratified_split_partitions():
    y = np.repeat(np.arange(3), 10)
    parts = stratified_split(y, (0.6, 0.2, 0.2), seed=5)
    assert sorted(np.concatenate(parts).tolist()) == list(range(30))
    assert [len(p) for p in parts] == [18, 6, 6]


# ---------------------------------------------------------------- MNIST IDX
def _idx(arr: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write_mnist(root, n_train=24, n_test=10, gz=False):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for stem, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = _idx(arr)
            if gz:
                (root / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (root / stem).write_bytes(data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    _write_mnist(tmp_path, gz=gz)
    s = load_dataset("mnist", tmp_path)
    assert s.input_shape == (1, 28, 28) and s.num_classes == 10
    assert len(s.train) + len(s.val) == 24 and len(s.test) == 10
    assert float(s.test.tensors[0].max()) <= 1.0
    raw = read_idx(tmp_path / ("t10k-images-idx3-ubyte.gz" if gz else "t10k-images-idx3-ubyte"))
    assert torch.allclose(s.test.tensors[0][:, 0], torch.from_numpy(raw.astype(np.float32) / 255))


def test_mnist_errors(tmp_path):
    with pytest.raises(CimdseError, match="missing train-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path)
    _write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(CimdseError, match="IDX header says"):
        load_dataset("mnist", tmp_path)
    path.write_bytes(b"GIF89a not idx")
    with pytest.raises(CimdseError, match="bad magic"):
        load_dataset("mnist", tmp_path)
    (tmp_path / "x.gz").write_bytes(b"not gzip")
    with pytest.raises(CimdseError, match="cannot read"):
        read_idx(tmp_path / "x.gz")
    _write_mnist(tmp_path, n_test=10)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.zeros(7, dtype=np.uint8)))
    with pytest.raises(CimdseError, match="10 images but"):
        load_dataset("mnist", tmp_path)


# ---------------------------------------------------------------- CIFAR-10
def _write_cifar(root, n=20):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(np.arange(n) % 10)}
        with (root / name).open("wb") as f:
            pickle.dump(batch, f)


def test_cifar10_batches(tmp_path):
    _write_cifar(tmp_path)
    s = load_dataset("cifar10", tmp_path)
    assert s.input_shape == (3, 32, 32) and s.num_classes == 10
    assert len(s.train) + len(s.val) == 100 and len(s.test) == 20
    with (tmp_path / "test_batch").open("rb") as f:
        raw = pickle.load(f)[b"data"]
    assert torch.allclose(s.test.tensors[0][3], torch.from_numpy(raw[3].reshape(3, 32, 32) / 255).float())


def test_cifar10_errors(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(CimdseError, match="missing CIFAR-10 batch file.*data_batch_3"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(CimdseError, match="data_batch_3: not a CIFAR-10 python batch"):
        load_dataset("cifar10", tmp_path)
    with (tmp_path / "data_batch_3").open("wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0] * 4}, f)
    with pytest.raises(CimdseError, match=r"expected data \[N, 3072\]"):
        load_dataset("cifar10", tmp_path)
    with (tmp_path / "data_batch_3").open("wb") as f:
        pickle.dump(print, f)  # a pickle that names a callable is refused, not run
    with pytest.raises(CimdseError, match="refusing to load"):
        load_dataset("cifar10", tmp_path)


# ---------------------------------------------------------------- image folder
def _write_folder(root, classes=("cat", "dog", "owl"), per_class=10, fmt="png"):
    from PIL import Image

    rng = np.random.default_rng(2)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (6, 5), dtype=np.uint8)
            if fmt == "png":
                Image.fromarray(img, mode="L").save(root / cls / f"{i}.png")
            else:
                np.save(root / cls / f"{i}.npy", img.astype(np.float32) / 255)


@pytest.mark.parametrize("fmt", ["png", "npy"])
def test_image_folder(tmp_path, fmt):
    _write_folder(tmp_path, fmt=fmt)
    s = load_dataset("imagefolder", tmp_path)
    assert s.num_classes == 3 and s.input_shape == (1, 6, 5) and s.sizes() == (18, 6, 6)
    assert float(s.train.tensors[0].max()) <= 1.0
    assert sorted(torch.bincount(s.test.tensors[1]).tolist()) == [2, 2, 2]


def test_image_folder_with_train_and_test(tmp_path):
    _write_folder(tmp_path / "train")
    _write_folder(tmp_path / "test", per_class=2)
    s = load_dataset("imagefolder", tmp_path)
    assert len(s.test) == 6 and len(s.train) + len(s.val) == 30


def test_image_folder_errors(tmp_path):
    with pytest.raises(CimdseError, match="no class folders"):
        load_dataset("imagefolder", tmp_path)
    _write_folder(tmp_path)
    (tmp_path / "dog" / "3.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(CimdseError, match="3.png: cannot read image"):
        load_dataset("imagefolder", tmp_path)
    np.save(tmp_path / "dog" / "3.npy", np.zeros((7, 7), dtype=np.float32))
    (tmp_path / "dog" / "3.png").unlink()
    with pytest.raises(CimdseError, match="differ in shape"):
        load_dataset("imagefolder", tmp_path)


def test_unknown_and_missing(tmp_path):
    with pytest.raises(CimdseError, match="unknown dataset 'imagenet'; known: digits"):
        load_dataset("imagenet")
    with pytest.raises(CimdseError, match="give --data-dir"):
        load_dataset("mnist")
    with pytest.raises(CimdseError, match="no such data folder"):
        load_dataset("cifar10", tmp_path / "nope")


# ---------------------------------------------------------------- MNIST-1D
def test_mnist1d_generated_cached_and_seeded(tmp_path, monkeypatch):
    from cimdse import data_mnist1d

    monkeypatch.setenv("CIMDSE_CACHE", str(tmp_path))
    small = "mnist1d:train=100,val=40,test=60,seed=3"
    np.random.seed(123)
    a = load_dataset(small)
    assert np.random.get_state()[1].tolist() == np.random.RandomState(123).get_state()[1].tolist()  # restored
    assert a.sizes() == (100, 40, 60) and a.input_shape == (1, 40) and a.num_classes == 10
    assert a.name == "mnist1d:train=100,val=40,test=60,seed=3"
    assert torch.bincount(a.test.tensors[1], minlength=10).tolist() == [6] * 10  # stratified
    x = torch.cat([a.train.tensors[0], a.val.tensors[0], a.test.tensors[0]])
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-2  # the package centres and scales
    assert [p.name for p in tmp_path.iterdir()] == ["mnist1d-200-s3.npz"]

    def no_generation(*args):
        raise AssertionError("generated again instead of read from the cache")

    monkeypatch.setattr(data_mnist1d, "generate", no_generation)
    b = load_dataset(small)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.test.tensors[1], b.test.tensors[1])
    monkeypatch.undo()
    monkeypatch.setenv("CIMDSE_CACHE", str(tmp_path))
    other = load_dataset("mnist1d:train=100,val=40,test=60,seed=4")
    assert not torch.equal(other.train.tensors[0], a.train.tensors[0])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("mnist1d:train=5", "at least 10"),
        ("mnist1d:size=5", "KEY one of"),
        ("mnist1d:test=many", "not an integer"),
        ("digits:train=5", "only mnist1d takes options"),
    ],
)
def test_mnist1d_bad_options(name, message):
    with pytest.raises(CimdseError, match=message):
        load_dataset(name)


# ---------------------------------------------------------------- sizes
def test_dataset_files_and_decoded_sizes_are_capped(tmp_path, monkeypatch):
    """A small .gz that inflates past the cap, a batch file or image over it, and a
    folder whose decoded images would exceed it are refused by name, not read."""
    import cimdse.data as data

    monkeypatch.setattr(data, "MAX_DATASET_BYTES", 4000)
    bomb = tmp_path / "bomb-idx1-ubyte.gz"
    bomb.write_bytes(gzip.compress(_idx(np.zeros(100_000, dtype=np.uint8))))  # 100 kB out of ~120 bytes
    assert bomb.stat().st_size < 4000
    with pytest.raises(CimdseError, match=r"decompresses to more than the 4,000 bytes read"):
        read_idx(bomb)
    small = tmp_path / "small-idx1-ubyte.gz"
    small.write_bytes(gzip.compress(_idx(np.arange(10, dtype=np.uint8))))
    assert read_idx(small).tolist() == list(range(10))  # under the cap: read
    cut = tmp_path / "cut-idx1-ubyte.gz"
    cut.write_bytes(small.read_bytes()[:-12])
    with pytest.raises(CimdseError, match="cut short"):
        read_idx(cut)
    big = tmp_path / "big-idx1-ubyte"
    big.write_bytes(_idx(np.zeros(5000, dtype=np.uint8)))
    with pytest.raises(CimdseError, match=r"IDX file of 5,008 bytes is larger than the 4,000 bytes read"):
        read_idx(big)

    cifar = tmp_path / "cifar"
    cifar.mkdir()
    _write_cifar(cifar, n=2)  # 6 kB per batch
    with pytest.raises(CimdseError, match=r"data_batch_1: CIFAR-10 batch of [\d,]+ bytes is larger"):
        load_dataset("cifar10", cifar)

    folder = tmp_path / "folder"
    _write_folder(folder, fmt="npy")  # 30 float32 pixels = 120 bytes per image, 30 images
    monkeypatch.setattr(data, "MAX_DATASET_BYTES", 120 * 29)
    with pytest.raises(CimdseError, match=r"the images take more than 3,480 bytes as float32"):
        load_dataset("imagefolder", folder)
    monkeypatch.setattr(data, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(CimdseError, match=r"0.npy: image of 248 bytes is larger than the 100 bytes read"):
        load_dataset("imagefolder", folder)
