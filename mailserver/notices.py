"""Messages the system itself puts into mailboxes: Đ7.3.c quota warnings, Đ13.3 password
warnings, Đ6.2.a inactivity, Đ5.3.b retirement and revocation, Đ8.1.c maintenance.

Whoever decides *when* (the store for quota crossings, the scheduled jobs
for the rest) calls this module for *what*: it fills an operator-editable
template (`mailserver/templates/notices/<name>.txt`, overridden by a file of
the same name in `paths.templates`), builds a MIME message with a
Vietnamese part and an English part (UTF-8, RFC 2047 subject), and delivers
it from postmaster@ with `system=True`, which the store never refuses for
quota and never counts as "receiving" (Đ6.2.a). Rendering lives here, in the
composition root, so that `storage` never depends on text meant for people.

Bounces and delay notices (RFC 3464) are built by `smtp.dsn`, which cannot
import this package: `DeliveryReports.render` is handed to SMTP and the
outbound queue as their `Renderer` and gives them the human-readable part,
from `delivery-failed.txt`, `delivery-delayed.txt` and the plain-language
explanation of each status code in `delivery-reasons.txt`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path

from policy.errors import ConfigError, ConfigProblem
from policy.model import Policy
from policy.settings import Settings
from policy.units import CalendarDuration, format_size
from smtp.dsn import Failure, Report
from storage.errors import StoreUnavailable
from storage.records import Account
from storage.store import MailStore
from storage.storetypes import Stored, Usage

BUILTIN = Path(__file__).parent / "templates" / "notices"
SENDER_NAME = "Hệ thống thư điện tử công vụ tỉnh Phú Yên"
LARGEST_FOLDERS = 3
# A broadcast (maintenance) is written once per batch and hard-linked into each mailbox of the batch;
# batches keep the number of account indexes open at once bounded.
BROADCAST_BATCH = 50

WEEKDAYS_VI = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật")
WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December")
PLACEHOLDER = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True)
class Notice:
    subject: str
    parts: list[tuple[str, str]]  # (language, text)


def template_path(name: str, override_dir: Path | None) -> Path:
    """An operator's copy (paths.templates) wins over the built-in file."""
    for folder in (override_dir, BUILTIN):
        if folder is not None and (folder / name).is_file():
            return folder / name
    raise ConfigError([ConfigProblem(str(BUILTIN / name), None, "", "notice template missing")])


def template_text(name: str, override_dir: Path | None) -> tuple[str, Path]:
    path = template_path(name, override_dir)
    return path.read_text(encoding="utf-8"), path


def builtin_templates() -> list[str]:
    return sorted(p.name for p in BUILTIN.glob("*.txt"))


def placeholders(text: str) -> set[str]:
    """The $names a template uses (outside its comment lines)."""
    body = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
    return {a or b for a, b in PLACEHOLDER.findall(body.replace("$$", ""))}


COMMON_PLACEHOLDERS = frozenset({"support", "postmaster", "account_url", "hostname", "domain", "date", "date_en",
                                 "name", "address"})


def check_templates(override_dir: Path | None) -> list[ConfigProblem]:
    """`config check`: every edited template parses and uses only placeholders the server fills in
    (a misspelt `$nmae` would otherwise reach every mailbox as it is), and every file there is named
    after a template (a misspelt file name would silently leave the built-in text in use)."""
    if override_dir is None or not override_dir.is_dir():
        return []
    problems = []
    known = set(builtin_templates())
    for path in sorted(override_dir.glob("*.txt")):
        if path.name not in known:
            problems.append(ConfigProblem(str(path), None, "",
                                          f"not a notice template (known: {', '.join(sorted(known))})"))
            continue
        text = path.read_text(encoding="utf-8")
        if path.name == REASONS:
            problems += check_reason_table(text, str(path))
            continue
        try:
            render(text, {}, str(path))
        except ConfigError as e:
            problems += e.problems
            continue
        allowed = placeholders((BUILTIN / path.name).read_text(encoding="utf-8")) | COMMON_PLACEHOLDERS
        for name in sorted(placeholders(text) - allowed):
            problems.append(ConfigProblem(str(path), None, "", f"unknown placeholder ${name} (this template has: "
                                          + " ".join(f"${n}" for n in sorted(allowed)) + ")"))
    return problems


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


def encode_words(text: str, header_name: str) -> str:
    """RFC 2047 encoded words for a header value, folded, with every space kept.

    Python 3.11's header folding (email.policy) drops the space between two adjacent encoded words
    when it folds there (CPython gh-144156): "thư điện tử" arrived as "thưđiện tử". The legacy
    encoder splits inside the encoded text instead, so nothing is lost; the value is stored raw
    (`set_raw`) so the policy does not fold it again."""
    if text.isascii():
        return text
    return Header(text, "utf-8", header_name=header_name).encode()


