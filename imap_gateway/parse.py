"""The command grammar (RFC 3501 §9 and the extensions' ABNF) over one assembled command.

The connection (`conn.py`) first assembles a whole command, literals
included, as the client sent it: `a LOGIN {4}\\r\\nuser pass`. This module
then parses those bytes synchronously with a cursor, so every command
handler reads its arguments with the same small primitives (`sp`, `astring`,
`seqset`, ...) in the order the ABNF gives them, and every mistake is a
`ParseError` carrying the reason the client sees after `BAD`.

Parsing never trusts a length or a count from the client beyond what the
bytes hold: a literal longer than the command is an error, numbers are
bounded to their ABNF ranges, nesting of search keys is limited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone

from imap_gateway import utf7

MAX_NUMBER = 2**32 - 1  # number: unsigned 32-bit (RFC 3501 §9)
MAX_MODSEQ = 2**63 - 1  # mod-sequence-value: 63-bit (RFC 7162 §7)
MAX_NESTING = 32  # search-key parentheses / NOT / OR depth

# RFC 3501 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
_ATOM_EXCLUDED = frozenset(b'(){ %*"\\]') | frozenset(range(0x20)) | {0x7F}
ATOM_CHARS = frozenset(range(0x01, 0x80)) - _ATOM_EXCLUDED
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
LIST_CHARS = ATOM_CHARS | {ord("%"), ord("*"), ord("]")}
TAG_CHARS = ASTRING_CHARS - {ord("+")}

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
SYSTEM_FLAGS = {f.lower(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")}


class ParseError(Exception):
    """A syntax error; the text is the reason sent after `BAD`."""


# ---------------------------------------------------------------- sequence sets


@dataclass(frozen=True)
class SeqSet:
    """A sequence-set (RFC 3501 §9); `*` is stored as 0 (numbers are non-zero)."""

    ranges: tuple[tuple[int, int], ...]
    saved: bool = False  # "$" (RFC 5182 SEARCHRES) is not offered; kept so the parser can say so

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Ranges with `*` replaced by `largest`, each ordered low..high (`4:2` means 2:4)."""
        out = []
        for a, b in self.ranges:
            a = largest if a == 0 else a
            b = largest if b == 0 else b
            out.append((a, b) if a <= b else (b, a))
        return out

    def contains(self, n: int, largest: int) -> bool:
        return any(a <= n <= b for a, b in self.resolve(largest))

    def __str__(self) -> str:
        def one(x: int) -> str:
            return "*" if x == 0 else str(x)

        return ",".join(one(a) if a == b else f"{one(a)}:{one(b)}" for a, b in self.ranges)


def seqset_of(numbers: list[int]) -> str:
    """Compact "1:3,7" form of sorted numbers (COPYUID, ESEARCH ALL, VANISHED)."""
    parts: list[str] = []
    if not numbers:
        return ""
    start = prev = numbers[0]
    for n in numbers[1:]:
        if n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = n
    parts.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(parts)


# ---------------------------------------------------------------- FETCH attributes


@dataclass(frozen=True)
class Section:
    """`[1.2.HEADER.FIELDS (FROM TO)]`: a part path and what of it."""

    part: tuple[int, ...] = ()
    text: str | None = None  # HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[str, ...] = ()

    def spec(self) -> str:
        """The section as echoed in the FETCH response (field names upper-cased as received)."""
        out = ".".join(str(p) for p in self.part)
        if self.text:
            out = f"{out}.{self.text}" if out else self.text
            if self.fields:
                out += " (" + " ".join(self.fields) + ")"
        return out


@dataclass(frozen=True)
class FetchAtt:
    name: str  # ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT BODY BODYSTRUCTURE UID MODSEQ
    # BINARY BINARY.SIZE; BODY with a section is name "BODY" and section set
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None  # (origin, length)

    def response_name(self) -> str:
        if self.section is None:
            return self.name
        out = f"{self.name}[{self.section.spec()}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"
        return out

    @property
    def sets_seen(self) -> bool:
        """RFC 3501 §6.4.5: BODY[...] (not .PEEK), RFC822 and RFC822.TEXT set \\Seen."""
        if self.name in ("RFC822", "RFC822.TEXT"):
            return True
        return self.name in ("BODY", "BINARY") and self.section is not None and not self.peek


MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
SIMPLE_ATTS = frozenset(
    ("ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE", "RFC822.TEXT",
     "BODY", "BODYSTRUCTURE", "UID", "MODSEQ")
)


