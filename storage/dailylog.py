"""Append-only daily files (`<prefix>-YYYY-MM-DD.<ext>`) for the server and mail logs.

Đ7.2 keeps logs for 6 months and then removes them; one file per day makes
retention a matter of deleting whole files by name, with nothing rewritten.
The day is the policy's local day, so a file holds one Vietnamese calendar day.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo


class DailyFile:
    def __init__(self, folder: Path, prefix: str, ext: str, tz: ZoneInfo) -> None:
        self.folder = folder
        self.prefix = prefix
        self.ext = ext
        self.tz = tz
        self._day: date | None = None
        self._fh: object | None = None
        self._lock = threading.Lock()

    def path_for(self, day: date) -> Path:
        return self.folder / f"{self.prefix}-{day.isoformat()}.{self.ext}"

    def write(self, line: str, when: datetime | None = None, fsync: bool = False) -> None:
        day = (when or datetime.now(UTC)).astimezone(self.tz).date()
        with self._lock:
            if day != self._day or self._fh is None:
                self._close()
                self.folder.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path_for(day), "a", encoding="utf-8")  # noqa: SIM115
                self._day = day
            fh = self._fh
            fh.write(line if line.endswith("\n") else line + "\n")  # type: ignore[attr-defined]
            fh.flush()  # type: ignore[attr-defined]
            if fsync:
                os.fsync(fh.fileno())  # type: ignore[attr-defined]

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()  # type: ignore[attr-defined]
            self._fh = None

    def close(self) -> None:
        with self._lock:
            self._close()


class DailyFileHandler(logging.Handler):
    """A logging handler writing to `server-YYYY-MM-DD.log`."""

    def __init__(self, folder: Path, tz: ZoneInfo, prefix: str = "server") -> None:
        super().__init__()
        self.file = DailyFile(folder, prefix, "log", tz)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.file.write(self.format(record), datetime.fromtimestamp(record.created, UTC))
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.file.close()
        super().close()
