"""Health checks behind `/healthz`: a registry the composition root fills.

Each part of the server that can fail independently gets one named check:
every listener a running service opened (connect to it, as a client would),
clamd when one is configured (`zPING`, through the SMTP checks' own
client), spamd (`PING`; reported as not configured when it is not), free
space in the data folder, and, when the outbound queue exists, its size.
The registry lives on the App so that services built later (the queue, the
scheduler) add their own checks in `mailserver.serve.build_services`
without the web code knowing them.

Checks run concurrently, each with a timeout, so one hung dependency makes
`/healthz` report that dependency as failed instead of hanging the probe.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy.settings import Listener
from policy.units import format_size
from smtp.clamd import ClamdClient
from smtp.spamd import SpamdClient
from storage.queue import OutboundQueue

CHECK_TIMEOUT = 3.0  # seconds; orchestrators usually give a probe 5 to 10


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


Check = Callable[[], Awaitable[CheckResult]]


class HealthChecks:
    def __init__(self, timeout: float = CHECK_TIMEOUT) -> None:
        self.timeout = timeout
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def names(self) -> list[str]:
        return list(self._checks)

    async def _one(self, check: Check) -> CheckResult:
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(check(), self.timeout)
        except TimeoutError:
            result = CheckResult(False, {"error": f"no answer within {self.timeout:g} s"})
        except Exception as e:  # a check must report, never break the endpoint
            result = CheckResult(False, {"error": f"{type(e).__name__}: {e}"})
        return CheckResult(result.ok, {**result.detail, "ms": round(1000 * (time.monotonic() - started), 1)})

    async def run(self) -> tuple[bool, dict[str, Any]]:
        """(all healthy, {"status": ..., "checks": {name: {"ok": ..., ...}}})."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._one(self._checks[n]) for n in names))
        checks = {n: {"ok": r.ok, **r.detail} for n, r in zip(names, results, strict=True)}
        healthy = all(r.ok for r in results)
        return healthy, {"status": "ok" if healthy else "fail", "checks": checks}


def probe_address(listener: Listener) -> tuple[str, int]:
    """Where a client on this machine reaches a listener ("*" listens on loopback too)."""
    return (listener.bind_host or "127.0.0.1", listener.port)


def listener_check(listener: Listener) -> Check:
    """The listener accepts a TCP connection (the protocol's own greeting is not awaited)."""

    async def check() -> CheckResult:
        host, port = probe_address(listener)
        where = f"{host}:{port}"
        try:
            _reader, writer = await asyncio.open_connection(host, port)
        except OSError as e:
            return CheckResult(False, {"address": where, "error": e.strerror or str(e)})
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return CheckResult(True, {"address": where})

    return check


def disk_check(path: Path, min_free: int) -> Check:
    async def check() -> CheckResult:
        usage = await asyncio.to_thread(shutil.disk_usage, path)
        return CheckResult(
            usage.free >= min_free,
            {"path": str(path), "free_bytes": usage.free, "total_bytes": usage.total,
             "min_free_bytes": min_free, "free": format_size(usage.free)},
        )

    return check


def clamd_check(clamd: ClamdClient) -> Check:
    """Đ8.2.b: without clamd no message can be scanned, so no message can be accepted (`zPING`)."""

    async def check() -> CheckResult:
        if await clamd.ping():
            return CheckResult(True, {"address": clamd.address})
        return CheckResult(False, {"address": clamd.address, "error": "no PONG: clamd is down or unreachable"})

    return check


def spamd_check(spamd: SpamdClient) -> Check:
    """Đ8.2.b: spamd answers PING. Not configured is the operator's choice and healthy, but said:
    without it nothing is scored for spam."""

    async def check() -> CheckResult:
        if not spamd.configured:
            return CheckResult(True, {"configured": False,
                                      "note": "no spamd configured: messages are not scored for spam"})
        if await spamd.ping():
            return CheckResult(True, {"address": spamd.address})
        return CheckResult(False, {"address": spamd.address, "error": "no PONG: spamd is down or unreachable"})

    return check


def queue_check(queue: OutboundQueue) -> Check:
    """The outbound queue answers, and how much waits in it (held mail waits for an operator, Đ6.2.b)."""

    async def check() -> CheckResult:
        stats = await queue.stats()
        return CheckResult(True, {"messages": stats.messages, "held": stats.held,
                                  "recipients_pending": stats.recipients_pending,
                                  "oldest": stats.oldest.isoformat(timespec="seconds") if stats.oldest else None})

    return check
