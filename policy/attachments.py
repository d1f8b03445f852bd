"""Đ7.3.b "kích cỡ tệp gửi kèm tối đa 15MB/thư": how many bytes of attachments a message carries.

The regulation limits attachments, not messages, so the rule needs the
decoded size of everything that is not the message's own text. This is a
pure function over the raw bytes (SMTP after DATA, IMAP APPEND, migration
all call it) and it never decodes a payload into memory: base64 sizes are
computed from the count of base64 characters, quoted-printable ones from
the count of escapes.

What counts (decided once, here):

* the message's text body is free: every `text/plain` or `text/html` leaf
  that has no file name and is not `Content-Disposition: attachment`,
  outside any attached message;
* everything else counts at its decoded size: files, inline images of a
  `multipart/related` HTML mail, calendar invitations, and every part of an
  attached `message/rfc822` (a forwarded mail is an attachment, its text
  included), recursively.

Parsing is tolerant (a missing closing boundary ends the part at the end of
the data) and bounded: nesting deeper than `MAX_DEPTH` is counted at its
raw size rather than parsed further, so a crafted message cannot make the
check slow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

MAX_DEPTH = 20
TEXT_BODY_TYPES = frozenset({"text/plain", "text/html"})
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_QP_ESCAPE = re.compile(rb"=[0-9A-Fa-f]{2}")
_QP_SOFT_BREAK = re.compile(rb"=[ \t]*\r?\n")
_B64_JUNK = b" \t\r\n"


@dataclass(frozen=True)
class AttachmentPart:
    """One counted part, for the refusal text and for the mail log."""

    content_type: str
    filename: str | None
    size: int  # decoded bytes


@dataclass
class AttachmentReport:
    total: int = 0
    parts: list[AttachmentPart] = field(default_factory=list)

    def add(self, part: AttachmentPart) -> None:
        self.parts.append(part)
        self.total += part.size


def split_entity(data: bytes) -> tuple[bytes, bytes]:
    """Header block and body of one MIME entity (RFC 5322 §2.1: an empty line separates them)."""
    if data.startswith((b"\r\n", b"\n")):
        return b"", data[2:] if data.startswith(b"\r\n") else data[1:]
    m = _HEADER_END.search(data)
    if m is None:
        return data, b""
    return data[: m.start()], data[m.end() :]


def parse_headers(block: bytes) -> Message:
    # compat32 is the fast, lenient parser; we only read a few fields.
    return BytesHeaderParser(policy=compat32).parsebytes(block + b"\r\n\r\n")


def decoded_size(body: bytes, transfer_encoding: str) -> int:
    """Decoded length of a leaf body (RFC 2045 §6) without decoding it."""
    cte = transfer_encoding.strip().lower()
    if cte == "base64":
        chars = body.translate(None, _B64_JUNK)
        n = len(chars)
        if n == 0:
            return 0
        pad = 2 if chars.endswith(b"==") else 1 if chars.endswith(b"=") else 0
        return max(0, (n * 3) // 4 - pad) if n % 4 == 0 else (n - pad) * 3 // 4
    if cte == "quoted-printable":
        soft = sum(len(m.group()) for m in _QP_SOFT_BREAK.finditer(body))
        escapes = len(_QP_ESCAPE.findall(body))
        return len(body) - soft - 2 * escapes
    return len(body)


def multipart_children(body: bytes, boundary: bytes) -> list[bytes]:
    """The body parts of a multipart entity (RFC 2046 §5.1.1).

    A delimiter is `--boundary` at the start of a line followed only by
    optional white space (or `--` for the closing one); the line break before
    it belongs to the delimiter. The preamble and epilogue are not parts, and
    a missing closing delimiter ends the last part at the end of the data.
    """
    delim = b"--" + boundary
    marks: list[tuple[int, int, bool]] = []  # (start incl. preceding line break, start of next part, closing)
    pos = 0
    while True:
        i = body.find(delim, pos)
        if i < 0:
            break
        pos = i + len(delim)
        if i > 0 and body[i - 1] != 0x0A:
            continue
        eol = body.find(b"\n", pos)
        rest = body[pos : len(body) if eol < 0 else eol].rstrip(b" \t\r")
        if rest not in (b"", b"--"):
            continue  # a longer boundary that merely starts with ours
        before = i
        if i > 0:
            before = i - 2 if i > 1 and body[i - 2] == 0x0D else i - 1
        marks.append((before, len(body) if eol < 0 else eol + 1, rest == b"--"))
        if rest == b"--":
            break
    parts: list[bytes] = []
    for n, (_, after, closing) in enumerate(marks):
        if closing:
            break
        end = marks[n + 1][0] if n + 1 < len(marks) else len(body)
        parts.append(body[after:end])
    return parts


def _is_text_body(headers: Message) -> bool:
    ctype = headers.get_content_type()
    if ctype not in TEXT_BODY_TYPES:
        return False
    if headers.get_content_disposition() == "attachment":
        return False
    return not headers.get_filename()


def _walk(data: bytes, report: AttachmentReport, depth: int, inside_attached_message: bool,
          default_type: str = "text/plain") -> None:
    block, body = split_entity(data)
    headers = parse_headers(block)
    if "content-type" not in headers:
        headers.set_default_type(default_type)
    ctype = headers.get_content_type()
    if depth > MAX_DEPTH:
        report.add(AttachmentPart(ctype, None, len(body)))
        return
    if ctype.startswith("multipart/"):
        boundary = headers.get_param("boundary")
        if isinstance(boundary, str) and boundary:
            # RFC 2046 §5.1.5: parts of multipart/digest default to message/rfc822
            child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            for child in multipart_children(body, boundary.encode("utf-8", "surrogateescape")):
                _walk(child, report, depth + 1, inside_attached_message, child_default)
            return
        # no boundary: not parseable as multipart; count its raw size
    if ctype == "message/rfc822":
        cte = (headers.get("content-transfer-encoding") or "7bit").strip().lower()
        if cte in ("7bit", "8bit", "binary"):
            _walk(body, report, depth + 1, True)
            return
    if not inside_attached_message and _is_text_body(headers):
        return
    cte = str(headers.get("content-transfer-encoding") or "7bit")
    report.add(AttachmentPart(ctype, headers.get_filename(), decoded_size(body, cte)))


def attachment_report(message: bytes) -> AttachmentReport:
    """Every counted part of `message` (raw RFC 5322 bytes) and their decoded total."""
    report = AttachmentReport()
    _walk(message, report, 0, False)
    return report


def attachment_bytes(message: bytes) -> int:
    """Đ7.3.b: sum of the decoded sizes of every part that is not the message's text body."""
    return attachment_report(message).total
