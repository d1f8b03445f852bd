"""The scheduler inside `mailserver serve`: run the jobs at start and every `jobs.interval`.

Running at start is what makes a restart safe: whatever fell due while the
server was down is caught up at once, and whatever was already done is
not repeated (the job ledger in the directory database says so). Several
worker processes may each run a scheduler; claims in the ledger make every
action happen once. A failing run is logged and counted in /metrics
(`mailserver_job_runs_total{result="failed"}`); the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mailserver.app import App
from mailserver.jobs import JobRunner

log = logging.getLogger("mailserver.scheduler")


class JobScheduler:
    name = "jobs"
    listeners: tuple[str, ...] = ()

    def __init__(self, app: App, interval: float | None = None) -> None:
        self.app = app
        self.interval = interval if interval is not None else float(app.settings.jobs.interval.seconds)
        self.runner = JobRunner(app)
        self.runs = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> list[str]:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="job-scheduler")
        return [f"every {self.app.settings.jobs.interval}"]

    def wake(self) -> None:
        """Run now rather than at the next interval (tests, and a future admin page)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                report = await self.runner.run(trigger="scheduler")
                if report.done or report.failed:
                    log.info("jobs: %d done, %d failed", report.done, report.failed)
            except Exception:
                log.exception("jobs: the run failed")
            self.runs += 1
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def stop(self) -> None:
        """Cancel between or during actions: an interrupted action keeps its claim until the lease ends
        (or is retried by the next start after a failure), and an interrupted archive leaves the
        mailbox intact (storage/archive.py)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
