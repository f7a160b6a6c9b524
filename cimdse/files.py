"""Files in and out, shared by every layer: atomic writes, output folders and bounded reads.

Everything cimdse writes goes through a temporary file in the target's folder and a
rename, so a reader, or a run killed at any moment, never sees a half-written file.
Output folders are made by :func:`output_dir`, which checks that they take files before
any work starts and remembers the folders it made, so that a command that fails leaves
none of them behind empty (:func:`remove_empty_outputs`, called by the CLI).

Every file cimdse reads as data (architectures, sweep configs, policies, CSV tables)
goes through :func:`read_bytes`: only a regular file, and at most a capped number of
bytes (``/dev/zero`` or a 20 GB file is refused, not read until memory runs out).
YAML and JSON go through :func:`parse_yaml` / :func:`parse_json`, which report a syntax
error the same way (file, line, column) and refuse a mapping that names a key twice
(the later value would otherwise win silently). CSV tables go through :func:`read_csv`,
which refuses a row with a wrong number of fields or a last line cut short.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cimdse.errors import CimdseError, first_line

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: most bytes read from a document (spec, policy, sweep config, JSON/YAML): far above
#: any real one, far below what hurts
MAX_DOCUMENT_BYTES = 16 * 2**20
#: most bytes read from a CSV table (a sweep of a million points is ~300 MB)
MAX_TABLE_BYTES = 1 * 2**30
#: most bytes of one dataset file, and of a dataset's images once decoded to float32
#: (MNIST's training images are 47 MB, CIFAR-10 is 0.6 GB as float32)
MAX_DATASET_BYTES = 4 * 2**30

#: folders made by :func:`output_dir` in this process, deepest last
_CREATED: list[Path] = []


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
    """Create an output folder (and its parents) that takes files, or say in one line
    why it cannot be; a folder made here and left empty by a failure is removed by
    :func:`remove_empty_outputs`."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CimdseError(f"{out}: cannot write to output folder (a file of that name is there)")
    missing = []
    for folder in (out, *out.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _CREATED.extend(reversed(missing))
        fd, probe = tempfile.mkstemp(prefix=".cimdse-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        remove_empty_outputs()
        raise CimdseError(f"{out}: cannot write to output folder ({err.strerror or first_line(err)})") from None
    return out


def remove_empty_outputs() -> None:
    """Remove the folders :func:`output_dir` made that are still empty (deepest first):
    a command that failed leaves no empty folder behind."""
    while _CREATED:
        folder = _CREATED.pop()
        with contextlib.suppress(OSError):  # not empty (or already gone): kept
            folder.rmdir()


def forget_outputs() -> None:
    """The folders made so far are results: keep them whatever happens next."""
    _CREATED.clear()


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


# ---------------------------------------------------------------- reading
def input_file(path: str | Path, what: str = "file", limit: int | None = MAX_DOCUMENT_BYTES) -> Path:
    """``path`` if it is a regular file of at most ``limit`` bytes (None: any size), for
    readers that open it themselves; else a :class:`CimdseError` naming the problem."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as err:
        raise CimdseError(f"{path}: cannot read {what} ({err.strerror or first_line(err)})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, pipe or socket"
        raise CimdseError(f"{path}: cannot read {what} (not a regular file: {kind})")
    if limit is not None and st.st_size > limit:
        raise CimdseError(f"{path}: {what} of {st.st_size:,} bytes is larger than the {limit:,} bytes read")
    return path


def read_bytes(path: str | Path, what: str = "file", limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes; anything else
    (missing, a device, a FIFO, a folder, too big) is a :class:`CimdseError` naming it."""
    path = input_file(path, what, limit)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise CimdseError(f"{path}: cannot read {what} ({err.strerror or first_line(err)})") from None
    if len(data) > limit:  # grew since the stat
        raise CimdseError(f"{path}: {what} is larger than the {limit:,} bytes read")
    return data


def read_text(path: str | Path, what: str = "file", limit: int = MAX_DOCUMENT_BYTES) -> str:
    """:func:`read_bytes` as UTF-8 text."""
    try:
        return read_bytes(path, what, limit).decode()
    except UnicodeDecodeError as err:
        raise CimdseError(f"{path}: cannot read {what} (not UTF-8 text: byte {err.start})") from None


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """The parsed YAML document of ``path``; a missing or unreadable file, a syntax
    error or a key named twice is a :class:`CimdseError` naming the file (and the line
    and column)."""
    return parse_yaml(read_text(path, what), str(path))


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that names a key twice (``<<`` merges
    excepted: overriding a merged key is what they are for)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, origin: str) -> Any:
    """Parse YAML ``text`` that came from ``origin``; errors name the line and column."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(err, "problem", None) or first_line(err)
        raise CimdseError(f"{origin}:{where} malformed YAML: {problem}") from None


def parse_json(text: str, origin: str) -> Any:
    """Parse JSON ``text`` that came from ``origin``; an object naming a key twice is refused."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"key {key!r} is given twice")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=unique)
    except ValueError as err:  # JSONDecodeError is one
        raise CimdseError(f"{origin}: malformed JSON: {first_line(err)}") from None


def read_csv(
    path: str | Path, what: str = "table", required: Sequence[str] = (), *, allow_empty: bool = False
) -> pd.DataFrame:
    """A CSV table with its ``required`` columns. Refused: a row whose field count is not
    the header's, a last line without its newline (a file cut while being written), and
    (unless ``allow_empty``) a header without rows."""
    import pandas as pd

    text = read_text(path, what, MAX_TABLE_BYTES)
    if not text.strip():
        raise CimdseError(f"{path}: empty {what}")
    if not text.endswith("\n"):
        raise CimdseError(f"{path}: the last line is cut short (no newline at its end): was it being written?")
    rows = csv.reader(io.StringIO(text))
    header = next(rows)
    count = 0
    for count, row in enumerate(rows, 1):
        if len(row) != len(header):
            raise CimdseError(
                f"{path}: row {count} has {len(row)} field(s), the header {len(header)}: a cut or malformed row"
            )
    if not count and not allow_empty:
        raise CimdseError(f"{path}: {what} has a header but no rows")
    missing = [c for c in required if c not in header]
    if missing:
        raise CimdseError(f"{path}: missing column(s) {', '.join(missing)}")
    try:
        return pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError) as err:
        raise CimdseError(f"{path}: not a readable CSV ({first_line(err)})") from None