# ---------------------------------------------------------------- SEARCH keys


@dataclass(frozen=True)
class SearchKey:
    """One node of a search program: `op` is the RFC 3501 key name, or AND/OR/NOT."""

    op: str
    arg: object = None
    children: tuple[SearchKey, ...] = ()


# key -> argument kind
SEARCH_KEYS: dict[str, str] = {
    "ALL": "", "ANSWERED": "", "DELETED": "", "DRAFT": "", "FLAGGED": "", "NEW": "", "OLD": "",
    "RECENT": "", "SEEN": "", "UNANSWERED": "", "UNDELETED": "", "UNDRAFT": "", "UNFLAGGED": "",
    "UNSEEN": "",
    "BCC": "string", "BODY": "string", "CC": "string", "FROM": "string", "SUBJECT": "string",
    "TEXT": "string", "TO": "string",
    "BEFORE": "date", "ON": "date", "SINCE": "date", "SENTBEFORE": "date", "SENTON": "date", "SENTSINCE": "date",
    "KEYWORD": "flag", "UNKEYWORD": "flag",
    "LARGER": "number", "SMALLER": "number",
    "UID": "seqset",
    "HEADER": "header",
    "NOT": "key", "OR": "key2",
    "MODSEQ": "modseq",
    # RFC 5032 WITHIN: OLDER/YOUNGER n seconds. Cheap to offer, and Thunderbird uses them for filters.
    "OLDER": "number", "YOUNGER": "number",
}


# ---------------------------------------------------------------- the parser


