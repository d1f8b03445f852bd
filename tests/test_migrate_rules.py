"""Đ8.2.d migration rules, in process against a real Dovecot: the journal closes the window between
"appended" and "recorded", quota (Đ7.3.b) stops with a report and never drops mail, oversized old
messages are imported but listed, too-large ones are reported and retried by a later run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mailserver.app import App
from mailserver.migrate.copier import Copier
from mailserver.migrate.imapclient import ImapEndpoint
from mailserver.migrate.report import AccountReport
from mailserver.migrate.runner import Job, run_jobs, state_path
from mailserver.migrate.sources import ImapMailbox
from mailserver.migrate.state import ProgressDB
from policy.loader import load
from storage.directory import PersonRequest
from tests.dovecot import running_dovecot
from tests.helpers import FAST_HASHING, write_config
from tests.migrate_support import fill, snapshot, store_snapshot

PASSWORD = "Quy-tắc#2026"
SOURCE = {"INBOX": (30, "INBOX"), "Hồ sơ": (20, "Hồ sơ")}


@pytest.fixture(scope="module")
def dovecot():
    with running_dovecot() as dv:
        dv.add_user("rules", PASSWORD)
        c = dv.login("rules")
        try:
            fill(c, SOURCE, tag="q")
        finally:
            c.logout()
        yield dv


@pytest.fixture(scope="module")
def source_mail(dovecot) -> dict[str, Counter]:
    c = dovecot.login("rules")
    try:
        return {name: snapshot(c, name) for name in SOURCE}
    finally:
        c.logout()


def total_bytes(mail: dict[str, Counter]) -> int:
    return sum(len(body) * n for folder in mail.values() for (body, _, _), n in folder.items())


async def open_app(base: Path, policy: str) -> App:
    """An App on `base` (created once); the policy file is rewritten on every open."""
    cfg = base / "etc" / "mailserver.yaml"
    if not cfg.exists():
        write_config(base)
    (base / "etc" / "policy.yaml").write_text(FAST_HASHING + policy, encoding="utf-8")
    return await App.open(loaded=load(cfg))


async def new_account(app: App, local: str) -> str:
    created = await app.directory.add_person(
        PersonRequest(name=f"Người Nhận {local}", unit=None, password="Matkhau#2026aA", address=local,
                      must_change=False),
        actor="test")
    return created.account.address


def job(dv, address: str) -> Job:
    endpoint = ImapEndpoint("localhost", dv.imaps_port, "implicit", ca_file=str(dv.cert), timeout=300)
    return Job("rules@localhost", address, lambda: ImapMailbox(endpoint, "rules", PASSWORD))


def _not_migrated(body: bytes) -> bool:
    """Đ7.3.c quota notices from postmaster@ and the tests' own filler are not old mail."""
    head = body.split(b"\r\n\r\n")[0]
    return b"postmaster@" in head or head == b"Subject: big"


async def assert_all_there_once(app: App, address: str, source_mail: dict[str, Counter]) -> None:
    for name, (_, target) in SOURCE.items():
        ours = await store_snapshot(app, address, target)
        for key in [k for k in ours if _not_migrated(k[0])]:
            del ours[key]
        assert ours == source_mail[name], target


# ---------------------------------------------------------------- the journal


class PowerCut(ProgressDB):
    """Fails the second "recorded" step: the batch is in the mailbox, its progress is not."""

    calls = 0

    def finish_batch(self, *args, **kwargs):
        PowerCut.calls += 1
        if PowerCut.calls == 2:
            raise RuntimeError("power cut between append and record")
        return super().finish_batch(*args, **kwargs)


async def test_d10_2_a_batch_stored_but_not_recorded_is_not_copied_twice(dovecot, source_mail, tmp_path):
    app = await open_app(tmp_path, "migration:\n  batch_messages: 10\n")
    try:
        address = await new_account(app, "cup.dien")
        account = await app.directory.get_account(address)
        db = PowerCut(state_path(app))
        first = await Copier(app.store, app.policy, db).run(job(dovecot, address).make_source(), account,
                                                           AccountReport("rules", address))
        db.close()
        assert first.state == "stopped" and "power cut" in (first.reason or "")
        assert first.copied == 20  # two batches appended, only the first recorded
        reports = await run_jobs(app, [job(dovecot, address)])
        r = reports[0]
        assert r.state == "done" and r.recovered == 10, r.as_dict()
        assert r.copied == sum(sum(c.values()) for c in source_mail.values()) - 20
        await assert_all_there_once(app, address, source_mail)
    finally:
        await app.close()


