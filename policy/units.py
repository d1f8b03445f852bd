"""Sizes and durations as operators write them in YAML.

Operators write `15MiB`, `2 GiB`, `6 months`, `30 days`; the regulation itself
speaks in MB and months. Sizes accept decimal (`MB` = 10^6) and binary
(`MiB` = 2^20) units so a figure copied from the regulation means what it says.
Durations keep months separate from days because "N months after" is calendar
arithmetic (31 Jan + 1 month = 28/29 Feb), not a fixed number of seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from policy.calendar import add_months

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any) -> int:
    """Return a size in bytes from an int or a string such as `15MiB`."""
    if isinstance(value, bool):
        raise ValueError(f'"{value}" is not a size')
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f'"{value}" is not a size (negative)')
        return value
    if isinstance(value, float) and value >= 0 and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise ValueError(f'"{value}" is not a size (use e.g. 15MiB, 2GiB, 20MB)')


def format_size(n: int) -> str:
    """Human form using binary units, as quotas are usually quoted."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            v = n / factor
            return f"{v:.0f} {unit}" if v.is_integer() else f"{v:.1f} {unit}"
    return f"{n} B"


_DURATION_RE = re.compile(
    r"(\d+)\s*(months?|mo|years?|y|weeks?|w|days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s)(?![a-z])",
    re.IGNORECASE,
)


@dataclass(frozen=True, order=True)
class CalendarDuration:
    """A duration with a calendar part (months) and an exact part (seconds)."""

    months: int = 0
    seconds: int = 0

    def after(self, start: datetime | date) -> datetime | date:
        """`start` moved forward: months first (clamped to month end), then seconds."""
        moved = add_months(start, self.months)
        if self.seconds:
            if isinstance(moved, datetime):
                return moved + timedelta(seconds=self.seconds)
            return moved + timedelta(days=self.seconds // 86400)
        return moved

    def before(self, end: datetime | date) -> datetime | date:
        moved = add_months(end, -self.months)
        if self.seconds:
            if isinstance(moved, datetime):
                return moved - timedelta(seconds=self.seconds)
            return moved - timedelta(days=self.seconds // 86400)
        return moved

    @property
    def approx_seconds(self) -> int:
        """For ordering and rate windows only; never for calendar rules."""
        return self.months * 30 * 86400 + self.seconds

    def __str__(self) -> str:
        parts = []
        if self.months:
            years, months = divmod(self.months, 12)
            if years and not months:
                parts.append(f"{years} year" + ("s" if years > 1 else ""))
            else:
                parts.append(f"{self.months} month" + ("s" if self.months > 1 else ""))
        s = self.seconds
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
            n, s = divmod(s, size)
            if n:
                parts.append(f"{n} {unit}" + ("s" if n > 1 else ""))
        return " ".join(parts) or "0 seconds"


_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: Any) -> CalendarDuration:
    """Parse `6 months`, `30 days`, `1 year`, `3h`, `90 minutes`, `1 month 15 days`.

    A bare number is seconds. `m` alone means minutes (as in `15m`); months
    must be spelled `mo`/`month(s)` so the two can never be confused.
    """
    if isinstance(value, CalendarDuration):
        return value
    if isinstance(value, bool):
        raise ValueError(f'"{value}" is not a duration')
    if isinstance(value, (int, float)) and value >= 0:
        return CalendarDuration(seconds=int(value))
    if isinstance(value, str):
        text = value.strip()
        pos = 0
        months = seconds = 0
        matched = False
        for m in _DURATION_RE.finditer(text):
            if text[pos : m.start()].strip(" ,and"):
                break
            matched = True
            pos = m.end()
            n = int(m.group(1))
            unit = m.group(2).lower()
            if unit.startswith("mo"):
                months += n
            elif unit.startswith("y"):
                months += 12 * n
            elif unit.startswith("mi") or unit == "m":
                seconds += 60 * n
            else:
                seconds += n * _UNIT_SECONDS[unit[0]]
        if matched and not text[pos:].strip():
            return CalendarDuration(months=months, seconds=seconds)
    raise ValueError(f'"{value}" is not a duration (use e.g. 30 days, 6 months, 4 hours)')


ByteSize = Annotated[int, BeforeValidator(parse_size), PlainSerializer(format_size, when_used="json")]
Duration = Annotated[
    CalendarDuration,
    BeforeValidator(parse_duration),
    PlainSerializer(str, return_type=str),
]
