"""The directory (Đ4.3): provisioning, collisions, lifecycle, aliases, grants, audit."""

from datetime import UTC, date, datetime, timedelta

import pytest

from policy.errors import Conflict, NotFound, ValidationFailed
from policy.lockstate import LockState
from policy.naming import UnitKind
from policy.retirement import Role
from storage.directory import ImportFailed, PersonRequest

PW = "Matkhau@123"


async def test_init_creates_operator_unit_and_reserved_addresses(app):
    d = app.directory
    stttt = await d.require_account("stttt")
    assert stttt.kind == "unit"
    for role in ("postmaster", "abuse", "support"):  # Đ5.2: support@ must exist
        res = await d.resolve(f"{role}@phuyen.gov.vn")
        assert res is not None and [a.address for a in res.accounts] == ["stttt@phuyen.gov.vn"]
    # idempotent
    assert await d.ensure_operator_unit("Sở Thông tin và Truyền thông", None, actor="t") is None


async def test_units_follow_d4_1(app):
    d = app.directory
    await d.add_unit("Tuy An", UnitKind.district, actor="t")
    await d.add_unit("Phú Hòa", UnitKind.district, actor="t")
    c = await d.add_unit("Hòa An", UnitKind.commune, parent="phuhoa", actor="t")
    s = await d.add_unit("Phòng Nội vụ", UnitKind.subunit, parent="tuyan", actor="t")
    t = await d.add_unit("Trung tâm Công nghệ thông tin và Truyền thông", UnitKind.subunit, parent="stttt",
                         actor="t")
    assert [x.unit.address for x in (c, s, t)] == [
        "hoan.phuhoa@phuyen.gov.vn", "pnv.tuyan@phuyen.gov.vn", "ttcntttt.stttt@phuyen.gov.vn"]
    # each unit has its own mailbox with a temporary password that must be changed (Đ12.1)
    assert s.temporary_password and s.account.must_change_password and s.account.kind == "unit"
    # a commune needs a district as parent
    with pytest.raises(ValidationFailed) as e:
        await d.add_unit("Hòa Bình", UnitKind.commune, parent="stttt", actor="t")
    assert e.value.field == "parent"
    # the same name twice is a clear conflict that suggests --abbrev
    with pytest.raises(Conflict) as e2:
        await d.add_unit("Phòng Nội vụ", UnitKind.subunit, parent="tuyan", actor="t")
    assert "--abbrev" in e2.value.message
    tree = await d.unit_tree("stttt")
    assert [u.local_part for u in tree] == ["stttt", "ttcntttt.stttt"]


async def test_d4_2_b_collisions_in_the_directory(app):
    d = app.directory
    req = PersonRequest(name="Nguyễn Văn A", unit="stttt", birth_year=1979, birth_month=3, password=PW)
    addrs = [(await d.add_person(req, actor="t")).account.local_part for _ in range(3)]
    assert addrs == ["nguyenvana", "nguyenvana79", "nguyenvana379"]
    with pytest.raises(Conflict) as e:
        await d.add_person(req, actor="t")
    assert "nguyenvana, nguyenvana79, nguyenvana379" in e.value.message
    explicit = await d.add_person(PersonRequest(name="Nguyễn Văn A", unit="stttt", address="nguyenvana.stttt",
                                                password=PW), actor="t")
    assert explicit.account.address == "nguyenvana.stttt@phuyen.gov.vn"


async def test_reserved_and_alias_names_are_taken(app):
    d = app.directory
    with pytest.raises(Conflict):
        await d.add_person(PersonRequest(name="Post Master", unit=None, address="postmaster", password=PW),
                           actor="t")
    await d.add_alias("vanphong", "stttt", actor="t")
    with pytest.raises(Conflict):
        await d.add_person(PersonRequest(name="Văn Phong", unit=None, password=PW), actor="t")


