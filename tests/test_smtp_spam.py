"""Đ8.2.b and Đ13.6 over real SMTP sessions with a real spamd (tests/spamd.py): GTUBE refused, a borderline
message in Junk, a normal one in INBOX with its score, spamd down following the policy, submitted spam refused
and counted toward the Đ6.2.b hold, allow and block lists per domain and per account."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from email.utils import format_datetime, localtime

import aiosmtplib
import pytest

from tests.helpers import cli
from tests.smtp_fixtures import message
from tests.spamd import GTUBE

# Rules of Debian's SpamAssassin 4.0.1 that fire offline (-L): DEAR_FRIEND 2.7, GUARANTEED_100_PERCENT 2.7,
# DRUG_ED_CAPS 2.8, DRUGS_ERECTILE 1.8 ... about 10 points: above `junk` (5), below `reject` (15).
BORDERLINE = ("Dear friend, we are pleased to offer you our product. 100% GUARANTEED results.\r\n"
              "Cheap VIAGRA delivered to your office.\r\n")
NORMAL = "Kính gửi đồng chí,\r\nMời đồng chí dự họp giao ban lúc 8 giờ sáng thứ Hai tại phòng họp số 2.\r\n"


def mail(sender: str, to: str, **kw: str) -> bytes:
    """A message dated now: SpamAssassin scores a Date far in the past (DATE_IN_PAST_*) and the tests'
    scores must not drift with the calendar."""
    return message(sender, to, date=format_datetime(localtime()), **kw)


async def send_mx(env, to: list[str], body: str, sender: str = "ban@example.org", subject: str = "Thông báo",
                  extra_headers: str = "") -> None:
    c = env.client()
    await c.connect()
    try:
        await c.sendmail(sender, to, mail(sender, ", ".join(to), subject=subject, body=body,
                                          extra_headers=extra_headers))
    finally:
        await c.quit()


async def refused_mx(env, to: list[str], body: str, sender: str = "ban@example.org") -> aiosmtplib.SMTPDataError:
    c = env.client()
    await c.connect()
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await c.sendmail(sender, to, mail(sender, ", ".join(to), body=body))
    await c.quit()
    return e.value


def header(msg: bytes, name: str) -> str | None:
    m = re.search(rb"^" + name.encode() + rb":([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", msg, re.M | re.I)
    return None if m is None else re.sub(r"\s+", " ", m.group(1).decode()).strip()


def score_of(msg: bytes) -> float:
    value = header(msg, "X-Spam-Score")
    assert value is not None, msg[:600]
    return float(value)


def metric(env, name: str, **labels: str) -> float:
    return env.app.metrics.registry.get_sample_value(name, labels) or 0.0


# ---------------------------------------------------------------- inbound (the MX)


async def test_d8_2_b_gtube_is_refused_550_5_7_1_and_nothing_is_stored(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    error = await refused_mx(spam_env, [a], f"{GTUBE}\r\n")
    assert error.code == 550 and error.message.startswith("5.7.1") and "spam" in error.message
    # GTUBE is 1000 points (minus ALL_TRUSTED here: the test client is on loopback)
    assert float(re.search(r"score (\d+\.\d)", error.message).group(1)) > 900 and "limit is 15.0" in error.message
    assert await spam_env.inbox(a) == [] and await spam_env.inbox(a, "Junk") == []
    (rejected,) = spam_env.log_events(event="rejected")
    assert rejected["check"] == "spam" and rejected["spam"] == "reject" and rejected["spam_score"] > 900
    assert "GTUBE" in rejected["spam_rules"] and rejected["code"] == "550 5.7.1"
    assert metric(spam_env, "mailserver_spam_checks_total", listener="smtp", decision="reject") == 1


async def test_d8_2_b_a_borderline_message_lands_in_junk_with_the_spam_headers(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    await send_mx(spam_env, [a], BORDERLINE, subject="Special offer for you")
    assert await spam_env.inbox(a) == []
    (junk,) = await spam_env.inbox(a, "Junk")
    score = score_of(junk)
    assert 5.0 <= score < 15.0, score
    assert header(junk, "X-Spam-Flag") == "YES"
    status = header(junk, "X-Spam-Status")
    assert status.startswith(f"Yes, score={score:.1f} required=5.0 tests=") and "DEAR_FRIEND" in status
    (spam,) = spam_env.log_events(event="spam")
    assert spam["result"] == "junk" and spam["recipients"] == [a] and spam["spam_score"] == score
    (delivered,) = spam_env.log_events(event="delivered")
    assert delivered["folder"] == "Junk"
    (accepted,) = spam_env.log_events(event="accepted")
    assert accepted["spam"] == "junk" and accepted["spam_score"] == score
    assert metric(spam_env, "mailserver_spam_score_bucket", listener="smtp", le="15.0") == 1
    assert metric(spam_env, "mailserver_spam_score_bucket", listener="smtp", le="5.0") == 0


async def test_d8_2_b_a_normal_message_lands_in_inbox_with_a_score_header(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    await send_mx(spam_env, [a], NORMAL, subject="Giấy mời họp giao ban")
    (msg,) = await spam_env.inbox(a)
    assert score_of(msg) < 5.0
    assert header(msg, "X-Spam-Status").startswith("No, score=")
    assert header(msg, "X-Spam-Flag") is None
    # trace fields first, then the filter's fields, then the message as sent
    names = [line.split(b":")[0] for line in msg.split(b"\r\n")[:12] if line[:1] not in (b" ", b"\t")]
    assert names.index(b"Received") < names.index(b"X-Spam-Score") < names.index(b"From")
    (accepted,) = spam_env.log_events(event="accepted")
    assert accepted["spam"] == "ham" and accepted["spam_score"] == score_of(msg)
    assert spam_env.log_events(event="spam") == []


async def test_junk_deleted_by_the_user_is_recreated_for_the_next_spam(spam_env):
    """Thunderbird lets a user delete Junk; the next junk message must not bounce between 451 retries."""
    a = await spam_env.person("Nguyễn Văn An")
    account = await spam_env.app.directory.get_account(a)
    await (await spam_env.app.store.session(account)).delete_folder("Junk")
    await send_mx(spam_env, [a], BORDERLINE)
    assert len(await spam_env.inbox(a, "Junk")) == 1
    assert [r["folder"] for r in spam_env.log_events(event="delivered")] == ["Junk"]


async def test_x_spam_fields_written_by_the_sender_are_removed(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    await send_mx(spam_env, [a], BORDERLINE, extra_headers="X-Spam-Status: No, score=-100\r\nX-Spam-Flag: NO\r\n"
                                                           "X-Spam-Score: -100\r\n")
    (junk,) = await spam_env.inbox(a, "Junk")
    assert junk.count(b"X-Spam-Status:") == 1 and b"score=-100" not in junk and b"X-Spam-Flag: NO" not in junk
    assert header(junk, "X-Spam-Flag") == "YES"


async def test_one_refused_message_to_several_recipients_is_stored_for_none(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    b = await spam_env.person("Trần Thị Bình")
    error = await refused_mx(spam_env, [a, b], f"{GTUBE}\r\n")
    assert error.code == 550
    for who in (a, b):
        assert await spam_env.inbox(who) == [] and await spam_env.inbox(who, "Junk") == []


async def test_spam_check_of_a_message_saved_from_junk_shows_the_score_it_arrived_with(spam_env):
    """The help desk's question: "why is this in my Junk folder?". The saved file carries the filter's own
    verdict (X-Spam-*) and may have plain LF line ends; `spam check` gives spamd what SMTP gave it."""
    a = await spam_env.person("Nguyễn Văn An")
    await send_mx(spam_env, [a], BORDERLINE, subject="Special offer for you")
    (junk,) = await spam_env.inbox(a, "Junk")
    saved = spam_env.base / "saved-from-junk.eml"
    saved.write_bytes(junk.replace(b"\r\n", b"\n"))
    proc = await asyncio.to_thread(cli, spam_env.config, "spam", "check", str(saved), "--json", check=True)
    data = json.loads(proc.stdout)
    assert data["received"] == "junk" and data["score"] == score_of(junk)
    assert {r["name"] for r in data["rules"]} >= {"DEAR_FRIEND"}


# ---------------------------------------------------------------- spamd down: the policy decides


async def test_spamd_down_delivers_unscored_with_a_header_saying_so_by_default(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    spam_env.svc.spamd.port = 1  # nothing listens there
    await send_mx(spam_env, [a], f"{GTUBE}\r\n")
    (msg,) = await spam_env.inbox(a)
    assert header(msg, "X-Spam-Status") == "Unscored, spamd unavailable"
    assert header(msg, "X-Spam-Score") is None
    (accepted,) = spam_env.log_events(event="accepted")
    assert accepted["spam"] == "unscored" and "spam_score" not in accepted


async def test_a_spamd_that_never_answers_is_given_up_after_spamd_timeout(spam_env, caplog):
    """A hung spamd (accepts, never answers) must not hold the sender's DATA until its own timeout: after
    `spamd.timeout` the policy decides as for a spamd that is down, and the server log says which."""
    a = await spam_env.person("Nguyễn Văn An")
    release = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    hung = await asyncio.start_server(hang, "127.0.0.1", 0)
    spam_env.svc.spamd.port = hung.sockets[0].getsockname()[1]
    spam_env.svc.spamd.timeout = 1.0
    try:
        with caplog.at_level(logging.ERROR, logger="smtp.spam"):
            await send_mx(spam_env, [a], NORMAL)
    finally:
        release.set()
        hung.close()
    (msg,) = await spam_env.inbox(a)
    assert header(msg, "X-Spam-Status") == "Unscored, spamd unavailable"
    assert "did not answer SYMBOLS within 1 s" in caplog.text
    (accepted,) = spam_env.log_events(event="accepted")
    assert accepted["spam"] == "unscored"


@pytest.mark.smtp_config(policy="spam:\n  on_spamd_error: tempfail\n")
async def test_spamd_down_with_tempfail_policy_is_451_4_7_1_and_nothing_is_stored(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    spam_env.svc.spamd.port = 1
    error = await refused_mx(spam_env, [a], NORMAL)
    assert error.code == 451 and error.message.startswith("4.7.1") and "Spam filter" in error.message
    assert await spam_env.inbox(a) == []
    (deferred,) = spam_env.log_events(event="deferred")
    assert deferred["check"] == "spam" and deferred["spam"] == "tempfail"


@pytest.mark.smtp_config(policy="spam:\n  on_spamd_error: tempfail\nsending:\n  hold_after_refusals: 1\n")
async def test_d13_6_spamd_down_with_tempfail_policy_keeps_submitted_mail_in_the_outbox(spam_env):
    """Submitted mail follows the same policy: 451 4.7.1, Outlook keeps the message and sends it again; nothing
    is delivered or queued, and a temporary refusal does not count toward the Đ6.2.b hold."""
    a = await spam_env.person("Nguyễn Văn An")
    b = await spam_env.person("Trần Thị Bình")
    spam_env.svc.spamd.port = 1
    c = await spam_env.login(a)
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await c.sendmail(a, [b, "doitac@example.org"], mail(a, b, body=NORMAL))
    await c.quit()
    assert e.value.code == 451 and e.value.message.startswith("4.7.1") and "Article 13.6" in e.value.message
    assert await spam_env.inbox(b) == [] and await spam_env.app.queue.list() == []
    (deferred,) = spam_env.log_events(event="deferred")
    assert deferred["check"] == "outbound_spam" and deferred["spam"] == "tempfail"
    # one counted refusal would have held the account (hold_after_refusals: 1): spamd's outage is not the sender's
    assert await spam_env.app.directory.outbound_hold(await spam_env.app.directory.get_account(a)) is None


async def test_without_spamd_configured_mail_flows_unscored_and_the_log_says_off(smtp_env):
    a = await smtp_env.person("Nguyễn Văn An")
    await send_mx(smtp_env, [a], f"{GTUBE}\r\n")
    (msg,) = await smtp_env.inbox(a)
    assert header(msg, "X-Spam-Status") is None and header(msg, "X-Spam-Score") is None
    (accepted,) = smtp_env.log_events(event="accepted")
    assert accepted["spam"] == "off"


# ---------------------------------------------------------------- outbound (Đ13.6)


async def test_d13_6_submitted_spam_is_refused_with_a_clear_text(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    b = await spam_env.person("Trần Thị Bình")
    c = await spam_env.login(a)
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await c.sendmail(a, [b], mail(a, b, body=f"{GTUBE}\r\n"))
    await c.quit()
    err = e.value
    assert err.code == 550 and err.message.startswith("5.7.1")
    assert "not sent" in err.message and "GTUBE" in err.message and "13.6" in err.message
    assert "postmaster@phuyen.gov.vn" in err.message
    assert await spam_env.inbox(b) == []
    (rejected,) = spam_env.log_events(event="rejected")
    assert rejected["check"] == "outbound_spam" and rejected["spam"] == "outbound-refused"
    assert rejected["account"] == a and rejected["spam_score"] > 900
    assert metric(spam_env, "mailserver_spam_checks_total", listener="submission",
                  decision="outbound-refused") == 1


async def test_d13_6_submitted_mail_below_the_threshold_is_delivered_without_spam_headers(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    b = await spam_env.person("Trần Thị Bình")
    c = await spam_env.login(a)
    await c.sendmail(a, [b], mail(a, b, body=NORMAL))
    await c.quit()
    (msg,) = await spam_env.inbox(b)
    assert b"X-Spam-" not in msg
    (accepted,) = spam_env.log_events(event="accepted")
    assert accepted["spam"] == "outbound-ok" and accepted["spam_score"] < 5.0


@pytest.mark.smtp_config(policy="sending:\n  hold_after_refusals: 2\n")
async def test_d13_6_d6_2_b_spam_refusals_count_toward_the_compromised_account_hold(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    b = await spam_env.person("Trần Thị Bình")
    account = await spam_env.app.directory.get_account(a)
    c = await spam_env.login(a)
    for i in range(2):
        assert await spam_env.app.directory.outbound_hold(account) is None
        with pytest.raises(aiosmtplib.SMTPDataError):
            await c.sendmail(a, [b], mail(a, b, subject=f"thư {i}", body=f"{GTUBE}\r\n"))
    await c.quit()
    hold = await spam_env.app.directory.outbound_hold(account)
    assert hold is not None and "spam" in hold["reason"] and "13.6" in hold["reason"]
    audit = await spam_env.app.directory.audit_entries(target=a)
    assert any(e.action == "account.hold-outbound" for e in audit)
    notices = await spam_env.inbox("stttt@phuyen.gov.vn")
    assert any(a.encode() in n and b"on hold" in n for n in notices)


async def test_d13_6_submitted_mail_when_spamd_is_down_leaves_without_an_unscored_note(spam_env):
    """`on_spamd_error: accept` delivers submitted mail too, but the note is for our own recipients of received
    mail: other organisations are not told that our filter was down."""
    a = await spam_env.person("Nguyễn Văn An")
    b = await spam_env.person("Trần Thị Bình")
    spam_env.svc.spamd.port = 1
    c = await spam_env.login(a)
    await c.sendmail(a, [b, "doitac@example.org"], mail(a, b, body=NORMAL))
    await c.quit()
    (msg,) = await spam_env.inbox(b)
    assert b"X-Spam-" not in msg
    (queued,) = await spam_env.app.queue.list()
    assert b"X-Spam-" not in await spam_env.app.queue.read_message(queued.id)
    (accepted,) = spam_env.log_events(event="accepted")
    assert accepted["spam"] == "unscored" and accepted["listener"] == "submission"


async def test_d13_6_submitted_spam_to_another_organisation_never_reaches_the_outbound_queue(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    c = await spam_env.login(a)
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await c.sendmail(a, ["doitac@example.org"], mail(a, "doitac@example.org", body=BORDERLINE))
    assert e.value.code == 550 and "Article 13.6" in e.value.message
    assert await spam_env.app.queue.list() == []
    # the same person's ordinary mail goes out: queued for the remote server, without spam fields
    _, text = await c.sendmail(a, ["doitac@example.org"], mail(a, "doitac@example.org", body=NORMAL))
    await c.quit()
    (entry,) = await spam_env.app.queue.list()
    assert entry.id in text and [r.rcpt for r in entry.recipients] == ["doitac@example.org"]
    assert b"X-Spam-" not in await spam_env.app.queue.read_message(entry.id)
    assert [r["spam"] for r in spam_env.log_events(event="rejected")] == ["outbound-refused"]


async def test_junk_for_local_recipients_while_an_alias_forwards_the_message_elsewhere(spam_env):
    """One message, one score: the local recipient gets it in Junk, the address an alias forwards to gets it
    through the outbound queue marked as spam (X-Spam-Flag), as SpamAssassin's own forwarders do."""
    a = await spam_env.person("Nguyễn Văn An")
    await spam_env.app.directory.add_alias("chuyentiep@phuyen.gov.vn", "canhan@example.net", actor="test")
    await send_mx(spam_env, [a, "chuyentiep@phuyen.gov.vn"], BORDERLINE)
    assert await spam_env.inbox(a) == [] and len(await spam_env.inbox(a, "Junk")) == 1
    (entry,) = await spam_env.app.queue.list()
    assert [r.rcpt for r in entry.recipients] == ["canhan@example.net"]
    forwarded = await spam_env.app.queue.read_message(entry.id)
    assert header(forwarded, "X-Spam-Flag") == "YES" and 5.0 <= score_of(forwarded) < 15.0
    (spam,) = spam_env.log_events(event="spam")
    assert spam["recipients"] == [a]


