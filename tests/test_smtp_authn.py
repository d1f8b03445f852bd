"""SPF, DKIM, DMARC on the MX with real DNS packets from a loopback server; DKIM signing of submitted mail."""

from __future__ import annotations

import aiosmtplib
import dkim
import pytest

from smtp.signing import keygen
from tests.smtp_fixtures import message

SENDER_DOMAIN = "example.org"


def sign_as(tmp_path, domain: str, msg: bytes) -> tuple[bytes, str]:
    key = keygen(tmp_path / "ext-keys", domain, "s1")
    sig = dkim.sign(msg, b"s1", domain.encode(), key.path.read_bytes(), include_headers=[b"from", b"to", b"subject"])
    return sig + msg, key.record


async def send_mx(env, sender: str, rcpt: str, msg: bytes) -> None:
    c = env.client()
    await c.connect()
    try:
        await c.sendmail(sender, [rcpt], msg)
    finally:
        await c.quit()


def publish(env, domain: str, spf: str, dmarc: str) -> None:
    env.dns.zone.txt[domain] = [spf]
    env.dns.zone.txt[f"_dmarc.{domain}"] = [dmarc]


def auth_results(delivered: bytes) -> str:
    head = delivered.split(b"\r\n\r\n", 1)[0].decode()
    start = head.index("Authentication-Results:")
    end = head.index("\r\nReceived:", start)
    return " ".join(head[start:end].split())


async def test_spf_dkim_dmarc_pass_recorded_in_authentication_results(smtp_env, tmp_path):
    a = await smtp_env.person("Nguyễn Văn An")
    signed, record = sign_as(tmp_path, SENDER_DOMAIN, message(f"ban@{SENDER_DOMAIN}", a))
    z = smtp_env.dns.zone
    z.txt[SENDER_DOMAIN] = ["v=spf1 ip4:127.0.0.0/8 -all"]
    z.txt[f"s1._domainkey.{SENDER_DOMAIN}"] = [record]
    z.txt[f"_dmarc.{SENDER_DOMAIN}"] = ["v=DMARC1; p=reject"]
    await send_mx(smtp_env, f"ban@{SENDER_DOMAIN}", a, signed)
    (msg,) = await smtp_env.inbox(a)
    ar = auth_results(msg)
    assert ar.startswith("Authentication-Results: mail.phuyen.gov.vn;")
    assert "spf=pass smtp.mailfrom=example.org" in ar
    assert "dkim=pass header.d=example.org header.s=s1" in ar
    assert "dmarc=pass (p=reject) header.from=example.org" in ar


async def test_dmarc_reject_failure_is_refused_when_policy_enforces(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    publish(smtp_env, "bank.example", "v=spf1 ip4:192.0.2.0/24 -all", "v=DMARC1; p=reject")  # not us
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await send_mx(smtp_env, "support@bank.example", a, message("support@bank.example", a))
    assert e.value.code == 550 and e.value.message.startswith("5.7.1") and "DMARC" in e.value.message
    assert await smtp_env.inbox(a) == []


@pytest.mark.smtp_config(policy="dmarc:\n  enforce_reject: false\n")
async def test_dmarc_reject_failure_is_delivered_and_recorded_when_policy_does_not_enforce(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    publish(smtp_env, "bank.example", "v=spf1 ip4:192.0.2.0/24 -all", "v=DMARC1; p=reject")
    await send_mx(smtp_env, "support@bank.example", a, message("support@bank.example", a))
    (msg,) = await smtp_env.inbox(a)
    ar = auth_results(msg)
    assert "spf=fail" in ar and "dmarc=fail (p=reject)" in ar


async def test_dmarc_quarantine_failure_goes_to_junk(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    publish(smtp_env, "shop.example", "v=spf1 -all", "v=DMARC1; p=quarantine")
    await send_mx(smtp_env, "news@shop.example", a, message("news@shop.example", a))
    assert await smtp_env.inbox(a) == []
    (msg,) = await smtp_env.inbox(a, folder="Junk")
    assert "dmarc=fail (p=quarantine)" in auth_results(msg)


async def test_dns_timeout_records_temperror_and_never_refuses(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    z = smtp_env.dns.zone
    z.slow |= {"slow.example", "_dmarc.slow.example"}
    await send_mx(smtp_env, "x@slow.example", a, message("x@slow.example", a))
    (msg,) = await smtp_env.inbox(a)
    ar = auth_results(msg)
    assert "spf=temperror" in ar and "dmarc=temperror" in ar


async def test_forged_authentication_results_with_our_id_are_removed(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    forged = message("x@nodns.example", a, extra_headers=(
        "Authentication-Results: mail.phuyen.gov.vn; spf=pass smtp.mailfrom=phuyen.gov.vn; dmarc=pass\r\n"
        "Authentication-Results: other.example; spf=pass\r\n"
    ))
    await send_mx(smtp_env, "x@nodns.example", a, forged)
    (msg,) = await smtp_env.inbox(a)
    head = msg.split(b"\r\n\r\n", 1)[0]
    assert head.count(b"Authentication-Results: mail.phuyen.gov.vn") == 1
    assert b"dmarc=pass" not in head and b"Authentication-Results: other.example" in head


async def test_submitted_mail_is_dkim_signed_once_and_verifies(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    key = keygen(smtp_env.app.settings.dkim_keys, "phuyen.gov.vn", "mail")
    c = await smtp_env.login(a)
    await c.sendmail(a, [a], message(a, a, subject="Công văn số 12"))
    await c.quit()
    (msg,) = await smtp_env.inbox(a)
    assert msg.count(b"DKIM-Signature:") == 1
    assert dkim.verify(msg, dnsfunc=lambda name, timeout=5: key.record.encode())


async def test_received_and_return_path_headers(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    await send_mx(smtp_env, "ban@nodns.example", a, message("ban@nodns.example", a))
    (msg,) = await smtp_env.inbox(a)
    head = msg.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("Return-Path: <ban@nodns.example>\r\n")
    assert "Received: from client.example.net ([127.0.0.1])" in head
    assert "by mail.phuyen.gov.vn with ESMTP id " in head and f"for <{a}>;" in head


async def test_null_sender_bounce_is_accepted_with_an_empty_return_path(smtp_env):
    """RFC 5321 §4.5.5: DSNs come from <>; they must be delivered, with Return-Path: <>."""
    a = await smtp_env.person("Nguyễn Văn An")
    c = smtp_env.client()
    await c.connect()
    await c.sendmail("", [a], message("MAILER-DAEMON@example.org", a, subject="Undelivered"))
    await c.quit()
    (msg,) = await smtp_env.inbox(a)
    assert msg.startswith(b"Return-Path: <>\r\n")
