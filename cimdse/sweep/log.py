"""``sweep.csv``, the crash-safe result log.

Only the parent appends, one complete line per point in a single ``write`` followed by
``fsync``. A rerun trims a partial last line and skips the ids already present, so a
sweep killed at any moment ends with every point in the file exactly once.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cimdse.errors import CimdseError
from cimdse.files import open_line_log

CSV_NAME = "sweep.csv"
LOCK_NAME = ".sweep.lock"


class ResultLog:
    """``sweep.csv``: a header, then one complete line per finished point.

    Only the process holding the folder's lock appends; each line goes out in one
    ``write`` and is fsynced, so after a kill the file is a valid CSV plus at most one
    partial last line, which :meth:`open` trims.
    """

    def __init__(self, out_dir: Path, columns: list[str]) -> None:
        self.path = out_dir / CSV_NAME
        self.columns = columns
        self._lock_path = out_dir / LOCK_NAME
        self._lock_fd: int | None = None
        self._fd: int | None = None

    def open(self) -> set[str]:
        """Lock the folder, repair the file if a kill cut a line, return the ids done."""
        self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise CimdseError(f"{self.path.parent}: another sweep is writing to this folder") from None
        data = open_line_log(self.path, self._line(self.columns))
        rows = list(csv.reader(io.StringIO(data.decode())))
        if rows[0] != self.columns:
            raise CimdseError(
                f"{self.path}: written by a different sweep (columns {', '.join(rows[0])}); "
                "use another --out folder or remove the file"
            )
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        return {r[0] for r in rows[1:] if len(r) == len(self.columns)}

    @staticmethod
    def _line(values: list[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue()

    def append(self, row: Mapping[str, Any]) -> None:
        assert self._fd is not None, "open() first"
        cells = ["" if row.get(c) is None else row[c] for c in self.columns]
        data = self._line(cells).encode()
        assert data.count(b"\n") == 1, "a row must be one line"
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock_fd = None
