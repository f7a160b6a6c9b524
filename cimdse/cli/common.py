"""Helpers shared by the command modules: arch options, output folders, atomic files."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cimdse import arch as arch_mod
from cimdse.arch import ArchSpec
from cimdse.errors import CimdseError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def add_arch_options(parser: argparse.ArgumentParser, *, multiple: bool = False, required: bool = True) -> None:
    """``--arch NAME|FILE`` (repeatable when ``multiple``) and ``--set key=value``."""
    help_arch = "preset name (demo, cim-aq, isaac, puma) or architecture YAML file"
    if multiple:
        parser.add_argument("--arch", action="append", required=required, help=help_arch + "; repeatable")
    else:
        parser.add_argument("--arch", required=required, default=None if required else "demo", help=help_arch)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field by dotted key, e.g. crossbar.rows=128 (repeatable)",
    )


def load_arch(name: str, overrides: list[str]) -> ArchSpec:
    return arch_mod.load(name, overrides)


def load_archs(args: argparse.Namespace) -> list[ArchSpec]:
    names = args.arch if isinstance(args.arch, list) else [args.arch]
    return [load_arch(n, args.overrides) for n in names]


def output_dir(path: str | Path) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CimdseError(f"{out}: cannot create output folder ({err.strerror})") from None
    return out


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write through a temporary file in the same folder, then rename: a reader
    (or a killed run) never sees a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


def write_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))
