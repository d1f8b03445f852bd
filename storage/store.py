"""The mail store: the one public API through which SMTP, IMAP, notices and migration touch mail.

Nothing outside `storage/` opens a message file or an index. One
`MailStore` per process, built by the composition root (`mailserver.app.App`).

Where mail lives: `<data>/mail/<domain>/<local part>~<account id>/`, one
Maildir++ tree per account (`storage/maildir.py`), with its index
`mailserver.index.sqlite3` inside. The account id is part of the name so
that an address given to a new person after the Đ5.3.b reuse period never
opens the previous owner's mail.

Mailboxes are created for every new account (the composition root calls
`create_mailbox` from the directory's account-created hook) and, as a
safety net, lazily: the first use of an account whose tree is missing
creates it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from policy.calendar import utc_now
from policy.errors import MailserverError
from policy.limits import QuotaCheck, check_quota
from policy.model import Policy
from storage import maildir as md
from storage import retention
from storage.archive import ArchiveError, ArchiveResult, archive_mailbox
from storage.content import Content
from storage.directory import Directory
from storage.errors import StoreUnavailable
from storage.events import Listener, Notifier
from storage.flags import split_flags
from storage.index import INDEX_NAME, AccountIndex, Incoming, Outcome
from storage.pool import IndexPool
from storage.records import Account
from storage.storetypes import Drift, FolderUsage, ReindexResult, Stored, Usage

log = logging.getLogger("storage.store")

# Đ7.3.c: called as on_quota_threshold(account, percent, usage) after a delivery crossed a threshold.
QuotaCallback = Callable[[Account, int, Usage], Awaitable[Any]]
QUOTA_TTL = 2.0  # seconds a looked-up quota is reused
ACTIVITY_EVERY = 600.0  # seconds between "receive" activity writes per account (Đ6.2.a needs days)


def to_crlf(data: bytes) -> bytes:
    """Messages are stored with CRLF line ends, so IMAP sizes and byte ranges are the file's own."""
    lf = data.count(b"\n")
    if lf == 0 or lf == data.count(b"\r\n"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class MailStore:
    def __init__(
        self,
        mail_dir: Path,
        policy: Policy,
        directory: Directory,
        *,
        clock: Callable[[], datetime] = utc_now,
        fsync: bool = True,
        threads: int = 16,
        max_open: int = 64,
        idle_seconds: float = 60.0,
        watch_interval: float = 0.5,
        on_quota_threshold: QuotaCallback | None = None,
    ) -> None:
        self.mail_root = Path(mail_dir)
        self.policy = policy
        self.directory = directory
        self.clock = clock
        self.fsync = fsync
        self.on_quota_threshold = on_quota_threshold
        self.origin = os.urandom(8).hex()
        self.notifier = Notifier()
        self.pool = IndexPool(self._open_index, self.notifier, threads=threads, max_open=max_open,
                              idle_seconds=idle_seconds)
        self.watch_interval = watch_interval
        self._watcher: asyncio.Task[None] | None = None
        self._watched: dict[int, Account] = {}
        self._activity: dict[int, float] = {}
        self._quotas: dict[int, tuple[float, int]] = {}  # account id -> (looked up at, quota)
        directory.on_change.append(self._forget_quota)  # an operator's set-quota applies at once
        self.set_policy(policy)

    def set_policy(self, policy: Policy) -> None:
        """Use `policy` from now on (at start, and when SIGHUP reloads policy.yaml): quota rules reach the
        indexes already open, so a changed Đ7.3.c threshold counts from the next delivery."""
        self.policy = policy
        f = policy.folders
        # RFC 6154 special-use folders created with every mailbox; names from policy.folders
        self.special: dict[str, str] = {f.sent: "\\Sent", f.drafts: "\\Drafts", f.trash: "\\Trash",
                                        f.junk: "\\Junk", f.archive: "\\Archive"}
        for index in self.pool.open_indexes():
            index.quota_rules = policy.quota
        self._quotas.clear()  # effective quotas depend on quota.default

    # ------------------------------------------------------------------ where things are

    def mailbox_path(self, account: Account) -> Path:
        return self.mail_root / account.domain / f"{account.local_part}~{account.id}"

    def _open_index(self, account: Account) -> AccountIndex:
        return AccountIndex(self.mailbox_path(account), account.address, self.special, self.policy.quota,
                            account_id=account.id, fsync=self.fsync, origin=self.origin)

    async def _call(self, account: Account, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run an AccountIndex method for `account` on the worker threads. Disk and database
        failures become StoreUnavailable (a temporary error the client retries)."""
        with unavailable_on_failure(account):
            async with self.pool.use(account) as h:
                return await h.call(getattr(h.index, method), *args, **kwargs)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool.executor, partial(fn, *args))

    # ------------------------------------------------------------------ accounts and quota (Đ7.3)

    async def create_mailbox(self, account: Account) -> list[str]:
        """The Maildir++ tree with INBOX and the policy's special folders, subscribed. Idempotent;
        returns the folders it created."""
        wanted: dict[str, str | None] = {md.INBOX: None, **self.special}
        return await self._call(account, "ensure_folders", wanted)

    async def quota_of(self, account: Account) -> int:
        """The quota now: re-read from the directory (an operator may have raised it since `account`
        was loaded), at most every QUOTA_TTL seconds per account so a burst of deliveries does not
        queue on the directory. A change in this process applies at once (Directory.on_change);
        one made by another process (the CLI) within QUOTA_TTL."""
        now = time.monotonic()
        cached = self._quotas.get(account.id)
        if cached is not None and now - cached[0] < QUOTA_TTL:
            return cached[1]
        fresh = await self.directory.account_by_id(account.id) or account
        quota = await self.directory.quota_of(fresh)
        self._quotas[account.id] = (now, quota)
        return quota

    def _forget_quota(self, account_id: int) -> None:
        self._quotas.pop(account_id, None)

    async def usage(self, account: Account) -> Usage:
        nbytes, messages = await self._call(account, "usage")
        return Usage(nbytes, messages, await self.quota_of(account))

    async def check_quota(self, account: Account, incoming: int) -> QuotaCheck:
        """Would `incoming` more bytes fit (SMTP asks at RCPT with the declared SIZE=)?"""
        u = await self.usage(account)
        return check_quota(u.bytes, u.quota, incoming)

    async def folder_usage(self, account: Account) -> list[FolderUsage]:
        """Folders by size, largest first (the Đ7.3.c notice lists them)."""
        return await self._call(account, "folder_usage")

    # ------------------------------------------------------------------ delivery

    async def deliver(self, account: Account, message: bytes, *, folder: str = md.INBOX,
                      flags: Iterable[str] = frozenset(), keywords: Iterable[str] = frozenset(),
                      internal_date: datetime | None = None, system: bool = False) -> Stored:
        """Store one message. Returns only when it is flushed to disk and indexed: only then may
        SMTP answer 250. Raises OverQuota (field "quota"), FolderNotFound, ValidationFailed (bad
        flags) or StoreUnavailable (retry later). `system=True`: a notice from postmaster@,
        never refused for quota (Đ7.3.c) and not "receiving" activity (Đ6.2.a)."""
        result = (await self._deliver([account], message, folder, flags, keywords, internal_date, system))[account.id]
        if isinstance(result, BaseException):
            raise result
        return result

    async def deliver_many(self, accounts: Sequence[Account], message: bytes, *, folder: str = md.INBOX,
                           flags: Iterable[str] = frozenset(), keywords: Iterable[str] = frozenset(),
                           internal_date: datetime | None = None,
                           system: bool = False) -> dict[int, Stored | MailserverError]:
        """One message for several local recipients: parsed once, written and flushed once, hard-linked
        into each mailbox. Per recipient (by account id): Stored, or the error for that one alone
        (OverQuota ...), so SMTP can accept the others."""
        return await self._deliver(accounts, message, folder, flags, keywords, internal_date, system)

    async def import_message(self, account: Account, message: bytes, *, folder: str = md.INBOX,
                             flags: Iterable[str] = frozenset(), keywords: Iterable[str] = frozenset(),
                             internal_date: datetime | None = None, quota_allowance: int = 0) -> Stored:
        """A message put into a folder by its owner's client (IMAP APPEND) or brought over from an old
        server (Đ8.2.d migration): the durable path of delivery, flags and internal date kept, not
        "receiving" activity (Đ6.2.a). The quota check allows `quota_allowance` bytes beyond the quota
        (a migration's policy `migration.quota_allowance_percent`); OverQuota when even that is not enough."""
        results = await self._deliver([account], message, folder, flags, keywords, internal_date, False,
                                      activity=False, quota_extra=quota_allowance)
        result = results[account.id]
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    async def _quota_plus(self, account: Account, extra: int) -> int:
        return await self.quota_of(account) + extra

    async def _deliver(self, accounts: Sequence[Account], message: bytes, folder: str, flags: Iterable[str],
                       keywords: Iterable[str], internal_date: datetime | None, system: bool,
                       *, activity: bool = True, quota_extra: int = 0) -> dict[int, Any]:
        folder = md.normalize_folder(folder)
        bits, names = split_flags([*flags, *keywords])
        unique = list({a.id: a for a in accounts}.values())
        if not unique:
            return {}
        data = to_crlf(message)
        when = (internal_date or self.clock()).timestamp()
        quotas = asyncio.ensure_future(asyncio.gather(*(self._quota_plus(a, quota_extra) for a in unique)))
        try:
            with unavailable_on_failure(unique[0]):
                outcomes = await self._write_and_commit(unique, data, folder, bits, names, when, system, quotas)
        finally:
            if not quotas.done():
                quotas.cancel()
        results = {account.id: self._result(outcome) for account, outcome in zip(unique, outcomes, strict=True)}
        for account, outcome in zip(unique, outcomes, strict=True):
            if isinstance(outcome, Outcome) and isinstance(outcome.result, Stored):
                if outcome.crossed is not None:
                    await self._warn(account, outcome.crossed)
                if not system and activity:
                    await self._received(account)
        return results

    async def _write_and_commit(self, unique: list[Account], data: bytes, folder: str, bits: int, names: list[str],
                                when: float, system: bool, quotas: asyncio.Future[list[int]]) -> list[Any]:
        """Parse and write one flushed file into the first recipient's tmp/ (one trip to a worker
        thread), then each account's group commit with the quota looked up meanwhile."""
        async with contextlib.AsyncExitStack() as stack:
            handles = [await stack.enter_async_context(self.pool.use(a)) for a in unique]
            base = md.unique_base(len(data))
            src = handles[0].index.root / "tmp" / base
            handed_over = False
            try:
                content: Content = await self._run(partial(_prepare, src, data, when, self.fsync))
                limits = await quotas
                commits = [h.commit(Incoming(folder, src, base, len(data), bits, tuple(names), int(when), content,
                                             system, link=len(unique) > 1, quota=limit))
                           for h, limit in zip(handles, limits, strict=True)]
                handed_over = True
                outcomes = await asyncio.gather(*commits, return_exceptions=True)
                handed_over = False
            finally:
                # Renamed away on success, shared copies are links: the tmp/ name can go. Unless the
                # caller went away while a group commit still holds it (tmp/ is cleaned after 36 h).
                if not handed_over:
                    with contextlib.suppress(OSError):
                        os.unlink(src)
        return outcomes

    @staticmethod
    def _result(outcome: Outcome | BaseException) -> Any:
        value = outcome.result if isinstance(outcome, Outcome) else outcome
        if isinstance(value, MailserverError | Stored):
            return value
        if isinstance(value, asyncio.CancelledError):
            raise value
        log.error("delivery failed: %r", value)
        return StoreUnavailable("store", f"could not store the message: {value}")

    async def _warn(self, account: Account, percent: int) -> None:
        """Đ7.3.c: hand the crossing to the composition root, which writes and delivers the notice."""
        if self.on_quota_threshold is None:
            return
        try:
            await self.on_quota_threshold(account, percent, await self.usage(account))
        except Exception:
            log.exception("quota warning for %s at %d%% failed", account.address, percent)

    async def _received(self, account: Account) -> None:
        now = time.monotonic()
        if now - self._activity.get(account.id, -ACTIVITY_EVERY) < ACTIVITY_EVERY:
            return
        self._activity[account.id] = now
        try:
            await self.directory.record_activity(account.id, "receive")
        except Exception:
            log.exception("could not record receive activity of %s", account.address)

    # ------------------------------------------------------------------ sessions and notifications

    async def session(self, account: Account) -> Any:
        """A cheap per-connection view of one mailbox (IMAP). It holds no connection between calls."""
        from storage.session import MailboxSession

        async with self.pool.use(account):
            pass  # opens (and if needed creates or rebuilds) the index now, not at the first command
        return MailboxSession(self, account)

    def subscribe(self, account: Account | int, listener: Listener) -> None:
        """Call `listener(Event)` for every change of the account, from this process or another."""
        account_id = account if isinstance(account, int) else account.id
        if not isinstance(account, int):
            self._watched[account.id] = account
        self.notifier.subscribe(account_id, listener)
        with contextlib.suppress(RuntimeError):  # no running loop: in-process events only
            if self._watcher is None or self._watcher.done():
                self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="mailstore-watch")

    def unsubscribe(self, account: Account | int, listener: Listener) -> None:
        self.notifier.unsubscribe(account if isinstance(account, int) else account.id, listener)

    async def _watch(self) -> None:
        """See storage/events.py: changes made by other processes reach this process's listeners."""
        state: dict[int, tuple[Any, int]] = {}
        while True:
            await asyncio.sleep(self.watch_interval)
            ids = self.notifier.watched()
            for gone in set(state) - set(ids):
                state.pop(gone)
            for account_id in ids:
                try:
                    await self._poll(account_id, state)
                except Exception:
                    log.exception("watching account %s failed", account_id)

    async def _poll(self, account_id: int, state: dict[int, tuple[Any, int]]) -> None:
        account = self._watched.get(account_id)
        if account is None:
            account = await self.directory.account_by_id(account_id)
            if account is None:
                return
            self._watched[account_id] = account
        root = self.mailbox_path(account)
        signature = (_stat_sig(root / (INDEX_NAME + "-wal")), _stat_sig(root / INDEX_NAME), md.dir_mtime(root / "new"))
        previous = state.get(account_id)
        if previous is not None and previous[0] == signature:
            return
        async with self.pool.use(account) as h:
            seq = previous[1] if previous else None
            new_seq, events = await h.call(h.index.poll_changes, seq)
        state[account_id] = (signature, new_seq)
        self.notifier.publish(events)

    # ------------------------------------------------------------------ operations (CLI)

    async def reindex(self, account: Account) -> ReindexResult:
        """`mailserver reindex`: rebuild the index from the files (UIDs, flags, keywords unchanged)."""
        started = time.monotonic()
        await self._call(account, "rebuild")
        nbytes, messages = await self._call(account, "usage")
        folders = [f.name for f in await self._call(account, "list_folders") if f.selectable]
        return ReindexResult(account.address, len(folders), messages, nbytes, time.monotonic() - started, folders)

    async def recalc(self, account: Account) -> Drift:
        """`mailserver quota recalc`: usage recomputed from the files; the drift it corrected."""
        return await self._call(account, "recalc")

    def has_mailbox(self, account: Account) -> bool:
        return (self.mailbox_path(account) / "cur").is_dir()

    # ------------------------------------------------------------------ retention and archives (operations jobs)

    async def saved_before(self, account: Account, folder: str, before: datetime) -> tuple[int, int]:
        """(messages, bytes) in `folder` that were put there before `before` (Đ8.2.b; dry runs)."""
        async with self.pool.use(account) as h:
            return await h.call(retention.saved_before, h.index, folder, before.timestamp())

    async def expunge_saved_before(self, account: Account, folder: str, before: datetime) -> tuple[int, int]:
        """Đ8.2.b: expunge what has been in `folder` since before `before` (by the time each message
        entered the folder, not its date: storage/retention.py); IMAP sessions see ordinary expunges.
        Returns (messages, bytes)."""
        async with self.pool.use(account) as h:
            return await h.call(retention.expunge_saved_before, h.index, folder, before.timestamp())

    def _aside(self, account: Account) -> Path:
        root = self.mailbox_path(account)
        return root.with_name(f"{md.TRASH_PREFIX}{root.name}")

    async def archive_mailbox(self, account: Account, dest: Path, info: dict[str, Any],
                              dates: dict[str, str | None]) -> ArchiveResult:
        """Đ5.3.b: archive a revoked account's mailbox to `dest`, verified, then remove it.

        The tree is first renamed aside (atomically: nothing can deliver into it any more, and a crash
        leaves it there to be archived by the next attempt), archived and read back; only a verified
        archive lets the files go. If archiving fails the tree is put back and ArchiveError raised.
        """
        root, aside = self.mailbox_path(account), self._aside(account)
        await self.pool.discard(account.id)
        if root.is_dir() and not aside.exists():
            await self._run(os.rename, root, aside)
        if not aside.is_dir():
            raise ArchiveError(f"{account.address}: no mailbox to archive")
        try:
            result = await self._run(partial(archive_mailbox, aside, dest, info, dates, fsync=self.fsync))
        except ArchiveError:
            if not root.exists():
                await self._run(os.rename, aside, root)
            raise
        await self._run(partial(shutil.rmtree, aside, ignore_errors=True))
        return result

    def archive_pending(self, account: Account) -> bool:
        """A mailbox renamed aside by an archive attempt that did not finish."""
        return self._aside(account).is_dir()

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.pool.close()


def _prepare(src: Path, data: bytes, mtime: float, fsync: bool) -> Content:
    """Parse the message (once for every recipient) and write it, flushed, to tmp/."""
    content = Content.of(data)
    md.write_file(src, data, mtime=mtime, fsync=fsync)
    return content


@contextlib.contextmanager
def unavailable_on_failure(account: Account) -> Iterator[None]:
    try:
        yield
    except (OSError, sqlite3.OperationalError) as e:
        log.error("mail store of %s failed: %s", account.address, e)
        raise StoreUnavailable("store", f"the mailbox of {account.address} is unavailable, try again later") from e


def _stat_sig(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size
