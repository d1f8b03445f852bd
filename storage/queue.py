"""The outbound queue on disk: durable before the 250, consistent after any crash.

Layout under `<data>/queue/` (`Settings.paths.queue_dir`):

    queue.sqlite3         envelopes and per-recipient state (WAL, synchronous=FULL)
    messages/<id>.eml     the exact bytes to send (DKIM-signed, no Return-Path)
    workers/<token>.lock  one per server process delivering from the queue, flock()ed while it lives

The order of writes makes every crash harmless (nothing acknowledged is
lost, nothing finished is repeated):

* enqueue: the message file first (write `.tmp`, fsync, rename, fsync the
  folder), then its rows in one fsynced commit; only then may SMTP answer
  250. A crash in between leaves a file without rows, which was never
  acknowledged and is removed at the next start.
* a recipient accepted by the remote server (its 250 to the final dot) is
  marked `delivered` in its own fsynced commit at once, so a crash can
  repeat a delivery only in the instant between that 250 and the commit
  (delivery is at least once, RFC 5321 §6.1).
* a finished message: its rows go first (commit), then the file. A crash in
  between leaves a file without rows (removed at start).
* a bounce or delay notice is itself a queue entry, written (file, then
  rows) in the same commit that marks the failures it reports, so each
  failure is reported exactly once.

Several processes share the queue: `mailserver serve` delivers while the CLI
lists, retries, holds and deletes. SQLite (WAL, busy timeout) serialises
their writes. A server process claims a message by writing a lease (its
worker token) on the row; every serving process holds an flock() on
`workers/<token>.lock`, which the kernel releases when the process dies,
even by SIGKILL, so a restarted server takes over the leases of its dead
predecessor at once rather than after the lease expires.

Everything here is synchronous SQLite and file I/O, run on one thread of
its own (`OutboundQueue` is the asyncio face); concurrent enqueues are
written as one batch (group commit: one transaction, one folder fsync).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from policy.calendar import utc_now
from policy.errors import NotFound, ValidationFailed
from policy.model import OutboundPolicy
from storage.db import migrate_sync
from storage.maildir import fsync_dir, write_file
from storage.records import parse_ts, ts
from storage.threads import run_to_completion

log = logging.getLogger("storage.queue")

T = TypeVar("T")

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

DB_NAME = "queue.sqlite3"
LEASE = timedelta(hours=2)  # backstop only: a live owner is known by its flock
ORPHAN_AGE = 3600.0  # seconds before a message file without rows is removed
_ID = re.compile(r"^[A-Za-z0-9]{4,64}$")


def check_id(queue_id: str) -> str:
    """Queue ids name files: only letters and digits (no path can be smuggled in from the CLI)."""
    if not _ID.match(queue_id or ""):
        raise ValidationFailed("id", f'"{queue_id}" is not a queue id (letters and digits, as in `queue list`)')
    return queue_id


def domain_part(address: str) -> str:
    return address.rpartition("@")[2].lower()


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class Recipient:
    rcpt: str
    domain: str
    local: bool
    state: str
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    code: str | None
    reply: str | None
    remote_host: str | None
    tls: str | None
    reported: bool
    answered: bool  # `reply` is the remote server's own answer

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> Recipient:
        return cls(r["rcpt"], r["domain"], bool(r["local"]), r["state"], r["attempts"],
                   parse_ts(r["next_attempt_at"]), parse_ts(r["last_attempt_at"]),  # type: ignore[arg-type]
                   r["code"], r["reply"], r["remote_host"], r["tls"], bool(r["reported"]), bool(r["answered"]))


@dataclass(frozen=True)
class Entry:
    """One queued message with every recipient's state."""

    id: str
    sender: str
    account: str | None
    message_id: str | None
    subject: str | None
    size: int
    kind: str
    eightbit: bool
    utf8_headers: bool
    arrived_at: datetime
    expires_at: datetime
    delay_notice_at: datetime | None
    delay_notified_at: datetime | None
    held_at: datetime | None
    hold_reason: str | None
    hold_actor: str | None
    lease_owner: str | None
    recipients: tuple[Recipient, ...]

    @property
    def pending(self) -> list[Recipient]:
        return [r for r in self.recipients if r.state == PENDING]

    @property
    def held(self) -> bool:
        return self.held_at is not None

    @property
    def state(self) -> str:
        """held, sending (a worker has it now), deferred (tried, waiting), queued (not tried yet), done."""
        if self.held:
            return "held"
        if self.lease_owner:
            return "sending"
        pending = self.pending
        if not pending:
            return "done"
        return "deferred" if any(r.attempts for r in pending) else "queued"

    @property
    def next_attempt_at(self) -> datetime | None:
        pending = self.pending
        return min(r.next_attempt_at for r in pending) if pending else None

    def last_answer(self) -> Recipient | None:
        """The recipient with the most recent attempt (for one-line listings)."""
        tried = [r for r in self.recipients if r.last_attempt_at is not None]
        return max(tried, key=lambda r: r.last_attempt_at) if tried else None  # type: ignore[arg-type, return-value]

    def public(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state
        d["next_attempt_at"] = self.next_attempt_at
        return d


@dataclass
class NewEntry:
    """What SMTP (or the queue itself, for a bounce) hands over to be sent."""

    id: str
    sender: str
    recipients: list[str]
    data: bytes
    arrived_at: datetime
    kind: str = "mail"
    account: str | None = None
    message_id: str | None = None
    subject: str | None = None
    local: set[str] = field(default_factory=set)  # of `recipients`: deliver into our own store
    hold_reason: str | None = None
    hold_actor: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What one attempt did for one recipient."""

    rcpt: str
    state: str  # delivered | pending (retry at next_attempt_at) | failed
    code: str
    reply: str
    remote_host: str | None = None
    tls: str | None = None
    next_attempt_at: datetime | None = None
    reported: bool = False  # a failure nobody is told about (null sender)
    answered: bool = False  # `reply` is the remote server's own answer (not ours)


@dataclass(frozen=True)
class Stats:
    messages: int
    held: int
    recipients_pending: int
    oldest: datetime | None


# ------------------------------------------------------------------ worker liveness


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", text)[:40]


class WorkerLock:
    """The token a serving process writes into its leases; its flock says the process is alive."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.token = f"{_safe(socket.gethostname())}-{os.getpid()}-{secrets.token_hex(4)}"
        self.path = folder / f"{self.token}.lock"
        self._fd: int | None = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o640)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._fd)  # releases the lock
            self._fd = None


