"""Đ8.2.b: users train the spam filter by moving mail in Outlook or Thunderbird.

A message moved (or copied) into Junk is taught to spamd as spam; one moved
out of Junk into any folder but Trash is taught as ham (deleting spam is not
saying it was wanted). That is `spamc -L spam|ham` (TELL with `Set: local`,
`smtp.spamd.SpamdClient.learn`), for the one global Bayes database of the
province (README, design notes).

IMAP announces every successful COPY/MOVE (`imap_gateway.copymove.Transfer`);
`on_transfer` only decides and queues, so the client's MOVE is answered at
once; one worker task per process reads the messages through the store's
public API and talks to spamd, one message at a time, so a user filing a
thousand messages into Junk never takes spamd's children away from scoring
incoming mail for long. The filter's own `X-Spam-*` fields are removed
before learning: they are its verdict, not the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

from policy.model import FolderNames
from smtp.spam import spamd_input
from smtp.spamd import SpamdClient, SpamdUnavailable
from storage.errors import MessageNotFound
from storage.metrics import ServerMetrics

log = logging.getLogger("mailserver.spamtraining")

Kind = Literal["spam", "ham"]
MAX_PENDING = 10_000  # transfers waiting; beyond that a burst is dropped with a warning, never blocks IMAP
CLOSE_WAIT = 10.0  # seconds `close` lets queued lessons finish at shutdown


@dataclass(frozen=True)
class Lesson:
    account: Any  # storage.records.Account
    folder: str
    uids: tuple[int, ...]
    kind: Kind


def lesson_kind(source: str, dest: str, folders: FolderNames) -> Kind | None:
    """Into Junk: spam. Out of Junk, except into Trash: ham. Anything else teaches nothing."""
    if dest == folders.junk and source != folders.junk:
        return "spam"
    if source == folders.junk and dest not in (folders.junk, folders.trash):
        return "ham"
    return None


class SpamTrainer:
    def __init__(self, store: Any, spamd: SpamdClient, folders: FolderNames, metrics: ServerMetrics,
                 max_scan_size: int) -> None:
        self.store = store
        self.spamd = spamd
        self.folders = folders
        self.metrics = metrics
        self.max_scan_size = max_scan_size
        self.queue: asyncio.Queue[Lesson] = asyncio.Queue(MAX_PENDING)
        self._worker: asyncio.Task[None] | None = None

    def on_transfer(self, transfer: Any) -> None:
        """IMAP's transfer observer: queue a lesson when messages entered or left Junk."""
        kind = lesson_kind(transfer.source, transfer.dest, self.folders)
        if kind is None or not transfer.uids:
            return
        try:
            self.queue.put_nowait(Lesson(transfer.account, transfer.dest, tuple(transfer.uids), kind))
        except asyncio.QueueFull:
            log.warning("spam training queue full: %d messages of %s not learned as %s", len(transfer.uids),
                        transfer.account.address, kind)
            self.metrics.spam_learned.labels(kind=kind, result="failed").inc(len(transfer.uids))
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="spam-training")

    async def _work(self) -> None:
        while True:
            lesson = await self.queue.get()
            try:
                await self.learn(lesson)
            except Exception:
                log.exception("spam training of %s failed", lesson.account.address)
            finally:
                self.queue.task_done()

    async def learn(self, lesson: Lesson) -> dict[str, int]:
        """Teach spamd every message of `lesson` still in its folder; counts by result."""
        counts = {"learned": 0, "known": 0, "failed": 0}
        mbox = await self.store.session(lesson.account)
        for uid in lesson.uids:
            try:
                data = await mbox.read(lesson.folder, uid)
            except MessageNotFound:
                continue  # moved on or deleted since: nothing to learn from
            data = spamd_input(data, self.max_scan_size)
            try:
                learned = await self.spamd.learn(data, spam=lesson.kind == "spam")
            except SpamdUnavailable as e:
                log.warning("could not teach spamd a message of %s as %s: %s", lesson.account.address,
                            lesson.kind, e)
                result = "failed"
            else:
                result = "learned" if learned else "known"
            counts[result] += 1
            self.metrics.spam_learned.labels(kind=lesson.kind, result=result).inc()
        log.info("spam training: %s moved %d message(s) %s Junk: learned as %s %d, known %d, failed %d",
                 lesson.account.address, len(lesson.uids), "into" if lesson.kind == "spam" else "out of",
                 lesson.kind, counts["learned"], counts["known"], counts["failed"])
        return counts

    async def close(self) -> None:
        """At shutdown: let queued lessons finish for a few seconds, then stop."""
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), CLOSE_WAIT)
        if not self.queue.empty():
            log.warning("spam training: %d lesson(s) not learned at shutdown", self.queue.qsize())
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
