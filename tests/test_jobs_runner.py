"""The scheduler's promises: catch up on what fell due, never repeat a notice (restarts, two processes
at once), dry runs change nothing, failures are recorded and retried, `serve` runs it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from mailserver.app import App
from mailserver.jobs import JobRunner
from mailserver.scheduler import JobScheduler
from policy.calendar import add_months
from policy.loader import load
from policy.naming import UnitKind
from storage.jobledger import JobLedger
from tests.helpers import ROOT, cli, cli_json, write_config
from tests.ops_support import PW, person, subjects
from tests.server import ServerProcess


async def test_d13_3_catch_up_after_downtime_sends_one_warning_and_never_repeats_it(app, clock):
    acc = await person(app, "Nguyễn Văn An")
    expires = app.directory.access(acc).password_expires_at
    clock.now = expires - timedelta(hours=20)  # the 7- and 3-day points passed while the server was down
    report = await JobRunner(app).run()
    assert [r.summary for r in report.results if r.job == "passwords"] == [
        f"warn {acc.address}: password expires {expires.astimezone(app.policy.tz):%Y-%m-%d %H:%M} (1 day before)"]
    assert [s for _, s in await subjects(app, acc)] == [
        "Mật khẩu hộp thư sắp hết hạn (còn 1 ngày) / Your mailbox password expires in 1 day"]
    # a restart (a new runner, as after `serve` starts again) and later runs do not repeat it
    for later in (timedelta(0), timedelta(hours=5)):
        clock.now = expires - timedelta(hours=20) + later
        again = await JobRunner(app).run()
        assert [r for r in again.results if r.job == "passwords"] == []
    assert len(await subjects(app, acc)) == 1
    # a new password starts a new series of warnings
    await app.directory.set_password(acc.address, "Matkhau@456", actor="test")
    fresh = await app.directory.require_account(acc.address)
    clock.now = app.directory.access(fresh).password_expires_at - timedelta(days=6)
    assert [r.result for r in (await JobRunner(app).run()).results if r.job == "passwords"] == ["done"]
    assert len(await subjects(app, acc)) == 2


async def test_dry_run_lists_and_changes_nothing(app, clock):
    acc = await person(app, "Nguyễn Văn An")
    await app.directory.retire(acc.address, clock.now.astimezone(app.policy.tz).date(), actor="test")
    dry = await JobRunner(app).run(dry_run=True)
    assert {r.result for r in dry.results} == {"planned"}
    assert any(r.key.startswith("retirement:locked:") for r in dry.results)
    assert await subjects(app, acc) == []
    assert await JobLedger(app.directory.db, clock).done_keys(r.key for r in dry.results) == set()
    real = await JobRunner(app).run()
    assert [r.key for r in real.results] == [r.key for r in dry.results]
    assert len(await subjects(app, acc)) == 1


async def test_a_failing_action_is_recorded_retried_and_does_not_stop_the_others(tmp_path, clock):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "retirement-locked.txt").write_text("no subject line here\n", encoding="utf-8")
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("  data: ../data\n", f"  data: ../data\n  templates: {templates}\n"))
    app = await App.open(loaded=load(cfg), clock=clock)
    try:
        a = await person(app, "Nguyễn Văn An")
        b = await person(app, "Trần Văn Bình")
        today = clock.now.astimezone(app.policy.tz).date()
        for acc in (a, b):
            await app.directory.retire(acc.address, today, actor="test")
        report = await JobRunner(app).run()
        failed = [r for r in report.results if r.result == "failed"]
        assert len(failed) == 2 and "the first line must be" in failed[0].detail["error"]
        assert report.done >= 1  # the daily jobs still ran
        ledger = JobLedger(app.directory.db, clock)
        assert {r.key for r in await ledger.actions(state="failed")} == {r.key for r in failed}
        # the operator fixes the template: the next run delivers, once
        (templates / "retirement-locked.txt").unlink()
        retry = await JobRunner(app).run()
        assert sorted(r.key for r in retry.results if r.result == "done") == sorted(r.key for r in failed)
        assert [r.attempts for r in await ledger.actions(job="retirement")] == [2, 2]
        assert len(await subjects(app, a)) == 1
    finally:
        await app.close()


def test_two_processes_running_jobs_at_once_deliver_each_notice_once(tmp_path):
    cfg = write_config(tmp_path)
    cli(cfg, "init", check=True)
    cli(cfg, "unit", "add", "Phòng Nội vụ", "--kind", "department", "--abbrev", "pnv", check=True)
    rows = "\n".join(f"Nguyễn Văn Số{i},,pnv,staff,{PW}" for i in range(10))
    (tmp_path / "people.csv").write_text("name,birth,unit,role,password\n" + rows + "\n", encoding="utf-8")
    created = cli_json(cfg, "--now", "2026-11-01T09:00", "account", "import", str(tmp_path / "people.csv"))
    # passwords set on 1/11 09:00 expire on 1/12 09:00: at 30/11 20:00 the 1-day warning is due for all
    cmd = [sys.executable, "-m", "mailserver", "--config", str(cfg), "--now", "2026-11-30T20:00", "--json",
           "jobs", "run"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for _ in range(2)]
    outputs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    done = [a["key"] for o in outputs for a in o["actions"] if a["result"] == "done"]
    assert len(done) == len(set(done))  # nothing was done by both
    warnings = {k for k in done if k.startswith("passwords:warning:")}
    assert len(warnings) == len(created) == 10

    async def inboxes() -> list[int]:
        app = await App.open(loaded=load(cfg))
        try:
            return [len(await subjects(app, await app.directory.require_account(c["address"]))) for c in created]
        finally:
            await app.close()

    assert asyncio.run(inboxes()) == [1] * 10
    # and a third run at the same time finds nothing left to do for them
    again = cli_json(cfg, "--now", "2026-11-30T20:00", "jobs", "run")
    assert not [a for a in again["actions"] if a["key"].startswith("passwords:")]


async def test_scheduler_runs_at_start_and_on_wake_and_counts_in_metrics(app, clock):
    acc = await person(app, "Nguyễn Văn An")
    clock.now = app.directory.access(acc).password_expires_at - timedelta(days=3)
    scheduler = JobScheduler(app, interval=3600)
    assert await scheduler.start() == ["every 15 minutes"]
    try:
        for _ in range(200):
            if scheduler.runs:
                break
            await asyncio.sleep(0.05)
        assert len(await subjects(app, acc)) == 1  # caught up at start
        clock.now += timedelta(days=2, hours=1)
        scheduler.wake()
        for _ in range(200):
            if scheduler.runs >= 2:
                break
            await asyncio.sleep(0.05)
        assert [s for _, s in await subjects(app, acc)][-1].endswith("expires in 1 day")
    finally:
        await scheduler.stop()
    value = app.metrics.registry.get_sample_value("mailserver_job_runs_total", {"job": "passwords", "result": "ok"})
    assert value == 2


def test_serve_runs_the_jobs_and_a_restart_does_not_repeat_them(initialised):
    cfg = initialised
    # a password set a calendar month minus 12 hours ago: the 1-day warning is due when serve starts
    when = add_months(datetime.now(UTC) + timedelta(hours=12), -1).isoformat(timespec="minutes")
    cli(cfg, "--now", when, "account", "add", "--name", "Nguyễn Văn An", "--password", PW, check=True)
    db = load(cfg).settings.paths.directory_db

    def runs() -> int:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return conn.execute("SELECT COUNT(*) FROM job_runs").fetchone()[0]

    for start in (1, 2):
        server = ServerProcess(cfg).start()
        try:
            assert "jobs started: every 15 minutes" in server.output
            for _ in range(200):  # the scheduler's first run finishes soon after "ready:"
                if runs() == start:
                    break
                time.sleep(0.1)
        finally:
            assert server.stop() == 0, server.output
    status = cli_json(cfg, "jobs", "status")
    assert [r["trigger"] for r in status["runs"]] == ["scheduler", "scheduler"]
    assert sum(r["done"] for r in status["runs"]) >= 1 and status["failed_actions"] == []

    async def inbox() -> list[tuple[int, str]]:
        app = await App.open(loaded=load(cfg))
        try:
            return await subjects(app, await app.directory.require_account("nguyenvanan"))
        finally:
            await app.close()

    assert [s for _, s in asyncio.run(inbox())] == [
        "Mật khẩu hộp thư sắp hết hạn (còn 1 ngày) / Your mailbox password expires in 1 day"]


async def test_unit_mailbox_of_a_sub_unit_is_told_through_its_parent(app, clock):
    from mailserver.jobs.base import JobBase
    from mailserver.notices import Notices

    d = app.directory
    await d.add_unit("Tuy An", UnitKind.district, actor="t")
    await d.add_unit("Phòng Nội vụ", UnitKind.subunit, parent="tuyan", actor="t")
    job = JobBase(app, Notices(app.settings, app.policy, app.store, app.clock))
    person_ = await person(app, "Nguyễn Văn An", "pnv.tuyan")
    assert (await job.unit_mailbox(person_)).address == "pnv.tuyan@phuyen.gov.vn"
    assert (await job.unit_mailbox(await d.require_account("pnv.tuyan"))).address == "tuyan@phuyen.gov.vn"
    assert await job.unit_mailbox(await d.require_account("tuyan")) is None
