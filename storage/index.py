"""One account's mail index: SQLite (WAL) beside the Maildir++ tree, kept in line with the files.

The files are the truth (Dovecot's rule): the message files with their
flags in the name, and the control files (`storage.controlfiles`) with the
UIDs and keyword names. The index is a cache that makes IMAP fast — the
folder list, UIDs, flags, MODSEQs, sizes, the parsed MIME tree, the header
fields of a first sync and a text index for SEARCH — and can always be
rebuilt from the files without changing a UID or losing a keyword.

Everything here is synchronous and runs in the store's worker threads; one
`AccountIndex` is used by one thread at a time (the pool's per-account
lock). Every change happens inside `BEGIN IMMEDIATE`, which is also the
lock that serialises writers of the same account across worker processes
and the CLI. The order of every change is chosen for crashes:

1. the message file is complete and flushed before it gets a name in
   `new/` or `cur/` (written in `tmp/`, fsync, rename, fsync the directory);
2. a UID is appended (and flushed) to `dovecot-uidlist` before the index
   commits it or anyone is told it;
3. the index commits last. A crash before that leaves a file the index
   does not know: the next look at the folder finds it (the directory's
   mtime changed) and indexes it with the UID the uidlist already gave it.

Noticing changes made by other programs is Dovecot's method: the index
remembers the mtimes of `new/` and `cur/` at its last look; a different
mtime means "scan again". Because directory mtimes are only as fine as the
kernel's clock tick, an mtime younger than two seconds is not trusted for
`new/` (where other programs deliver): the next operation looks again.
Other programs are expected to deliver into `new/` only; renaming files in
`cur/` behind a running server is noticed too, but only once the directory
changes again after the same clock tick (`mailserver reindex` settles it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sqlite3
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from policy.errors import ValidationFailed
from policy.limits import thresholds_reached
from policy.model import QuotaPolicy
from storage import controlfiles as cf
from storage import maildir as md
from storage import snapshots
from storage.content import Content, parse_files
from storage.db import migrate_sync
from storage.errors import FolderExists, FolderNotFound, KeywordLimit, MessageNotFound, OverQuota
from storage.events import event_from_json, event_json
from storage.flags import keyword_index, split_flags
from storage.mime import fold
from storage.storetypes import (
    Changes,
    CopyResult,
    Drift,
    Event,
    EventKind,
    FlagMode,
    Flags,
    FolderInfo,
    FolderSnapshot,
    FolderStatus,
    FolderUsage,
    MessageMeta,
    Stored,
)

log = logging.getLogger("storage.index")

INDEX_NAME = "mailserver.index.sqlite3"
NEVER, DIRTY = -1, -2
TOO_NEW_NS = 2_000_000_000  # directory mtimes younger than this are not trusted (clock-tick races)
CHANGES_KEPT = 5000  # rows of the cross-process change log kept
EXPUNGED_KEPT = 20000  # expunge records kept per folder for QRESYNC
TMP_MAX_AGE = 36 * 3600  # Maildir: files left in tmp/ this long are abandoned deliveries
ADOPT_CHUNK = 2000  # files parsed and inserted at a time when indexing files the index did not know
SPECIAL_USES = ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash")


class IndexCorrupt(Exception):
    """The database file cannot be used; it is set aside and rebuilt."""


@dataclass
class FolderRow:
    id: int
    name: str
    dirname: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    vanished_floor: int
    subscribed: bool
    special_use: str | None
    keywords: list[str | None]
    new_mtime: int
    cur_mtime: int
    uidlist_stale: int

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> FolderRow:
        return cls(r["id"], r["name"], r["dirname"], r["uidvalidity"], r["uidnext"], r["highestmodseq"],
                   r["vanished_floor"], bool(r["subscribed"]), r["special_use"], json.loads(r["keywords"]),
                   r["new_mtime"], r["cur_mtime"], r["uidlist_stale"])


@dataclass
class Incoming:
    """One message waiting to be committed into one account."""

    folder: str
    src: Path  # complete, flushed file in a tmp/ of the same file system
    base: str
    size: int
    flags: int
    keywords: tuple[str, ...]
    internal_date: int
    content: Content
    system: bool
    link: bool  # the file is shared by several recipients: link instead of rename
    quota: int = 0  # the account's quota when the delivery started (Đ7.3)


@dataclass
class Outcome:
    result: Stored | Exception
    crossed: int | None = None  # Đ7.3.c threshold this delivery crossed


@dataclass
class _Acct:
    bytes: int
    messages: int
    warned: list[int] | None
    last_uidvalidity: int
    root_mtime: int


@dataclass
class _Msg:
    uid: int
    base: str
    subdir: str
    name: str
    flags: int
    keywords: int
    modseq: int
    size: int
    cid: int
    recent: int = 0
    internal_date: int = 0


@dataclass
class _Ctx:
    events: list[Event] = field(default_factory=list)


_tmp_checked: dict[str, float] = {}  # folder -> when its tmp/ was last cleaned (this process)


def _time_modseq() -> int:
    """A MODSEQ base no earlier index of this folder can have reached: microseconds since the
    epoch (every change adds 1, and nothing changes a folder a million times a second)."""
    return time.time_ns() // 1000


def _too_new(mtime: int) -> bool:
    return mtime >= 0 and time.time_ns() - mtime < TOO_NEW_NS


def _trusted(mtime: int) -> int:
    return DIRTY if _too_new(mtime) else mtime


class AccountIndex:
    """The index of one account plus the file operations that go with each change."""

    def __init__(self, root: Path, address: str, special: dict[str, str], quota_rules: QuotaPolicy, *,
                 account_id: int = 0, fsync: bool = True, origin: str = "") -> None:
        self.root = root
        self.address = address
        self.account_id = account_id
        self.special = special  # policy folder name -> special-use, e.g. {"Sent": "\\Sent"}
        self.quota_rules = quota_rules
        self.fsync = fsync
        self.origin = origin or os.urandom(8).hex()  # which process wrote a change (storage/events.py)
        self.path = root / INDEX_NAME
        self.conn: sqlite3.Connection | None = None
        self.inode = 0
        self._ctx = _Ctx()
        self._quiet = False

    # ------------------------------------------------------------------ connection

    def open(self) -> None:
        md.make_maildir(self.root, subfolder=False, fsync=self.fsync)
        try:
            fresh = self._connect()
        except IndexCorrupt:
            self._set_aside()
            fresh = self._connect()
        if fresh:
            # a new or lost index: usage must be exact before the first quota check
            self.rebuild()

    def _connect(self) -> bool:
        """Open (creating if needed); True when the database was new."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA cache_size=-4096")
            conn.execute("PRAGMA temp_store=MEMORY")
            fresh = self._migrate(conn)
            conn.execute("SELECT bytes FROM account WHERE id=1").fetchone()
        except sqlite3.OperationalError as e:
            conn.close()
            if "locked" in str(e) or "busy" in str(e):
                raise
            raise IndexCorrupt(str(e)) from e
        except sqlite3.DatabaseError as e:
            conn.close()
            raise IndexCorrupt(str(e)) from e
        self.conn = conn
        self.inode = os.stat(self.path).st_ino
        return fresh

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> bool:
        return migrate_sync(conn, "index")

    def _set_aside(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{INDEX_NAME}.corrupt-{stamp}")
        log.warning("index of %s is unusable; moved to %s and rebuilt from the files", self.address, target.name)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, target)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(self.path) + suffix)

    def replaced(self) -> bool:
        """Was the database file deleted or replaced behind this connection (operator, other process)?"""
        try:
            return os.stat(self.path).st_ino != self.inode
        except FileNotFoundError:
            return True

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self.conn = None

    @property
    def db(self) -> sqlite3.Connection:
        assert self.conn is not None, "index is closed"
        return self.conn

    # ------------------------------------------------------------------ transactions and events

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT; nested use joins the outer transaction."""
        if self.db.in_transaction:
            yield
            return
        mark = len(self._ctx.events)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            del self._ctx.events[mark:]
            raise
        self.db.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        """A consistent snapshot for several SELECTs (WAL readers do not block writers)."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def take_events(self) -> list[Event]:
        events, self._ctx.events = self._ctx.events, []
        return events

    def _event(self, kind: EventKind, folder: str, uids: Iterable[int] = (), modseq: int = 0,
               old_name: str | None = None) -> None:
        """Record a change for listeners: this process's after commit, other processes' through `changes`."""
        if self._quiet:
            return
        event = Event(kind, folder, tuple(uids), modseq, old_name, self.account_id)
        self._ctx.events.append(event)
        seq = self.db.execute("INSERT INTO changes (origin, event) VALUES (?, ?)",
                              (self.origin, event_json(event))).lastrowid or 0
        if seq % 500 == 0:
            self.db.execute("DELETE FROM changes WHERE seq <= ?", (seq - CHANGES_KEPT,))

    def poll_changes(self, seq: int | None) -> tuple[int, list[Event]]:
        """The watcher's look at this account: index what other programs dropped into the INBOX,
        then the events other processes recorded after `seq` (None: just the current position)."""
        self.folder(md.INBOX)
        if seq is None:
            return self.db.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0], []
        return self.changes_after(seq)

    def changes_after(self, seq: int) -> tuple[int, list[Event]]:
        """Events other processes recorded after `seq` (and the newest seq)."""
        rows = self.db.execute("SELECT seq, origin, event FROM changes WHERE seq > ? ORDER BY seq", (seq,)).fetchall()
        if not rows:
            last = self.db.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]
            return max(seq, last), []
        events = [event_from_json(r[2], self.account_id) for r in rows if r[1] != self.origin]
        return rows[-1][0], events

    # ------------------------------------------------------------------ account row

    def _acct(self) -> _Acct:
        r = self.db.execute("SELECT * FROM account WHERE id=1").fetchone()
        return _Acct(r["bytes"], r["messages"], None if r["warned"] is None else json.loads(r["warned"]),
                     r["last_uidvalidity"], r["root_mtime"])

    def _add_usage(self, nbytes: int, count: int) -> None:
        if nbytes or count:
            self.db.execute("UPDATE account SET bytes=bytes+?, messages=messages+? WHERE id=1", (nbytes, count))

    def _new_uidvalidity(self) -> int:
        value = max(int(time.time()), self._acct().last_uidvalidity + 1)
        self.db.execute("UPDATE account SET last_uidvalidity=? WHERE id=1", (value,))
        return value

    # ------------------------------------------------------------------ folders: lookup and discovery

    def folder_dir(self, f: FolderRow | str) -> Path:
        dirname = f.dirname if isinstance(f, FolderRow) else f
        return self.root / dirname if dirname else self.root

    def _row(self, name: str) -> FolderRow | None:
        r = self.db.execute("SELECT * FROM folders WHERE name=?", (name,)).fetchone()
        return FolderRow.from_row(r) if r else None

    def _rows(self) -> list[FolderRow]:
        return [FolderRow.from_row(r) for r in self.db.execute("SELECT * FROM folders ORDER BY name")]

    def discover(self, force: bool = False) -> None:
        """Match the folder table with the directories under the root (cheap when the root is unchanged)."""
        mtime = md.dir_mtime(self.root)
        if not force and mtime == self._acct().root_mtime:
            return
        with self.write():
            on_disk: dict[str, str] = {"": md.INBOX}
            for entry in os.scandir(self.root):
                if entry.name.startswith(md.TRASH_PREFIX):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    continue
                if not entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                name = md.folder_from_dirname(entry.name)
                if name is not None and name != md.INBOX and os.path.isdir(os.path.join(entry.path, "cur")):
                    on_disk[entry.name] = name
            known = {f.dirname: f for f in self._rows()}
            subscribed = cf.read_subscriptions(self.root)
            uses = {**self.special, **cf.read_special_use(self.root)}
            for dirname, name in sorted(on_disk.items()):
                if dirname not in known:
                    self._adopt_folder(name, dirname, name in subscribed, uses.get(name))
            for dirname, f in known.items():
                if dirname not in on_disk:
                    self._forget_folder(f)
            self.db.execute("UPDATE account SET root_mtime=? WHERE id=1", (_trusted(mtime),))

    def _adopt_folder(self, name: str, dirname: str, subscribed: bool, special_use: str | None,
                      *, fresh: bool = False) -> FolderRow:
        """Give a folder directory its row; its UIDVALIDITY comes from its uidlist when it has one."""
        d = self.folder_dir(dirname)
        ul = None if fresh else cf.read_uidlist(d)
        if ul is None:
            uidvalidity, uidnext = self._new_uidvalidity(), 1
            cf.write_uidlist(d, uidvalidity, uidnext, [], fsync=self.fsync)
        else:
            uidvalidity, uidnext = ul.uidvalidity, ul.next_free
            if uidvalidity > self._acct().last_uidvalidity:
                self.db.execute("UPDATE account SET last_uidvalidity=? WHERE id=1", (uidvalidity,))
        # A folder found on disk with history may have had an index before: start MODSEQs above
        # anything it can have issued. A brand-new folder starts at 1.
        modseq = 1 if fresh or ul is None else _time_modseq()
        keywords = [] if fresh else cf.read_keywords(d)
        self.db.execute(
            "INSERT INTO folders (name, dirname, uidvalidity, uidnext, highestmodseq, vanished_floor, subscribed, "
            "special_use, keywords) VALUES (?,?,?,?,?,?,?,?,?)",
            (name, dirname, uidvalidity, uidnext, modseq, 0 if modseq == 1 else modseq, int(subscribed), special_use,
             json.dumps(keywords)),
        )
        row = self._row(name)
        assert row is not None
        self._event("folder-created", name, modseq=modseq)
        return row

    def _forget_folder(self, f: FolderRow) -> None:
        rows = self._messages(f, "1")
        self._drop(f, rows, f.highestmodseq + 1, record=False)
        self.db.execute("DELETE FROM expunged WHERE folder_id=?", (f.id,))
        self.db.execute("DELETE FROM folders WHERE id=?", (f.id,))
        self._event("folder-deleted", f.name)

    def folder(self, name: str) -> FolderRow:
        """The folder's row, in line with its directories. Raises FolderNotFound."""
        name = md.normalize_folder(name)
        self.discover()
        f = self._row(name)
        if f is None:
            raise FolderNotFound(name)
        return self._synced(f)

    # ------------------------------------------------------------------ folders: keeping rows in line with files

    def _tuples(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """Plain tuples (no sqlite3.Row): the 100,000-row paths."""
        cur = self.db.cursor()
        cur.row_factory = None
        return cur.execute(sql, params)

    def _messages(self, f: FolderRow, where: str, params: tuple[Any, ...] = ()) -> list[_Msg]:
        sql = ("SELECT uid, base, subdir, name, flags, keywords, modseq, size, cid, recent, internal_date "
               f"FROM messages WHERE folder_id=? AND {where} ORDER BY uid")
        return [_Msg(*r) for r in self._tuples(sql, (f.id, *params))]

    def _synced(self, f: FolderRow, *, force: bool = False) -> FolderRow:
        d = self.folder_dir(f)
        new_m, cur_m = md.dir_mtime(d / "new"), md.dir_mtime(d / "cur")
        if not force and new_m == f.new_mtime and cur_m == f.cur_mtime and NEVER not in (new_m, cur_m):
            return f
        with self.write():
            fresh = self._row(f.name)
            if fresh is None:
                raise FolderNotFound(f.name)
            if cur_m == NEVER:
                self.discover(force=True)
                raise FolderNotFound(f.name)
            self._scan(fresh, force=force)
            row = self._row(f.name)
            assert row is not None
            return row

    def _scan(self, f: FolderRow, *, force: bool) -> None:
        d = self.folder_dir(f)
        md.make_maildir(d, subfolder=bool(f.dirname), fsync=self.fsync)  # a lost new/ or tmp/ comes back
        new_m, cur_m = md.dir_mtime(d / "new"), md.dir_mtime(d / "cur")
        scan_cur = force or cur_m != f.cur_mtime or f.cur_mtime < 0
        scan_new = scan_cur or new_m != f.new_mtime or f.new_mtime < 0
        known = {m.base: m for m in self._messages(f, "1" if scan_cur else "subdir='new'")}
        seen: set[str] = set()
        unknown: list[tuple[str, str]] = []
        changed: list[_Msg] = []
        modseq = f.highestmodseq + 1
        if scan_new:
            for name in os.listdir(d / "new"):
                base, _info = md.split_name(name)
                m = known.get(base)
                if m is None:
                    unknown.append(("new", name))
                    continue
                seen.add(base)
                self._to_cur(d, m, m.flags, m.keywords, from_name=("new", name))
                self._save_location(f, m)
            if not scan_cur and any(m.base not in seen for m in known.values()):
                # a file we had in new/ went somewhere else (another program moved it to cur/)
                scan_cur = True
                known = {m.base: m for m in self._messages(f, "1")}
        if scan_cur:
            for name in os.listdir(d / "cur"):
                base, info = md.split_name(name)
                m = known.get(base)
                if m is None:
                    unknown.append(("cur", name))
                    continue
                if base in seen:
                    continue
                seen.add(base)
                if m.subdir != "cur" or m.name != name:
                    flags, kws = md.parse_info(info)
                    if (flags, kws) != (m.flags, m.keywords):
                        m.flags, m.keywords, m.modseq = flags, kws, modseq
                        changed.append(m)
                    self.db.execute(
                        "UPDATE messages SET subdir='cur', name=?, flags=?, keywords=?, modseq=? "
                        "WHERE folder_id=? AND uid=?", (name, m.flags, m.keywords, m.modseq, f.id, m.uid))
            gone = [m for m in known.values() if m.base not in seen]
            if gone:
                self._drop(f, gone, modseq)
                self._event("expunge", f.name, [m.uid for m in gone], modseq)
        if changed:
            self.db.execute("UPDATE folders SET highestmodseq=? WHERE id=?", (modseq, f.id))
            self._event("flags", f.name, [m.uid for m in changed], modseq)
        if unknown:
            self._adopt_files(f, unknown, modseq)
        if scan_new:
            self._clean_tmp(d)
        self._touch(f)

    def _touch(self, f: FolderRow) -> None:
        """Remember the directories' mtimes after our own change (or scan).

        `new/` is where other programs deliver at any moment: a too recent mtime is not trusted.
        `cur/` changes only under the write lock (ours, or another worker's); distrusting it
        would make a busy 100,000-message folder rescan on every operation."""
        d = self.folder_dir(f)
        new_m, cur_m = md.dir_mtime(d / "new"), md.dir_mtime(d / "cur")
        self.db.execute("UPDATE folders SET new_mtime=?, cur_mtime=? WHERE id=?", (_trusted(new_m), cur_m, f.id))

    def _to_cur(self, d: Path, m: _Msg, flags: int, keywords: int, *, from_name: tuple[str, str] | None = None) -> None:
        """Move a message into cur/ with the given flags (rename; the content never changes)."""
        src_sub, src_name = from_name or (m.subdir, m.name)
        target = md.cur_name(m.base, flags, keywords)
        if (src_sub, src_name) != ("cur", target):
            os.rename(d / src_sub / src_name, d / "cur" / target)
        m.subdir, m.name, m.flags, m.keywords = "cur", target, flags, keywords

    def _save_location(self, f: FolderRow, m: _Msg) -> None:
        self.db.execute("UPDATE messages SET subdir=?, name=?, flags=?, keywords=?, modseq=? "
                        "WHERE folder_id=? AND uid=?", (m.subdir, m.name, m.flags, m.keywords, m.modseq, f.id, m.uid))

    def _clean_tmp(self, d: Path) -> None:
        """Remove deliveries abandoned in tmp/ (Maildir: after 36 hours); looked at hourly."""
        now = time.monotonic()
        if now - _tmp_checked.get(str(d), -3600.0) < 3600.0:
            return
        _tmp_checked[str(d)] = now
        cutoff = time.time() - TMP_MAX_AGE
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(d / "tmp"):
                with contextlib.suppress(FileNotFoundError):
                    # not mtime alone: a delivery with an old internal date (migration, APPEND) sets it
                    # back before its rename; the change time says when the file was really written
                    st = entry.stat()
                    if max(st.st_mtime, st.st_ctime) < cutoff:
                        os.unlink(entry.path)

    def _adopt_files(self, f: FolderRow, files: list[tuple[str, str]], modseq: int) -> None:
        """Index files the index did not know: dropped into new/ by another program, left by a crash
        between rename and commit, or everything after the index was lost. UIDs come from
        dovecot-uidlist when it has them; new ones are appended to it before the commit."""
        d = self.folder_dir(f)
        ul = cf.read_uidlist(d)
        if ul is not None and ul.uidvalidity != f.uidvalidity:
            ul = None  # someone replaced the uidlist: its numbers belong to another UIDVALIDITY
        taken = {r[0] for r in self.db.execute("SELECT uid FROM messages WHERE folder_id=?", (f.id,))}
        uidnext = max(f.uidnext, ul.next_free if ul else 1)
        ordered = sorted(files, key=lambda p: md.split_name(p[1])[0])
        records: list[tuple[int, str]] = []
        uids: list[int] = []
        added = 0
        for start in range(0, len(ordered), ADOPT_CHUNK):  # bounded memory for 100,000-message folders
            chunk = ordered[start : start + ADOPT_CHUNK]
            parsed = parse_files([str(d / sub / name) for sub, name in chunk])
            msgs: list[_Msg] = []
            contents: list[Content] = []
            for (subdir, name), result in zip(chunk, parsed, strict=True):
                if result is None:
                    continue  # gone meanwhile
                content, size, mtime = result
                base, info = md.split_name(name)
                uid = ul.records.get(base) if ul else None
                if uid is None or uid in taken or uid < 1:
                    uid = uidnext
                    records.append((uid, base))
                uidnext = max(uidnext, uid + 1)
                taken.add(uid)
                flags, kws = md.parse_info(info)
                m = _Msg(uid, base, subdir, name, flags, kws, modseq, size, 0, recent=int(subdir == "new"),
                         internal_date=mtime)
                if subdir == "new":
                    self._to_cur(d, m, flags, kws)
                msgs.append(m)
                contents.append(content)
            for m, cid in zip(msgs, self._insert_contents(contents), strict=True):
                m.cid = cid
            self._insert_messages(f, msgs)
            uids.extend(m.uid for m in msgs)
            added += sum(m.size for m in msgs)
        if ul is None:
            existing = [(r[0], r[1]) for r in self.db.execute(
                "SELECT uid, base FROM messages WHERE folder_id=?", (f.id,))]
            cf.write_uidlist(d, f.uidvalidity, uidnext, existing, fsync=self.fsync)
        else:
            cf.append_uidlist(d, records, fsync=self.fsync)
        self.db.execute("UPDATE folders SET uidnext=?, highestmodseq=? WHERE id=?", (uidnext, modseq, f.id))
        self._add_usage(added, len(uids))
        if uids:
            self._event("new", f.name, sorted(uids), modseq)

    def _insert_contents(self, contents: list[Content]) -> list[int]:
        """Bulk insert (a rebuild adds 100,000 at once); cids are allocated here, inside the
        write transaction, so they never collide and are never reused."""
        if not contents:
            return []
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name='contents'").fetchone()
        first = (row[0] if row else 0) + 1
        cids = list(range(first, first + len(contents)))
        self.db.executemany(
            "INSERT INTO contents (cid, refs, envelope, structure, header_fields, s_subject, s_from, s_to, s_cc, "
            "s_bcc) VALUES (?,1,?,?,?,?,?,?,?,?)",
            [(cid, c.envelope, c.structure, c.header_fields, c.search["subject"], c.search["from"], c.search["to"],
              c.search["cc"], c.search["bcc"]) for cid, c in zip(cids, contents, strict=True)])
        self.db.executemany("INSERT INTO texts (rowid, body, extra) VALUES (?,?,?)",
                            [(cid, c.search["body"], f'{c.search["subject"]} {c.search["extra"]}')
                             for cid, c in zip(cids, contents, strict=True)])
        return cids

    def _insert_messages(self, f: FolderRow, msgs: list[_Msg]) -> None:
        self.db.executemany(
            "INSERT INTO messages (folder_id, uid, base, subdir, name, flags, keywords, modseq, size, internal_date, "
            "recent, cid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [(f.id, m.uid, m.base, m.subdir, m.name, m.flags, m.keywords, m.modseq, m.size, m.internal_date,
              m.recent, m.cid) for m in msgs])

    def _drop(self, f: FolderRow, rows: list[_Msg], modseq: int, *, record: bool = True) -> None:
        """Forget messages (their files are gone or going): rows, usage, content references."""
        if not rows:
            return
        self.db.executemany("DELETE FROM messages WHERE folder_id=? AND uid=?", [(f.id, m.uid) for m in rows])
        if record:
            self.db.executemany("INSERT OR REPLACE INTO expunged (folder_id, uid, modseq) VALUES (?,?,?)",
                                [(f.id, m.uid, modseq) for m in rows])
            self.db.execute("UPDATE folders SET highestmodseq=?, uidlist_stale=uidlist_stale+? WHERE id=?",
                            (modseq, len(rows), f.id))
        cids = [m.cid for m in rows]
        self.db.executemany("UPDATE contents SET refs=refs-1 WHERE cid=?", [(c,) for c in cids])
        garbage = 0
        for chunk in _chunks(sorted(set(cids)), 500):
            marks = ",".join("?" * len(chunk))
            garbage += self.db.execute(f"DELETE FROM contents WHERE cid IN ({marks}) AND refs<=0", chunk).rowcount
        if garbage:
            self.db.execute("UPDATE account SET fts_garbage=fts_garbage+? WHERE id=1", (garbage,))
        self._add_usage(-sum(m.size for m in rows), -len(rows))

    def _prune_expunged(self, f: FolderRow) -> None:
        """QRESYNC expunge records are kept for the last EXPUNGED_KEPT expunges of a folder; older
        ones are summarised by raising the folder's vanished floor (clients that old resync)."""
        count = self.db.execute("SELECT count(*) FROM expunged WHERE folder_id=?", (f.id,)).fetchone()[0]
        if count <= EXPUNGED_KEPT:
            return
        cut = self.db.execute("SELECT modseq FROM expunged WHERE folder_id=? ORDER BY modseq LIMIT 1 OFFSET ?",
                              (f.id, count - EXPUNGED_KEPT // 2)).fetchone()[0]
        self.db.execute("DELETE FROM expunged WHERE folder_id=? AND modseq<?", (f.id, cut))
        self.db.execute("UPDATE folders SET vanished_floor=max(vanished_floor, ?) WHERE id=?", (cut - 1, f.id))

    def _compact_uidlist(self, f: FolderRow) -> None:
        """Rewrite dovecot-uidlist without expunged lines once they outnumber the live ones."""
        row = self._row(f.name)
        assert row is not None
        live = self.db.execute("SELECT count(*) FROM messages WHERE folder_id=?", (f.id,)).fetchone()[0]
        if row.uidlist_stale < max(1000, live):
            return
        records = [(r[0], r[1]) for r in self.db.execute("SELECT uid, base FROM messages WHERE folder_id=?", (f.id,))]
        cf.write_uidlist(self.folder_dir(f), row.uidvalidity, row.uidnext, records, fsync=self.fsync)
        self.db.execute("UPDATE folders SET uidlist_stale=0 WHERE id=?", (f.id,))

    # ------------------------------------------------------------------ flags

    def _flag_set(self, flags: int, kws: int, names: list[str | None]) -> Flags:
        out = [name for name, bit in md.FLAG_BITS.items() if flags & bit]
        i = 0
        while kws:
            if kws & 1 and i < len(names) and names[i]:
                out.append(names[i])  # type: ignore[arg-type]
            kws >>= 1
            i += 1
        return frozenset(out)

    def _flag_cache(self, f: FolderRow) -> Callable[[int, int], Flags]:
        cache: dict[tuple[int, int], Flags] = {}
        names = f.keywords

        def get(flags: int, kws: int) -> Flags:
            key = (flags, kws)
            v = cache.get(key)
            if v is None:
                v = cache[key] = self._flag_set(flags, kws, names)
            return v

        return get

    def _flag_bits(self, f: FolderRow, strings: Iterable[str], *, create: bool) -> tuple[int, int]:
        """IMAP flag strings -> (system bits, keyword bits), adding new keywords to the folder."""
        flags, keywords = split_flags(strings)
        kws = 0
        new_names: list[str] = []
        for s in keywords:
            index = keyword_index(f.keywords, s)
            if index is None:
                if create:
                    new_names.append(s)
            else:
                kws |= 1 << index
        if new_names:
            names = list(f.keywords)
            for s in new_names:
                index = keyword_index(names, s)
                if index is None:
                    free = next((i for i, n in enumerate(names) if n is None), len(names))
                    if free >= md.MAX_KEYWORDS:
                        raise KeywordLimit(f.name)
                    if free == len(names):
                        names.append(s)
                    else:
                        names[free] = s
                    index = free
                kws |= 1 << index
            # the keyword file is written before any file name uses the new letter
            cf.write_keywords(self.folder_dir(f), names, fsync=self.fsync)
            self.db.execute("UPDATE folders SET keywords=? WHERE id=?", (json.dumps(names), f.id))
            f.keywords = names
        return flags, kws

    def _remap_keywords(self, src: FolderRow, dest: FolderRow, kws: int) -> int:
        if not kws:
            return 0
        names = [src.keywords[i] for i in range(len(src.keywords)) if kws >> i & 1 and src.keywords[i]]
        return self._flag_bits(dest, names, create=True)[1]  # type: ignore[arg-type]

    # ------------------------------------------------------------------ delivery

    def commit_deliveries(self, items: list[Incoming], quota: int) -> list[Outcome]:
        """Put a batch of delivered files into their folders in one transaction (group commit).

        Quota is checked here, under the account's write lock, so it is exact across
        concurrent deliveries and worker processes; system notices are never refused (Đ7.3.c).
        """
        outcomes: list[Outcome | None] = [None] * len(items)
        placed: list[Path] = []
        try:
            with self.write():
                self.discover()
                folders: dict[str, FolderRow] = {}
                keyword_bits: dict[int, int] = {}
                for i, it in enumerate(items):
                    if it.folder not in folders:
                        row = self._row(it.folder)
                        if row is None:
                            outcomes[i] = Outcome(FolderNotFound(it.folder))
                            continue
                        folders[it.folder] = self._synced(row)
                    try:
                        keyword_bits[i] = self._flag_bits(folders[it.folder], it.keywords, create=True)[1]
                    except KeywordLimit as e:
                        outcomes[i] = Outcome(e)
                acct = self._acct()
                before = used = acct.bytes
                accepted: dict[str, list[int]] = {}
                for i, it in enumerate(items):
                    if outcomes[i] is not None:
                        continue
                    if not it.system and used + it.size > quota:
                        outcomes[i] = Outcome(OverQuota(self.address, used, quota, it.size))
                        continue
                    used += it.size
                    accepted.setdefault(it.folder, []).append(i)
                for name, idxs in accepted.items():
                    self._place(folders[name], [(i, items[i], keyword_bits[i]) for i in idxs], outcomes, placed)
                crossed = (self._thresholds(acct, before, used, quota)
                           if any(not items[i].system for i in _flat(accepted)) else None)
                if crossed is not None:
                    last = max(i for i in _flat(accepted) if not items[i].system)
                    outcomes[last].crossed = crossed  # type: ignore[union-attr]
        except BaseException:
            for p in placed:  # never leave a file the caller was told failed
                with contextlib.suppress(OSError):
                    os.unlink(p)
            raise
        return [o or Outcome(RuntimeError("not delivered")) for o in outcomes]

    def _place(self, f: FolderRow, batch: list[tuple[int, Incoming, int]], outcomes: list[Outcome | None],
               placed: list[Path]) -> None:
        d = self.folder_dir(f)
        modseq = f.highestmodseq + 1
        uid = f.uidnext
        records, msgs, touched = [], [], set()
        for i, it, kws in batch:
            flags = it.flags
            sub, name = ("cur", md.cur_name(it.base, flags, kws)) if flags or kws else ("new", it.base)
            target = d / sub / name
            _put(it.src, target, link=it.link, fsync=self.fsync)
            placed.append(target)
            touched.add(sub)
            msgs.append(_Msg(uid, it.base, sub, name, flags, kws, modseq, it.size, 0, recent=1,
                             internal_date=it.internal_date))
            records.append((uid, it.base))
            outcomes[i] = Outcome(Stored(f.name, uid, f.uidvalidity, it.size, modseq))
            uid += 1
        for m, cid in zip(msgs, self._insert_contents([it.content for _, it, _ in batch]), strict=True):
            m.cid = cid
        self._insert_messages(f, msgs)
        # The uidlist is flushed first: on ext4 that one journal commit also carries the renames, so
        # the directory fsyncs after it find little left to do (both are still needed elsewhere).
        cf.append_uidlist(d, records, fsync=self.fsync)
        if self.fsync:
            for sub in touched:
                md.fsync_dir(d / sub)
        self.db.execute("UPDATE folders SET uidnext=?, highestmodseq=? WHERE id=?", (uid, modseq, f.id))
        self._add_usage(sum(it.size for _, it, _ in batch), len(batch))
        self._touch(f)
        self._event("new", f.name, [m.uid for m in msgs], modseq)

    def _thresholds(self, acct: _Acct, before: int, after: int, quota: int) -> int | None:
        """Đ7.3.c: the highest threshold that growing usage from `before` to `after` crossed and that
        was not yet warned about (a delivery batch, APPEND or COPY; never for system notices, which
        the caller leaves out). A threshold is re-armed once usage is seen below it.
        """
        reached_before = set(thresholds_reached(before, quota, self.quota_rules))
        warned = reached_before if acct.warned is None else set(acct.warned) & reached_before
        crossing = set(thresholds_reached(after, quota, self.quota_rules)) - warned
        warned |= crossing
        self.db.execute("UPDATE account SET warned=? WHERE id=1", (json.dumps(sorted(warned)),))
        return max(crossing) if crossing else None

    # ------------------------------------------------------------------ folder operations

    def list_folders(self) -> list[FolderInfo]:
        self.discover()
        rows = self._rows()
        names = {f.name for f in rows}
        subscribed = cf.read_subscriptions(self.root) | {f.name for f in rows if f.subscribed}
        virtual = {p for f in rows for p in md.parent_names(f.name)} - names
        all_names = names | virtual
        parents = {p for n in all_names for p in md.parent_names(n)}
        by_name = {f.name: f for f in rows}
        out = []
        for n in sorted(all_names, key=lambda x: (x != md.INBOX, x)):
            f = by_name.get(n)
            out.append(FolderInfo(n, f.special_use if f else None, n in subscribed, n in parents, f is not None))
        return out

    def create_folder(self, name: str, special_use: str | None = None) -> FolderRow:
        name = md.normalize_folder(name)
        if special_use is not None and special_use not in SPECIAL_USES:
            raise ValidationFailed("special_use", f"{special_use} is not one of {', '.join(SPECIAL_USES)}")
        self.discover()
        with self.write():
            if name == md.INBOX or self._row(name) is not None:
                raise FolderExists(name)
            for parent in md.parent_names(name):
                if parent != md.INBOX and self._row(parent) is None:
                    self._make_folder(parent, None)
            return self._make_folder(name, special_use)

    def _make_folder(self, name: str, special_use: str | None) -> FolderRow:
        dirname = md.folder_dirname(name)
        d = self.folder_dir(dirname)
        md.make_maildir(d, subfolder=True, fsync=self.fsync)
        if special_use:
            uses = cf.read_special_use(self.root)
            if self.special.get(name) != special_use:
                uses[name] = special_use
                cf.write_special_use(self.root, uses, fsync=self.fsync)
        return self._adopt_folder(name, dirname, False, special_use or self.special.get(name), fresh=True)

    def ensure_folders(self, wanted: dict[str, str | None]) -> list[str]:
        """`create_mailbox`: the special folders of the policy, subscribed; returns those created."""
        self.discover()
        created = []
        with self.write():
            subs = cf.read_subscriptions(self.root)
            for name, use in wanted.items():
                if name != md.INBOX and self._row(name) is None:
                    self._make_folder(name, use)
                    created.append(name)
            if not subs >= set(wanted):
                subs |= set(wanted)
                cf.write_subscriptions(self.root, subs, fsync=self.fsync)
                self.db.executemany("UPDATE folders SET subscribed=1 WHERE name=?", [(n,) for n in wanted])
        return created

    def rename_folder(self, old: str, new: str) -> None:
        old, new = md.normalize_folder(old, "old"), md.normalize_folder(new, "new")
        self.discover()
        with self.write():
            if new == md.INBOX or self._row(new) is not None:
                raise FolderExists(new)
            if new.startswith(old + md.SEPARATOR):
                raise ValidationFailed("new", f'cannot move "{old}" inside itself')
            if old == md.INBOX:
                self._rename_inbox(new)
                return
            family = [f for f in self._rows() if f.name == old or f.name.startswith(old + md.SEPARATOR)]
            if not family:
                raise FolderNotFound(old)
            for parent in md.parent_names(new):
                if parent != md.INBOX and self._row(parent) is None:
                    self._make_folder(parent, None)
            subs = cf.read_subscriptions(self.root)
            uses = cf.read_special_use(self.root)
            for f in sorted(family, key=lambda x: x.name):
                name = new + f.name[len(old):]
                dirname = md.folder_dirname(name)
                os.rename(self.folder_dir(f), self.folder_dir(dirname))
                self.db.execute("UPDATE folders SET name=?, dirname=? WHERE id=?", (name, dirname, f.id))
                if f.name in subs:
                    subs.discard(f.name)
                    subs.add(name)
                if f.special_use and self.special.get(name) != f.special_use:
                    uses[name] = f.special_use
                uses.pop(f.name, None)
                self._event("folder-renamed", name, modseq=f.highestmodseq, old_name=f.name)
            cf.write_subscriptions(self.root, subs, fsync=self.fsync)
            cf.write_special_use(self.root, uses, fsync=self.fsync)
            if self.fsync:
                md.fsync_dir(self.root)
            self.db.execute("UPDATE account SET root_mtime=? WHERE id=1", (DIRTY,))

    def _rename_inbox(self, new: str) -> None:
        """RFC 3501 §6.3.5: renaming INBOX moves its messages to a new folder and leaves INBOX empty."""
        self._make_folder(new, None)
        inbox = self.folder(md.INBOX)
        uids = [m.uid for m in self._messages(inbox, "1")]
        if uids:
            self.move(md.INBOX, uids, new)

    def delete_folder(self, name: str) -> None:
        name = md.normalize_folder(name)
        if name == md.INBOX:
            raise ValidationFailed("folder", "INBOX cannot be deleted")
        self.discover()
        with self.write():
            f = self._row(name)
            if f is None:
                raise FolderNotFound(name)
            trash = self.root / f"{md.TRASH_PREFIX}{os.urandom(6).hex()}"
            os.rename(self.folder_dir(f), trash)
            if self.fsync:
                md.fsync_dir(self.root)
            rows = self._messages(f, "1")
            self._drop(f, rows, f.highestmodseq + 1, record=False)
            self.db.execute("DELETE FROM expunged WHERE folder_id=?", (f.id,))
            self.db.execute("DELETE FROM folders WHERE id=?", (f.id,))
            uses = cf.read_special_use(self.root)
            if uses.pop(name, None) is not None:
                cf.write_special_use(self.root, uses, fsync=self.fsync)
            self._event("folder-deleted", name)
        shutil.rmtree(trash, ignore_errors=True)

    def subscribe(self, name: str, on: bool) -> None:
        name = md.normalize_folder(name)
        self.discover()
        with self.write():
            subs = cf.read_subscriptions(self.root)
            if on and self._row(name) is None:
                raise FolderNotFound(name)
            (subs.add if on else subs.discard)(name)
            cf.write_subscriptions(self.root, subs, fsync=self.fsync)
            self.db.execute("UPDATE folders SET subscribed=? WHERE name=?", (int(on), name))

    # ------------------------------------------------------------------ reading a folder

    def status(self, name: str) -> FolderStatus:
        f = self.folder(name)
        r = self.db.execute(
            "SELECT count(*), total(recent), total((flags & 1) = 0), total(size), total((flags & 8) != 0) "
            "FROM messages WHERE folder_id=?", (f.id,)).fetchone()
        return FolderStatus(messages=r[0], recent=int(r[1]), unseen=int(r[2]), uidnext=f.uidnext,
                            uidvalidity=f.uidvalidity, highestmodseq=f.highestmodseq, size=int(r[3]),
                            deleted=int(r[4]))

    def snapshot(self, name: str, claim_recent: bool = False) -> FolderSnapshot:
        f = self.folder(name)
        recent: frozenset[int] = frozenset()
        if claim_recent:
            with self.write():
                recent = frozenset(r[0] for r in self.db.execute(
                    "SELECT uid FROM messages WHERE folder_id=? AND recent=1", (f.id,)))
                if recent:
                    self.db.execute("UPDATE messages SET recent=0 WHERE folder_id=? AND recent=1", (f.id,))
        with self.read():
            row = self._row(f.name)
            assert row is not None
            msgs = self._state(row)
        names = tuple(n for n in row.keywords if n)
        return FolderSnapshot(row.uidvalidity, row.uidnext, row.highestmodseq, msgs, names, recent,
                              keywords_full=len(names) >= md.MAX_KEYWORDS)

    def _state(self, f: FolderRow) -> list[tuple[int, Flags, int]]:
        """(uid, flags, modseq) of every message. Large folders are kept in memory between SELECTs and
        brought up to date from the MODSEQs and expunge records: a reopened 100,000-message folder
        costs its changes, not 100,000 rows."""
        key = (f.uidvalidity, f.vanished_floor, tuple(f.keywords))
        cached = snapshots.SNAPSHOTS.get((str(self.path), f.id))
        if cached is not None and cached.key == key and cached.modseq <= f.highestmodseq:
            if cached.modseq == f.highestmodseq:
                return list(cached.messages)
            delta = self._tuples("SELECT uid, flags, keywords, modseq FROM messages INDEXED BY messages_modseq "
                                 "WHERE folder_id=? AND modseq>? "
                                 "ORDER BY uid", (f.id, cached.modseq)).fetchall()
            gone = {r[0] for r in self.db.execute("SELECT uid FROM expunged WHERE folder_id=? AND modseq>?",
                                                  (f.id, cached.modseq))}
            if len(delta) + len(gone) <= len(cached.messages) // 4:
                get = self._flag_cache(f)
                msgs = [m for m in cached.messages if m[0] not in gone] if gone else list(cached.messages)
                for uid, fl, kw, ms in delta:
                    i = bisect_left(msgs, (uid,))
                    if i < len(msgs) and msgs[i][0] == uid:
                        msgs[i] = (uid, get(fl, kw), ms)
                    else:
                        msgs.insert(i, (uid, get(fl, kw), ms))
                self._remember(f, key, msgs)
                return list(msgs)
        get = self._flag_cache(f)
        msgs = [(uid, get(fl, kw), ms) for uid, fl, kw, ms in self._tuples(
            "SELECT uid, flags, keywords, modseq FROM messages WHERE folder_id=? ORDER BY uid", (f.id,))]
        self._remember(f, key, msgs)
        return list(msgs)

    def _remember(self, f: FolderRow, key: tuple[Any, ...], msgs: list[tuple[int, Flags, int]]) -> None:
        snap = snapshots.Snapshot(key, f.highestmodseq, msgs) if len(msgs) >= snapshots.SNAPSHOT_CACHE_MIN else None
        snapshots.SNAPSHOTS.put((str(self.path), f.id), snap)

    def changes_since(self, name: str, modseq: int) -> Changes:
        f = self.folder(name)
        with self.read():
            row = self._row(f.name)
            assert row is not None
            get = self._flag_cache(row)
            changed = [(uid, get(fl, kw), ms) for uid, fl, kw, ms in self.db.execute(
                "SELECT uid, flags, keywords, modseq FROM messages INDEXED BY messages_modseq "
                "WHERE folder_id=? AND modseq>? ORDER BY uid",
                (f.id, modseq))]
            if modseq >= row.vanished_floor:
                expunged = [r[0] for r in self.db.execute(
                    "SELECT uid FROM expunged WHERE folder_id=? AND modseq>? ORDER BY uid", (f.id, modseq))]
                return Changes(changed, expunged, row.highestmodseq)
            present = {r[0] for r in self.db.execute("SELECT uid FROM messages WHERE folder_id=?", (f.id,))}
        missing = [u for u in range(1, row.uidnext) if u not in present]
        return Changes(changed, missing, row.highestmodseq, expunged_exact=False)

    def metadata(self, name: str, uids: list[int]) -> list[MessageMeta]:
        f = self.folder(name)
        get = self._flag_cache(f)
        wanted = set(uids)
        out = []
        sql = ("SELECT m.uid, m.size, m.internal_date, m.flags, m.keywords, m.modseq, c.envelope, c.structure, "
               "c.header_fields FROM messages m JOIN contents c ON c.cid = m.cid WHERE m.folder_id=? ")
        with self.read():
            if len(wanted) > 500:
                rows = [r for r in self._tuples(sql + "AND m.uid BETWEEN ? AND ? ORDER BY m.uid",
                                                (f.id, min(wanted), max(wanted))) if r[0] in wanted]
            else:
                rows = []
                for chunk in _chunks(sorted(wanted), 500):
                    marks = ",".join("?" * len(chunk))
                    rows.extend(self._tuples(sql + f"AND m.uid IN ({marks}) ORDER BY m.uid", (f.id, *chunk)))
        for r in rows:
            out.append(MessageMeta(r[0], r[1], datetime.fromtimestamp(r[2], UTC), get(r[3], r[4]), r[5], r[6], r[7],
                                   r[8]))
        return out

    def locate(self, name: str, uid: int, *, rescan: bool = False) -> tuple[Path, int]:
        """The message file's current path and size."""
        f = self.folder(name)
        if rescan:
            f = self._synced(f, force=True)
        r = self.db.execute("SELECT subdir, name, size FROM messages WHERE folder_id=? AND uid=?",
                            (f.id, uid)).fetchone()
        if r is None:
            raise MessageNotFound(f.name, uid)
        return self.folder_dir(f) / r[0] / r[1], r[2]

    def uids(self, name: str) -> list[int]:
        f = self.folder(name)
        return [r[0] for r in self.db.execute("SELECT uid FROM messages WHERE folder_id=? ORDER BY uid", (f.id,))]

    # ------------------------------------------------------------------ changing messages

    def store_flags(self, name: str, uids: Iterable[int], flags: Iterable[str], mode: FlagMode,
                    unchanged_since: int | None) -> tuple[list[tuple[int, Flags, int]], list[int]]:
        """Set flags and keywords (renaming each file), each changed message gets the new MODSEQ."""
        if mode not in ("add", "remove", "replace"):
            raise ValidationFailed("mode", f"{mode} is not add, remove or replace")
        wanted = sorted(set(uids))
        with self.write():
            f = self.folder(name)
            bits, kws = self._flag_bits(f, list(flags), create=mode != "remove")
            modseq = f.highestmodseq + 1
            d = self.folder_dir(f)
            changed: list[_Msg] = []
            failed: list[int] = []
            for m in self._by_uids(f, wanted):
                if unchanged_since is not None and m.modseq > unchanged_since:
                    failed.append(m.uid)
                    continue
                if mode == "add":
                    nf, nk = m.flags | bits, m.keywords | kws
                elif mode == "remove":
                    nf, nk = m.flags & ~bits, m.keywords & ~kws
                else:
                    nf, nk = bits | (m.flags & md.PASSED), kws
                if (nf, nk) == (m.flags, m.keywords) and m.subdir == "cur":
                    continue
                really = (nf, nk) != (m.flags, m.keywords)
                self._to_cur(d, m, nf, nk)
                if really:
                    m.modseq = modseq
                    changed.append(m)
                self._save_location(f, m)
            if changed:
                self.db.execute("UPDATE folders SET highestmodseq=? WHERE id=?", (modseq, f.id))
                self._event("flags", f.name, [m.uid for m in changed], modseq)
            self._touch(f)
            get = self._flag_cache(f)
            return [(m.uid, get(m.flags, m.keywords), m.modseq) for m in changed], failed

    def _by_uids(self, f: FolderRow, uids: list[int]) -> list[_Msg]:
        out: list[_Msg] = []
        for chunk in _chunks(uids, 500):
            out.extend(self._messages(f, f"uid IN ({','.join('?' * len(chunk))})", tuple(chunk)))
        return out

    def expunge(self, name: str, uids: Iterable[int] | None = None) -> list[int]:
        """Remove messages flagged \\Deleted (only those among `uids` when given)."""
        with self.write():
            f = self.folder(name)
            rows = self._messages(f, "(flags & 8) != 0")
            if uids is not None:
                keep = set(uids)
                rows = [m for m in rows if m.uid in keep]
            if not rows:
                return []
            d = self.folder_dir(f)
            for m in rows:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(d / m.subdir / m.name)
            if self.fsync:
                md.fsync_dir(d / "cur")
            modseq = f.highestmodseq + 1
            self._drop(f, rows, modseq)
            self._event("expunge", f.name, [m.uid for m in rows], modseq)
            self._touch(f)
            self._compact_uidlist(f)
            self._prune_expunged(f)
            return [m.uid for m in rows]

    def copy(self, name: str, uids: Iterable[int], dest: str, quota: int) -> tuple[CopyResult, int | None]:
        """COPY (hard links: no second copy of the bytes), quota checked. Also returns the Đ7.3.c
        threshold the copy crossed, if any: a copy grows the mailbox like a delivery does."""
        return self._copy(name, uids, dest, quota, move=False)

    def move(self, name: str, uids: Iterable[int], dest: str) -> CopyResult:
        """MOVE (renames): never refused for quota, usage unchanged."""
        return self._copy(name, uids, dest, quota=0, move=True)[0]

    def _copy(self, name: str, uids: Iterable[int], dest: str, quota: int, *,
              move: bool) -> tuple[CopyResult, int | None]:
        """COPY or MOVE in one transaction."""
        crossed = None
        with self.write():
            src = self.folder(name)
            dst = self.folder(dest)
            rows = self._by_uids(src, sorted(set(uids)))
            if not rows:
                return CopyResult(dst.uidvalidity, []), None
            if not move:
                acct = self._acct()
                used, need = acct.bytes, sum(m.size for m in rows)
                if used + need > quota:
                    raise OverQuota(self.address, used, quota, need)
                crossed = self._thresholds(acct, used, used + need, quota)
            sd, dd = self.folder_dir(src), self.folder_dir(dst)
            dst_modseq = dst.highestmodseq + 1
            uid = dst.uidnext
            pairs, records, placed = [], [], []
            try:
                for m in rows:
                    kws = self._remap_keywords(src, dst, m.keywords)
                    base = md.unique_base(m.size)
                    target = dd / "cur" / md.cur_name(base, m.flags, kws)
                    _put(sd / m.subdir / m.name, target, link=not move, fsync=False)
                    placed.append((target, sd / m.subdir / m.name))
                    self._insert_messages(dst, [_Msg(uid, base, "cur", target.name, m.flags, kws, dst_modseq, m.size,
                                                     m.cid, internal_date=m.internal_date)])
                    pairs.append((m.uid, uid))
                    records.append((uid, base))
                    uid += 1
                if self.fsync:
                    md.fsync_dir(dd / "cur")
                cf.append_uidlist(dd, records, fsync=self.fsync)
            except BaseException:
                for target, source in placed:
                    with contextlib.suppress(OSError):
                        if move:
                            os.rename(target, source)
                        else:
                            os.unlink(target)
                raise
            self.db.execute("UPDATE folders SET uidnext=?, highestmodseq=? WHERE id=?", (uid, dst_modseq, dst.id))
            if move:
                # the rows keep their content; only references move
                self.db.executemany("UPDATE contents SET refs=refs+1 WHERE cid=?", [(m.cid,) for m in rows])
                src_modseq = (dst_modseq if src.id == dst.id else src.highestmodseq) + 1
                self._drop(src, rows, src_modseq)
                self._add_usage(sum(m.size for m in rows), len(rows))
                if self.fsync and sd != dd:
                    md.fsync_dir(sd / "cur")
                self._touch(src)
                self._compact_uidlist(src)
                self._prune_expunged(src)
            else:
                self.db.executemany("UPDATE contents SET refs=refs+1 WHERE cid=?", [(m.cid,) for m in rows])
                self._add_usage(sum(m.size for m in rows), len(rows))
            self._touch(dst)
            self._event("new", dst.name, [p[1] for p in pairs], dst_modseq)
            if move:
                self._event("expunge", src.name, [p[0] for p in pairs], src_modseq)
            return CopyResult(dst.uidvalidity, pairs), crossed

    # ------------------------------------------------------------------ search

    def search(self, name: str, query: str, where: str, uids: Iterable[int] | None = None) -> set[int] | None:
        """UIDs whose text matches (case- and diacritic-insensitive). None: a header the index does
        not keep; the caller searches the files' headers instead."""
        f = self.folder(name)
        q = fold(query)
        base = "SELECT m.uid FROM messages m"
        if where.startswith("header:"):
            header = where[7:].lower()
            if header not in ("subject", "from", "to", "cc", "bcc"):
                return None
            rows = self.db.execute(f"{base} JOIN contents c ON c.cid = m.cid WHERE m.folder_id=? "
                                   f"AND instr(c.s_{header}, ?) > 0", (f.id, q))
            found = {r[0] for r in rows}
        elif where in ("body", "text"):
            found = self._fts(f, q, "body" if where == "body" else None)
            if where == "text":
                for h in ("subject", "from", "to", "cc", "bcc"):
                    found |= self.search(name, query, f"header:{h}") or set()
        else:
            raise ValidationFailed("where", f'"{where}" is not text, body or header:<name>')
        return found if uids is None else found & set(uids)

    def _fts(self, f: FolderRow, folded: str, column: str | None) -> set[int]:
        words = re.findall(r"\w+", folded)
        if not words:
            return {r[0] for r in self.db.execute("SELECT uid FROM messages WHERE folder_id=?", (f.id,))}
        phrase = '"' + " ".join(words) + '"*'
        expr = f"{column} : {phrase}" if column else phrase
        rows = self.db.execute(
            "SELECT m.uid FROM messages m WHERE m.folder_id=? AND m.cid IN "
            "(SELECT rowid FROM texts WHERE texts MATCH ?)", (f.id, expr))
        return {r[0] for r in rows}

    def cached_headers(self, name: str, uids: Iterable[int] | None = None) -> list[tuple[int, dict[str, str]]]:
        f = self.folder(name)
        rows = self.db.execute("SELECT m.uid, c.header_fields FROM messages m JOIN contents c ON c.cid = m.cid "
                               "WHERE m.folder_id=? ORDER BY m.uid", (f.id,))
        keep = None if uids is None else set(uids)
        return [(r[0], json.loads(r[1])) for r in rows if keep is None or r[0] in keep]

    # ------------------------------------------------------------------ usage, recalc, rebuild

    def usage(self) -> tuple[int, int]:
        self.discover()
        a = self._acct()
        return a.bytes, a.messages

    def folder_usage(self) -> list[FolderUsage]:
        self.discover()
        rows = self.db.execute("SELECT f.name, total(m.size), count(m.uid) FROM folders f LEFT JOIN messages m "
                               "ON m.folder_id = f.id GROUP BY f.id ORDER BY total(m.size) DESC, f.name")
        return [FolderUsage(r[0], int(r[1]), r[2]) for r in rows]

    def disk_usage(self) -> tuple[int, int]:
        """Bytes and files of every message file on disk, found by walking the tree (not the index)."""
        total = count = 0
        for dirname in ["", *(e.name for e in os.scandir(self.root) if e.name.startswith(".")
                              and md.folder_from_dirname(e.name) and e.is_dir())]:
            d = self.folder_dir(dirname)
            for sub in ("new", "cur"):
                with contextlib.suppress(FileNotFoundError):
                    for entry in os.scandir(d / sub):
                        with contextlib.suppress(FileNotFoundError):
                            if entry.is_file(follow_symlinks=False):
                                total += entry.stat(follow_symlinks=False).st_size
                                count += 1
        return total, count

    def recalc(self) -> Drift:
        """`quota recalc`: compare the recorded usage with the disk, bring the index in line, set it exact."""
        with self.write():
            recorded = self._acct()
            disk_bytes, disk_messages = self.disk_usage()
            self.discover(force=True)
            for f in self._rows():
                self._synced(f, force=True)
            total, count = self.db.execute("SELECT total(size), count(*) FROM messages").fetchone()
            self.db.execute("UPDATE account SET bytes=?, messages=? WHERE id=1", (int(total), count))
        return Drift(self.address, recorded.bytes, recorded.messages, disk_bytes, disk_messages)

    def rebuild(self) -> None:
        """Forget everything and index the files again: the same UIDs, UIDVALIDITY, flags and keywords
        (they live in the files), new MODSEQs above every earlier one."""
        self._quiet = True
        try:
            self._rebuild()
        finally:
            self._quiet = False
        self.take_events()

    def _rebuild(self) -> None:
        snapshots.SNAPSHOTS.forget(str(self.path))
        with self.write():
            for table in ("messages", "contents", "expunged", "folders"):
                self.db.execute(f"DELETE FROM {table}")
            self.db.execute("INSERT INTO texts (texts) VALUES ('delete-all')")
            self.db.execute("UPDATE account SET bytes=0, messages=0, warned=NULL, root_mtime=-1, fts_garbage=0 "
                            "WHERE id=1")
            self.discover(force=True)
            for f in self._rows():
                self._synced(f, force=True)
            # Đ7.3.c state is not in the files: assume whatever usage already reached was warned about
            # (warned=NULL), unless the mailbox is empty (a new account has nothing to warn about).
            self.db.execute("UPDATE account SET warned='[]' WHERE id=1 AND bytes=0")


def _put(src: Path, target: Path, *, link: bool, fsync: bool) -> None:
    """Give a complete file its name in a folder: link (shared by recipients) or rename.
    Across file systems (a link cannot), copy and flush."""
    try:
        if link:
            os.link(src, target)
        else:
            os.rename(src, target)
        return
    except OSError as e:
        if e.errno != 18:  # EXDEV
            raise
    tmp = target.parent.parent / "tmp" / target.name.partition(":")[0]
    shutil.copy2(src, tmp)
    if fsync:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.rename(tmp, target)
    if not link:
        os.unlink(src)


def _chunks(items: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _flat(groups: dict[str, list[int]]) -> list[int]:
    return [i for idxs in groups.values() for i in idxs]
