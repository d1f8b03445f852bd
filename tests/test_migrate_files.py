"""Đ8.2.d from files: a Maildir++ tree as Dovecot wrote it, an mbox file, a folder of .eml files.

The Maildir test reads the real tree a real Dovecot wrote (modified UTF-7
folder names, dovecot-keywords, dovecot-uidlist, flags in file names) and
compares the result with what that Dovecot serves over IMAP.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailserver.app import App
from policy.loader import load
from tests.dovecot import running_dovecot
from tests.helpers import cli
from tests.imap_support import message
from tests.migrate_support import fill, run_json, snapshot, store_snapshot

MAILDIR_SOURCE = {
    "INBOX": (15, "INBOX"),
    "Sent": (6, "Sent"),
    "Dự án": (5, "Dự án"),
    "Dự án.Hồ sơ 2026": (7, "Dự án/Hồ sơ 2026"),
    "Thư đã gửi cũ": (3, "Thư đã gửi cũ"),
}


@pytest.fixture
def person(initialised: Path) -> str:
    cli(initialised, "account", "add", "--name", "Lê Văn Tệp", "--password", "Matkhau#2026aA", check=True)
    return "levantep@phuyen.gov.vn"


async def read_back(config: Path, address: str, folder: str) -> Counter:
    app = await App.open(loaded=load(config))
    try:
        return await store_snapshot(app, address, folder)
    finally:
        await app.close()


async def test_d8_2_d_maildir_tree_written_by_dovecot(initialised, person):
    with running_dovecot() as dv:
        dv.add_user("md", "Tệp#2026aa")
        c = dv.login("md")
        fill(c, MAILDIR_SOURCE, tag="md")
        expected = {name: snapshot(c, name) for name in MAILDIR_SOURCE}
        c.logout()
        tree = dv.maildir("md")
        assert (tree / "dovecot-keywords").exists() and any(p.name.startswith(".D&") for p in tree.iterdir())
        code, reports = run_json(initialised, "migrate", "maildir", str(tree), "--to", person)
        assert code == 0, reports
        assert reports[0]["copied"] == sum(sum(c.values()) for c in expected.values())
        for name, (_, target) in MAILDIR_SOURCE.items():
            assert await read_back(initialised, person, target) == expected[name], target
        code, reports = run_json(initialised, "migrate", "maildir", str(tree), "--to", person)
        assert (code, reports[0]["copied"], reports[0]["skipped"]) == (0, 0, reports[0]["skipped"])
        assert reports[0]["skipped"] == sum(sum(c.values()) for c in expected.values())


def _mbox_entry(sender: str, asctime: str, msg: bytes, status: bytes = b"") -> bytes:
    head, _, body = msg.partition(b"\r\n\r\n")
    body = b"\n".join((b">" + ln if ln.lstrip(b">").startswith(b"From ") else ln)
                      for ln in body.replace(b"\r\n", b"\n").split(b"\n"))
    return (f"From {sender} {asctime}\n".encode() + head.replace(b"\r\n", b"\n") + b"\n" + status + b"\n" + body
            + b"\n")


async def test_d8_2_d_mbox_with_escaped_from_lines_flags_and_dates(initialised, person, tmp_path):
    m1 = message("Thư cũ một", "Xin chào.\r\nFrom now on, the line above starts with From.\r\n>From kept.")
    m2 = message("Thư cũ hai", "Nội dung hai.")
    m3 = message("Thư cũ ba", "Nội dung ba.")
    box = tmp_path / "Lưu trữ.mbox"
    box.write_bytes(_mbox_entry("a@x", "Mon Jan  5 08:00:00 2015", m1, b"Status: RO\nX-Status: A\n")
                    + _mbox_entry("b@x", "Tue Feb 10 09:30:00 2016", m2, b"X-Mozilla-Status: 0005\n")
                    + _mbox_entry("c@x", "Wed Mar 11 10:00:00 2017", m3))
    code, reports = run_json(initialised, "migrate", "mbox", str(box), "--to", person, "--folder", "Lưu trữ/2015")
    assert code == 0 and reports[0]["copied"] == 3, reports
    got = await read_back(initialised, person, "Lưu trữ/2015")
    assert got == Counter({
        (m1, frozenset({"\\Seen", "\\Answered"}), datetime(2015, 1, 5, 8, tzinfo=UTC).timestamp()): 1,
        (m2, frozenset({"\\Seen", "\\Flagged"}), datetime(2016, 2, 10, 9, 30, tzinfo=UTC).timestamp()): 1,
        (m3, frozenset(), datetime(2017, 3, 11, 10, tzinfo=UTC).timestamp()): 1,
    })
    with open(box, "ab") as fh:  # the file grows: only the new message is copied
        fh.write(_mbox_entry("d@x", "Thu Apr 12 11:00:00 2018", message("Thư mới", "Bốn.")))
    code, reports = run_json(initialised, "migrate", "mbox", str(box), "--to", person, "--folder", "Lưu trữ/2015")
    assert (code, reports[0]["copied"], reports[0]["skipped"]) == (0, 1, 3)


async def test_d8_2_d_eml_folder_with_sub_folders(initialised, person, tmp_path):
    root = tmp_path / "xuat"
    (root / "Công văn").mkdir(parents=True)
    a = message("Một", "1", date="Mon, 05 Jan 2015 08:00:00 +0700")
    b = message("Hai", "2", date="Tue, 10 Feb 2016 09:30:00 +0000")
    (root / "mot.eml").write_bytes(a.replace(b"\r\n", b"\n"))  # saved with LF: stored with CRLF
    (root / "Công văn" / "hai.EML").write_bytes(b)
    (root / "notes.txt").write_text("not mail")
    os.utime(root / "mot.eml", (1_700_000_000, 1_700_000_000))  # the export's time is not the mail's
    code, reports = run_json(initialised, "migrate", "eml", str(root), "--to", person, "--folder", "Xuất",
                             "--seen")
    assert code == 0 and reports[0]["copied"] == 2, reports
    assert await read_back(initialised, person, "Xuất") == Counter(
        {(a, frozenset({"\\Seen"}), datetime(2015, 1, 5, 1, tzinfo=UTC).timestamp()): 1})
    assert await read_back(initialised, person, "Xuất/Công văn") == Counter(
        {(b, frozenset({"\\Seen"}), datetime(2016, 2, 10, 9, 30, tzinfo=UTC).timestamp()): 1})
