"""The delivery workers of `mailserver serve`: take due messages from the queue and deliver them.

One dispatcher loop claims messages that are due (a recipient's next
attempt has come, or a delay notice is owed), at most
`outbound.max_deliveries` at once, and runs one task per message. That
task delivers every due recipient, grouped by domain (each domain its own
route, connection and transaction, concurrently), and local recipients (held
mail released, or a store that failed at DATA) through the store. Every
transaction's outcomes are recorded at once (`Attempt`), then the message is
concluded: failures not yet reported become one bounce to the sender, a
message waiting longer than `outbound.delay_notice_after` gets one delay
notice, and a message with nothing left to do leaves the queue.

The dispatcher wakes when SMTP queues a message (`OutboundQueue.on_enqueued`),
when a delivery ends, when the next attempt is due, and every
`outbound.poll_interval` seconds for work the CLI or another process added.

Every attempt and outcome goes to the mail log (Đ7.2) with the queue id of
the submission, the remote host, its reply and the TLS version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from policy.model import Policy
from smtp.dsn import Failure, Report, build_dsn
from smtp.headers import return_path, split_message
from smtp.ids import new_queue_id
from smtp.outbound.delivery import Attempt, Destinations, Tried, outcomes
from smtp.outbound.routing import Router
from smtp.replies import Reply
from smtp.services import Services
from storage.errors import OverQuota
from storage.metrics import ServerMetrics
from storage.queue import DELIVERED, FAILED, PENDING, Entry, NewEntry, Outcome, Recipient, WorkerLock

log = logging.getLogger("smtp.outbound")

STOP_GRACE = 10.0  # seconds running deliveries get to finish at shutdown
HEAD_LIMIT = 256 * 1024
MIN_WAIT = 0.2
AFTER_ERROR = 300.0  # seconds a message waits after its delivery task failed on our side (not a remote's 4xx)


def read_head(path: Path) -> bytes:
    """The header block of a queued message (a bounce carries only that, RFC 3462)."""
    with open(path, "rb") as f:
        start = f.read(HEAD_LIMIT)
    head, _ = split_message(start)
    return head


class OutboundService:
    name = "outbound"

    def __init__(self, svc: Services, metrics: ServerMetrics | None = None) -> None:
        self.svc = svc
        self.queue = svc.queue
        self.settings = svc.settings.outbound
        self.policy = svc.policy.outbound
        self.metrics = metrics
        self.router = Router(svc.resolver, self.settings, self.policy)
        self.destinations = Destinations(self.settings)
        self._active: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._lock: WorkerLock | None = None
        self._last_depth = 0.0

    @property
    def owner(self) -> str:
        assert self._lock is not None
        return self._lock.token

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.svc.clock

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> list[str]:
        self._lock = WorkerLock(self.queue.workers_folder)
        removed = await self.queue.remove_orphans()
        if removed:
            log.warning("outbound queue: removed %d message files that were never queued", removed)
        self.queue.on_enqueued.append(self.wake)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbound-dispatch")
        stats = await self.queue.stats()
        self._set_depth(stats.messages)
        return [f"queue {self.queue.folder} ({stats.messages} messages, {stats.held} held)"]

    def set_policy(self, policy: Policy) -> None:
        """A reloaded policy (SIGHUP): retry times, giving up and required TLS apply from the next attempt."""
        self.policy = policy.outbound
        self.router.policy = policy.outbound

    async def drain(self, grace: float) -> None:
        """SIGTERM: claim nothing more; deliveries under way get `grace` seconds (`shutdown_grace`, shared
        with the SMTP and IMAP drains) to finish. One cut off after that loses nothing: every recipient a
        remote server accepted was recorded at its 250, the others stay pending, and the lease is given
        back so the next start (or another serving process) sends them."""
        self._stopping = True
        self.wake()
        if self.wake in self.queue.on_enqueued:
            self.queue.on_enqueued.remove(self.wake)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._active:
            log.info("outbound: waiting up to %g s for %d deliveries under way", grace, len(self._active))
            _, late = await asyncio.wait(list(self._active.values()), timeout=grace)
            if late:
                log.warning("outbound: %d deliveries cut off after %g s; they stay queued and are sent "
                            "after the restart", len(late), grace)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def stop(self) -> None:
        await self.drain(STOP_GRACE)  # nothing left to wait for after a SIGTERM drain
        await self.destinations.close()
        if self._lock is not None:
            self._lock.close()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            wait = self.settings.poll_interval
            try:
                free = self.settings.max_deliveries - len(self._active)
                claimed: list[Entry] = []
                if free > 0:
                    claimed = await self.queue.claim(self.owner, free, set(self._active))
                    for entry in claimed:
                        self._active[entry.id] = asyncio.get_running_loop().create_task(
                            self._deliver(entry), name=f"outbound-{entry.id}")
                if time.monotonic() - self._last_depth > 5:
                    self._set_depth((await self.queue.stats()).messages)
                if claimed and len(claimed) == free:
                    continue  # more may be due; a finished delivery wakes us when a slot frees
                if not claimed:
                    due = await self.queue.next_due(self.owner)
                    if due is not None:
                        wait = min(wait, max(MIN_WAIT, (due - self.clock()).total_seconds()))
            except Exception:
                log.exception("outbound queue: dispatching failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _set_depth(self, n: int) -> None:
        self._last_depth = time.monotonic()
        if self.metrics is not None:
            self.metrics.queue_depth.set(n)

    # ------------------------------------------------------------------ one message

    async def _deliver(self, entry: Entry) -> None:
        try:
            now = self.clock()
            due = [r for r in entry.pending if r.next_attempt_at <= now]
            local = [r for r in due if r.local]
            by_domain: dict[str, list[Recipient]] = {}
            for r in due:
                if not r.local:
                    by_domain.setdefault(r.domain, []).append(r)
            record = self._recorder(entry)
            attempt = Attempt(entry, self.queue.message_path(entry.id), router=self.router,
                              destinations=self.destinations, settings=self.settings, helo=self.svc.settings.hostname,
                              on_host_failure=self._host_failed(entry))
            jobs = [attempt.remote(domain, rcpts, record) for domain, rcpts in by_domain.items()]
            if local:
                jobs.append(self._local(entry, local, record))
            results = await asyncio.gather(*jobs, return_exceptions=True)
            for res in results:
                if isinstance(res, Exception):
                    log.error("queue %s: delivery failed", entry.id, exc_info=res)
            await self._conclude(entry)
        except Exception:
            retry = self.clock() + timedelta(seconds=AFTER_ERROR)
            log.exception("queue %s: delivery failed; it stays queued until %s", entry.id,
                          retry.isoformat(timespec="seconds"))
            with contextlib.suppress(Exception):
                await self.queue.postpone(entry.id, retry)
        finally:
            with contextlib.suppress(Exception):
                await self.queue.unlease(entry.id, self.owner)
            self._active.pop(entry.id, None)
            self.wake()

    def _recorder(self, entry: Entry) -> Callable[[list[Tried]], Any]:
        async def record(tried: list[Tried]) -> None:
            if not tried:
                return
            now = self.clock()
            outs = outcomes(entry, tried, self.policy, now)
            await self.queue.record(entry.id, outs, now)  # fsynced before the next transaction starts
            attempts = {r.rcpt: r.attempts + 1 for t in tried for r in t.rcpts}
            self._log_outcomes(entry, outs, attempts)

        return record

    def _host_failed(self, entry: Entry) -> Callable[[str, Reply], None]:
        """A server that could not be used (the next one is tried): its own line in the mail log."""

        def note(host: str, reply: Reply) -> None:
            self.svc.maillog.event("attempt", queue_id=entry.id, message_id=entry.message_id, sender=entry.sender,
                                   account=entry.account, stage="outbound", remote_host=host,
                                   code=f"{reply.code} {reply.enhanced}", reason=reply.text, result="no-connection")

        return note

    def _log_outcomes(self, entry: Entry, outs: list[Outcome], attempts: dict[str, int]) -> None:
        """One mail-log line per distinct result (Đ7.2): who, which server, its words, TLS."""
        groups: dict[tuple[Any, ...], list[str]] = {}
        for o in outs:
            groups.setdefault((o.state, o.code, o.reply, o.remote_host, o.tls, o.next_attempt_at), []).append(o.rcpt)
        for (state, code, reply, host, tls, nxt), rcpts in groups.items():
            event = {DELIVERED: "delivered", PENDING: "deferred", FAILED: "bounced"}[state]
            self.svc.maillog.event(
                event, queue_id=entry.id, message_id=entry.message_id, sender=entry.sender, recipients=rcpts,
                size=entry.size, account=entry.account, stage="outbound", remote_host=host, code=code, reason=reply,
                tls=tls, attempt=max(attempts.get(r, 1) for r in rcpts),
                next_attempt=nxt.isoformat(timespec="seconds") if nxt else None,
                result="remote" if state == DELIVERED and host != "local" else
                ("delivered" if state == DELIVERED else event),
            )

    async def _local(self, entry: Entry, rcpts: list[Recipient], record: Callable[[list[Tried]], Any]) -> None:
        """Recipients in our own domains (held mail released, or a store that failed at DATA): the store
        gives them the message with Return-Path, as SMTP would have (bounces are `system`: never over quota)."""
        svc = self.svc
        message = return_path(entry.sender) + await self.queue.read_message(entry.id)
        tried: list[Tried] = []
        for r in rcpts:
            res = await svc.directory.resolve(r.rcpt)
            if res is None:
                tried.append(Tried([r], Reply(550, "5.1.1", f"no such mailbox here: <{r.rcpt}>"), "local"))
                continue
            if res.remote:
                await self.queue.add_recipients(entry.id, res.remote, local=False)
            if not res.accounts:
                tried.append(Tried([r], Reply(250, "2.1.5", f"forwarded to {', '.join(res.remote)}"), "local"))
                continue
            try:
                results = await svc.store.deliver_many(res.accounts, message, system=entry.kind == "dsn")
            except Exception as e:
                log.exception("queue %s: local delivery to %s failed", entry.id, r.rcpt)
                tried.append(Tried([r], Reply(451, "4.3.0", f"the mail store failed ({type(e).__name__})"), "local"))
                continue
            errors = [v for v in results.values() if isinstance(v, BaseException)]
            if len(errors) < len(results):
                tried.append(Tried([r], Reply(250, "2.0.0", "delivered into INBOX"), "local"))
            elif all(isinstance(e, OverQuota) for e in errors):
                e = errors[0]
                assert isinstance(e, OverQuota)
                code = (452, "4.2.2") if svc.policy.quota.over_quota == "tempfail" else (552, "5.2.2")
                tried.append(Tried([r], Reply(*code, f"mailbox <{r.rcpt}> is full (Article 7.3.b)"), "local"))
            else:
                tried.append(Tried([r], Reply(451, "4.3.0", f"the mail store failed: {errors[0]}"), "local"))
        await record(tried)

    # ------------------------------------------------------------------ bounces and delay notices

    async def _conclude(self, entry: Entry) -> None:
        fresh = await self.queue.get(entry.id)
        if fresh is None:
            return  # deleted by an operator meanwhile
        now = self.clock()
        failed = [r for r in fresh.recipients if r.state == FAILED and not r.reported]
        reports: list[tuple[str, list[Recipient]]] = []
        if failed:
            reports.append(("failed", failed))
        delay: datetime | None = None
        if (fresh.delay_notice_at is not None and fresh.delay_notified_at is None and fresh.pending
                and now >= fresh.delay_notice_at and fresh.sender and fresh.kind == "mail"):
            reports.append(("delayed", fresh.pending))
            delay = now
        notices = [await self._report(fresh, rcpts, action) for action, rcpts in reports]
        await self.queue.finish(fresh.id, self.owner, reported=[r.rcpt for r in failed], notices=notices,
                                delay_notified=delay)
        for (action, rcpts), notice in zip(reports, notices, strict=True):
            self.svc.maillog.event("dsn", queue_id=fresh.id, message_id=fresh.message_id, sender=fresh.sender,
                                   recipients=[fresh.sender], dsn=action, dsn_queue_id=notice.id,
                                   about=[r.rcpt for r in rcpts], result="queued")

    async def _report(self, entry: Entry, rcpts: list[Recipient], action: str) -> NewEntry:
        """A DSN (RFC 3464) about `rcpts`, as a new queue entry to the sender with the null sender."""
        svc = self.svc
        failures = [
            Failure(r.rcpt, _status(r, action), f"{r.code} {r.reply}" if r.code else "not tried yet",
                    remote_mta=r.remote_host if r.remote_host != "local" else None,
                    last_attempt=r.last_attempt_at, remote_answered=r.answered)
            for r in rcpts
        ]
        report = Report(action, entry.sender, failures, entry.id, entry.arrived_at, subject=entry.subject,
                        others_delivered=any(r.state == DELIVERED for r in entry.recipients),
                        retry_until=entry.expires_at if action == "delayed" else None)
        text = svc.render_report(report)
        head = await asyncio.to_thread(read_head, self.queue.message_path(entry.id))
        data = build_dsn(report, text=text, reporting_mta=svc.settings.hostname, original_headers=head,
                         now=self.clock(), from_address=f"MAILER-DAEMON@{svc.settings.primary_domain}")
        sender_domain = entry.sender.rpartition("@")[2].lower()
        return NewEntry(id=new_queue_id(), sender="", recipients=[entry.sender], data=data, arrived_at=self.clock(),
                        kind="dsn", subject=text[0],
                        local={entry.sender} if sender_domain in svc.settings.domains else set())


def _status(r: Recipient, action: str) -> str:
    """The RFC 3463 code of a recipient's last reply ("550 5.1.1" → "5.1.1")."""
    if r.code and " " in r.code:
        return r.code.split(" ", 1)[1]
    return "4.0.0" if action == "delayed" else "5.0.0"
