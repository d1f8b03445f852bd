"""FETCH (RFC 3501 §6.4.5): the first-sync items, ENVELOPE, BODYSTRUCTURE, BODY[section]<partial>,
RFC822.*, BINARY (RFC 3516), \\Seen on reading; byte-exact bodies."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imap_gateway.fetch import DateFormatter
from tests.imap_support import message

NESTED = (
    "From: =?utf-8?b?VHLhuqduIFRo4buLIELDrG5o?= <binh@phuyen.gov.vn>\r\n"
    "Sender: vp@phuyen.gov.vn\r\n"
    "To: \"Lê, Văn\" <le@example.com>, Nhóm: a@b.vn, \"c d\" <c@d.vn>;, x@y.vn (chú thích)\r\n"
    "Cc: undisclosed-recipients:;\r\n"
    "Subject: =?utf-8?b?QsOhbyBjw6FvIHF1w70gSQ==?=\r\n"
    "Date: Tue, 06 Jan 2026 09:30:00 +0700\r\n"
    "Message-ID: <nested@phuyen.gov.vn>\r\n"
    "In-Reply-To: <prev@phuyen.gov.vn>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=outer\r\n"
    "\r\n"
    "This is a multi-part message.\r\n"
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=alt\r\n"
    "\r\n"
    "--alt\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "B=C3=A1o c=C3=A1o\r\n"
    "d=C3=B2ng hai\r\n"
    "--alt\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<p>Báo cáo</p>\r\n"
    "--alt--\r\n"
    "--outer\r\n"
    "Content-Type: application/pdf; name=\"bc.pdf\"\r\n"
    "Content-Disposition: attachment; filename=\"bc.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "Content-ID: <pdf1>\r\n"
    "Content-Description: the report\r\n"
    "Content-Language: vi\r\n"
    "\r\n"
    "JVBERi0xLjQKAAECAw==\r\n"
    "--outer\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "From: inner@example.com\r\n"
    "Subject: inner\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "inner body\r\n"
    "--outer--\r\n"
).encode()


def sexp(data: bytes):
    """Parse an IMAP parenthesised list (atoms, quoted strings, literals, NIL) for assertions."""
    pos = 0

    def value():
        nonlocal pos
        while data[pos:pos + 1] == b" ":
            pos += 1
        c = data[pos:pos + 1]
        if c == b"(":
            pos += 1
            out = []
            while data[pos:pos + 1] != b")":
                out.append(value())
                while data[pos:pos + 1] == b" ":
                    pos += 1
            pos += 1
            return out
        if c == b'"':
            m = re.compile(rb'"((?:[^"\\]|\\.)*)"').match(data, pos)
            pos = m.end()
            return re.sub(rb"\\(.)", rb"\1", m.group(1)).decode("utf-8", "surrogateescape")
        if c == b"{":
            m = re.compile(rb"\{(\d+)\}\r\n").match(data, pos)
            pos = m.end() + int(m.group(1))
            return data[m.end():pos].decode("utf-8", "surrogateescape")
        m = re.compile(rb"[^ ()]+").match(data, pos)
        pos = m.end()
        word = m.group().decode()
        return None if word == "NIL" else int(word) if word.isdigit() else word

    return value()


def item(line: bytes, name: bytes):
    """The value of FETCH item `name` in a `* n FETCH (...)` line."""
    i = line.index(name + b" ") + len(name) + 1
    return sexp(line[i:])


@pytest.fixture
def nested(imap_server, imap_user, wire):
    uid = imap_server.deliver(imap_user, NESTED).uid
    wire.ok("SELECT INBOX")
    return uid


def test_thunderbird_first_sync_items(imap_server, imap_user, wire):
    msg = message("Giấy mời họp", sender="Phạm Thị Dung <dung@phuyen.gov.vn>", extra_headers="X-Other: yes\r\n")
    imap_server.deliver(imap_user, msg, flags=frozenset({"\\Seen"}))
    wire.ok("SELECT INBOX")
    lines = wire.ok("UID FETCH 1:* (FLAGS RFC822.SIZE INTERNALDATE "
                    "BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)])")
    line = lines[0]
    # \Recent: this session is the first to see the message (RFC 3501 §2.3.2)
    assert line.startswith(b"* 1 FETCH (UID 1 FLAGS (\\Recent \\Seen) RFC822.SIZE %d INTERNALDATE \"" % len(msg))
    assert re.search(rb'INTERNALDATE "\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d \+0700"', line)
    headers = line.split(b"BODY[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)] {", 1)[1]
    body = headers.split(b"}\r\n", 1)[1]
    assert body.startswith(b"From: ") and b"X-Other" not in body and b"MIME-Version" not in body
    assert body.endswith(b"\r\n\r\n)\r\n")


def test_envelope(nested, wire):
    env = item(wire.ok("FETCH 1 ENVELOPE")[0], b"ENVELOPE")
    date, subject, frm, sender, reply_to, to, cc, bcc, in_reply_to, message_id = env
    assert date == "Tue, 06 Jan 2026 09:30:00 +0700"
    assert subject == "=?utf-8?b?QsOhbyBjw6FvIHF1w70gSQ==?="  # ENVELOPE keeps RFC 2047 words
    assert frm == [["=?utf-8?b?VHLhuqduIFRo4buLIELDrG5o?=", None, "binh", "phuyen.gov.vn"]]
    assert sender == [[None, None, "vp", "phuyen.gov.vn"]]
    assert reply_to == frm  # defaults to From (RFC 3501 §7.4.2)
    assert to == [
        ["Lê, Văn", None, "le", "example.com"],
        [None, None, "Nhóm", None],  # group start
        [None, None, "a", "b.vn"],
        ["c d", None, "c", "d.vn"],
        [None, None, None, None],  # group end
        [None, None, "x", "y.vn"],
    ]
    assert cc == [[None, None, "undisclosed-recipients", None], [None, None, None, None]]
    assert bcc is None
    assert in_reply_to == "<prev@phuyen.gov.vn>" and message_id == "<nested@phuyen.gov.vn>"


def test_bodystructure_of_nested_multipart(nested, wire):
    bs = item(wire.ok("FETCH 1 BODYSTRUCTURE")[0], b"BODYSTRUCTURE")
    alternative, pdf, rfc822, subtype, params, disposition, language, location = bs
    assert subtype == "MIXED" and params == ["BOUNDARY", "outer"]
    assert disposition is None and language is None and location is None
    plain, html, alt_sub = alternative[:3]
    assert alt_sub == "ALTERNATIVE"
    assert plain[:7] == ["TEXT", "PLAIN", ["CHARSET", "utf-8"], None, None, "QUOTED-PRINTABLE", 32]
    assert plain[7] == 1  # lines: line breaks inside the part, as Dovecot counts them
    assert html[:2] == ["TEXT", "HTML"]
    assert pdf[:7] == ["APPLICATION", "PDF", ["NAME", "bc.pdf"], "<pdf1>", "the report", "BASE64", 20]
    assert pdf[8] == ["ATTACHMENT", ["FILENAME", "bc.pdf"]]
    assert pdf[9] == "vi"
    assert rfc822[:2] == ["MESSAGE", "RFC822"]
    inner_env, inner_body = rfc822[7], rfc822[8]
    assert inner_env[1] == "inner"
    assert inner_body[:2] == ["TEXT", "PLAIN"]
    body = item(wire.ok("FETCH 1 BODY")[0], b"BODY")  # the non-extensible form
    assert body[-1] == "MIXED" and len(body[1]) == 7


def test_sections_are_byte_exact(nested, wire):
    def section(spec: str) -> bytes:
        line = wire.ok(f"FETCH 1 BODY.PEEK[{spec}]")[0]
        m = re.search(rb"\{(\d+)\}\r\n", line)
        assert m, line
        return line[m.end() : m.end() + int(m.group(1))]

    assert section("") == NESTED
    header, _, text = NESTED.partition(b"\r\n\r\n")
    assert section("HEADER") == header + b"\r\n\r\n"
    assert section("TEXT") == text
    assert section("1.1") == b"B=C3=A1o c=C3=A1o\r\nd=C3=B2ng hai"
    assert section("1.2") == "<p>Báo cáo</p>".encode()
    assert section("2") == b"JVBERi0xLjQKAAECAw=="
    assert section("2.MIME").startswith(b"Content-Type: application/pdf") and section("2.MIME").endswith(b"\r\n\r\n")
    assert section("3").startswith(b"From: inner@example.com")  # the whole attached message
    assert section("3.HEADER") == b"From: inner@example.com\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\n"
    assert section("3.TEXT") == b"inner body"
    assert section("3.1") == b"inner body"
    assert section("HEADER.FIELDS (SUBJECT DATE)") == (
        b"Subject: =?utf-8?b?QsOhbyBjw6FvIHF1w70gSQ==?=\r\nDate: Tue, 06 Jan 2026 09:30:00 +0700\r\n\r\n")
    not_fields = section("HEADER.FIELDS.NOT (SUBJECT TO CC FROM)")
    assert b"Subject:" not in not_fields and b"Message-ID:" in not_fields
    assert section("HEADER.FIELDS (X-NOT-THERE)") == b"\r\n"
    assert b"BODY[4] NIL" in wire.ok("FETCH 1 BODY.PEEK[4]")[0]


def test_partial_fetch(nested, wire):
    line = wire.ok("FETCH 1 BODY.PEEK[]<10.20>")[0]
    assert b"BODY[]<10> {20}\r\n" + NESTED[10:30] in line
    line = wire.ok(f"FETCH 1 BODY.PEEK[]<{len(NESTED) - 5}.100>")[0]
    assert line.endswith(b"{5}\r\n" + NESTED[-5:] + b")\r\n")
    # RFC 3501 §6.4.5: an origin beyond the end gives an empty string
    assert b"BODY[]<99999> {0}\r\n)" in wire.ok("FETCH 1 BODY.PEEK[]<99999.10>")[0]


def test_rfc822_items_and_binary(nested, wire):
    line = wire.ok("FETCH 1 (RFC822.SIZE RFC822.HEADER)")[0]
    assert b"RFC822.SIZE %d" % len(NESTED) in line and b"RFC822.HEADER {" in line
    line = wire.ok("FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1.1])")[0]
    assert b"BINARY[2] ~{13}\r\n%PDF-1.4\n\x00\x01\x02\x03" in line  # literal8: it holds NUL
    assert b"BINARY.SIZE[2] 13" in line
    assert "BINARY[1.1] {20}\r\nBáo cáo\r\ndòng hai".encode() in line
    assert b"NO" in wire.cmd("FETCH 1 BINARY.PEEK[1]")[-1]  # a multipart has no content of its own


def test_reading_sets_seen_unless_peek(imap_server, imap_user, wire):
    for i in range(3):
        imap_server.deliver(imap_user, message(f"đọc {i}"))
    wire.ok("SELECT INBOX")
    assert b"FLAGS" not in wire.ok("FETCH 1 BODY.PEEK[]")[0].split(b"}")[0]
    assert b"\\Seen" not in b"".join(wire.ok("FETCH 1 FLAGS"))
    line = wire.ok("FETCH 1 BODY[TEXT]")[0]
    assert line.endswith(b" FLAGS (\\Recent \\Seen))\r\n")  # the new flags come in the same response
    line = wire.ok("FETCH 2 RFC822")[0]
    assert b"\\Seen" in line
    assert b"\\Seen" not in wire.ok("FETCH 3 FLAGS")[0]


def test_fetch_macros_and_uid_always_present(imap_server, imap_user, wire):
    imap_server.deliver(imap_user, message("macro"))
    wire.ok("SELECT INBOX")
    line = wire.ok("FETCH 1 FULL")[0]
    for name in (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY ("):
        assert name in line
    assert wire.ok("UID FETCH 1 FLAGS")[0].startswith(b"* 1 FETCH (UID 1 FLAGS")


def test_bad_sequence_numbers(imap_server, imap_user, wire):
    imap_server.deliver(imap_user, message("một"))
    wire.ok("SELECT INBOX")
    assert b"BAD" in wire.cmd("FETCH 5 FLAGS")[-1]
    assert wire.ok("UID FETCH 5:* FLAGS")[0].startswith(b"* 1 FETCH (UID 1")  # n:* includes the last UID
    assert wire.ok("UID FETCH 7 FLAGS") == [wire.last_tag + b" OK FETCH completed\r\n"]
    assert b"BAD" in wire.cmd("FETCH 1 (FLAGS BOGUS)")[-1]


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)),
       st.sampled_from(["Asia/Ho_Chi_Minh", "America/New_York", "Australia/Adelaide", "Asia/Kathmandu"]))
def test_internaldate_formatting_matches_the_zone(when, zone):
    """The cached formatter (offset per quarter hour, date per day) agrees with zoneinfo, DST included."""
    tz = ZoneInfo(zone)
    fmt = DateFormatter(tz)
    when = when.replace(microsecond=0)
    for moment in (when, when + timedelta(minutes=20), when + timedelta(days=1)):
        assert fmt(moment) == moment.astimezone(tz).strftime('"%d-%b-%Y %H:%M:%S %z"').encode()
