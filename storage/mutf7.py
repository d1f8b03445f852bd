"""Modified UTF-7 (RFC 3501 §5.1.3), the encoding of mailbox names, for IMAP and for the disk.

IMAP4rev1 clients (Outlook, Thunderbird without UTF8=ACCEPT) name folders in
a 7-bit encoding: printable ASCII stands for itself, `&` is written `&-`, and
anything else is UTF-16BE in base64 with `,` instead of `/`, between `&` and
`-`. The store keeps names as Unicode, so every name crosses this module on
the way in and out; "Công văn đến" is `C&APQ-ng v&AQM-n &AREevw-n`. Maildir++
folder directories use the same encoding on disk, because that is what
Dovecot and Courier read and write (`storage/maildir.py`). It lives in
`storage` so that both the store and `imap_gateway` (which re-exports it)
use one implementation.

Decoding is strict, because two spellings of one name would let a client
create folders that look identical but are different: an encoded run must
not hold printable ASCII, must not be empty or follow another run directly,
and must end on a whole UTF-16 unit with zero padding bits.
"""

from __future__ import annotations

import binascii

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
_B64_SET = frozenset(_B64)


class Utf7Error(ValueError):
    """A name that is not canonical modified UTF-7."""


def _printable(ch: str) -> bool:
    return "\x20" <= ch <= "\x7e"


def _encode_run(run: list[str]) -> str:
    # surrogatepass: a lone surrogate (never a valid stored name) still encodes
    # instead of crashing a LIST; decode() rejects it on the way back.
    raw = "".join(run).encode("utf-16-be", "surrogatepass")
    b64 = binascii.b2a_base64(raw, newline=False).decode("ascii").rstrip("=")
    return "&" + b64.replace("/", ",") + "-"


def encode(name: str) -> str:
    """Unicode folder name -> modified UTF-7 (never fails)."""
    if name.isascii() and "&" not in name and name.isprintable():
        return name
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if _printable(ch):
            if run:
                out.append(_encode_run(run))
                run = []
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append(_encode_run(run))
    return "".join(out)


def decode(text: str) -> str:
    """Modified UTF-7 -> Unicode; raises Utf7Error for anything non-canonical."""
    if "&" not in text:
        for ch in text:
            if not _printable(ch):
                raise Utf7Error(f"character {ch!r} must be encoded")
        return text
    out: list[str] = []
    i, n = 0, len(text)
    last_run_end = -1
    while i < n:
        ch = text[i]
        if not _printable(ch):
            raise Utf7Error(f"character {ch!r} must be encoded")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise Utf7Error("unterminated &-run")
        body = text[i + 1 : end]
        if not body:
            out.append("&")
            i = end + 1
            continue
        if last_run_end == i:
            raise Utf7Error("two encoded runs in a row must be one run")
        if any(c not in _B64_SET for c in body):
            raise Utf7Error("invalid character in encoded run")
        if len(body) % 4 == 1:
            raise Utf7Error("truncated encoded run")
        padded = body.replace(",", "/") + "=" * (-len(body) % 4)
        raw = binascii.a2b_base64(padded)
        if len(raw) % 2:
            raise Utf7Error("encoded run does not end on a UTF-16 unit")
        # Non-zero leftover bits mean a second spelling of the same name.
        if binascii.b2a_base64(raw, newline=False).decode("ascii").rstrip("=") != body.replace(",", "/"):
            raise Utf7Error("non-zero padding bits in encoded run")
        try:
            decoded = raw.decode("utf-16-be")
        except UnicodeDecodeError as e:
            raise Utf7Error("invalid UTF-16 in encoded run") from e
        for c in decoded:
            if _printable(c):
                raise Utf7Error(f"printable character {c!r} must not be encoded")
        out.append(decoded)
        i = end + 1
        last_run_end = i
    return "".join(out)