async def test_generated_password_must_change_and_given_one_need_not(app):
    d = app.directory
    gen = await d.add_person(PersonRequest(name="Trần Thị B", unit="stttt"), actor="t")
    assert gen.temporary_password and gen.account.must_change_password
    ok, _ = d.hasher.verify(gen.temporary_password, gen.account.password_hash)
    assert ok
    given = await d.add_person(PersonRequest(name="Trần Thị C", unit="stttt", password=PW), actor="t")
    assert given.temporary_password is None and not given.account.must_change_password
    with pytest.raises(ValidationFailed) as e:
        await d.add_person(PersonRequest(name="Trần Thị D", unit="stttt", password="weak"), actor="t")
    assert e.value.field == "password" and "Đ9" in e.value.message


async def test_quota_floor_and_unit_default(app):
    d = app.directory
    acc = (await d.add_person(PersonRequest(name="Lê Văn E", unit="stttt", password=PW), actor="t")).account
    assert await d.quota_of(acc) == 2 * 2**30
    with pytest.raises(ValidationFailed) as e:
        await d.set_quota(acc.address, 2**30, actor="t")
    assert e.value.field == "quota" and "Đ7.3.b" in e.value.message
    await d.set_unit_quota("stttt", 5 * 2**30, actor="t")
    assert await d.quota_of(acc) == 5 * 2**30
    acc = await d.set_quota(acc.address, 3 * 2**30, actor="t")
    assert await d.quota_of(acc) == 3 * 2**30


async def test_lifecycle_suspend_restore_retire_revoke(app, clock):
    d = app.directory
    acc = (await d.add_person(PersonRequest(name="Phạm Văn F", unit="stttt", password=PW), actor="op")).account
    acc = await d.suspend(acc.address, "compromised password (Đ6.2.b)", actor="op")
    assert d.access(acc).state == LockState.suspended
    assert (await d.resolve(acc.address)).accounts[0].id == acc.id  # still receives (Đ6.1)
    acc, temp = await d.restore(acc.address, actor="op")
    assert d.access(acc).state == LockState.active and acc.must_change_password
    assert d.hasher.verify(temp, acc.password_hash)[0]
    today = clock().astimezone(d.policy.tz).date()
    acc = await d.retire(acc.address, today, actor="op")
    assert d.access(acc).state == LockState.send_locked
    acc = await d.update_account(acc.address, role=Role.leader, actor="op")
    assert d.access(acc).state == LockState.active  # leaders keep sending for a month
    assert d.access(acc).send_locked_on == today.replace(month=12)
    acc = await d.revoke(acc.address, actor="op")
    assert d.access(acc).state == LockState.revoked
    assert await d.resolve(acc.address) is None  # unknown user (550 5.1.1)
    actions = [e.action for e in await d.audit_entries(target=acc.address)]
    assert actions == ["account.revoke", "account.update", "account.retire", "account.restore",
                       "account.suspend", "account.add"]
    entry = (await d.audit_entries(target=acc.address, limit=10))[-1]
    assert entry.actor == "op" and "password_hash" not in entry.after


async def test_revoked_address_reusable_only_after_the_policy_period(app, clock):
    d = app.directory
    old = (await d.add_person(PersonRequest(name="Võ Văn G", unit="stttt", password=PW), actor="t")).account
    await d.revoke(old.address, actor="t")
    again = await d.add_person(PersonRequest(name="Võ Văn G", unit="stttt", birth_year=1990, password=PW),
                               actor="t")
    assert again.account.local_part == "vovang90"
    clock.now = clock.now + timedelta(days=366)
    third = await d.add_person(PersonRequest(name="Võ Văn G", unit="stttt", password=PW), actor="t")
    assert third.account.local_part == "vovang"
    assert third.account.id != old.id
    assert (await d.get_account("vovang")).id == third.account.id


