"""Delivery status notifications (RFC 3464, RFC 3462 multipart/report).

SMTP has one reply to DATA for all recipients; when, after DATA, the
message does not fit some recipients' quotas (Đ7.3.b), the others get it
and the sender gets this report naming each failed recipient with its
status code and the reason, in Vietnamese and English. Nothing is silently
dropped. The report carries the original headers only (RFC 3462
text/rfc822-headers), not the whole message.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime


@dataclass(frozen=True)
class Failure:
    recipient: str
    status: str  # RFC 3463, e.g. "5.2.2"
    diagnostic: str  # "smtp; 552 5.2.2 ..."


def build_dsn(*, reporting_mta: str, sender: str, failures: list[Failure], original_headers: bytes,
              queue_id: str, arrival: datetime, now: datetime, from_address: str) -> bytes:
    boundary = "=_dsn_" + secrets.token_hex(12)
    permanent = all(f.status.startswith("5") for f in failures)
    subject = ("Undelivered Mail Returned to Sender / Thư không gửi được" if permanent
               else "Delayed Mail / Thư chưa gửi được")
    listing_en = "\r\n".join(f"  <{f.recipient}>: {f.diagnostic}" for f in failures)
    text = (
        "Thư của bạn đã được chuyển đến các người nhận khác, nhưng KHÔNG thể chuyển đến:\r\n"
        f"{listing_en}\r\n\r\n"
        "Your message was delivered to its other recipients, but NOT to:\r\n"
        f"{listing_en}\r\n\r\n"
        "Lý do thường gặp: hộp thư của người nhận đã đầy (Điều 7.3.b).\r\n"
        "The usual reason: the recipient's mailbox is full (Article 7.3.b).\r\n"
    )
    per_recipient = "\r\n".join(
        f"Final-Recipient: rfc822; {f.recipient}\r\n"
        f"Action: {'failed' if f.status.startswith('5') else 'delayed'}\r\n"
        f"Status: {f.status}\r\n"
        f"Diagnostic-Code: {f.diagnostic}\r\n"
        for f in failures
    )
    status_part = (
        f"Reporting-MTA: dns; {reporting_mta}\r\n"
        f"X-Queue-ID: {queue_id}\r\n"
        f"Arrival-Date: {format_datetime(arrival)}\r\n"
        "\r\n"
        f"{per_recipient}"
    )
    msg = (
        f"From: Mail Delivery System <{from_address}>\r\n"
        f"To: <{sender}>\r\n"
        f"Subject: {_encode_subject(subject)}\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Message-ID: <{queue_id}.dsn.{secrets.token_hex(4)}@{reporting_mta}>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        f"{text}\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        f"{status_part}\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
    ).encode()
    return msg + original_headers.rstrip(b"\r\n") + f"\r\n\r\n--{boundary}--\r\n".encode()


def _encode_subject(subject: str) -> str:
    from email.header import Header

    return Header(subject, "utf-8").encode()