def owner_alive(folder: Path, token: str) -> bool:
    """True while the process that wrote `token` into a lease still runs (it holds the flock)."""
    path = folder / f"{_safe(token)}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock if we got it
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # its owner died (crash, SIGKILL): the file is ours to clean up
    return False


# ------------------------------------------------------------------ the synchronous core


class _QueueDB:
    """SQLite and files; every method runs on the queue's own thread."""

    def __init__(self, folder: Path, policy: OutboundPolicy) -> None:
        self.folder = folder
        self.policy = policy
        self.messages = folder / "messages"
        self.workers = folder / "workers"
        self.conn: sqlite3.Connection | None = None

    def open(self) -> None:
        for d in (self.folder, self.messages, self.workers):
            d.mkdir(parents=True, exist_ok=True, mode=0o750)
        conn = sqlite3.connect(self.folder / DB_NAME, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit is fsynced (WAL), so a recorded state survives a power cut too.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        migrate_sync(conn, "queue")
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @property
    def db(self) -> sqlite3.Connection:
        if self.conn is None:
            raise RuntimeError("the outbound queue is closed")
        return self.conn

    @contextlib.contextmanager
    def _tx(self) -> Any:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def path(self, queue_id: str) -> Path:
        return self.messages / f"{check_id(queue_id)}.eml"

    # -------------------------------------------------------------- writing new entries

    def _write_files(self, entries: Sequence[NewEntry]) -> list[BaseException | None]:
        errors: list[BaseException | None] = []
        for e in entries:
            try:
                final = self.path(e.id)
                tmp = final.with_suffix(".tmp")
                tmp.unlink(missing_ok=True)
                write_file(tmp, e.data)  # fsynced
                os.replace(tmp, final)
                errors.append(None)
            except Exception as exc:  # reported to that entry's caller alone
                errors.append(exc)
        fsync_dir(self.messages)  # the renames are durable before any row says the files exist
        return errors

    def _insert(self, db: sqlite3.Connection, e: NewEntry) -> None:
        now = e.arrived_at
        head = e.data.split(b"\r\n\r\n", 1)[0]
        notice = now + timedelta(seconds=self.policy.delay_notice_after.approx_seconds) \
            if e.kind == "mail" and e.sender else None
        held_at = ts(now) if e.hold_reason else None
        db.execute(
            "INSERT INTO messages (id, sender, account, message_id, subject, size, kind, eightbit, utf8_headers, "
            "arrived_at, expires_at, delay_notice_at, held_at, hold_reason, hold_actor) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (e.id, e.sender, e.account, e.message_id, e.subject, len(e.data), e.kind, int(not e.data.isascii()),
             int(not head.isascii()), ts(now), ts(self.policy.give_up_after.after(now)), ts(notice), held_at,
             e.hold_reason, e.hold_actor),
        )
        db.executemany(
            "INSERT INTO recipients (queue_id, rcpt, domain, local, state, next_attempt_at) VALUES (?,?,?,?,?,?)",
            [(e.id, r, domain_part(r), int(r in e.local), PENDING, ts(now)) for r in dict.fromkeys(e.recipients)],
        )

    def insert_batch(self, entries: Sequence[NewEntry]) -> list[BaseException | None]:
        """Files (fsynced, folder fsynced once), then every entry's rows in one fsynced commit."""
        errors = self._write_files(entries)
        try:
            with self._tx() as db:
                for i, e in enumerate(entries):
                    if errors[i] is not None:
                        continue
                    db.execute("SAVEPOINT one")
                    try:
                        self._insert(db, e)
                        db.execute("RELEASE one")
                    except sqlite3.Error as exc:
                        db.execute("ROLLBACK TO one")
                        db.execute("RELEASE one")
                        errors[i] = exc
        except BaseException as exc:
            errors = [err or exc for err in errors]
        for e, err in zip(entries, errors, strict=True):
            if err is not None:
                with contextlib.suppress(OSError, ValidationFailed):
                    self.path(e.id).unlink(missing_ok=True)
        return errors

    def add_recipients(self, queue_id: str, rcpts: Iterable[str], local: bool, now: datetime) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO recipients (queue_id, rcpt, domain, local, state, next_attempt_at) "
                "VALUES (?,?,?,?,?,?)",
                [(queue_id, r, domain_part(r), int(local), PENDING, ts(now)) for r in rcpts],
            )

    # -------------------------------------------------------------- reading

    def load(self, ids: Sequence[str]) -> list[Entry]:
        if not ids:
            return []
        out = []
        for chunk in range(0, len(ids), 500):
            part = list(ids[chunk : chunk + 500])
            marks = ",".join("?" * len(part))
            msgs = {r["id"]: r for r in self.db.execute(f"SELECT * FROM messages WHERE id IN ({marks})", part)}
            rcpts: dict[str, list[Recipient]] = {}
            for r in self.db.execute(
                f"SELECT * FROM recipients WHERE queue_id IN ({marks}) ORDER BY rowid", part
            ):
                rcpts.setdefault(r["queue_id"], []).append(Recipient.from_row(r))
            for qid in part:
                m = msgs.get(qid)
                if m is not None:
                    out.append(_entry(m, rcpts.get(qid, [])))
        return out

    def get(self, queue_id: str) -> Entry | None:
        found = self.load([check_id(queue_id)])
        return found[0] if found else None

    def list(self, held: bool | None, account: str | None, sender: str | None, limit: int) -> list[Entry]:
        where, params = [], []
        if held is not None:
            where.append("held_at IS NOT NULL" if held else "held_at IS NULL")
        if account:
            where.append("account = ?")
            params.append(account.lower())
        if sender:
            where.append("sender LIKE ?")
            params.append(f"%{sender.lower()}%")
        sql = "SELECT id FROM messages" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY arrived_at, id LIMIT ?"
        ids = [r["id"] for r in self.db.execute(sql, [*params, limit])]
        return self.load(ids)

    def stats(self) -> Stats:
        row = self.db.execute(
            "SELECT COUNT(*) AS n, SUM(held_at IS NOT NULL) AS held, MIN(arrived_at) AS oldest FROM messages"
        ).fetchone()
        pending = self.db.execute("SELECT COUNT(*) FROM recipients WHERE state='pending'").fetchone()[0]
        return Stats(row["n"], row["held"] or 0, pending, parse_ts(row["oldest"]))

    def next_due(self, owner: str) -> datetime | None:
        """When the next unheld message not leased by this worker falls due (see `claim`)."""
        row = self.db.execute(
            "SELECT MIN(t) FROM ("
            " SELECT MIN(r.next_attempt_at) AS t FROM recipients r JOIN messages m ON m.id = r.queue_id"
            "  WHERE (r.state='pending' OR (r.state='failed' AND r.reported=0)) AND m.held_at IS NULL"
            "  AND (m.lease_owner IS NULL OR m.lease_owner != ?)"
            " UNION ALL"
            " SELECT MIN(m.delay_notice_at) FROM messages m WHERE m.delay_notified_at IS NULL"
            "  AND m.delay_notice_at IS NOT NULL AND m.held_at IS NULL"
            "  AND (m.lease_owner IS NULL OR m.lease_owner != ?)"
            "  AND EXISTS (SELECT 1 FROM recipients r WHERE r.queue_id = m.id AND r.state='pending'))",
            (owner, owner),
        ).fetchone()
        return parse_ts(row[0])

    # -------------------------------------------------------------- delivering

    def claim(self, owner: str, now: datetime, limit: int, exclude: set[str]) -> list[Entry]:
        """Lease up to `limit` unheld messages that are due, oldest first, not leased by a live worker.

        Due: a pending recipient's next attempt has come; a failure is not reported yet (the process
        died between recording a 5xx and queueing its bounce, or the bounce could not be written); or the
        sender is owed a delay notice, whether or not a recipient is due for another attempt then."""
        rows = self.db.execute(
            "SELECT id, lease_owner, lease_until FROM messages WHERE id IN ("
            " SELECT queue_id FROM recipients WHERE (state='pending' OR (state='failed' AND reported=0))"
            "  AND next_attempt_at <= ?"
            " UNION"
            " SELECT m.id FROM messages m WHERE m.delay_notified_at IS NULL AND m.delay_notice_at <= ?"
            "  AND EXISTS (SELECT 1 FROM recipients r WHERE r.queue_id = m.id AND r.state='pending'))"
            " AND held_at IS NULL AND (lease_owner IS NULL OR lease_owner != ?)"
            " ORDER BY arrived_at LIMIT ?",
            (ts(now), ts(now), owner, limit + len(exclude) + 50),
        ).fetchall()
        alive: dict[str, bool] = {}
        chosen = []
        for r in rows:
            if r["id"] in exclude:
                continue
            lo = r["lease_owner"]
            if lo is not None and r["lease_until"] > ts(now):
                if lo not in alive:
                    alive[lo] = owner_alive(self.workers, lo)
                if alive[lo]:
                    continue
            chosen.append((r["id"], lo))
            if len(chosen) >= limit:
                break
        if not chosen:
            return []
        claimed = []
        with self._tx() as db:
            for qid, seen in chosen:
                cur = db.execute(
                    "UPDATE messages SET lease_owner=?, lease_until=? WHERE id=? AND held_at IS NULL "
                    "AND lease_owner IS ?",
                    (owner, ts(now + LEASE), qid, seen),
                )
                if cur.rowcount == 1:
                    claimed.append(qid)
        return self.load(claimed)

    def record(self, queue_id: str, outcomes: Sequence[Outcome], when: datetime) -> int:
        """One attempt's outcomes, in one fsynced commit; 0 if the message was deleted meanwhile."""
        changed = 0
        with self._tx() as db:
            for o in outcomes:
                cur = db.execute(
                    "UPDATE recipients SET state=?, attempts=attempts+1, last_attempt_at=?, "
                    "next_attempt_at=COALESCE(?, next_attempt_at), code=?, reply=?, answered=?, remote_host=?, "
                    "tls=?, reported=? WHERE queue_id=? AND rcpt=? AND state='pending'",
                    (o.state, ts(when), ts(o.next_attempt_at), o.code, o.reply, int(o.answered), o.remote_host,
                     o.tls, int(o.reported), queue_id, o.rcpt),
                )
                changed += cur.rowcount
        return changed

    def finish(self, queue_id: str, owner: str, reported: Sequence[str], notices: Sequence[NewEntry],
               delay_notified: datetime | None) -> bool:
        """Queue the bounce or delay notice, mark what it reports, give the lease back; remove the
        message once nothing is left to do. True when it was removed."""
        if self.db.execute("SELECT 1 FROM messages WHERE id=?", (queue_id,)).fetchone() is None:
            return True  # deleted by an operator during the attempt: no notices either
        errors = self._write_files(notices) if notices else []
        for err in errors:
            if err is not None:
                raise err
        try:
            with self._tx() as db:
                for n in notices:
                    self._insert(db, n)
                db.executemany("UPDATE recipients SET reported=1 WHERE queue_id=? AND rcpt=?",
                               [(queue_id, r) for r in reported])
                if delay_notified is not None:
                    db.execute("UPDATE messages SET delay_notified_at=? WHERE id=?", (ts(delay_notified), queue_id))
                db.execute("UPDATE messages SET lease_owner=NULL, lease_until=NULL WHERE id=? AND lease_owner=?",
                           (queue_id, owner))
                left = db.execute(
                    "SELECT COUNT(*) FROM recipients WHERE queue_id=? AND (state='pending' OR "
                    "(state='failed' AND reported=0))", (queue_id,),
                ).fetchone()[0]
                if left == 0:
                    db.execute("DELETE FROM messages WHERE id=?", (queue_id,))
        except BaseException:
            for n in notices:
                self.path(n.id).unlink(missing_ok=True)
            raise
        if left == 0:
            self.path(queue_id).unlink(missing_ok=True)
        return left == 0

    def postpone(self, queue_id: str, until: datetime) -> None:
        """Nothing of this message falls due before `until` (its recipients' attempts, its delay notice):
        after a delivery task failed unexpectedly (a broken notice template, a vanished file), so the
        dispatcher does not claim it again at once, in a loop."""
        with self._tx() as db:
            db.execute("UPDATE recipients SET next_attempt_at=MAX(next_attempt_at, ?) "
                       "WHERE queue_id=? AND (state='pending' OR (state='failed' AND reported=0))",
                       (ts(until), queue_id))
            db.execute("UPDATE messages SET delay_notice_at=MAX(delay_notice_at, ?) "
                       "WHERE id=? AND delay_notice_at IS NOT NULL AND delay_notified_at IS NULL",
                       (ts(until), queue_id))

    def unlease(self, queue_id: str, owner: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE messages SET lease_owner=NULL, lease_until=NULL WHERE id=? AND lease_owner=?",
                       (queue_id, owner))

    def remove_orphans(self, older_than: float) -> int:
        """Message files without rows (a crash between the file and the commit, or after the delete)."""
        known = {r[0] for r in self.db.execute("SELECT id FROM messages")}
        removed = 0
        limit = time.time() - older_than
        for p in self.messages.iterdir():
            qid = p.name.split(".", 1)[0]
            if qid in known:
                continue
            try:
                if p.stat().st_mtime < limit:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    # -------------------------------------------------------------- operators

    def _require(self, queue_id: str) -> Entry:
        e = self.get(queue_id)
        if e is None:
            raise NotFound("id", f"no message {queue_id} in the queue (`mailserver queue list`)")
        return e

    def retry(self, ids: Sequence[str] | None, now: datetime) -> list[Entry]:
        """Due now: the given messages, or every unheld one (None)."""
        if ids is None:
            ids = [r[0] for r in self.db.execute("SELECT id FROM messages WHERE held_at IS NULL")]
        else:
            for qid in ids:
                e = self._require(qid)
                if e.held:
                    raise ValidationFailed("id", f"{qid} is held; release it (`mailserver queue release {qid}`)")
        with self._tx() as db:
            db.executemany("UPDATE recipients SET next_attempt_at=? WHERE queue_id=? AND state='pending'",
                           [(ts(now), qid) for qid in ids])
        return self.load(list(ids))

    def hold(self, queue_id: str, reason: str, actor: str, now: datetime) -> Entry:
        e = self._require(queue_id)
        if e.held:
            raise ValidationFailed("id", f"{queue_id} is already held")
        with self._tx() as db:
            db.execute("UPDATE messages SET held_at=?, hold_reason=?, hold_actor=? WHERE id=?",
                       (ts(now), reason, actor, queue_id))
        return self._require(queue_id)

    def release(self, queue_id: str, now: datetime) -> Entry:
        """Delivery starts now, and the give-up and delay-notice clocks start again from now."""
        e = self._require(queue_id)
        if not e.held:
            raise ValidationFailed("id", f"{queue_id} is not held")
        notice = now + timedelta(seconds=self.policy.delay_notice_after.approx_seconds) \
            if e.kind == "mail" and e.sender and e.delay_notified_at is None else e.delay_notice_at
        with self._tx() as db:
            db.execute("UPDATE messages SET held_at=NULL, hold_reason=NULL, hold_actor=NULL, expires_at=?, "
                       "delay_notice_at=? WHERE id=?",
                       (ts(self.policy.give_up_after.after(now)), ts(notice), queue_id))
            db.execute("UPDATE recipients SET next_attempt_at=? WHERE queue_id=? AND state='pending'",
                       (ts(now), queue_id))
        return self._require(queue_id)

    def delete(self, queue_id: str) -> Entry:
        e = self._require(queue_id)
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE id=?", (queue_id,))
        self.path(queue_id).unlink(missing_ok=True)
        return e


