"""COPY, MOVE and their UID forms (RFC 3501 §6.4.7, RFC 6851, COPYUID RFC 4315)."""

from __future__ import annotations

import re

import pytest


@pytest.fixture(autouse=True)
def mail(imap_server, imap_user, wire):
    imap_server.fill(imap_user, 4, "chuyển {i}")
    wire.ok("SELECT INBOX")


def test_copy_returns_copyuid_and_keeps_the_source(wire):
    lines = wire.ok("COPY 2:3 Archive")
    m = re.match(rb"t\d+ OK \[COPYUID (\d+) 2:3 1:2\]", lines[-1])
    assert m, lines
    assert b"MESSAGES 2" in wire.ok("STATUS Archive (MESSAGES)")[0]
    assert b"* 4 EXISTS" not in b"".join(wire.ok("NOOP"))
    assert b"* 5 EXISTS\r\n" in wire.ok("COPY 1 INBOX")  # into the selected folder: a new message appears


def test_move_to_trash_reports_copyuid_then_expunges(wire):
    """Thunderbird's delete: UID MOVE to Trash."""
    lines = wire.ok("UID MOVE 2,4 Trash")
    assert re.match(rb"\* OK \[COPYUID \d+ 2,4 1:2\]", lines[0]), lines
    assert lines[1:-1] == [b"* 4 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]  # highest first: numbers stay valid
    assert b"MESSAGES 2" in wire.ok("STATUS Trash (MESSAGES)")[0]
    assert b"MESSAGES 2" in wire.ok("STATUS INBOX (MESSAGES)")[0]
    lines = wire.ok("MOVE 1 Junk")
    assert lines[1:-1] == [b"* 1 EXPUNGE\r\n"]
    assert wire.ok("FETCH 1 UID")[0] == b"* 1 FETCH (UID 3)\r\n"


def test_missing_destination_gets_trycreate(wire):
    assert wire.cmd("COPY 1 Nowhere")[-1].startswith(wire.last_tag + b" NO [TRYCREATE]")
    assert wire.cmd("UID MOVE 1 Nowhere")[-1].startswith(wire.last_tag + b" NO [TRYCREATE]")


def test_copy_keeps_flags(wire):
    wire.ok("STORE 1 +FLAGS ($Important \\Flagged)")
    wire.ok("COPY 1 Archive")
    wire.ok("SELECT Archive")
    line = wire.ok("FETCH 1 FLAGS")[0]
    assert b"\\Flagged" in line and b"$Important" in line


def test_read_only_folder_cannot_move(wire):
    wire.ok("EXAMINE INBOX")
    assert b"NO [READ-ONLY]" in wire.cmd("MOVE 1 Trash")[-1]
    wire.ok("COPY 1 Trash")  # copying out of a read-only folder is fine
