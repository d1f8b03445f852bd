"""QUOTA (RFC 9208): GETQUOTAROOT, GETQUOTA, SETQUOTA.

Đ7.3: each mailbox has one quota (2 GB by default) covering all its
folders, so there is one quota root, "", and one resource, STORAGE, in
units of 1024 octets (RFC 9208 §5.1). Usage is the store's exact byte
count, rounded up so a non-empty mailbox never shows 0. Thunderbird shows
it under the folder list as "x MB of 2 GB". Quotas are set by the operators
(`mailserver account set-quota`), so SETQUOTA is refused and QUOTASET is not
advertised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imap_gateway import wire
from imap_gateway.commands import AUTH, command
from imap_gateway.parse import Parser
from imap_gateway.responses import No

if TYPE_CHECKING:
    from imap_gateway.session import Session

ROOT = ""


def kib(n: int) -> int:
    return (n + 1023) // 1024


async def quota_line(s: Session) -> str:
    usage = await s.server.store.usage(s.account)
    return f'QUOTA "" (STORAGE {kib(usage.bytes)} {usage.quota // 1024})'


@command("GETQUOTAROOT", AUTH)
async def cmd_getquotaroot(s: Session, tag: str, p: Parser) -> str:
    name = p.sole_mailbox()
    await s.mbox.status(name)  # NO [NONEXISTENT] for a folder that does not exist
    s.send(b"* QUOTAROOT " + wire.mailbox(name, s.utf8) + b' ""\r\n')
    s.untagged(await quota_line(s))
    return "GETQUOTAROOT completed"


@command("GETQUOTA", AUTH)
async def cmd_getquota(s: Session, tag: str, p: Parser) -> str:
    p.sp()
    root = p.astring("a quota root").decode("utf-8", "replace")
    p.end()
    if root != ROOT:
        raise No("NONEXISTENT", f'no quota root "{root}"; the mailbox quota root is ""')
    s.untagged(await quota_line(s))
    return "GETQUOTA completed"


@command("SETQUOTA", AUTH)
async def cmd_setquota(s: Session, tag: str, p: Parser) -> str:
    raise No("NOPERM", "quotas are set by the operators (Article 7.3.a) / hạn mức do quản trị viên đặt (Điều 7.3.a)")
