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
from collections.abc import Iterator
from typing import Any

from cimdse.errors import CimdseError
from cimdse.sweep.evaluate import Evaluator, UnitResult, one_line
from cimdse.sweep.plan import Unit


def serial(units: list[Unit], evaluator: Evaluator) -> Iterator[tuple[Unit, UnitResult | BaseException]]:
    for u in units:
        try:
            yield u, evaluator(u)
        except Exception as err:
            yield u, err


def _quiet_worker() -> None:
    """Ctrl-C reaches the whole process group: the parent stops the sweep, workers
    should not print a traceback each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pool(units: list[Unit], evaluator: Evaluator, jobs: int) -> Iterator[tuple[Unit, UnitResult | BaseException]]:
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


def dask(units: list[Unit], evaluator: Evaluator, client: Any) -> Iterator[tuple[Unit, UnitResult | BaseException]]:
    """A Dask cluster: the workers need cimdse installed (and user files on a shared path)."""
    from distributed import as_completed

    try:
        futures = {client.submit(evaluator, u, pure=False): u for u in units}
        for fut in as_completed(futures, loop=client.loop):
            u = futures[fut]
            try:
                yield u, fut.result()
            except Exception as err:
                yield u, err
    finally:
        client.close()
