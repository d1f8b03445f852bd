"""Delivering one message's recipients at one destination, over reused connections.

`Destinations` keeps what outlives a single message: the per-destination
concurrency limits (`outbound.destination_concurrency` connections at once to
one domain, route or smarthost, so a burst to one big provider does not look
like an attack and a slow one does not take every worker) and the idle
connections (a finished connection waits `outbound.connection_idle` seconds
for the next message to the same host and carries up to
`outbound.connection_reuse` messages; RFC 5321 §4.5.3.2 lets a client keep a
session open between transactions).

`Attempt.remote()` tries the hosts of a route in order (RFC 5321 §5.1:
another MX when one cannot be reached), sends the message in transactions
of at most `outbound.max_recipients`, and turns every reply into a
per-recipient `Outcome`. Outcomes are recorded in the queue the moment a
transaction ends, so a recipient the remote accepted is never sent again
after that commit (delivery is at least once: only a crash between the
remote's 250 and the commit repeats it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from policy.model import OutboundPolicy
from policy.settings import Outbound
from smtp.outbound.client import (
    ConnectFailure,
    Connection,
    Envelope,
    LostConnection,
    connect,
    incompatible,
    send,
    still_usable,
)
from smtp.outbound.routing import Hop, Route, RouteError, Router
from smtp.replies import Reply
from storage.queue import DELIVERED, FAILED, PENDING, Entry, Outcome, Recipient

log = logging.getLogger("smtp.outbound")

CHUNK = 256 * 1024
NO_TLS_FOR = 3600.0  # seconds: after a failed opportunistic STARTTLS, that host is tried in plain text


class Destinations:
    def __init__(self, settings: Outbound) -> None:
        self.settings = settings
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._idle: dict[tuple[str, int], list[tuple[Connection, asyncio.TimerHandle]]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._no_tls: dict[tuple[str, int], float] = {}

    def slot(self, destination: str) -> asyncio.Semaphore:
        sem = self._slots.get(destination)
        if sem is None:
            sem = self._slots[destination] = asyncio.Semaphore(self.settings.destination_concurrency)
        return sem

    async def take(self, route: Route) -> Connection | None:
        """An idle connection to one of the route's hosts that meets its TLS policy."""
        for hop in route.hops:
            idle = self._idle.get((hop.address, hop.port))
            while idle:
                conn, timer = idle.pop()
                timer.cancel()
                if route.tls in ("required", "implicit") and not conn.tls:
                    self.put(conn)  # someone else's opportunistic plain-text session: not for this route
                    break
                if await still_usable(conn):
                    return conn
                self._close(conn, polite=False)
        return None

    def put(self, conn: Connection) -> None:
        s = self.settings
        if not conn.alive or conn.uses >= s.connection_reuse or s.connection_idle <= 0:
            self._close(conn, polite=conn.alive)
            return
        key = (conn.hop.address, conn.hop.port)
        idle = self._idle.setdefault(key, [])
        if len(idle) >= s.destination_concurrency:
            self._close(conn)
            return
        loop = asyncio.get_running_loop()

        def expire() -> None:
            entries = self._idle.get(key, [])
            for i, (c, _) in enumerate(entries):
                if c is conn:
                    entries.pop(i)
                    self._close(conn)
                    break

        idle.append((conn, loop.call_later(s.connection_idle, expire)))

    def _close(self, conn: Connection, polite: bool = True) -> None:
        task = asyncio.get_running_loop().create_task(conn.close(polite))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def tls_broken(self, conn_key: tuple[str, int]) -> bool:
        until = self._no_tls.get(conn_key)
        return until is not None and until > time.monotonic()

    def mark_tls_broken(self, conn_key: tuple[str, int]) -> None:
        self._no_tls[conn_key] = time.monotonic() + NO_TLS_FOR

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn, timer in idle:
                timer.cancel()
                self._close(conn)
        self._idle.clear()
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=15)


@dataclass(frozen=True)
class Tried:
    """What one transaction or connection attempt said about some recipients."""

    rcpts: list[Recipient]
    reply: Reply
    where: str | None = None
    tls: str | None = None
    answered: bool = False  # the reply is the remote server's (not our words about DNS, connections ...)


# Called with what one transaction decided, before the next one starts: it records them durably.
Record = Callable[[list[Tried]], Awaitable[None]]


async def read_blocks(path: Path) -> AsyncIterator[bytes]:
    """The queued message, block by block (never all of a 20 MB message in memory at once)."""
    f = await asyncio.to_thread(open, path, "rb")
    try:
        while True:
            block = await asyncio.to_thread(f.read, CHUNK)
            if not block:
                return
            yield block
    finally:
        f.close()


