"""SMTP hands mail to the queue before its 250: a report to a sender elsewhere leaves through the queue with the
null sender, and a store that fails at DATA does not make the sender repeat what was already queued."""

from __future__ import annotations

import pytest

from tests.outbound_support import OutboundEnv, parse_report
from tests.smtp_fixtures import message


async def fill(env: OutboundEnv, address: str, leave: int) -> None:
    """Put the mailbox within `leave` bytes of its quota through the store."""
    account = await env.app.directory.get_account(address)
    quota = await env.app.directory.quota_of(account)
    used = (await env.app.store.check_quota(account, 0)).used
    await env.app.store.deliver(account, message("x@example.org", address) + b"y" * (quota - used - leave),
                                system=True)


@pytest.mark.outbound_config(policy="quota:\n  default: 1MiB\n")
async def test_a_report_to_a_sender_elsewhere_leaves_through_the_queue(outbound_env: OutboundEnv):
    """Đ7.3.b after DATA: one local mailbox is full; the sender outside the province gets the DSN by SMTP."""
    env = outbound_env
    origin = await env.sink("origin.test")
    full = await env.person("Nguyễn Văn An")
    ok = await env.person("Trần Thị Bình")
    await fill(env, full, leave=1000)
    c = env.smtp.client("smtp")
    await c.connect()
    await c.mail("ngoai@origin.test")  # no SIZE=: the full mailbox is found only after DATA
    await c.rcpt(full)
    await c.rcpt(ok)
    code, _ = await c.data(message("ngoai@origin.test", f"{full}, {ok}", body="z" * 5000 + "\r\n"))
    await c.quit()
    assert code == 250
    (got,) = await origin.wait_received(1)
    assert got.mail_from == "<>" and got.rcpt_tos == ["ngoai@origin.test"]  # RFC 5321 §4.5.5
    report = parse_report(got.data)
    assert f"Final-Recipient: rfc822; {full}" in report.status and "Status: 5.2.2" in report.status
    assert "Hộp thư của người nhận đã đầy" in report.text and "mailbox is full" in report.text
    assert "Những người nhận khác đã nhận được thư" in report.text
    (dsn,) = env.log_events(event="dsn")
    assert dsn["result"] == "queued" and dsn["recipients"] == ["ngoai@origin.test"]
    await env.wait_gone(dsn["dsn_queue_id"])


async def test_a_store_failure_at_data_queues_the_local_recipients_with_the_remote_ones(outbound_env: OutboundEnv):
    """The remote copy is already queued when the store fails: a 451 would make the client send everything
    again, repeating the remote delivery. The local recipients join the queued message instead."""
    env = outbound_env
    remote = await env.sink("alpha.test")
    a = await env.person("Nguyễn Văn An")
    colleague = await env.person("Trần Thị Bình")
    store = env.app.store
    real = store.deliver_many
    failures: list[int] = []

    async def fails_once(*args, **kw):  # fault injection: the disk under the mail store fails once
        if not failures:
            failures.append(1)
            raise OSError(5, "Input/output error")
        return await real(*args, **kw)

    store.deliver_many = fails_once
    try:
        qid = await env.send(a, ["ban@alpha.test", colleague])
        await remote.wait_received(1)
        await env.wait_gone(qid)
    finally:
        store.deliver_many = real
    (mine,) = await env.inbox(colleague)
    assert mine.startswith(f"Return-Path: <{a}>".encode()) and f"id {qid}".encode() in mine
    assert len(remote.received) == 1
    queued = [e for e in env.log_events(queue_id=qid, event="queued") if e["recipients"] == [colleague]]
    assert queued and "the mail store failed" in queued[0]["reason"]
