"""Retention: Đ7.2 log files older than 6 months go (exactly those), the audit log keeps its own
longer retention, and Đ8.2.b messages that have been in Trash or Junk for 30 days are expunged."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from mailserver.app import App
from policy.loader import load
from storage.jobledger import JobLedger
from tests.helpers import write_config
from tests.mailhelpers import message
from tests.ops_support import local, person, run_at


def make_logs(folder, first: date, last: date) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    day = first
    while day <= last:
        (folder / f"mail-{day}.jsonl").write_text('{"event":"connect"}\n', encoding="utf-8")
        (folder / f"server-{day}.log").write_text("INFO started\n", encoding="utf-8")
        day += timedelta(days=1)


def days_left(folder, prefix: str) -> list[date]:
    return sorted(date.fromisoformat(p.name[len(prefix) + 1: p.name.index(".")]) for p in folder.glob(f"{prefix}-2*"))


async def test_d7_2_log_retention_removes_exactly_the_files_older_than_the_limit(tmp_path, clock):
    cfg = write_config(tmp_path, policy="logs:\n  system_log_retention: 3 months\n")
    app = await App.open(loaded=load(cfg), clock=clock)
    try:
        logs = app.settings.paths.log_dir
        make_logs(logs, date(2026, 12, 1), date(2027, 7, 15))
        (logs / "notes.txt").write_text("kept", encoding="utf-8")
        (logs / "mail-draft.jsonl").write_text("kept", encoding="utf-8")
        report = await run_at(app, clock, local(date(2027, 7, 15), 0, 5))
        assert report.failed == 0
        # mail log: 6 months → the files of 15/1/2027 onwards stay; server log: 3 months → 15/4 onwards
        mail, server = days_left(logs, "mail"), days_left(logs, "server")
        assert mail[0] == date(2027, 1, 15) and mail[-1] == date(2027, 7, 15)
        assert len(mail) == (date(2027, 7, 15) - date(2027, 1, 15)).days + 1
        assert server[0] == date(2027, 4, 15) and len(server) == (date(2027, 7, 15) - date(2027, 4, 15)).days + 1
        assert (logs / "notes.txt").exists() and (logs / "mail-draft.jsonl").exists()
        # every file was counted before it went (the reports keep the traffic)
        counted = await JobLedger(app.directory.db, clock).done_keys(
            f"counters:mail-log:{date(2026, 12, 1) + timedelta(days=i)}" for i in range(45))
        assert len(counted) == 45
        (purge,) = [e for e in await app.directory.audit_entries(limit=500) if e.action == "logs.purge"]
        assert purge.rule == "Đ7.2" and purge.actor == "system:jobs"
        assert "mail-2027-01-14.jsonl" in purge.after["removed"] and "mail-2027-01-15.jsonl" not in purge.after[
            "removed"]
        assert len(purge.after["removed"]) == (date(2027, 1, 15) - date(2026, 12, 1)).days + (
            date(2027, 4, 15) - date(2026, 12, 1)).days
        # later the same day: nothing more; the next day: exactly one more file of each
        await run_at(app, clock, local(date(2027, 7, 15), 23, 55))
        assert days_left(logs, "mail")[0] == date(2027, 1, 15)
        await run_at(app, clock, local(date(2027, 7, 16), 0, 5))
        assert days_left(logs, "mail")[0] == date(2027, 1, 16) and days_left(logs, "server")[0] == date(2027, 4, 16)
    finally:
        await app.close()


async def test_d7_2_audit_log_keeps_its_own_longer_retention(tmp_path, clock):
    cfg = write_config(tmp_path, policy="logs:\n  audit_retention: 2 years\n")
    app = await App.open(loaded=load(cfg), clock=clock)
    try:
        for when in (datetime(2025, 1, 10, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC),
                     datetime(2026, 1, 1, tzinfo=UTC)):
            clock.now = when
            await app.directory.audit("cli:an", "test.event", "x@phuyen.gov.vn", after={"when": when})
        await run_at(app, clock, datetime(2027, 5, 1, 1, tzinfo=UTC))
        left = [e.after["when"] for e in await app.directory.audit_entries(target="x@phuyen.gov.vn")]
        assert left == ["2026-01-01 00:00:00+00:00", "2025-06-01 00:00:00+00:00"]  # 2 years before 1/5/2027
        (purge,) = [e for e in await app.directory.audit_entries() if e.action == "records.purge"]
        assert purge.after["audit_rows"] == 1 and purge.rule == "Đ7.2"
    finally:
        await app.close()


async def test_d8_2_b_trash_and_junk_are_expunged_after_30_days_in_the_folder(tmp_path):
    cfg = write_config(tmp_path, policy='folder_retention:\n  folders: {"Thông báo": 60 days}\n')
    real = datetime.now(UTC)

    class Clock:
        now = real

        def __call__(self) -> datetime:
            return self.now

    clock = Clock()
    app = await App.open(loaded=load(cfg), clock=clock)
    try:
        acc = await person(app, "Nguyễn Văn An")
        other = await person(app, "Trần Thị Bình")
        s = await app.store.session(acc)
        await s.create_folder("Thông báo")
        await s.create_folder("Deleted Items", special_use="\\Trash")  # Outlook's own Trash
        old = real - timedelta(days=700)
        for folder in ("INBOX", "Trash", "Junk", "Thông báo", "Deleted Items"):
            await app.store.deliver(acc, message(subject=f"thư {folder}", token=folder), folder=folder,
                                    internal_date=old)
        # a two-year-old message deleted today: its age in Trash counts from today, not from its date
        await app.store.deliver(acc, message(subject="cũ", token="old"), internal_date=old)
        await s.move("INBOX", [2], "Trash")
        await app.store.deliver(other, message(token="b"), folder="Trash")

        clock.now = real + timedelta(days=29, minutes=30)  # the day before: daily jobs run once a day
        early = await run_at(app, clock, clock.now)
        assert [r for r in early.results if r.job == "folder-retention"] == []
        clock.now = real + timedelta(days=30, minutes=5)
        dry = await run_at(app, clock, clock.now, dry_run=True)
        assert sorted(r.summary for r in dry.results if r.job == "folder-retention") == [
            "expunge 1 messages in Deleted Items of nguyenvanan@phuyen.gov.vn older than 30 days",
            "expunge 1 messages in Junk of nguyenvanan@phuyen.gov.vn older than 30 days",
            "expunge 1 messages in Trash of tranthibinh@phuyen.gov.vn older than 30 days",
            "expunge 2 messages in Trash of nguyenvanan@phuyen.gov.vn older than 30 days"]
        assert len(await s.uids("Trash")) == 2  # the dry run changed nothing
        report = await run_at(app, clock, clock.now)
        assert report.failed == 0
        # (INBOX also got the Đ13.3 password warning meanwhile; its own message stays)
        assert {f: len(await s.uids(f)) for f in ("Trash", "Junk", "Thông báo", "Deleted Items")} == {
            "Trash": 0, "Junk": 0, "Thông báo": 1, "Deleted Items": 0}
        assert (await s.uids("INBOX"))[0] == 1
        audits = [e for e in await app.directory.audit_entries(target=acc.address) if e.action == "mailbox.expunge"]
        assert sorted((e.after["folder"], e.after["messages"], e.rule) for e in audits) == [
            ("Deleted Items", 1, "Đ8.2.b"), ("Junk", 1, "Đ8.2.b"), ("Trash", 2, "Đ8.2.b")]
        # the per-folder rule of the policy: 60 days for "Thông báo"
        await run_at(app, clock, real + timedelta(days=60, minutes=5))
        assert await s.uids("Thông báo") == [] and (await s.uids("INBOX"))[0] == 1
    finally:
        await app.close()
