"""APPEND (RFC 3501 §6.3.11) with APPENDUID (RFC 4315), APPENDLIMIT (RFC 7889), the Đ7.3.b
attachment rule and the Đ7.3 quota, LITERAL+ (RFC 7888) and UTF8 (RFC 6855)."""

from __future__ import annotations

import os
import re

import pytest

from policy.limits import message_size_limit
from policy.model import AttachmentPolicy
from tests.imap_support import Wire, make_server, message

# Small limits so the tests move kilobytes, not the production megabytes: the rules are the same functions.
POLICY = "attachments:\n  max_total: 64KiB\n  message_overhead: 16KiB\nquota:\n  default: 300KiB\n"
LIMIT = message_size_limit(AttachmentPolicy(max_total=64 * 1024, message_overhead=16 * 1024))


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory):
    with make_server(tmp_path_factory.mktemp("imap-append"), policy=POLICY) as srv:
        yield srv


def append(wire: Wire, data: bytes, args: str = "INBOX", plus: bool = False) -> list[bytes]:
    wire.n += 1
    marker = b"{%d+}" % len(data) if plus else b"{%d}" % len(data)
    wire.send(b"%s APPEND %s %s\r\n" % (wire.last_tag, args.encode(), marker))
    if not plus:
        first = wire.line()
        if not first.startswith(b"+"):
            return [first]
    wire.send(data + b"\r\n")
    return wire.until(wire.last_tag)


def test_appenduid_flags_and_internal_date(imap_server, imap_user, wire):
    msg = message("Bản nháp")
    lines = append(wire, msg, 'Drafts (\\Draft \\Seen) "05-Jan-2026 08:00:00 +0700"')
    m = re.match(rb"t\d+ OK \[APPENDUID (\d+) (\d+)\]", lines[-1])
    assert m, lines
    wire.ok("SELECT Drafts")
    line = wire.ok(f"UID FETCH {int(m.group(2))} (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")[0]
    assert b"\\Draft" in line and b"\\Seen" in line
    assert b'INTERNALDATE "05-Jan-2026 08:00:00 +0700"' in line
    assert msg in line  # byte for byte
    assert b"APPENDLIMIT=%d" % LIMIT in wire.ok("CAPABILITY")[0]


def test_append_to_the_selected_folder_announces_exists(imap_server, imap_user, wire):
    wire.ok("SELECT INBOX")
    lines = append(wire, message("mới"))
    assert b"* 1 EXISTS\r\n" in lines


def test_literal_plus_and_bare_lf(wire):
    lines = append(wire, b"Subject: lf only\nFrom: a@b.vn\n\nbody\n", plus=True)
    assert lines[-1].startswith(wire.last_tag + b" OK [APPENDUID")
    wire.ok("SELECT INBOX")
    assert b"{40}\r\nSubject: lf only\r\nFrom: a@b.vn\r\n\r\nbody\r\n" in wire.ok("FETCH 1 BODY.PEEK[]")[0]


def test_missing_folder_gets_trycreate(wire):
    lines = append(wire, message(), "Nowhere")
    assert lines[-1].startswith(wire.last_tag + b" NO [TRYCREATE]")


def test_too_big_is_refused_before_the_upload(wire):
    lines = append(wire, b"x" * (LIMIT + 1))
    assert len(lines) == 1 and lines[0].startswith(wire.last_tag + b" NO [TOOBIG]")  # no "+" was sent
    wire.ok("NOOP")  # and the connection is in step


def test_attachment_rule_of_article_7_3_b(wire):
    ok = message("vừa", attachment=os.urandom(60 * 1024))
    assert append(wire, ok)[-1].startswith(wire.last_tag + b" OK")
    big = message("quá lớn", attachment=os.urandom(70 * 1024))
    assert len(big) <= LIMIT  # the message fits APPENDLIMIT: it is the decoded attachments that are too much
    lines = append(wire, big)
    assert lines[-1].startswith(wire.last_tag + b" NO [LIMIT]") and b"7.3.b" in lines[-1]


def test_over_quota_before_and_after_upload(imap_server, imap_user, wire):
    for i in range(3):
        assert append(wire, message(f"đầy {i}", attachment=os.urandom(60 * 1024)))[-1].startswith(
            wire.last_tag + b" OK")
    usage = imap_server.usage(imap_user)
    assert usage.bytes > 240 * 1024
    big = message("không vừa", attachment=os.urandom(50 * 1024))
    lines = append(wire, big)  # synchronising literal: refused before "+"
    assert len(lines) == 1 and lines[0].startswith(wire.last_tag + b" NO [OVERQUOTA]")
    lines = append(wire, big, plus=True)  # LITERAL+: the data arrives anyway; refused all the same
    assert lines[-1].startswith(wire.last_tag + b" NO [OVERQUOTA]")
    wire.ok("NOOP")
    quota = b"".join(wire.ok("GETQUOTAROOT INBOX"))
    assert b'* QUOTA "" (STORAGE %d 300)' % ((usage.bytes + 1023) // 1024) in quota


def test_utf8_append(wire):
    msg = "From: Nguyễn <a@phuyen.gov.vn>\r\nSubject: Thư UTF-8 thật\r\n\r\nnội dung\r\n".encode()
    assert b"BAD" in wire.cmd(b"APPEND INBOX UTF8 (~{%d+}\r\n%s)" % (len(msg), msg))[-1]
    wire.ok("ENABLE UTF8=ACCEPT")
    wire.ok(b"APPEND INBOX UTF8 (~{%d+}\r\n%s)" % (len(msg), msg))
    wire.ok("SELECT INBOX")
    assert "Subject: Thư UTF-8 thật".encode() in b"".join(wire.ok("FETCH 1 BODY.PEEK[HEADER]"))


def test_append_before_login_is_refused_without_upload(imap_server):
    w = Wire(imap_server)
    w.n += 1
    w.send(b"t1 APPEND INBOX {10}\r\n")
    assert w.line().startswith(b"t1 BAD APPEND is not allowed before login")
    w.close()
