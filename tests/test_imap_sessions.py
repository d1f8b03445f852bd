"""Two sessions on one folder see each other's changes at the moments RFC 3501 §7 allows:
flag changes and new messages before any tagged reply, expunges never during FETCH, STORE or
SEARCH (so the message numbers a client just used stay valid), but during their UID forms."""

from __future__ import annotations

import pytest

from tests.imap_support import Wire, message


@pytest.fixture
def pair(imap_server, imap_user):
    for i in range(3):
        imap_server.deliver(imap_user, message(f"chung {i}"))
    a, b = Wire(imap_server, user=imap_user), Wire(imap_server, user=imap_user)
    a.ok("SELECT INBOX")
    b.ok("SELECT INBOX")
    yield a, b
    a.close()
    b.close()


def test_flag_changes_are_seen_by_the_other_session(pair):
    a, b = pair
    b.ok("STORE 2 +FLAGS (\\Seen $Work)")
    lines = a.ok("NOOP")
    assert lines[0] == b"* 2 FETCH (UID 2 FLAGS (\\Recent \\Seen $Work))\r\n"  # a selected first: \\Recent is a's
    assert a.ok("NOOP") == [a.last_tag + b" OK NOOP completed\r\n"]  # reported once
    assert b.ok("NOOP") == [b.last_tag + b" OK NOOP completed\r\n"]  # b already knew: not echoed back


def test_new_messages_reach_the_other_session(imap_server, imap_user, pair):
    a, b = pair
    imap_server.deliver(imap_user, message("thư mới"))
    assert b"* 4 EXISTS\r\n" in a.ok("NOOP")
    assert b"* 4 EXISTS\r\n" in b.ok("CHECK")


def test_expunge_waits_until_the_rfc_allows_it(pair):
    a, b = pair
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    # FETCH, STORE and SEARCH (by message number) must not renumber under the client's feet.
    for cmd in ("FETCH 1:* (UID)", "STORE 1 +FLAGS.SILENT ($Seen2)", "SEARCH ALL"):
        lines = a.ok(cmd)
        assert not any(b"EXPUNGE" in ln for ln in lines), (cmd, lines)
    lines = a.ok("FETCH 1:* (UID)")
    assert b"UID 2)" not in b"".join(lines)  # the expunged message has no data to show
    assert b"* 2 EXPUNGE\r\n" in a.ok("NOOP")
    assert a.ok("FETCH 2 (UID)")[0] == b"* 2 FETCH (UID 3)\r\n"


def test_uid_commands_may_receive_expunges(pair):
    a, b = pair
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    lines = a.ok("UID FETCH 1:* (FLAGS)")
    assert b"* 1 EXPUNGE\r\n" in lines


def test_both_sessions_expunging(pair):
    a, b = pair
    a.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    b_lines = b.ok("EXPUNGE")
    a_lines = a.ok("EXPUNGE")
    expunges = [b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"]
    assert [ln for ln in b_lines if ln.endswith(b" EXPUNGE\r\n")] == expunges  # b learnt a's flags first
    assert [ln for ln in a_lines if ln.endswith(b" EXPUNGE\r\n")] == expunges  # a: b's expunge, reported now
    assert b"MESSAGES 0" in a.ok("STATUS INBOX (MESSAGES)")[0]


def test_deleting_the_folder_another_session_has_selected(imap_server, imap_user):
    a, b = Wire(imap_server, user=imap_user), Wire(imap_server, user=imap_user)
    a.ok("CREATE Tmp")
    a.ok("SELECT Tmp")
    b.ok("DELETE Tmp")
    a.n += 1
    a.send(a.last_tag + b" NOOP\r\n")
    assert a.line().startswith(b"* BYE")  # Dovecot does the same: the view cannot be kept valid
    b.ok("NOOP")
    a.close()
    b.close()
