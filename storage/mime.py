"""What the index keeps of a message so IMAP never re-parses files: MIME tree with byte offsets,
the header fields clients fetch on first sync, and the text SEARCH looks in.

A message is parsed once, when it is stored (or when the index is rebuilt).
The parser works on the raw bytes and records where every part's header
and body begin and end, so IMAP can answer `BODYSTRUCTURE` from the index
and `BODY[1.2]<0.2048>` with one ranged read of the file. Python's `email`
package is not used for the tree because it does not report offsets.

Search text is folded (case, Vietnamese diacritics, "đ" -> "d") so that
`nguyen` finds "Nguyễn" (Đ11: Vietnamese in Unicode everywhere).
"""

from __future__ import annotations

import binascii
import codecs
import html
import quopri
import re
import unicodedata
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from typing import Any

# RFC 5322 fields IMAP's ENVELOPE is built from (RFC 3501 §7.4.2), in ENVELOPE order.
ENVELOPE_FIELDS = ("date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "message-id")
# Header fields kept verbatim in the index: what Thunderbird, Outlook and mobile
# clients ask for in their first-sync FETCH BODY.PEEK[HEADER.FIELDS (...)].
CACHED_HEADERS = frozenset({
    *ENVELOPE_FIELDS, "references", "content-type", "priority", "x-priority", "importance", "newsgroups",
    "list-id", "list-unsubscribe", "list-post", "x-mailer", "user-agent", "disposition-notification-to",
    "return-receipt-to", "return-path", "x-spam-flag", "x-spam-status", "x-spam-score", "content-language",
    "mime-version", "auto-submitted", "x-original-to", "delivered-to", "received",
})
MAX_DEPTH = 40
MAX_PARTS = 2000
MAX_TEXT = 256 * 1024  # characters of body text indexed per message
SEARCH_HEADERS = ("subject", "from", "to", "cc", "bcc")


@dataclass
class Part:
    """One MIME entity. Offsets are absolute byte positions in the message file."""

    type: str
    subtype: str
    params: list[tuple[str, str]]
    header_start: int
    body_start: int
    end: int
    lines: int = 0
    encoding: str = "7bit"
    id: str | None = None
    description: str | None = None
    md5: str | None = None
    disposition: str | None = None
    disposition_params: list[tuple[str, str]] = field(default_factory=list)
    language: list[str] | None = None
    location: str | None = None
    parts: list[Part] = field(default_factory=list)
    # message/rfc822: the encapsulated message's own root entity and envelope
    message: Part | None = None
    envelope: dict[str, str | None] | None = None

    @property
    def size(self) -> int:
        return self.end - self.body_start

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart"

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name:
                return v
        return None

    # Compact JSON form for the index: short keys, defaults omitted.
    def to_obj(self) -> dict[str, Any]:
        o: dict[str, Any] = {"t": self.type, "s": self.subtype, "h": self.header_start, "b": self.body_start,
                             "e": self.end}
        if self.params:
            o["p"] = self.params
        if self.lines:
            o["l"] = self.lines
        if self.encoding != "7bit":
            o["enc"] = self.encoding
        for key, value in (("id", self.id), ("de", self.description), ("md5", self.md5), ("d", self.disposition),
                           ("la", self.language), ("lo", self.location), ("env", self.envelope)):
            if value is not None:
                o[key] = value
        if self.disposition_params:
            o["dp"] = self.disposition_params
        if self.parts:
            o["c"] = [p.to_obj() for p in self.parts]
        if self.message is not None:
            o["m"] = self.message.to_obj()
        return o

    @classmethod
    def from_obj(cls, o: dict[str, Any]) -> Part:
        return cls(
            type=o["t"], subtype=o["s"], params=[tuple(p) for p in o.get("p", ())],  # type: ignore[misc]
            header_start=o["h"], body_start=o["b"], end=o["e"], lines=o.get("l", 0), encoding=o.get("enc", "7bit"),
            id=o.get("id"), description=o.get("de"), md5=o.get("md5"), disposition=o.get("d"),
            disposition_params=[tuple(p) for p in o.get("dp", ())],  # type: ignore[misc]
            language=o.get("la"), location=o.get("lo"), envelope=o.get("env"),
            parts=[cls.from_obj(c) for c in o.get("c", ())],
            message=cls.from_obj(o["m"]) if "m" in o else None,
        )


@dataclass
class Parsed:
    structure: Part
    envelope: dict[str, str | None]
    header_fields: dict[str, str]  # lower-case name -> the field's lines exactly as in the file
    search: dict[str, str]  # folded text: subject, from, to, cc, bcc, body, extra (file names)


# ------------------------------------------------------------------ helpers


def text_of(raw: bytes) -> str:
    """Header bytes as text; 8-bit (SMTPUTF8) headers are UTF-8, anything else survives round trips."""
    return raw.decode("utf-8", "surrogateescape")


_UNFOLD = re.compile(rb"\r?\n(?=[ \t])")
_COMBINING = re.compile("[\u0300-\u036f]")


def fold(text: str) -> str:
    """Case- and diacritic-insensitive form: "Nguyễn Văn Đức" -> "nguyen van duc"."""
    t = unicodedata.normalize("NFD", text.casefold())
    return _COMBINING.sub("", t).replace("đ", "d")


def fold_stroke(text: str) -> str:
    return text.replace("đ", "d").replace("Đ", "D")


def decode_words(value: str) -> str:
    """RFC 2047 encoded-words -> Unicode (best effort; malformed input is returned as is)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError, binascii.Error):
        return value


def header_end(data: bytes, start: int, end: int) -> int:
    """Offset where the body begins (after the blank line); `end` if there is no body."""
    if data.startswith(b"\r\n", start):
        return start + 2
    if data.startswith(b"\n", start):
        return start + 1
    crlf = data.find(b"\r\n\r\n", start, end)
    lf = data.find(b"\n\n", start, end)
    candidates = []
    if crlf >= 0:
        candidates.append(crlf + 4)
    if lf >= 0:
        candidates.append(lf + 2)
    return min(candidates) if candidates else end


def parse_fields(block: bytes) -> list[tuple[str, bytes]]:
    """Header block -> [(lower-case name, raw lines of the field including line ends)]."""
    fields: list[tuple[str, bytes]] = []
    name: str | None = None
    raw: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and name is not None:
            raw.append(line)
            continue
        if name is not None:
            fields.append((name, b"".join(raw)))
            name = None
        colon = line.find(b":")
        if colon > 0:
            name = text_of(line[:colon].strip()).lower()
            raw = [line]
    if name is not None:
        fields.append((name, b"".join(raw)))
    return fields


def field_value(raw: bytes) -> str:
    """The unfolded value of one field's raw lines."""
    value = raw[raw.find(b":") + 1 :]
    return text_of(_UNFOLD.sub(b"", value).strip())


_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s"]+))')


def _strip_comments(value: str) -> str:
    if "(" not in value:
        return value
    out, depth, quoted, escaped = [], 0, False, False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if ch == '"' and depth == 0:
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
            continue
        elif not quoted and ch == ")" and depth:
            depth -= 1
            continue
        if depth == 0:
            out.append(ch)
    return "".join(out)


def parse_parameters(value: str) -> tuple[str, list[tuple[str, str]]]:
    """`text/plain; charset="utf-8"` -> ("text/plain", [("charset", "utf-8")]). Names lower-cased."""
    value = _strip_comments(value)
    head, _, rest = value.partition(";")
    params: list[tuple[str, str]] = []
    for item in _split_params(rest):
        name, eq, val = item.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == '"' and val[-1] == '"':
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        params.append((name, val))
    return head.strip().lower(), params


def _split_params(text: str) -> list[str]:
    items, cur, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            cur.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == ";" and not quoted:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    items.append("".join(cur))
    return [i for i in items if i.strip()]


def rfc2231_value(params: list[tuple[str, str]], name: str) -> str | None:
    """A parameter's value, joining RFC 2231 continuations and decoding `charset''%xx`."""
    plain = next((v for k, v in params if k == name), None)
    pieces: dict[int, tuple[bool, str]] = {}
    for k, v in params:
        m = re.fullmatch(re.escape(name) + r"\*(\d+)?(\*)?", k)
        if m:
            pieces[int(m.group(1) or 0)] = (bool(m.group(2)) or m.group(1) is None, v)
    if not pieces:
        return decode_words(plain) if plain else plain
    charset, out = "utf-8", []
    for i in sorted(pieces):
        encoded, v = pieces[i]
        if encoded:
            if i == 0 and v.count("'") >= 2:
                charset, _, v = v.split("'", 2)
            raw = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), v.encode("latin-1", "replace"))
            try:
                out.append(raw.decode(charset or "utf-8", "replace"))
            except LookupError:
                out.append(raw.decode("utf-8", "replace"))
        else:
            out.append(v)
    return "".join(out)


