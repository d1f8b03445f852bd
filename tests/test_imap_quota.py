"""QUOTA (RFC 9208): the store's exact usage against the Đ7.3.b quota, one root for the mailbox."""

from __future__ import annotations

from tests.imap_support import message


def test_getquotaroot_shows_exact_usage_of_the_2gb_quota(imap_server, imap_user, wire):
    for i in range(3):
        imap_server.deliver(imap_user, message(f"dung lượng {i}", "x" * 3000))
    usage = imap_server.usage(imap_user)
    assert usage.quota == 2 * 1024**3  # Đ7.3.b default
    lines = wire.ok("GETQUOTAROOT INBOX")
    assert lines[0] == b'* QUOTAROOT "INBOX" ""\r\n'
    assert lines[1] == b'* QUOTA "" (STORAGE %d 2097152)\r\n' % ((usage.bytes + 1023) // 1024)
    assert wire.ok('GETQUOTA ""')[0] == lines[1]
    assert wire.ok("GETQUOTAROOT Sent")[1] == lines[1]  # every folder counts against the one quota


def test_quota_errors(wire):
    assert wire.cmd('GETQUOTA "other"')[-1].startswith(wire.last_tag + b" NO [NONEXISTENT]")
    assert wire.cmd("GETQUOTAROOT Nowhere")[-1].startswith(wire.last_tag + b" NO [NONEXISTENT]")
    assert wire.cmd('SETQUOTA "" (STORAGE 99999999)')[-1].startswith(wire.last_tag + b" NO [NOPERM]")


def test_capabilities_after_login(wire):
    caps = wire.ok("CAPABILITY")[0].split()
    for cap in (b"QUOTA", b"QUOTA=RES-STORAGE", b"IDLE", b"UIDPLUS", b"MOVE", b"NAMESPACE", b"ID", b"ENABLE",
                b"UNSELECT", b"CHILDREN", b"LIST-EXTENDED", b"LIST-STATUS", b"SPECIAL-USE", b"LITERAL+",
                b"CONDSTORE", b"QRESYNC", b"ESEARCH", b"UTF8=ACCEPT"):
        assert cap in caps
    assert b"QUOTASET" not in caps and b"STARTTLS" not in caps
