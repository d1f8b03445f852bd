"""The operator's queue commands (`mailserver queue ...`, run as a separate process beside the running workers,
as an operator would), every action audited, and Đ6.2.b held mail waiting for an operator."""

from __future__ import annotations

import asyncio
import json

from tests.helpers import cli, cli_json
from tests.outbound_support import OutboundEnv, until

ALWAYS_LATER = ["451 4.3.2 System not accepting network messages"] * 50


async def run(env: OutboundEnv, *args: str, check: bool = True):
    return await asyncio.to_thread(cli, env.smtp.config, *args, check=check)


async def attempts(env: OutboundEnv, qid: str, n: int) -> None:
    async def tried() -> bool:
        e = await env.entry(qid)
        return e is not None and e.lease_owner is None and e.recipients[0].attempts >= n

    deadline = asyncio.get_running_loop().time() + 60
    while not await tried():
        assert asyncio.get_running_loop().time() < deadline, f"{qid} was not tried {n} times"
        await asyncio.sleep(0.05)


async def test_list_show_retry_hold_release_delete_while_serving_all_audited(outbound_env: OutboundEnv):
    env = outbound_env
    await env.sink("slow.test", data_replies=list(ALWAYS_LATER))
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@slow.test"], subject="Tờ trình")
    await env.wait_state(qid, "ban@slow.test", "pending")

    listed = await asyncio.to_thread(cli_json, env.smtp.config, "queue", "list")
    (item,) = listed
    assert item["id"] == qid and item["state"] == "deferred" and item["subject"] == "Tờ trình"
    assert item["recipients"][0]["code"] == "451 4.3.2"
    text = (await run(env, "queue", "list")).stdout
    assert qid in text and "451 4.3.2 System not accepting network messages" in text and "deferred" in text
    shown = (await run(env, "queue", "show", qid)).stdout
    assert "ban@slow.test" in shown and "System not accepting" in shown and "Tờ trình" in shown

    await run(env, "queue", "retry", qid)  # the workers see it at their next look (outbound.poll_interval)
    await attempts(env, qid, 2)

    await run(env, "queue", "hold", qid, "--reason", "kiểm tra nội dung")
    e = await env.entry(qid)
    assert e.held and e.hold_reason == "kiểm tra nội dung" and e.hold_actor == "cli:test-operator"
    refused = await run(env, "queue", "retry", qid, check=False)
    assert refused.returncode == 1 and "is held" in refused.stderr
    await run(env, "queue", "release", qid)
    await attempts(env, qid, 3)

    deleted = await run(env, "queue", "delete", qid)
    assert qid in deleted.stdout
    assert await env.entry(qid) is None
    assert not env.queue.message_path(qid).exists()
    assert not [m for m in await env.inbox(a) if b"multipart/report" in m]  # deleting sends no bounce

    audit = await asyncio.to_thread(cli_json, env.smtp.config, "audit", "list", "--target", f"queue:{qid}")
    assert [x["action"] for x in reversed(audit)] == ["queue.retry", "queue.hold", "queue.release", "queue.delete"]
    assert all(x["actor"] == "cli:test-operator" for x in audit)
    (d,) = env.log_events(queue_id=qid, event="queue-delete")
    assert d["actor"] == "cli:test-operator" and d["recipients"] == ["ban@slow.test"]


async def test_retry_all_and_bad_ids(outbound_env: OutboundEnv):
    env = outbound_env
    await env.sink("slow.test", data_replies=list(ALWAYS_LATER))
    a = await env.person("Nguyễn Văn An")
    ids = [await env.send(a, [f"n{i}@slow.test"]) for i in range(2)]
    for qid in ids:
        await attempts(env, qid, 1)
    out = await run(env, "queue", "retry", "--all")
    assert "2 message(s)" in out.stdout
    for qid in ids:
        await attempts(env, qid, 2)
    bad = await run(env, "queue", "show", "../../directory", check=False)
    assert bad.returncode == 1 and "is not a queue id" in bad.stderr
    gone = await run(env, "queue", "delete", "BCDFGH123456", check=False)
    assert gone.returncode == 1 and "no message BCDFGH123456 in the queue" in gone.stderr


async def test_d6_2_b_mail_of_a_held_account_waits_for_an_operator(outbound_env: OutboundEnv):
    env = outbound_env
    remote = await env.sink("alpha.test")
    a = await env.person("Nguyễn Văn An")
    colleague = await env.person("Trần Thị Bình")
    other = await env.person("Lê Văn Cường")
    account = await env.app.directory.get_account(a)
    await env.app.directory.hold_outbound(account, "sending limit exceeded 20 times", actor="system:smtp-rate-limit")

    c = await env.smtp.login(a)
    from tests.smtp_fixtures import message

    _, reply = await c.sendmail(a, ["ban@alpha.test", colleague], message(a, f"ban@alpha.test, {colleague}"))
    await c.quit()
    assert "held for review (Article 6.2.b)" in reply
    held_id = reply.split("queued as ")[1].split(";")[0]
    e = await env.entry(held_id)
    assert e.held and "sending limit exceeded" in e.hold_reason and e.hold_actor == "system:smtp-rate-limit"
    assert {r.rcpt: r.local for r in e.recipients} == {"ban@alpha.test": False, colleague: True}

    later = await env.send(other, ["ai@alpha.test"])  # the workers run: this one leaves, the held one does not
    await env.wait_gone(later)
    assert [r.rcpt_tos for r in remote.received] == [["ai@alpha.test"]]
    assert await env.inbox(colleague) == []  # local recipients wait too

    listed = await asyncio.to_thread(cli_json, env.smtp.config, "queue", "list", "--held", "--account", a)
    assert [x["id"] for x in listed] == [held_id]
    released = await run(env, "account", "release", a)
    assert f"queue release --account {a}" in released.stdout  # held mail stays held until decided
    assert (await env.entry(held_id)).held

    await run(env, "queue", "release", "--account", a)
    await env.wait_gone(held_id)
    assert [r.rcpt_tos for r in remote.received][-1] == ["ban@alpha.test"]
    (mine,) = await env.inbox(colleague)
    assert mine.startswith(f"Return-Path: <{a}>".encode())
    audit = await asyncio.to_thread(cli_json, env.smtp.config, "audit", "list", "--target", f"queue:{held_id}")
    assert [x["action"] for x in audit] == ["queue.release"] and audit[0]["rule"] == "Đ6.2.b"


async def test_delete_everything_a_compromised_account_queued(outbound_env: OutboundEnv):
    env = outbound_env
    remote = await env.sink("alpha.test")
    a = await env.person("Nguyễn Văn An")
    account = await env.app.directory.get_account(a)
    await env.app.directory.hold_outbound(account, "burst", actor="system:smtp-rate-limit")
    ids = [await env.send(a, [f"victim{i}@alpha.test"]) for i in range(3)]
    out = await run(env, "queue", "delete", "--account", a)
    assert all(qid in out.stdout for qid in ids)
    assert (await env.queue.stats()).messages == 0
    assert remote.received == []
    data = json.loads((await run(env, "queue", "list", "--json")).stdout)
    assert data == []
    await until(lambda: len(env.log_events(event="queue-delete")) == 3)
