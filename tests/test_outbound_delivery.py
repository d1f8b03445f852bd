"""Submitted mail leaves for other organisations' servers (aiosmtpd sinks on loopback, found by real MX and A
lookups): DKIM, the mail log, STARTTLS, PIPELINING, SIZE, 8BITMIME, SMTPUTF8, per-domain split and partial
failures, connection reuse and per-destination concurrency."""

from __future__ import annotations

import asyncio

import pytest

from tests.outbound_support import OutboundEnv, reports_in, sink_tls_context, until
from tests.smtp_fixtures import message


async def test_submitted_mail_reaches_the_remote_mx_dkim_signed_and_logged(outbound_env: OutboundEnv):
    env = outbound_env
    verify = env.publish_dkim()
    remote = await env.sink("alpha.test")
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@alpha.test"], subject="Công văn số 12")
    (got,) = await remote.wait_received(1)
    assert got.mail_from == a and got.rcpt_tos == ["ban@alpha.test"]
    head = got.data.split(b"\r\n\r\n", 1)[0]
    assert b"Return-Path" not in head  # RFC 5321 §4.4: only the final delivery writes it
    assert f"id {qid}".encode() in head and head.startswith(b"DKIM-Signature:")
    assert verify(got.data), "the DKIM signature must verify against the key `dns records` publishes"
    await env.wait_gone(qid)
    events = {e["event"]: e for e in env.log_events(queue_id=qid)}  # Đ7.2: one queue id from 250 to delivery
    assert {"accepted", "queued", "delivered"} <= set(events)
    d = events["delivered"]
    assert d["remote_host"] == f"{remote.name} [{remote.address}]:{env.port}"
    assert d["code"] == "250 2.0.0" and d["reason"] == f"Ok: queued as {remote.name}-1"
    assert d["result"] == "remote" and d["attempt"] == 1 and d["recipients"] == ["ban@alpha.test"]
    assert env.app.metrics.registry.get_sample_value("mailserver_deliveries_total", {"result": "remote"}) == 1


async def test_starttls_is_used_when_offered_and_its_version_logged(outbound_env: OutboundEnv, tmp_path):
    env = outbound_env
    remote = await env.sink("secure.test", tls=sink_tls_context(tmp_path))
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@secure.test"])
    (got,) = await remote.wait_received(1)
    assert got.tls
    await env.wait_gone(qid)
    (d,) = env.log_events(queue_id=qid, event="delivered")
    assert d["tls"].startswith("TLSv1.")


@pytest.mark.outbound_config(policy="outbound:\n  require_tls: [strict.test]\n")
async def test_policy_requires_tls_for_listed_domains(outbound_env: OutboundEnv):
    env = outbound_env
    remote = await env.sink("strict.test")  # no STARTTLS offered
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@strict.test"])
    e = await env.wait_state(qid, "ban@strict.test", "pending")
    (r,) = e.recipients
    assert r.attempts == 1 and r.code == "451 4.7.10" and "TLS is required" in r.reply
    assert remote.received == []


@pytest.mark.parametrize("pipelining", [True, False])
async def test_partial_refusal_bounces_only_the_refused_recipient(outbound_env: OutboundEnv, pipelining: bool):
    env = outbound_env
    remote = await env.sink("alpha.test", pipelining=pipelining,
                            rcpt_replies={"khongco@alpha.test": "550 5.1.1 <khongco@alpha.test>: user unknown"})
    a = await env.person("Nguyễn Văn An")
    rcpts = ["mot@alpha.test", "khongco@alpha.test", "hai@alpha.test"]
    qid = await env.send(a, rcpts, subject="Thông báo")
    (got,) = await remote.wait_received(1)
    assert got.rcpt_tos == ["mot@alpha.test", "hai@alpha.test"]
    await env.wait_gone(qid)
    (report,) = await reports_in(env, a)
    assert "khongco@alpha.test" in report.text and "mot@alpha.test" not in report.text
    assert "Địa chỉ người nhận không tồn tại" in report.text and "does not exist" in report.text
    assert "550 5.1.1 <khongco@alpha.test>: user unknown" in report.text  # what their server said
    assert "Final-Recipient: rfc822; khongco@alpha.test" in report.status and "Status: 5.1.1" in report.status
    assert "Action: failed" in report.status and f"Remote-MTA: dns; {remote.name}" in report.status
    assert "Final-Recipient: rfc822; mot@alpha.test" not in report.status
    assert "Subject: Thông báo" in report.headers
    assert report.raw.startswith(b"Return-Path: <>")  # RFC 5321 §4.5.5: a bounce has the null sender
    assert "Thông báo" in report.subject


