"""Retries, bounces and delay notices on the policy's schedule, driven by a settable server clock: a remote that
answers 4xx then accepts, one that answers 5xx, one that drops the connection in the middle of DATA, a delay
notice after 4 hours and a bounce after 5 days, partial failures, and bounces that are never bounced."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest

from policy.model import OutboundPolicy
from storage.queue import DB_NAME, OutboundQueue
from storage.records import ts
from tests.outbound_support import OutboundEnv, reports_in, until
from tests.smtp_fixtures import message


async def test_4xx_is_retried_on_the_schedule_then_delivered_once(outbound_env: OutboundEnv):
    env = outbound_env
    remote = await env.sink("alpha.test", data_replies=["451 4.7.1 Greylisted, please try again later"])
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@alpha.test"])
    e = await env.wait_state(qid, "ban@alpha.test", "pending")
    (r,) = e.recipients
    assert r.attempts == 1 and r.code == "451 4.7.1" and r.reply == "Greylisted, please try again later"
    assert r.next_attempt_at - r.last_attempt_at == timedelta(minutes=5)  # policy outbound.retry_schedule[0]
    assert e.state == "deferred"
    (d,) = env.log_events(queue_id=qid, event="deferred")
    assert d["stage"] == "outbound" and d["code"] == "451 4.7.1" and d["remote_host"].startswith(remote.name)
    assert d["next_attempt"]
    env.advance(minutes=4)
    env.advance(minutes=1)
    await env.wait_gone(qid)
    assert len(remote.received) == 1
    (ok,) = env.log_events(queue_id=qid, event="delivered")
    assert ok["attempt"] == 2
    assert not [m for m in await env.inbox(a) if b"multipart/report" in m]


async def test_5xx_bounces_once_with_the_remote_answer(outbound_env: OutboundEnv):
    env = outbound_env
    await env.sink("alpha.test", data_replies=["554 5.7.1 Message rejected: spam content detected"])
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@alpha.test"], subject="Kế hoạch năm 2027")
    await env.wait_gone(qid)
    (report,) = await reports_in(env, a)
    assert "Thư không gửi được" in report.subject and "Undelivered" in report.subject
    assert "ban@alpha.test" in report.text
    assert "từ chối thư" in report.text and "refused the message" in report.text  # the explanation
    assert "554 5.7.1 Message rejected: spam content detected" in report.text  # and their own words
    assert "Kế hoạch năm 2027" in report.text and qid in report.text
    assert "Status: 5.7.1" in report.status and "Diagnostic-Code: smtp; 554 5.7.1 Message rejected" in report.status
    (dsn,) = env.log_events(queue_id=qid, event="dsn")
    assert dsn["dsn"] == "failed" and dsn["about"] == ["ban@alpha.test"]
    env.advance(hours=1)
    await env.wait_gone(dsn["dsn_queue_id"])
    assert len(await reports_in(env, a)) == 1


@pytest.mark.outbound_config(policy="outbound:\n  retry_schedule: [6 hours]\n")
async def test_delay_notice_after_4_hours_then_a_bounce_after_5_days(outbound_env: OutboundEnv):
    env = outbound_env
    remote = await env.sink("slow.test", data_replies=["451 4.3.2 System not accepting network messages"] * 50)
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@slow.test"], subject="Báo cáo")
    await env.wait_state(qid, "ban@slow.test", "pending")
    env.advance(hours=4, minutes=1)  # policy outbound.delay_notice_after: 4 hours; the next try is at 6 hours
    (delayed,) = await reports_in(env, a)
    assert "Action: delayed" in delayed.status and "Will-Retry-Until:" in delayed.status
    assert "CHƯA" in delayed.text and "still NOT" in delayed.text and "Báo cáo" in delayed.text
    assert "451 4.3.2 System not accepting network messages" in delayed.text
    e = await env.wait_state(qid, "ban@slow.test", "pending")
    assert e.delay_notified_at is not None and e.recipients[0].attempts == 1  # told on time, not at a retry
    env.advance(days=5)  # policy outbound.give_up_after: 5 days
    await env.wait_gone(qid)
    reports = await reports_in(env, a, 2)
    failed = next(r for r in reports if "Action: failed" in r.status)
    assert "Status: 4.4.7" in failed.status and "gave up after 5 days" in failed.status
    assert "Không gửi được sau nhiều ngày" in failed.text and "after days of trying" in failed.text
    assert len(reports) == 2 and remote.received == []



async def test_a_queue_written_before_the_delay_notice_index_is_upgraded_and_owes_its_notice(tmp_path):
    """A queue of the first schema (user_version 1) gets migration 2 at open, and a message whose delay
    notice is due while its recipient waits hours for the next try is due (and claimed) now."""
    folder = tmp_path / "queue"
    folder.mkdir()
    now = datetime.now(UTC)
    v1 = sqlite3.connect(folder / DB_NAME)
    v1.executescript(resources.files("storage.migrations").joinpath("queue_0001_initial.sql").read_text())
    v1.execute("PRAGMA user_version=1")
    v1.execute("INSERT INTO messages (id, sender, size, kind, eightbit, utf8_headers, arrived_at, expires_at, "
               "delay_notice_at) VALUES ('OLD1', 'an@phuyen.gov.vn', 10, 'mail', 0, 0, ?, ?, ?)",
               (ts(now - timedelta(hours=5)), ts(now + timedelta(days=4)), ts(now - timedelta(hours=1))))
    v1.execute("INSERT INTO recipients (queue_id, rcpt, domain, local, state, attempts, next_attempt_at) "
               "VALUES ('OLD1', 'ban@slow.test', 'slow.test', 0, 'pending', 3, ?)", (ts(now + timedelta(hours=3)),))
    v1.commit()
    v1.close()

    q = await OutboundQueue.open(folder, OutboundPolicy())
    try:
        check = sqlite3.connect(folder / DB_NAME)
        assert check.execute("PRAGMA user_version").fetchone()[0] == 2
        plan = " ".join(str(r) for r in check.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE delay_notified_at IS NULL AND delay_notice_at <= ?",
            (ts(now),)))
        check.close()
        assert "messages_delay_notice" in plan
        assert await q.next_due("worker-a") == now - timedelta(hours=1)
        (claimed,) = await q.claim("worker-a", 10, set())
        assert claimed.id == "OLD1" and claimed.recipients[0].next_attempt_at > now
    finally:
        await q.close()


@pytest.mark.outbound_config(policy="outbound:\n  retry_schedule: [6 hours]\n")
async def test_a_delay_notice_that_cannot_be_written_waits_a_retry_interval_not_a_loop(
        outbound_env: OutboundEnv, tmp_path, caplog):
    """An operator breaks the delay notice template: the due notice fails once, the message is put off for
    5 minutes instead of being claimed again at once, and the notice goes out once the
    template is mended."""
    import asyncio

    from tests.helpers import cli

    env = outbound_env
    folder = tmp_path / "texts"
    await asyncio.to_thread(cli, env.smtp.config, "notice", "templates", "--export", str(folder), check=True)
    delayed = folder / "delivery-delayed.txt"
    good = delayed.read_text(encoding="utf-8")
    delayed.write_text("Thư chậm\n", encoding="utf-8")  # no "Subject:" line
    env.app.settings.paths.templates = folder
    await env.sink("slow.test", data_replies=["451 4.3.2 System not accepting network messages"] * 50)
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@slow.test"], subject="Báo cáo")
    await env.wait_state(qid, "ban@slow.test", "pending")
    with caplog.at_level("ERROR", logger="smtp.outbound"):
        env.advance(hours=4, minutes=1)

        async def put_off() -> bool:
            e = await env.entry(qid)
            return e is not None and e.lease_owner is None and e.delay_notice_at is not None \
                and e.delay_notice_at > env.clock() + timedelta(minutes=4)

        deadline = asyncio.get_running_loop().time() + 60
        while not await put_off():
            assert asyncio.get_running_loop().time() < deadline, "the failed notice was not put off"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)  # time for a loop to show itself
    failures = [r for r in caplog.records if "delivery failed; it stays queued until" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    e = await env.entry(qid)
    assert e is not None and e.delay_notified_at is None and e.recipients[0].attempts == 1
    assert await reports_in(env, a, 0) == []

    delayed.write_text(good, encoding="utf-8")
    env.advance(minutes=6)
    (notice,) = await reports_in(env, a)
    assert "Action: delayed" in notice.status and "Báo cáo" in notice.text
    e = await env.wait_state(qid, "ban@slow.test", "pending")
    assert e.delay_notified_at is not None and e.recipients[0].attempts == 1


async def test_a_failure_recorded_without_its_bounce_is_bounced_later(outbound_env: OutboundEnv):
    """The process died after recording a recipient's 5xx and before queueing the bounce (the two are
    separate commits): the unreported failure makes the message due, and the sender gets the bounce."""
    from smtp.ids import new_queue_id
    from storage.queue import FAILED, NewEntry, Outcome

    env = outbound_env
    a = await env.person("Nguyễn Văn An")
    qid = new_queue_id()
    # held, so no worker takes it while the failure is written as a dead worker would have left it
    await env.queue.enqueue(NewEntry(qid, a, ["ai@gone.test"], message(a, "ai@gone.test", subject="Công văn"),
                                     env.clock(), account=a, subject="Công văn", hold_reason="test", hold_actor="test"))
    assert await env.queue.record(qid, [Outcome("ai@gone.test", FAILED, "550 5.1.1", "No such user",
                                                "mx.gone.test [127.0.0.9]:25", answered=True)]) == 1
    await env.queue.release(qid)
    (bounce,) = await reports_in(env, a)
    assert "Action: failed" in bounce.status and "ai@gone.test" in bounce.text and "No such user" in bounce.text
    await env.wait_gone(qid)
    assert len(env.log_events(event="dsn")) == 1

async def test_a_connection_dropped_mid_data_is_retried_and_delivered_once(outbound_env: OutboundEnv):
    env = outbound_env
    remote = await env.sink("alpha.test", drop_data=1)
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@alpha.test"], body="Nội dung dài.\r\n" * 2000)
    e = await env.wait_state(qid, "ban@alpha.test", "pending")
    (r,) = e.recipients
    assert remote.drops == 1 and remote.received == []
    assert r.code == "451 4.4.2" and "connection to" in r.reply and "lost" in r.reply
    env.advance(minutes=5)
    (got,) = await remote.wait_received(1)
    assert got.data.endswith(("Nội dung dài.\r\n" * 2000).encode())
    await env.wait_gone(qid)
    assert len(remote.received) == 1



@pytest.mark.outbound_config(timeouts={"greeting": 1, "data_end": 1})
async def test_rfc5321_timeouts_end_a_silent_attempt_and_it_is_retried(outbound_env: OutboundEnv):
    """A host that never greets and one that never answers the final dot: each wait ends at its
    `outbound.timeouts` value (RFC 5321 §4.5.3.2.1 and §4.5.3.2.6) with a temporary failure that names it,
    and the recipient is tried again on the retry schedule (an unanswered end may have arrived: it is sent
    again, at least once)."""
    import asyncio

    env = outbound_env
    mute = await env.sink("mute.test", silent=True)
    gate = asyncio.Event()
    slow = await env.sink("slow.test", gate=gate)
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ai@mute.test", "ban@slow.test"])

    async def both_tried() -> bool:
        e = await env.entry(qid)
        return e is not None and e.lease_owner is None and all(r.attempts == 1 for r in e.recipients)

    deadline = asyncio.get_running_loop().time() + 60
    while not await both_tried():
        assert asyncio.get_running_loop().time() < deadline, await env.entry(qid)
        await asyncio.sleep(0.05)
    e = await env.entry(qid)
    assert e is not None
    r = {x.rcpt: x for x in e.recipients}
    assert r["ai@mute.test"].state == "pending" and r["ai@mute.test"].code == "451 4.4.2"
    assert "failed during the greeting: timeout" in (r["ai@mute.test"].reply or "") and mute.connections == 1
    assert r["ban@slow.test"].state == "pending" and r["ban@slow.test"].code == "451 4.4.2"
    assert "lost after the message was sent" in (r["ban@slow.test"].reply or "")
    (deferred,) = [d for d in env.log_events(event="deferred") if d["recipients"] == ["ban@slow.test"]]
    assert "timeout" in deferred["reason"] and deferred["remote_host"].startswith("mx2.slow.test")

    gate.set()  # the remote answers in time from now on
    env.advance(minutes=5)  # policy outbound.retry_schedule: 5 minutes first
    e = await env.wait_state(qid, "ban@slow.test", "delivered")
    assert next(x for x in e.recipients if x.rcpt == "ban@slow.test").attempts == 2
    (got,) = await slow.wait_received(1)
    assert got.rcpt_tos == ["ban@slow.test"]
    e = await env.wait_state(qid, "ai@mute.test", "pending")
    assert next(x for x in e.recipients if x.rcpt == "ai@mute.test").attempts == 2 and mute.connections == 2

async def test_partial_failure_across_domains_bounces_only_the_failed_one(outbound_env: OutboundEnv):
    env = outbound_env
    good = await env.sink("good.test")
    await env.sink("bad.test", rcpt_replies={"ai@bad.test": "550 5.1.1 No such user"})
    waiting = await env.sink("later.test", data_replies=["421 4.3.0 Try again later"])
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ok@good.test", "ai@bad.test", "x@later.test"])
    (report,) = await reports_in(env, a)
    assert "ai@bad.test" in report.text and "ok@good.test" not in report.text and "x@later.test" not in report.text
    assert "Những người nhận khác đã nhận được thư" in report.text  # good.test got it
    e = await env.wait_state(qid, "x@later.test", "pending")
    assert {r.rcpt: r.state for r in e.recipients} == {"ok@good.test": "delivered", "ai@bad.test": "failed",
                                                      "x@later.test": "pending"}
    env.advance(minutes=5)
    await waiting.wait_received(1)
    await env.wait_gone(qid)
    assert len(good.received) == 1, "a recipient recorded as delivered is never sent again"
    assert len(await reports_in(env, a)) == 1


async def test_bounces_are_never_bounced(outbound_env: OutboundEnv):
    """Mail from outside to an alias that forwards outside; the far end refuses; the bounce to the original
    sender is refused too: it is logged and dropped, never answered with another bounce (RFC 5321 §4.5.5)."""
    env = outbound_env
    await env.app.directory.add_alias("chuyentiep@phuyen.gov.vn", "ai@far.test", actor="test")
    await env.sink("far.test", rcpt_replies={"ai@far.test": "550 5.1.1 No such user"})
    origin = await env.sink("origin.test", rcpt_replies={"ngoai@origin.test": "550 5.1.1 Unknown sender mailbox"})
    c = env.smtp.client("smtp")
    await c.connect()
    await c.sendmail("ngoai@origin.test", ["chuyentiep@phuyen.gov.vn"],
                     message("ngoai@origin.test", "chuyentiep@phuyen.gov.vn", subject="Hello"))
    await c.quit()
    await until(lambda: any(e["sender"] == "" for e in env.log_events(event="bounced")), what="the bounce to fail")
    (dsn,) = env.log_events(event="dsn")
    assert dsn["sender"] == "ngoai@origin.test" and dsn["about"] == ["ai@far.test"]
    await env.wait_gone(dsn["dsn_queue_id"])
    (b,) = [e for e in env.log_events(event="bounced") if e["sender"] == ""]
    assert b["queue_id"] == dsn["dsn_queue_id"] and b["recipients"] == ["ngoai@origin.test"]
    assert len(env.log_events(event="dsn")) == 1
    assert origin.received == []
    assert (await env.queue.stats()).messages == 0


async def test_operators_edit_the_bounce_texts(outbound_env: OutboundEnv, tmp_path):
    """The bounce texts are templates beside the other notices; an edited copy is used at once, and
    `config check` names a broken line of the reasons table."""
    import asyncio

    from tests.helpers import cli

    env = outbound_env
    folder = tmp_path / "texts"
    await asyncio.to_thread(cli, env.smtp.config, "notice", "templates", "--export", str(folder), check=True)
    failed = folder / "delivery-failed.txt"
    failed.write_text(failed.read_text(encoding="utf-8").replace("Subject: Thư không gửi được",
                                                                 "Subject: [Sở TT&TT] Thư không gửi được"),
                      encoding="utf-8")
    reasons = folder / "delivery-reasons.txt"
    reasons.write_text(reasons.read_text(encoding="utf-8").replace(
        "5.1.1 | Địa chỉ người nhận không tồn tại.", "5.1.1 | Không có hộp thư này ở đơn vị nhận."), encoding="utf-8")
    env.app.settings.paths.templates = folder  # what `paths.templates` in mailserver.yaml sets
    await env.sink("alpha.test", rcpt_replies={"ai@alpha.test": "550 5.1.1 No such user"})
    a = await env.person("Nguyễn Văn An")
    await env.send(a, ["ai@alpha.test"])
    (report,) = await reports_in(env, a)
    assert report.subject.startswith("[Sở TT&TT] Thư không gửi được")
    assert "Không có hộp thư này ở đơn vị nhận." in report.text

    cfg = env.smtp.config
    cfg.write_text(cfg.read_text().replace("  data: ../data\n", f"  data: ../data\n  templates: {folder}\n"))
    assert (await asyncio.to_thread(cli, cfg, "config", "check")).returncode == 0
    with reasons.open("a", encoding="utf-8") as f:
        f.write("5.9.9 only two columns | missing\n")
    proc = await asyncio.to_thread(cli, cfg, "config", "check")
    assert proc.returncode == 1 and "delivery-reasons.txt:" in proc.stderr
    assert 'expected "status | Vietnamese | English"' in proc.stderr
