"""Đ7.2 → Đ12.9, Đ14.1.c, Đ14.3.đ: daily counters from the mail log outlive it, and the reports
are checked figure by figure against a directory and a mail log built here."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

from mailserver.reports import Reports
from policy.deadlines import report_period
from policy.naming import UnitKind
from policy.retirement import Role
from storage.counters import count_events, count_file
from tests.ops_support import local, mail_log, person, run_at
from tests.ops_support import run as cli
from tests.ops_support import run_json as cli_json

D = "phuyen.gov.vn"


def test_counts_follow_the_mail_log_events():
    records = [
        {"event": "accepted", "account": f"an@{D}", "recipients": [f"b@{D}", "x@example.vn"]},
        {"event": "delivered", "recipients": [f"b@{D}"]},
        {"event": "rejected", "recipients": [f"b@{D}"], "check": "attachments", "code": "552 5.3.4"},
        {"event": "rejected", "account": f"an@{D}", "check": "rate"},
        {"event": "rejected", "recipients": [f"ghost@{D}"], "stage": "rcpt"},
        {"event": "rejected", "recipients": ["x@example.vn"], "check": "spam_score"},
        {"event": "virus", "recipients": [f"b@{D}"], "signature": "Eicar-Test-Signature"},
        {"event": "spam", "recipients": [f"b@{D}"], "result": "junk"},
        {"event": "deferred", "recipients": [f"b@{D}"], "check": "greylist"},
        {"event": "bounced", "recipients": [f"b@{D}"]},
        {"event": "connect"}, {"event": "auth", "account": f"an@{D}"},
    ]
    c = count_events(records, [D]).counts
    assert c == {
        (f"an@{D}", "sent", ""): 1, (f"an@{D}", "sent_recipients", ""): 2, (f"b@{D}", "received", ""): 1,
        (f"b@{D}", "refused", "attachments"): 1, (f"an@{D}", "refused", "rate"): 1,
        (f"ghost@{D}", "refused", "rcpt"): 1,  # attributed later: nobody holds it (account 0)
        ("", "refused", "spam_score"): 1, ("", "spam", "spam_score"): 1,
        (f"b@{D}", "virus", ""): 1, (f"b@{D}", "spam", "junk"): 1, (f"b@{D}", "deferred", "greylist"): 1,
        (f"b@{D}", "bounced", ""): 1,
    }


def test_a_line_cut_by_a_crash_is_skipped_not_fatal(tmp_path):
    path = tmp_path / "mail-2027-03-10.jsonl"
    path.write_text('{"event":"delivered","recipients":["a@phuyen.gov.vn"]}\n{"event":"deliv\n[1,2]\n',
                    encoding="utf-8")
    counts = count_file(path, [D])
    assert (counts.lines, counts.skipped) == (3, 2)
    assert counts.counts == {(f"a@{D}", "received", ""): 1}


async def build_province(app, clock):  # type: ignore[no-untyped-def]
    d = app.directory
    clock.now = local(date(2026, 12, 1), 7)
    await d.add_unit("Sở Nội vụ", UnitKind.department, abbrev="snv", actor="t")
    await d.add_unit("Văn phòng", UnitKind.subunit, parent="snv", abbrev="vp", actor="t")
    await d.add_unit("Tuy An", UnitKind.district, actor="t")
    for unit in ("snv", "vp.snv", "tuyan", "stttt"):  # shared mailboxes: exempt from Đ6.2.a here
        await d.exempt(unit, date(2030, 1, 1), "hộp thư đơn vị", actor="t")
    an = await person(app, "Nguyễn Văn An", "snv")
    binh = await person(app, "Trần Thị Bình", "snv", role=Role.leader)
    dung = await person(app, "Phạm Thị Dung", "vp.snv")  # never uses the mailbox: Đ6.2.a in June
    clock.now = local(date(2027, 1, 10), 9)
    em = await person(app, "Võ Văn Em", "tuyan")
    clock.now = local(date(2027, 3, 5), 9)
    cuong = await person(app, "Lê Văn Cường", "snv")
    await d.retire(binh.address, date(2027, 2, 10), actor="t")
    clock.now = local(date(2027, 4, 1), 9)
    await d.revoke(em.address, actor="t")
    for acc in (an, cuong):
        await d.record_activity(acc.id, "login", local(date(2027, 5, 1), 8))
    logs = app.settings.paths.log_dir
    mail_log(logs, date(2027, 3, 10), [
        *[{"event": "accepted", "account": an.address, "recipients": [cuong.address, "x@example.vn"]}] * 3,
        {"event": "accepted", "account": cuong.address, "recipients": [an.address]},
        {"event": "delivered", "recipients": [an.address]}, {"event": "delivered", "recipients": [an.address]},
        {"event": "delivered", "recipients": [dung.address]},
        {"event": "rejected", "recipients": [an.address], "check": "attachments"},
        {"event": "rejected", "account": cuong.address, "check": "rate"},
        {"event": "rejected", "recipients": [f"khongco@{D}"], "check": "recipient"},
        {"event": "virus", "recipients": [an.address], "signature": "Eicar-Test-Signature"},
        {"event": "spam", "recipients": [an.address], "result": "junk"},
    ])
    mail_log(logs, date(2027, 5, 20), [
        *[{"event": "accepted", "account": an.address, "recipients": ["x@example.vn"]}] * 2,
        {"event": "accepted", "account": em.address, "recipients": ["x@example.vn"]},
    ])
    mail_log(logs, date(2027, 8, 1), [{"event": "accepted", "account": an.address, "recipients": [f"x@{D}"]}] * 5)
    storage = {}
    for day in (date(2027, 3, 11), date(2027, 5, 21), date(2027, 6, 1), date(2027, 8, 2)):
        if day == date(2027, 6, 1):  # the counters job records every mailbox's size first thing
            for acc in await d.list_accounts():
                if app.store.has_mailbox(acc):
                    storage[acc.address] = (await app.store.usage(acc)).bytes
        report = await run_at(app, clock, local(day, 8))
        assert report.failed == 0, report.results
    return storage


async def test_d14_3_d_usage_report_per_unit_against_the_directory(app, clock):
    storage = await build_province(app, clock)
    clock.now = local(date(2027, 8, 15), 10)
    report = await Reports(app.directory, app.store, clock.now).usage(report_period("6m", date(2027, 7, 1)))
    data = report.public()
    assert data["period"] == {"months": 6, "first": "2027-01-01", "last": "2027-06-30"}
    rows = {r["unit"]: r for r in data["units"]}
    assert [(r["unit"], r["depth"]) for r in data["units"]] == [("snv", 0), ("vp.snv", 1), ("stttt", 0), ("tuyan", 0)]

    def pick(unit: str, *keys: str) -> tuple:
        return tuple(rows[unit][k] for k in keys)

    states = ("active", "send_locked", "suspended", "revoked", "in_use")
    assert pick("snv", *states) == (3, 1, 0, 0, 4)  # unit mailbox, An, Cường; Bình send-locked (leader)
    assert pick("vp.snv", *states) == (1, 0, 1, 0, 2)  # Dung suspended for inactivity on 1/6
    assert pick("tuyan", *states) == (1, 0, 0, 1, 1)  # Em revoked by the operator on 1/4
    assert pick("stttt", *states) == (1, 0, 0, 0, 1)
    period = ("created", "retired", "revoked_in_period", "suspended_inactive")
    assert pick("snv", *period) == (1, 1, 0, 0)  # Cường created 5/3, Bình left 10/2
    assert pick("vp.snv", *period) == (0, 0, 0, 1)
    assert pick("tuyan", *period) == (1, 0, 1, 0)
    traffic = ("sent", "received", "refused", "virus", "spam")
    assert pick("snv", *traffic) == (6, 2, 2, 1, 1)  # August is outside the period
    assert pick("vp.snv", *traffic) == (0, 1, 0, 0, 0)
    assert pick("tuyan", *traffic) == (1, 0, 0, 0, 0)
    # the refusal for an unknown address counts only province-wide
    assert tuple(data["total"][k] for k in traffic) == (7, 3, 3, 1, 1)
    assert data["refused_by_reason"] == {"attachments": 1, "rate": 1, "recipient": 1}
    assert [(t["address"], t["sent"]) for t in data["top_senders"]] == [
        (f"nguyenvanan@{D}", 5), (f"levancuong@{D}", 1), (f"vovanem@{D}", 1)]
    # storage: the snapshot of 1/6, the last before the end; quota of every mailbox in use
    assert data["storage_as_of"] == "2027-06-30"
    snv_boxes = [f"snv@{D}", f"nguyenvanan@{D}", f"tranthibinh@{D}", f"levancuong@{D}"]
    assert rows["snv"]["storage_bytes"] == sum(storage[a] for a in snv_boxes) > 0
    assert rows["snv"]["quota_bytes"] == 4 * 2 * 1024**3 and rows["tuyan"]["quota_bytes"] == 2 * 1024**3
    assert data["total"]["storage_bytes"] == sum(v for k, v in storage.items())

    # one unit and its sub-units: traffic of nobody is left out
    scoped = (await Reports(app.directory, app.store, clock.now).usage(report_period("6m", date(2027, 7, 1)),
                                                                      "snv")).public()
    assert [r["unit"] for r in scoped["units"]] == ["snv", "vp.snv"]
    assert (scoped["total"]["refused"], scoped["total"]["sent"], scoped["total"]["in_use"]) == (2, 6, 6)
    assert scoped["refused_by_reason"] == {"attachments": 1, "rate": 1}

    # a 3-month period ending today is live: storage now, states now, August traffic counted
    live = (await Reports(app.directory, app.store, clock.now).usage(report_period("3m", date(2027, 8, 15)))).public()
    assert live["storage_as_of"] == "now" and live["total"]["sent"] == 2 + 1 + 5


async def test_report_commands_render_table_csv_json_html(app, clock, config_file):
    await build_province(app, clock)
    args = ("--now", "2027-08-15T10:00", "report", "usage", "--period", "6m", "--end", "2027-07-01")
    as_json = json.loads(cli(config_file, *args, "--format", "json", check=True).stdout)
    assert as_json["total"]["sent"] == 7
    rows = list(csv.DictReader(io.StringIO(cli(config_file, *args, "--format", "csv", check=True).stdout)))
    assert [r["unit"] for r in rows] == ["snv", "vp.snv", "stttt", "tuyan", "*"]
    assert rows[0]["sent"] == "6" and rows[-1]["refused"] == "3" and rows[0]["storage_bytes"].isdigit()
    html = cli(config_file, *args, "--format", "html", check=True).stdout
    assert html.startswith("<!doctype html>") and '<html lang="vi">' in html
    assert "Báo cáo sử dụng thư điện tử công vụ (toàn tỉnh), 6 tháng từ 01/01/2027 đến 30/06/2027" in html
    assert "<td>nguyenvanan@phuyen.gov.vn</td>" in html and 'class="total"' in html
    table = cli(config_file, *args, check=True).stdout
    assert "\n  vp.snv " in table and "top senders" in table and "refused by reason" in table
    out = config_file.parent / "report.html"
    assert "written to" in cli(config_file, *args, "--format", "html", "--output", str(out), check=True).stdout
    assert out.read_text(encoding="utf-8") == html
    bad = cli(config_file, "report", "usage", "--period", "6m", "--unit", "khongco")
    assert bad.returncode == 1 and bad.stderr.startswith("error: unit:")

    # Đ12.9: the 6-monthly list of mailboxes in use of a unit and its sub-units
    boxes = cli_json(config_file, "--now", "2027-08-15T10:00", "report", "mailboxes", "--unit", "snv")
    assert [(m["address"], m["state"]) for m in boxes["mailboxes"]] == [
        (f"snv@{D}", "active"), (f"levancuong@{D}", "active"), (f"nguyenvanan@{D}", "active"),
        (f"tranthibinh@{D}", "send-locked"), (f"vp.snv@{D}", "active"), (f"phamthidung@{D}", "suspended")]
    assert boxes["mailboxes"][2]["last_activity"] == "2027-05-01"
    csv_boxes = cli(config_file, "report", "mailboxes", "--unit", "tuyan", "--format", "csv", check=True).stdout
    assert csv_boxes.splitlines()[0] == "unit,address,name,kind,role,state,created,last_activity,leave_date"
    assert "vovanem" not in csv_boxes  # revoked: no longer in use


async def test_d7_2_real_smtp_traffic_reaches_the_counters_and_the_report(smtp_env):
    """End to end: mail through the SMTP listeners (real clients, real clamd) → the mail log → the
    next day's counters → the report; the log file can then be purged without losing the figures."""
    import aiosmtplib
    import pytest

    from mailserver.app import App
    from mailserver.jobs import JobRunner
    from policy.calendar import local_date
    from policy.loader import load
    from tests.smtp_fixtures import message as smtp_message
    from tests.smtp_support import EICAR

    env = smtp_env
    a = await env.person("Nguyễn Văn An")
    b = await env.person("Trần Thị Bình")
    c = await env.login(a)
    await c.sendmail(a, [b, "ban@example.org"], smtp_message(a, b, subject="Giấy mời"))
    await c.quit()
    mx = env.client()
    await mx.connect()
    await mx.sendmail("ban@example.org", [a], smtp_message("ban@example.org", a))
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await mx.sendmail("ban@example.org", [f"khongco@{D}"], smtp_message("ban@example.org", "x"))
    with pytest.raises(aiosmtplib.SMTPDataError):
        await mx.sendmail("ban@example.org", [b], smtp_message("ban@example.org", b, body=EICAR.decode() + "\r\n"))
    await mx.quit()

    today = local_date(env.app.clock(), env.app.policy.tz)
    tomorrow = local(date.fromordinal(today.toordinal() + 1), 1)
    later = await App.open(loaded=load(env.config), clock=lambda: tomorrow)  # the scheduler, the next night
    try:
        report = await JobRunner(later).run()
        assert [r.result for r in report.results if r.key == f"counters:mail-log:{today}"] == ["done"]
        usage = (await Reports(later.directory, later.store, tomorrow).usage(
            report_period("3m", tomorrow.date()))).public()
    finally:
        await later.close()
    total = usage["total"]
    assert (total["sent"], total["received"], total["virus"]) == (1, 2, 1)  # b (from a) and a (from outside)
    assert total["refused"] == 2 and sorted(usage["refused_by_reason"]) == ["known_recipient", "virus"], usage
    assert usage["top_senders"] == [{"address": a, "name": "Nguyễn Văn An", "unit": None, "sent": 1}]
