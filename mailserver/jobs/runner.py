"""Run the jobs once at the App's clock: plan, claim, do, record (mailserver jobs run, the scheduler).

"Catching up" needs no special code: every job plans what is due at `now`
and not yet done, so a run after a week of downtime does the week's work,
and a run at a simulated `--now` does what would be due then. A failed
action is logged, recorded with its error, and tried again by the next run;
it never stops the other actions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailserver.app import App
from mailserver.jobs.base import Action, Job
from mailserver.jobs.counters import CountersJob
from mailserver.jobs.inactivity import InactivityJob
from mailserver.jobs.maintenance import MaintenanceJob
from mailserver.jobs.passwords import PasswordJob
from mailserver.jobs.retention import FolderRetentionJob, LogRetentionJob, RecordsRetentionJob
from mailserver.jobs.retirement import RetirementJob
from mailserver.notices import Notices
from policy.calendar import local_date
from storage.jobledger import JobLedger

log = logging.getLogger("mailserver.jobs")


@dataclass(frozen=True)
class ActionResult:
    job: str
    key: str
    rule: str
    target: str | None
    summary: str
    result: str  # done, planned (dry run), busy (another process holds it), failed
    detail: Any = None

    def public(self) -> dict[str, Any]:
        return {"job": self.job, "key": self.key, "rule": self.rule, "target": self.target,
                "summary": self.summary, "result": self.result, "detail": self.detail}


@dataclass
class RunReport:
    now: datetime
    dry_run: bool
    results: list[ActionResult] = field(default_factory=list)

    @property
    def done(self) -> int:
        return sum(1 for r in self.results if r.result == "done")

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r.result == "failed")


def default_jobs(app: App, notices: Notices) -> list[Job]:
    """Every job, in the order they run: counters before the log files they read are purged;
    revocation before inactivity (a revoked mailbox is not also suspended)."""
    return [
        CountersJob(app, notices),
        RetirementJob(app, notices),
        InactivityJob(app, notices),
        PasswordJob(app, notices),
        MaintenanceJob(app, notices),
        FolderRetentionJob(app, notices),
        LogRetentionJob(app, notices),
        RecordsRetentionJob(app, notices),
    ]


JOB_NAMES = [j.name for j in (CountersJob, RetirementJob, InactivityJob, PasswordJob, MaintenanceJob,
                               FolderRetentionJob, LogRetentionJob, RecordsRetentionJob)]


class JobRunner:
    def __init__(self, app: App, jobs: Sequence[Job] | None = None, notices: Notices | None = None) -> None:
        self.app = app
        self.notices = notices or Notices(app.settings, app.policy, app.store, app.clock)
        self.ledger = JobLedger(app.directory.db, app.clock)
        self.jobs = list(jobs) if jobs is not None else default_jobs(app, self.notices)

    async def run(self, *, dry_run: bool = False, only: Sequence[str] | None = None,
                  trigger: str = "cli") -> RunReport:
        now = self.app.clock()
        report = RunReport(now, dry_run)
        started = self.ledger.wall()
        for job in self.jobs:
            if only and job.name not in only:
                continue
            failed_before = report.failed
            try:
                await self._run_job(job, now, report, dry_run)
            except Exception as e:  # a broken plan (e.g. an unreadable store) must not stop the others
                log.exception("job %s could not plan", job.name)
                report.results.append(ActionResult(job.name, f"{job.name}:plan", job.rule, None,
                                                   "planning failed", "failed", {"error": repr(e)}))
            if not dry_run:
                ok = report.failed == failed_before
                self.app.metrics.job_runs.labels(job=job.name, result="ok" if ok else "failed").inc()
        await self.ledger.record_run(started, now, trigger, dry_run, report.done, report.failed)
        return report

    async def _run_job(self, job: Job, now: datetime, report: RunReport, dry_run: bool) -> None:
        day_key = f"day:{job.name}:{local_date(now, self.app.policy.tz).isoformat()}"
        if job.daily and await self.ledger.is_done(day_key):
            return
        actions = await job.plan(now)
        done = await self.ledger.done_keys(a.key for a in actions)
        pending = [a for a in actions if a.key not in done]
        failures = 0
        superseded: set[str] = set()
        for action in pending:
            if action.key in superseded:
                continue
            if dry_run:
                report.results.append(self._result(action, "planned"))
                superseded.update(action.supersedes)
                continue
            result = await self._perform(action)
            report.results.append(result)
            failures += result.result == "failed"
            if result.result == "done":
                superseded.update(action.supersedes)
        if job.daily and not dry_run and not failures:
            await self.ledger.mark_done([day_key], job=job.name, rule=job.rule, target=None,
                                        detail={"actions": len(pending)})

    async def _perform(self, action: Action) -> ActionResult:
        claim = await self.ledger.claim(action.key, job=action.job, rule=action.rule, target=action.target)
        if claim is None:
            return self._result(action, "busy")
        try:
            done = await action.run()
        except asyncio.CancelledError:
            # serve is stopping: release the claim so the next start retries at once, not after the lease
            await self.ledger.fail(claim, "interrupted (the server stopped)")
            raise
        except Exception as e:
            log.exception("%s failed: %s", action.key, action.summary)
            await self.ledger.fail(claim, f"{e.__class__.__name__}: {e}")
            return self._result(action, "failed", {"error": f"{e.__class__.__name__}: {e}"})
        if not await self.ledger.finish(claim, done.detail, done.commit):
            log.warning("%s: the claim was taken over by another process; its result was not recorded", action.key)
            return self._result(action, "busy")
        if action.supersedes:
            await self.ledger.mark_done(action.supersedes, job=action.job, rule=action.rule, target=action.target,
                                        detail={"superseded_by": action.key})
        log.info("%s [%s] %s", action.job, action.rule, action.summary)
        return self._result(action, "done", done.detail)

    @staticmethod
    def _result(action: Action, result: str, detail: Any = None) -> ActionResult:
        return ActionResult(action.job, action.key, action.rule, action.target, action.summary, result, detail)
