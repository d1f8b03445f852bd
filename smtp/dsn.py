"""Delivery status notifications (RFC 3464, RFC 3462 multipart/report): the one DSN builder.

Two places report to a sender that some recipients did not get a message:
SMTP after DATA, when a local recipient's quota turned out too small
(Đ7.3.b; the others got it), and the outbound queue, when a remote server
refused a recipient (5xx), when a message could not be delivered for the
policy's `outbound.give_up_after` (5 days), or, once, when it is still
waiting after `outbound.delay_notice_after` (4 hours).

The report has three parts: the text a civil servant reads (Vietnamese and
English, from the editable templates of `mailserver/templates/notices/`,
rendered by the composition root and handed in as `text`, because smtp/
cannot import mailserver/), the machine-readable `message/delivery-status`
with one block per recipient (the server's own answer in Diagnostic-Code),
and the original header fields only (`text/rfc822-headers`), never the
body: a bounce never carries a virus or spam back out (Đ13.6–7).

It is sent with the null reverse-path `<>` (RFC 5321 §4.5.5), so a bounce
is never bounced.
"""

from __future__ import annotations

import quopri
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime


@dataclass(frozen=True)
class Failure:
    recipient: str
    status: str  # RFC 3463, e.g. "5.2.2"
    diagnostic: str  # the reply, e.g. "550 5.1.1 No such user" (ours when no server answered)
    remote_mta: str | None = None  # "mx.example.org [192.0.2.1]:25"
    last_attempt: datetime | None = None
    remote_answered: bool = True  # False: the diagnostic is our own (DNS, no connection, ...)


@dataclass(frozen=True)
class Report:
    """What happened to one message, for the sender."""

    action: str  # failed | delayed
    sender: str
    failures: list[Failure]
    queue_id: str
    arrival: datetime
    subject: str | None = None  # the original's Subject, decoded
    others_delivered: bool = False  # some other recipients did get it
    retry_until: datetime | None = None  # delayed: when the queue gives up


# (subject, plain text with the Vietnamese and English parts)
Renderer = Callable[[Report], tuple[str, str]]


def build_dsn(report: Report, *, text: tuple[str, str], reporting_mta: str, original_headers: bytes,
              now: datetime, from_address: str) -> bytes:
    boundary = "=_dsn_" + secrets.token_hex(12)
    subject, body = text
    per_recipient = "\r\n".join(_recipient_block(report, f) for f in report.failures)
    status_part = (
        f"Reporting-MTA: dns; {reporting_mta}\r\n"
        f"X-Queue-ID: {report.queue_id}\r\n"
        f"Arrival-Date: {format_datetime(report.arrival)}\r\n"
        "\r\n"
        f"{per_recipient}"
    )
    human = quopri.encodestring(body.replace("\r\n", "\n").encode("utf-8")).replace(b"\n", b"\r\n")
    head = (
        f"From: Mail Delivery System <{from_address}>\r\n"
        f"To: <{report.sender}>\r\n"
        f"Subject: {Header(subject, 'utf-8').encode()}\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Message-ID: <{report.queue_id}.dsn.{secrets.token_hex(4)}@{reporting_mta}>\r\n"
        "Auto-Submitted: auto-replied\r\n"  # RFC 3834: no vacation replies to a bounce
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Language: vi, en\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
    ).encode()
    middle = (
        f"\r\n--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        f"{status_part}\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
    ).encode()
    return head + human.rstrip(b"\r\n") + middle + original_headers.rstrip(b"\r\n") + \
        f"\r\n\r\n--{boundary}--\r\n".encode()


def _recipient_block(report: Report, f: Failure) -> str:
    """RFC 3464 §2.3, one line each: the diagnostic is folded text from a remote server, cleaned."""
    lines = [f"Final-Recipient: rfc822; {f.recipient}", f"Action: {report.action}", f"Status: {f.status}"]
    if f.remote_mta:
        name = f.remote_mta.split(" ")[0]  # "mx.example.org [192.0.2.1]:25" or "[192.0.2.1]:2600"
        lines.append(f"Remote-MTA: dns; {name[1:name.index(']')] if name.startswith('[') else name}")
    kind = "smtp" if f.remote_answered else "x-local"
    lines.append(f"Diagnostic-Code: {kind}; {' '.join(f.diagnostic.split())}")
    if f.last_attempt is not None:
        lines.append(f"Last-Attempt-Date: {format_datetime(f.last_attempt)}")
    if report.action == "delayed" and report.retry_until is not None:
        lines.append(f"Will-Retry-Until: {format_datetime(report.retry_until)}")
    return "\r\n".join(lines) + "\r\n"
