"""CONDSTORE and QRESYNC (RFC 7162): HIGHESTMODSEQ, MODSEQ, CHANGEDSINCE, VANISHED, SELECT (QRESYNC ...)."""

from __future__ import annotations

import re

import pytest

from tests.imap_support import Wire


def modseq_of(lines: list[bytes], code: bytes = b"HIGHESTMODSEQ") -> int:
    m = re.search(code + rb" (\d+)\]", b"".join(lines))
    assert m, lines
    return int(m.group(1))


@pytest.fixture(autouse=True)
def mail(imap_server, imap_user):
    imap_server.fill(imap_user, 5, "đồng bộ {i}")


def test_enable(wire):
    assert wire.ok("ENABLE CONDSTORE")[0] == b"* ENABLED CONDSTORE\r\n"
    assert wire.ok("ENABLE CONDSTORE X-UNKNOWN")[0] == b"* ENABLED\r\n"  # already on; unknown ignored
    assert wire.ok("ENABLE QRESYNC")[0] == b"* ENABLED QRESYNC\r\n"


def test_changedsince_and_unsolicited_modseq(imap_server, imap_user, wire):
    start = modseq_of(wire.ok("SELECT INBOX (CONDSTORE)"))
    other = Wire(imap_server, user=imap_user)
    other.ok("SELECT INBOX")
    other.ok("STORE 2 +FLAGS (\\Seen)")
    lines = wire.ok("NOOP")
    assert re.fullmatch(rb"\* 2 FETCH \(UID 2 FLAGS \(.*\\Seen\) MODSEQ \((\d+)\)\)\r\n", lines[0]), lines
    lines = wire.ok(f"FETCH 1:* (UID FLAGS) (CHANGEDSINCE {start})")
    assert [ln.split(b" ")[1] for ln in lines[:-1]] == [b"2"]
    assert b"MODSEQ (" in lines[0]  # CHANGEDSINCE implies MODSEQ
    other.close()


def test_qresync_select_replays_changes(imap_server, imap_user, wire):
    wire.ok("ENABLE QRESYNC")
    lines = wire.ok("SELECT INBOX")
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(lines)).group(1))
    known = modseq_of(lines)
    wire.ok("UNSELECT")
    other = Wire(imap_server, user=imap_user)
    other.ok("SELECT INBOX")
    other.ok("STORE 1 +FLAGS (\\Flagged)")
    other.ok("STORE 3:4 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    other.close()
    lines = wire.ok(f"SELECT INBOX (QRESYNC ({uidvalidity} {known} 1:5))")
    text = b"".join(lines)
    assert b"* VANISHED (EARLIER) 3:4\r\n" in text
    assert re.search(rb"\* 1 FETCH \(UID 1 FLAGS \([^)]*\\Flagged[^)]*\) MODSEQ \(\d+\)\)", text)
    assert b"* 3 EXISTS" in text
    # A wrong UIDVALIDITY gets no replay: the client must resync from scratch.
    lines = wire.ok(f"SELECT INBOX (QRESYNC ({uidvalidity + 1} {known}))")
    assert b"VANISHED" not in b"".join(lines)
    assert lines[0] == b"* OK [CLOSED] previous folder closed\r\n"  # RFC 7162 §3.2.11


def test_vanished_replaces_expunge_and_uid_fetch_vanished(imap_server, imap_user, wire):
    wire.ok("ENABLE QRESYNC")
    known = modseq_of(wire.ok("SELECT INBOX"))
    wire.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert wire.ok("EXPUNGE")[0] == b"* VANISHED 2\r\n"
    lines = wire.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {known} VANISHED)")
    assert lines[0] == b"* VANISHED (EARLIER) 2\r\n"
    assert b"BAD" in wire.cmd(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {known} VANISHED)")[-1]


def test_status_highestmodseq_grows(wire):
    before = int(re.search(rb"HIGHESTMODSEQ (\d+)", wire.ok("STATUS INBOX (HIGHESTMODSEQ)")[0]).group(1))
    wire.ok("SELECT INBOX")
    wire.ok("STORE 1 +FLAGS (\\Answered)")
    after = int(re.search(rb"HIGHESTMODSEQ (\d+)", wire.ok("STATUS INBOX (HIGHESTMODSEQ)")[0]).group(1))
    assert after > before
