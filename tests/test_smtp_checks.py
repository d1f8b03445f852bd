"""The regulation at the door, over real SMTP sessions: relay tricks, lock states, identity, Đ7.3.b sizes and
quota, Đ8.2.b viruses (real clamd), Đ6.2.b rate limits and the hold, brute force."""

from __future__ import annotations

import base64
import io
import os
import zipfile
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

import aiosmtplib
import pytest

from tests.smtp_fixtures import message
from tests.smtp_support import EICAR, PASSWORD

MiB = 1024 * 1024


async def rcpt_reply(env, address: str, listener: str = "smtp", sender: str = "ban@example.org",
                     login: str | None = None) -> tuple[int, str]:
    c = await env.login(login, listener) if login else env.client(listener)
    if not login:
        await c.connect()
    await c.mail(sender)
    resp = await c.execute_command(b"RCPT", f"TO:<{address}>".encode())
    await c.quit()
    return resp.code, resp.message


async def login_refusal(env, address: str) -> aiosmtplib.SMTPAuthenticationError:
    c = env.client("submission")
    await c.connect()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as e:
        await c.login(address, PASSWORD)
    c.close()
    return e.value


# ---------------------------------------------------------------- relaying


RELAY_TRICKS = [
    "user@example.com",
    "nguyenvanan%example.com@phuyen.gov.vn",
    "example.com!nguyenvanan@phuyen.gov.vn",
    '"nguyenvanan@example.com"@phuyen.gov.vn',
    "@phuyen.gov.vn:user@example.com",
    "user@[192.0.2.1]",
    "user@example.com.",
    "user@phuyen.gov.vn.example.com",
    "user@sub.phuyen.gov.vn",
    "user@phuyên.gov.vn",  # IDN look-alike: a different domain
]


@pytest.mark.parametrize("address", RELAY_TRICKS)
async def test_mx_refuses_relaying_whatever_the_address_trick(smtp_env, address):
    await smtp_env.person("Nguyễn Văn An")
    code, text = await rcpt_reply(smtp_env, address)
    assert code == 554 and text.startswith("5.7.1"), (address, code, text)


@pytest.mark.parametrize("address", ["nguyenvanan@phuyen.gov.vn", "NguyenVanAn@PHUYEN.GOV.VN",
                                     "nguyenvanan@phuyen.gov.vn.", "@other.example:nguyenvanan@phuyen.gov.vn"])
async def test_mx_accepts_local_addresses_after_normalisation(smtp_env, address):
    await smtp_env.person("Nguyễn Văn An")
    code, text = await rcpt_reply(smtp_env, address)
    assert code == 250, (address, text)


async def test_unknown_local_user_is_550_5_1_1(smtp_env):
    code, text = await rcpt_reply(smtp_env, "khongco@phuyen.gov.vn")
    assert code == 550 and text.startswith("5.1.1")


async def test_postmaster_without_domain_is_accepted(smtp_env):
    """RFC 5321 §4.5.1."""
    code, _ = await rcpt_reply(smtp_env, "postmaster")
    assert code == 250


