"""End to end: a message submitted over SMTP reaches a Thunderbird-like client that is idling
on IMAP, and the same client saves its reply to Sent — SMTP, the store and IMAP in one App."""

from __future__ import annotations

import ssl

import aioimaplib

from mailserver.serve import imap_services
from tests.smtp_fixtures import message
from tests.smtp_support import PASSWORD


async def test_idle_receives_a_message_smtp_just_delivered(smtp_env):
    app = smtp_env.app
    services = imap_services(app)
    for service in services:
        await service.start()
    try:
        reader = await smtp_env.person("Nguyễn Thị Hoa")
        writer = await smtp_env.person("Trần Văn Hải")
        ctx = ssl.create_default_context(cafile=str(app.settings.cert_path))
        imap = aioimaplib.IMAP4_SSL("localhost", app.settings.listeners.imaps.port, ssl_context=ctx, timeout=30)
        await imap.wait_hello_from_server()
        assert (await imap.login(reader, PASSWORD)).result == "OK"
        await imap.protocol.capability()
        append_limits = [c.split("=", 1)[1] for c in imap.protocol.capabilities if c.startswith("APPENDLIMIT=")]
        assert (await imap.select("INBOX")).result == "OK"
        idle = await imap.idle_start(timeout=30)

        smtp = await smtp_env.login(writer, "submission")
        # RFC 7889: what submission accepts (EHLO SIZE) can always be saved to Sent (APPENDLIMIT).
        assert append_limits == [smtp.esmtp_extensions["size"]], (append_limits, smtp.esmtp_extensions)
        await smtp.sendmail(writer, [reader], message(writer, reader, subject="Công văn khẩn số 7",
                                                      body="Đề nghị xử lý trong ngày.\r\n"))
        await smtp.quit()

        push = await imap.wait_server_push(timeout=15)
        assert any(b"1 EXISTS" in bytes(line) for line in push), push
        imap.idle_done()
        await idle

        fetched = await imap.uid("fetch", "1", "(FLAGS BODY.PEEK[])")
        body = b"".join(bytes(x) for x in fetched.lines)
        assert "Đề nghị xử lý trong ngày.".encode() in body
        assert body.count(b"Received:") >= 1  # the SMTP pipeline added its trace header
        found = await imap.uid_search('SUBJECT "cong van khan"')
        assert b"1" in bytes(found.lines[0]).split()
        await imap.logout()
    finally:
        for service in reversed(services):
            await service.stop()
