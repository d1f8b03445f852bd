"""Đ8.1.c planned downtime: the maintenance windows announced to every mailbox.

The window and its announcement are facts in the directory database, so the
scheduler of any worker process can deliver the reminder the day before and
a cancellation reaches everyone who was told. Each change is audited in the
same transaction (Đ5.1–2), a `--force` with the reason it was forced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from policy.errors import Conflict, NotFound, ValidationFailed
from storage.directory import Directory
from storage.records import parse_ts, ts


@dataclass(frozen=True)
class Window:
    id: int
    start_at: datetime
    end_at: datetime
    reason: str
    created_at: datetime
    created_by: str
    working_days: int
    forced_reason: str | None
    cancelled_at: datetime | None
    cancelled_by: str | None
    cancel_reason: str | None

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None

    def state(self, now: datetime) -> str:
        if self.cancelled:
            return "cancelled"
        if now >= self.end_at:
            return "past"
        if now >= self.start_at:
            return "in progress"
        return "scheduled"

    def public(self) -> dict[str, object]:
        return {
            "id": self.id, "start": self.start_at, "end": self.end_at, "reason": self.reason,
            "working_days": self.working_days, "forced_reason": self.forced_reason,
            "created_by": self.created_by, "cancelled_at": self.cancelled_at, "cancel_reason": self.cancel_reason,
        }


def _window(r: object) -> Window:
    return Window(
        id=r["id"], start_at=parse_ts(r["start_at"]), end_at=parse_ts(r["end_at"]),  # type: ignore[index,arg-type]
        reason=r["reason"], created_at=parse_ts(r["created_at"]), created_by=r["created_by"],  # type: ignore[index,arg-type]
        working_days=r["working_days"], forced_reason=r["forced_reason"],  # type: ignore[index]
        cancelled_at=parse_ts(r["cancelled_at"]), cancelled_by=r["cancelled_by"],  # type: ignore[index]
        cancel_reason=r["cancel_reason"],  # type: ignore[index]
    )


class MaintenanceWindows:
    def __init__(self, directory: Directory, clock: Callable[[], datetime]) -> None:
        self.directory = directory
        self.db = directory.db
        self.clock = clock

    async def add(self, start: datetime, end: datetime, reason: str, *, working_days: int,
                  forced_reason: str | None, actor: str) -> Window:
        if not reason.strip():
            raise ValidationFailed("reason", "say why the service stops (it is in the notice)")
        if end <= start:
            raise ValidationFailed("duration", "the maintenance must last longer than 0")
        async with self.db.transaction():
            wid = await self.db.execute(
                "INSERT INTO maintenance (start_at, end_at, reason, created_at, created_by, working_days, "
                "forced_reason) VALUES (?,?,?,?,?,?,?)",
                (ts(start), ts(end), reason.strip(), ts(self.clock()), actor, working_days, forced_reason),
            )
            window = await self._get(wid)
            await self.directory.audit_within(
                actor, "maintenance.schedule", f"maintenance:{wid}", after=window.public(),
                rule="Đ8.1.c" + (" (forced: notice period not kept)" if forced_reason else ""),
            )
        return window

    async def _get(self, wid: int) -> Window:
        row = await self.db.fetchone("SELECT * FROM maintenance WHERE id=?", (wid,))
        if row is None:
            raise NotFound("id", f"no maintenance {wid} (see mailserver notice list)")
        return _window(row)

    async def get(self, wid: int) -> Window:
        return await self._get(wid)

    async def cancel(self, wid: int, reason: str, *, actor: str) -> Window:
        if not reason.strip():
            raise ValidationFailed("reason", "say why the maintenance is cancelled (it is in the notice)")
        async with self.db.transaction():
            window = await self._get(wid)
            if window.cancelled:
                raise Conflict("id", f"maintenance {wid} is already cancelled")
            if self.clock() >= window.end_at:
                raise Conflict("id", f"maintenance {wid} is over")
            await self.db.execute(
                "UPDATE maintenance SET cancelled_at=?, cancelled_by=?, cancel_reason=? WHERE id=?",
                (ts(self.clock()), actor, reason.strip(), wid),
            )
            after = await self._get(wid)
            await self.directory.audit_within(actor, "maintenance.cancel", f"maintenance:{wid}",
                                              before=window.public(), after=after.public(), rule="Đ8.1.c")
        return after

    async def list(self, *, include_past: bool = False) -> list[Window]:
        rows = await self.db.fetchall("SELECT * FROM maintenance ORDER BY start_at, id")
        windows = [_window(r) for r in rows]
        if include_past:
            return windows
        now = self.clock()
        return [w for w in windows if w.end_at > now and not w.cancelled]

    async def all(self) -> list[Window]:
        return await self.list(include_past=True)
