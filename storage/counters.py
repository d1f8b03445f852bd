"""Daily counters per account and unit, kept in the directory database for the reports.

Đ7.2 keeps the raw mail log 6 months; the reports of Đ12.9, Đ14.1.c and
Đ14.3.đ look back 12 months and more. So once a day has ended, its mail log
file (`mail-YYYY-MM-DD.jsonl`, one JSON object per line, written by SMTP)
is reduced to counts that outlive it:

| metric | from mail-log events | counted for |
|---|---|---|
| `sent` | `accepted` with an authenticated `account` | the sender |
| `sent_recipients` | the same, its number of recipients | the sender |
| `received` | `delivered` | each local recipient |
| `refused` (reason: the check, else the stage) | `rejected` | the sender if authenticated, else each |
| | | local recipient, else nobody (account 0) |
| `deferred` (reason likewise) | `deferred` | likewise |
| `virus` | `virus` | likewise |
| `spam` (reason: the check or result) | `spam`, or a refusal whose check names spam | likewise |
| `bounced` | `bounced` | the recipient that did not get it |

Metric and reason are free text in the table, so a reason or an event the
spam filter adds later needs no schema change; `storage_bytes` and
`storage_messages` are daily snapshots of each mailbox (gauges: reports take
the latest, never a sum). Lines that do not parse (a line cut by a crash)
are skipped and counted as such.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from storage.db import Database

MAIL_LOG_PREFIX = "mail"
MAIL_LOG_EXT = "jsonl"
GAUGES = frozenset({"storage_bytes", "storage_messages"})
NOBODY = ""  # the address of counts not attributable to an account (account 0)

Key = tuple[str, str, str]  # (address or NOBODY, metric, reason)


@dataclass
class DayCounts:
    """One day's mail log reduced to counts per (address, metric, reason)."""

    counts: Counter[Key] = field(default_factory=Counter)
    lines: int = 0
    skipped: int = 0

    def add(self, address: str, metric: str, reason: str = "", n: int = 1) -> None:
        self.counts[(address.lower(), metric, reason)] += n


def mail_log_path(folder: Path, day: date) -> Path:
    return folder / f"{MAIL_LOG_PREFIX}-{day.isoformat()}.{MAIL_LOG_EXT}"


def daily_files(folder: Path, prefix: str, ext: str) -> dict[date, Path]:
    """`<prefix>-YYYY-MM-DD.<ext>` files in `folder` by day (storage/dailylog.py names them)."""
    found: dict[date, Path] = {}
    if not folder.is_dir():
        return found
    head, tail = f"{prefix}-", f".{ext}"
    for path in folder.iterdir():
        name = path.name
        if not (name.startswith(head) and name.endswith(tail)) or not path.is_file():
            continue
        try:
            found[date.fromisoformat(name[len(head) : -len(tail)])] = path
        except ValueError:
            continue
    return found


def _local(addresses: Iterable[Any], domains: frozenset[str]) -> list[str]:
    out = []
    for a in addresses:
        if isinstance(a, str) and "@" in a and a.rpartition("@")[2].lower().rstrip(".") in domains:
            out.append(a.strip("<>").lower())
    return out


def _reason(rec: Mapping[str, Any]) -> str:
    return str(rec.get("check") or rec.get("stage") or "other")


def _is_spam(rec: Mapping[str, Any]) -> bool:
    return "spam" in str(rec.get("check") or "").lower()