class Attempt:
    """One delivery attempt of one message to one destination domain."""

    def __init__(self, entry: Entry, path: Path, *, router: Router, destinations: Destinations,
                 settings: Outbound, helo: str, on_host_failure: Callable[[str, Reply], None] | None = None) -> None:
        self.entry = entry
        self.on_host_failure = on_host_failure
        self.path = path
        self.router = router
        self.destinations = destinations
        self.settings = settings
        self.helo = helo

    async def remote(self, domain: str, rcpts: list[Recipient], record: Record) -> None:
        try:
            route = await self.router.route(domain)
        except RouteError as e:
            await record([Tried(rcpts, e.reply)])
            return
        async with self.destinations.slot(route.destination):
            await self._over(route, rcpts, record)

    async def _over(self, route: Route, rcpts: list[Recipient], record: Record) -> None:
        """Hosts in route order; a kept connection first. `pending` shrinks as transactions decide."""
        pending = list(rcpts)
        last: Reply | None = None
        pooled = await self.destinations.take(route)
        hops = list(route.hops)
        if pooled is not None:
            hops.sort(key=lambda h: (h.address, h.port) != (pooled.hop.address, pooled.hop.port))
        for hop in hops:
            conn, reused = None, False
            if pooled is not None and (pooled.hop.address, pooled.hop.port) == (hop.address, hop.port):
                conn, reused, pooled = pooled, True, None
            while True:
                if conn is None:
                    try:
                        conn = await self._connect(hop, route)
                    except ConnectFailure as e:
                        last = e.reply
                        if self.on_host_failure is not None:
                            self.on_host_failure(str(hop), e.reply)
                        break  # RFC 5321 §5.1: the next host
                try:
                    await self._transactions(conn, pending, record)
                except LostConnection as e:
                    if reused and not e.data_sent:
                        conn, reused = None, False  # a kept connection the server had closed: once more, fresh
                        continue
                    await record([Tried(pending, e.reply, str(hop))])
                    return
                self.destinations.put(conn)
                return
        if pooled is not None:
            self.destinations.put(pooled)
        await record([Tried(pending, last or Reply(451, "4.4.1", "no server of this destination could be reached"))])

    async def _connect(self, hop: Hop, route: Route) -> Connection:
        key = (hop.address, hop.port)
        starttls = not self.destinations.tls_broken(key)
        try:
            return await connect(hop, route, helo=self.helo, timeouts=self.settings.timeouts, try_starttls=starttls)
        except ConnectFailure as e:
            if not e.tls_failed:
                raise
            # RFC 7435 §1: opportunistic TLS must not stop delivery; plain text to this host for a while
            log.warning("queue %s: %s; trying %s without TLS", self.entry.id, e.reply, hop)
            self.destinations.mark_tls_broken(key)
            return await connect(hop, route, helo=self.helo, timeouts=self.settings.timeouts, try_starttls=False)

    def _envelope(self, rcpts: list[Recipient]) -> Envelope:
        e = self.entry
        addresses = [e.sender, *(r.rcpt for r in rcpts)]
        return Envelope(e.sender, [r.rcpt for r in rcpts], e.size, e.eightbit, e.utf8_headers,
                        utf8_addresses=not all(a.isascii() for a in addresses))

    async def _transactions(self, conn: Connection, pending: list[Recipient], record: Record) -> None:
        """Send to every recipient in `pending` over `conn`, removing each as its outcome is recorded."""
        env_all = self._envelope(pending)
        where = str(conn.hop)
        bad = incompatible(conn, env_all)
        if bad is not None:
            await record([Tried(list(pending), bad, where, conn.tls)])
            pending.clear()
            return
        while pending:
            batch = pending[: self.settings.max_recipients]
            result = await send(conn, self._envelope(batch), read_blocks(self.path))
            decided: list[Tried] = []
            again: list[Recipient] = []
            if not result.mail.ok:
                decided.append(Tried(batch, result.mail, where, conn.tls, answered=True))
            else:
                for r in batch:
                    reply = result.rcpt[r.rcpt]
                    if reply.code == 452 and reply.enhanced == "4.5.3" and result.data is not None:
                        again.append(r)  # RFC 5321 §4.5.3.1.10: too many recipients; the rest in a new transaction
                    elif reply.ok:
                        decided.append(Tried([r], result.data or Reply(451, "4.3.0", "DATA was not accepted"),
                                             where, conn.tls, answered=result.data is not None))
                    else:
                        decided.append(Tried([r], reply, where, conn.tls, answered=True))
            await record(decided)
            done = {id(r) for t in decided for r in t.rcpts}
            pending[:] = [r for r in pending if id(r) not in done]
            if not decided:
                break  # no progress (cannot happen with a sane server): leave the rest for the caller
            if pending and not conn.alive:
                raise LostConnection(Reply(451, "4.4.2", f"{conn.hop} closed the connection"), data_sent=False)
        if pending:
            await record([Tried(list(pending), Reply(452, "4.5.3", "too many recipients for one message"), where,
                                conn.tls)])
            pending.clear()


def outcomes(entry: Entry, tried: list[Tried], policy: OutboundPolicy, now: datetime) -> list[Outcome]:
    """Replies → per-recipient states: 2xx delivered, 5xx failed, 4xx retried on the schedule until the
    message is older than `give_up_after`, then failed ("expired", RFC 3463 X.4.7)."""
    out = []
    nobody_to_tell = not entry.sender  # RFC 5321 §4.5.5: a bounce is never bounced
    for t in tried:
        for r in t.rcpts:
            rep = t.reply
            code = f"{rep.code} {rep.enhanced}"
            if rep.ok:
                out.append(Outcome(r.rcpt, DELIVERED, code, rep.text, t.where, t.tls, answered=t.answered))
            elif rep.temporary and now < entry.expires_at:
                wait = policy.retry_wait(r.attempts + 1)
                out.append(Outcome(r.rcpt, PENDING, code, rep.text, t.where, t.tls, answered=t.answered,
                                   next_attempt_at=now + timedelta(seconds=wait.approx_seconds)))
            else:
                text = rep.text
                if rep.temporary:
                    # RFC 3463 X.4.7: delivery time expired; the last answer stays in the report
                    code = f"{rep.code} 4.4.7"
                    text = f"gave up after {policy.give_up_after} of trying; the last answer was {rep}"
                out.append(Outcome(r.rcpt, FAILED, code, text, t.where, t.tls, reported=nobody_to_tell,
                                   answered=t.answered and not rep.temporary))
    return out


__all__ = ["Attempt", "Destinations", "Tried", "outcomes", "read_blocks"]