def build_message(notice: Notice, sender: str, to: Account | None, now: datetime, hostname: str,
                  cc: Sequence[Account] = ()) -> bytes:
    """A multipart/mixed message, one inline text/plain part per language (UTF-8, CRLF).

    `to=None` is a broadcast: `To: undisclosed-recipients:;` (RFC 5322 §3.4 group syntax), so one
    file can be linked into thousands of mailboxes without listing them."""
    msg = EmailMessage()
    msg.make_mixed()
    for lang, text in notice.parts:
        part = EmailMessage()
        part.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
        del part["MIME-Version"]
        part["Content-Language"] = lang
        part["Content-Disposition"] = "inline"
        msg.attach(part)
    msg.set_raw("From", formataddr((SENDER_NAME, sender), charset="utf-8"))
    msg.set_raw("To", formataddr((to.display_name, to.address), charset="utf-8") if to is not None
                else "undisclosed-recipients:;")
    if cc:
        msg.set_raw("Cc", ",\n ".join(formataddr((a.display_name, a.address), charset="utf-8") for a in cc))
    msg.set_raw("Subject", encode_words(notice.subject, "Subject"))
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=hostname)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: nobody should auto-reply to it
    msg["MIME-Version"] = "1.0"
    return msg.as_bytes(policy=SMTP)


# ---------------------------------------------------------------- dates in the two languages


def day_vi(d: date) -> str:
    return f"{d:%d/%m/%Y}"


def day_en(d: date) -> str:
    return f"{d.day} {MONTHS_EN[d.month - 1]} {d.year}"


def moment_vi(m: datetime) -> str:
    """"22:00 Thứ Bảy, ngày 12/12/2026" (the caller gives local time)."""
    return f"{m:%H:%M} {WEEKDAYS_VI[m.weekday()]}, ngày {m:%d/%m/%Y}"


def moment_en(m: datetime) -> str:
    return f"{WEEKDAYS_EN[m.weekday()]} {day_en(m.date())}, {m:%H:%M}"


def days_en(n: int) -> str:
    return f"{n} day" + ("" if n == 1 else "s")


def duration_vi(d: CalendarDuration) -> str:
    """"6 tháng", "1 năm", "30 ngày", "3 giờ 30 phút" (the regulation's own words for periods)."""
    parts = []
    years, months = divmod(d.months, 12)
    if years and not months:
        parts.append(f"{years} năm")
    elif d.months:
        parts.append(f"{d.months} tháng")
    s = d.seconds
    for unit, size in (("ngày", 86400), ("giờ", 3600), ("phút", 60), ("giây", 1)):
        n, s = divmod(s, size)
        if n:
            parts.append(f"{n} {unit}")
    return " ".join(parts) or "0 giây"


