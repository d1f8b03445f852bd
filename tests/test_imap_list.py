"""Folders: LIST with SPECIAL-USE, CHILDREN, LIST-EXTENDED and LIST-STATUS; LSUB; NAMESPACE;
CREATE (with USE), RENAME, DELETE, SUBSCRIBE; Vietnamese names in modified UTF-7 (Đ11)."""

from __future__ import annotations

from imap_gateway.utf7 import encode
from tests.imap_support import message

CONG_VAN = "Công văn đến"


def listed(lines: list[bytes]) -> dict[str, bytes]:
    """name -> attributes, from * LIST lines."""
    out = {}
    for ln in lines:
        if ln.startswith((b"* LIST ", b"* LSUB ")):
            attrs = ln[ln.index(b"(") + 1 : ln.index(b")")]
            name = ln.rsplit(b' "/" ', 1)[1].strip().strip(b'"').decode()
            out[name] = attrs
    return out


def test_new_mailbox_lists_inbox_and_the_special_use_folders(wire):
    folders = listed(wire.ok('LIST "" "*"'))
    assert folders["INBOX"] == b"\\HasNoChildren"
    for name, use in [("Sent", b"\\Sent"), ("Drafts", b"\\Drafts"), ("Trash", b"\\Trash"), ("Junk", b"\\Junk"),
                      ("Archive", b"\\Archive")]:
        assert use in folders[name], folders


def test_separator_query_and_namespace(wire):
    assert wire.ok('LIST "" ""')[0] == b'* LIST (\\Noselect) "/" ""\r\n'
    assert wire.ok("NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL\r\n'


def test_vietnamese_folder_names_round_trip(imap_server, imap_user, wire):
    wire_name = encode(CONG_VAN)
    assert wire_name == "C&APQ-ng v&AQM-n &AREevw-n"
    wire.ok(f'CREATE "{wire_name}"')
    wire.ok(f'CREATE "{encode(CONG_VAN + "/Năm 2026")}"')
    folders = listed(wire.ok('LIST "" "*"'))
    assert folders[wire_name] == b"\\HasChildren"
    assert folders[wire_name + "/N&AQM-m 2026"] == b"\\HasNoChildren"
    imap_server.deliver(imap_user, message("Giấy mời"), folder=CONG_VAN)  # the store names it in Unicode
    assert b"MESSAGES 1" in wire.ok(f'STATUS "{wire_name}" (MESSAGES)')[0]
    assert b"BAD" in wire.cmd('CREATE "C&APQ-ng v&AQM-n &AREevw-n/&AGE-"')[-1]  # non-canonical UTF-7


def test_a_folder_name_with_a_dot_is_one_folder(wire):
    wire.ok(f'CREATE "{encode("Báo cáo 2026.Q1")}"')
    wire.ok("CREATE Thu.Muc")
    folders = listed(wire.ok('LIST "" "*"'))
    assert "Thu.Muc" in folders and "Thu" not in folders
    assert encode("Báo cáo 2026.Q1") in folders
    wire.ok("SELECT Thu.Muc")


def test_patterns_percent_and_star(wire):
    for name in ("A", "A/B", "A/B/C", "Ab"):
        wire.ok(f"CREATE {name}")
    assert set(listed(wire.ok('LIST "" "A/%"'))) == {"A/B"}
    assert set(listed(wire.ok('LIST "" "A/*"'))) == {"A/B", "A/B/C"}
    assert set(listed(wire.ok('LIST "A/" "%"'))) == {"A/B"}
    assert set(listed(wire.ok('LIST "" "a*"'))) == set()  # names are case-sensitive ...
    assert "INBOX" in listed(wire.ok('LIST "" "inbox"'))  # ... except INBOX


def test_list_extended_selection_and_return_options(wire):
    wire.ok("CREATE Projects/Alpha")
    wire.ok("SUBSCRIBE Projects/Alpha")
    wire.ok("UNSUBSCRIBE Projects")
    special = listed(wire.ok('LIST (SPECIAL-USE) "" "*"'))
    assert set(special) == {"Sent", "Drafts", "Trash", "Junk", "Archive"}
    subscribed = wire.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)')
    text = b"".join(subscribed)
    assert b'"Projects" ("CHILDINFO" ("SUBSCRIBED"))' in text
    sub = listed(wire.ok('LIST (SUBSCRIBED) "" "*"'))
    assert b"\\Subscribed" in sub["Projects/Alpha"] and "Projects" not in sub
    multi = listed(wire.ok('LIST "" ("INBOX" "Sent")'))
    assert set(multi) == {"INBOX", "Sent"}
    assert b"BAD" in wire.cmd('LIST (RECURSIVEMATCH) "" "*"')[-1]


def test_list_status_returns_status_after_each_folder(imap_server, imap_user, wire):
    imap_server.deliver(imap_user, message("một"))
    lines = wire.ok('LIST "" "%" RETURN (STATUS (MESSAGES UNSEEN))')
    i = lines.index(next(ln for ln in lines if ln.startswith(b'* LIST (\\HasNoChildren) "/" "INBOX"')))
    assert lines[i + 1] == b'* STATUS "INBOX" (MESSAGES 1 UNSEEN 1)\r\n'


def test_lsub(wire):
    wire.ok("CREATE Lsub/Child")
    wire.ok("SUBSCRIBE Lsub/Child")
    assert "Lsub/Child" in listed(wire.ok('LSUB "" "*"'))


def test_create_rename_delete(imap_server, imap_user, wire):
    assert b"NO [ALREADYEXISTS]" in wire.cmd("CREATE INBOX")[-1]
    wire.ok("CREATE Old/")  # a trailing separator only declares intent (RFC 3501 §6.3.3)
    wire.ok("CREATE Old/Child")
    assert b"NO [ALREADYEXISTS]" in wire.cmd("CREATE Old")[-1]
    wire.ok("RENAME Old New")
    folders = listed(wire.ok('LIST "" "*"'))
    assert "New/Child" in folders and "Old" not in folders
    wire.ok("DELETE New/Child")
    assert b"NO [NONEXISTENT]" in wire.cmd("DELETE New/Child")[-1]
    assert b"NO" in wire.cmd("DELETE INBOX")[-1]
    assert b"NO" in wire.cmd("CREATE a//b")[-1]


def test_create_special_use(wire):
    name = encode("Thư đã lưu")
    wire.ok(f'CREATE "{name}" (USE (\\Archive))')
    assert b"\\Archive" in listed(wire.ok('LIST "" "*"'))[name]
    assert b"NO [USEATTR]" in wire.cmd("CREATE X (USE (\\Bogus))")[-1]


def test_rename_inbox_moves_its_messages(imap_server, imap_user, wire):
    imap_server.deliver(imap_user, message("cũ"))
    wire.ok("RENAME INBOX Old-Inbox")
    assert b"MESSAGES 1" in wire.ok("STATUS Old-Inbox (MESSAGES)")[0]
    assert b"MESSAGES 0" in wire.ok("STATUS INBOX (MESSAGES)")[0]