def _entry(m: sqlite3.Row, rcpts: list[Recipient]) -> Entry:
    return Entry(
        m["id"], m["sender"], m["account"], m["message_id"], m["subject"], m["size"], m["kind"],
        bool(m["eightbit"]), bool(m["utf8_headers"]), parse_ts(m["arrived_at"]),  # type: ignore[arg-type]
        parse_ts(m["expires_at"]), parse_ts(m["delay_notice_at"]),  # type: ignore[arg-type]
        parse_ts(m["delay_notified_at"]), parse_ts(m["held_at"]), m["hold_reason"], m["hold_actor"],
        m["lease_owner"], tuple(rcpts),
    )


# ------------------------------------------------------------------ the asyncio face


class OutboundQueue:
    """The queue for SMTP (enqueue before the 250), the delivery workers and the CLI."""

    def __init__(self, folder: Path, policy: OutboundPolicy, clock: Callable[[], datetime] = utc_now) -> None:
        self.folder = folder
        self.clock = clock
        self._db = _QueueDB(folder, policy)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbound-queue")
        self._pending: list[tuple[NewEntry, asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None
        # called (no arguments) after each enqueue, so a delivery worker in this process starts at once
        self.on_enqueued: list[Callable[[], None]] = []

    @classmethod
    async def open(cls, folder: Path, policy: OutboundPolicy,
                   clock: Callable[[], datetime] = utc_now) -> OutboundQueue:
        q = cls(folder, policy, clock)
        try:
            await q._call(q._db.open)
        except BaseException:
            q._executor.shutdown(wait=False)
            raise
        return q

    async def close(self) -> None:
        if self._drainer is not None:
            with contextlib.suppress(BaseException):
                await self._drainer
        await self._call(self._db.close)
        self._executor.shutdown(wait=True)

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run on the queue's thread; a cancelled caller still waits for it (one connection, one thread)."""
        return await run_to_completion(self._executor, fn, *args, **kwargs)

    def set_policy(self, policy: OutboundPolicy) -> None:
        """A reloaded policy (SIGHUP): messages queued from now on get its give-up and delay-notice times
        (those already queued keep theirs, as their senders were promised)."""
        self._db.policy = policy

    @property
    def workers_folder(self) -> Path:
        return self._db.workers

    def message_path(self, queue_id: str) -> Path:
        return self._db.path(queue_id)

    async def read_message(self, queue_id: str) -> bytes:
        return await asyncio.to_thread(self._db.path(queue_id).read_bytes)

    # -------------------------------------------------------------- SMTP's handoff

    async def enqueue(self, entry: NewEntry) -> None:
        """Durably queued when this returns (the message file and its rows fsynced): SMTP may say 250.

        Concurrent callers share one batch (group commit)."""
        check_id(entry.id)
        if not entry.recipients:
            raise ValueError("a queue entry needs at least one recipient")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain(), name="outbound-enqueue")
        await asyncio.shield(fut)
        for cb in self.on_enqueued:
            cb()

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                errors = await self._call(self._db.insert_batch, [e for e, _ in batch])
            except BaseException as exc:
                errors = [exc] * len(batch)
            for (_, fut), err in zip(batch, errors, strict=True):
                if fut.done():
                    continue
                if err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(err)

    async def add_recipients(self, queue_id: str, rcpts: Iterable[str], *, local: bool) -> None:
        await self._call(self._db.add_recipients, queue_id, list(rcpts), local, self.clock())

    # -------------------------------------------------------------- reading

    async def get(self, queue_id: str) -> Entry | None:
        return await self._call(self._db.get, queue_id)

    async def list(self, *, held: bool | None = None, account: str | None = None, sender: str | None = None,
                   limit: int = 1000) -> list[Entry]:
        return await self._call(self._db.list, held, account, sender, limit)

    async def stats(self) -> Stats:
        return await self._call(self._db.stats)

    async def next_due(self, owner: str) -> datetime | None:
        return await self._call(self._db.next_due, owner)

    # -------------------------------------------------------------- delivery workers

    async def claim(self, owner: str, limit: int, exclude: set[str]) -> list[Entry]:
        return await self._call(self._db.claim, owner, self.clock(), limit, set(exclude))

    async def record(self, queue_id: str, outcomes: Sequence[Outcome], when: datetime | None = None) -> int:
        return await self._call(self._db.record, queue_id, list(outcomes), when or self.clock())

    async def finish(self, queue_id: str, owner: str, *, reported: Sequence[str] = (),
                     notices: Sequence[NewEntry] = (), delay_notified: datetime | None = None) -> bool:
        removed = await self._call(self._db.finish, queue_id, owner, list(reported), list(notices), delay_notified)
        if notices:
            for cb in self.on_enqueued:
                cb()
        return removed

    async def postpone(self, queue_id: str, until: datetime) -> None:
        await self._call(self._db.postpone, queue_id, until)

    async def unlease(self, queue_id: str, owner: str) -> None:
        await self._call(self._db.unlease, queue_id, owner)

    async def remove_orphans(self, older_than: float = ORPHAN_AGE) -> int:
        return await self._call(self._db.remove_orphans, older_than)

    # -------------------------------------------------------------- operators (the CLI)

    async def retry(self, ids: Sequence[str] | None) -> list[Entry]:
        return await self._call(self._db.retry, None if ids is None else [check_id(i) for i in ids], self.clock())

    async def hold(self, queue_id: str, reason: str, actor: str) -> Entry:
        return await self._call(self._db.hold, check_id(queue_id), reason, actor, self.clock())

    async def release(self, queue_id: str) -> Entry:
        return await self._call(self._db.release, check_id(queue_id), self.clock())

    async def delete(self, queue_id: str) -> Entry:
        return await self._call(self._db.delete, check_id(queue_id))
