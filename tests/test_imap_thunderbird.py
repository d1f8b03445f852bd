"""A Thunderbird user's day, with aioimaplib over TLS: log in, folders with special use, quota,
first sync, IDLE receiving new mail, read it, move one to Trash, expunge, save to Sent and
Drafts, search in Vietnamese, log out. Each step is the command sequence Thunderbird sends."""

from __future__ import annotations

import asyncio
import re

import aioimaplib
import pytest

from tests.imap_support import PLAIN_PASSWORD, message

FIRST_SYNC = "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority " \
             "X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])"


def lines_of(response) -> list[bytes]:
    return [bytes(x) for x in response.lines]


async def connect(server) -> aioimaplib.IMAP4_SSL:
    client = aioimaplib.IMAP4_SSL("localhost", server.ports["imaps"], ssl_context=server.client_context(), timeout=30)
    await client.wait_hello_from_server()
    return client


@pytest.mark.asyncio
async def test_a_thunderbird_day(imap_server, imap_user):
    for i, subject in enumerate(["Công văn số 1/UBND", "Báo cáo tuần", "Giấy mời họp"]):
        imap_server.deliver(imap_user, message(subject, f"Nội dung {i}"), flags=frozenset({"\\Seen"} if i else ()))
    client = await connect(imap_server)
    assert "IDLE" not in client.protocol.capabilities  # before login only what logging in needs
    response = await client.id(name="Thunderbird", version="128.0")
    assert response.result == "OK"
    assert (await client.login(imap_user, PLAIN_PASSWORD)).result == "OK"
    await client.protocol.capability()
    for cap in ("IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE", "QUOTA", "CONDSTORE", "LIST-EXTENDED"):
        assert cap in client.protocol.capabilities

    # Folder list with special-use attributes, then quota for the status bar.
    listed = b"\n".join(lines_of(await client.protocol.simple_command("LIST", '(SPECIAL-USE)', '""', '"*"')))
    for use in (b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Junk", b"\\Archive"):
        assert use in listed
    quota = b"\n".join(lines_of(await client.getquotaroot("INBOX")))
    assert re.search(rb'"" \(STORAGE \d+ 2097152\)', quota)  # aioimaplib drops the QUOTA word

    # Select and first sync.
    selected = await client.select("INBOX")
    assert selected.result == "OK" and b"3 EXISTS" in b"\n".join(lines_of(selected))
    sync = await client.uid("fetch", "1:*", FIRST_SYNC)
    assert sync.result == "OK"
    fetched = b"\n".join(lines_of(sync))
    assert fetched.count(b"FETCH (UID") == 3 and b"Subject: =?utf-8?" in fetched

    # IDLE: a message arrives and is pushed at once.
    idle = await client.idle_start(timeout=10)
    imap_server.deliver(imap_user, message("Thư khẩn: họp lúc 14h", "Đề nghị có mặt đúng giờ."))
    push = await client.wait_server_push(timeout=5)
    assert any(b"4 EXISTS" in bytes(x) for x in push)
    client.idle_done()
    await asyncio.wait_for(idle, 5)

    # Read it (sets \Seen), flag another, move one to Trash.
    body = await client.uid("fetch", "4", "(BODY[])")
    assert "Đề nghị có mặt đúng giờ.".encode() in b"".join(lines_of(body))
    assert (await client.uid("store", "2", "+FLAGS", "(\\Flagged)")).result == "OK"
    moved = await client.uid("move", "3", "Trash")
    assert moved.result == "OK" and b"COPYUID" in b"\n".join(lines_of(moved))

    # Delete with the "mark and expunge" model too.
    await client.uid("store", "1", "+FLAGS", "(\\Deleted)")
    expunged = await client.expunge()
    assert b"1 EXPUNGE" in b"\n".join(lines_of(expunged))

    # Save the sent message and a draft.
    sent = await client.append(message("Trả lời: Giấy mời họp", "Tôi sẽ tham dự."), mailbox="Sent", flags="\\Seen")
    assert sent.result == "OK" and b"APPENDUID" in b"\n".join(lines_of(sent))
    draft = await client.append(message("Bản nháp báo cáo", "..."), mailbox="Drafts", flags="\\Draft")
    assert draft.result == "OK"

    # Search in Vietnamese, with and without diacritics.
    for query in ('"thư khẩn"', '"thu khan"', '"HỌP"'):
        found = await client.uid_search("SUBJECT", query)
        assert found.result == "OK"
        assert b"4" in lines_of(found)[0].split(), (query, lines_of(found))

    status = await client.status("Trash", "(MESSAGES UNSEEN)")
    assert b"MESSAGES 1" in b"\n".join(lines_of(status))
    assert (await client.logout()).result == "OK"
