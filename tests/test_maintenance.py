"""Đ8.1.c: planned downtime is announced at least 3 full working days ahead (weekends and Tết do not
count, make-up Saturdays do), to every mailbox that can read it, with a reminder the day before."""

from __future__ import annotations

import pytest

from tests.helpers import write_config
from tests.ops_support import PW, inbox, text_of
from tests.ops_support import run as cli
from tests.ops_support import run_json as cli_json

TET = """
calendar:
  holidays: [2027-02-05, 2027-02-08, 2027-02-09, 2027-02-10, 2027-02-11]
  working_saturdays: [2027-01-30]
"""


@pytest.fixture
def province(tmp_path):
    cfg = write_config(tmp_path, policy=TET)
    cli(cfg, "init", check=True)
    cli(cfg, "unit", "add", "Phòng Nội vụ", "--kind", "department", "--abbrev", "pnv", check=True)
    for name in ("Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường"):
        cli(cfg, "account", "add", "--name", name, "--unit", "pnv", "--password", PW, check=True)
    cli(cfg, "account", "suspend", "tranthibinh", "--reason", "lộ mật khẩu", check=True)
    cli(cfg, "account", "revoke", "levancuong", check=True)
    return cfg


READERS = ["nguyenvanan", "pnv", "stttt"]  # active mailboxes; the suspended and the revoked cannot read


def test_d8_1_c_refuses_a_weekend_start_with_two_working_days_and_names_the_earliest_day(province):
    proc = cli(province, "--now", "2026-12-09T10:00", "notice", "maintenance", "--start", "2026-12-12 22:00",
               "--duration", "3h", "--reason", "Nâng cấp máy chủ")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: start: only 2 working days between today (09/12/2026) and 12/12/2026; Đ8.1.c requires at least "
        "3: the earliest start day is 2026-12-15 (or --force REASON)")
    assert cli_json(province, "notice", "list", "--all") == []
    assert all(inbox(province, f"{a}@phuyen.gov.vn") == [] for a in READERS)


def test_d8_1_c_announcement_reaches_every_active_mailbox_in_vietnamese_and_english(province):
    out = cli_json(province, "--now", "2026-12-08T10:00", "notice", "maintenance", "--start", "2026-12-12 22:00",
                   "--duration", "3h", "--reason", "nâng cấp phần mềm máy chủ thư")
    assert (out["working_days"], out["delivered"], out["reminder_on"]) == (3, 3, "2026-12-11")
    for address in READERS:
        (msg,) = inbox(province, f"{address}@phuyen.gov.vn")
        assert str(msg["Subject"]) == ("Thông báo tạm ngừng dịch vụ thư điện tử từ 22:00 Thứ Bảy, ngày 12/12/2026 / "
                                       "Mail service maintenance from Saturday 12 December 2026, 22:00")
        assert msg["From"].addresses[0].addr_spec == "postmaster@phuyen.gov.vn"
        assert str(msg["To"]) == "undisclosed-recipients:;" and msg["Auto-Submitted"] == "auto-generated"
        raw = msg.as_bytes()
        assert b"Subject: =?utf-8?" in raw  # RFC 2047
        vi = text_of(msg, "vi")
        assert "từ 22:00 Thứ Bảy, ngày 12/12/2026 đến 01:00 Chủ Nhật, ngày 13/12/2026 (khoảng 3 giờ)" in vi
        assert "Lý do: nâng cấp phần mềm máy chủ thư." in vi and "điểm c khoản 1 Điều 8" in vi
        assert "from Saturday 12 December 2026, 22:00 to Sunday 13 December 2026, 01:00 (about 3 hours)" in text_of(
            msg, "en")
    for gone in ("tranthibinh", "levancuong"):
        assert gone not in str(inbox(province, "nguyenvanan@phuyen.gov.vn")[0]["To"])
    audit = cli_json(province, "audit", "list", "--target", "maintenance:1")
    assert [(e["action"], e["rule"]) for e in audit] == [
        ("notice.maintenance-announce", "Đ8.1.c"), ("maintenance.schedule", "Đ8.1.c")]
    assert audit[1]["actor"] == "cli:test-operator"

    # the reminder comes on the day before (at the first run of that day), once
    cli_json(province, "--now", "2026-12-10T23:50", "jobs", "run")
    assert len(inbox(province, "nguyenvanan@phuyen.gov.vn")) == 1
    first = cli_json(province, "--now", "2026-12-11T00:10", "jobs", "run")
    assert [a["key"] for a in first["actions"] if a["job"] == "maintenance"] == ["maintenance:1:reminder"]
    again = cli_json(province, "--now", "2026-12-11T15:00", "jobs", "run")
    assert [a for a in again["actions"] if a["job"] == "maintenance"] == []
    msgs = inbox(province, "pnv@phuyen.gov.vn")
    assert str(msgs[-1]["Subject"]).startswith("Nhắc lại: tạm ngừng dịch vụ thư điện tử từ 22:00 Thứ Bảy")
    assert "Như đã thông báo ngày 08/12/2026" in text_of(msgs[-1], "vi")
    listed = cli_json(province, "--now", "2026-12-11T15:00", "notice", "list")
    assert [(w["id"], w["state"], w["working_days"]) for w in listed] == [(1, "scheduled", 3)]
    assert cli_json(province, "--now", "2026-12-13T02:00", "notice", "list") == []  # over


