"""Durable progress of migrations: what was copied from where, so a rerun never duplicates (Đ8.2.d, Đ10.2).

One SQLite file, `<data>/migration.sqlite3`, apart from the directory: it
is bookkeeping of a one-off operation, written at every batch, and can be
deleted when a unit's migration is finished (a later run then copies
everything again, so keep it until the old server is switched off).

A *job* is one source mailbox into one target account (`imap://user@host`
→ `nguyenvana@phuyen.gov.vn`). Per source folder it keeps UIDVALIDITY and
the last UID done; per message a ledger row with its SHA-256 and where it
went.

The window between "appended" and "progress recorded" is closed with an
intent journal: before a batch is appended, its rows are committed as
`pending` together with the target folder's UIDNEXT at that moment
(synchronous=FULL, so they are on disk before the first append starts).
After the store has returned, the rows become `copied` with their new UIDs
and the folder's last UID moves on, in one transaction. If the process
dies in between (SIGKILL, power), the next run finds `pending` rows and
looks in the target folder at the messages with UIDs from that UIDNEXT on:
one whose bytes have the same SHA-256 is the one that was appended, and
the row becomes `copied`; a row with no such message is dropped and the
message is copied again. The check is exact (the bytes, not a Message-ID
that old mail may lack or share) and cheap (only the messages appended
after the recorded UIDNEXT are read, and only on recovery).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from policy.calendar import utc_now

SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    job TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (job, source)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    source TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    target TEXT NOT NULL,
    uidnext_before INTEGER,
    target_uid INTEGER,
    state TEXT NOT NULL CHECK (state IN ('pending', 'copied', 'failed')),
    reason TEXT,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_folder ON messages (job, source, state);
CREATE INDEX IF NOT EXISTS messages_by_digest ON messages (job, source, digest);
"""


@dataclass(frozen=True)
class FolderProgress:
    target: str
    uidvalidity: int
    last_uid: int


@dataclass(frozen=True)
class Pending:
    id: int
    uid: int
    digest: str
    size: int
    target: str
    uidnext_before: int


@dataclass(frozen=True)
class Intent:
    """One message about to be appended (written as `pending` before the append)."""

    uid: int
    digest: str
    size: int


