"""Serialising values into responses (RFC 3501 §4 data formats).

Everything a response carries from a message or a user (header values,
folder names, flags) goes through these functions, so no value can break
the response grammar: a string is sent quoted only when every byte is safe
in a quoted string, otherwise as a literal.
"""

from __future__ import annotations

from functools import lru_cache

from imap_gateway import utf7
from imap_gateway.parse import ASTRING_CHARS

# A quoted string may hold TEXT-CHARs except " and \ (escaped). Long values go as
# literals: some clients have small line buffers.
_QUOTED_MAX = 1024


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(data), data)


def string(value: bytes | str, utf8: bool = False) -> bytes:
    """A quoted string when safe, else a literal.

    8-bit bytes go in a literal unless UTF8=ACCEPT is enabled (RFC 6855 §3
    lets quoted strings carry UTF-8 then).
    """
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= _QUOTED_MAX and b"\r" not in data and b"\n" not in data and b"\x00" not in data and (
        utf8 or data.isascii()
    ):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def nstring(value: bytes | str | None, utf8: bool = False) -> bytes:
    return b"NIL" if value is None else string(value, utf8)


def astring(value: bytes | str, utf8: bool = False) -> bytes:
    """An atom when possible (what most servers send for plain names), else a string."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if data and data.upper() != b"NIL" and all(c in ASTRING_CHARS for c in data):
        return data
    return string(data, utf8)


def mailbox(name: str, utf8: bool = False) -> bytes:
    """A folder name as the client expects it: UTF-8 after ENABLE UTF8=ACCEPT, else modified UTF-7."""
    if utf8:
        return string(name, True)
    return string(utf7.encode(name))


@lru_cache(maxsize=4096)
def flag_list(flags: frozenset[str]) -> bytes:
    """`(\\Seen $Work)`. Cached: a folder has few distinct flag sets and the store shares them."""
    return b"(" + " ".join(sorted(flags, key=_flag_order)).encode("utf-8", "replace") + b")"


def _flag_order(flag: str) -> tuple[int, str]:
    return (0 if flag.startswith("\\") else 1, flag)
