"""Trace and result header fields added at delivery (RFC 5321 §4.4, RFC 8601).

Every delivered message gets, on top: `Return-Path:` (the envelope sender,
as the final delivery MTA must add it), `Received:` (who handed it to us,
when, how), and on the MX `Authentication-Results:`. Header fields that
could pretend to be ours are removed from incoming mail first: an existing
`Return-Path:` and any `Authentication-Results:` carrying our authserv-id
(RFC 8601 §5), so a sender cannot forge a "pass".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from email.header import decode_header, make_header
from email.utils import format_datetime

_FIELD_START = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.M)


def split_message(message: bytes) -> tuple[bytes, bytes]:
    """(header block including its final line break, rest from the empty line on)."""
    if message.startswith(b"\r\n"):
        return b"", message
    i = message.find(b"\r\n\r\n")
    if i < 0:
        return message, b""
    return message[: i + 2], message[i + 2 :]


def fields(header_block: bytes) -> list[tuple[bytes, bytes]]:
    """[(lower-case name, raw field including folded lines)] in order."""
    out: list[tuple[bytes, bytes]] = []
    lines = header_block.split(b"\r\n")
    for line in lines:
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            name, raw = out[-1]
            out[-1] = (name, raw + b"\r\n" + line)
            continue
        m = _FIELD_START.match(line)
        out.append(((m.group(1).lower() if m else b""), line))
    return out


def header_value(header_block: bytes, name: str) -> str | None:
    """The first field `name`, unfolded, as text (for Message-ID, From ...)."""
    want = name.lower().encode()
    for n, raw in fields(header_block):
        if n == want:
            value = raw.split(b":", 1)[1] if b":" in raw else b""
            return re.sub(rb"\r\n[ \t]+", b" ", value).strip().decode("utf-8", "replace")
    return None


def drop_fields(message: bytes, unwanted: Callable[[bytes, bytes], bool]) -> bytes:
    """The message without the header fields for which `unwanted(lower-case name, raw field)` is true."""
    head, rest = split_message(message)
    keep = []
    changed = False
    for name, raw in fields(head):
        if unwanted(name, raw):
            changed = True
            continue
        keep.append(raw)
    if not changed:
        return message
    return b"\r\n".join(keep) + (b"\r\n" if keep else b"") + rest


def strip_forged(message: bytes, authserv_id: str) -> bytes:
    """Drop Return-Path and Authentication-Results claiming `authserv_id` (RFC 8601 §5)."""
    ident = authserv_id.lower().encode()

    def forged(name: bytes, raw: bytes) -> bool:
        if name == b"return-path":
            return True
        if name == b"authentication-results":
            value = raw.split(b":", 1)[1].strip().lower()
            return value.split(b";", 1)[0].strip().split(b" ")[0] == ident
        return False

    return drop_fields(message, forged)


def without_return_path(message: bytes) -> bytes:
    """The copy that leaves for another server: Return-Path is written by the final delivery (RFC 5321 §4.4),
    never by a relay; it is not a DKIM-signed field, so the signature stays valid."""
    return drop_fields(message, lambda name, _raw: name == b"return-path")


def decoded_subject(head: bytes) -> str | None:
    """The Subject as a person reads it (RFC 2047 words decoded), for queue listings and bounces."""
    raw = header_value(head, "Subject")
    if raw is None:
        return None
    try:
        return str(make_header(decode_header(raw)))
    except (ValueError, LookupError):
        return raw


def received(*, helo: str, client_ip: str, hostname: str, protocol: str, queue_id: str,
             tls: str | None, recipient: str | None, when: datetime) -> bytes:
    """RFC 5321 §4.4 time stamp line; `protocol` from RFC 3848 (ESMTP, ESMTPS, ESMTPSA ...)."""
    helo_text = re.sub(r"[^\x21-\x7e]", "?", helo)[:255] or "unknown"
    lines = [f"Received: from {helo_text} ([{client_ip}])", f"\tby {hostname} with {protocol} id {queue_id}"]
    if tls:
        lines.append(f"\t(using {tls})")
    tail = f"\tfor <{recipient}>; " if recipient else "\t; "
    lines.append(tail.replace("\t; ", "\t") + format_datetime(when))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


def return_path(sender: str) -> bytes:
    return f"Return-Path: <{sender}>\r\n".encode("utf-8", "surrogateescape")


def authentication_results(value: str) -> bytes:
    return f"Authentication-Results: {value}\r\n".encode()


def protocol_name(extended: bool, tls: bool, authenticated: bool, utf8: bool) -> str:
    """RFC 3848 / RFC 6531 §3.7.4 `with` keyword."""
    base = ("UTF8SMTP" if utf8 else "ESMTP") if extended else "SMTP"
    if not extended:
        return base
    return base + ("S" if tls else "") + ("A" if authenticated else "")