# ---------------------------------------------------------------- allow and block lists


@pytest.mark.smtp_config(policy="spam:\n  allow:\n    nguyenvanan@phuyen.gov.vn: [ban@example.org]\n")
async def test_an_account_allow_list_lets_a_sender_in_unscored(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    b = await spam_env.person("Trần Thị Bình")
    await send_mx(spam_env, [a], BORDERLINE)
    (msg,) = await spam_env.inbox(a)
    assert header(msg, "X-Spam-Status").startswith("No, not scored: allow list of nguyenvanan@phuyen.gov.vn")
    # the list is Ân's, not Bình's
    await send_mx(spam_env, [b], BORDERLINE)
    assert await spam_env.inbox(b) == [] and len(await spam_env.inbox(b, "Junk")) == 1


@pytest.mark.smtp_config(policy="spam:\n  block:\n    phuyen.gov.vn: [example.org]\n")
async def test_a_domain_block_list_refuses_the_sender_and_its_subdomains(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    for sender in ("ban@example.org", "tin@mail.example.org"):
        error = await refused_mx(spam_env, [a], NORMAL, sender=sender)
        assert error.code == 550 and error.message.startswith("5.7.1") and "block list" in error.message
    assert await spam_env.inbox(a) == []
    await send_mx(spam_env, [a], NORMAL, sender="ban@example.net")
    assert len(await spam_env.inbox(a)) == 1
    assert [r["spam"] for r in spam_env.log_events(event="rejected")] == ["blocked", "blocked"]


@pytest.mark.smtp_config(policy="spam:\n  block:\n    '*': [example.org]\n"
                                "  allow:\n    nguyenvanan@phuyen.gov.vn: [ban@example.org]\n")
async def test_the_most_specific_list_wins_and_a_mixed_message_goes_to_junk_for_the_blockers(spam_env):
    a = await spam_env.person("Nguyễn Văn An")
    b = await spam_env.person("Trần Thị Bình")
    await send_mx(spam_env, [a, b], NORMAL)
    assert len(await spam_env.inbox(a)) == 1  # Ân's own allow beats the server-wide block
    assert await spam_env.inbox(b) == [] and len(await spam_env.inbox(b, "Junk")) == 1
    (spam,) = spam_env.log_events(event="spam")
    assert spam["recipients"] == [b]


# ---------------------------------------------------------------- header fields (plain values)


def test_x_spam_status_folds_long_rule_lists_as_spamassassin_does():
    from smtp.spam import Decision, Outcome, spam_headers
    from smtp.spamd import Score

    rules = tuple(f"RULE_NUMBER_{i:02d}" for i in range(12))
    block = spam_headers(Outcome(Decision.junk, Score(9.44, rules)), 5.0).decode()
    lines = block.split("\r\n")[:-1]
    assert lines[0] == "X-Spam-Flag: YES" and lines[1] == "X-Spam-Score: 9.4"
    assert all(len(line) <= 78 for line in lines)
    assert all(line.startswith("\t") for line in lines[3:])
    unfolded = re.sub(r"\r\n\t", "", block.split("X-Spam-Status: ", 1)[1]).strip()
    assert unfolded == "Yes, score=9.4 required=5.0 tests=" + ",".join(rules)


def test_only_sender_written_x_spam_fields_are_removed():
    from smtp.spam import strip_spam_headers

    msg = (b"X-Spam-Flag: NO\r\nX-Spam-Status: No,\r\n\tscore=-100\r\nSubject: X-Spam-Flag: in a subject\r\n"
           b"X-Spamming-Tool: not ours\r\n\r\nX-Spam-Flag: in the body\r\n")
    assert strip_spam_headers(msg) == (b"Subject: X-Spam-Flag: in a subject\r\nX-Spamming-Tool: not ours\r\n"
                                       b"\r\nX-Spam-Flag: in the body\r\n")
    clean = b"Subject: hi\r\n\r\nbody\r\n"
    assert strip_spam_headers(clean) is clean


async def test_spam_decisions_reach_the_operations_daily_counters(spam_env):
    """The mail log is the interface to the daily counters (storage/counters.py): a message put in Junk and
    a refused one both count as `spam` for the recipient, the refusal also as `refused` by its check."""
    from storage.counters import count_file

    a = await spam_env.person("Nguyễn Văn An")
    await send_mx(spam_env, [a], BORDERLINE)
    await refused_mx(spam_env, [a], f"{GTUBE}\r\n")
    counts: Counter = Counter()
    for log_file in spam_env.app.settings.paths.log_dir.glob("mail-*.jsonl"):  # two files across midnight
        counts.update(count_file(log_file, spam_env.app.settings.domains).counts)
    assert counts[(a, "spam", "junk")] == 1
    assert counts[(a, "spam", "spam")] == 1 and counts[(a, "refused", "spam")] == 1
    assert counts[(a, "received", "")] == 1
