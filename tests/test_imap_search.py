"""SEARCH (RFC 3501 §6.4.4) with every key, Vietnamese text matched without case or diacritics,
CHARSET UTF-8, ESEARCH (RFC 4731), MODSEQ (RFC 7162), OLDER/YOUNGER (RFC 5032)."""

from __future__ import annotations

import pytest

from tests.imap_support import message

MAIL = [
    # subject, sender, body, date, flags, extra
    ("Công văn số 15/UBND về việc họp giao ban", "Nguyễn Văn An <an@phuyen.gov.vn>",
     "Kính gửi các phòng ban: đề nghị dự họp.", "Mon, 05 Jan 2026 08:00:00 +0700", {"\\Seen"}, ""),
    ("Báo cáo tài chính quý I", "Trần Thị Bình <binh@phuyen.gov.vn>",
     "Số liệu ngân sách đính kèm.", "Tue, 10 Feb 2026 09:00:00 +0700", {"\\Flagged"}, "X-Priority: 1\r\n"),
    ("Giấy mời dự hội nghị", "Lê Văn Cường <cuong@example.com>",
     "Trân trọng kính mời đồng chí tham dự.", "Wed, 11 Mar 2026 10:00:00 +0700", {"\\Answered", "\\Deleted"}, ""),
]


@pytest.fixture(autouse=True)
def mail(imap_server, imap_user, wire):
    for subject, sender, body, date, flags, extra in MAIL:
        imap_server.deliver(imap_user, message(subject, body, sender=sender, date=date, extra_headers=extra),
                            flags=frozenset(flags))
    imap_server.deliver(imap_user, message("Large", "x" * 20000, date="Thu, 12 Mar 2026 10:00:00 +0700"))
    wire.ok("SELECT INBOX")


def found(wire, criteria: str | bytes, uid: bool = False) -> list[int]:
    cmd = (b"UID SEARCH " if uid else b"SEARCH ") + (criteria.encode() if isinstance(criteria, str) else criteria)
    lines = wire.ok(cmd)
    line = next(ln for ln in lines if ln.startswith(b"* SEARCH"))
    return [int(x) for x in line.split(b"(")[0].split()[2:]]


def literal(text: str) -> bytes:
    data = text.encode()
    return b"{%d+}\r\n%s" % (len(data), data)


@pytest.mark.parametrize(
    "criteria, expected",
    [
        ("ALL", [1, 2, 3, 4]),
        ("SEEN", [1]), ("UNSEEN", [2, 3, 4]),
        ("FLAGGED", [2]), ("UNFLAGGED", [1, 3, 4]),
        ("ANSWERED", [3]), ("UNANSWERED", [1, 2, 4]),
        ("DELETED", [3]), ("UNDELETED", [1, 2, 4]),
        ("DRAFT", []), ("UNDRAFT", [1, 2, 3, 4]),
        ("NEW", [2, 3, 4]), ("RECENT", [1, 2, 3, 4]), ("OLD", []),
        ("KEYWORD $Work", []), ("UNKEYWORD $Work", [1, 2, 3, 4]),
        ("LARGER 10000", [4]), ("SMALLER 10000", [1, 2, 3]),
        ("SENTBEFORE 10-Feb-2026", [1]), ("SENTON 10-Feb-2026", [2]), ("SENTSINCE 11-Mar-2026", [3, 4]),
        ("SINCE 1-Jan-2020", [1, 2, 3, 4]), ("BEFORE 1-Jan-2020", []), ("YOUNGER 3600", [1, 2, 3, 4]),
        ("OLDER 3600", []),
        ("2:3", [2, 3]), ("UID 1,4", [1, 4]), ("1:100", [1, 2, 3, 4]),
        ("NOT SEEN", [2, 3, 4]), ("OR SEEN FLAGGED", [1, 2]), ("(SEEN) (UNFLAGGED)", [1]),
        ("OR (SEEN FLAGGED) ANSWERED", [3]),
        ('FROM "binh@phuyen"', [2]), ('TO "vp@phuyen.gov.vn"', [1, 2, 3, 4]), ('CC "nobody"', []),
        ('BCC "x"', []), ('HEADER X-Priority "1"', [2]), ('HEADER X-Priority ""', [2]),
        ('BODY "ngân sách"', [2]),
    ],
)
def test_every_key(wire, criteria, expected):
    assert found(wire, criteria) == expected


@pytest.mark.parametrize(
    "query, expected",
    [
        ("công văn", [1]),
        ("cong van", [1]),  # diacritics are ignored ...
        ("CÔNG VĂN", [1]),  # ... and case
        ("báo cáo", [2]),
        ("bao cao tai chinh", [2]),
        ("giay moi", [3]),
        ("hội nghị", [3]),
        ("không có", []),
    ],
)
def test_vietnamese_subject_search(wire, query, expected):
    assert found(wire, b"CHARSET UTF-8 SUBJECT " + literal(query)) == expected


def test_vietnamese_text_and_from(wire):
    assert found(wire, b"CHARSET UTF-8 FROM " + literal("nguyen van an")) == [1]
    assert found(wire, b"CHARSET UTF-8 FROM " + literal("Trần")) == [2]
    assert found(wire, b"CHARSET UTF-8 TEXT " + literal("trân trọng")) == [3]
    assert found(wire, b"CHARSET UTF-8 BODY " + literal("kinh moi")) == [3]


def test_charset_and_errors(wire):
    assert found(wire, 'CHARSET US-ASCII SUBJECT "Large"') == [4]
    lines = wire.cmd('SEARCH CHARSET KOI8-R SUBJECT "x"')
    assert lines[-1].startswith(wire.last_tag + b" NO [BADCHARSET (UTF-8 US-ASCII)]")
    assert b"BAD" in wire.cmd("SEARCH BOGUS")[-1]
    assert b"BAD" in wire.cmd("SEARCH SINCE 31-Feb-2026")[-1]


def test_uid_search_and_esearch(wire):
    assert found(wire, "UNSEEN", uid=True) == [2, 3, 4]
    lines = wire.ok("UID SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
    assert lines[0] == b'* ESEARCH (TAG "%s") UID MIN 2 MAX 4 ALL 2:4 COUNT 3\r\n' % wire.last_tag
    lines = wire.ok("SEARCH RETURN () FLAGGED")
    assert lines[0] == b'* ESEARCH (TAG "%s") ALL 2\r\n' % wire.last_tag
    lines = wire.ok("SEARCH RETURN (COUNT) DRAFT")
    assert lines[0] == b'* ESEARCH (TAG "%s") COUNT 0\r\n' % wire.last_tag
    assert b"BAD" in wire.cmd("SEARCH RETURN (SAVE) ALL")[-1]


def test_modseq_search(wire):
    line = next(ln for ln in wire.ok("SEARCH MODSEQ 1") if ln.startswith(b"* SEARCH"))
    assert line.startswith(b"* SEARCH 1 2 3 4 (MODSEQ ")
    wire.ok("STORE 4 +FLAGS (\\Seen)")
    modseq = int(next(ln for ln in wire.ok("FETCH 4 MODSEQ")).split(b"MODSEQ (")[1].split(b")")[0])
    assert found(wire, f"MODSEQ {modseq}") == [4]
