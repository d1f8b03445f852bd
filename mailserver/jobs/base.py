"""What every scheduled job is made of: a plan of keyed actions, each done at most once.

A job looks at the directory, the store and the clock and *plans*: it
returns the actions due at `now` that are not done yet, each with a key
that names exactly what it is (which account, which deadline, which lead
time), the article it applies and a one-line summary. The runner
(runner.py) claims each key in the job ledger, performs the action, and
marks it done, so a dry run is the plan itself and a real run never
repeats what a previous run, another process, or a crashed run already did.

Jobs that go through the whole mailbox store or the log folder once a day
are `daily`: the runner plans them at most once per local day (at the
first run after midnight) and records the day when all their actions
succeeded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from mailserver.app import App
from mailserver.notices import Notices
from policy.calendar import local_date
from storage.db import Database
from storage.directory import Directory
from storage.jobledger import JobLedger
from storage.records import Account

SYSTEM = "system:jobs"  # the actor of every change a job makes (audit log)


@dataclass
class Done:
    """What an action did (recorded in the ledger), and optionally work to commit with it."""

    detail: Any = None
    # Runs in the transaction that marks the action done (the daily counters: never counted twice).
    commit: Callable[[Database], Awaitable[None]] | None = None


@dataclass
class Action:
    job: str
    key: str
    rule: str
    target: str | None
    summary: str
    run: Callable[[], Awaitable[Done]]
    # Other keys this action makes pointless (a retirement notice already names the revocation date,
    # so the revocation reminder due the same day is not sent as well): recorded done with it.
    supersedes: list[str] = field(default_factory=list)


class Job(Protocol):
    name: str
    rule: str
    daily: bool

    async def plan(self, now: datetime) -> list[Action]: ...


class JobBase:
    """Shared by the jobs: the App's parts, the notices, the local day."""

    name = ""
    rule = ""
    daily = False

    def __init__(self, app: App, notices: Notices) -> None:
        self.app = app
        self.notices = notices

    @property
    def directory(self) -> Directory:
        return self.app.directory

    @property
    def ledger(self) -> JobLedger:
        return JobLedger(self.directory.db, self.app.clock)

    def today(self, now: datetime) -> date:
        return local_date(now, self.app.policy.tz)

    def action(self, key: str, target: str | None, summary: str, run: Callable[[], Awaitable[Done]],
               rule: str | None = None, supersedes: tuple[str, ...] = ()) -> Action:
        return Action(self.name, self.key(key), rule or self.rule, target, summary, run,
                      [self.key(k) for k in supersedes])

    def key(self, key: str) -> str:
        return f"{self.name}:{key}"

    async def unit_mailbox(self, account: Account) -> Account | None:
        """Where the unit is told about its member (Đ6.2.a, Đ5.3.b): the mailbox of the person's unit;
        for a unit's own mailbox, that of its parent unit."""
        unit = await self.directory.unit_by_id(account.unit_id)
        if unit is None:
            return None
        if account.kind == "unit":
            unit = await self.directory.unit_by_id(unit.parent_id)
            if unit is None:
                return None
        box = await self.directory.unit_mailbox(unit)
        if box is None or box.id == account.id or not self.directory.access(box).may_receive:
            return None
        return box

    async def recorded(self, action: str, target: str | None, detail: dict[str, Any]) -> Done:
        """Audit what the action did (actor system:jobs, the job's article) and return it as done."""
        await self.directory.audit(SYSTEM, action, target, after=detail, rule=self.rule)
        return Done(detail)

    async def notify(self, template: str, account: Account, values: dict[str, str], action: str,
                     detail: dict[str, Any]) -> Done:
        """A personal notice to `account`, copied to its unit mailbox (Đ5.3.b, Đ6.2.a), audited."""
        unit_box = await self.unit_mailbox(account)
        await self.notices.send(template, account, values, cc=[unit_box] if unit_box else [])
        return await self.recorded(action, account.address, {**detail, "cc": unit_box.address if unit_box else None})

    async def unit_name(self, account: Account) -> str:
        unit = await self.directory.unit_by_id(account.unit_id)
        return unit.name if unit else ""
