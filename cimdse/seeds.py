"""Seeds: one range for every seed a user gives (``--seed``, MNIST-1D's ``seed=S``, a
spec's ``nonideal.seed``, a sweep's search options).

The range is 0 .. 2**32 - 1: what every generator cimdse seeds accepts. numpy's global
seeding (``np.random.seed``, used by stable-baselines3 and the MNIST-1D generator)
takes no more, and none of them takes a negative seed; checked before any work starts,
so a bad seed never fails halfway through a run.
"""

from __future__ import annotations

from cimdse.errors import CimdseError

SEED_MAX = 2**32 - 1


def check_seed(value: int, where: str = "--seed ") -> int:
    """``value`` if it is a whole number in 0..:data:`SEED_MAX`, else a :class:`CimdseError`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise CimdseError(f"{where}{value!r}: a seed must be a whole number from 0 to {SEED_MAX}")
    return value
