"""Đ7.2 mail log: one JSON object per line, one file per local day (`mail-YYYY-MM-DD.jsonl`).

"Lưu giữ nhật ký hệ thống thư điện tử, nhật ký gửi nhận thư, lỗi hệ thống"
(Đ7.2): every event of the mail flow (connection, login, accepted,
refused with code and reason, delivered, virus found, deferred) is one line
an operator can grep, `jq` or search with `mailserver log search`. One file
per day lets the retention job delete whole files after 6 months without
rewriting anything. Lines are flushed at once (not fsynced: the message
files are the durable truth; the log records what happened to them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from storage.dailylog import DailyFile

PREFIX = "mail"
EXT = "jsonl"

# Field names are an interface: operators' scripts read them.
FIELDS = ("time", "event", "queue_id", "message_id", "sender", "recipients", "size", "client_ip", "account",
          "listener", "result", "code", "reason")


class MailLog:
    def __init__(self, folder: Path, tz: ZoneInfo) -> None:
        self.folder = folder
        self.tz = tz
        self.file = DailyFile(folder, PREFIX, EXT, tz)
        self.listeners: list[Any] = []

    def event(self, event: str, *, when: datetime | None = None, **fields: Any) -> dict[str, Any]:
        """Write one event; None-valued fields are left out."""
        when = when or datetime.now(UTC)
        record: dict[str, Any] = {"time": when.astimezone(UTC).isoformat(timespec="milliseconds"), "event": event}
        record.update({k: v for k, v in fields.items() if v is not None})
        self.file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")), when)
        for cb in self.listeners:
            cb(record)
        return record

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True)
class Query:
    sender: str | None = None
    recipient: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    message_id: str | None = None
    queue_id: str | None = None
    event: str | None = None

    def matches(self, rec: dict[str, Any]) -> bool:
        if self.sender and self.sender.lower() not in str(rec.get("sender", "")).lower():
            return False
        if self.recipient:
            want = self.recipient.lower()
            if not any(want in str(r).lower() for r in rec.get("recipients") or []):
                return False
        if self.message_id and self.message_id.strip("<>") != str(rec.get("message_id", "")).strip("<>"):
            return False
        if self.queue_id and self.queue_id != rec.get("queue_id"):
            return False
        if self.event and self.event != rec.get("event"):
            return False
        if self.since or self.until:
            t = datetime.fromisoformat(rec["time"])
            if self.since and t < self.since:
                return False
            if self.until and t > self.until:
                return False
        return True


def _day_of(path: Path) -> date | None:
    try:
        return date.fromisoformat(path.name[len(PREFIX) + 1 : -len(EXT) - 1])
    except ValueError:
        return None


def search(folder: Path, query: Query, tz: ZoneInfo) -> Iterator[dict[str, Any]]:
    """Events matching `query`, oldest first; only the files of the days in range are read."""
    first = query.since.astimezone(tz).date() - timedelta(days=1) if query.since else None
    last = query.until.astimezone(tz).date() + timedelta(days=1) if query.until else None
    files = []
    for path in folder.glob(f"{PREFIX}-*.{EXT}"):
        day = _day_of(path)
        if day is None or (first and day < first) or (last and day > last):
            continue
        files.append((day, path))
    for _, path in sorted(files):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash: skip it, keep the rest
                if query.matches(rec):
                    yield rec