# ---------------------------------------------------------------- quota (Đ7.3.b)


async def test_d7_3_b_a_mailbox_that_cannot_fit_stops_before_copying(dovecot, source_mail, tmp_path):
    need = total_bytes(source_mail)
    app = await open_app(tmp_path, f"quota:\n  default: {need // 2}\n")
    try:
        address = await new_account(app, "day.qua")
        r = (await run_jobs(app, [job(dovecot, address)]))[0]
        assert r.state == "stopped" and r.copied == 0
        assert r.reason.startswith("quota: the old mailbox has") and "nothing was copied" in r.reason
        assert f"mailserver account set-quota {address}" in r.reason
        assert (await app.store.usage(await app.directory.get_account(address))).messages == 0
    finally:
        await app.close()


async def test_the_policy_allowance_lets_old_mail_exceed_the_quota(dovecot, source_mail, tmp_path):
    need = total_bytes(source_mail)
    app = await open_app(tmp_path, f"quota:\n  default: {int(need * 0.7)}\nmigration:\n  quota_allowance_percent: 50\n")
    try:
        address = await new_account(app, "cho.phep")
        r = (await run_jobs(app, [job(dovecot, address)]))[0]
        assert r.state == "done", r.reason
        usage = await app.store.usage(await app.directory.get_account(address))
        assert usage.bytes > need > usage.quota
        inbox = await store_snapshot(app, address, "INBOX")
        assert len([k for k in inbox if _not_migrated(k[0])]) == 1  # Đ7.3.c: the user is told (one notice)
        await assert_all_there_once(app, address, source_mail)
    finally:
        await app.close()


class FilledMeanwhile(Copier):
    """Another delivery fills the mailbox right after the plan was checked."""

    async def _preflight(self, account, report):
        await super()._preflight(account, report)
        await self.store.deliver(account, b"Subject: big\r\n\r\n" + b"x" * 40_000 + b"\r\n", system=True)


async def test_running_out_of_quota_midway_stops_keeps_what_was_copied_and_resumes(dovecot, source_mail, tmp_path):
    need = total_bytes(source_mail)
    app = await open_app(tmp_path, f"quota:\n  default: {need + 20_000}\nmigration:\n  batch_messages: 10\n")
    try:
        address = await new_account(app, "het.cho")
        account = await app.directory.get_account(address)
        db = ProgressDB(state_path(app))
        r = await FilledMeanwhile(app.store, app.policy, db).run(job(dovecot, address).make_source(), account,
                                                                AccountReport("rules", address))
        db.close()
        assert r.state == "stopped" and r.reason.startswith("quota: mailbox") and "copied so far is kept" in r.reason
        assert 0 < r.copied < sum(sum(c.values()) for c in source_mail.values())
        await app.directory.set_quota(address, need + 100_000, actor="test")
        again = (await run_jobs(app, [job(dovecot, address)]))[0]
        assert again.state == "done" and again.copied + r.copied == sum(sum(c.values()) for c in source_mail.values())
        await assert_all_there_once(app, address, source_mail)
    finally:
        await app.close()


# ---------------------------------------------------------------- message sizes (Đ7.3.b)


async def test_d7_3_b_oversized_old_mail_is_imported_and_listed_too_large_is_retried_later(
        dovecot, source_mail, tmp_path):
    sizes = sorted(len(body) for folder in source_mail.values() for (body, _, _) in folder)
    limit = sizes[-3]  # the two largest are over it
    policy = f"attachments:\n  max_total: 2KiB\nmigration:\n  max_message_size: {limit}\n"
    app = await open_app(tmp_path, policy)
    try:
        address = await new_account(app, "qua.lon")
        r = (await run_jobs(app, [job(dovecot, address)]))[0]
        assert r.state == "done" and len(r.failed) == 2 and not r.ok
        assert all("larger than migration.max_message_size" in p.reason for p in r.failed)
        with_attachment = sum(1 for s in sizes if s > 3000) - 2
        assert len(r.oversized) == with_attachment > 0
        assert all("exceed the 2 KiB limit" in p.reason for p in r.oversized)
    finally:
        await app.close()
    app = await open_app(tmp_path, f"attachments:\n  max_total: 2KiB\nmigration:\n  max_message_size: {sizes[-1]}\n")
    try:
        again = (await run_jobs(app, [job(dovecot, address)]))[0]
        assert again.ok and again.copied == 2  # only the two that failed
        await assert_all_there_once(app, address, source_mail)
    finally:
        await app.close()
