"""The record of what the scheduled jobs did (directory database), shared by every process.

Jobs run inside every `mailserver serve` worker and from `mailserver jobs
run`, possibly at the same moment. Each thing a job does once (a notice
about one deadline to one mailbox, one revocation, one day's counters) has
a key; a process *claims* the key in a write transaction before doing the
work and marks it done afterwards, so:

* two processes never both do it (the second finds the claim);
* a restarted server does not repeat it (the key is done) but does catch up
  on everything not yet done;
* a process that died while holding a claim does not block the work
  forever: a claim older than `LEASE_SECONDS` of real time is taken over.
  The lease uses the wall clock, not the jobs' clock, so a run at a
  simulated `--now` cannot make a live claim look stale or a stale one live.

Work whose result is itself written to this database (the daily counters)
commits that result in the same transaction that marks the key done, after
checking the claim is still its own: a taken-over claim can never count a
day twice.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.db import Database
from storage.records import parse_ts, ts

# A claim not finished after this long (real seconds) belongs to a dead process. Archiving a 2 GiB
# mailbox takes about a minute here; an hour leaves a wide margin.
LEASE_SECONDS = 3600.0
CHUNK = 500  # keys per IN (...) query


@dataclass(frozen=True)
class Claim:
    key: str
    token: str


@dataclass(frozen=True)
class ActionRecord:
    key: str
    job: str
    rule: str | None
    target: str | None
    state: str
    attempts: int
    at: datetime
    detail: Any


@dataclass(frozen=True)
class RunRecord:
    id: int
    started_at: datetime
    now: datetime
    trigger: str
    dry_run: bool
    done: int
    failed: int
    finished_at: datetime | None


def new_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class JobLedger:
    def __init__(self, db: Database, clock: Callable[[], datetime], wall: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self.wall = wall

    async def done_keys(self, keys: Iterable[str]) -> set[str]:
        """Which of `keys` are done (planning filters them out; dry runs do not list them)."""
        wanted = list(dict.fromkeys(keys))
        found: set[str] = set()
        for i in range(0, len(wanted), CHUNK):
            chunk = wanted[i : i + CHUNK]
            rows = await self.db.fetchall(
                f"SELECT key FROM job_actions WHERE state='done' AND key IN ({','.join('?' * len(chunk))})", chunk
            )
            found |= {r["key"] for r in rows}
        return found

    async def is_done(self, key: str) -> bool:
        return bool(await self.done_keys([key]))

    async def claim(self, key: str, *, job: str, rule: str | None, target: str | None) -> Claim | None:
        """Take the key for this process; None when it is done or another live process holds it."""
        token = new_token()
        now, wall = ts(self.clock()), self.wall()
        async with self.db.transaction():
            row = await self.db.fetchone("SELECT state, claimed_wall FROM job_actions WHERE key=?", (key,))
            if row is None:
                await self.db.execute(
                    "INSERT INTO job_actions (key, job, rule, target, state, claimed_by, claimed_wall, at) "
                    "VALUES (?,?,?,?,?,?,?,?)", (key, job, rule, target, "running", token, wall, now),
                )
                return Claim(key, token)
            if row["state"] == "done":
                return None
            if row["state"] == "running" and wall - row["claimed_wall"] < LEASE_SECONDS:
                return None
            await self.db.execute(
                "UPDATE job_actions SET state='running', claimed_by=?, claimed_wall=?, at=?, attempts=attempts+1 "
                "WHERE key=?", (token, wall, now, key),
            )
        return Claim(key, token)

    async def finish(self, claim: Claim, detail: Any = None,
                     also: Callable[[Database], Awaitable[None]] | None = None) -> bool:
        """Mark the claimed key done, running `also` in the same transaction; False (and nothing
        written) when the claim was taken over meanwhile."""
        async with self.db.transaction():
            row = await self.db.fetchone("SELECT claimed_by, state FROM job_actions WHERE key=?", (claim.key,))
            if row is None or row["claimed_by"] != claim.token or row["state"] != "running":
                return False
            if also is not None:
                await also(self.db)
            await self.db.execute(
                "UPDATE job_actions SET state='done', at=?, detail=? WHERE key=?",
                (ts(self.clock()), _json(detail), claim.key),
            )
        return True

    async def mark_done(self, keys: Iterable[str], *, job: str, rule: str | None, target: str | None,
                        detail: Any = None) -> None:
        """Record keys as done without doing them (superseded by another action)."""
        now, wall, token = ts(self.clock()), self.wall(), new_token()
        async with self.db.transaction():
            for key in keys:
                await self.db.execute(
                    "INSERT INTO job_actions (key, job, rule, target, state, claimed_by, claimed_wall, at, detail) "
                    "VALUES (?,?,?,?,'done',?,?,?,?) ON CONFLICT (key) DO UPDATE SET state='done', at=excluded.at, "
                    "detail=excluded.detail", (key, job, rule, target, token, wall, now, _json(detail)),
                )

    async def fail(self, claim: Claim, error: str) -> None:
        """Record the error; the next run tries again (the claim is released at once)."""
        async with self.db.transaction():
            await self.db.execute(
                "UPDATE job_actions SET state='failed', at=?, detail=? WHERE key=? AND claimed_by=?",
                (ts(self.clock()), _json({"error": error}), claim.key, claim.token),
            )

    async def actions(self, *, job: str | None = None, state: str | None = None, target: str | None = None,
                      limit: int = 50) -> list[ActionRecord]:
        sql, params = "SELECT * FROM job_actions WHERE 1=1", []
        for column, value in (("job", job), ("state", state), ("target", target)):
            if value is not None:
                sql += f" AND {column}=?"
                params.append(value)
        sql += " ORDER BY at DESC LIMIT ?"
        rows = await self.db.fetchall(sql, [*params, limit])
        return [ActionRecord(r["key"], r["job"], r["rule"], r["target"], r["state"], r["attempts"],
                             parse_ts(r["at"]), json.loads(r["detail"]) if r["detail"] else None)  # type: ignore[arg-type]
                for r in rows]

    # ------------------------------------------------------------------ runs

    async def record_run(self, started_wall: float, now: datetime, trigger: str, dry_run: bool, done: int,
                         failed: int) -> int:
        """One row per run (written at its end: one transaction instead of two)."""
        async with self.db.transaction():
            return await self.db.execute(
                "INSERT INTO job_runs (started_at, now, trigger, dry_run, done, failed, finished_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (ts(datetime.fromtimestamp(started_wall).astimezone()), ts(now), trigger, int(dry_run), done, failed,
                 ts(datetime.fromtimestamp(self.wall()).astimezone())),
            )

    async def runs(self, limit: int = 20) -> list[RunRecord]:
        rows = await self.db.fetchall("SELECT * FROM job_runs ORDER BY id DESC LIMIT ?", (limit,))
        return [RunRecord(r["id"], parse_ts(r["started_at"]), parse_ts(r["now"]), r["trigger"],  # type: ignore[arg-type]
                          bool(r["dry_run"]), r["done"], r["failed"], parse_ts(r["finished_at"])) for r in rows]

    async def prune(self, before: datetime) -> int:
        """Forget finished actions and runs older than the audit retention (Đ7.2): the audit log has
        kept what they changed for as long."""
        async with self.db.transaction():
            n = await self._count("SELECT COUNT(*) FROM job_actions WHERE state='done' AND at < ?", before)
            await self.db.execute("DELETE FROM job_actions WHERE state='done' AND at < ?", (ts(before),))
            await self.db.execute("DELETE FROM job_runs WHERE now < ?", (ts(before),))
        return n

    async def _count(self, sql: str, before: datetime) -> int:
        row = await self.db.fetchone(sql, (ts(before),))
        return int(row[0]) if row else 0


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)
