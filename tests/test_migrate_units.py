"""Pure parts of the migration: folder mapping, IMAP response parsing, the reader loop, progress lines."""

from __future__ import annotations

import asyncio
import io

from aioimaplib import aioimaplib as aio

from mailserver.migrate.folders import SourceName, map_folders
from mailserver.migrate.imapclient import _Fetch, _Protocol, parse_fetch, parse_list
from mailserver.migrate.progress import ProgressDisplay
from mailserver.migrate.report import AccountReport, human_report
from mailserver.migrate.sources import _uid_set, _unmbox
from policy.model import Policy

POLICY = Policy()


def mapping(*names: tuple[str, ...] | tuple[tuple[str, ...], frozenset[str]]) -> dict[str, tuple[str, str]]:
    sources = []
    for n in names:
        if len(n) == 2 and isinstance(n[1], frozenset):
            sources.append(SourceName("/".join(n[0]), n[0], n[1]))  # type: ignore[arg-type]
        else:
            sources.append(SourceName("/".join(n), n))  # type: ignore[arg-type]
    return {m.source.key: (m.target, m.how) for m in
            map_folders(sources, POLICY.folders, POLICY.migration.special_folders)}


def test_special_folders_by_name_outlook_zimbra_and_vietnamese():
    got = mapping(("INBOX",), ("Sent Items",), ("Deleted Items",), ("Junk E-mail",), ("Thư nháp",),
                  ("Thư đã gửi",), ("Lưu trữ",), ("Dự án",), ("Dự án", "Sent"), ("Sent Items", "2019"))
    assert got["INBOX"] == ("INBOX", "inbox")
    assert got["Sent Items"] == ("Sent", "name") and got["Thư đã gửi"] == ("Sent", "name")
    assert got["Deleted Items"][0] == "Trash" and got["Junk E-mail"][0] == "Junk"
    assert got["Thư nháp"][0] == "Drafts" and got["Lưu trữ"][0] == "Archive"
    assert got["Dự án/Sent"] == ("Dự án/Sent", "same name")  # only top-level folders by name
    assert got["Sent Items/2019"] == ("Sent/2019", "sub-folder of a special folder")


def test_special_use_attribute_wins_over_names():
    got = mapping((("Sent",), frozenset()), (("Gửi đi",), frozenset({"\\Sent"})), (("Rác",), frozenset({"\\Junk"})))
    assert got["Gửi đi"] == ("Sent", "special-use") and got["Rác"] == ("Junk", "special-use")
    assert got["Sent"] == ("Sent", "same name")  # kept as a folder of its own, not merged by name


def test_courier_inbox_prefix_is_dropped_and_slashes_inside_a_level_are_kept_visible():
    got = mapping(("INBOX",), ("INBOX", "Sent"), ("INBOX", "Công văn", "2020"), ("INBOX", "a/b"))
    assert got["INBOX/Sent"][0] == "Sent" and got["INBOX/Công văn/2020"][0] == "Công văn/2020"
    assert got["INBOX/a/b"][0] == "a\u2215b"
    dovecot_style = mapping(("INBOX",), ("INBOX", "Con"), ("Khác",))
    assert dovecot_style["INBOX/Con"][0] == "INBOX/Con"  # a real sub-folder of INBOX, not a namespace


def test_parse_fetch_with_literals_in_any_order():
    lines = [b'1 FETCH (UID 7 FLAGS (\\Seen $Label1) INTERNALDATE " 5-Jan-2015 08:00:00 +0700" BODY[] {12}',
             bytearray(b"Subject: (x)"), b" RFC822.SIZE 12)",
             b"2 FETCH (FLAGS (\\Seen))",  # an unsolicited flag update: no UID, ignored
             b"3 FETCH (UID 9 BODY[] NIL)"]
    got = parse_fetch(lines)
    assert [m.uid for m in got] == [7, 9]
    assert got[0].body == b"Subject: (x)" and got[0].flags == ("\\Seen", "$Label1") and got[0].size == 12
    assert got[0].internal_date is not None and got[0].internal_date.utcoffset().total_seconds() == 7 * 3600
    assert got[1].body is None


def test_parse_list_decodes_modified_utf7_and_literal_names():
    got = parse_list([b'(\\HasNoChildren \\Sent) "." "Th&AbA- &AREA4w- g&Hu0-i"',
                      b'(\\Noselect \\HasChildren) "/" {6}', bytearray(b'D"ir\\x'), b"",
                      b'(\\HasNoChildren) NIL inbox'])
    assert got[0].name == "Thư đã gửi" and got[0].attributes == {"\\HasNoChildren", "\\Sent"}
    assert got[1].raw == 'D"ir\\x' and not got[1].selectable and got[1].delimiter == "/"
    assert got[2].name == "INBOX" and got[2].delimiter is None


