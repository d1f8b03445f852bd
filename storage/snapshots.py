"""Folder snapshots kept in memory, so SELECT of a large folder costs its changes, not its size."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from storage.storetypes import Flags

SNAPSHOT_CACHE_MIN = 2000  # folders at least this big keep their snapshot in memory between SELECTs
SNAPSHOT_CACHE_ROWS = 2_000_000  # at most this many rows in all kept snapshots (~200 MB)


@dataclass
class Snapshot:
    key: tuple[Any, ...]
    modseq: int
    messages: list[tuple[int, Flags, int]]


class SnapshotCache:
    """Folder snapshots kept in memory by this process, least recently used first out.

    Keyed by index file and folder id, and kept across the pool closing an idle index: every
    use is validated against the folder row (UIDVALIDITY, keywords, HIGHESTMODSEQ), so a stale
    entry is brought up to date or dropped, never served.
    """

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.rows = 0
        self.items: OrderedDict[tuple[str, int], Snapshot] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> Snapshot | None:
        with self.lock:
            snap = self.items.get(key)
            if snap is not None:
                self.items.move_to_end(key)
            return snap

    def put(self, key: tuple[str, int], snap: Snapshot | None) -> None:
        with self.lock:
            old = self.items.pop(key, None)
            self.rows -= len(old.messages) if old else 0
            if snap is None or len(snap.messages) > self.max_rows:
                return
            self.items[key] = snap
            self.rows += len(snap.messages)
            while self.rows > self.max_rows:
                _, evicted = self.items.popitem(last=False)
                self.rows -= len(evicted.messages)

    def forget(self, path: str) -> None:
        with self.lock:
            for key in [k for k in self.items if k[0] == path]:
                self.rows -= len(self.items.pop(key).messages)


SNAPSHOTS = SnapshotCache(SNAPSHOT_CACHE_ROWS)
