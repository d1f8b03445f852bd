"""Đ9 passwords, Đ5.3.b schedules, the lock-state table, Đ7.3 arithmetic: plain values, no I/O."""

from datetime import UTC, date, datetime, timedelta

import pytest

from policy.limits import (
    attachments_fit,
    base64_size,
    check_quota,
    crossed_thresholds,
    effective_quota,
    message_size_limit,
    quota_floor_ok,
)
from policy.lockstate import AccountFacts, LockState, PasswordState, evaluate
from policy.model import AttachmentPolicy, PasswordPolicy, Policy, QuotaPolicy
from policy.passwords import check_password, generate_temporary
from policy.retirement import Role, retirement_schedule

POLICY = Policy()
TZ = POLICY.tz


def at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=TZ)


# ---------------------------------------------------------------- Đ9


def test_d9_example_password_is_accepted():
    assert check_password("Matkhou@123", PasswordPolicy()) == []


@pytest.mark.parametrize(
    ("password", "codes"),
    [
        ("Ma@1", {"min_length"}),
        ("matkhau@123", {"upper"}),
        ("MATKHAU@123", {"lower"}),
        ("Matkhau@abc", {"digit"}),
        ("Matkhau1234", {"special"}),
        ("Matkhau^123", {"special"}),  # ^ is not one of ! @ # % $ * &
        ("abc", {"min_length", "upper", "digit", "special"}),
        ("", {"min_length", "upper", "lower", "digit", "special"}),
    ],
)
def test_d9_every_failed_rule_is_reported(password, codes):
    assert {v.code for v in check_password(password, PasswordPolicy())} == codes


def test_d9_messages_are_bilingual():
    (v,) = check_password("matkhau@123", PasswordPolicy())
    assert v.vi == "Cần ít nhất một chữ in hoa"
    assert v.en == "an upper-case letter"


@pytest.mark.parametrize("special", list("!@#%$*&"))
def test_d9_each_listed_special_character_counts(special):
    assert check_password(f"Matkhau{special}123", PasswordPolicy()) == []


def test_bcrypt_byte_limit_only_when_asked():
    long = "Aa1@" + "x" * 80
    assert check_password(long, PasswordPolicy()) == []
    assert {v.code for v in check_password(long, PasswordPolicy(), byte_limit=72)} == {"byte_limit"}


def test_temporary_passwords_satisfy_d9():
    rules = PasswordPolicy()
    seen = {generate_temporary(rules) for _ in range(200)}
    assert len(seen) == 200
    for p in seen:
        assert check_password(p, rules) == []
        assert len(p) == rules.temporary_length


# ---------------------------------------------------------------- Đ5.3.b


def test_d5_3_b_staff_schedule():
    s = retirement_schedule(Role.staff, date(2027, 3, 15), POLICY.retirement)
    assert s.send_lock_on == date(2027, 3, 15)  # locked at once
    assert s.revoke_on == date(2027, 9, 15)  # 6 months


def test_d5_3_b_leader_schedule():
    s = retirement_schedule(Role.leader, date(2027, 3, 15), POLICY.retirement)
    assert s.send_lock_on == date(2027, 4, 15)  # 1 month
    assert s.revoke_on == date(2028, 3, 15)  # 12 months


def test_d5_3_b_schedule_clamps_month_ends():
    s = retirement_schedule(Role.leader, date(2027, 1, 31), POLICY.retirement)
    assert s.send_lock_on == date(2027, 2, 28)
    s = retirement_schedule(Role.staff, date(2026, 8, 31), POLICY.retirement)
    assert s.revoke_on == date(2027, 2, 28)


# ---------------------------------------------------------------- lock states


def person(**kw) -> AccountFacts:
    base = dict(is_person=True, role=Role.staff, password_changed_at=at(date(2026, 11, 20)))
    base.update(kw)
    return AccountFacts(**base)


def test_active_account_may_do_everything():
    a = evaluate(person(), at(date(2026, 11, 28)), POLICY)
    assert (a.state, a.may_login, a.may_send, a.may_receive) == (LockState.active, True, True, True)


def test_d5_3_b_staff_retirement_locks_sending_on_the_day_not_at_the_next_job():
    facts = person(retired_on=date(2026, 11, 28))
    before = evaluate(facts, at(date(2026, 11, 27), 23), POLICY)
    assert before.state == LockState.active
    a = evaluate(facts, at(date(2026, 11, 28), 0), POLICY)
    assert (a.state, a.may_login, a.may_send, a.may_receive) == (LockState.send_locked, True, False, True)
    assert "5.3.b" in a.reason_en and "Điều 5.3.b" in a.reason_vi


def test_d5_3_b_staff_revoked_after_six_months():
    facts = person(retired_on=date(2026, 11, 28), password_changed_at=None, must_change_password=False)
    assert evaluate(facts, at(date(2027, 5, 27)), POLICY).state == LockState.send_locked
    a = evaluate(facts, at(date(2027, 5, 28)), POLICY)
    assert (a.state, a.may_login, a.may_send, a.may_receive) == (LockState.revoked, False, False, False)


