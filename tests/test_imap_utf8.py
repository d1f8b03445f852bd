"""UTF8=ACCEPT (RFC 6855): after ENABLE, folder names travel as UTF-8 and SEARCH takes UTF-8 strings."""

from __future__ import annotations

from tests.imap_support import message


def test_utf8_folder_names(imap_server, imap_user, wire):
    wire.ok("CREATE \"C&APQ-ng v&AQM-n &AREevw-n\"")
    assert wire.ok("ENABLE UTF8=ACCEPT")[0] == b"* ENABLED UTF8=ACCEPT\r\n"
    lines = wire.ok('LIST "" "*"')
    assert '"Công văn đến"'.encode() in b"".join(lines)
    wire.ok('CREATE "Công văn đi"')
    imap_server.deliver(imap_user, message("Tờ trình"), folder="Công văn đi")
    assert b"MESSAGES 1" in wire.ok('STATUS "Công văn đi" (MESSAGES)')[0]
    wire.ok('SELECT "Công văn đi"')
    assert b"* SEARCH 1" in wire.ok('SEARCH SUBJECT "tờ trình"')[0]
    assert b"ENABLE is not allowed with a folder selected" in wire.cmd("ENABLE UTF8=ACCEPT")[-1]
