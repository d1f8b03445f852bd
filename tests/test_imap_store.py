"""STORE and UID STORE (RFC 3501 §6.4.6): replace, add, remove, .SILENT, keywords,
UNCHANGEDSINCE with [MODIFIED] (RFC 7162 §3.1.3); flags survive in the Maildir files."""

from __future__ import annotations

import re

import pytest

from tests.imap_support import Wire


@pytest.fixture(autouse=True)
def mail(imap_server, imap_user, wire):
    imap_server.fill(imap_user, 3, "cờ {i}")
    wire.ok("SELECT INBOX")


def test_add_remove_replace(wire):
    assert wire.ok("STORE 1 +FLAGS (\\Flagged \\Seen)")[0] == b"* 1 FETCH (FLAGS (\\Flagged \\Recent \\Seen))\r\n"
    assert wire.ok("STORE 1 -FLAGS (\\Seen)")[0] == b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
    assert wire.ok("STORE 1 FLAGS (\\Answered)")[0] == b"* 1 FETCH (FLAGS (\\Answered \\Recent))\r\n"
    assert wire.ok("STORE 1 FLAGS ()")[0] == b"* 1 FETCH (FLAGS (\\Recent))\r\n"


def test_silent_sends_nothing_and_uid_store_names_uids(wire):
    assert wire.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)") == [wire.last_tag + b" OK STORE completed\r\n"]
    lines = wire.ok("UID STORE 2 -FLAGS (\\Deleted)")
    assert lines[0] == b"* 2 FETCH (UID 2 FLAGS (\\Recent))\r\n"


def test_keywords_are_kept(imap_server, imap_user, wire):
    wire.ok("STORE 2 +FLAGS ($Forwarded Công_việc)".replace("Công_việc", "CongViec"))
    other = Wire(imap_server, user=imap_user)
    other.ok("EXAMINE INBOX")
    assert b"$Forwarded CongViec" in other.ok("FETCH 2 FLAGS")[0]
    lines = b"".join(other.ok("EXAMINE INBOX"))
    assert b"$Forwarded" in lines.split(b"\r\n")[0]  # FLAGS lists the folder's keywords
    other.close()


def test_unchangedsince(wire):
    modseq = max(int(m) for m in re.findall(rb"MODSEQ \((\d+)\)", b"".join(wire.ok("FETCH 1:2 (MODSEQ)"))))
    lines = wire.ok(f"STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS.SILENT (\\Seen)")
    new = int(re.search(rb"MODSEQ \((\d+)\)", lines[0]).group(1))
    assert lines[0].startswith(b"* 1 FETCH (UID 1 MODSEQ (") and new > modseq  # .SILENT still reports MODSEQ
    lines = wire.ok(f"STORE 1:2 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Flagged)")
    assert lines[-1].startswith(wire.last_tag + b" OK [MODIFIED 1]")
    assert b"* 2 FETCH" in b"".join(lines) and b"* 1 FETCH" not in b"".join(lines)
    lines = wire.ok("UID STORE 1:3 (UNCHANGEDSINCE 1) +FLAGS (\\Draft)")
    assert b"[MODIFIED 1:3]" in lines[-1]


def test_bad_store_commands(wire):
    assert b"BAD" in wire.cmd("STORE 1 FLAGS (\\Recent)")[-1]
    assert b"BAD" in wire.cmd("STORE 1 +FLAG (\\Seen)")[-1]
    assert b"BAD" in wire.cmd("STORE 1 +FLAGS (\\Bogus)")[-1]
    assert b"BAD" in wire.cmd("STORE 9 +FLAGS (\\Seen)")[-1]
