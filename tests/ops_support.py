"""Helpers for the operations tests: simulated days, what landed in a mailbox, mail-log lines."""

from __future__ import annotations

import email
import json
from datetime import date, datetime, time
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from mailserver.jobs import JobRunner, RunReport
from policy.model import Policy
from storage.directory import PersonRequest
from storage.records import Account

PW = "Matkhau@123"
TZ = Policy().tz


def local(day: date, hour: int = 8, minute: int = 0) -> datetime:
    """A local (Asia/Ho_Chi_Minh) instant on `day`."""
    return datetime.combine(day, time(hour, minute), tzinfo=TZ)


async def person(app: Any, name: str, unit: str | None = None, **kw: Any) -> Account:
    created = await app.directory.add_person(PersonRequest(name=name, unit=unit, password=PW, **kw), actor="test")
    return created.account


async def run_at(app: Any, clock: Any, moment: datetime, **kw: Any) -> RunReport:
    clock.now = moment
    return await JobRunner(app).run(**kw)


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email_policy.default)  # type: ignore[return-value]


async def messages(app: Any, account: Account, folder: str = "INBOX") -> list[EmailMessage]:
    """Every message in a folder, parsed, in UID order (an archived mailbox has none)."""
    if not app.store.has_mailbox(account):
        return []
    s = await app.store.session(account)
    return [parse(await s.read(folder, uid)) for uid in await s.uids(folder)]


async def subjects(app: Any, account: Account, after_uid: int = 0) -> list[tuple[int, str]]:
    """(uid, subject) of the INBOX messages above `after_uid` (none once the mailbox is archived)."""
    if not app.store.has_mailbox(account):
        return []
    s = await app.store.session(account)
    return [(uid, str(parse(await s.read("INBOX", uid))["Subject"])) for uid in await s.uids("INBOX")
            if uid > after_uid]


def text_of(msg: EmailMessage, lang: str) -> str:
    for part in msg.iter_parts():
        if part["Content-Language"] == lang:
            return part.get_content()  # type: ignore[no-any-return]
    raise AssertionError(f"no {lang} part")


def mail_log(folder: Path, day: date, records: list[dict[str, Any]]) -> Path:
    """A day's mail log as SMTP writes it: one JSON object per line, `mail-YYYY-MM-DD.jsonl`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"mail-{day.isoformat()}.jsonl"
    with path.open("a", encoding="utf-8") as fh:
        for rec in records:
            line = {"time": local(day, 10).isoformat(), **rec}
            fh.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    return path
