"""MNIST-1D, generated offline and cached: a benchmark with enough samples to resolve
a fraction of a percentage point.

MNIST-1D (Greydanus 2020, "Scaling down deep learning", arXiv:2011.14439) turns
ten hand-drawn 1D digit templates into 40-sample signals: each template is padded,
shifted (up to 48 of 100 points), scaled, sheared, smoothed with correlated noise
plus i.i.d. noise and resampled. The ``mnist1d`` package's generator
(``mnist1d.data.make_dataset`` with its default transform settings, its
``get_dataset_args()``) produces them from a seed with no download; published
baselines on its 4,000/1,000 split: logistic regression 32 %, MLP 68 %, CNN 94 %,
GRU 91 % test accuracy. Here the sample count is an option, so the validation and
test splits are large enough to resolve the search's accuracy bound (the default
4,000 test samples: one sample is 0.025 pp).

The name's options: ``mnist1d:train=N,val=N,test=N,seed=S`` (defaults
:data:`DEFAULTS`; each key at most once; at most :data:`MAX_SAMPLES` signals in all,
~3 minutes of generation and a few hundred MB). ``train + val + test`` signals (rounded up to a multiple of 10,
the package draws the same count per class) are generated with seed ``S``, then
split per class by :mod:`cimdse.data` (``stratified_split`` with the split seed). The
generated arrays are cached as ``mnist1d-<n>-s<S>.npz`` in ``$XDG_CACHE_HOME/cimdse``
(default ``~/.cache/cimdse``; ``CIMDSE_CACHE`` overrides the folder), written
atomically; the generator seeds numpy's global RNG, whose state is restored after.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from cimdse.errors import CimdseError
from cimdse.files import atomic_write
from cimdse.seeds import check_seed

__all__ = ["CLASSES", "DEFAULTS", "cache_dir", "generate", "mnist1d_arrays", "parse_options"]

DEFAULTS = {"train": 10_000, "val": 2_000, "test": 4_000, "seed": 0}
#: most signals generated (train + val + test): 60x the defaults
MAX_SAMPLES = 1_000_000
SIGNAL_LENGTH = 40  # the package's final_seq_length
CLASSES = 10


def parse_options(text: str) -> dict[str, int]:
    """``train=8000,test=4000`` -> the full option dict (defaults filled in)."""
    opts = dict(DEFAULTS)
    given: set[str] = set()
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in DEFAULTS:
            raise CimdseError(f"mnist1d option {item!r}: expected KEY=N with KEY one of {', '.join(DEFAULTS)}")
        if key in given:
            raise CimdseError(f"mnist1d option {key!r} is given twice")
        given.add(key)
        try:
            opts[key] = int(value)
        except ValueError:
            raise CimdseError(f"mnist1d option {item!r}: {value.strip()!r} is not an integer") from None
    for key in ("train", "val", "test"):
        if opts[key] < CLASSES:
            raise CimdseError(f"mnist1d {key}={opts[key]}: need at least {CLASSES} samples (one per class)")
    total = opts["train"] + opts["val"] + opts["test"]
    if total > MAX_SAMPLES:
        raise CimdseError(f"mnist1d train+val+test = {total:,} signals: at most {MAX_SAMPLES:,} are generated")
    check_seed(opts["seed"], "mnist1d seed=")
    return opts


def canonical_name(opts: dict[str, int]) -> str:
    """``mnist1d`` for the defaults, else ``mnist1d:`` with the options that differ."""
    diff = [f"{k}={opts[k]}" for k in DEFAULTS if opts[k] != DEFAULTS[k]]
    return "mnist1d" + (":" + ",".join(diff) if diff else "")


def cache_dir() -> Path:
    if os.environ.get("CIMDSE_CACHE"):
        return Path(os.environ["CIMDSE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cimdse"


def generate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` signals [n, 40] float32 and labels [n] from the package's generator."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n
    args.train_split = 1.0
    args.seed = seed
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return data["x"].astype(np.float32), data["y"].astype(np.int64)


def _cached(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    path = cache_dir() / f"mnist1d-{n}-s{seed}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                x, y = f["x"], f["y"]
            if x.shape == (n, SIGNAL_LENGTH) and y.shape == (n,):
                return x, y
        except (OSError, ValueError, KeyError):
            pass  # unreadable or foreign: generate again
    x, y = generate(n, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda p: np.savez(p, x=x, y=y))
    except OSError:
        pass  # a read-only cache only costs the generation next time
    return x, y


def mnist1d_arrays(options: str = "") -> tuple[str, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """The dataset's canonical name, signals [N, 1, 40], labels [N] and the train/val/test
    fractions asked for in ``options`` (see the module doc); :mod:`cimdse.data` splits them."""
    opts = parse_options(options)
    sizes = (opts["train"], opts["val"], opts["test"])
    total = sum(sizes)
    n = -(-total // CLASSES) * CLASSES
    x, y = _cached(n, opts["seed"])
    fractions = (sizes[0] / total, sizes[1] / total, sizes[2] / total)
    return canonical_name(opts), x[:, None, :], y, fractions
