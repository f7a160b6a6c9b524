"""Datasets: two embedded ones (scikit-learn's 8x8 digits, generated MNIST-1D) and
loaders for local files (MNIST IDX, CIFAR-10 python batches, an image folder).
Nothing downloads.

Every loader returns :class:`Splits`: train / val / test ``TensorDataset`` s of
float32 images [N, C, H, W] scaled to [0, 1] and int64 labels. Splits are fixed by
``seed`` (stratified per class, the same seed always gives the same split):

- ``digits``: the 1797 images of ``sklearn.datasets.load_digits`` (pixels 0..16,
  divided by 16), shape [N, 1, 8, 8], split 60/20/20 per class.
- ``mnist1d``: MNIST-1D (Greydanus 2020), 1D signals [N, 1, 40] of the ten digit
  templates, shifted, scaled, sheared and noised, generated offline by the
  ``mnist1d`` package (its default transform settings); zero mean, unit variance.
  Sizes and the generation seed are options of the name,
  ``mnist1d:train=10000,val=2000,test=4000,seed=0`` (those are the defaults); the
  generated arrays are cached in ``$XDG_CACHE_HOME/cimdse`` (``~/.cache/cimdse``)
  and the split is stratified per class like digits'. See :mod:`cimdse.data_mnist1d`.
- ``mnist``: ``DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (optionally
  ``.gz``); the official test set is the test split, the official training set is
  split 5/6 train, 1/6 val.
- ``cifar10``: ``DIR/data_batch_1..5`` and ``DIR/test_batch`` (or the same under
  ``DIR/cifar-10-batches-py``); test from ``test_batch``, the batches split 90/10.
- ``imagefolder``: ``DIR/CLASS/*.png|*.npy`` (one folder per class, sorted names
  are the labels), split 60/20/20; or ``DIR/train/CLASS/...`` and
  ``DIR/test/CLASS/...`` (then train is split 80/20 into train and val). ``.npy``
  images are [H, W] or [C, H, W]; integer arrays are divided by 255.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cimdse.errors import CimdseError
from cimdse.files import MAX_DATASET_BYTES, input_file, read_bytes

if TYPE_CHECKING:  # pragma: no cover
    from torch.utils.data import TensorDataset

__all__ = ["DATASETS", "EMBEDDED", "Splits", "load_dataset", "make_splits", "stratified_split"]

DATASETS = ("digits", "mnist1d", "mnist", "cifar10", "imagefolder")
#: datasets that need no files; each has a default zoo model (``models.default_model``)
EMBEDDED = ("digits", "mnist1d")


@dataclass(frozen=True)
class Splits:
    """Train / val / test datasets of one source, with what a model needs to fit it."""

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    input_shape: tuple[int, ...]  # one sample, no batch dimension

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.val), len(self.test)


def load_dataset(name: str, data_dir: str | Path | None = None, seed: int = 0) -> Splits:
    """The dataset ``name`` (see :data:`DATASETS`), split with ``seed``."""
    base, _, options = name.partition(":")
    key = base.lower().replace("-", "").replace("_", "")
    if key == "mnist1d":
        from cimdse.data_mnist1d import CLASSES, mnist1d_arrays

        canonical, x, y, fractions = mnist1d_arrays(options)
        return make_splits(canonical, x, y, stratified_split(y, fractions, seed), CLASSES)
    if options:
        raise CimdseError(f"dataset {name!r}: only mnist1d takes options after ':'")
    if key == "digits":
        return _digits(seed)
    loaders: dict[str, Callable[[Path, int], Splits]] = {
        "mnist": _mnist,
        "cifar10": _cifar10,
        "imagefolder": _imagefolder,
        "folder": _imagefolder,
    }
    if key not in loaders:
        raise CimdseError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if data_dir is None:
        raise CimdseError(f"dataset {name!r} reads local files: give --data-dir DIR (nothing is downloaded)")
    root = Path(data_dir)
    if not root.is_dir():
        raise CimdseError(f"{root}: no such data folder")
    return loaders[key](root, seed)


# ---------------------------------------------------------------- splitting
def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Index arrays, one per fraction, cut per class after a seeded shuffle; the last
    part takes the remainder. Sorted, so the order of samples is the source's."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        cuts = np.round(np.cumsum(fractions[:-1]) * len(idx)).astype(int)
        for i, chunk in enumerate(np.split(idx, cuts)):
            parts[i].append(chunk)
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts]


def _tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    import torch  # here, so the dataset names (the CLI's help) come without torch
    from torch.utils.data import TensorDataset

    return TensorDataset(torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32), torch.as_tensor(y).long())


def make_splits(name: str, x: np.ndarray, y: np.ndarray, idx: list[np.ndarray], num_classes: int) -> Splits:
    train, val, test = (_tensors(x[i], y[i]) for i in idx)
    return Splits(name, train, val, test, num_classes, tuple(int(d) for d in x.shape[1:]))


def _with_test(
    name: str, x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, val_frac: float, seed: int
) -> Splits:
    tr, va = stratified_split(y, (1 - val_frac, val_frac), seed)
    n_cls = int(max(y.max(initial=0), yt.max(initial=0))) + 1
    shape = tuple(int(d) for d in x.shape[1:])
    if tuple(xt.shape[1:]) != shape:
        raise CimdseError(f"{name}: test images are {tuple(xt.shape[1:])}, training images {shape}")
    return Splits(name, _tensors(x[tr], y[tr]), _tensors(x[va], y[va]), _tensors(xt, yt), n_cls, shape)


# ---------------------------------------------------------------- digits
def _digits(seed: int) -> Splits:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    return make_splits("digits", x, y, stratified_split(y, (0.6, 0.2, 0.2), seed), 10)


# ---------------------------------------------------------------- MNIST IDX
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _gunzip(path: Path, raw: bytes) -> bytes:
    """``raw`` decompressed, refusing more than :data:`MAX_DATASET_BYTES` out (a small
    .gz can hold terabytes of zeros)."""
    limit = MAX_DATASET_BYTES
    out = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
    try:
        data = out.decompress(raw, limit + 1)
    except zlib.error as err:
        raise CimdseError(f"{path}: cannot read (not gzip data: {err})") from None
    if len(data) > limit:
        raise CimdseError(f"{path}: decompresses to more than the {limit:,} bytes read")
    if not out.eof:
        raise CimdseError(f"{path}: cannot read (the gzip stream is cut short)")
    return data


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (``.gz`` allowed) as an array, checked against its header."""
    raw = read_bytes(path, "IDX file", MAX_DATASET_BYTES)
    if path.suffix == ".gz":
        raw = _gunzip(path, raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise CimdseError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise CimdseError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != need:
        raise CimdseError(f"{path}: IDX header says {dims} ({need} bytes of data), file has {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find(root: Path, stems: tuple[str, ...]) -> Path:
    for stem in stems:
        for cand in (root / stem, root / f"{stem}.gz"):
            if cand.is_file():
                return cand
    raise CimdseError(f"{root}: missing {stems[0]} (or {stems[0]}.gz)")


def _mnist_part(root: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    xp = _find(root, (f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"))
    yp = _find(root, (f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"))
    x, y = read_idx(xp), read_idx(yp)
    if x.ndim != 3 or y.ndim != 1:
        raise CimdseError(f"{xp}: expected images [N, H, W] and labels [N], got {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise CimdseError(f"{xp}: {len(x)} images but {yp.name} has {len(y)} labels")
    return (x.astype(np.float32) / 255.0)[:, None], y.astype(np.int64)


def _mnist(root: Path, seed: int) -> Splits:
    x, y = _mnist_part(root, "train")
    xt, yt = _mnist_part(root, "t10k")
    return _with_test("mnist", x, y, xt, yt, 1 / 6, seed)


# ---------------------------------------------------------------- CIFAR-10
class _ArrayUnpickler(pickle.Unpickler):
    """Loads plain containers and numpy arrays only: a batch file cannot run code."""

    def find_class(self, module: str, name: str) -> object:
        if module.split(".")[0] == "numpy" and name in {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    input_file(path, "CIFAR-10 batch", MAX_DATASET_BYTES)
    try:
        with path.open("rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except OSError as err:
        raise CimdseError(f"{path}: cannot read ({err.strerror})") from None
    except Exception as err:  # any malformed pickle
        raise CimdseError(f"{path}: not a CIFAR-10 python batch ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise CimdseError(f"{path}: not a CIFAR-10 python batch (expected a dict)")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise CimdseError(f"{path}: CIFAR-10 batch lacks 'data' or 'labels'")
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise CimdseError(f"{path}: expected data [N, 3072] with N labels, got {data.shape} and {len(labels)} labels")
    x = data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    return x, np.asarray(labels, dtype=np.int64)


def _cifar10(root: Path, seed: int) -> Splits:
    if not (root / "test_batch").is_file() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise CimdseError(f"{root}: missing CIFAR-10 batch file(s) {', '.join(missing)}")
    parts = [_cifar_batch(root / n) for n in names[:5]]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    xt, yt = _cifar_batch(root / "test_batch")
    return _with_test("cifar10", x, y, xt, yt, 0.1, seed)


# ---------------------------------------------------------------- image folder
_IMAGE_SUFFIXES = (".png", ".npy")
MAX_IMAGE_BYTES = 256 * 2**20  # one image file


def _read_image(path: Path) -> np.ndarray:
    """One image as float32 [C, H, W] in [0, 1] (PNG) or as stored (float .npy)."""
    input_file(path, "image", MAX_IMAGE_BYTES)
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.ndim == 2:
                arr = arr[None]
            if arr.ndim != 3:
                raise CimdseError(f"{path}: .npy image must be [H, W] or [C, H, W], got shape {arr.shape}")
            return arr.astype(np.float32) / (255.0 if np.issubdtype(arr.dtype, np.integer) else 1.0)
        from PIL import Image

        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGBA" if "A" in img.mode else "RGB").convert("RGB")
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except CimdseError:
        raise
    except Exception as err:  # corrupt PNG, bad npy header, unreadable file
        raise CimdseError(f"{path}: cannot read image ({type(err).__name__}: {err})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _read_folder(root: Path, classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = classes or found
    if not classes:
        raise CimdseError(f"{root}: no class folders (expected {root}/CLASS/*.png or *.npy)")
    extra = sorted(set(found) - set(classes))
    if extra:
        raise CimdseError(f"{root}: class folder(s) {extra} are not among the training classes")
    images, labels, held = [], [], 0
    for label, cls in enumerate(classes):
        for path in sorted(p for p in (root / cls).glob("*") if p.suffix.lower() in _IMAGE_SUFFIXES):
            images.append(_read_image(path))
            labels.append(label)
            held += images[-1].nbytes
            if held > MAX_DATASET_BYTES:
                raise CimdseError(f"{root}: the images take more than {MAX_DATASET_BYTES:,} bytes as float32")
    if not images:
        raise CimdseError(f"{root}: no .png or .npy images in the class folders")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise CimdseError(f"{root}: images differ in shape {sorted(shapes)}; resize them to one shape")
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


def _imagefolder(root: Path, seed: int) -> Splits:
    if (root / "train").is_dir() and (root / "test").is_dir():
        x, y, classes = _read_folder(root / "train")
        xt, yt, _ = _read_folder(root / "test", classes)
        splits = _with_test("imagefolder", x, y, xt, yt, 0.2, seed)
        return Splits(splits.name, splits.train, splits.val, splits.test, len(classes), splits.input_shape)
    x, y, classes = _read_folder(root)
    return make_splits("imagefolder", x, y, stratified_split(y, (0.6, 0.2, 0.2), seed), len(classes))