async def test_aliases_and_send_as_grants(app):
    d = app.directory
    a = (await d.add_person(PersonRequest(name="Đỗ Văn H", unit="stttt", password=PW), actor="t")).account
    await d.add_alias("vanthu.stttt", "stttt", actor="t")
    await d.add_alias("h", a.address, actor="t")
    res = await d.resolve("vanthu.stttt@phuyen.gov.vn")
    assert [x.address for x in res.accounts] == ["stttt@phuyen.gov.vn"]
    assert await d.may_send_as(a, "h@phuyen.gov.vn")
    assert not await d.may_send_as(a, "stttt@phuyen.gov.vn")
    await d.grant_send_as(a.address, "stttt", actor="t")
    assert await d.may_send_as(a, "stttt@phuyen.gov.vn")
    assert await d.may_send_as(a, "vanthu.stttt@phuyen.gov.vn")  # the unit's aliases too
    with pytest.raises(ValidationFailed):
        await d.grant_send_as("stttt", a.address, actor="t")  # only unit mailboxes can be granted
    await d.revoke_grant(a.address, "stttt", actor="t")
    assert not await d.may_send_as(a, "stttt@phuyen.gov.vn")
    with pytest.raises(NotFound):
        await d.add_alias("x", "nobody", actor="t")
    await d.add_alias("fwd", "someone@example.org", actor="t")
    assert (await d.resolve("fwd@phuyen.gov.vn")).remote == ["someone@example.org"]
    assert await d.resolve("nobody@phuyen.gov.vn") is None
    assert await d.resolve("x@example.org") is None  # not our domain


async def test_alias_loops_do_not_hang(app):
    d = app.directory
    await d.add_alias("loopa", "stttt", actor="t")
    await d.add_alias("loopb", "loopa", actor="t")
    await d.add_alias("loopa", "loopb", actor="t")
    res = await d.resolve("loopa@phuyen.gov.vn")
    assert [x.address for x in res.accounts] == ["stttt@phuyen.gov.vn"]


async def test_import_is_all_or_nothing(app):
    d = app.directory
    good = [PersonRequest(name=f"Nguyễn Thị {c}", unit="stttt", password=PW) for c in "KLM"]
    bad = [*good, PersonRequest(name="Nguyễn Thị N", unit="nope", password=PW)]
    with pytest.raises(ImportFailed) as e:
        await d.import_people(bad, actor="t")
    assert e.value.row == 4 and e.value.error.field == "unit"
    assert await d.get_account("nguyenthik") is None
    dup = [*good, PersonRequest(name="X", unit="stttt", address="nguyenthik", password=PW)]
    with pytest.raises(ImportFailed) as e:
        await d.import_people(dup, actor="t")
    assert e.value.row == 4 and e.value.error.field == "address"
    assert await d.get_account("nguyenthik") is None
    created = await d.import_people(good, actor="t")
    assert [c.account.local_part for c in created] == ["nguyenthik", "nguyenthil", "nguyenthim"]


async def test_activity_is_recorded_at_most_hourly(app, clock):
    d = app.directory
    acc = await d.require_account("stttt")
    t0 = clock()
    await d.record_activity(acc.id, "login", t0)
    await d.record_activity(acc.id, "login", t0 + timedelta(minutes=30))
    assert (await d.require_account("stttt")).last_login_at == t0
    await d.record_activity(acc.id, "login", t0 + timedelta(minutes=61))
    assert (await d.require_account("stttt")).last_login_at == t0 + timedelta(minutes=61)


async def test_bad_input_names_the_field(app):
    d = app.directory
    with pytest.raises(NotFound) as e:
        await d.require_account("ghost")
    assert e.value.field == "address"
    with pytest.raises(ValidationFailed) as e:
        d.split("a@other.example")
    assert "not a domain this server serves" in e.value.message
    with pytest.raises(ValidationFailed) as e:
        await d.suspend("stttt", "  ", actor="t")
    assert e.value.field == "reason"


async def test_dates_are_stored_in_utc_and_shown_in_policy_time(app):
    acc = await app.directory.require_account("stttt")
    assert acc.created_at.tzinfo is not None
    assert acc.created_at == datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    assert app.directory.access(acc).password_expires_at.astimezone(app.policy.tz).date() == date(2026, 12, 28)
