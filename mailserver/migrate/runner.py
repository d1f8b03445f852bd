"""Run the migrations of a whole unit: N mailboxes at a time, one progress view, one report.

Each mailbox is a job (a source and a target account). Jobs run with at
most `parallel` at once; one job's failure is reported and the others go
on. A lock file per target account keeps two runs (two operators, or a
run started again while the first is still going) from copying into the
same mailbox at once, which could otherwise append a batch twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mailserver.app import App
from mailserver.migrate.copier import Copier
from mailserver.migrate.progress import ProgressDisplay
from mailserver.migrate.report import AccountReport
from mailserver.migrate.sources import Source
from mailserver.migrate.state import ProgressDB
from policy.errors import MailserverError
from policy.lockstate import LockState


@dataclass
class Job:
    describe: str  # the source as the report shows it (user@host, a file)
    target: str  # the address
    make_source: Callable[[], Source]


def state_path(app: App) -> Path:
    return app.settings.paths.data / "migration.sqlite3"


async def run_jobs(app: App, jobs: list[Job], *, parallel: int = 1, display: ProgressDisplay | None = None,
                   reports: list[AccountReport] | None = None) -> list[AccountReport]:
    reports = reports if reports is not None else [AccountReport(j.describe, j.target) for j in jobs]
    db = ProgressDB(state_path(app))
    copier = Copier(app.store, app.policy, db)
    gate = asyncio.Semaphore(max(1, parallel))
    changed = display.changed if display is not None else (lambda: None)

    async def one(job: Job, report: AccountReport) -> None:
        async with gate:
            try:
                account = await app.directory.require_account(job.target, "to")
                if app.directory.access(account).state == LockState.revoked:
                    raise MailserverError("to", f"{account.address} is revoked (Đ5.3.b); mail is not brought into it")
                source = job.make_source()
            except MailserverError as e:
                report.end("failed", f"{e.field}: {e.message}" if e.field else e.message)
                changed()
                return
            report.address = account.address
            try:
                with _account_lock(app, account.id, account.address):
                    await copier.run(source, account, report, changed)
            except MailserverError as e:
                report.end("failed", f"{e.field}: {e.message}")
                changed()

    if display is not None:
        display.start()
    try:
        await asyncio.gather(*(one(j, r) for j, r in zip(jobs, reports, strict=True)))
    finally:
        if display is not None:
            await display.stop()
        await asyncio.to_thread(db.close)
    return reports


@contextlib.contextmanager
def _account_lock(app: App, account_id: int, address: str) -> Iterator[None]:
    folder = app.settings.paths.data / "migration-locks"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{account_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MailserverError("to", f"another migration into {address} is running; wait for it to finish") \
                from None
        yield
    finally:
        os.close(fd)