def count_events(records: Iterable[Mapping[str, Any]], domains: Iterable[str],
                 into: DayCounts | None = None) -> DayCounts:
    """Reduce mail-log records (already parsed) to counts; see the module's table."""
    out = into or DayCounts()
    local = frozenset(d.lower() for d in domains)
    for rec in records:
        event = rec.get("event")
        account = rec.get("account")
        recipients = rec.get("recipients") or []
        if event == "accepted":
            if account:
                out.add(account, "sent")
                out.add(account, "sent_recipients", n=len(recipients))
            continue
        if event == "delivered":
            for r in _local(recipients, local):
                out.add(r, "received")
            continue
        if event == "bounced":
            for r in _local(recipients, local) or [NOBODY]:
                out.add(r, "bounced")
            continue
        if event not in ("rejected", "deferred", "virus", "spam"):
            continue
        whom = [account] if account else (_local(recipients, local) or [NOBODY])
        for who in whom:
            if event == "rejected":
                out.add(who, "refused", _reason(rec))
                if _is_spam(rec):
                    out.add(who, "spam", _reason(rec))
            elif event == "deferred":
                out.add(who, "deferred", _reason(rec))
            elif event == "virus":
                out.add(who, "virus")
            else:
                out.add(who, "spam", str(rec.get("check") or rec.get("result") or ""))
    return out


def count_file(path: Path, domains: Iterable[str]) -> DayCounts:
    """Read one day's mail log; a line that is not JSON is skipped (and counted as skipped)."""
    out = DayCounts()
    records = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            out.lines += 1
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                out.skipped += 1
                continue
            if isinstance(rec, dict):
                records.append(rec)
            else:
                out.skipped += 1
    return count_events(records, domains, out)


@dataclass(frozen=True)
class CounterRow:
    day: date
    account_id: int
    unit_id: int
    metric: str
    reason: str
    value: int


class CounterStore:
    """The `daily_counters` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def put(db: Database, rows: Iterable[CounterRow]) -> None:
        """Write a day's rows; call inside the transaction that marks the day counted (JobLedger.finish).
        Adding to existing rows lets a late snapshot and the log counts of one day live side by side."""
        for r in rows:
            await db.execute(
                "INSERT INTO daily_counters (day, account_id, unit_id, metric, reason, value) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (day, account_id, metric, reason) DO UPDATE SET value = "
                + ("excluded.value" if r.metric in GAUGES else "value + excluded.value"),
                (r.day.isoformat(), r.account_id, r.unit_id, r.metric, r.reason, r.value),
            )

    async def totals(self, first: date, end: date) -> list[CounterRow]:
        """Sums per (account, unit, metric, reason) over [first, end) for counts (not gauges)."""
        rows = await self.db.fetchall(
            "SELECT account_id, unit_id, metric, reason, SUM(value) AS value FROM daily_counters "
            f"WHERE day >= ? AND day < ? AND metric NOT IN ({','.join('?' * len(GAUGES))}) "
            "GROUP BY account_id, unit_id, metric, reason",
            (first.isoformat(), end.isoformat(), *sorted(GAUGES)),
        )
        return [CounterRow(first, r["account_id"], r["unit_id"], r["metric"], r["reason"], r["value"]) for r in rows]

    async def latest_gauges(self, end: date) -> dict[int, dict[str, tuple[date, int]]]:
        """Per account, the last snapshot of each gauge on a day before `end`."""
        rows = await self.db.fetchall(
            "SELECT account_id, metric, day, value FROM daily_counters c "
            f"WHERE metric IN ({','.join('?' * len(GAUGES))}) AND day < ? AND day = ("
            "  SELECT MAX(day) FROM daily_counters d WHERE d.account_id = c.account_id AND d.metric = c.metric "
            "  AND d.day < ?)",
            (*sorted(GAUGES), end.isoformat(), end.isoformat()),
        )
        out: dict[int, dict[str, tuple[date, int]]] = {}
        for r in rows:
            out.setdefault(r["account_id"], {})[r["metric"]] = (date.fromisoformat(r["day"]), r["value"])
        return out

    async def days_counted(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(DISTINCT day) FROM daily_counters")
        return int(row[0]) if row else 0

    async def prune(self, before: date) -> int:
        async with self.db.transaction():
            row = await self.db.fetchone("SELECT COUNT(*) FROM daily_counters WHERE day < ?", (before.isoformat(),))
            await self.db.execute("DELETE FROM daily_counters WHERE day < ?", (before.isoformat(),))
        return int(row[0]) if row else 0