def test_d8_1_c_tet_does_not_count_force_is_audited_and_cancel_tells_everyone(province):
    args = ["notice", "maintenance", "--start", "2027-02-15 20:00", "--duration", "90 minutes",
            "--reason", "thay ổ cứng"]
    refused = cli(province, "--now", "2027-02-03T10:00", *args)
    assert refused.returncode == 1 and "only 2 working days" in refused.stderr
    assert "the earliest start day is 2027-02-16" in refused.stderr
    # a make-up Saturday counts: Thursday 28/1 → Tuesday 2/2 has Fri 29, Sat 30 and Mon 1 between
    ok = cli_json(province, "--now", "2027-01-28T10:00", "notice", "maintenance", "--start", "2027-02-02 20:00",
                  "--duration", "1h", "--reason", "kiểm tra định kỳ")
    assert ok["working_days"] == 3
    forced = cli_json(province, "--now", "2027-02-03T10:00", *args, "--force", "sự cố phần cứng, không thể chờ")
    assert (forced["working_days"], forced["forced_reason"], forced["delivered"]) == (
        2, "sự cố phần cứng, không thể chờ", 3)
    (schedule,) = [e for e in cli_json(province, "audit", "list", "--target", "maintenance:2")
                   if e["action"] == "maintenance.schedule"]
    assert schedule["rule"] == "Đ8.1.c (forced: notice period not kept)"
    assert schedule["after"]["forced_reason"] == "sự cố phần cứng, không thể chờ"
    empty = cli(province, "--now", "2027-02-03T10:00", *args, "--force", " ")
    assert empty.returncode == 1 and "error: force:" in empty.stderr

    cancelled = cli_json(province, "--now", "2027-02-04T09:00", "notice", "cancel", "2", "--reason",
                         "đã thay ổ cứng dự phòng")
    assert cancelled["state"] == "cancelled" and cancelled["delivered"] == 3
    last = inbox(province, "nguyenvanan@phuyen.gov.vn")[-1]
    assert str(last["Subject"]).startswith("Hủy lịch tạm ngừng dịch vụ thư điện tử từ 20:00 Thứ Hai, ngày 15/02/2027")
    assert "(đã thay ổ cứng dự phòng)" in text_of(last, "vi")
    # no reminder for a cancelled window, and cancelling twice is refused
    run = cli_json(province, "--now", "2027-02-14T08:00", "jobs", "run")
    assert not [a for a in run["actions"] if a["key"].startswith("maintenance:2")]
    twice = cli(province, "--now", "2027-02-04T09:00", "notice", "cancel", "2", "--reason", "x")
    assert twice.returncode == 1 and "already cancelled" in twice.stderr


