"""IDLE (RFC 2177): new mail, flag changes and expunges reach an idling client at once."""

from __future__ import annotations

import select
import time

import pytest

from tests.imap_support import Wire, message


@pytest.fixture
def idler(imap_server, imap_user):
    imap_server.deliver(imap_user, message("có sẵn"))
    w = Wire(imap_server, user=imap_user)
    w.ok("SELECT INBOX")
    w.n += 1
    w.send(w.last_tag + b" IDLE\r\n")
    assert w.line() == b"+ idling\r\n"
    yield w
    w.close()


def wait_line(w: Wire, timeout: float = 5.0) -> bytes:
    w.sock.settimeout(timeout)
    try:
        return w.line()
    finally:
        w.sock.settimeout(30)


def test_idle_receives_new_mail_flags_and_expunges(imap_server, imap_user, idler):
    started = time.monotonic()
    imap_server.deliver(imap_user, message("vừa đến"))
    assert wait_line(idler) == b"* 2 EXISTS\r\n"
    assert time.monotonic() - started < 2

    other = Wire(imap_server, user=imap_user)
    other.ok("SELECT INBOX")
    other.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    assert wait_line(idler) == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n"
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert wait_line(idler).startswith(b"* 2 FETCH (UID 2 FLAGS (\\Deleted")
    other.ok("EXPUNGE")
    assert wait_line(idler) == b"* 2 EXPUNGE\r\n"  # during IDLE any update may be sent
    other.close()

    idler.send(b"DONE\r\n")
    assert idler.line() == idler.last_tag + b" OK IDLE terminated\r\n"
    idler.ok("NOOP")


def test_idle_without_a_selected_folder_and_a_bad_end(imap_server, imap_user):
    w = Wire(imap_server, user=imap_user)
    w.n += 1
    w.send(w.last_tag + b" IDLE\r\n")
    assert w.line() == b"+ idling\r\n"
    imap_server.deliver(imap_user, message("không chọn thư mục"))
    assert select.select([w.sock], [], [], 0.5)[0] == []  # nothing to report without a selected folder
    w.send(b"NOT DONE\r\n")
    assert w.line().startswith(w.last_tag + b" BAD")
    w.ok("NOOP")
    w.close()