def test_parse_list_reads_non_canonical_names_of_old_servers():
    """Two encoded runs side by side are refused by our strict codec (one spelling per name) but
    an old server may write them; the user saw "Thư đã gửi", so that is the folder it becomes."""
    got = parse_list([b'(\\HasNoChildren) "/" "Th&AbA- &ARE-&AOM- g&Hu0-i"',
                      b'(\\HasNoChildren) "/" "C\xc3\xb4ng v\xc4\x83n"',
                      b'(\\HasNoChildren) "/" "R&-D"', b'(\\HasNoChildren) "/" "Q&A-x"'])
    assert [e.name for e in got] == ["Thư đã gửi", "Công văn", "R&D", "Q&A-x"]


async def test_the_reader_takes_thousands_of_lines_in_one_read():
    """aioimaplib 2.0.3 recursed once per line: this read raised RecursionError inside data_received."""
    loop = asyncio.get_running_loop()
    p = _Protocol(loop)
    p.state = aio.SELECTED
    cmd = _Fetch("A1", "1:*", "(UID FLAGS)", prefix="UID", loop=loop)
    p.pending_async_commands["FETCH"] = cmd
    n = 6000
    blob = b"".join(b"* %d FETCH (UID %d FLAGS (\\Seen))\r\n" % (i, i) for i in range(1, n + 1)) + b"A1 OK done\r\n"
    p.data_received(blob[:70_000])
    p.data_received(blob[70_000:])
    await asyncio.wait_for(cmd.wait(), 10)
    assert cmd.response.result == "OK"
    assert [m.uid for m in parse_fetch(cmd.response.lines[:-1])] == list(range(1, n + 1))


async def test_the_reader_takes_a_literal_split_across_reads():
    loop = asyncio.get_running_loop()
    p = _Protocol(loop)
    p.state = aio.SELECTED
    cmd = _Fetch("A2", "5", "(UID BODY.PEEK[])", prefix="UID", loop=loop)
    p.pending_async_commands["FETCH"] = cmd
    body = b"Subject: t\r\n\r\n" + b"x\r\n" * 5000
    wire = b"* 1 FETCH (UID 5 BODY[] {%d}\r\n" % len(body) + body + b")\r\nA2 OK done\r\n"
    for i in range(0, len(wire), 777):
        p.data_received(wire[i : i + 777])
    await asyncio.wait_for(cmd.wait(), 10)
    assert parse_fetch(cmd.response.lines[:-1])[0].body == body


def test_uid_sets_are_ranges():
    assert _uid_set([5, 1, 2, 3, 9, 10, 7]) == "1:3,5,7,9:10"
    assert _uid_set([4]) == "4"


def test_mbox_entry_unescaping_and_state_headers():
    raw = (b"Subject: x\nStatus: RO\nX-Status: AF\nX-Keywords: $Label1 Quan_trong\nX-UID: 4\n\n"
           b">From the start\n>>From kept once\nbody\n\n")
    data, flags = _unmbox(raw)
    assert data == b"Subject: x\r\n\r\nFrom the start\r\n>From kept once\r\nbody\r\n"
    assert set(flags) == {"\\Seen", "\\Answered", "\\Flagged", "$Label1", "Quan_trong"}


def test_progress_is_plain_lines_off_a_terminal_and_redraws_on_one():
    a = AccountReport("a@old", "nguyenvana@phuyen.gov.vn", state="copying", planned_messages=10,
                      planned_bytes=10_000, copied=4, copied_bytes=4_000)
    a.begin()
    a.finished = a.started + 2.0  # two seconds in, whatever the load on this machine
    b = AccountReport("b@old", "tranthib@phuyen.gov.vn", state="failed", reason="login: refused")

    async def run(tty: bool) -> str:
        out = io.StringIO()
        d = ProgressDisplay([a, b], out, tty=tty, refresh=0.01)
        d.start()
        await asyncio.sleep(0.1)
        await d.stop()
        return out.getvalue()

    plain = asyncio.run(run(False))
    assert "\x1b" not in plain
    assert "nguyenvana@phuyen.gov.vn" in plain and "4/10" in plain and "login: refused" in plain
    assert "msg/s" in plain and "MB/s" in plain
    fancy = asyncio.run(run(True))
    assert "\x1b[2K" in fancy and "\x1b[3F" in fancy  # cleared lines, cursor back up over 2 rows + total
    assert "ETA 0:03" in fancy  # 6,000 bytes left at 2,000 bytes/s
    assert "total" in fancy and "1/2 done" in fancy


def test_final_report_says_what_to_do():
    r = AccountReport("u@old", "x@phuyen.gov.vn")
    r.end("stopped", "quota: ...")
    text = human_report([r])
    assert "x@phuyen.gov.vn ← u@old: stopped — quota: ..." in text
    assert "Run the same command again" in text