def test_dry_run_shows_the_notice_and_records_nothing(province):
    out = cli(province, "--now", "2026-12-08T10:00", "notice", "maintenance", "--start", "2026-12-12 22:00",
              "--duration", "3h", "--reason", "nâng cấp", "--dry-run", check=True).stdout
    assert "Subject: Thông báo tạm ngừng dịch vụ thư điện tử từ 22:00 Thứ Bảy, ngày 12/12/2026" in out
    assert "Kính gửi các cơ quan, đơn vị" in out and "dry run: nothing recorded or sent" in out
    assert cli_json(province, "notice", "list", "--all") == []
    assert inbox(province, "nguyenvanan@phuyen.gov.vn") == []


def test_operators_edit_the_notice_templates(province, tmp_path):
    folder = tmp_path / "texts"
    listed = cli_json(province, "notice", "templates", "--export", str(folder))
    assert "maintenance.txt" in listed["copied"] and "password-expiry.txt" in listed["copied"]
    entry = next(t for t in listed["templates"] if t["template"] == "maintenance.txt")
    assert {"start", "end", "reason", "duration"} <= set(entry["placeholders"]) and not entry["edited"]
    text = (folder / "maintenance.txt").read_text(encoding="utf-8")
    (folder / "maintenance.txt").write_text(
        text.replace("Subject: Thông báo tạm ngừng", "Subject: [Sở TT&TT] Thông báo tạm ngừng"), encoding="utf-8")
    province.write_text(province.read_text().replace("  data: ../data\n", f"  data: ../data\n  templates: {folder}\n"))
    again = cli_json(province, "notice", "templates")
    assert next(t for t in again["templates"] if t["template"] == "maintenance.txt")["edited"]
    cli(province, "--now", "2026-12-08T10:00", "notice", "maintenance", "--start", "2026-12-12 22:00",
        "--duration", "3h", "--reason", "nâng cấp", check=True)
    (msg,) = inbox(province, "stttt@phuyen.gov.vn")
    assert str(msg["Subject"]).startswith("[Sở TT&TT] Thông báo tạm ngừng dịch vụ")


def test_bad_input_names_the_field(province):
    def err(*args: str) -> str:
        proc = cli(province, "--now", "2026-12-01T10:00", "notice", "maintenance", *args)
        assert proc.returncode == 1
        return proc.stderr.strip()

    assert err("--start", "2026-13-01 22:00", "--duration", "3h", "--reason", "x").startswith("error: start:")
    assert err("--start", "2026-12-20 22:00", "--duration", "2 months", "--reason", "x").startswith(
        "error: duration:")
    assert err("--start", "2026-11-30 22:00", "--duration", "3h", "--reason", "x") == (
        "error: start: 2026-11-30 22:00 is not in the future")
    assert err("--start", "2026-12-20 22:00", "--duration", "3h", "--reason", " ").startswith("error: reason:")


def test_config_check_finds_mistakes_in_edited_templates(province, tmp_path):
    folder = tmp_path / "texts"
    cli(province, "notice", "templates", "--export", str(folder), check=True)
    province.write_text(province.read_text().replace("  data: ../data\n", f"  data: ../data\n  templates: {folder}\n"))
    assert cli(province, "config", "check").returncode == 0
    text = (folder / "password-expiry.txt").read_text(encoding="utf-8")
    (folder / "password-expiry.txt").write_text(text.replace("$name,", "$nmae,", 1), encoding="utf-8")
    (folder / "maintenace.txt").write_text("Subject: x\n--- vi\nx\n", encoding="utf-8")
    (folder / "revoked.txt").write_text("--- vi\nno subject\n", encoding="utf-8")
    proc = cli(province, "config", "check")
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 3
    assert errors[0].endswith("maintenace.txt: not a notice template (known: delivery-delayed.txt, "
                              "delivery-failed.txt, delivery-reasons.txt, inactivity-suspended.txt, "
                              "inactivity-warning.txt, maintenance-cancelled.txt, maintenance-reminder.txt, "
                              "maintenance.txt, password-expiry.txt, quota-warning.txt, retirement-locked.txt, "
                              "revocation-warning.txt, revoked.txt)")
    assert "password-expiry.txt: unknown placeholder $nmae (this template has: $account_url $address" in errors[1]
    assert errors[2].endswith('revoked.txt: the first line must be "Subject: ..."')
