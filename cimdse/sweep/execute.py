"""Executors: where units run. Each yields ``(unit, result or exception)`` as units finish.

In this process (``serial``), in a local process pool (``pool``), or on a Dask
cluster (``dask``, after ``dask_client`` checked the address).
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing
import os
import re
import signal
import socket
from collections.abc import Iterable, Iterator
from typing import Any

from cimdse.errors import CimdseError
from cimdse.sweep.evaluate import Evaluator, UnitResult, one_line
from cimdse.sweep.plan import Unit


def serial(units: Iterable[Unit], evaluator: Evaluator) -> Iterator[tuple[Unit, UnitResult | BaseException]]:
    for u in units:
        try:
            yield u, evaluator(u)
        except Exception as err:
            yield u, err


def _quiet_worker() -> None:
    """Ctrl-C reaches the whole process group: the parent stops the sweep, workers
    should not print a traceback each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pool(units: Iterable[Unit], evaluator: Evaluator, jobs: int) -> Iterator[tuple[Unit, UnitResult | BaseException]]:
    """Local processes. Spawned, not forked: torch's thread pools do not survive a fork.
    A bounded window of units in flight keeps memory flat on big sweeps."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # one thread per worker (torch, BLAS): the pool is the parallelism
    ctx = multiprocessing.get_context("spawn")
    todo = iter(units)
    window = 2 * jobs
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_quiet_worker) as ex:
        running: dict[cf.Future, Unit] = {}
        try:
            for u in itertools.islice(todo, window):
                running[ex.submit(evaluator, u)] = u
            while running:
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    u = running.pop(fut)
                    try:
                        yield u, fut.result()
                    except Exception as err:
                        yield u, err
                    for nxt in itertools.islice(todo, 1):
                        running[ex.submit(evaluator, nxt)] = nxt
        finally:
            ex.shutdown(wait=True, cancel_futures=True)


def dask_client(address: str) -> Any:
    """Connect before anything is written, so a wrong address leaves no files behind."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover
        raise CimdseError("--scheduler needs dask[distributed] installed") from None
    m = re.fullmatch(r"tcp://\[?([^\]]+?)\]?:(\d+)", address)
    if m:  # a refused port fails now, not after Dask's connect timeout
        try:
            socket.create_connection((m.group(1), int(m.group(2))), timeout=10).close()
        except OSError as err:
            raise CimdseError(f"cannot reach the Dask scheduler at {address}: {err.strerror or err}") from None
    try:
        return Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise CimdseError(f"cannot reach the Dask scheduler at {address}: {one_line(err)}") from None


#: units in flight on a Dask cluster at once: enough to keep a large cluster busy,
#: few enough that a huge sweep is not submitted (and held) whole
DASK_WINDOW = 1024


def dask(
    units: Iterable[Unit], evaluator: Evaluator, client: Any, window: int = DASK_WINDOW
) -> Iterator[tuple[Unit, UnitResult | BaseException]]:
    """A Dask cluster: the workers need cimdse installed (and user files on a shared path).
    At most ``window`` units are in flight; the next is submitted as one finishes."""
    from distributed import as_completed

    todo = iter(units)
    try:
        running: dict[Any, Unit] = {}
        finished = as_completed(loop=client.loop)
        for u in itertools.islice(todo, window):
            fut = client.submit(evaluator, u, pure=False)
            running[fut] = u
            finished.add(fut)
        for fut in finished:
            u = running.pop(fut)
            try:
                yield u, fut.result()
            except Exception as err:
                yield u, err
            for nxt in itertools.islice(todo, 1):
                new = client.submit(evaluator, nxt, pure=False)
                running[new] = nxt
                finished.add(new)
    finally:
        client.close()
