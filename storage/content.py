"""A parsed message as the index stores it, and parsing many files on all cores.

One parse serves every recipient of a delivery (`Content.of`); a rebuild
parses whole folders, so `parse_files` hands large batches to one worker
process per core (the parser is pure Python and the GIL would otherwise
hold a 100,000-message rebuild to one core).
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from storage.mime import Parsed, parse, parse_head

PARALLEL_PARSE = 2000  # files at once above which parsing uses worker processes
MAX_PARSE = 128 * 1024 * 1024  # bytes: larger files are indexed by their header alone
HEAD_PROBE = 1024 * 1024  # bytes read of such a file


@dataclass
class Content:
    """A parsed message as the index stores it (one parse for N recipients)."""

    envelope: str
    structure: str
    header_fields: str
    search: dict[str, str]

    @classmethod
    def of(cls, data: bytes) -> Content:
        return cls._from(parse(data))

    @classmethod
    def of_file(cls, path: Path, size: int) -> tuple[Content, int]:
        """Parse a file found on disk. Files far beyond any message size limit (a backup someone
        copied in) are indexed by their header only instead of being read whole."""
        if size <= MAX_PARSE:
            data = path.read_bytes()
            return cls.of(data), len(data)
        with open(path, "rb") as fh:
            head = fh.read(HEAD_PROBE)
        return cls._from(parse_head(head, size)), size

    @classmethod
    def _from(cls, p: Parsed) -> Content:
        return cls(json.dumps(p.envelope, separators=(",", ":")),
                   json.dumps(p.structure.to_obj(), separators=(",", ":")),
                   json.dumps(p.header_fields, separators=(",", ":")), p.search)


def _parse_one(path: str) -> tuple[Content, int, int] | None:
    try:
        st = os.stat(path)
        content, size = Content.of_file(Path(path), st.st_size)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return content, size, int(st.st_mtime)


_parsers: ProcessPoolExecutor | None = None
_parsers_lock = threading.Lock()


def parse_files(paths: list[str]) -> list[tuple[Content, int, int] | None]:
    """Parse message files; many at once (a rebuild) go to one worker process per core, so
    rebuilding a 100,000-message folder is not bound to one core by the GIL."""
    global _parsers
    if len(paths) < PARALLEL_PARSE or (os.cpu_count() or 1) < 2:
        return [_parse_one(p) for p in paths]
    with _parsers_lock:
        if _parsers is None:
            # spawn, not fork: this runs on a worker thread of a process with other threads
            _parsers = ProcessPoolExecutor(os.cpu_count(), mp_context=multiprocessing.get_context("spawn"))
            atexit.register(_parsers.shutdown, wait=False, cancel_futures=True)
    try:
        return list(_parsers.map(_parse_one, paths, chunksize=256))
    except BrokenProcessPool:
        return [_parse_one(p) for p in paths]
