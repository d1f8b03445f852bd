"""The live view of a migration: one line per mailbox and a total (messages, bytes, rate, ETA).

On a terminal the block is redrawn in place with ANSI cursor movement
(twice a second); anywhere else (CI, `| tee migration.log`, cron) it
degrades to plain lines: one when a mailbox changes state and a summary
every `plain_every` seconds, so a log shows the same facts without escape
codes. Plain ANSI rather than a library: a table of a few columns does not
need one.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import TextIO

from mailserver.migrate.report import AccountReport
from policy.units import format_size

ACTIVE = ("connecting", "planning", "copying")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def account_line(r: AccountReport) -> str:
    mps, bps = r.rates()
    return (f"{r.address:<32.32} {r.state:<10} {r.copied:>7}/{r.planned_messages:<7} "
            f"{format_size(r.copied_bytes):>9}/{format_size(r.planned_bytes):<9} "
            f"{mps:7.1f} msg/s {bps / 1e6:7.2f} MB/s  ETA {_duration(r.eta())}")


def total_line(reports: list[AccountReport], elapsed: float) -> str:
    copied = sum(r.copied for r in reports)
    planned = sum(r.planned_messages for r in reports)
    nbytes = sum(r.copied_bytes for r in reports)
    planned_bytes = sum(r.planned_bytes for r in reports)
    done = sum(1 for r in reports if r.state not in ("waiting", *ACTIVE))
    mps = copied / elapsed if elapsed > 0 else 0.0
    bps = nbytes / elapsed if elapsed > 0 else 0.0
    eta = (planned_bytes - nbytes) / bps if bps > 0 and planned_bytes > nbytes else None
    failed = sum(len(r.failed) for r in reports)
    return (f"{'total':<32} {done}/{len(reports)} done {copied:>7}/{planned:<7} "
            f"{format_size(nbytes):>9}/{format_size(planned_bytes):<9} "
            f"{mps:7.1f} msg/s {bps / 1e6:7.2f} MB/s  ETA {_duration(eta)}  failed {failed}")


class ProgressDisplay:
    def __init__(self, reports: list[AccountReport], stream: TextIO | None = None, *, tty: bool | None = None,
                 refresh: float = 0.5, plain_every: float = 30.0, max_rows: int = 20) -> None:
        self.reports = reports
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.refresh = refresh
        self.plain_every = plain_every
        self.max_rows = max_rows
        self._drawn = 0
        self._states: dict[int, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop_time = 0.0
        self._started = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        self._task = loop.create_task(self._run(), name="migration-progress")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.changed()
        if self.tty:
            self._draw()

    def changed(self) -> None:
        """A mailbox changed state: plain mode prints a line for it (terminal mode redraws anyway)."""
        if self.tty:
            return
        for i, r in enumerate(self.reports):
            if self._states.get(i) != r.state:
                self._states[i] = r.state
                if r.state != "waiting":
                    extra = f" — {r.reason}" if r.reason else ""
                    self._write(account_line(r) + extra + "\n")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_plain = loop.time()
        while True:
            await asyncio.sleep(self.refresh if self.tty else 1.0)
            if self.tty:
                self._draw()
            else:
                self.changed()
                if loop.time() - last_plain >= self.plain_every:
                    last_plain = loop.time()
                    for r in self.reports:
                        if r.state in ACTIVE:
                            self._write(account_line(r) + "\n")
                    self._write(total_line(self.reports, loop.time() - self._started) + "\n")

    def _draw(self) -> None:
        elapsed = asyncio.get_running_loop().time() - self._started
        # active mailboxes first, then the finished ones, within a screen's worth of rows
        order = sorted(self.reports, key=lambda r: (r.state not in ACTIVE, r.state == "waiting"))
        rows = [account_line(r) for r in order[: self.max_rows]]
        if len(order) > self.max_rows:
            rows.append(f"… and {len(order) - self.max_rows} more mailboxes")
        rows.append(total_line(self.reports, elapsed))
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._write(up + "".join(f"\x1b[2K{row}\n" for row in rows))
        self._drawn = len(rows)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
