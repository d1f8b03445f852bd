"""Messages the system itself puts into mailboxes (Đ7.3.c quota warnings, ...).

The store decides *when* (it calls `on_quota_threshold` after the delivery
that crossed a threshold, once per crossing); this module decides *what*:
it fills an operator-editable template, builds a MIME message with a
Vietnamese part and an English part (UTF-8, RFC 2047 subject), and
delivers it from postmaster@ with `system=True`, which the store never
refuses for quota. Rendering lives here, in the composition root, so that
`storage` never depends on text meant for people.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path

from policy.errors import ConfigError, ConfigProblem
from policy.model import Policy
from policy.settings import Settings
from policy.units import format_size
from storage.records import Account
from storage.store import MailStore
from storage.storetypes import Stored, Usage

BUILTIN = Path(__file__).parent / "templates" / "notices"
SENDER_NAME = "Hệ thống thư điện tử công vụ tỉnh Phú Yên"
LARGEST_FOLDERS = 3


@dataclass(frozen=True)
class Notice:
    subject: str
    parts: list[tuple[str, str]]  # (language, text)


def template_text(name: str, override_dir: Path | None) -> tuple[str, Path]:
    """An operator's copy (paths.templates) wins over the built-in file."""
    for folder in (override_dir, BUILTIN):
        if folder is not None and (folder / name).is_file():
            path = folder / name
            return path.read_text(encoding="utf-8"), path
    raise ConfigError([ConfigProblem(str(BUILTIN / name), None, "", "notice template missing")])


def render(text: str, values: dict[str, str], source: str = "template") -> Notice:
    """Fill `$placeholders`; split into the subject line and the `--- <lang>` parts."""
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines or not lines[0].startswith("Subject:"):
        raise ConfigError([ConfigProblem(source, None, "", 'the first line must be "Subject: ..."')])
    subject = string.Template(lines[0][len("Subject:"):].strip()).safe_substitute(values)
    parts: list[tuple[str, list[str]]] = []
    for line in lines[1:]:
        if line.startswith("--- "):
            parts.append((line[4:].strip(), []))
        elif parts:
            parts[-1][1].append(line)
    if not parts:
        raise ConfigError([ConfigProblem(source, None, "", 'no "--- vi" / "--- en" part')])
    return Notice(subject, [(lang, string.Template("\n".join(body).strip() + "\n").safe_substitute(values))
                            for lang, body in parts])


def build_message(notice: Notice, sender: str, to: Account, now: datetime, hostname: str) -> bytes:
    """A multipart/mixed message, one inline text/plain part per language (UTF-8, CRLF)."""
    msg = EmailMessage()
    msg["From"] = formataddr((SENDER_NAME, sender))
    msg["To"] = formataddr((to.display_name, to.address))
    msg["Subject"] = notice.subject  # encoded as RFC 2047 UTF-8 by the SMTP policy
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=hostname)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: nobody should auto-reply to it
    msg["Content-Language"] = ", ".join(lang for lang, _ in notice.parts)
    msg.set_content("")
    msg.make_mixed()
    for lang, text in notice.parts:
        part = EmailMessage()
        part.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
        part["Content-Language"] = lang
        part["Content-Disposition"] = "inline"
        msg.attach(part)
    return msg.as_bytes(policy=SMTP)


class Notices:
    def __init__(self, settings: Settings, policy: Policy, store: MailStore, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.policy = policy
        self.store = store
        self.clock = clock

    @property
    def postmaster(self) -> str:
        return f"postmaster@{self.settings.primary_domain}"

    async def quota_warning(self, account: Account, percent: int, usage: Usage) -> Stored:
        """Đ7.3.c: the warning for one crossing, delivered into the account's INBOX."""
        folders = [f for f in await self.store.folder_usage(account) if f.messages][:LARGEST_FOLDERS]
        now = self.clock()
        local = now.astimezone(self.policy.tz)
        values = {
            "name": account.display_name,
            "address": account.address,
            "percent": str(percent),
            "used": format_size(usage.bytes),
            "quota": format_size(usage.quota),
            "free": format_size(max(0, usage.quota - usage.bytes)),
            "folders": "\n".join(f"- {f.name}: {format_size(f.bytes)} ({f.messages} thư)" for f in folders),
            "folders_en": "\n".join(f"- {f.name}: {format_size(f.bytes)} ({f.messages} messages)" for f in folders),
            "trash": self.policy.folders.trash,
            "junk": self.policy.folders.junk,
            "support": f"support@{self.settings.primary_domain}",
            "date": local.strftime("%d/%m/%Y"),
        }
        text, path = template_text("quota-warning.txt", self.settings.paths.templates)
        notice = render(text, values, str(path))
        message = build_message(notice, self.postmaster, account, now, self.settings.hostname)
        return await self.store.deliver(account, message, system=True)
