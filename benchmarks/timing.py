"""Timing helpers shared by the benchmarks: best-of-N wall time, and running a
benchmark once per thread setting (one thread, then all cores) in fresh processes,
since BLAS thread counts are fixed when numpy is first imported."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeat: int = 9, sync: Callable[[], object] | None = None) -> float:
    """Smallest wall time of ``repeat`` calls of ``fn`` after one warm-up call; ``sync``
    (e.g. ``torch.cuda.synchronize``) waits for queued device work before and after."""
    fn()
    times = []
    for _ in range(repeat):
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def device_label(device: str) -> str:
    """The device, the CPU capability torch dispatches to, and the GEMM kernel the
    crossbar model measured fastest there (or the CIMDSE_GEMM override)."""
    import torch

    from cimdse import crossbar_torch

    times = crossbar_torch.gemm_times(device)
    fastest = min(times, key=times.get)
    forced = os.environ.get(crossbar_torch.ENV_KERNEL)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    emul = {
        k: os.environ[k]
        for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
        if k in os.environ
    }
    return (
        f"device {device} ({name}); CPU capability {torch.backends.cpu.get_cpu_capability()}"
        f"{' (emulated: ' + str(emul) + ')' if emul else ''}; torch {torch.__version__}; "
        f"fastest GEMM kernel measured: {fastest}"
        f"{'; forced by ' + crossbar_torch.ENV_KERNEL + '=' + forced if forced else ''}; "
        f"calibration (ms): " + ", ".join(f"{k} {v * 1e3:.3g}" for k, v in times.items())
    )


def thread_settings() -> list[int]:
    return sorted({1, os.cpu_count() or 1})


def run_per_thread_setting(script: str, extra: list[str] | None = None) -> None:
    """Run ``script --threads N`` for one thread (``OPENBLAS_NUM_THREADS=1``) and for
    all cores, adding ``CROSSSIM_PATH`` (if set) to the child's import path."""
    for threads in thread_settings():
        env = dict(os.environ)
        if threads == 1:
            env["OPENBLAS_NUM_THREADS"] = "1"
        else:
            env.pop("OPENBLAS_NUM_THREADS", None)
        if os.environ.get("CROSSSIM_PATH"):
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), os.environ["CROSSSIM_PATH"]]))
        subprocess.run([sys.executable, script, "--threads", str(threads), *(extra or [])], env=env, check=True)


def thread_label(threads: int) -> str:
    """What ran, and how loaded the machine was (1-minute load average) when it started."""
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    load = f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if hasattr(os, "getloadavg") else ""
    plural = "s" if threads > 1 else ""
    return f"{threads} thread{plural} (torch.set_num_threads({threads}), OPENBLAS_NUM_THREADS={blas}{load})"
