"""IMAP flags and keywords: which strings are flags, and how keywords are matched."""

from __future__ import annotations

import re
from collections.abc import Iterable

from policy.errors import ValidationFailed
from storage import maildir as md

# RFC 3501 flag-keyword = atom: no space, no control characters, none of ( ) { % * " \ ]
_KEYWORD_RE = re.compile(r"[^\x00-\x20\x7f(){%*\"\\\]]+")
_SYSTEM = {name.lower(): (name, bit) for name, bit in md.FLAG_BITS.items()}


def split_flags(strings: Iterable[str]) -> tuple[int, list[str]]:
    """Check IMAP flags: system flags -> bits, the rest must be valid keywords (atoms).
    `\\Recent` is a session flag nobody can set; it is ignored."""
    flags = 0
    keywords: list[str] = []
    for s in strings:
        if s.startswith("\\"):
            system = _SYSTEM.get(s.lower())
            if system is None:
                if s.lower() == "\\recent":
                    continue
                raise bad_flag(s)
            flags |= system[1]
        elif not _KEYWORD_RE.fullmatch(s) or len(s) > 100:
            raise bad_flag(s)
        elif keyword_index(keywords, s) is None:  # type: ignore[arg-type]
            keywords.append(s)
    return flags, keywords


def keyword_index(names: list[str | None], keyword: str) -> int | None:
    lower = keyword.lower()
    for i, n in enumerate(names):
        if n is not None and n.lower() == lower:
            return i
    return None


def bad_flag(s: str) -> ValidationFailed:
    return ValidationFailed("flags", f'"{s}" is not a flag or keyword')