async def test_recipients_split_by_domain_one_queue_entry(outbound_env: OutboundEnv):
    env = outbound_env
    alpha = await env.sink("alpha.test")
    beta = await env.sink("beta.test")
    a = await env.person("Nguyễn Văn An")
    local = await env.person("Trần Thị Bình")
    qid = await env.send(a, ["x@alpha.test", "y@beta.test", "z@alpha.test", local])
    await env.wait_gone(qid)
    assert [r.rcpt_tos for r in alpha.received] == [["x@alpha.test", "z@alpha.test"]]
    assert [r.rcpt_tos for r in beta.received] == [["y@beta.test"]]
    assert len(await env.inbox(local)) == 1  # local recipients are delivered at once, not queued
    delivered = env.log_events(queue_id=qid, event="delivered")
    assert sorted(r for e in delivered for r in e["recipients"]) == sorted(
        ["x@alpha.test", "y@beta.test", "z@alpha.test", local])


@pytest.mark.outbound_config(outbound="  destination_concurrency: 1\n")
async def test_one_connection_carries_several_messages_to_the_same_host(outbound_env: OutboundEnv):
    env = outbound_env
    remote = await env.sink("alpha.test")
    a = await env.person("Nguyễn Văn An")
    ids = [await env.send(a, [f"n{i}@alpha.test"], subject=f"thư {i}") for i in range(5)]
    await remote.wait_received(5)
    for qid in ids:
        await env.wait_gone(qid)
    assert remote.connections < 5, "connections should be reused between messages"


@pytest.mark.outbound_config(outbound="  destination_concurrency: 2\n")
async def test_per_destination_concurrency_limit(outbound_env: OutboundEnv):
    env = outbound_env
    gate = asyncio.Event()
    remote = await env.sink("alpha.test", gate=gate)
    a = await env.person("Nguyễn Văn An")
    c = await env.smtp.login(a)
    for i in range(6):
        await c.sendmail(a, [f"n{i}@alpha.test"], message(a, f"n{i}@alpha.test", subject=f"thư {i}"))
    await c.quit()
    await until(lambda: remote.open_now >= 2, what="two connections to the remote")
    await asyncio.sleep(1.0)  # give a third connection the chance to appear, if the limit were broken
    assert remote.max_open == 2
    gate.set()
    await remote.wait_received(6)
    assert remote.max_open == 2


async def test_size_declared_by_the_remote_is_respected(outbound_env: OutboundEnv):
    env = outbound_env
    remote = await env.sink("small.test", size=2000)
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@small.test"], body="x" * 5000 + "\r\n")
    await env.wait_gone(qid)
    assert remote.received == []
    (report,) = await reports_in(env, a)
    assert "Status: 5.3.4" in report.status and "quá lớn" in report.text and "larger than" in report.text


async def test_8bit_body_uses_8bitmime_and_a_7bit_only_server_gets_a_clear_bounce(outbound_env: OutboundEnv):
    env = outbound_env
    modern = await env.sink("modern.test")
    old = await env.sink("old.test", eightbitmime=False)
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@modern.test", "ban@old.test"], subject="Cong van", body="Kính gửi đồng chí.\r\n")
    (got,) = await modern.wait_received(1)
    assert "BODY=8BITMIME" in got.mail_options and "SMTPUTF8" not in got.mail_options
    await env.wait_gone(qid)
    assert old.received == []
    (report,) = await reports_in(env, a)
    assert "Final-Recipient: rfc822; ban@old.test" in report.status and "Status: 5.6.3" in report.status
    assert "7-bit" in report.text


async def test_smtputf8_only_when_needed_and_offered(outbound_env: OutboundEnv):
    env = outbound_env
    utf8 = await env.sink("utf8.test")
    ascii_only = await env.sink("ascii.test", smtputf8=False)
    a = await env.person("Nguyễn Văn An")
    # UTF-8 in the Subject (RFC 6532): needs SMTPUTF8
    qid = await env.send(a, ["ban@utf8.test", "ban@ascii.test"], subject="Giấy mời họp", mail_options=["SMTPUTF8"])
    (got,) = await utf8.wait_received(1)
    assert "SMTPUTF8" in got.mail_options and "Giấy mời họp".encode() in got.data
    await env.wait_gone(qid)
    assert ascii_only.received == []
    (report,) = await reports_in(env, a)
    assert "Status: 5.6.9" in report.status and "tiếng Việt" in report.text
    # plain ASCII headers: no SMTPUTF8 asked, the same server takes it
    qid = await env.send(a, ["ban@ascii.test"], subject="Giay moi hop", body="Kinh gui.\r\n")
    (got,) = await ascii_only.wait_received(1)
    assert "SMTPUTF8" not in got.mail_options
