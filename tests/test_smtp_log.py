"""Đ7.2 mail log (JSON lines per day) and `mailserver log search`; Đ6.2.a activity timestamps; swaks."""

from __future__ import annotations

import asyncio
import json
import subprocess

import aiosmtplib
import pytest

from tests.helpers import cli
from tests.smtp_fixtures import message
from tests.smtp_support import PASSWORD


async def test_d7_2_every_event_is_one_json_line_and_log_search_finds_it(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    c = smtp_env.client()
    await c.connect()
    await c.sendmail("ban@example.org", [a], message("ban@example.org", a, subject="Báo cáo tuần"))
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await c.sendmail("ban@example.org", ["khongco@phuyen.gov.vn"], message("ban@example.org", "x"))
    await c.quit()
    files = list(smtp_env.app.settings.paths.log_dir.glob("mail-*.jsonl"))
    assert len(files) == 1
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    events = [r["event"] for r in records]
    assert {"connect", "accepted", "delivered", "rejected"} <= set(events)
    delivered = next(r for r in records if r["event"] == "delivered")
    for key in ("time", "queue_id", "message_id", "sender", "recipients", "size", "client_ip", "result"):
        assert key in delivered, key
    rejected = next(r for r in records if r["event"] == "rejected")
    assert rejected["code"] == "550 5.1.1" and "khongco" in rejected["recipients"][0]

    found = await asyncio.to_thread(cli, smtp_env.config, "--json", "log", "search", "--to", a)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits and all(a in r["recipients"] for r in hits)
    by_id = await asyncio.to_thread(cli, smtp_env.config, "--json", "log", "search", "--message-id",
                                    delivered["message_id"])
    assert {r["queue_id"] for r in json.loads(by_id.stdout)} == {delivered["queue_id"]}
    none = await asyncio.to_thread(cli, smtp_env.config, "--json", "log", "search", "--from", "ban@example.org",
                                   "--until", "2020-01-01")
    assert json.loads(none.stdout) == []


async def test_d6_2_a_last_send_and_receive_are_recorded(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    b = await smtp_env.person("Trần Thị Bình")
    c = await smtp_env.login(a)
    await c.sendmail(a, [b], message(a, b))
    await c.quit()
    sender = await smtp_env.app.directory.get_account(a)
    assert sender.last_send_at is not None


async def test_auth_events_are_logged_without_the_password(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    c = smtp_env.client("submission")
    await c.connect()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await c.login(a, "Sai@Matkhau1")
    c.close()
    auth = smtp_env.log_events(event="auth")
    assert auth and auth[0]["result"] == "bad-credentials" and auth[0]["account"] == a
    text = "".join(p.read_text() for p in smtp_env.app.settings.paths.log_dir.glob("mail-*.jsonl"))
    assert "Sai@Matkhau1" not in text


async def test_swaks_starttls_and_auth_login(smtp_env):
    """A real third-party client: swaks with STARTTLS then AUTH LOGIN on 587 (and implicit TLS on 465)."""
    a = await smtp_env.person("Nguyễn Văn An")
    for flag, listener in (("--tls", "submission"), ("--tlsc", "submissions")):
        proc = await asyncio.create_subprocess_exec(
            "swaks", "-s", "127.0.0.1", "-p", str(smtp_env.ports[listener]), flag, "-a", "LOGIN",
            "-au", a, "-ap", PASSWORD, "-f", a, "-t", a, "--header", "Subject: swaks " + listener,
            "--helo", "swaks.example.net", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out.decode()
        assert "250 2.0.0 OK queued as" in out.decode()
    subjects = [m for m in await smtp_env.inbox(a) if b"Subject: swaks" in m]
    assert len(subjects) == 2


async def test_smtp_counts_into_the_shared_metrics(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    c = smtp_env.client()
    await c.connect()
    await c.sendmail("ban@example.org", [a], message("ban@example.org", a))
    await c.quit()
    m = smtp_env.app.metrics
    assert m.messages_accepted.labels(listener="smtp")._value.get() == 1
    assert m.deliveries.labels(result="local")._value.get() == 1
    assert m.connections.labels(listener="smtp")._value.get() >= 1
