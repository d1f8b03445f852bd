"""ENVELOPE and BODYSTRUCTURE (RFC 3501 §7.4.2) from the store's neutral MIME tree, and
where each `BODY[section]` (RFC 3501 §6.4.5) lies in the message file.

The store parses a message once, when it is stored, and keeps per part its
type, parameters, encoding, sizes and the byte offsets of its header and
body (`storage.mime.Part`) plus the raw ENVELOPE header values. Everything
here is pure: serialising that tree, and turning a section number into a
byte range, so `FETCH BODYSTRUCTURE` never opens a file and
`BODY[2]<0.4096>` reads exactly those bytes.

Addresses need one real parser (RFC 5322 §3.4 address-list, with groups,
quoted phrases, comments and obsolete routes); it is tolerant, as mail in
the wild is, and bounded. Header values stay as they are in the message
(RFC 2047 encoded-words included): ENVELOPE strings are not decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imap_gateway.parse import Section
from imap_gateway.wire import nstring, string

MAX_ADDRESSES = 1000  # per header; more is not a real message


# ---------------------------------------------------------------- addresses (RFC 5322 §3.4)


@dataclass(frozen=True)
class Address:
    name: str | None  # display name (phrase), None when absent
    adl: str | None  # obsolete source route
    mailbox: str | None  # local part; group name for a group start; None ends a group
    host: str | None  # domain; None for group markers


class _Lexer:
    """Tokens of an address list: specials, quoted strings, atoms (comments skipped)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _skip_ws_and_comments(self) -> None:
        t, n = self.text, len(self.text)
        while self.pos < n:
            c = t[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif c == "(":
                depth = 0
                while self.pos < n:
                    c = t[self.pos]
                    if c == "\\":
                        self.pos += 2
                        continue
                    if c == "(":
                        depth += 1
                    elif c == ")":
                        depth -= 1
                        if depth == 0:
                            self.pos += 1
                            break
                    self.pos += 1
            else:
                return

    def next(self) -> tuple[str, str]:
        """("special", ch) | ("quoted", text) | ("atom", text) | ("end", "")."""
        self._skip_ws_and_comments()
        t, n = self.text, len(self.text)
        if self.pos >= n:
            return "end", ""
        c = t[self.pos]
        if c in '<>@,;:.[]':
            self.pos += 1
            if c == "[":  # domain literal: keep as one atom
                end = t.find("]", self.pos)
                end = n if end < 0 else end
                value = "[" + t[self.pos : end] + "]"
                self.pos = min(end + 1, n)
                return "atom", value
            return "special", c
        if c == '"':
            out = []
            self.pos += 1
            while self.pos < n:
                c = t[self.pos]
                if c == "\\" and self.pos + 1 < n:
                    out.append(t[self.pos + 1])
                    self.pos += 2
                    continue
                if c == '"':
                    self.pos += 1
                    break
                out.append(c)
                self.pos += 1
            return "quoted", "".join(out)
        start = self.pos
        while self.pos < n and t[self.pos] not in ' \t\r\n()<>@,;:."[]':
            self.pos += 1
        if self.pos == start:  # a stray character such as ')' or '\\'
            self.pos += 1
        return "atom", t[start : self.pos]


def parse_addresses(value: str | None) -> list[Address]:
    """An RFC 5322 address-list as IMAP address structures (group markers included)."""
    if not value:
        return []
    lex = _Lexer(value)
    tokens: list[tuple[str, str]] = []
    while len(tokens) < 20 * MAX_ADDRESSES:
        tok = lex.next()
        if tok[0] == "end":
            break
        tokens.append(tok)
    out: list[Address] = []
    i = 0
    in_group = False
    while i < len(tokens) and len(out) < MAX_ADDRESSES:
        # Collect one mailbox or group start, up to "," ";" or ":"
        j = i
        while j < len(tokens) and tokens[j] not in (("special", ","), ("special", ";"), ("special", ":")):
            if tokens[j] == ("special", "<"):
                while j < len(tokens) and tokens[j] != ("special", ">"):
                    j += 1
            j += 1
        chunk = tokens[i:j]
        sep = tokens[j] if j < len(tokens) else ("end", "")
        if sep == ("special", ":") and not in_group and ("special", "<") not in chunk:
            out.append(Address(None, None, _phrase(chunk) or "", None))
            in_group = True
        else:
            addr = _mailbox(chunk)
            if addr is not None:
                out.append(addr)
            if sep == ("special", ";") and in_group:
                out.append(Address(None, None, None, None))
                in_group = False
        i = j + 1
    if in_group:
        out.append(Address(None, None, None, None))
    return out


def _phrase(tokens: list[tuple[str, str]]) -> str | None:
    """A display name: words joined by one space; a "." sticks to the word before ("J. Smith")."""
    out = ""
    for kind, value in tokens:
        if kind == "special" and value == ".":
            out += "."
        elif kind != "special" or value not in "<>":
            out = f"{out} {value}" if out else value
    return out or None


def _mailbox(tokens: list[tuple[str, str]]) -> Address | None:
    if not tokens:
        return None
    if ("special", "<") in tokens:
        lt = tokens.index(("special", "<"))
        name = _phrase(tokens[:lt])
        inner = tokens[lt + 1 :]
        if ("special", ">") in inner:
            inner = inner[: inner.index(("special", ">"))]
        adl = None
        if ("special", ":") in inner:  # obsolete route: <@a,@b:user@host>
            colon = inner.index(("special", ":"))
            adl = "".join(v for _, v in inner[:colon]) or None
            inner = inner[colon + 1 :]
        mailbox, host = _addr_spec(inner)
        return Address(name, adl, mailbox, host) if mailbox or host else None
    mailbox, host = _addr_spec(tokens)
    # Nothing usable (a stray quote, "<>"): no address, rather than one that reads as a group end.
    return Address(None, None, mailbox, host) if mailbox or host else None


def _addr_spec(tokens: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    if not tokens:
        return None, None
    if ("special", "@") in tokens:
        at = len(tokens) - 1 - tokens[::-1].index(("special", "@"))
        local = "".join(v for _, v in tokens[:at])
        host = "".join(v for _, v in tokens[at + 1 :])
        return local or None, host or None
    return "".join(v for _, v in tokens) or None, None


def address_list(value: str | None, utf8: bool = False) -> bytes:
    addrs = parse_addresses(value)
    if not addrs:
        return b"NIL"
    return b"(" + b"".join(
        b"(" + b" ".join(nstring(_raw(x), utf8) for x in (a.name, a.adl, a.mailbox, a.host)) + b")" for a in addrs
    ) + b")"


def _raw(value: str | None) -> bytes | None:
    """Header text back to the bytes of the file (the store decodes them with surrogateescape)."""
    return None if value is None else value.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- ENVELOPE


def envelope(env: dict[str, Any], utf8: bool = False) -> bytes:
    """RFC 3501 §7.4.2: sender and reply-to default to from."""
    sender = env.get("sender") or env.get("from")
    reply_to = env.get("reply-to") or env.get("from")
    items = [
        nstring(_raw(env.get("date")), utf8),
        nstring(_raw(env.get("subject")), utf8),
        address_list(env.get("from"), utf8),
        address_list(sender, utf8),
        address_list(reply_to, utf8),
        address_list(env.get("to"), utf8),
        address_list(env.get("cc"), utf8),
        address_list(env.get("bcc"), utf8),
        nstring(_raw(env.get("in-reply-to")), utf8),
        nstring(_raw(env.get("message-id")), utf8),
    ]
    return b"(" + b" ".join(items) + b")"


# ---------------------------------------------------------------- BODYSTRUCTURE


def _params(params: list[tuple[str, str]] | list[list[str]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(string(k.upper()) + b" " + string(_raw(v) or b"") for k, v in params) + b")"


def _disposition(part: Any) -> bytes:
    if not part.disposition:
        return b"NIL"
    return b"(" + string(part.disposition.upper()) + b" " + _params(part.disposition_params) + b")"


def _language(part: Any) -> bytes:
    langs = part.language
    if not langs:
        return b"NIL"
    if len(langs) == 1:
        return string(langs[0])
    return b"(" + b" ".join(string(x) for x in langs) + b")"


def bodystructure(part: Any, extended: bool = True, utf8: bool = False) -> bytes:
    """BODYSTRUCTURE (extended=True) or BODY (extended=False) of one part and its children."""
    if part.type == "multipart":
        children = b"".join(bodystructure(p, extended, utf8) for p in part.parts)
        if not children:  # RFC 3501 needs at least one part; an empty multipart shows as empty text
            children = b'("TEXT" "PLAIN" NIL NIL NIL "7BIT" 0 0)'
        out = b"(" + children + b" " + string(part.subtype.upper())
        if extended:
            out += b" " + _params(part.params) + b" " + _disposition(part) + b" " + _language(part) + b" "
            out += nstring(part.location)
        return out + b")"
    fields = [
        string(part.type.upper()),
        string(part.subtype.upper()),
        _params(part.params),
        nstring(_raw(part.id)),
        nstring(_raw(part.description), utf8),
        string((part.encoding or "7bit").upper()),
        str(part.size).encode(),
    ]
    if part.type == "message" and part.subtype in ("rfc822", "global") and part.message is not None:
        fields += [envelope(part.envelope or {}, utf8), bodystructure(part.message, extended, utf8),
                   str(part.lines).encode()]
    elif part.type == "text":
        fields.append(str(part.lines).encode())
    if extended:
        fields += [nstring(part.md5), _disposition(part), _language(part), nstring(part.location)]
    return b"(" + b" ".join(fields) + b")"


# ---------------------------------------------------------------- sections


class NoSuchPart(Exception):
    """A section number that is not in the message: the FETCH returns empty data (RFC 3501 §6.4.5)."""


def _is_message(part: Any) -> bool:
    return part.type == "message" and part.subtype in ("rfc822", "global") and part.message is not None


def find_part(root: Any, path: tuple[int, ...]) -> Any:
    """The part at `path` ("2.1"). Part 1 of a non-multipart entity is the entity itself; going
    deeper than a message/rfc822 part enters the message it carries (RFC 3501 §6.4.5)."""
    part = root
    for depth, n in enumerate(path):
        if depth > 0:
            if _is_message(part):
                part = part.message
            elif part.type != "multipart":
                raise NoSuchPart()
        if part.type == "multipart":
            if n > len(part.parts):
                raise NoSuchPart()
            part = part.parts[n - 1]
        elif n != 1:
            raise NoSuchPart()
    return part


@dataclass(frozen=True)
class Span:
    """Where section data comes from: a byte range of the message file."""

    start: int = 0
    end: int = 0
    header_fields: tuple[str, ...] = ()  # filter this header range to these fields
    exclude: bool = False  # HEADER.FIELDS.NOT


def locate(root: Any, size: int, section: Section) -> Span:
    """The bytes `BODY[section]` refers to, as offsets into the message file."""
    if section.part:
        part = find_part(root, section.part)
        if section.text is None:
            return Span(part.body_start, part.end)
        if section.text == "MIME":
            return Span(part.header_start, part.body_start)
        # HEADER, TEXT, HEADER.FIELDS after a part number refer to the message a message/rfc822 part carries.
        if not _is_message(part):
            raise NoSuchPart()
        target, end = part.message, part.end
    elif section.text is None:
        return Span(0, size)
    else:
        target, end = root, size
    if section.text == "TEXT":
        return Span(target.body_start, end)
    # HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT: the header block with its blank line.
    return Span(target.header_start, target.body_start, header_fields=section.fields,
                exclude=section.text == "HEADER.FIELDS.NOT")


def filter_header(block: bytes, names: tuple[str, ...], exclude: bool) -> bytes:
    """The fields of a header block named (or not named) in `names`, then the blank line (RFC 3501 §6.4.5)."""
    wanted = {n.lower() for n in names}
    out: list[bytes] = []
    keep = False
    for line in block.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        keep = (name in wanted) != exclude
        if keep:
            out.append(line)
    out.append(b"\r\n")
    return b"".join(out)
