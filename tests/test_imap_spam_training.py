"""Đ8.2.b: moving mail into or out of Junk over IMAP teaches the real spamd (tests/spamd.py), as
`spamc -L spam|ham` would; the learned counts are read from its Bayes database with `sa-learn`."""

from __future__ import annotations

import time

import pytest

from mailserver.spamtraining import Lesson, SpamTrainer, lesson_kind
from policy.model import FolderNames
from smtp.spamd import SpamdClient
from tests.imap_support import Wire, make_server, message

LEARN_TIMEOUT = 180  # seconds: the machine is shared; learning is asynchronous on purpose


@pytest.fixture(scope="module")
def server(tmp_path_factory, spamd_daemon):
    extra = f"spamd: {{host: 127.0.0.1, port: {spamd_daemon.port}, timeout: 60}}\n"
    with make_server(tmp_path_factory.mktemp("training"), extra=extra) as srv:
        yield srv


def wait_for_counts(spamd_daemon, want: tuple[int, int]) -> None:
    deadline = time.monotonic() + LEARN_TIMEOUT
    counts = spamd_daemon.learned()
    while counts != want and time.monotonic() < deadline:
        time.sleep(0.5)
        counts = spamd_daemon.learned()
    assert counts == want, f"spamd learned (spam, ham) {counts}, expected {want}"


def mailbox_with(server, *subjects: str) -> Wire:
    """A fresh user with these messages in INBOX, logged in over IMAP with INBOX selected."""
    user = server.new_user()
    for subject in subjects:
        server.deliver(user, unique(subject))
    w = Wire(server, user=user)
    w.ok("SELECT INBOX")
    return w


def unique(subject: str) -> bytes:
    """A message spamd has not seen (Bayes remembers messages by their Message-ID and body)."""
    stamp = time.time_ns()
    return message(f"{subject} {stamp}", f"Nội dung thử nghiệm số {stamp}. Cheap offer, click now.")


def test_d8_2_b_moving_into_junk_teaches_spam_and_back_out_teaches_ham(server, spamd_daemon):
    spam, ham = spamd_daemon.learned()
    w = mailbox_with(server, "Quảng cáo")
    w.ok("MOVE 1 Junk")
    wait_for_counts(spamd_daemon, (spam + 1, ham))
    # a mistake: moving it back out teaches ham, and spamd forgets it as spam (it relearns the same message)
    w.ok("SELECT Junk")
    w.ok("UID MOVE 1:* INBOX")
    wait_for_counts(spamd_daemon, (spam, ham + 1))
    w.close()


def test_copy_into_junk_teaches_spam_too(server, spamd_daemon):
    """Outlook without MOVE copies, then deletes the original."""
    spam, ham = spamd_daemon.learned()
    w = mailbox_with(server, "Khuyến mãi")
    w.ok("COPY 1 Junk")
    wait_for_counts(spamd_daemon, (spam + 1, ham))
    w.close()


def test_deleting_spam_from_junk_or_filing_elsewhere_teaches_nothing(server, spamd_daemon):
    spam, ham = spamd_daemon.learned()
    w = mailbox_with(server, "Rác", "Lưu trữ", "Quảng cáo khác")
    w.ok("MOVE 1 Junk")  # this one is learned as spam; now delete it from Junk:
    wait_for_counts(spamd_daemon, (spam + 1, ham))
    w.ok("SELECT Junk")
    w.ok("MOVE 1 Trash")  # deleting spam is not saying it was wanted
    w.ok("SELECT INBOX")
    w.ok("MOVE 1 Archive")  # INBOX to Archive says nothing about spam
    w.ok("MOVE 1 Junk")  # lessons are learned in order: once this one shows, the others would have too
    wait_for_counts(spamd_daemon, (spam + 2, ham))
    w.close()


def test_training_is_counted_in_the_metrics(server, spamd_daemon):
    spam, ham = spamd_daemon.learned()
    registry = server.app.metrics.registry
    before = registry.get_sample_value("mailserver_spam_learned_total", {"kind": "spam", "result": "learned"}) or 0
    w = mailbox_with(server, "Đếm")
    w.ok("MOVE 1 Junk")
    w.close()
    wait_for_counts(spamd_daemon, (spam + 1, ham))
    deadline = time.monotonic() + 30
    after = before
    while after == before and time.monotonic() < deadline:
        time.sleep(0.2)
        after = registry.get_sample_value("mailserver_spam_learned_total", {"kind": "spam", "result": "learned"})
    assert after == before + 1


@pytest.mark.parametrize(("source", "dest", "kind"), [
    ("INBOX", "Junk", "spam"), ("Archive/2026", "Junk", "spam"), ("Junk", "INBOX", "ham"),
    ("Junk", "Archive", "ham"), ("Junk", "Trash", None), ("INBOX", "Trash", None), ("Junk", "Junk", None),
    ("INBOX", "Archive", None),
])
def test_which_moves_teach_what(source, dest, kind):
    assert lesson_kind(source, dest, FolderNames()) == kind


def test_an_outlook_junk_folder_name_from_policy_is_followed():
    folders = FolderNames(junk="Junk E-mail", trash="Deleted Items")
    assert lesson_kind("INBOX", "Junk E-mail", folders) == "spam"
    assert lesson_kind("Junk E-mail", "Deleted Items", folders) is None


async def test_spamd_down_counts_a_failure_and_loses_nothing_else(app):
    """The store still has the message; the lesson is logged as failed, nothing raises into IMAP."""
    from storage.directory import PersonRequest

    created = await app.directory.add_person(PersonRequest(name="Lê Văn Học", unit=None, password="Matkhau@123",
                                                           must_change=False), actor="test")
    account = created.account
    await app.store.create_mailbox(account)
    stored = await app.store.deliver(account, unique("Học"), folder="Junk")
    trainer = SpamTrainer(app.store, SpamdClient(host="127.0.0.1", port=1, timeout=5), FolderNames(), app.metrics,
                          512 * 1024)
    counts = await trainer.learn(Lesson(account, "Junk", (stored.uid, stored.uid + 100), "spam"))
    assert counts == {"learned": 0, "known": 0, "failed": 1}  # the missing UID is skipped, not failed
    assert app.metrics.registry.get_sample_value("mailserver_spam_learned_total",
                                                 {"kind": "spam", "result": "failed"}) == 1
    assert len(await (await app.store.session(account)).uids("Junk")) == 1
