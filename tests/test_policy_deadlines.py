"""The regulation's deadlines as pure functions (policy/deadlines.py): plain dates, no I/O."""

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from policy.deadlines import (
    days_left,
    due_warning,
    earliest_start_day,
    exempt_on,
    expired_days,
    expunge_before,
    inactivity_deadline,
    last_activity,
    maintenance_lead,
    reminder_day,
    report_period,
    retention_cutoff,
)
from policy.model import CalendarPolicy, InactivityPolicy, Policy
from policy.units import CalendarDuration, parse_duration

TZ = Policy().tz
WARN = [parse_duration(d) for d in ("7 days", "3 days", "1 day")]


def at(y: int, m: int, d: int, h: int = 9) -> datetime:
    return datetime(y, m, d, h, tzinfo=TZ)


# ---------------------------------------------------------------- lead-time warnings (Đ13.3, Đ5.3.b, Đ6.2.a)


def test_d13_3_each_warning_falls_due_at_its_lead_time():
    expires = at(2027, 3, 10, 14)
    assert due_warning(expires, expires - timedelta(days=8), WARN) is None
    assert due_warning(expires, expires - timedelta(days=7), WARN) == parse_duration("7 days")
    assert due_warning(expires, expires - timedelta(days=3, seconds=1), WARN) == parse_duration("7 days")
    assert due_warning(expires, expires - timedelta(days=3), WARN) == parse_duration("3 days")
    assert due_warning(expires, expires - timedelta(hours=23), WARN) == parse_duration("1 day")
    assert due_warning(expires, expires, WARN) is None  # expired: no warning any more
    assert due_warning(expires, expires + timedelta(days=1), WARN) is None


def test_catch_up_after_downtime_gives_only_the_most_urgent_warning():
    expires = at(2027, 3, 10)
    # the scheduler was down for the 7- and 3-day points: one warning, the 1-day one
    assert due_warning(expires, expires - timedelta(hours=20), WARN) == parse_duration("1 day")


def test_warnings_work_on_dates_too():
    leads = [parse_duration("30 days"), parse_duration("7 days")]
    revoke = date(2027, 6, 1)
    assert due_warning(revoke, date(2027, 5, 1), leads) is None
    assert due_warning(revoke, date(2027, 5, 2), leads) == parse_duration("30 days")
    assert due_warning(revoke, date(2027, 5, 25), leads) == parse_duration("7 days")
    assert due_warning(revoke, revoke, leads) is None
    assert days_left(revoke, date(2027, 5, 25)) == 7


def test_lead_times_are_sorted_longest_first_and_must_be_positive():
    p = Policy.model_validate({"passwords": {"expiry_warnings": ["1 day", "7 days", "3 days", "1 day"]}})
    assert [str(d) for d in p.passwords.expiry_warnings] == ["7 days", "3 days", "1 day"]
    with pytest.raises(ValidationError):
        Policy.model_validate({"inactivity": {"warnings": ["0 days"]}})


# ---------------------------------------------------------------- Đ6.2.a


def test_d6_2_a_clock_starts_at_the_latest_counted_activity():
    rules = InactivityPolicy()
    created = at(2026, 1, 5)
    login, send = at(2026, 3, 1), at(2026, 2, 1)
    last = last_activity(created_at=created, restarted_at=None,
                         activity={"login": login, "send": send, "receive": None}, rules=rules)
    assert last == login
    assert inactivity_deadline(last, rules) == at(2026, 9, 1)


def test_d6_2_a_policy_chooses_which_activities_count():
    rules = InactivityPolicy(activities=["send", "receive"])
    last = last_activity(created_at=at(2026, 1, 5), restarted_at=None,
                         activity={"login": at(2026, 5, 1), "send": at(2026, 2, 1), "receive": None}, rules=rules)
    assert last == at(2026, 2, 1)  # logins alone do not keep the mailbox


def test_d6_2_a_a_password_reset_on_restore_restarts_the_clock():
    rules = InactivityPolicy()
    last = last_activity(created_at=at(2025, 1, 1), restarted_at=at(2026, 4, 2),
                         activity={"login": None, "send": None, "receive": None}, rules=rules)
    assert last == at(2026, 4, 2)


def test_d6_2_a_deadline_is_calendar_months():
    assert inactivity_deadline(at(2026, 8, 31), InactivityPolicy()) == at(2027, 2, 28)


def test_d6_2_a_exemption_covers_its_last_day():
    assert exempt_on(date(2027, 1, 31), date(2027, 1, 31))
    assert not exempt_on(date(2027, 1, 31), date(2027, 2, 1))
    assert not exempt_on(None, date(2027, 2, 1))


# ---------------------------------------------------------------- Đ8.1.c working days

TET_2027 = CalendarPolicy(
    holidays=[date(2027, 2, 5), date(2027, 2, 8), date(2027, 2, 9), date(2027, 2, 10), date(2027, 2, 11)],
    working_saturdays=[date(2027, 1, 30)],
)