class Notices:
    def set_policy(self, policy: Policy) -> None:
        """A reloaded policy (SIGHUP): folder names and dates of the next notice follow it."""
        self.policy = policy

    def __init__(self, settings: Settings, policy: Policy, store: MailStore, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.policy = policy
        self.store = store
        self.clock = clock

    @property
    def postmaster(self) -> str:
        return f"postmaster@{self.settings.primary_domain}"

    def common_values(self) -> dict[str, str]:
        """Placeholders every template may use."""
        local = self.clock().astimezone(self.policy.tz)
        return {
            "support": f"support@{self.settings.primary_domain}",
            "postmaster": self.postmaster,
            "account_url": self.settings.account_url,
            "hostname": self.settings.hostname,
            "domain": self.settings.primary_domain,
            "date": day_vi(local.date()),
            "date_en": day_en(local.date()),
        }

    def notice(self, template: str, values: dict[str, str]) -> Notice:
        text, path = template_text(template, self.settings.paths.templates)
        return render(text, {**self.common_values(), **values}, str(path))

    async def send(self, template: str, to: Account, values: dict[str, str], cc: Sequence[Account] = ()) -> Stored:
        """One notice To: `to` (its name and address are $name and $address), with copies (Cc:) put into
        the `cc` mailboxes (the unit mailbox of Đ6.2.a and Đ5.3.b notices). Returns `to`'s copy."""
        cc = [a for a in {a.id: a for a in cc}.values() if a.id != to.id]
        notice = self.notice(template, {"name": to.display_name, "address": to.address, **values})
        message = build_message(notice, self.postmaster, to, self.clock(), self.settings.hostname, cc)
        results = await self.store.deliver_many([to, *cc], message, system=True)
        mine = results.get(to.id)
        if not isinstance(mine, Stored):
            raise mine if isinstance(mine, Exception) else StoreUnavailable("store", "notice not stored")
        return mine

    async def broadcast(self, template: str, accounts: Sequence[Account], values: dict[str, str]) -> int:
        """One notice into every mailbox of `accounts` (Đ8.1.c); returns how many got it."""
        notice = self.notice(template, values)
        message = build_message(notice, self.postmaster, None, self.clock(), self.settings.hostname)
        delivered = 0
        for i in range(0, len(accounts), BROADCAST_BATCH):
            results = await self.store.deliver_many(accounts[i : i + BROADCAST_BATCH], message, system=True)
            delivered += sum(1 for r in results.values() if isinstance(r, Stored))
        return delivered

    async def quota_warning(self, account: Account, percent: int, usage: Usage) -> Stored:
        """Đ7.3.c: the warning for one crossing, delivered into the account's INBOX."""
        folders = [f for f in await self.store.folder_usage(account) if f.messages][:LARGEST_FOLDERS]
        values = {
            "percent": str(percent),
            "used": format_size(usage.bytes),
            "quota": format_size(usage.quota),
            "free": format_size(max(0, usage.quota - usage.bytes)),
            "folders": "\n".join(f"- {f.name}: {format_size(f.bytes)} ({f.messages} thư)" for f in folders),
            "folders_en": "\n".join(f"- {f.name}: {format_size(f.bytes)} ({f.messages} messages)" for f in folders),
            "trash": self.policy.folders.trash,
            "junk": self.policy.folders.junk,
        }
        return await self.send("quota-warning.txt", account, values)


# ------------------------------------------------------------------ bounces and delay notices (RFC 3464)


REASONS = "delivery-reasons.txt"
_STATUS = re.compile(r"^[245](\.\d{1,3}){0,2}$")


def check_reason_table(text: str, source: str) -> list[ConfigProblem]:
    """`config check` of an edited `delivery-reasons.txt`: every line is "status | Vietnamese | English"."""
    problems = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 3 or not _STATUS.match(parts[0]) or not parts[1] or not parts[2]:
            problems.append(ConfigProblem(source, n, "", 'expected "status | Vietnamese | English", '
                                                         'e.g. "5.1.1 | Địa chỉ ... | The address ..."'))
    return problems


def reason_table(text: str) -> dict[str, tuple[str, str]]:
    """`delivery-reasons.txt`: "status | Vietnamese | English" lines."""
    table = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[0]:
            table[parts[0]] = (parts[1], parts[2])
    return table


def explain(status: str, table: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """The most specific explanation: 5.1.1, else 5.1, else 5."""
    pieces = status.split(".")
    for n in range(len(pieces), 0, -1):
        found = table.get(".".join(pieces[:n]))
        if found:
            return found
    return ("Không gửi được thư.", "The message could not be delivered.")


class DeliveryReports:
    """The `smtp.dsn.Renderer` of the server: editable templates, read at each use (bounces are rare,
    and an edited template takes effect without a restart)."""

    def __init__(self, settings: Settings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy

    def set_policy(self, policy: Policy) -> None:
        """A reloaded policy (SIGHUP): the delay a notice quotes follows it."""
        self.policy = policy

    def _blocks(self, failures: list[Failure], table: dict[str, tuple[str, str]]) -> tuple[str, str]:
        vi, en = [], []
        for f in failures:
            why_vi, why_en = explain(f.status, table)
            if f.remote_answered:
                server = f" ({f.remote_mta})" if f.remote_mta else ""
                said_vi = f"  Máy chủ của người nhận trả lời{server}: {f.diagnostic}"
                said_en = f"  Their server answered{server}: {f.diagnostic}"
            else:
                said_vi = f"  Chi tiết: {f.diagnostic}"
                said_en = f"  Details: {f.diagnostic}"
            vi.append(f"- {f.recipient}\n  Lý do: {why_vi}\n{said_vi}")
            en.append(f"- {f.recipient}\n  Reason: {why_en}\n{said_en}")
        return "\n\n".join(vi), "\n\n".join(en)

    def render(self, report: Report) -> tuple[str, str]:
        folder = self.settings.paths.templates
        reasons, _ = template_text(REASONS, folder)
        table = reason_table(reasons)
        name = "delivery-failed.txt" if report.action == "failed" else "delivery-delayed.txt"
        text, path = template_text(name, folder)
        tz = self.policy.tz
        blocks_vi, blocks_en = self._blocks(report.failures, table)
        waited = self.policy.outbound.delay_notice_after
        until = report.retry_until.astimezone(tz) if report.retry_until else None
        values = {
            "subject": report.subject or "(không có tiêu đề / no subject)",
            "date": moment_vi(report.arrival.astimezone(tz)),
            "date_en": moment_en(report.arrival.astimezone(tz)),
            "recipients": blocks_vi,
            "recipients_en": blocks_en,
            "others": "\nNhững người nhận khác đã nhận được thư.\n" if report.others_delivered else "",
            "others_en": "\nThe other recipients did get it.\n" if report.others_delivered else "",
            "waited": duration_vi(waited),
            "waited_en": str(waited),
            "retry_until": moment_vi(until) if until else "",
            "retry_until_en": moment_en(until) if until else "",
            "postmaster": f"postmaster@{self.settings.primary_domain}",
            "queue_id": report.queue_id,
        }
        notice = render(text, values, str(path))
        body = "\n\n----------------------------------------\n\n".join(part.strip() for _, part in notice.parts)
        return notice.subject, body.replace("\n", "\r\n") + "\r\n"