async def test_submission_takes_remote_recipients_for_the_outbound_queue(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    code, text = await rcpt_reply(smtp_env, "friend@example.com", "submission", sender=a, login=a)
    assert code == 250 and text.startswith("2.1.5")
    code, text = await rcpt_reply(smtp_env, "friend@example.com")  # the MX still relays for nobody
    assert code == 554 and text.startswith("5.7.1")


async def test_too_many_recipients(smtp_env):
    smtp_env.svc.settings.smtp.max_recipients = 2
    a = await smtp_env.person("Nguyễn Văn An")
    c = smtp_env.client()
    await c.connect()
    await c.mail("ban@example.org")
    assert (await c.rcpt(a))[0] == 250
    assert (await c.rcpt("postmaster@phuyen.gov.vn"))[0] == 250
    resp = await c.execute_command(b"RCPT", f"TO:<{a}>".encode())
    assert resp.code == 452 and resp.message.startswith("4.5.3")
    await c.quit()


# ---------------------------------------------------------------- lock states (REQUIREMENTS.md)


async def test_d6_1_suspended_mailbox_still_receives_but_cannot_log_in(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    await smtp_env.app.directory.suspend(a, "kiểm tra", actor="test")
    c = smtp_env.client()
    await c.connect()
    await c.sendmail("ban@example.org", [a], message("ban@example.org", a))
    await c.quit()
    assert len(await smtp_env.inbox(a)) == 1
    refusal = await login_refusal(smtp_env, a)
    assert refusal.code == 535 and "suspended" in refusal.message


async def test_d5_3_b_send_locked_account_logs_in_but_mail_from_is_550_5_7_1(smtp_env):
    from datetime import date, timedelta

    a = await smtp_env.person("Nguyễn Văn An")
    # staff: sending locked at once on the leave date, revoked 6 months later
    await smtp_env.app.directory.retire(a, date.today() - timedelta(days=1), actor="test")
    c = await smtp_env.login(a)
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as e:
        await c.mail(a)
    assert e.value.code == 550 and e.value.message.startswith("5.7.1") and "locked" in e.value.message
    await c.quit()


async def test_d5_3_b_revoked_address_is_unknown(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    await smtp_env.app.directory.revoke(a, actor="test")
    code, text = await rcpt_reply(smtp_env, a)
    assert code == 550 and text.startswith("5.1.1")


async def test_d6_3_c_must_change_password_cannot_authenticate_and_is_told_where(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    await smtp_env.app.directory.set_password(a, PASSWORD, must_change=True, actor="test")
    refusal = await login_refusal(smtp_env, a)
    assert refusal.code == 535 and "/account" in refusal.message


# ---------------------------------------------------------------- sender identity


async def test_submission_sends_only_as_own_address_alias_or_granted_unit(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    b = await smtp_env.person("Trần Thị Bình")
    await smtp_env.app.directory.add_alias("an.nguyen", a, actor="test")
    await smtp_env.app.directory.grant_send_as(a, "stttt", actor="test")
    c = await smtp_env.login(a)
    for sender in (a, "an.nguyen@phuyen.gov.vn", "stttt@phuyen.gov.vn"):
        await c.sendmail(sender, [b], message(sender, b, subject=f"từ {sender}"))
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as e:
        await c.mail(b)
    assert e.value.code == 553 and e.value.message.startswith("5.7.1")
    await c.quit()
    assert len(await smtp_env.inbox(b)) == 3


async def test_submission_checks_the_from_header_too(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    b = await smtp_env.person("Trần Thị Bình")
    c = await smtp_env.login(a)
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await c.sendmail(a, [b], message(b, b))  # envelope is mine, From: is Bình's
    assert e.value.code == 550 and e.value.message.startswith("5.7.1") and b in e.value.message
    await c.quit()
    assert await smtp_env.inbox(b) == []


async def test_mail_from_our_domain_on_the_mx_needs_a_login(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    c = smtp_env.client()
    await c.connect()
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as e:
        await c.mail(a)
    assert e.value.code == 550 and e.value.message.startswith("5.7.1")
    await c.quit()


# ---------------------------------------------------------------- Đ7.3.b attachments


def with_files(sender: str, to: str, sizes: list[int]) -> bytes:
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"], m["To"], m["Subject"] = sender, to, "Tài liệu"
    m.set_content("Xin gửi tài liệu.")
    for n, size in enumerate(sizes):
        m.add_attachment(os.urandom(size), maintype="application", subtype="pdf", filename=f"tl{n}.pdf")
    return m.as_bytes()


@pytest.mark.parametrize("sizes", [[int(14.9 * MiB)], [int(14.9 * MiB) // 3] * 3], ids=["one-file", "three-files"])
async def test_d7_3_b_14_9_mib_of_attachments_is_accepted(smtp_env, sizes):
    a = await smtp_env.person("Nguyễn Văn An")
    c = smtp_env.client()
    await c.connect()
    await c.sendmail("ban@example.org", [a], with_files("ban@example.org", a, sizes))
    await c.quit()
    assert len(await smtp_env.inbox(a)) == 1


@pytest.mark.parametrize("sizes", [[int(15.1 * MiB)], [int(15.1 * MiB) // 3 + 1] * 3], ids=["one-file", "three-files"])
async def test_d7_3_b_15_1_mib_of_attachments_is_552_5_3_4_naming_the_limit_in_mb(smtp_env, sizes):
    a = await smtp_env.person("Nguyễn Văn An")
    c = smtp_env.client()
    await c.connect()
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await c.sendmail("ban@example.org", [a], with_files("ban@example.org", a, sizes))
    await c.quit()
    assert e.value.code == 552 and e.value.message.startswith("5.3.4")
    assert "15.7 MB (15 MiB)" in e.value.message and "7.3.b" in e.value.message
    assert await smtp_env.inbox(a) == []


# ---------------------------------------------------------------- Đ8.2.b viruses (real clamd)


def eicar_variants(sender: str, to: str) -> dict[str, bytes]:
    plain = message(sender, to, body=EICAR.decode() + "\r\n")
    att = EmailMessage(policy=SMTP_POLICY)
    att["From"], att["To"], att["Subject"] = sender, to, "hoá đơn"
    att.set_content("Xem tệp đính kèm.")
    att.add_attachment(EICAR, maintype="application", subtype="octet-stream", filename="eicar.com")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hoadon/eicar.com", EICAR)
    zipped = EmailMessage(policy=SMTP_POLICY)
    zipped["From"], zipped["To"], zipped["Subject"] = sender, to, "hoá đơn nén"
    zipped.set_content("Xem tệp nén.")
    zipped.add_attachment(buf.getvalue(), maintype="application", subtype="zip", filename="hoadon.zip")
    return {"plain": plain, "base64-attachment": att.as_bytes(), "zip": zipped.as_bytes()}


@pytest.mark.parametrize("variant", ["plain", "base64-attachment", "zip"])
async def test_d8_2_b_eicar_is_refused_554_5_7_1_naming_the_signature(smtp_env, variant):
    a = await smtp_env.person("Nguyễn Văn An")
    c = smtp_env.client()
    await c.connect()
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await c.sendmail("ban@example.org", [a], eicar_variants("ban@example.org", a)[variant])
    await c.quit()
    assert e.value.code == 554 and e.value.message.startswith("5.7.1") and "Eicar-Test-Signature" in e.value.message
    assert await smtp_env.inbox(a) == []
    events = [r["event"] for r in smtp_env.log_events()]
    assert "virus" in events


async def test_d8_2_b_submitted_mail_is_scanned_too(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    c = await smtp_env.login(a)
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await c.sendmail(a, [a], eicar_variants(a, a)["base64-attachment"])
    await c.quit()
    assert e.value.code == 554


async def test_d8_2_b_clamd_unreachable_is_451_4_7_1_and_nothing_is_stored(smtp_env, tmp_path):
    a = await smtp_env.person("Nguyễn Văn An")
    smtp_env.svc.clamd.socket = tmp_path / "no-such-clamd.sock"
    c = smtp_env.client()
    await c.connect()
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await c.sendmail("ban@example.org", [a], message("ban@example.org", a))
    await c.quit()
    assert e.value.code == 451 and e.value.message.startswith("4.7.1")
    assert await smtp_env.inbox(a) == []


@pytest.mark.smtp_config(policy="virus:\n  on_scanner_error: accept\n")
async def test_d8_2_b_fail_open_policy_accepts_when_clamd_is_down(smtp_env, tmp_path):
    a = await smtp_env.person("Nguyễn Văn An")
    smtp_env.svc.clamd.socket = tmp_path / "no-such-clamd.sock"
    c = smtp_env.client()
    await c.connect()
    await c.sendmail("ban@example.org", [a], message("ban@example.org", a))
    await c.quit()
    assert len(await smtp_env.inbox(a)) == 1


# ---------------------------------------------------------------- Đ7.3.b quota


async def fill(env, address: str, leave: int) -> None:
    """Put the mailbox within `leave` bytes of its quota through the store."""
    account = await env.app.directory.get_account(address)
    quota = await env.app.directory.quota_of(account)
    usage = (await env.app.store.check_quota(account, 0)).used
    chunk = message("filler@example.org", address, body="x" * 1000 + "\r\n")
    big = chunk + b"y" * max(0, quota - usage - leave - len(chunk))
    await env.app.store.deliver(account, big, system=True)


@pytest.mark.smtp_config(policy="quota:\n  default: 1MiB\n")
async def test_d7_3_b_rcpt_over_quota_with_declared_size_is_552_5_2_2(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    await fill(smtp_env, a, leave=1000)
    c = smtp_env.client()
    await c.connect()
    await c.mail("ban@example.org", options=["SIZE=5000"])
    resp = await c.execute_command(b"RCPT", f"TO:<{a}>".encode())
    assert resp.code == 552 and resp.message.startswith("5.2.2") and "full" in resp.message
    await c.quit()


@pytest.mark.smtp_config(policy="quota:\n  default: 1MiB\n  over_quota: tempfail\n")
async def test_d7_3_b_quota_tempfail_policy_is_452_4_2_2(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    await fill(smtp_env, a, leave=1000)
    c = smtp_env.client()
    await c.connect()
    await c.mail("ban@example.org", options=["SIZE=5000"])
    resp = await c.execute_command(b"RCPT", f"TO:<{a}>".encode())
    assert resp.code == 452 and resp.message.startswith("4.2.2")
    await c.quit()


@pytest.mark.smtp_config(policy="quota:\n  default: 1MiB\n")
async def test_d7_3_b_after_data_others_get_it_and_the_sender_gets_a_dsn(smtp_env):
    """No SIZE= declared: the full mailbox is discovered after DATA; RFC 3464 DSN to the sender."""
    sender = await smtp_env.person("Lê Văn Gửi")
    full = await smtp_env.person("Nguyễn Văn An")
    ok = await smtp_env.person("Trần Thị Bình")
    await fill(smtp_env, full, leave=1000)
    c = await smtp_env.login(sender)
    await c.mail(sender)  # no SIZE=
    await c.rcpt(full)
    await c.rcpt(ok)
    code, _ = await c.data(message(sender, f"{full}, {ok}", body="z" * 5000 + "\r\n"))
    await c.quit()
    assert code == 250
    assert len(await smtp_env.inbox(ok)) == 1
    (dsn,) = await smtp_env.inbox(sender)
    assert b"multipart/report" in dsn and b"report-type=delivery-status" in dsn
    assert f"Final-Recipient: rfc822; {full}".encode() in dsn and b"Status: 5.2.2" in dsn
    assert f"Final-Recipient: rfc822; {ok}".encode() not in dsn


# ---------------------------------------------------------------- Đ6.2.b rate limits and the hold


@pytest.mark.smtp_config(policy="sending:\n  messages_per_window: 3\n  recipients_per_window: 100\n"
                                "  hold_after_refusals: 2\n")
async def test_d6_2_b_rate_limit_451_then_hold_audit_and_postmaster_notice(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    b = await smtp_env.person("Trần Thị Bình")
    c = await smtp_env.login(a)
    for i in range(3):
        await c.sendmail(a, [b], message(a, b, subject=f"thư {i}"))
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as e:
            await c.mail(a)
        assert e.value.code == 451 and e.value.message.startswith("4.7.1")
    await c.quit()
    account = await smtp_env.app.directory.get_account(a)
    assert await smtp_env.app.directory.outbound_hold(account) is not None
    audit = await smtp_env.app.directory.audit_entries(target=a)
    assert any(e.action == "account.hold-outbound" and e.rule == "Đ6.2.b" for e in audit)
    notices = await smtp_env.inbox("stttt@phuyen.gov.vn")
    assert any(a.encode() in n and b"on hold" in n for n in notices)
    assert any(f"queue delete --account {a}".encode() in n for n in notices)  # what the operator can do
    # suspension stays an operator's decision; what it sends now waits in the outbound queue
    # (tests/test_outbound_queue.py)
    assert smtp_env.app.directory.access(account).state.value == "active"


@pytest.mark.smtp_config(policy="sending:\n  messages_per_window: 100\n  recipients_per_window: 2\n")
async def test_d6_2_b_recipients_per_window_and_a_clerks_grant(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    rcpts = [await smtp_env.person(f"Người Nhận {i}") for i in range(3)]
    c = await smtp_env.login(a)
    await c.mail(a)
    assert (await c.rcpt(rcpts[0]))[0] == 250
    assert (await c.rcpt(rcpts[1]))[0] == 250
    resp = await c.execute_command(b"RCPT", f"TO:<{rcpts[2]}>".encode())
    assert resp.code == 451 and resp.message.startswith("4.7.1")
    await c.quit()
    await smtp_env.app.directory.set_send_limit(a, None, 50, actor="test")
    c = await smtp_env.login(a)
    await c.sendmail(a, rcpts, message(a, ", ".join(rcpts)))
    await c.quit()


# ---------------------------------------------------------------- brute force


@pytest.mark.smtp_config(policy="auth:\n  max_failures_per_ip_account: 3\n")
async def test_brute_force_blocked_client_gets_421_4_7_0_with_the_cooling_off(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    replies = []
    for i in range(4):
        c = smtp_env.client("submission")
        await c.connect()
        await c.ehlo()
        resp = await c.execute_command(b"AUTH", b"PLAIN", base64.b64encode(f"\0{a}\0Sai@mat{i}".encode()))
        replies.append((resp.code, resp.message))
        c.close()
    assert [r[0] for r in replies[:3]] == [535, 535, 535]
    assert replies[3][0] == 421 and replies[3][1].startswith("4.7.0") and "minutes" in replies[3][1]