class ProgressDB:
    """Thread-safe: the migration's jobs share one connection behind a lock. Each call is short
    (one batch's rows), so the lock is never held across network or store waits."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # an intent must be on disk before its append
        self.conn.execute("PRAGMA busy_timeout=60000")
        self.conn.executescript(SCHEMA)
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def _tx(self, statements: Iterable[tuple[str, tuple[object, ...]]]) -> None:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    self.conn.execute(sql, params)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _rows(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    # ------------------------------------------------------------------ folders

    def folder(self, job: str, source: str) -> FolderProgress | None:
        rows = self._rows("SELECT target, uidvalidity, last_uid FROM folders WHERE job=? AND source=?", (job, source))
        if not rows:
            return None
        target, uidvalidity, last_uid = rows[0]
        return FolderProgress(str(target), int(uidvalidity), int(last_uid))  # type: ignore[call-overload]

    def start_folder(self, job: str, source: str, target: str, uidvalidity: int) -> None:
        """Record the folder; a changed UIDVALIDITY (RFC 3501 §2.3.1.1: the old UIDs mean nothing now)
        restarts its UID progress at 0, and the ledger's digests then keep copies from repeating."""
        self._tx([(
            "INSERT INTO folders (job, source, target, uidvalidity, last_uid, updated_at) VALUES (?,?,?,?,0,?) "
            "ON CONFLICT (job, source) DO UPDATE SET target=excluded.target, "
            "last_uid=CASE WHEN folders.uidvalidity=excluded.uidvalidity THEN folders.last_uid ELSE 0 END, "
            "uidvalidity=excluded.uidvalidity, updated_at=excluded.updated_at",
            (job, source, target, uidvalidity, _now()),
        )])

    # ------------------------------------------------------------------ the intent journal

    def begin_batch(self, job: str, source: str, uidvalidity: int, target: str, uidnext: int,
                    intents: list[Intent]) -> list[int]:
        """Write the batch as `pending` (durably) and return the row ids in the same order."""
        ids: list[int] = []
        now = _now()
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for it in intents:
                    cur = self.conn.execute(
                        "INSERT INTO messages (job, source, uidvalidity, uid, digest, size, target, uidnext_before, "
                        "state, at) VALUES (?,?,?,?,?,?,?,?, 'pending', ?)",
                        (job, source, uidvalidity, it.uid, it.digest, it.size, target, uidnext, now))
                    ids.append(int(cur.lastrowid or 0))
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        return ids

    def finish_batch(self, job: str, source: str, copied: list[tuple[int, int]], failed: list[tuple[int, str]],
                     dropped: list[int], last_uid: int | None) -> None:
        """Rows `copied` (row id, target UID), `failed` (row id, reason), `dropped` (not stored: retried
        later); the folder's last UID, all in one transaction."""
        now = _now()
        statements: list[tuple[str, tuple[object, ...]]] = []
        statements += [("UPDATE messages SET state='copied', target_uid=?, at=? WHERE id=?", (uid, now, rid))
                       for rid, uid in copied]
        statements += [("UPDATE messages SET state='failed', reason=?, at=? WHERE id=?", (reason, now, rid))
                       for rid, reason in failed]
        statements += [("DELETE FROM messages WHERE id=?", (rid,)) for rid in dropped]
        if last_uid is not None:
            statements.append(("UPDATE folders SET last_uid=max(last_uid, ?), updated_at=? WHERE job=? AND source=?",
                               (last_uid, now, job, source)))
        self._tx(statements)

    def record_failed(self, job: str, source: str, uidvalidity: int, uid: int, size: int, target: str,
                      reason: str, digest: str = "") -> None:
        """A message that was not appended at all (too large ...): kept for the report and retried next run."""
        self._tx([(
            "INSERT INTO messages (job, source, uidvalidity, uid, digest, size, target, state, reason, at) "
            "VALUES (?,?,?,?,?,?,?, 'failed', ?, ?)", (job, source, uidvalidity, uid, digest, size, target, reason,
                                                       _now()))])

    def pending(self, job: str) -> list[Pending]:
        rows = self._rows("SELECT id, uid, digest, size, target, uidnext_before FROM messages "
                          "WHERE job=? AND state='pending' ORDER BY id", (job,))
        return [Pending(int(r[0]), int(r[1]), str(r[2]), int(r[3]), str(r[4]), int(r[5] or 0))  # type: ignore[call-overload]
                for r in rows]

    def failed_uids(self, job: str, source: str, uidvalidity: int) -> list[int]:
        rows = self._rows("SELECT DISTINCT uid FROM messages WHERE job=? AND source=? AND uidvalidity=? "
                          "AND state='failed' ORDER BY uid", (job, source, uidvalidity))
        return [int(r[0]) for r in rows]  # type: ignore[call-overload]

    def copied_uids(self, job: str, source: str, uidvalidity: int, after: int) -> set[int]:
        rows = self._rows("SELECT uid FROM messages WHERE job=? AND source=? AND uidvalidity=? AND uid>? "
                          "AND state='copied'", (job, source, uidvalidity, after))
        return {int(r[0]) for r in rows}  # type: ignore[call-overload]

    def clear_failed(self, job: str, source: str, uidvalidity: int, uids: Iterable[int]) -> None:
        """Before a retry: the new attempt writes its own row."""
        self._tx([("DELETE FROM messages WHERE job=? AND source=? AND uidvalidity=? AND uid=? AND state='failed'",
                   (job, source, uidvalidity, uid)) for uid in uids])

    def copied_digests(self, job: str, source: str) -> dict[str, int]:
        """How many copies of each content this folder already gave (content-based resume: files, and
        IMAP folders whose UIDVALIDITY changed). Counts, so true duplicates in the source stay two."""
        rows = self._rows("SELECT digest, count(*) FROM messages WHERE job=? AND source=? AND state='copied' "
                          "GROUP BY digest", (job, source))
        return {str(r[0]): int(r[1]) for r in rows}  # type: ignore[call-overload]

    def totals(self, job: str) -> dict[str, int]:
        rows = self._rows("SELECT state, count(*) FROM messages WHERE job=? GROUP BY state", (job,))
        return {str(r[0]): int(r[1]) for r in rows}  # type: ignore[call-overload]


def _now() -> str:
    return utc_now().isoformat(timespec="seconds")
