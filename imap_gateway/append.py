"""APPEND (RFC 3501 §6.3.11) with APPENDUID (RFC 4315), APPENDLIMIT (RFC 7889), UTF8 (RFC 6855 §4).

Thunderbird and Outlook save every sent message and draft this way, so the
limits are the submission's: APPENDLIMIT is the SMTP SIZE limit (a message
submission accepted always fits in Sent), and the Đ7.3.b attachment rule
(15 MB of attachments, decoded) is the same function SMTP applies
(`policy.attachments`). The quota is the store's: `NO [OVERQUOTA]`.

A client that waits for "+" before sending the message (a synchronising
literal) is refused before it uploads anything when the message is too
large or the mailbox is full (`precheck`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from imap_gateway import texts
from imap_gateway.commands import AUTH, LITERAL_CHECKS, State, command
from imap_gateway.parse import Parser
from imap_gateway.responses import No, Ok, line
from policy.attachments import attachment_report
from policy.errors import NotFound
from policy.limits import attachments_fit
from policy.units import format_size

if TYPE_CHECKING:
    from imap_gateway.session import Session

_BARE_LF = re.compile(rb"(?<!\r)\n")


@command("APPEND", AUTH)
async def cmd_append(s: Session, tag: str, p: Parser) -> Ok:
    p.sp()
    name = p.mailbox()
    p.sp()
    flags: list[str] = []
    if p.peek_is(b"("):
        flags = p.flag_list()
        p.sp()
    internal_date = None
    if p.peek_is(b'"'):
        internal_date = p.date_time()
        p.sp()
    if p.take(b"UTF8 ("):  # RFC 6855 §4: APPEND of a message with UTF-8 headers
        if not s.utf8:
            raise No(None, "APPEND UTF8 needs ENABLE UTF8=ACCEPT", status="BAD")
        p.literal8 = True
        message = p.literal()
        p.expect(b")")
    else:
        p.literal8 = True  # RFC 3516 literal8 is allowed for APPEND data
        message = p.literal()
    p.end()
    if len(message) > s.server.append_limit:
        raise No("TOOBIG", texts.TOOBIG)
    if b"\x00" in message:
        raise No("CANNOT", "a message cannot contain NUL bytes")
    message = _BARE_LF.sub(b"\r\n", message)
    check_attachments(s, message)
    try:
        stored = await s.mbox.append(name, message, flags=frozenset(flags), internal_date=internal_date)
    except NotFound as e:
        if type(e).__name__ == "FolderNotFound":
            raise No("TRYCREATE", f"no folder {name!r}; create it first") from None
        raise
    if s.selected is not None and s.selected.folder == name:
        s.selected.dirty = True  # RFC 3501 §6.3.11: the new message shows as EXISTS now
    return Ok("APPEND completed", f"APPENDUID {stored.uidvalidity} {stored.uid}")


def check_attachments(s: Session, message: bytes) -> None:
    """Đ7.3.b: at most 15 MB of attachments per message, counted as SMTP counts them."""
    rules = s.server.attachments
    report = attachment_report(message)
    if not attachments_fit(report.total, rules):
        raise No("LIMIT", texts.both(
            f"attachments total {format_size(report.total)}, more than the {format_size(rules.max_total)} "
            "allowed per message (Article 7.3.b)",
            f"tổng dung lượng tệp đính kèm {format_size(report.total)} vượt quá "
            f"{format_size(rules.max_total)} cho phép mỗi thư (Điều 7.3.b)",
        ))


async def precheck(s: Session, first_line: bytes, size: int) -> bytes | None:
    """Before "+": refuse APPEND outside the authenticated states, too large, or over quota."""
    tag = first_line.split(b" ", 1)[0].decode("ascii", "replace")
    if s.state not in (State.authenticated, State.selected):
        return line(tag, "BAD", "APPEND is not allowed before login")
    if size > s.server.append_limit:
        return line(tag, "NO", texts.TOOBIG, "TOOBIG")
    usage = await s.server.store.usage(s.account)
    if usage.bytes + size > usage.quota:
        return line(tag, "NO", texts.both(
            f"mailbox full: {format_size(usage.bytes)} of {format_size(usage.quota)} used (Article 7.3)",
            f"hộp thư đã đầy: đã dùng {format_size(usage.bytes)} trên {format_size(usage.quota)} (Điều 7.3)",
        ), "OVERQUOTA")
    return None


LITERAL_CHECKS["APPEND"] = precheck