# ------------------------------------------------------------------ the tree


class _Budget:
    def __init__(self) -> None:
        self.parts = 0


def _entity(data: bytes, start: int, end: int, default: tuple[str, str], depth: int, budget: _Budget,
            fields_out: list[tuple[str, bytes]] | None = None) -> Part:
    budget.parts += 1
    body_start = header_end(data, start, end)
    fields = parse_fields(data[start:body_start])
    if fields_out is not None:
        fields_out.extend(fields)
    values: dict[str, str] = {}
    for name, raw in fields:
        if name.startswith("content-") and name not in values:
            values[name] = field_value(raw)
    ctype, params = parse_parameters(values.get("content-type", ""))
    main, _, sub = ctype.partition("/")
    if not main or not sub:
        (main, sub), params = default, (params if ctype == "" and default[0] == "text" else [])
        if main == "text" and not any(k == "charset" for k, _ in params):
            params = [("charset", "us-ascii"), *params]
    part = Part(type=main, subtype=sub, params=params, header_start=start, body_start=body_start, end=end)
    if "content-transfer-encoding" in values:
        part.encoding = values["content-transfer-encoding"].strip().lower() or "7bit"
    part.id = values.get("content-id")
    part.description = values.get("content-description")
    part.md5 = values.get("content-md5")
    part.location = values.get("content-location")
    if "content-language" in values:
        part.language = [t.strip() for t in values["content-language"].split(",") if t.strip()] or None
    if "content-disposition" in values:
        disp, dparams = parse_parameters(values["content-disposition"])
        part.disposition, part.disposition_params = disp or None, dparams
    boundary = part.param("boundary")
    if main == "multipart" and boundary and depth < MAX_DEPTH:
        child_default = ("message", "rfc822") if sub == "digest" else ("text", "plain")
        for s, e in _split_multipart(data, body_start, end, boundary.encode("utf-8", "surrogateescape")):
            if budget.parts >= MAX_PARTS:
                break
            part.parts.append(_entity(data, s, e, child_default, depth + 1, budget))
    elif (main, sub) in (("message", "rfc822"), ("message", "global")) and depth < MAX_DEPTH \
            and part.encoding in ("7bit", "8bit", "binary"):
        inner_fields: list[tuple[str, bytes]] = []
        part.message = _entity(data, body_start, end, ("text", "plain"), depth + 1, budget, inner_fields)
        part.envelope = envelope_of(inner_fields)
    if main in ("text", "message") and not part.parts:
        part.lines = data.count(b"\n", body_start, end)
    return part


