"""Sizes and durations as operators write them in YAML."""

from datetime import UTC, date, datetime

import pytest

from policy.calendar import add_months, is_working_day, working_days_between
from policy.units import CalendarDuration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15MiB", 15 * 2**20),
        ("15 MiB", 15 * 2**20),
        ("15MB", 15_000_000),
        ("2GiB", 2 * 2**30),
        ("2 gib", 2 * 2**30),
        ("512", 512),
        (1024, 1024),
        ("1.5GiB", int(1.5 * 2**30)),
    ],
)
def test_sizes_accept_decimal_and_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["2 gigs", "", "-5", "MiB", True, "15 MiBs", -1])
def test_bad_sizes_are_refused_with_the_value(bad):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(bad)


def test_format_size_round_trips():
    for n in (15 * 2**20, 2 * 2**30, 1536, 7):
        assert parse_size(format_size(n)) == n or abs(parse_size(format_size(n)) - n) < n * 0.05


@pytest.mark.parametrize(
    ("text", "months", "seconds"),
    [
        ("6 months", 6, 0),
        ("1 month", 1, 0),
        ("30 days", 0, 30 * 86400),
        ("1 year", 12, 0),
        ("4 hours", 0, 4 * 3600),
        ("15m", 0, 900),
        ("3h", 0, 3 * 3600),
        ("1 month 15 days", 1, 15 * 86400),
        ("0 days", 0, 0),
        (90, 0, 90),
    ],
)
def test_durations(text, months, seconds):
    assert parse_duration(text) == CalendarDuration(months=months, seconds=seconds)


@pytest.mark.parametrize("bad", ["1 fortnight", "soon", "", "6 months later", "-3 days"])
def test_bad_durations(bad):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(bad)


def test_duration_text_round_trips():
    for text in ("6 months", "1 year", "30 days", "4 hours", "1 month 15 days", "15 minutes"):
        d = parse_duration(text)
        assert parse_duration(str(d)) == d


def test_add_months_clamps_to_month_end():
    # "N months after" is calendar arithmetic: 31 Jan + 1 month = 28/29 Feb.
    assert add_months(date(2027, 1, 31), 1) == date(2027, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)
    assert add_months(date(2027, 3, 31), -1) == date(2027, 2, 28)
    moment = datetime(2027, 1, 31, 10, 30, tzinfo=UTC)
    assert add_months(moment, 1) == datetime(2027, 2, 28, 10, 30, tzinfo=UTC)


def test_working_days_skip_weekends_and_holidays_but_count_makeup_saturdays():
    # Tết 2027: 5–11 Feb (illustrative list given in policy), Saturday 30 Jan a make-up day.
    holidays = [date(2027, 2, d) for d in range(5, 12)]
    saturdays = [date(2027, 1, 30)]
    assert not is_working_day(date(2027, 2, 8), holidays, saturdays)  # Monday in Tết
    assert is_working_day(date(2027, 1, 30), holidays, saturdays)  # make-up Saturday
    assert not is_working_day(date(2027, 1, 31), holidays, saturdays)  # Sunday
    # Strictly between Thu 28 Jan and Mon 15 Feb: Fri 29, Sat 30 (make-up), Mon 1 – Thu 4 Feb,
    # then Tết until Thu 11, then Fri 12 Feb = 7
    assert working_days_between(date(2027, 1, 28), date(2027, 2, 15), holidays, saturdays) == 7
    assert working_days_between(date(2027, 2, 4), date(2027, 2, 12), holidays, saturdays) == 0
