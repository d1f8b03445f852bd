"""Messages and accounts for the mail store tests."""

from __future__ import annotations

import hashlib

from storage.directory import PersonRequest
from storage.records import Account

PW = "Matkhau@123"


def message(subject: str = "Báo cáo tháng", body: str = "Xin chào đồng chí.", *, size: int = 0,
            token: str = "", sender: str = "nguoigui@example.vn") -> bytes:
    """A UTF-8 message (8-bit headers, as SMTPUTF8 delivers them), padded to `size` bytes if given."""
    head = (f"From: Người Gửi <{sender}>\r\nTo: nguyenvana@phuyen.gov.vn\r\nSubject: {subject}\r\n"
            f"Message-ID: <{token or hashlib.sha1(body.encode()).hexdigest()}@example.vn>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n").encode()
    text = f"{body}\r\n{token}\r\n".encode()
    data = head + b"\r\n" + text
    if size > len(data):
        pad = size - len(data)
        line = b"x" * 76 + b"\r\n"
        data += (line * (pad // len(line) + 1))[:pad]
    return data


async def person(app, name: str = "Nguyễn Văn A", **kw) -> Account:  # type: ignore[no-untyped-def]
    created = await app.directory.add_person(PersonRequest(name=name, unit=None, password=PW, **kw), actor="test")
    return created.account
