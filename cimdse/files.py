"""Files in and out, shared by every layer: atomic writes and YAML reading.

Everything cimdse writes goes through a temporary file in the target's folder and a
rename, so a reader, or a run killed at any moment, never sees a half-written file.
Every YAML file cimdse reads (architectures, sweep configs, policies) goes through
:func:`read_yaml`, so a syntax error is reported the same way: file, line, column.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cimdse.errors import CimdseError, first_line

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def atomic_write(path: str | Path, write: Callable[[Path], object], *, durable: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over
    ``path``. The temporary keeps the target's suffix (some writers go by it), gets
    ordinary permissions (mkstemp makes 0600), and with ``durable`` is fsynced first."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        write(tmp)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def output_dir(path: str | Path) -> Path:
    """Create an output folder (and its parents) or say in one line why it cannot be."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CimdseError(f"{out}: cannot create output folder ({err.strerror or err})") from None
    return out


def write_text(text: str, path: str | Path, *, durable: bool = False) -> Path:
    return atomic_write(path, lambda p: p.write_text(text), durable=durable)


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


def open_line_log(path: str | Path, header: str) -> bytes:
    """The contents of an append-only log of lines (a CSV appended one line per
    ``write``), repaired after a kill: made (durably) with ``header`` if it holds no
    complete line yet, a cut last line trimmed. Returns the complete lines."""
    path = Path(path)
    data = path.read_bytes() if path.exists() else b""
    if b"\n" not in data:  # new, or killed while the header was being made
        write_text(header, path, durable=True)
        return header.encode()
    if not data.endswith(b"\n"):
        cut = data.rindex(b"\n") + 1
        os.truncate(path, cut)
        data = data[:cut]
    return data


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """The parsed YAML document of ``path``; a missing or unreadable file or a syntax
    error is a :class:`CimdseError` naming the file (and the line and column)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or first_line(err)
        raise CimdseError(f"{path}: cannot read {what} ({reason})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, origin: str) -> Any:
    """Parse YAML ``text`` that came from ``origin``; errors name the line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(err, "problem", None) or first_line(err)
        raise CimdseError(f"{origin}:{where} malformed YAML: {problem}") from None