def _split_multipart(data: bytes, body_start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the body parts between `--boundary` lines (RFC 2046 §5.1.1)."""
    delim = b"--" + boundary
    parts: list[tuple[int, int]] = []
    pos, part_start = body_start, None
    while True:
        i = data.find(delim, pos, end)
        if i < 0:
            break
        if i != body_start and data[i - 1 : i] != b"\n":
            pos = i + 1
            continue
        after = i + len(delim)
        eol = data.find(b"\n", after, end)
        line_end = end if eol < 0 else eol + 1
        rest = data[after : end if eol < 0 else eol].rstrip(b"\r")
        close = rest.startswith(b"--")
        if rest[2 if close else 0 :].strip(b" \t"):
            pos = i + 1  # a longer boundary that merely starts with ours
            continue
        if part_start is not None:
            pend = i
            if data[pend - 2 : pend] == b"\r\n":
                pend -= 2
            elif data[pend - 1 : pend] == b"\n":
                pend -= 1
            parts.append((part_start, max(part_start, pend)))
        if close:
            return parts
        part_start = pos = line_end
    if part_start is not None and part_start < end:
        parts.append((part_start, end))
    return parts


def envelope_of(fields: list[tuple[str, bytes]]) -> dict[str, str | None]:
    env: dict[str, str | None] = dict.fromkeys(ENVELOPE_FIELDS)
    for name, raw in fields:
        if name in env and env[name] is None:
            env[name] = field_value(raw)
    return env


# ------------------------------------------------------------------ decoding for search


def decode_body(data: bytes, part: Part) -> bytes:
    body = data[part.body_start : part.end]
    try:
        if part.encoding == "base64":
            return binascii.a2b_base64(re.sub(rb"[^A-Za-z0-9+/=]", b"", body) + b"==")
        if part.encoding == "quoted-printable":
            return quopri.decodestring(body)
    except (binascii.Error, ValueError):
        return b""
    return body


def _charset_text(raw: bytes, charset: str | None) -> str:
    name = (charset or "utf-8").strip().lower()
    try:
        codecs.lookup(name)
    except LookupError:
        name = "utf-8"
    if name in ("us-ascii", "ascii"):
        name = "utf-8"  # mislabelled UTF-8 is common; ASCII is a subset anyway
    return raw.decode(name, "replace")


_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.S | re.I)


def _html_text(text: str) -> str:
    return html.unescape(_TAGS.sub(" ", text))


def _walk(part: Part) -> list[Part]:
    out = [part]
    for child in part.parts:
        out.extend(_walk(child))
    if part.message is not None:
        out.extend(_walk(part.message))
    return out


def search_text(data: bytes, root: Part, header_fields: list[tuple[str, bytes]]) -> dict[str, str]:
    """Folded text per search column: the address/subject headers, the body text, attachment names."""
    wanted: dict[str, list[str]] = {h: [] for h in SEARCH_HEADERS}
    for name, raw in header_fields:
        if name in wanted:
            wanted[name].append(decode_words(field_value(raw)))
    body: list[str] = []
    extra: list[str] = []
    budget = MAX_TEXT
    for part in _walk(root):
        filename = rfc2231_value(part.disposition_params, "filename") or rfc2231_value(part.params, "name")
        if filename:
            extra.append(filename)
        if part.type != "text" or part.subtype not in ("plain", "html") or part.disposition == "attachment":
            continue
        if budget <= 0:
            continue
        text = _charset_text(decode_body(data, part), part.param("charset"))
        if part.subtype == "html":
            text = _html_text(text)
        body.append(text[:budget])
        budget -= len(body[-1])
    out = {h: fold(" ".join(v)) for h, v in wanted.items()}
    # The full-text index folds case and diacritics itself (unicode61 remove_diacritics 2) but not
    # the stroke of "đ": that one letter is folded here, which is much cheaper than fold() on bodies.
    out["body"] = fold_stroke("\n".join(body))
    out["extra"] = fold_stroke(" ".join(extra))
    return out


def parse(data: bytes) -> Parsed:
    """Parse a whole message (CRLF line ends, as stored)."""
    fields: list[tuple[str, bytes]] = []
    root = _entity(data, 0, len(data), ("text", "plain"), 0, _Budget(), fields)
    cached: dict[str, str] = {}
    for name, raw in fields:
        if name in CACHED_HEADERS:
            cached[name] = cached.get(name, "") + text_of(raw)
    return Parsed(structure=root, envelope=envelope_of(fields), header_fields=cached,
                  search=search_text(data, root, fields))


def parse_head(head: bytes, size: int) -> Parsed:
    """A message known only by its first bytes: header fields, and one opaque body up to `size`."""
    p = parse(head)
    root = p.structure
    root.end, root.parts, root.message, root.lines = size, [], None, 0
    p.search["body"] = ""
    return p


def header_lines(header_fields: dict[str, str], names: list[str]) -> str | None:
    """`BODY[HEADER.FIELDS (names)]` from the cache, or None if a name is not cached (read the file then).

    Fields come in the order they first appear in the message; IMAP appends the blank line.
    """
    wanted = {n.lower() for n in names}
    if not wanted <= CACHED_HEADERS:
        return None
    return "".join(raw for name, raw in header_fields.items() if name in wanted)
