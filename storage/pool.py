"""Account indexes shared by every session, run on a few threads, closed when idle.

aiosqlite gives every connection its own thread; with one index per
account, 1,000 connected clients would mean 1,000 threads and 3,000 file
descriptors (database, WAL, shared memory). Here instead:

* an account's index is opened once per process and shared by every
  session and delivery of that account (`use()`); sessions hold no
  connection between commands, so an idle IMAP client costs nothing;
* all index and file work runs on one small thread pool (`threads`,
  default 16: enough concurrent fsyncs for the file system to batch
  them), whatever the number of accounts;
* at most `max_open` indexes stay open; the least recently used idle one
  is closed when another must open (or, after a burst that kept more than
  that many busy, as soon as they are released), and any index unused for
  `idle_seconds` is closed by a reaper task. A handle counts as used from
  the moment it is handed out, so it is never closed under its user.

A per-account asyncio lock hands the account's connection to one thread at
a time (SQLite connections are not for concurrent use). If the database
turns out to be corrupt in the middle of an operation, it is set aside,
rebuilt from the files, and the operation is tried once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from storage.events import Notifier
from storage.index import AccountIndex, Incoming, Outcome
from storage.threads import run_to_completion

log = logging.getLogger("storage.pool")
T = TypeVar("T")


class Handle:
    """One open account index and the lock that serialises its use."""

    def __init__(self, index: AccountIndex, pool: IndexPool) -> None:
        self.index = index
        self.pool = pool
        self.lock = asyncio.Lock()
        self.users = 0
        self.last_used = time.monotonic()
        self.pending: list[tuple[Incoming, asyncio.Future[Outcome]]] = []
        self._drainer: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        return self.users == 0 and not self.lock.locked() and not self.pending

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args)` (an AccountIndex method) on a worker thread with this account's lock held,
        then publish the events it committed."""
        async with self.lock:
            return await self._run(fn, *args, **kwargs)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            try:
                return await self._thread(fn, *args, **kwargs)
            except sqlite3.DatabaseError as e:
                if isinstance(e, sqlite3.OperationalError):
                    raise
                log.error("index of %s failed (%s); rebuilding it from the files", self.index.address, e)
                await self._thread(self._reopen_corrupt)
                return await self._thread(fn, *args, **kwargs)
        finally:
            self.pool.notifier.publish(self.index.take_events())

    async def _thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run on the pool; if the caller is cancelled meanwhile, still wait for the thread to finish
        before giving the lock up (the connection must never be used by two threads)."""
        return await run_to_completion(self.pool.executor, fn, *args, **kwargs)

    def _reopen_corrupt(self) -> None:
        self.index.close()
        self.index._set_aside()
        self.index.open()

    async def commit(self, item: Incoming) -> Outcome:
        """Group commit: deliveries that arrive while a batch is being written go into the next batch,
        so N concurrent deliveries to one account cost one transaction and one fsync per directory.
        A caller that goes away (cancelled) does not cancel the write: others share the batch."""
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.pending.append((item, fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain(), name="mailstore-commit")
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        while self.pending:
            async with self.lock:
                batch, self.pending = self.pending, []
                try:
                    # the quota looked up most recently (each delivery looks it up before queueing)
                    outcomes = await self._run(self.index.commit_deliveries, [b[0] for b in batch], batch[-1][0].quota)
                except BaseException as e:
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(e)
                    if not isinstance(e, Exception):
                        raise
                    continue
                for (_, f), o in zip(batch, outcomes, strict=True):
                    if not f.done():
                        f.set_result(o)

    async def drained(self) -> None:
        if self._drainer is not None:
            with contextlib.suppress(BaseException):
                await self._drainer


class IndexPool:
    def __init__(self, opener: Callable[[Any], AccountIndex], notifier: Notifier, *, threads: int = 16,
                 max_open: int = 64, idle_seconds: float = 60.0) -> None:
        self.opener = opener
        self.notifier = notifier
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mailstore")
        self.max_open = max_open
        self.idle_seconds = idle_seconds
        self._handles: OrderedDict[int, Handle] = OrderedDict()
        self._opening: dict[int, asyncio.Future[Handle]] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._evicting: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def open_count(self) -> int:
        return len(self._handles)

    def open_indexes(self) -> list[AccountIndex]:
        """The indexes open now (a reloaded policy is handed to them)."""
        return [h.index for h in self._handles.values()]

    @contextlib.asynccontextmanager
    async def use(self, account: Any) -> AsyncIterator[Handle]:
        handle = await self._get(account)  # already counted as a user: never evicted or reaped under us
        try:
            yield handle
        finally:
            handle.users -= 1
            handle.last_used = time.monotonic()
            if len(self._handles) > self.max_open and not self._closed:
                self._shrink()

    def _shrink(self) -> None:
        """Back under `max_open` once a burst that kept every index busy is over (not only at the
        next open, which may be long in coming)."""
        if self._evicting is None or self._evicting.done():
            self._evicting = asyncio.get_running_loop().create_task(self._evict(), name="mailstore-evict")

    async def _get(self, account: Any) -> Handle:
        """The account's open handle, counted as used (`users`) before anything can suspend: an
        uncounted handle looks idle, and eviction or the reaper would close it under its user."""
        while True:
            if self._closed:
                raise RuntimeError("the mail store is closed")
            handle = self._handles.get(account.id)
            if handle is not None and handle.idle and handle.index.replaced():
                # the database file was deleted or replaced (operator, another process): open it afresh
                self._handles.pop(account.id)
                await self._close_handle(handle)
                continue
            if handle is not None:
                self._handles.move_to_end(account.id)
                handle.users += 1
                return handle
            opening = self._opening.get(account.id)
            if opening is not None:
                handle = await asyncio.shield(opening)
                if self._handles.get(account.id) is handle:
                    handle.users += 1
                    return handle
                continue  # evicted again before this waiter woke up: look again
            return await self._open(account)

    async def _open(self, account: Any) -> Handle:
        fut: asyncio.Future[Handle] = asyncio.get_running_loop().create_future()
        self._opening[account.id] = fut
        try:
            index = self.opener(account)
            await asyncio.get_running_loop().run_in_executor(self.executor, index.open)
            handle = Handle(index, self)
            handle.users += 1  # the opener's own use, before _evict() looks for idle handles
            self._handles[account.id] = handle
            fut.set_result(handle)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            self._opening.pop(account.id, None)
        try:
            self._start_reaper()
            await self._evict()
        except BaseException:
            handle.users -= 1
            raise
        return handle

    async def discard(self, account_id: int) -> None:
        """Close the account's index now (its mailbox is about to be archived and removed)."""
        handle = self._handles.pop(account_id, None)
        if handle is not None:
            await handle.drained()
            await self._close_handle(handle)

    async def _evict(self) -> None:
        """Close least recently used idle indexes beyond `max_open` (descriptors are bounded)."""
        while len(self._handles) > self.max_open:
            victim = next((k for k, h in self._handles.items() if h.idle), None)
            if victim is None:
                return  # everything is busy: over the soft limit until something is released
            await self._close_handle(self._handles.pop(victim))

    async def _close_handle(self, handle: Handle) -> None:
        async with handle.lock:
            await asyncio.get_running_loop().run_in_executor(self.executor, handle.index.close)

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap(), name="mailstore-reaper")

    async def _reap(self) -> None:
        while self._handles:
            await asyncio.sleep(max(0.05, self.idle_seconds / 2))
            cutoff = time.monotonic() - self.idle_seconds
            for key, h in list(self._handles.items()):
                if h.idle and h.last_used < cutoff:
                    self._handles.pop(key, None)
                    await self._close_handle(h)

    async def close(self) -> None:
        self._closed = True
        for task in (self._reaper, self._evicting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for key in list(self._handles):
            handle = self._handles.pop(key)
            await handle.drained()
            await self._close_handle(handle)
        self.executor.shutdown(wait=True)
