"""The command grammar (imap_gateway/parse.py): RFC 3501 §9 and the extensions' ABNF."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from imap_gateway.parse import FetchAtt, ParseError, Parser, SearchKey, Section, SeqSet, seqset_of

FIRST_SYNC = b"(FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)])"


def parse(data: bytes, fn: str, **kw):
    p = Parser(data, **kw)
    out = getattr(p, fn)()
    p.end()
    return out


def test_thunderbird_first_sync_fetch_items():
    atts = parse(FIRST_SYNC, "fetch_atts")
    assert [a.name for a in atts] == ["FLAGS", "RFC822.SIZE", "INTERNALDATE", "BODY"]
    body = atts[3]
    assert body.peek and not body.sets_seen
    assert body.section == Section((), "HEADER.FIELDS", ("FROM", "TO", "CC", "SUBJECT", "DATE", "MESSAGE-ID"))
    assert body.response_name() == "BODY[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)]"


@pytest.mark.parametrize(
    "text, expected",
    [
        (b"ALL", ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]),
        (b"fast", ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]),
        (b"FULL", ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]),
        (b"uid", ["UID"]),
        (b"(UID MODSEQ BODYSTRUCTURE)", ["UID", "MODSEQ", "BODYSTRUCTURE"]),
    ],
)
def test_macros_and_simple_items(text, expected):
    assert [a.name for a in parse(text, "fetch_atts")] == expected


def test_sections_and_partials():
    (a,) = parse(b"BODY[1.2.MIME]<0.100>", "fetch_atts")
    assert a == FetchAtt("BODY", Section((1, 2), "MIME"), partial=(0, 100))
    assert a.sets_seen and a.response_name() == "BODY[1.2.MIME]<0>"
    (b,) = parse(b"BODY.PEEK[]", "fetch_atts")
    assert b.section == Section() and b.peek
    (c,) = parse(b"binary.peek[3.1]<5.10>", "fetch_atts")
    assert c == FetchAtt("BINARY", Section((3, 1)), peek=True, partial=(5, 10))
    (d,) = parse(b"BINARY.SIZE[2]", "fetch_atts")
    assert d.name == "BINARY.SIZE"


@pytest.mark.parametrize(
    "bad, reason",
    [
        (b"BODY[1.]", "part number"),
        (b"BODY[MIME]", "MIME needs a part number"),
        (b"BODY[HEADER.FIELDS ()]", "header field name"),
        (b"BODY[0]", "must not be 0"),
        (b"BODY[]<1.0>", "must not be 0"),
        (b"BODY.PEEK", "unknown fetch item"),
        (b"ENVELOP", "unknown fetch item"),
        (b"(FLAGS", "space"),
        (b"BINARY[1.TEXT]", "part number"),
    ],
)
def test_bad_fetch_items_name_the_problem(bad, reason):
    with pytest.raises(ParseError, match=reason):
        parse(bad, "fetch_atts")


def test_sequence_sets_with_star():
    s = parse(b"1:*,5,7:3", "seqset")
    assert s == SeqSet(((1, 0), (5, 5), (7, 3)))
    assert s.resolve(10) == [(1, 10), (5, 5), (3, 7)]
    assert str(s) == "1:*,5,7:3"
    assert parse(b"*", "seqset").resolve(0) == [(0, 0)]
    assert parse(b"559:*", "seqset").resolve(100) == [(100, 559)]  # RFC 3501 §6.4.8: includes the last UID
    for bad in (b"0", b"1:", b":3", b"1,,2", b"a", b"4294967296"):
        with pytest.raises(ParseError):
            parse(bad, "seqset")
    assert seqset_of([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"


def test_quoted_strings_and_literals():
    assert parse(b'"a \\"b\\" \\\\ c"', "astring") == b'a "b" \\ c'
    assert parse(b"{5}\r\nhe\"lo", "astring") == b'he"lo'
    assert parse(b"{5+}\r\nhello", "astring") == b"hello"
    assert parse(b"atom]x", "astring") == b"atom]x"
    assert parse(b"~{3}\r\na\x00b", "astring", literal8=True) == b"a\x00b"
    for bad, reason in [
        (b'"abc', "unterminated"),
        (b'"a\\b"', "backslash"),
        (b"{10}\r\nabc", "longer than the command"),
        (b"{3}\r\na\x00b", "NUL"),
        (b"~{3}\r\nabc", "literal8"),
        (b"{3}abc", "CRLF"),
        (b"", "expected a string"),
    ]:
        with pytest.raises(ParseError, match=reason):
            parse(bad, "astring")


def test_mailbox_names_are_modified_utf7_or_utf8_after_enable():
    assert parse(b'"C&APQ-ng v&AQM-n &AREevw-n"', "mailbox") == "Công văn đến"
    assert parse(b"inbox", "mailbox") == "INBOX"
    assert parse(b"Inbox/Con", "mailbox") == "INBOX/Con"
    assert parse(b"Thu.Muc", "mailbox") == "Thu.Muc"
    with pytest.raises(ParseError, match="modified UTF-7"):
        parse(b"&Jjo", "mailbox")
    with pytest.raises(ParseError, match="8-bit characters: send it in modified UTF-7, or ENABLE UTF8=ACCEPT"):
        parse('"Công văn"'.encode(), "mailbox")  # raw UTF-8 from a client that did not enable it
    assert parse('"Công văn đến"'.encode(), "mailbox", utf8=True) == "Công văn đến"
    assert parse(b"a&b", "mailbox", utf8=True) == "a&b"
    assert parse(b"Th%*]", "list_mailbox") == "Th%*]"


def test_flags():
    assert parse(b"(\\Seen \\answered $Label1 NonJunk)", "flag_list") == ["\\Seen", "\\Answered", "$Label1", "NonJunk"]
    assert parse(b"\\Deleted \\Seen", "flag_list") == ["\\Deleted", "\\Seen"]
    assert parse(b"()", "flag_list") == []
    for bad in (b"(\\Recent)", b"(\\Bogus)", b"(\\*)", b"(a"):
        with pytest.raises(ParseError):
            parse(bad, "flag_list")


def test_dates():
    assert parse(b"1-Feb-1994", "date") == date(1994, 2, 1)
    assert parse(b'"01-feb-1994"', "date") == date(1994, 2, 1)
    assert parse(b'"17-Jul-1996 02:44:25 -0700"', "date_time") == datetime(
        1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7)))
    assert parse(b'" 7-Jul-1996 02:44:25 +0000"', "date_time") == datetime(1996, 7, 7, 2, 44, 25, tzinfo=UTC)
    for bad in (b"31-Feb-1994", b"1-Foo-1994", b"1994-02-01"):
        with pytest.raises(ParseError):
            parse(bad, "date")
    with pytest.raises(ParseError):
        parse(b'"17-Jul-1996 25:44:25 -0700"', "date_time")


def test_every_rfc3501_search_key():
    text = (
        b"ALL ANSWERED BCC x BEFORE 1-Jan-2020 BODY y CC z DELETED DRAFT FLAGGED FROM a HEADER X-Foo b "
        b"KEYWORD $Work LARGER 10 NEW NOT SEEN OLD ON 2-Jan-2020 OR RECENT UNSEEN SEEN SENTBEFORE 1-Jan-2020 "
        b"SENTON 1-Jan-2020 SENTSINCE 1-Jan-2020 SINCE 1-Jan-2020 SMALLER 99 SUBJECT s TEXT t TO u UID 1:* "
        b"UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $X 1:3 (FLAGGED SEEN) MODSEQ 5 YOUNGER 60 OLDER 60"
    )
    key = parse(text, "search_keys")
    assert key.op == "AND"
    ops = [k.op for k in key.children]
    assert ops[:6] == ["ALL", "ANSWERED", "BCC", "BEFORE", "BODY", "CC"]
    assert "OR" in ops and "SEQ" in ops and "MODSEQ" in ops
    assert key.children[ops.index("HEADER")].arg == ("X-Foo", b"b")


def test_vietnamese_search_string_in_a_literal():
    word = "công văn".encode()
    key = parse(b"SUBJECT {%d}\r\n%s" % (len(word), word), "search_keys")
    assert key == SearchKey("SUBJECT", word)


def test_search_nesting_is_bounded():
    with pytest.raises(ParseError, match="nested too deeply"):
        parse(b"NOT " * 100 + b"SEEN", "search_keys")
    with pytest.raises(ParseError, match="unknown search key"):
        parse(b"FOO", "search_keys")


def test_errors_say_where():
    with pytest.raises(ParseError) as e:
        parse(b"(FLAGS UIDX)", "fetch_atts")
    assert "at character 8" in str(e.value) and "UIDX" in str(e.value)