def test_d8_1_c_weekend_does_not_count():
    # notice on Wednesday 9/12/2026: only Thu and Fri are strictly between it and Saturday 12/12
    lead = maintenance_lead(date(2026, 12, 9), date(2026, 12, 12), 3, CalendarPolicy())
    assert (lead.working_days, lead.sufficient) == (2, False)
    assert lead.earliest_start_day == date(2026, 12, 15)  # Thu, Fri, Mon between; Tue is the first allowed
    # notice on Tuesday 8/12: Wed, Thu, Fri
    assert maintenance_lead(date(2026, 12, 8), date(2026, 12, 12), 3, CalendarPolicy()).sufficient


def test_d8_1_c_strictly_between_excludes_both_ends():
    # Monday to Friday: Tue, Wed, Thu between (the notice day and the start day never count)
    assert maintenance_lead(date(2026, 12, 7), date(2026, 12, 11), 3, CalendarPolicy()).working_days == 3
    assert maintenance_lead(date(2026, 12, 7), date(2026, 12, 10), 3, CalendarPolicy()).working_days == 2
    assert maintenance_lead(date(2026, 12, 7), date(2026, 12, 7), 3, CalendarPolicy()).working_days == 0


def test_d8_1_c_tet_holidays_do_not_count():
    # Wed 3/2/2027: Thu 4 counts, Fri 5 and Mon 8 – Thu 11 are Tết, Fri 12 and Mon 15 count
    lead = maintenance_lead(date(2027, 2, 3), date(2027, 2, 16), 3, TET_2027)
    assert (lead.working_days, lead.sufficient) == (3, True)
    short = maintenance_lead(date(2027, 2, 3), date(2027, 2, 15), 3, TET_2027)
    assert (short.working_days, short.sufficient) == (2, False)
    assert short.earliest_start_day == date(2027, 2, 16)
    # without the holiday list the same dates would have been plenty
    assert maintenance_lead(date(2027, 2, 3), date(2027, 2, 15), 3, CalendarPolicy()).working_days == 7


def test_d8_1_c_make_up_saturday_counts():
    # Thu 28/1/2027 → Tue 2/2: Fri 29, Saturday 30 (make-up working day), Mon 1
    assert maintenance_lead(date(2027, 1, 28), date(2027, 2, 2), 3, TET_2027).working_days == 3
    assert maintenance_lead(date(2027, 1, 28), date(2027, 2, 2), 3, CalendarPolicy()).working_days == 2
    assert earliest_start_day(date(2027, 1, 28), 3, TET_2027) == date(2027, 2, 2)


def test_d8_1_c_reminder_day():
    assert reminder_day(date(2026, 12, 12), 1) == date(2026, 12, 11)
    assert reminder_day(date(2026, 12, 12), 0) is None


# ---------------------------------------------------------------- Đ7.2, Đ8.2.b retention


def test_d7_2_cutoff_keeps_the_file_of_the_day_six_months_ago():
    six = CalendarDuration(months=6)
    assert retention_cutoff(date(2027, 7, 15), six) == date(2027, 1, 15)
    days = [date(2027, 1, 13), date(2027, 1, 14), date(2027, 1, 15), date(2027, 1, 16)]
    assert expired_days(days, date(2027, 7, 15), six) == [date(2027, 1, 13), date(2027, 1, 14)]
    # calendar months: on 31 August the file of 28 February is the first one kept
    assert retention_cutoff(date(2027, 8, 31), six) == date(2027, 2, 28)


def test_d8_2_b_expunge_before():
    now = datetime(2027, 3, 31, 1, 0, tzinfo=UTC)
    assert expunge_before(now, parse_duration("30 days")) == datetime(2027, 3, 1, 1, 0, tzinfo=UTC)


def test_d8_2_b_folder_retention_policy():
    p = Policy.model_validate({"folder_retention": {"junk": None, "folders": {"Thông báo": "1 year"}}})
    assert p.folder_retention.junk is None and str(p.folder_retention.trash) == "30 days"
    assert p.folder_retention.folders["Thông báo"].months == 12
    with pytest.raises(ValidationError, match="INBOX"):
        Policy.model_validate({"folder_retention": {"folders": {"inbox": "30 days"}}})


# ---------------------------------------------------------------- Đ14.3.đ report periods


def test_d14_3_d_periods_are_calendar_months_before_the_end():
    p = report_period("6m", date(2027, 7, 1))
    assert (p.first, p.last, p.months) == (date(2027, 1, 1), date(2027, 6, 30), 6)
    assert date(2027, 6, 30) in p and date(2027, 7, 1) not in p and date(2026, 12, 31) not in p
    assert report_period("3m", date(2027, 5, 31)).first == date(2027, 2, 28)
    assert report_period("12m", date(2027, 1, 1)).first == date(2026, 1, 1)
    with pytest.raises(ValueError, match="report period"):
        report_period("2m", date(2027, 1, 1))


def test_new_defaults_match_the_issue():
    p = Policy()
    assert [str(d) for d in p.passwords.expiry_warnings] == ["7 days", "3 days", "1 day"]  # Đ13.3
    assert str(p.folder_retention.trash) == str(p.folder_retention.junk) == "30 days"  # Đ8.2.b
    assert p.logs.audit_retention.months > p.logs.mail_log_retention.months  # Đ7.2: longer
    assert p.maintenance.reminder_days_before == 1  # Đ8.1.c: the day before
