"""``history.csv`` as a search goes, and resuming from it.

Every new evaluation is appended to ``OUT/history.csv`` as it happens: one complete
CSV line per evaluation, in one ``write`` (fsynced at least once a second and when the
log closes). After a kill, a full disk or Ctrl-C the file is a header and complete
lines, plus at most one cut last line, which :meth:`HistoryLog.open` trims (and a
failed write is cut back at once).

Resuming: a rerun of the same search into the same folder reads the complete lines,
gives their accuracies to the accuracy caches (:func:`known_accuracies`) and runs the
search again from the start. Every method is deterministic for its seed and the
accuracies it sees are the same numbers (written with ``repr``, read back exactly), so
it proposes the same policies, finds the evaluated ones in the cache, and goes on
evaluating where the interrupted run stopped; its files end the same as those of a run
never interrupted. Only rows not already in the file are appended.

The folder is locked (``flock`` on the folder itself) while a search writes to it.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cimdse.errors import CimdseError
from cimdse.files import open_line_log
from cimdse.policy import PolicyKey, parse_policy_text, policy_key
from cimdse.search.config import HISTORY_COLUMNS

__all__ = ["HistoryLog", "known_accuracies"]

HISTORY_NAME = "history.csv"
_SYNC_EVERY_S = 1.0


class HistoryLog:
    """The append-only ``history.csv`` of a running search (see the module doc)."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / HISTORY_NAME
        self.rows: list[dict[str, Any]] = []  # complete rows read by open()
        self._keys: set[tuple[str, str, str]] = set()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._synced = 0.0

    def open(self) -> list[dict[str, Any]]:
        """Lock the folder, trim a cut last line, return the complete rows already logged."""
        self._lock_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise CimdseError(f"{self.path.parent}: another search is writing to this folder") from None
        data = open_line_log(self.path, _line(HISTORY_COLUMNS))
        lines = list(csv.reader(io.StringIO(data.decode(errors="replace"))))
        if lines[0] != HISTORY_COLUMNS:
            self.close()
            raise CimdseError(f"{self.path}: not a search history (columns {', '.join(lines[0])}); use --overwrite")
        for n, cells in enumerate(lines[1:], start=2):
            self.rows.append(_parse(cells, f"{self.path}, line {n}"))
        self._keys = {(r["arch"], r["method"], r["policy"]) for r in self.rows}
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._synced = time.monotonic()
        return self.rows

    def append(self, row: Mapping[str, Any]) -> None:
        """Log one evaluation (a row of :data:`HISTORY_COLUMNS`), unless it is logged already."""
        key = (str(row["arch"]), str(row["method"]), str(row["policy"]))
        if self._fd is None or key in self._keys:
            return
        data = _line([row[c] for c in HISTORY_COLUMNS]).encode()
        size = os.fstat(self._fd).st_size
        try:
            self._write(data)
        except OSError:
            os.ftruncate(self._fd, size)  # no cut line is left behind
            raise
        self._keys.add(key)
        if time.monotonic() - self._synced >= _SYNC_EVERY_S:
            self.sync()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]  # type: ignore[arg-type]

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            self._synced = time.monotonic()

    def close(self) -> None:
        """Sync and close the log and release the folder (safe to call twice)."""
        fd, lock = self._fd, self._lock_fd
        self._fd = self._lock_fd = None
        try:
            if fd is not None:
                os.fsync(fd)
        finally:
            for f in (fd, lock):
                if f is not None:
                    os.close(f)


def _line(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)  # floats as repr: read back exactly
    return buf.getvalue()


def _parse(cells: list[str], where: str) -> dict[str, Any]:
    if len(cells) != len(HISTORY_COLUMNS):
        n = len(HISTORY_COLUMNS)
        raise CimdseError(f"{where}: {len(cells)} fields, not {n}; remove the file or use --overwrite")
    row: dict[str, Any] = dict(zip(HISTORY_COLUMNS, cells, strict=True))
    try:
        row["episode"] = int(row["episode"])
        for c in ("latency_s", "speedup_vs_w8a8", "val_acc", "reward"):
            row[c] = float(row[c])
        parse_policy_text(row["policy"], where=where)
    except (ValueError, CimdseError) as err:
        raise CimdseError(f"{where}: malformed ({err}); remove the file or use --overwrite") from None
    return row


def known_accuracies(rows: list[dict[str, Any]]) -> dict[str, dict[PolicyKey, float]]:
    """Logged validation accuracies per arch label and policy."""
    out: dict[str, dict[PolicyKey, float]] = {}
    for r in rows:
        key = policy_key(parse_policy_text(r["policy"]))
        out.setdefault(r["arch"], {})[key] = float(r["val_acc"])
    return out