def test_d5_3_b_leader_keeps_sending_for_a_month_and_mailbox_for_a_year():
    facts = person(role=Role.leader, retired_on=date(2026, 11, 28))
    assert evaluate(facts, at(date(2026, 12, 27)), POLICY).state == LockState.active
    assert evaluate(facts, at(date(2026, 12, 28)), POLICY).state == LockState.send_locked
    assert evaluate(facts, at(date(2027, 11, 27)), POLICY).state == LockState.send_locked
    assert evaluate(facts, at(date(2027, 11, 28)), POLICY).state == LockState.revoked


def test_retirement_dates_follow_the_policy_time_zone():
    # 23:30 UTC on 27 Nov is 06:30 on 28 Nov in Việt Nam: the leave day has begun.
    facts = person(retired_on=date(2026, 11, 28))
    moment = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    assert evaluate(facts, moment, POLICY).state == LockState.send_locked


def test_d6_1_suspended_still_receives():
    a = evaluate(person(suspended_reason="compromised"), at(date(2026, 11, 28)), POLICY)
    assert (a.state, a.may_login, a.may_web_login, a.may_send, a.may_receive) == (
        LockState.suspended, False, False, False, True)


def test_revoked_by_operator():
    a = evaluate(person(revoked_at=at(date(2026, 11, 1))), at(date(2026, 11, 28)), POLICY)
    assert (a.state, a.may_receive) == (LockState.revoked, False)


def test_unit_mailboxes_do_not_retire():
    facts = AccountFacts(is_person=False, role=Role.staff, retired_on=date(2020, 1, 1),
                         password_changed_at=at(date(2026, 11, 20)))
    assert evaluate(facts, at(date(2026, 11, 28)), POLICY).state == LockState.active


def test_d13_3_password_expires_after_a_calendar_month():
    facts = person(password_changed_at=at(date(2027, 1, 31), 10))
    ok = evaluate(facts, at(date(2027, 2, 28), 9), POLICY)
    assert ok.password == PasswordState.ok and ok.may_login
    assert ok.password_expires_at == at(date(2027, 2, 28), 10)
    expired = evaluate(facts, at(date(2027, 2, 28), 10), POLICY)
    assert expired.password == PasswordState.expired
    assert not expired.may_login and expired.may_web_login and expired.may_receive


def test_d6_3_c_must_change_blocks_protocols_but_not_the_web():
    a = evaluate(person(must_change_password=True), at(date(2026, 11, 28)), POLICY)
    assert a.password == PasswordState.must_change
    assert (a.may_login, a.may_web_login) == (False, True)


def test_send_locked_with_expired_password_may_still_use_the_web():
    facts = person(retired_on=date(2026, 1, 1), password_changed_at=at(date(2026, 1, 1)))
    a = evaluate(facts, at(date(2026, 3, 1)), POLICY)
    assert a.state == LockState.send_locked and a.may_web_login and not a.may_login


# ---------------------------------------------------------------- Đ7.3


def test_d7_3_b_size_limit_derives_from_attachment_limit():
    rules = AttachmentPolicy()
    limit = message_size_limit(rules)
    assert base64_size(15 * 2**20) < limit < 22 * 2**20
    assert attachments_fit(15 * 2**20, rules) and not attachments_fit(15 * 2**20 + 1, rules)
    assert message_size_limit(AttachmentPolicy(message_size_limit=10**7)) == 10**7


def test_base64_size_is_exact():
    import base64

    for n in (0, 1, 56, 57, 58, 1000, 123457):
        encoded = base64.encodebytes(b"x" * n)  # 76-char lines with LF
        assert base64_size(n) == len(encoded) + encoded.count(b"\n")


def test_d7_3_quota_arithmetic():
    q = QuotaPolicy()
    assert effective_quota(None, None, q) == 2 * 2**30
    assert effective_quota(None, 5 * 2**30, q) == 5 * 2**30
    assert effective_quota(3 * 2**30, 5 * 2**30, q) == 3 * 2**30
    assert not quota_floor_ok(2**30, q) and quota_floor_ok(2 * 2**30, q)
    assert check_quota(100, 200, 100).fits and not check_quota(100, 200, 101).fits


def test_d7_3_c_thresholds_cross_once_upward():
    q = QuotaPolicy()
    quota = 1000
    assert crossed_thresholds(899, 900, quota, q) == [90]
    assert crossed_thresholds(899, 960, quota, q) == [90, 95]
    assert crossed_thresholds(900, 940, quota, q) == []
    assert crossed_thresholds(960, 100, quota, q) == []


def test_every_default_matches_the_regulation():
    p = Policy()
    assert p.attachments.max_total == 15 * 2**20  # Đ7.3.b
    assert p.quota.default == 2 * 2**30  # Đ7.3.b
    assert p.passwords.min_length == 8 and p.passwords.special_characters == "!@#%$*&"  # Đ9
    assert p.passwords.max_age.months == 1  # Đ13.3
    assert p.inactivity.suspend_after.months == 6  # Đ6.2.a
    assert p.logs.mail_log_retention.months == 6  # Đ7.2
    assert p.maintenance.user_notice_working_days == 3  # Đ8.1.c
    assert p.maintenance.provider_notice_working_days == 1  # Đ8.2.c
    assert p.timezone == "Asia/Ho_Chi_Minh"
    assert timedelta(seconds=p.auth.cooling_off.approx_seconds) == timedelta(minutes=15)
