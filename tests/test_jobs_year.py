"""A whole year of the regulation's calendar in simulated time: the scheduler runs every morning
for a staff member and a leader who retire (Đ5.3.b), people who stop using their mailbox (Đ6.2.a)
and passwords that age (Đ13.3); the state and the notices are checked on each boundary day."""

from __future__ import annotations

import tarfile
from datetime import date, timedelta

from policy.lockstate import LockState
from policy.naming import UnitKind
from policy.retirement import Role
from storage.archive import verify
from storage.archives import ArchiveRecords
from tests.ops_support import local, person, run_at, subjects

START = date(2026, 12, 1)
LEAVE = date(2027, 1, 15)


async def test_d5_3_b_d6_2_a_d13_3_a_year_for_a_staff_member_and_a_leader(app, clock):
    d = app.directory
    clock.now = local(START, 7)
    await d.add_unit("Phòng Nội vụ", UnitKind.department, abbrev="pnv", actor="test")
    # the unit told the operators why its mailbox is quiet (Đ6.2.a "thông báo lý do")
    await d.exempt("pnv", date(2028, 12, 31), "hộp thư đơn vị dùng chung", actor="test")
    staff = await person(app, "Nguyễn Văn An", "pnv")
    leader = await person(app, "Trần Thị Bình", "pnv", role=Role.leader)
    idle = await person(app, "Lê Văn Cường", "pnv")
    busy = await person(app, "Phạm Thị Dung", "pnv")
    await d.retire(staff.address, LEAVE, actor="test")
    await d.retire(leader.address, LEAVE, actor="test")
    pnv = await d.require_account("pnv")

    last_uid: dict[int, int] = {}
    log: dict[date, dict[str, list[str]]] = {}
    states: dict[date, dict[str, LockState]] = {}
    day = START
    while day <= date(2028, 1, 20):
        if day.day == 1:
            await d.record_activity(busy.id, "login", local(day, 7))  # Dung signs in every month
        report = await run_at(app, clock, local(day, 8))
        assert report.failed == 0, report.results
        new: dict[str, list[str]] = {}
        for acc in (staff, leader, idle, busy, pnv):
            arrived = await subjects(app, acc, last_uid.get(acc.id, 0))
            if arrived:
                last_uid[acc.id] = arrived[-1][0]
                new[acc.local_part] = [subject for _, subject in arrived]
        log[day] = new
        states[day] = {a.local_part: d.access(await d.account_by_id(a.id)).state for a in (staff, leader, idle, busy)}
        day += timedelta(days=1)

    def got(day: date, who: str) -> list[str]:
        return log[day].get(who, [])

    # Đ13.3: passwords set on 1/12/2026 08:00 expire on 1/1/2027 08:00; warnings 7, 3 and 1 days before
    for who in ("nguyenvanan", "tranthibinh", "levancuong", "phamthidung"):
        assert [day for day in log if any("Mật khẩu" in s for s in got(day, who))] == [
            date(2026, 12, 25), date(2026, 12, 29), date(2026, 12, 31)], who
    assert "còn 7 ngày" in got(date(2026, 12, 25), "levancuong")[0]
    assert "expires in 1 day" in got(date(2026, 12, 31), "levancuong")[0]

    # Đ5.3.b staff: sending locked on the leave date, revoked 6 months after
    assert states[LEAVE - timedelta(days=1)]["nguyenvanan"] == LockState.active
    assert states[LEAVE]["nguyenvanan"] == LockState.send_locked
    assert got(LEAVE, "nguyenvanan") == ["Khóa chức năng gửi thư của hộp thư nguyenvanan@phuyen.gov.vn / "
                                         "Sending locked for nguyenvanan@phuyen.gov.vn"]
    assert [day for day in log if any("sẽ bị thu hồi" in s for s in got(day, "nguyenvanan"))] == [
        date(2027, 6, 15), date(2027, 7, 8)]  # 30 and 7 days before 15/7/2027
    assert states[date(2027, 7, 14)]["nguyenvanan"] == LockState.send_locked
    assert states[date(2027, 7, 15)]["nguyenvanan"] == LockState.revoked

    # Đ5.3.b leader: sending locked one month after, revoked 12 months after
    assert states[date(2027, 2, 14)]["tranthibinh"] == LockState.active
    assert states[date(2027, 2, 15)]["tranthibinh"] == LockState.send_locked
    assert len(got(date(2027, 2, 15), "tranthibinh")) == 1
    assert [day for day in log if any("sẽ bị thu hồi" in s for s in got(day, "tranthibinh"))] == [
        date(2027, 12, 16), date(2028, 1, 8)]
    assert states[date(2028, 1, 14)]["tranthibinh"] == LockState.send_locked
    assert states[date(2028, 1, 15)]["tranthibinh"] == LockState.revoked

    # Đ6.2.a: Cường never used his mailbox: warned 14 days before 6 months, then suspended; Dung is kept
    assert [day for day in log if got(day, "levancuong") and "tạm khóa" in got(day, "levancuong")[0]] == [
        date(2027, 5, 18), date(2027, 6, 1)]
    assert states[date(2027, 5, 31)]["levancuong"] == LockState.active
    assert states[date(2027, 6, 1)]["levancuong"] == LockState.suspended
    assert all(s["phamthidung"] == LockState.active for s in states.values())
    assert d.access(await d.require_account("pnv")).state == LockState.active  # exempt
    assert d.access(await d.require_account("stttt")).state == LockState.active  # postmaster@ delivers there

    # the unit mailbox got a copy of every notice about its people, and the revocations
    unit_days = {day: got(day, "pnv") for day in log if got(day, "pnv")}
    assert sorted(unit_days) == [
        LEAVE, date(2027, 2, 15), date(2027, 5, 18), date(2027, 6, 1), date(2027, 6, 15), date(2027, 7, 8),
        date(2027, 7, 15), date(2027, 12, 16), date(2028, 1, 8), date(2028, 1, 15)]
    assert unit_days[date(2027, 7, 15)] == ["Đã thu hồi hộp thư nguyenvanan@phuyen.gov.vn / "
                                            "Mailbox nguyenvanan@phuyen.gov.vn revoked"]

    # revocation: revoked_at is the day itself, the mailbox is archived (verified) and gone
    for acc, revoked_on, notices in ((staff, date(2027, 7, 15), 6), (leader, date(2028, 1, 15), 6)):
        fresh = await d.account_by_id(acc.id)
        assert fresh.revoked_at == local(revoked_on, 0)
        assert not app.store.has_mailbox(fresh)
        assert await d.resolve(acc.address) is None  # 550 5.1.1 from now on
        (entry,) = await ArchiveRecords(d, clock).of_account(acc.id)
        assert entry.revoked_on == revoked_on and entry.purge_after == date(revoked_on.year + 5, revoked_on.month, 15)
        manifest = verify(entry.path)
        assert manifest.messages == entry.messages == notices  # 3 password + lock + 2 reminders
        assert manifest.account["address"] == acc.address and manifest.dates["leave_date"] == "2027-01-15"
        with tarfile.open(entry.path) as tar:
            assert "manifest.json" in tar.getnames()
            assert any(n.startswith("mailbox/cur/") or n.startswith("mailbox/new/") for n in tar.getnames())

    # every change was audited with its article, by the jobs
    entries = await d.audit_entries(limit=1000)
    revocations = [e for e in entries if e.action == "account.revoke"]
    assert {(e.target, e.actor, e.rule) for e in revocations} == {
        (staff.address, "system:jobs", "Đ5.3.b"), (leader.address, "system:jobs", "Đ5.3.b")}
    (suspension,) = [e for e in entries if e.action == "account.suspend"]
    assert (suspension.target, suspension.rule) == (idle.address, "Đ6.2.a")
    assert {e.rule for e in entries if e.action == "notice.password-expiry"} == {"Đ13.3"}
    assert len([e for e in entries if e.action == "account.archive"]) == 2
