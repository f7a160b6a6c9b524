"""The ``cimdse`` command. One module per command group; each exposes
``register(subparsers)`` which adds its parsers and sets ``func``. Only the module of
the command being run is imported, so light commands do not pay for torch.

Bad input raises :class:`cimdse.errors.CimdseError` anywhere below; here it becomes
one line on stderr and exit code 2, never a traceback. So does an operating-system
refusal (a read-only or full disk, a path through a file): the user's environment, not
a bug. A command that fails leaves no empty output folder behind. The first Ctrl-C
stops the command (cleanup runs, exit 130); a second one during that cleanup ends the
process at once, quietly. The command keeps freed memory for reuse instead of handing
it back to the kernel (:func:`keep_freed_memory`), which halves a search's time on Linux.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from cimdse.errors import CimdseError, first_line
from cimdse.files import forget_outputs, remove_empty_outputs

#: command -> the module that registers it (a module may register several).
COMMANDS: dict[str, str] = {
    "arch": "arch_cmd",
    "layers": "compile_cmd",
    "compile": "compile_cmd",
    "train": "train_cmd",
    "evaluate": "train_cmd",
    "search": "search_cmd",
    "compare": "search_cmd",
    "pretrain-agent": "search_cmd",
    "rtl": "rtl_cmd",
    "verify": "rtl_cmd",
    "sweep": "sweep_cmd",
    "report": "report_cmd",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``command`` alone, or for every command (help, unknown names)."""
    parser = argparse.ArgumentParser(
        prog="cimdse",
        description="Design-space exploration for RRAM computing-in-memory accelerators.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(f"cimdse.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    keep_freed_memory()
    forget_outputs()
    try:
        with _interruptible():
            code = int(args.func(args) or 0)
    except CimdseError as err:
        code = _fail(str(err))
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except OSError as err:  # a read-only or full disk, a path through a file, ...
        where = f"{err.filename}: " if err.filename else ""
        code = _fail(f"{where}{err.strerror or first_line(err)}")
    except KeyboardInterrupt:
        print("cimdse: interrupted", file=sys.stderr)
        code = 130
    if code:
        remove_empty_outputs()
    forget_outputs()
    return code


#: glibc malloc settings of the command (mallopt option -> value): blocks up to 32 MiB
#: (the largest mmap threshold glibc takes) come from the heap, and up to 1 GiB of freed
#: heap is kept for the next allocation instead of going back to the kernel
MALLOC_SETTINGS = {-3: 32 * 2**20, -1: 2**30}  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


def keep_freed_memory() -> bool:
    """Apply :data:`MALLOC_SETTINGS` (glibc only; a user's own ``MALLOC_*_`` settings
    win). By default every large temporary is a fresh mmap, or heap that was just handed
    back, faulted in again page by page: on an MNIST-1D search that was 40 % of the time,
    as system time (6.2 of 14.9 s, 4.0 M page faults; benchmarks/RESULTS.md). The peak
    resident memory is unchanged: kept memory is reused, not added to. True if set."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all([bool(mallopt(option, value)) for option, value in MALLOC_SETTINGS.items()])


def _fail(message: str) -> int:
    print(f"cimdse: error: {message}", file=sys.stderr)
    return 2


@contextmanager
def _interruptible() -> Iterator[None]:
    """The first SIGINT raises KeyboardInterrupt, as usual; a second one, arriving while
    that unwinds (closing a Dask client, worker pools, ...), ends the process at once
    with exit 130 and one line, instead of an "Exception ignored" traceback from
    whatever cleanup it hit, the interpreter's exit (atexit: Dask, multiprocessing)
    included: after an interrupt the handler stays. Files stay whole: every write is
    atomic or append-only."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # ignored, or someone else's
    ):
        yield
        return

    def again(signum: int, frame: object) -> None:
        os.write(2, b"cimdse: interrupted again: stopping now\n")
        os._exit(130)

    def first(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, again)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, again)  # also when the first one came from elsewhere
        raise
    except BaseException:
        signal.signal(signal.SIGINT, previous)
        raise
    signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