@dataclass
class Parser:
    data: bytes
    pos: int = 0
    utf8: bool = False  # UTF8=ACCEPT enabled: mailbox names are UTF-8, not modified UTF-7
    literal8: bool = False  # "~{n}" allowed here (APPEND with UTF8, BINARY)
    depth: int = field(default=0, repr=False)

    # ------------------------------------------------------------ basics

    def error(self, what: str) -> ParseError:
        near = self.data[self.pos : self.pos + 20].decode("ascii", "replace")
        shown = near.replace("\r", "\\r").replace("\n", "\\n")
        return ParseError(f"{what} (at character {self.pos + 1}{': ' + repr(shown) if shown else ''})")

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def end(self) -> None:
        if not self.at_end():
            raise self.error("unexpected text after the command")

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def peek_is(self, ch: bytes) -> bool:
        return self.data.startswith(ch, self.pos)

    def take(self, word: bytes) -> bool:
        """Consume `word` case-insensitively if it is next."""
        end = self.pos + len(word)
        if self.data[self.pos : end].upper() == word.upper():
            self.pos = end
            return True
        return False

    def expect(self, word: bytes, what: str | None = None) -> None:
        if not self.take(word):
            raise self.error(f"expected {what or repr(word.decode())}")

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise self.error("expected a space")
        self.pos += 1

    def take_sp(self) -> bool:
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    def _run(self, allowed: frozenset[int]) -> bytes:
        start = self.pos
        data, n = self.data, len(self.data)
        i = start
        while i < n and data[i] in allowed:
            i += 1
        self.pos = i
        return data[start:i]

    # ------------------------------------------------------------ atoms and strings

    def tag(self) -> str:
        t = self._run(TAG_CHARS)
        if not t:
            raise self.error("expected a tag")
        return t.decode("ascii")

    def atom(self, what: str = "an atom") -> str:
        a = self._run(ATOM_CHARS)
        if not a:
            raise self.error(f"expected {what}")
        return a.decode("ascii")

    def word(self, what: str = "a keyword") -> str:
        """An atom upper-cased: command names, fetch/search/status keywords."""
        return self.atom(what).upper()

    def number(self, what: str = "a number", limit: int = MAX_NUMBER) -> int:
        start = self.pos
        digits = self._run(frozenset(b"0123456789"))
        if not digits:
            raise self.error(f"expected {what}")
        if len(digits) > 20 or int(digits) > limit:
            self.pos = start
            raise self.error(f"{what} is too large")
        return int(digits)

    def nz_number(self, what: str = "a number") -> int:
        n = self.number(what)
        if n == 0:
            raise self.error(f"{what} must not be 0")
        return n

    def modseq(self, zero_ok: bool = False) -> int:
        n = self.number("a mod-sequence", MAX_MODSEQ)
        if n == 0 and not zero_ok:
            raise self.error("a mod-sequence must not be 0")
        return n

    def quoted(self) -> bytes:
        if self.peek() != 0x22:
            raise self.error("expected a quoted string")
        i = self.pos + 1
        out = bytearray()
        data, n = self.data, len(self.data)
        while i < n:
            c = data[i]
            if c == 0x22:
                self.pos = i + 1
                return bytes(out)
            if c == 0x5C:  # backslash escapes only \ and " (RFC 3501 §9 quoted-specials)
                if i + 1 < n and data[i + 1] in (0x22, 0x5C):
                    out.append(data[i + 1])
                    i += 2
                    continue
                self.pos = i
                raise self.error("a backslash in a quoted string may escape only \\ and \"")
            if c in (0x0D, 0x0A, 0x00):
                self.pos = i
                raise self.error("a quoted string cannot hold CR, LF or NUL; use a literal")
            out.append(c)
            i += 1
        raise self.error("unterminated quoted string")

    def literal(self) -> bytes:
        start = self.pos
        binary = False
        if self.peek() == 0x7E:  # "~{n}" literal8 (RFC 3516, RFC 6855)
            if not self.literal8:
                raise self.error("a literal8 (~{n}) is not allowed here")
            binary = True
            self.pos += 1
        self.expect(b"{", "a literal")
        size = self.number("a literal size")
        self.take(b"+")
        self.expect(b"}", "'}' closing the literal size")
        self.expect(b"\r\n", "CRLF after the literal size")
        end = self.pos + size
        if end > len(self.data):
            self.pos = start
            raise self.error("literal is longer than the command")
        value = self.data[self.pos : end]
        if not binary and b"\x00" in value:
            self.pos = start
            raise self.error("a literal cannot contain NUL (use literal8)")
        self.pos = end
        return value

    def string(self, what: str = "a string") -> bytes:
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c in (0x7B, 0x7E):
            return self.literal()
        raise self.error(f"expected {what}")

    def astring(self, what: str = "a string") -> bytes:
        c = self.peek()
        if c in (0x22, 0x7B, 0x7E):
            return self.string(what)
        a = self._run(ASTRING_CHARS)
        if not a:
            raise self.error(f"expected {what}")
        return a

    def nil_or_string(self) -> bytes | None:
        if self.take(b"NIL"):
            return None
        return self.string()

    def text_string(self, what: str = "a string") -> str:
        """An astring decoded as UTF-8 (search strings, ID values, LOGIN arguments)."""
        raw = self.astring(what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.error(f"{what} is not valid UTF-8") from e

    # ------------------------------------------------------------ mailbox names

    def _name(self, raw: bytes, what: str) -> str:
        if self.utf8:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise self.error(f"{what} is not valid UTF-8") from e
        else:
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError as e:
                # RFC 3501 §5.1.3: 8-bit names are for clients that ENABLE UTF8=ACCEPT (RFC 6855 §3).
                raise self.error(f"{what} has 8-bit characters: send it in modified UTF-7, "
                                 "or ENABLE UTF8=ACCEPT first") from e
            try:
                name = utf7.decode(text)
            except utf7.Utf7Error as e:
                raise self.error(f"{what} is not valid modified UTF-7 ({e})") from e
        return name

    def mailbox(self) -> str:
        """A mailbox name, decoded; "INBOX" in any case is INBOX (RFC 3501 §5.1)."""
        name = self._name(self.astring("a mailbox name"), "the mailbox name")
        return normalise_inbox(name)

    def list_mailbox(self) -> str:
        """A LIST pattern: list-char atoms may hold % and * (RFC 3501 §9)."""
        c = self.peek()
        raw = self.string() if c in (0x22, 0x7B, 0x7E) else self._run(LIST_CHARS)
        if not raw and c not in (0x22, 0x7B, 0x7E):
            raise self.error("expected a mailbox pattern")
        return self._name(raw, "the mailbox pattern")

    # ------------------------------------------------------------ lists, flags, dates

    def open_paren(self) -> None:
        self.expect(b"(", "'('")

    def keywords(self, allowed: tuple[str, ...] | frozenset[str], what: str) -> list[str]:
        """`(WORD WORD ...)` where each word is one of `allowed` (STATUS items, RETURN options ...)."""
        self.open_paren()
        words: list[str] = []
        while not self.close_paren():
            if words:
                self.sp()
            start = self.pos
            word = self.word(what)
            if word not in allowed:
                self.pos = start
                raise self.error(f"unknown {what} {word}")
            words.append(word)
        return words

    def sole_mailbox(self) -> str:
        """` mailbox` and nothing after it: DELETE, SUBSCRIBE, GETQUOTAROOT ..."""
        self.sp()
        name = self.mailbox()
        self.end()
        return name

    def close_paren(self) -> bool:
        return self.take(b")")

    def flag(self, recent_ok: bool = False) -> str:
        if self.take(b"\\"):
            if self.take(b"*"):
                raise self.error("\\* is not a flag")
            name = "\\" + self.atom("a flag name")
            canon = SYSTEM_FLAGS.get(name.lower())
            if canon is None:
                raise self.error(f"unknown system flag {name}")
            if canon == "\\Recent" and not recent_ok:
                raise self.error("\\Recent cannot be set by a client")
            return canon
        return self.atom("a flag")

    def flag_list(self) -> list[str]:
        """`(\\Seen $Label1)`; a bare flag list without parentheses is accepted for STORE."""
        flags: list[str] = []
        if self.take(b"("):
            if self.take(b")"):
                return flags
            while True:
                flags.append(self.flag())
                if self.take(b")"):
                    return flags
                self.sp()
        while True:
            flags.append(self.flag())
            if not self.take_sp():
                return flags

    def date(self) -> date:
        """`1-Feb-1994` or `"1-Feb-1994"` (RFC 3501 date)."""
        raw = self.quoted() if self.peek() == 0x22 else self._run(ATOM_CHARS)
        m = _DATE.fullmatch(raw.decode("ascii", "replace"))
        if not m or m.group(2).lower() not in MONTHS:
            raise self.error("expected a date like 1-Feb-1994")
        try:
            return date(int(m.group(3)), MONTHS.index(m.group(2).lower()) + 1, int(m.group(1)))
        except ValueError as e:
            raise self.error(f"not a valid date ({e})") from e

    def date_time(self) -> datetime:
        """`"17-Jul-1996 02:44:25 -0700"` (RFC 3501 date-time; a space-padded day is allowed)."""
        raw = self.quoted().decode("ascii", "replace")
        m = _DATE_TIME.fullmatch(raw)
        if not m:
            raise self.error('expected a date-time like "17-Jul-1996 02:44:25 -0700"')
        day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
        if mon.lower() not in MONTHS:
            raise self.error(f"unknown month {mon}")
        try:
            offset = timedelta(hours=int(zh), minutes=int(zm))
            tz = timezone(-offset if sign == "-" else offset) if offset else UTC
            return datetime(int(year), MONTHS.index(mon.lower()) + 1, int(day), int(hh), int(mm), int(ss), tzinfo=tz)
        except ValueError as e:
            raise self.error(f"not a valid date-time ({e})") from e

    # ------------------------------------------------------------ sequence sets

    def seqset(self) -> SeqSet:
        if self.take(b"$"):
            raise self.error("$ (SEARCHRES) is not supported")
        ranges = []
        while True:
            a = self._seq_number()
            b = a
            if self.take(b":"):
                b = self._seq_number()
            ranges.append((a, b))
            if not self.take(b","):
                return SeqSet(tuple(ranges))

    def _seq_number(self) -> int:
        if self.take(b"*"):
            return 0
        return self.nz_number("a message number or *")

    # ------------------------------------------------------------ FETCH

    def fetch_atts(self) -> list[FetchAtt]:
        """`ALL` | `FAST` | `FULL` | fetch-att | "(" fetch-att *(SP fetch-att) ")"."""
        if self.take(b"("):
            atts = [self.fetch_att()]
            while not self.take(b")"):
                self.sp()
                atts.append(self.fetch_att())
            return atts
        start = self.pos
        word = self.word("a fetch item")
        if word in MACROS:
            return [FetchAtt(n) for n in MACROS[word]]
        self.pos = start
        return [self.fetch_att()]

    def fetch_att(self) -> FetchAtt:
        start = self.pos
        word = self._run(ATOM_CHARS - {ord("["), ord("<")}).decode("ascii").upper()
        if not word:
            raise self.error("expected a fetch item")
        if word in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE") and self.peek_is(b"["):
            name = word.split(".")[0] if word != "BINARY.SIZE" else word
            binary = name.startswith("BINARY")
            section = self.section(binary=binary)
            partial = None
            if name != "BINARY.SIZE" and self.take(b"<"):
                origin = self.number("a partial origin")
                self.expect(b".", "'.' in <origin.length>")
                length = self.nz_number("a partial length")
                self.expect(b">")
                partial = (origin, length)
            return FetchAtt(name, section, peek=word.endswith(".PEEK"), partial=partial)
        if word in SIMPLE_ATTS:
            return FetchAtt(word)
        self.pos = start
        raise self.error(f"unknown fetch item {word or '?'}")

    def section(self, binary: bool = False) -> Section:
        self.expect(b"[")
        part: list[int] = []
        text: str | None = None
        fields: tuple[str, ...] = ()
        while self.peek() in range(0x30, 0x3A):
            part.append(self.nz_number("a part number"))
            if not self.take(b"."):
                break
        if not binary and not self.peek_is(b"]"):
            word = self._run(ATOM_CHARS - {ord("]")}).decode("ascii").upper()
            if word not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"):
                raise self.error(f"unknown section {word or '?'}")
            if word == "MIME" and not part:
                raise self.error("MIME needs a part number")
            text = word
            if word.startswith("HEADER.FIELDS"):
                self.sp()
                self.open_paren()
                names = [self.header_name()]
                while not self.take(b")"):
                    self.sp()
                    names.append(self.header_name())
                fields = tuple(names)
        elif part and self.data[self.pos - 1 : self.pos] == b".":
            raise self.error("expected a part number after '.'")
        self.expect(b"]", "']' closing the section")
        return Section(tuple(part), text, fields)

    def header_name(self) -> str:
        """A header field name (RFC 5322 §3.6.8: printable ASCII except colon)."""
        raw = self.astring("a header field name")
        if not raw or any(c <= 0x20 or c >= 0x7F or c == 0x3A for c in raw):
            raise self.error("not a header field name")
        return raw.decode("ascii")

    # ------------------------------------------------------------ SEARCH

    def search_keys(self) -> SearchKey:
        """One or more search keys separated by spaces: an implicit AND."""
        keys = [self.search_key()]
        while self.take_sp():
            keys.append(self.search_key())
        return keys[0] if len(keys) == 1 else SearchKey("AND", children=tuple(keys))

    def search_key(self) -> SearchKey:
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise self.error("search keys are nested too deeply")
            if self.take(b"("):
                keys = [self.search_key()]
                while not self.take(b")"):
                    self.sp()
                    keys.append(self.search_key())
                return keys[0] if len(keys) == 1 else SearchKey("AND", children=tuple(keys))
            c = self.peek()
            if c == 0x2A or 0x30 <= c <= 0x39 or c == 0x24:
                return SearchKey("SEQ", self.seqset())
            start = self.pos
            word = self.word("a search key")
            kind = SEARCH_KEYS.get(word)
            if kind is None:
                self.pos = start
                raise self.error(f"unknown search key {word}")
            if kind == "":
                return SearchKey(word)
            self.sp()
            if kind == "string":
                return SearchKey(word, self.astring(f"a string after {word}"))
            if kind == "date":
                return SearchKey(word, self.date())
            if kind == "flag":
                return SearchKey(word, self.atom("a keyword"))
            if kind == "number":
                return SearchKey(word, self.number())
            if kind == "seqset":
                return SearchKey(word, self.seqset())
            if kind == "header":
                name = self.header_name()
                self.sp()
                return SearchKey(word, (name, self.astring("a string after the header name")))
            if kind == "key":
                return SearchKey(word, children=(self.search_key(),))
            if kind == "key2":
                a = self.search_key()
                self.sp()
                return SearchKey(word, children=(a, self.search_key()))
            # MODSEQ [entry-name SP entry-type-req] SP mod-sequence-valzer (RFC 7162 §3.1.5)
            if self.peek() == 0x22:
                self.quoted()
                self.sp()
                entry_type = self.word("an entry type")
                if entry_type not in ("PRIV", "SHARED", "ALL"):
                    raise self.error("entry type must be priv, shared or all")
                self.sp()
            return SearchKey(word, self.modseq(zero_ok=True))
        finally:
            self.depth -= 1


_DATE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})")
_DATE_TIME = re.compile(
    r"([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"
)


def normalise_inbox(name: str) -> str:
    """INBOX is case-insensitive, also as the first level of a hierarchy (RFC 3501 §5.1)."""
    head, sep, rest = name.partition("/")
    if head.upper() == "INBOX" and head != "INBOX":
        return "INBOX" + sep + rest
    return name
