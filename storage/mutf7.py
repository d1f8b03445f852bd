"""Modified UTF-7 (RFC 3501 §5.1.3), the encoding of mailbox names.

Maildir++ folder directories are named in modified UTF-7 on disk because
that is what Dovecot and Courier read and write by default: "Công văn đến"
is stored as `.C&APQ-ng v&AQM-n &ARE-&Hr8-n`. IMAP speaks the same encoding
on the wire to clients without UTF8=ACCEPT, so `imap_gateway` can use this
module too.
"""

from __future__ import annotations

import base64


def _b64(chunk: str) -> str:
    raw = chunk.encode("utf-16-be")
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")


def encode(name: str) -> str:
    """Unicode → modified UTF-7. Printable ASCII passes through; `&` becomes `&-`."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            out.append("&" + _b64("".join(pending)) + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode(text: str) -> str:
    """Modified UTF-7 → Unicode. Raises ValueError on malformed input."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "&":
            if not 0x20 <= ord(ch) <= 0x7E:
                raise ValueError(f"{text!r} is not modified UTF-7")
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError(f"{text!r}: unterminated &-sequence")
        chunk = text[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            try:
                out.append(base64.b64decode(b64, validate=True).decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError) as e:
                raise ValueError(f"{text!r}: bad &-sequence") from e
        i = end + 1
    return "".join(out)
