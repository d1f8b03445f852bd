"""SELECT, EXAMINE, STATUS, CHECK, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE (RFC 3501 §6.3–6.4, RFC 4315, RFC 3691)."""

from __future__ import annotations


def test_select_reports_everything_rfc3501_requires(imap_server, imap_user, wire):
    imap_server.fill(imap_user, 2, flags=("\\Seen",))
    imap_server.fill(imap_user, 1)
    lines = wire.ok("SELECT INBOX")
    text = b"".join(lines)
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft" in text
    assert b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft" in text and b"\\*)]" in text
    assert b"* 3 EXISTS\r\n" in lines
    assert any(ln.startswith(b"* ") and ln.endswith(b" RECENT\r\n") for ln in lines)
    assert b"* OK [UNSEEN 3]" in text  # the first unseen message's number
    assert b"* OK [UIDVALIDITY " in text and b"* OK [UIDNEXT 4]" in text
    assert b"* OK [HIGHESTMODSEQ " in text
    assert lines[-1].startswith(wire.last_tag + b" OK [READ-WRITE]")


def test_examine_is_read_only(imap_server, imap_user, wire):
    imap_server.fill(imap_user, 1)
    lines = wire.ok("EXAMINE INBOX")
    assert b"* OK [PERMANENTFLAGS ()]" in b"".join(lines)
    assert lines[-1].startswith(wire.last_tag + b" OK [READ-ONLY]")
    wire.ok("FETCH 1 BODY[TEXT]")  # reading does not set \Seen in a read-only folder
    assert b"\\Seen" not in b"".join(wire.ok("FETCH 1 FLAGS"))
    assert b"NO [READ-ONLY]" in wire.cmd("STORE 1 +FLAGS (\\Deleted)")[-1]
    assert b"NO [READ-ONLY]" in wire.cmd("EXPUNGE")[-1]


def test_select_of_a_missing_folder_leaves_nothing_selected(wire):
    wire.ok("SELECT INBOX")
    assert b"NO [NONEXISTENT]" in wire.cmd("SELECT Nowhere")[-1]
    assert b"BAD" in wire.cmd("FETCH 1 FLAGS")[-1]  # RFC 3501 §6.3.1: the failed SELECT closed INBOX


def test_status_items_come_from_the_index(imap_server, imap_user, wire):
    imap_server.fill(imap_user, 2)
    imap_server.fill(imap_user, 1, flags=("\\Seen", "\\Deleted"))
    lines = wire.ok("STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE DELETED APPENDLIMIT)")
    status = lines[0]
    assert status.startswith(b'* STATUS "INBOX" (MESSAGES 3 RECENT ')
    for item in (b"UIDNEXT 4", b"UNSEEN 2", b"DELETED 1", b"HIGHESTMODSEQ ", b"SIZE ", b"APPENDLIMIT "):
        assert item in status
    assert b"BAD" in wire.cmd("STATUS INBOX (BOGUS)")[-1]
    assert b"NO [NONEXISTENT]" in wire.cmd("STATUS Nowhere (MESSAGES)")[-1]


def test_expunge_reports_each_removed_message_highest_first(imap_server, imap_user, wire):
    imap_server.fill(imap_user, 4)
    wire.ok("SELECT INBOX")
    wire.ok("STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    lines = wire.ok("EXPUNGE")
    assert lines[:-1] == [b"* 4 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    assert b"* 2 EXISTS" not in b"".join(lines)
    fetched = b"".join(wire.ok("FETCH 1:* (UID)"))
    assert b"UID 1)" in fetched and b"UID 3)" in fetched and b"UID 2)" not in fetched


def test_uid_expunge_removes_only_the_named_messages(imap_server, imap_user, wire):
    """RFC 4315 §2.1: another client's \\Deleted marks survive."""
    imap_server.fill(imap_user, 3)
    wire.ok("SELECT INBOX")
    wire.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    lines = wire.ok("UID EXPUNGE 2")
    assert lines[:-1] == [b"* 2 EXPUNGE\r\n"]
    assert b"MESSAGES 2" in wire.ok("STATUS INBOX (MESSAGES)")[0]
    assert b"(\\Deleted" in wire.ok("FETCH 2 FLAGS")[0]  # what was message 3 keeps its mark


def test_close_expunges_silently_and_unselect_does_not(imap_server, imap_user, wire):
    imap_server.fill(imap_user, 2)
    wire.ok("SELECT INBOX")
    wire.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert wire.ok("UNSELECT") == [wire.last_tag + b" OK UNSELECT completed\r\n"]
    assert b"MESSAGES 2" in wire.ok("STATUS INBOX (MESSAGES)")[0]
    wire.ok("SELECT INBOX")
    lines = wire.ok("CLOSE")
    assert lines == [wire.last_tag + b" OK CLOSE completed\r\n"]  # no untagged EXPUNGE (RFC 3501 §6.4.2)
    assert b"MESSAGES 1" in wire.ok("STATUS INBOX (MESSAGES)")[0]
    assert b"BAD" in wire.cmd("CLOSE")[-1]


def test_check_and_noop_in_selected_state(wire):
    wire.ok("SELECT INBOX")
    wire.ok("CHECK")
    wire.ok("NOOP")
