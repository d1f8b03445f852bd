"""SMTP protocol over real sockets: greeting, EHLO extensions, enhanced codes, pipelining, TLS, chunked DATA."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from tests.smtp_fixtures import message
from tests.smtp_support import PASSWORD


async def raw_session(port: int, lines: list[bytes], *, tls: bool = False) -> list[str]:
    """Send `lines` in ONE write after the greeting and EHLO (RFC 2920 pipelining); return every reply line."""
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    out: list[str] = []

    async def reply() -> list[str]:
        got = []
        while True:
            line = (await asyncio.wait_for(r.readline(), 30)).decode().rstrip("\r\n")
            got.append(line)
            if len(line) < 4 or line[3] != "-":
                return got

    out += await reply()
    w.write(b"EHLO client.example.net\r\n")
    out += await reply()
    w.write(b"".join(lines))
    for _ in lines:
        if lines and _.startswith(b"DATA"):
            pass
    n = sum(1 for line in lines if line.endswith(b"\r\n") and not line.startswith((b" ",)))
    for _ in range(n):
        try:
            out += await reply()
        except (TimeoutError, asyncio.IncompleteReadError):
            break
    w.close()
    return out


async def test_ehlo_advertises_pipelining_size_8bitmime_smtputf8_starttls_enhancedstatuscodes(smtp_env):
    c = smtp_env.client("smtp")
    await c.connect()
    code, _text = await c.ehlo()
    assert code == 250
    exts = c.esmtp_extensions
    for ext in ("pipelining", "size", "8bitmime", "smtputf8", "starttls", "enhancedstatuscodes"):
        assert ext in exts, ext
    # the SIZE is the real byte limit derived from the 15 MiB attachment limit (Đ7.3.b)
    assert int(exts["size"]) == smtp_env.svc.size_limit > 21 * 1024 * 1024
    assert "auth" not in exts  # the MX takes no logins
    await c.quit()


async def test_every_reply_carries_an_enhanced_status_code(smtp_env):
    lines = [b"NOOP\r\n", b"RSET\r\n", b"MAIL FROM:<a@example.org>\r\n", b"MAIL FROM:<a@example.org>\r\n",
             b"RCPT TO:<nobody@phuyen.gov.vn>\r\n", b"DATA\r\n", b"VRFY x\r\n", b"BOGUS\r\n", b"QUIT\r\n"]
    out = await raw_session(smtp_env.ports["smtp"], lines)
    after_ehlo = [ln for ln in out[out.index(next(x for x in out if x.startswith("250 ENHANCEDSTATUSCODES"))) + 1:]]
    assert len(after_ehlo) == len(lines), out
    import re

    for line in after_ehlo:
        assert re.match(r"^[245]\d\d [245]\.\d{1,3}\.\d{1,3} ", line), line


async def test_pipelined_transaction_is_answered_in_order(smtp_env):
    """RFC 2920: MAIL, RCPT, RCPT, DATA in one write; replies in order; then the message and QUIT."""
    a = await smtp_env.person("Nguyễn Văn An")
    b = await smtp_env.person("Trần Thị Bình")
    body = message("ban@example.org", a).replace(b"\r\n.", b"\r\n..")
    lines = [b"MAIL FROM:<ban@example.org>\r\n", f"RCPT TO:<{a}>\r\n".encode(), f"RCPT TO:<{b}>\r\n".encode(),
             b"DATA\r\n"]
    r, w = await asyncio.open_connection("127.0.0.1", smtp_env.ports["smtp"])
    await r.readline()
    w.write(b"EHLO client.example.net\r\n")
    while (await r.readline())[3:4] == b"-":
        pass
    w.write(b"".join(lines))
    replies = [(await r.readline()).decode()[:3] for _ in lines]
    assert replies == ["250", "250", "250", "354"]
    # message, final dot and QUIT pipelined after it (the reader must hand QUIT back to the command loop)
    w.write(body + b".\r\nQUIT\r\n")
    final = (await r.readline()).decode()
    bye = (await r.readline()).decode()
    w.close()
    assert final.startswith("250 2.0.0"), final
    assert bye.startswith("221 2.0.0"), bye
    for rcpt in (a, b):
        (msg,) = await smtp_env.inbox(rcpt)
        assert b"Subject: Gi" in msg and msg.startswith(b"Return-Path: <ban@example.org>")


async def test_dot_stuffing_is_undone_and_leading_dot_lines_survive(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    body = "Dòng một\r\n.dòng bắt đầu bằng dấu chấm\r\n..hai chấm\r\n.\r\n"  # a lone dot inside the text
    c = smtp_env.client("smtp")
    await c.connect()
    await c.sendmail("ban@example.org", [a], message("ban@example.org", a, body=body))
    await c.quit()
    (msg,) = await smtp_env.inbox(a)
    assert msg.endswith(body.encode())


async def test_d7_3_b_data_over_the_size_limit_is_refused_after_the_final_dot(smtp_env):
    """Without SIZE= the limit is enforced while reading DATA, discarding (not buffering) the excess."""
    a = await smtp_env.person("Nguyễn Văn An")
    limit = smtp_env.svc.size_limit
    head = message("ban@example.org", a, body="")
    c = smtp_env.client("smtp")
    await c.connect()
    import aiosmtplib

    too_big = head + (b"x" * 998 + b"\r\n") * (limit // 1000 + 10)
    await c.mail("ban@example.org")  # no SIZE= declared
    await c.rcpt(a)
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await c.data(too_big)
    assert e.value.code == 552 and e.value.message.startswith("5.3.4")
    # the session goes on: a normal message right after is accepted
    await c.sendmail("ban@example.org", [a], head + b"ok\r\n")
    await c.quit()
    assert len(await smtp_env.inbox(a)) == 1


async def test_size_declared_at_mail_from_is_refused_before_data(smtp_env):
    """RFC 1870: SIZE= over the limit gets 552 5.3.4 at MAIL FROM, nothing is transferred."""
    c = smtp_env.client("smtp")
    await c.connect()
    import aiosmtplib

    with pytest.raises(aiosmtplib.SMTPSenderRefused) as e:
        await c.mail("ban@example.org", options=[f"SIZE={smtp_env.svc.size_limit + 1}"])
    assert e.value.code == 552 and e.value.message.startswith("5.3.4") and "MB" in e.value.message
    await c.quit()


async def test_submission_refuses_auth_before_starttls(smtp_env):
    """587: AUTH is neither offered nor accepted on the clear connection (RFC 3207, RFC 4954 §4)."""
    address = await smtp_env.person("Nguyễn Văn An")
    c = smtp_env.client("submission", start_tls=False)
    await c.connect()
    await c.ehlo()
    assert "auth" not in c.esmtp_extensions and "starttls" in c.esmtp_extensions
    import base64

    code, text = await c.execute_command(b"AUTH", b"PLAIN",
                                         base64.b64encode(f"\0{address}\0{PASSWORD}".encode()))
    assert code == 538 and text.startswith("5.7.11")
    await c.quit()


async def test_auth_login_and_plain_on_587_after_starttls(smtp_env):
    address = await smtp_env.person("Nguyễn Văn An")
    for method in ("login", "plain"):
        c = smtp_env.client("submission")
        await c.connect()
        await c.ehlo()  # again after STARTTLS (RFC 3207 §4.2)
        assert "auth" in c.esmtp_extensions
        if method == "login":
            code, _ = await c.auth_login(address, PASSWORD)
        else:
            code, _ = await c.auth_plain(address, PASSWORD)
        assert code == 235
        await c.quit()


async def test_auth_on_465_implicit_tls_works(smtp_env):
    """aiosmtpd issue 281: implicit TLS is TLS; AUTH must be offered and work on 465 (RFC 8314)."""
    address = await smtp_env.person("Nguyễn Văn An")
    c = smtp_env.client("submissions")
    await c.connect()
    await c.ehlo()
    assert "auth" in c.esmtp_extensions and "starttls" not in c.esmtp_extensions
    code, _ = await c.auth_login(address, PASSWORD)
    assert code == 235
    await c.sendmail(address, [address], message(address, address))
    await c.quit()
    (msg,) = await smtp_env.inbox(address)
    assert b"with ESMTPSA" in msg and b"using TLS" in msg


async def test_mx_does_not_offer_or_accept_auth(smtp_env):
    c = smtp_env.client("smtp")
    await c.connect()
    code, text = await c.execute_command(b"AUTH", b"LOGIN")
    assert code == 503 and text.startswith("5.5.1") and "submission" in text
    await c.quit()


async def test_connection_limit_per_ip(smtp_env):
    smtp_env.service.limits["smtp"].per_ip = 2
    conns = [await asyncio.open_connection("127.0.0.1", smtp_env.ports["smtp"]) for _ in range(3)]
    greetings = [(await r.readline()).decode() for r, _ in conns]
    assert greetings[0].startswith("220") and greetings[1].startswith("220")
    assert greetings[2].startswith("421 4.7.0"), greetings[2]
    for _, w in conns:
        w.close()
